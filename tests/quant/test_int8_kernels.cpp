// The int8 kernels (quant/int8_kernels.h): every fast kernel byte for byte
// against its naive reference on random codes, and the references against
// the real-valued computation they stand for (within one output code); and
// the runtime (Int8Model::run) op by op against the references.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/ops.h"
#include "quant/int8_kernels.h"
#include "quant/int8_model.h"

using namespace bonsai;
using namespace bonsai::quant;
using namespace bonsai::quant::int8;

namespace {

std::vector<int8_t> random_codes(size_t n, std::mt19937& rng, int lo = -128, int hi = 127) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int8_t> v(n);
  for (int8_t& x : v) x = static_cast<int8_t>(d(rng));
  return v;
}

// The largest difference between two code vectors of equal size.
int max_code_diff(const std::vector<int8_t>& a, const std::vector<int8_t>& b) {
  int d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(int{a[i]} - int{b[i]}));
  return d;
}

// An activation quantizer with scale in [lo, hi) and a random zero point.
AffineQuant random_quant(std::mt19937& rng, float lo = 0.01f, float hi = 0.1f) {
  std::uniform_real_distribution<float> s(lo, hi);
  std::uniform_int_distribution<int> z(-128, 127);
  return {.scale = s(rng), .zero_point = z(rng)};
}

// ---- convolution --------------------------------------------------------------

struct ConvCase {
  std::string name;
  ConvParams p;
};

// A conv with TF 'SAME' padding (asymmetric: the extra row/column at the
// bottom/right) or, with same = false, 'VALID'.
ConvParams conv(int n, int h, int w, int c_in, int c_out, int k, int stride, int dilation, int groups,
                bool same, int32_t zi, int32_t zo) {
  ops::Padding pad;
  if (same) pad = ops::tf_same_padding(h, w, k, k, stride, stride, dilation, dilation);
  return {.n = n, .h = h, .w = w, .c_in = c_in,
          .oh = static_cast<int>(ops::conv_out_size(h, k, stride, dilation, pad.top, pad.bottom)),
          .ow = static_cast<int>(ops::conv_out_size(w, k, stride, dilation, pad.left, pad.right)),
          .c_out = c_out, .kh = k, .kw = k, .stride_h = stride, .stride_w = stride, .dilation_h = dilation,
          .dilation_w = dilation, .pad_top = pad.top, .pad_left = pad.left, .groups = groups,
          .input_zero_point = zi, .output_zero_point = zo};
}

std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> cases = {
      {"1x1", conv(1, 8, 8, 16, 24, 1, 1, 1, 1, true, -5, 3)},
      {"1x1 stride 2, no copy", conv(1, 8, 10, 16, 8, 1, 2, 1, 1, true, 17, -20)},
      {"3x3 stride 1 SAME, zi -128", conv(1, 9, 7, 16, 32, 3, 1, 1, 1, true, -128, 0)},
      {"3x3 stride 2 SAME, extra bottom/right, zi 127", conv(1, 8, 8, 16, 16, 3, 2, 1, 1, true, 127, -7)},
      {"3x3 stride 2 VALID, last row unused", conv(1, 8, 9, 8, 8, 3, 2, 1, 1, false, 40, 10)},
      {"3x3 dilation 2", conv(1, 10, 10, 8, 8, 3, 1, 2, 1, true, -60, 5)},
      {"depthwise 3x3", conv(1, 9, 9, 24, 24, 3, 1, 1, 24, true, 3, -1)},
      {"depthwise 5x5 stride 2, odd input", conv(1, 11, 11, 16, 16, 5, 2, 1, 16, true, -128, 2)},
      {"depthwise 5x5 stride 2, even input", conv(1, 12, 12, 16, 16, 5, 2, 1, 16, true, 127, 0)},
      {"batch 2, 3 -> 13 channels, stride 2", conv(2, 10, 9, 3, 13, 3, 2, 1, 1, true, -128, -128)},
      {"depthwise batch 2, odd channels", conv(2, 7, 6, 13, 13, 3, 1, 1, 13, true, 90, 30)},
  };
  // Fused ReLU6-like clamp on a small window of codes.
  cases.push_back({"act clamp", conv(1, 6, 6, 8, 8, 3, 1, 1, 1, true, -100, -128)});
  cases.back().p.act_min = -128;
  cases.back().p.act_max = -60;
  // More output channels than one 32-lane block, with an 8-lane and a scalar tail.
  cases.push_back({"45 output channels", conv(1, 7, 5, 24, 45, 3, 1, 1, 1, true, 12, -3)});
  cases.push_back({"dilation 2, stride 2", conv(1, 11, 11, 16, 16, 3, 2, 2, 1, true, -50, 7)});
  // Padding wider than the window: the first and last windows lie wholly in
  // the padding and give the bias alone.
  ConvParams wide = conv(1, 6, 6, 8, 16, 3, 1, 1, 1, false, 33, 4);
  wide.pad_top = wide.pad_left = 3;
  wide.oh = wide.ow = 10;
  cases.push_back({"padding wider than the window", wide});
  // Fewer outputs than the input allows: rows and columns past the last
  // window are never read (oneDNN convolves a cut copy).
  ConvParams cut = conv(2, 10, 9, 8, 8, 1, 2, 1, 1, false, -5, 0);
  cut.oh = 3;
  cut.ow = 2;
  cases.push_back({"unread rows and columns past the last window", cut});
  cases.push_back({"1x1 input and output (fully connected)", conv(2, 1, 1, 200, 24, 1, 1, 1, 1, false, 60, -1)});
  // The pointwise kernel (AVX-512 VNNI): blocks of 64 channels and a
  // 2-lane tail; 48 channels (3 vectors) over a partial tile of pixels; the
  // deepest input it takes.
  cases.push_back({"pointwise: 130 output channels", conv(1, 7, 9, 36, 130, 1, 1, 1, 1, true, 21, -9)});
  cases.push_back({"pointwise: batch 3, 48 output channels", conv(3, 5, 5, 12, 48, 1, 1, 1, 1, true, -128, 4)});
  cases.push_back({"pointwise: 508 input channels", conv(1, 4, 5, 508, 20, 1, 1, 1, 1, true, 127, 0)});
  // The depthwise kernel: rows wide enough for blocks of 8, 4 and 1
  // outputs; 5x5; VALID stride 2; dilation (its run-time-step form); and
  // windows wholly in the padding.
  cases.push_back({"depthwise 3x3, wide rows, 33 channels", conv(1, 6, 21, 33, 33, 3, 1, 1, 33, true, -7, 2)});
  cases.push_back({"depthwise 5x5 stride 1, wide rows", conv(1, 9, 22, 16, 16, 5, 1, 1, 16, true, 50, -3)});
  cases.push_back({"depthwise 3x3 VALID stride 2", conv(1, 9, 27, 32, 32, 3, 2, 1, 32, false, 70, 1)});
  cases.push_back({"depthwise 3x3 dilation 2", conv(1, 12, 20, 20, 20, 3, 1, 2, 20, true, 5, 3)});
  cases.push_back({"depthwise 5x5 dilation 2, stride 2", conv(1, 14, 19, 16, 16, 5, 2, 2, 16, true, -90, 0)});
  // Inputs narrower than a window (MobileNetV2's last blocks at 32x32):
  // every output at the border, on both sides at once.
  cases.push_back({"depthwise 3x3 stride 2 SAME, 2x2 input", conv(2, 2, 2, 48, 48, 3, 2, 1, 48, true, -128, 5)});
  cases.push_back({"depthwise 5x5 SAME, 3x3 input", conv(1, 3, 3, 40, 40, 5, 1, 1, 40, true, 12, -4)});
  cases.push_back({"depthwise 3x3 SAME, 1x1 input", conv(1, 1, 1, 24, 24, 3, 1, 1, 24, true, 100, 0)});
  ConvParams wide_dw = conv(1, 6, 6, 16, 16, 3, 1, 1, 16, false, 33, 4);
  wide_dw.pad_top = wide_dw.pad_left = 3;
  wide_dw.oh = wide_dw.ow = 10;
  cases.push_back({"depthwise, padding wider than the window", wide_dw});
  return cases;
}

// Weights in [-127, 127] (narrow range), bias, and multipliers that put the
// outputs across the code range.
struct ConvData {
  std::vector<int8_t> weights, x;
  std::vector<int32_t> bias;
  std::vector<QuantizedMultiplier> multipliers;
};

ConvData conv_data(const ConvParams& p, std::mt19937& rng) {
  ConvData d;
  const int taps = p.kh * p.kw * (p.c_in / p.groups);
  d.weights = random_codes(static_cast<size_t>(taps) * p.c_out, rng, -127, 127);
  d.x = random_codes(static_cast<size_t>(p.n) * p.h * p.w * p.c_in, rng);
  std::uniform_int_distribution<int32_t> b(-20000, 20000);
  std::uniform_real_distribution<double> f(0.5, 2.0);
  for (int c = 0; c < p.c_out; ++c) {
    d.bias.push_back(b(rng));
    // |acc| ~ sqrt(taps) * 74 * 127 / sqrt(3) (uniform codes): aim for ~40 codes.
    const double typical = std::sqrt(double(taps)) * 74.0 * 127.0 / std::sqrt(3.0);
    d.multipliers.push_back(quantize_multiplier(f(rng) * 40.0 / typical));
  }
  return d;
}

size_t output_size(const ConvParams& p) { return static_cast<size_t>(p.n) * p.oh * p.ow * p.c_out; }

// The CPU features of Conv2dKernel's pointwise and depthwise kernels.
bool cpu_has_avx512_vnni_for_test() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}

}  // namespace

TEST_CASE("int8 kernels: Conv2dKernel matches ref::conv2d byte for byte") {
  // Both requantization forms: AVX-512 (the float32 screen with its exact
  // fallback) and AVX2 (the 64-bit products throughout).
  std::mt19937 rng(11);
  for (const bool avx512 : {true, false}) {
    CAPTURE(avx512);
    set_avx512_for_testing(avx512);
    for (const ConvCase& c : conv_cases()) {
      SUBCASE(c.name.c_str()) {
        const ConvParams& p = c.p;
        ConvData d = conv_data(p, rng);
        std::vector<int8_t> y(output_size(p)), y_ref(output_size(p));
        ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data());
        Conv2dKernel kernel(p, d.weights.data(), d.bias.data(), d.multipliers);
        kernel.run(d.x.data(), y.data());
        CHECK(y == y_ref);
        // The cases named for a kernel take it where the CPU can (and only with AVX-512 allowed).
        if (cpu_has_avx512_vnni_for_test() && c.name.rfind("pointwise", 0) == 0)
          CHECK(std::string(kernel.path()) == (avx512 ? "pointwise" : "onednn"));
        if (cpu_has_avx512_vnni_for_test() && c.name.rfind("depthwise", 0) == 0)
          CHECK(std::string(kernel.path()) == (avx512 ? "depthwise" : "onednn"));
        // The outputs are not all clamped: the case tests the arithmetic.
        CHECK(max_code_diff(y_ref, std::vector<int8_t>(y_ref.size(), y_ref[0])) > 0);
        // A second run on new input reuses the prepared primitive and scratch.
        d.x = random_codes(d.x.size(), rng);
        ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data());
        kernel.run(d.x.data(), y.data());
        CHECK(y == y_ref);
      }
    }
  }
  set_avx512_for_testing(true);
}

TEST_CASE("int8 kernels: Conv2dKernel without bias, and with accumulators past 2^24") {
  std::mt19937 rng(12);
  SUBCASE("null bias") {
    ConvParams p = conv(1, 7, 7, 8, 8, 3, 1, 1, 1, true, 9, 0);
    ConvData d = conv_data(p, rng);
    std::vector<int8_t> y(output_size(p)), y_ref(output_size(p));
    ref::conv2d(p, d.weights.data(), nullptr, d.multipliers.data(), d.x.data(), y_ref.data());
    Conv2dKernel(p, d.weights.data(), nullptr, d.multipliers).run(d.x.data(), y.data());
    CHECK(y == y_ref);
  }
}

TEST_CASE("int8 kernels: Conv2dKernel recomputes the sums oneDNN rounded past 2^24") {
  // x == zi almost everywhere, so the true accumulators Σ (x - zi) * w + bias
  // are a few hundred, while the Σ x*w oneDNN returns (zi * Σ w comes off
  // afterwards) is about ±127 * 113 * 2304 ≈ ±2^25, past f32's exact
  // integers: oneDNN rounds it by a unit or two, which the multipliers near
  // 1 carry into the output codes. Bit-exact output needs the kernel's
  // recomputation of those sums (without it these cases fail on VNNI CPUs,
  // where the kernel takes the oneDNN path). Border windows of the padded
  // cases sum fewer taps, some below 2^24: rows mix both kinds.
  std::mt19937 rng(22);
  const std::vector<ConvCase> cases = {
      {"1x1, zi 127", conv(1, 6, 5, 2304, 16, 1, 1, 1, 1, false, 127, 0)},
      {"3x3 SAME, zi 127", conv(1, 5, 6, 256, 16, 3, 1, 1, 1, true, 127, -2)},
      {"3x3 SAME, zi -128 (negative sums)", conv(1, 5, 5, 256, 24, 3, 1, 1, 1, true, -128, 3)},
      {"3x3 VALID stride 2", conv(1, 9, 9, 256, 16, 3, 2, 1, 1, false, 127, 0)},
      {"batch 2, 3x3 stride 2 SAME", conv(2, 8, 7, 256, 8, 3, 2, 1, 1, true, -128, 0)},
  };
  for (const ConvCase& c : cases) {
    SUBCASE(c.name.c_str()) {
      const ConvParams& p = c.p;
      ConvData d = conv_data(p, rng);
      d.weights = random_codes(d.weights.size(), rng, 100, 127);
      const auto near = static_cast<int8_t>(p.input_zero_point == 127 ? 126 : -127);
      std::bernoulli_distribution off_zero(0.0004);
      for (int8_t& v : d.x) v = off_zero(rng) ? near : static_cast<int8_t>(p.input_zero_point);
      std::uniform_int_distribution<int32_t> b(-60, 60);
      for (int32_t& v : d.bias) v = b(rng);
      // Right shifts and a left shift (1.0 is 2^30 * 2^1).
      for (size_t co = 0; co < d.multipliers.size(); ++co)
        d.multipliers[co] = quantize_multiplier(co % 3 == 0 ? 0.9 : co % 3 == 1 ? 0.55 : 1.0);
      std::vector<int8_t> y(output_size(p)), y_ref(output_size(p));
      ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data());
      Conv2dKernel kernel(p, d.weights.data(), d.bias.data(), d.multipliers);
      kernel.run(d.x.data(), y.data());
      CHECK(y == y_ref);
      MESSAGE(c.name << ": " << std::string(kernel.path()) << " path");
    }
  }
}

TEST_CASE("int8 kernels: Conv2dKernel is exact on rounding ties and near them") {
  // Multipliers with few significant bits put many v * m exactly on a
  // half-integer, where the rounding direction (ties toward +infinity, for
  // negative v in particular) and the 8-lane form's split of the shift
  // must agree with the reference bit for bit. The last two sit a hair
  // (2^-29 relative, below float32's resolution) above and below such a
  // multiplier: there the exact value is a near-tie, just above or below a
  // half-integer, that float32 arithmetic alone rounds the wrong way half
  // the time, and the AVX-512 form's screen must send it to its exact
  // fallback.
  std::mt19937 rng(30);
  for (const bool avx512 : {true, false}) {
    CAPTURE(avx512);
    set_avx512_for_testing(avx512);
    for (int32_t zi : {0, -128, 77}) {
      CAPTURE(zi);
      const ConvParams p = conv(2, 16, 12, 8, 40, 1, 1, 1, 1, false, zi, -5);
      ConvData d = conv_data(p, rng);
      d.weights = random_codes(d.weights.size(), rng, -20, 20);
      std::uniform_int_distribution<int32_t> b(-600, 600);
      for (int32_t& v : d.bias) v = b(rng);
      const double exact[] = {std::ldexp(1.0, -6), 3 * std::ldexp(1.0, -10), 5 * std::ldexp(1.0, -11),
                              std::ldexp(1.0 + std::ldexp(1.0, -29), -6), std::ldexp(1.0 - std::ldexp(1.0, -29), -6)};
      for (size_t co = 0; co < d.multipliers.size(); ++co) d.multipliers[co] = quantize_multiplier(exact[co % 5]);
      std::vector<int8_t> y(output_size(p)), y_ref(output_size(p));
      ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data());
      Conv2dKernel(p, d.weights.data(), d.bias.data(), d.multipliers).run(d.x.data(), y.data());
      CHECK(y == y_ref);
      // Rounding float32(v) * float32(m) to nearest instead differs from
      // the reference somewhere here (so the ties are really exercised).
      int64_t float_differs = 0;
      for (int n = 0; n < p.n; ++n)
        for (int i = 0; i < p.h * p.w; ++i)
          for (int co = 0; co < p.c_out; ++co) {
            int32_t v = d.bias[co];
            for (int ci = 0; ci < p.c_in; ++ci)
              v += (d.x[(int64_t{n} * p.h * p.w + i) * p.c_in + ci] - zi) * d.weights[ci * p.c_out + co];
            const float f = static_cast<float>(v) * static_cast<float>(exact[co % 5]);
            const int want = std::clamp(static_cast<int>(std::nearbyint(f)) + p.output_zero_point, -128, 127);
            float_differs += want != y_ref[(int64_t{n} * p.h * p.w + i) * p.c_out + co];
          }
      CHECK(float_differs > 0);
      // The same multipliers through a depthwise convolution.
      const ConvParams q = conv(2, 9, 11, 40, 40, 3, 1, 1, 40, true, zi, -5);
      ConvData e = conv_data(q, rng);
      e.weights = random_codes(e.weights.size(), rng, -20, 20);
      for (int32_t& v : e.bias) v = b(rng);
      e.multipliers = d.multipliers;
      std::vector<int8_t> z(output_size(q)), z_ref(output_size(q));
      ref::conv2d(q, e.weights.data(), e.bias.data(), e.multipliers.data(), e.x.data(), z_ref.data());
      Conv2dKernel(q, e.weights.data(), e.bias.data(), e.multipliers).run(e.x.data(), z.data());
      CHECK(z == z_ref);
    }
  }
  set_avx512_for_testing(true);
}

namespace {

// Float32 scales standing in for s_in * s_w[c] / s_out: the multipliers' values.
std::vector<float> float32_scales_of(const std::vector<QuantizedMultiplier>& m) {
  std::vector<float> f;
  for (const QuantizedMultiplier& q : m) f.push_back(static_cast<float>(std::ldexp(double(q.multiplier), q.shift - 31)));
  return f;
}

}  // namespace

TEST_CASE("int8 kernels: rescale_float32 rounds half to even after clamping, as ONNX Runtime") {
  // 0.5 * odd is an exact tie in float32.
  CHECK(rescale_float32(5, 0.5f, 0, -128, 127) == 2);    // 2.5 -> 2
  CHECK(rescale_float32(7, 0.5f, 0, -128, 127) == 4);    // 3.5 -> 4
  CHECK(rescale_float32(-5, 0.5f, 0, -128, 127) == -2);  // -2.5 -> -2
  CHECK(rescale_float32(-7, 0.5f, 0, -128, 127) == -4);  // -3.5 -> -4
  CHECK(rescale_float32(5, 0.5f, 10, -128, 127) == 12);  // the zero point after rounding
  // TFLite's fixed point rounds the same ties up instead.
  CHECK(multiply_by_quantized_multiplier(5, quantize_multiplier(0.5)) == 3);
  CHECK(multiply_by_quantized_multiplier(-5, quantize_multiplier(0.5)) == -2);
  // Clamped in float before the conversion: no overflow at the extremes.
  CHECK(rescale_float32(std::numeric_limits<int32_t>::max(), 1000.0f, -3, -128, 127) == 127);
  CHECK(rescale_float32(std::numeric_limits<int32_t>::min(), 1000.0f, -3, -128, 127) == -128);
  CHECK(rescale_float32(1000, 0.01f, 0, 0, 6) == 6);  // a fused activation's range
  // The scale is rounded to float32 after the product and again after the
  // quotient (ONNX Runtime's QLinearConv): for these three float32 scales
  // that is one ulp below the correctly rounded quotient. (Values and bit
  // patterns from numpy's float32 and float64 arithmetic.)
  const float s = float32_scale(0.011487487f, 0.008151376f, 0.18691334f);
  uint32_t bits = 0;
  std::memcpy(&bits, &s, sizeof bits);
  CHECK(bits == 973296596u);
  const auto exact = static_cast<float>(double{0.011487487f} * double{0.008151376f} / double{0.18691334f});
  std::memcpy(&bits, &exact, sizeof bits);
  CHECK(bits == 973296597u);
  CHECK(rescaling_from_name("float32") == Rescaling::float32);
  CHECK(rescaling_from_name("onnxruntime") == Rescaling::onnxruntime);
  CHECK(std::string(rescaling_name(Rescaling::onnxruntime)) == "onnxruntime");
  CHECK(std::string(rescaling_name(Rescaling::fixed_point)) == "fixed_point");
  CHECK_THROWS_WITH_AS(rescaling_from_name("float"), doctest::Contains("unknown int8 rescaling 'float'"), std::exception);
}

TEST_CASE("int8 kernels: Conv2dKernel with float32 rescaling matches ref::conv2d byte for byte") {
  std::mt19937 rng(41);
  std::vector<ConvCase> cases = conv_cases();
  // Sums past 2^24 (oneDNN's f32 detour, recomputed) with float32 scales too.
  cases.push_back({"past 2^24: 1x1, zi 127", conv(1, 6, 5, 2304, 16, 1, 1, 1, 1, false, 127, 0)});
  cases.push_back({"past 2^24: 3x3 SAME, zi -128", conv(1, 5, 5, 256, 24, 3, 1, 1, 1, true, -128, 3)});
  for (const ConvCase& c : cases) {
    SUBCASE(c.name.c_str()) {
      const ConvParams& p = c.p;
      ConvData d = conv_data(p, rng);
      if (c.name.rfind("past 2^24", 0) == 0) {
        d.weights = random_codes(d.weights.size(), rng, 100, 127);
        std::bernoulli_distribution off_zero(0.0004);
        const auto near = static_cast<int8_t>(p.input_zero_point == 127 ? 126 : -127);
        for (int8_t& v : d.x) v = off_zero(rng) ? near : static_cast<int8_t>(p.input_zero_point);
        for (size_t co = 0; co < d.multipliers.size(); ++co)
          d.multipliers[co] = quantize_multiplier(co % 2 == 0 ? 0.9 : 0.5);
      }
      const std::vector<float> f = float32_scales_of(d.multipliers);
      std::vector<int8_t> y(output_size(p)), y_ref(output_size(p)), y_fixed(output_size(p));
      ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data(), f.data());
      Conv2dKernel kernel(p, d.weights.data(), d.bias.data(), d.multipliers, f);
      // The AVX-512 form where the CPU has it, and the AVX2 form.
      for (bool avx512 : {true, false}) {
        set_avx512_for_testing(avx512);
        std::fill(y.begin(), y.end(), int8_t{0});
        kernel.run(d.x.data(), y.data());
        CHECK_MESSAGE(y == y_ref, (avx512 ? "AVX-512 (where the CPU has it)" : "AVX2"));
      }
      set_avx512_for_testing(true);
      // The same scales in fixed point: at most a step apart (rounding ties
      // and the scale's precision), nearly always equal.
      ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_fixed.data());
      CHECK(max_code_diff(y_ref, y_fixed) <= 1);
    }
  }
}

TEST_CASE("int8 kernels: Conv2dKernel shares a caller's scratch between kernels") {
  std::mt19937 rng(23);
  const ConvParams p1 = conv(1, 9, 9, 16, 32, 3, 1, 1, 1, true, -7, 2);
  const ConvParams p2 = conv(1, 9, 9, 32, 32, 3, 1, 1, 32, true, 19, -4);
  ConvData d1 = conv_data(p1, rng), d2 = conv_data(p2, rng);
  Conv2dKernel k1(p1, d1.weights.data(), d1.bias.data(), d1.multipliers);
  Conv2dKernel k2(p2, d2.weights.data(), d2.bias.data(), d2.multipliers);
  std::vector<int64_t> scratch((std::max(k1.scratch_bytes(), k2.scratch_bytes()) + 63) / 8 + 8);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) / 64 * 64);
  std::vector<int8_t> mid(output_size(p1)), y(output_size(p2)), mid_ref(mid.size()), y_ref(y.size());
  k1.run(d1.x.data(), mid.data(), aligned);
  k2.run(mid.data(), y.data(), aligned);
  ref::conv2d(p1, d1.weights.data(), d1.bias.data(), d1.multipliers.data(), d1.x.data(), mid_ref.data());
  ref::conv2d(p2, d2.weights.data(), d2.bias.data(), d2.multipliers.data(), mid_ref.data(), y_ref.data());
  CHECK(mid == mid_ref);
  CHECK(y == y_ref);
}

TEST_CASE("int8 kernels: an INT32_MIN multiplier (the saturating case) takes the scalar path") {
  // quantize_multiplier never makes one, but the kernels stay exact for it.
  std::mt19937 rng(24);
  const QuantizedMultiplier odd{.multiplier = std::numeric_limits<int32_t>::min(), .shift = -3};
  SUBCASE("conv") {
    const ConvParams p = conv(1, 6, 6, 8, 16, 3, 1, 1, 1, true, 5, 1);
    ConvData d = conv_data(p, rng);
    d.multipliers[3] = odd;
    std::vector<int8_t> y(output_size(p)), y_ref(output_size(p));
    ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data());
    Conv2dKernel(p, d.weights.data(), d.bias.data(), d.multipliers).run(d.x.data(), y.data());
    CHECK(y == y_ref);
  }
  SUBCASE("add and mul") {
    const std::vector<int8_t> a = random_codes(100, rng), b = random_codes(100, rng);
    std::vector<int8_t> y(100), y_ref(100);
    AddParams pa = make_add_params(random_quant(rng), random_quant(rng), random_quant(rng));
    pa.input2_multiplier = odd;
    add(pa, a.data(), b.data(), y.data(), 100);
    ref::add(pa, a.data(), b.data(), y_ref.data(), 100);
    CHECK(y == y_ref);
    MulParams pm = make_mul_params(random_quant(rng), random_quant(rng), random_quant(rng));
    pm.multiplier = odd;
    mul(pm, a.data(), b.data(), y.data(), 1, 100, 1);
    ref::mul(pm, a.data(), b.data(), y_ref.data(), 1, 100, 1);
    CHECK(y == y_ref);
  }
}

TEST_CASE("int8 kernels: Conv2dKernel rejects shapes it cannot run") {
  std::vector<int8_t> w(3 * 3 * 4 * 8);
  std::vector<QuantizedMultiplier> m(8, quantize_multiplier(0.01));
  ConvParams grouped = conv(1, 6, 6, 8, 8, 3, 1, 1, 2, true, 0, 0);  // groups 2: not depthwise
  CHECK_THROWS(Conv2dKernel(grouped, w.data(), nullptr, m));
  ConvParams p = conv(1, 6, 6, 8, 8, 3, 1, 1, 1, true, 0, 0);
  CHECK_THROWS(Conv2dKernel(p, w.data(), nullptr, std::vector<QuantizedMultiplier>(7)));
}

TEST_CASE("int8 kernels: ref::conv2d agrees with the real-valued convolution") {
  // Dequantized input and per-channel weights, float bias, real-valued conv
  // with zero padding, then quantized to the output: within one code.
  std::mt19937 rng(13);
  const std::vector<ConvCase> cases = {
      {"3x3 stride 2 SAME, zi 127", conv(2, 8, 7, 5, 6, 3, 2, 1, 1, true, 127, -7)},
      {"depthwise 5x5 stride 2", conv(1, 12, 12, 8, 8, 5, 2, 1, 8, true, -128, 4)},
  };
  for (const ConvCase& c : cases) {
    SUBCASE(c.name.c_str()) {
      const ConvParams& p = c.p;
      ConvData d = conv_data(p, rng);
      const AffineQuant in{.scale = 0.03f, .zero_point = p.input_zero_point};
      const AffineQuant out{.scale = 0.05f, .zero_point = p.output_zero_point};
      std::uniform_real_distribution<double> ws(0.002, 0.01);
      std::vector<double> w_scale(p.c_out);
      for (int co = 0; co < p.c_out; ++co) {
        w_scale[co] = ws(rng);
        d.multipliers[co] = quantize_multiplier(in.scale * w_scale[co] / out.scale);
      }
      std::vector<int8_t> y_ref(output_size(p));
      ref::conv2d(p, d.weights.data(), d.bias.data(), d.multipliers.data(), d.x.data(), y_ref.data());

      const int ci_g = p.c_in / p.groups, co_g = p.c_out / p.groups;
      int worst = 0;
      for (int n = 0; n < p.n; ++n)
        for (int oy = 0; oy < p.oh; ++oy)
          for (int ox = 0; ox < p.ow; ++ox)
            for (int co = 0; co < p.c_out; ++co) {
              double real = d.bias[co] * in.scale * w_scale[co];
              for (int ky = 0; ky < p.kh; ++ky)
                for (int kx = 0; kx < p.kw; ++kx) {
                  const int iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
                  const int ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
                  if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
                  for (int ci = 0; ci < ci_g; ++ci) {
                    const int8_t xq = d.x[((n * p.h + iy) * p.w + ix) * p.c_in + co / co_g * ci_g + ci];
                    const int8_t wq = d.weights[((ky * p.kw + kx) * ci_g + ci) * p.c_out + co];
                    real += dequantize_value(xq, in) * (wq * w_scale[co]);
                  }
                }
              const int expected = quantize_value(static_cast<float>(real), out);
              const int got = y_ref[((n * p.oh + oy) * p.ow + ox) * p.c_out + co];
              worst = std::max(worst, std::abs(got - expected));
            }
      CHECK(worst <= 1);
    }
  }
}

TEST_CASE("int8 kernels: fully_connected matches its reference") {
  std::mt19937 rng(14);
  struct Dims {
    int n, in, out;
  };
  for (Dims s : {Dims{1, 64, 10}, Dims{3, 37, 13}, Dims{2, 1280, 5}}) {
    FullyConnectedParams p{
        .n = s.n, .in = s.in, .out = s.out, .input_zero_point = -77, .output_zero_point = 12};
    p.multiplier = quantize_multiplier(40.0 / (std::sqrt(double(s.in)) * 74 * 73));
    const std::vector<int8_t> w = random_codes(size_t(s.in) * s.out, rng, -127, 127);
    const std::vector<int8_t> x = random_codes(size_t(s.n) * s.in, rng);
    std::vector<int32_t> bias(s.out);
    for (int o = 0; o < s.out; ++o) bias[o] = (o * 7919) % 20001 - 10000;
    for (const int32_t* b :
         {static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(bias.data())}) {
      std::vector<int8_t> y(size_t(s.n) * s.out), y_ref(y.size());
      fully_connected(p, w.data(), b, x.data(), y.data());
      ref::fully_connected(p, w.data(), b, x.data(), y_ref.data());
      CHECK(y == y_ref);
    }
  }
}

TEST_CASE("int8 kernels: add follows TFLite and the real sum") {
  std::mt19937 rng(15);
  SUBCASE("random scales, both orders of the larger input scale") {
    for (int trial = 0; trial < 6; ++trial) {
      const AffineQuant qa = random_quant(rng, 0.01f, 0.2f), qb = random_quant(rng, 0.01f, 0.2f);
      const AffineQuant qo = random_quant(rng, 0.02f, 0.3f);
      const AddParams p = make_add_params(qa, qb, qo);
      const double twice_max = 2 * std::max<double>(qa.scale, qb.scale);
      CHECK(p.left_shift == 20);
      CHECK(p.input1_offset == -qa.zero_point);
      CHECK(p.input2_offset == -qb.zero_point);
      CHECK(p.output_offset == qo.zero_point);
      CHECK(p.input1_multiplier.multiplier == quantize_multiplier(qa.scale / twice_max).multiplier);
      CHECK(p.input2_multiplier.shift == quantize_multiplier(qb.scale / twice_max).shift);
      CHECK(p.output_multiplier.multiplier ==
            quantize_multiplier(twice_max / ((1 << 20) * double(qo.scale))).multiplier);
      const int64_t count = 1000 + trial;  // also a tail past any vector width
      const std::vector<int8_t> a = random_codes(count, rng), b = random_codes(count, rng);
      std::vector<int8_t> y(count), y_ref(count), y_real(count);
      add(p, a.data(), b.data(), y.data(), count);
      ref::add(p, a.data(), b.data(), y_ref.data(), count);
      CHECK(y == y_ref);
      for (int64_t i = 0; i < count; ++i) {
        const float real = dequantize_value(a[i], qa) + dequantize_value(b[i], qb);
        y_real[i] = static_cast<int8_t>(quantize_value(real, qo));
      }
      CHECK(max_code_diff(y_ref, y_real) <= 1);
    }
  }
  SUBCASE("fused activation clamps") {
    const AffineQuant q{.scale = 0.05f, .zero_point = -10};
    const AddParams p = make_add_params(q, q, q, -10, 100);
    const std::vector<int8_t> a = random_codes(500, rng), b = random_codes(500, rng);
    std::vector<int8_t> y(500), y_ref(500);
    add(p, a.data(), b.data(), y.data(), 500);
    ref::add(p, a.data(), b.data(), y_ref.data(), 500);
    CHECK(y == y_ref);
    CHECK(std::all_of(y.begin(), y.end(), [](int8_t v) { return v >= -10 && v <= 100; }));
  }
}

TEST_CASE("int8 kernels: mul, elementwise and the SE broadcast, against the real product") {
  std::mt19937 rng(16);
  const AffineQuant qa = random_quant(rng, 0.02f, 0.05f);
  const AffineQuant qb{.scale = 1.0f / 256, .zero_point = -128};  // a sigmoid-like gate in [0, 1)
  const AffineQuant qo = random_quant(rng, 0.02f, 0.05f);
  const MulParams p = make_mul_params(qa, qb, qo);
  struct Dims {
    int64_t outer, inner, group;
  };
  // Same shape; SE [2, 5, 7, 24] * [2, 1, 1, 24]; an odd channel count.
  for (Dims s : {Dims{40, 33, 1}, Dims{2 * 35, 24, 35}, Dims{3 * 4, 13, 4}}) {
    const std::vector<int8_t> a = random_codes(s.outer * s.inner, rng);
    const std::vector<int8_t> b = random_codes(s.outer / s.group * s.inner, rng);
    std::vector<int8_t> y(a.size()), y_ref(a.size()), y_real(a.size());
    mul(p, a.data(), b.data(), y.data(), s.outer, s.inner, s.group);
    ref::mul(p, a.data(), b.data(), y_ref.data(), s.outer, s.inner, s.group);
    CHECK(y == y_ref);
    for (int64_t r = 0; r < s.outer; ++r)
      for (int64_t i = 0; i < s.inner; ++i) {
        const float real =
            dequantize_value(a[r * s.inner + i], qa) * dequantize_value(b[r / s.group * s.inner + i], qb);
        y_real[r * s.inner + i] = static_cast<int8_t>(quantize_value(real, qo));
      }
    CHECK(max_code_diff(y_ref, y_real) <= 1);
  }
}

TEST_CASE("int8 kernels: requantize matches the scheme's MBQM, right and left shifts") {
  // The fast kernels' inline MBQM against quant::multiply_by_quantized_multiplier,
  // from a right shift of 19 to a left shift of 4.
  std::mt19937 rng(17);
  const std::vector<int8_t> x = random_codes(4096, rng);
  for (double ratio : {1e-6, 0.003, 0.49, 0.5, 1.0, 1.7, 11.3}) {
    const AffineQuant in{.scale = 0.04f, .zero_point = 31};
    const AffineQuant out{.scale = static_cast<float>(0.04 / ratio), .zero_point = -9};
    const RequantizeParams p = make_requantize_params(in, out);
    std::vector<int8_t> y(x.size());
    requantize(p, x.data(), y.data(), static_cast<int64_t>(x.size()));
    bool same = true;
    for (size_t i = 0; i < x.size(); ++i) {
      const int32_t q =
          multiply_by_quantized_multiplier(x[i] - p.input_zero_point, p.multiplier) + p.output_zero_point;
      same = same && y[i] == static_cast<int8_t>(std::clamp(q, -128, 127));
    }
    CHECK_MESSAGE(same, "ratio " << ratio);
  }
}

namespace {

// Every (a, b) pair of codes in PairTable's order: a = i / 256 - 128, b = i % 256 - 128.
struct EveryPair {
  std::vector<int8_t> a, b;
  EveryPair() : a(PairTable::kSize), b(PairTable::kSize) {
    for (int i = 0; i < PairTable::kSize; ++i) {
      a[i] = static_cast<int8_t>(i / 256 - 128);
      b[i] = static_cast<int8_t>(i % 256 - 128);
    }
  }
};

}  // namespace

TEST_CASE("int8 kernels: ADD with float32 rescaling is ONNX Runtime's formula on every pair of codes") {
  // offset 0: on the int8 codes (Rescaling::float32); offset 128: on uint8
  // codes, as ONNX Runtime runs it on x86 (Rescaling::onnxruntime).
  std::mt19937 rng(26);
  const EveryPair pairs;
  const std::vector<int8_t>&a = pairs.a, &b = pairs.b;
  std::vector<int8_t> y(PairTable::kSize), y_int8(PairTable::kSize), y_fixed(PairTable::kSize);
  std::uniform_real_distribution<float> log_ratio(-3, 3);
  std::uniform_int_distribution<int> zero(-128, 127);
  int64_t uint8_differs = 0;  // pairs where the uint8 form rounds otherwise than the int8 form
  for (int trial = 0; trial < 24; ++trial) {
    CAPTURE(trial);
    const float s = 0.05f;
    AffineQuant qa{.scale = s * std::exp2(log_ratio(rng)), .zero_point = zero(rng)};
    AffineQuant qb{.scale = s * std::exp2(log_ratio(rng)), .zero_point = zero(rng)};
    AffineQuant qo{.scale = s * std::exp2(log_ratio(rng) / 2), .zero_point = zero(rng)};
    if (trial % 8 == 3) qb.scale = qa.scale, qo.scale = 2 * qa.scale;  // exact ties: to even
    const int32_t lo = trial % 3 == 1 ? qo.zero_point : -128;          // a fused ReLU
    ref::add(make_add_params(qa, qb, qo, lo, 127), a.data(), b.data(), y_fixed.data(), PairTable::kSize);
    for (const int32_t offset : {0, 128}) {
      CAPTURE(offset);
      const AddFloat32Params p = make_add_float32_params(qa, qb, qo, lo, 127, offset);
      const PairTable add = PairTable::add(p);
      add.run(a.data(), b.data(), y.data(), PairTable::kSize);
      // MLAS's QLinearAdd (AVX2) on codes + offset: ratios in float32,
      // fixed = zo - fma(ra, za, rb * zb), then fma(a, ra, fma(b, rb, fixed))
      // converted to nearest-even, saturated; then the fused activation's clamp.
      const float ra = qa.scale / qo.scale, rb = qb.scale / qo.scale;
      const float fixed = float(qo.zero_point + offset) -
                          std::fma(ra, float(qa.zero_point + offset), rb * float(qb.zero_point + offset));
      int64_t differ = 0;
      for (int i = 0; i < PairTable::kSize; ++i) {
        const float t = std::fma(float(a[i] + offset), ra, std::fma(float(b[i] + offset), rb, fixed));
        const int want = std::clamp(static_cast<int>(std::nearbyint(t)) - offset, lo, 127);
        if (y[i] != want) {
          FAIL_CHECK("pair (" << int{a[i]} << ", " << int{b[i]} << "): " << int{y[i]} << " != " << want);
          break;
        }
        // The real sum in output steps: within one step (rounding of t and of the ratios).
        const double real = (double(a[i]) - qa.zero_point) * qa.scale / qo.scale +
                            (double(b[i]) - qb.zero_point) * qb.scale / qo.scale + qo.zero_point;
        const double clamped = std::clamp(real, double(lo), 127.0);
        if (std::abs(y[i] - clamped) > 1.0) {
          FAIL_CHECK("pair (" << int{a[i]} << ", " << int{b[i]} << "): " << int{y[i]} << " vs real " << real);
          break;
        }
        differ += y[i] != y_fixed[i];
        if (offset == 128) uint8_differs += y[i] != y_int8[i];
      }
      CHECK(add.at(a[4321], b[4321]) == y[4321]);
      // TFLite's fixed point differs only on near-ties: a small share of pairs
      // (on the tie grids, half of all pairs are ties, which it rounds up).
      if (trial % 8 != 3) CHECK(differ < PairTable::kSize / 100);
      if (offset == 0) y_int8 = y;
    }
  }
  // The two forms differ on near-ties only: some pairs, but few.
  CHECK(uint8_differs > 0);
  CHECK(uint8_differs < 24 * PairTable::kSize / 1000);
  MESSAGE("uint8 vs int8 ADD: " << uint8_differs << " of " << 24 * PairTable::kSize << " pairs differ");
  // The SE broadcast form and a tail, as mul's.
  const AddFloat32Params p = make_add_float32_params(random_quant(rng), random_quant(rng), random_quant(rng), -128, 127, 128);
  const int64_t outer = 6, inner = 37, group = 3;
  const std::vector<int8_t> x = random_codes(outer * inner, rng), g = random_codes(outer / group * inner, rng);
  std::vector<int8_t> out(x.size());
  PairTable::add(p).run(x.data(), g.data(), out.data(), outer, inner, group);
  for (int64_t r = 0; r < outer; ++r)
    for (int64_t i = 0; i < inner; ++i) {
      int8_t want = 0;
      add_float32(p, &x[r * inner + i], &g[(r / group) * inner + i], &want, 1);
      CHECK(out[r * inner + i] == want);
    }
}

TEST_CASE("int8 kernels: PairTable is add and mul on every pair of codes") {
  std::mt19937 rng(25);
  const EveryPair pairs;
  const std::vector<int8_t>&a = pairs.a, &b = pairs.b;
  std::vector<int8_t> y(PairTable::kSize), y_ref(PairTable::kSize);
  // ADD runs a float shortcut away from rounding ties (see add_screen in
  // int8_kernels.cpp): every pair, over many grids — scale ratios from 1/8
  // to 8, fused ReLUs — and grids whose sums fall on ties (equal scales,
  // output at twice the scale: half the pairs are exact ties, which the
  // kernel must leave to the table). Both forms of the shortcut: AVX-512
  // (where the CPU has it) and AVX2.
  std::uniform_real_distribution<float> log_ratio(-3, 3);
  std::uniform_int_distribution<int> zero(-128, 127);
  for (int trial = 0; trial < 320; ++trial) {
    CAPTURE(trial);
    set_avx512_for_testing(trial < 160);
    const float s = 0.05f;
    AffineQuant qa{.scale = s * std::exp2(log_ratio(rng)), .zero_point = zero(rng)};
    AffineQuant qb{.scale = s * std::exp2(log_ratio(rng)), .zero_point = zero(rng)};
    AffineQuant qo{.scale = s * std::exp2(log_ratio(rng) / 2), .zero_point = zero(rng)};
    if (trial % 16 == 1) qb.scale = qa.scale;
    if (trial % 16 == 2) qb.scale = qo.scale = qa.scale;
    if (trial % 16 == 3) qb.scale = qa.scale, qo.scale = 2 * qa.scale;
    if (trial % 16 == 4) qb.scale = qa.scale / 2, qo.scale = qa.scale;
    const int32_t lo = trial % 3 == 1 ? qo.zero_point : -128;  // a fused ReLU
    const AddParams pa = make_add_params(qa, qb, qo, lo, 127);
    const PairTable add_table = PairTable::add(pa);
    add_table.run(a.data(), b.data(), y.data(), PairTable::kSize);
    ref::add(pa, a.data(), b.data(), y_ref.data(), PairTable::kSize);
    REQUIRE(y == y_ref);
    CHECK(add_table.at(a[12345], b[12345]) == y_ref[12345]);
    if (trial % 40 == 0) {
      const MulParams pm = make_mul_params(qa, qb, qo, lo, 127);
      PairTable::mul(pm).run(a.data(), b.data(), y.data(), PairTable::kSize);
      ref::mul(pm, a.data(), b.data(), y_ref.data(), 1, PairTable::kSize, 1);
      CHECK(y == y_ref);
    }
  }
  set_avx512_for_testing(true);
  SUBCASE("random codes, a tail, the SE broadcast") {
    const MulParams pm = make_mul_params(random_quant(rng), random_quant(rng), random_quant(rng));
    const int64_t outer = 2 * 35, inner = 37, group = 35;  // [2, 5, 7, 37] * [2, 1, 1, 37]
    const std::vector<int8_t> x = random_codes(outer * inner, rng), g = random_codes(outer / group * inner, rng);
    std::vector<int8_t> out(x.size()), out_ref(x.size());
    PairTable::mul(pm).run(x.data(), g.data(), out.data(), outer, inner, group);
    ref::mul(pm, x.data(), g.data(), out_ref.data(), outer, inner, group);
    CHECK(out == out_ref);
  }
}

TEST_CASE("int8 kernels: lookup of random codes, and make_requantize_table") {
  std::mt19937 rng(26);
  const std::vector<int8_t> table = random_codes(256, rng);
  for (int64_t count : {1, 31, 32, 1000, 70001}) {  // tails, and past the threads' block
    const std::vector<int8_t> x = random_codes(count, rng);
    std::vector<int8_t> y(count);
    lookup(table.data(), x.data(), y.data(), count);
    bool same = true;
    for (int64_t i = 0; i < count; ++i) same = same && y[i] == table[x[i] + 128];
    CHECK_MESSAGE(same, count << " codes");
  }
  const RequantizeParams p = make_requantize_params({.scale = 0.03f, .zero_point = 17}, {.scale = 0.05f, .zero_point = -40});
  const std::vector<int8_t> t = make_requantize_table(p);
  std::vector<int8_t> codes(256), y(256);
  for (int q = -128; q <= 127; ++q) codes[q + 128] = static_cast<int8_t>(q);
  requantize(p, codes.data(), y.data(), 256);
  CHECK(t == y);
}

TEST_CASE("int8 kernels: lookup through make_table equals quantize(f(dequantize))") {
  const AffineQuant in{.scale = 0.05f, .zero_point = -20}, out{.scale = 0.03f, .zero_point = -90};
  auto hard_swish = [](float v) { return v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f; };
  const std::vector<int8_t> table = make_table(in, out, hard_swish);
  REQUIRE(table.size() == 256);
  std::vector<int8_t> x(256), y(256);
  for (int q = -128; q <= 127; ++q) x[q + 128] = static_cast<int8_t>(q);
  lookup(table.data(), x.data(), y.data(), 256);
  for (int q = -128; q <= 127; ++q)
    CHECK(y[q + 128] == quantize_value(hard_swish(dequantize_value(q, in)), out));
}

TEST_CASE("int8 kernels: mean_hw matches its reference and the real mean") {
  std::mt19937 rng(18);
  struct Dims {
    int n, h, w, c;
  };
  for (Dims s : {Dims{1, 7, 7, 32}, Dims{2, 5, 3, 13}, Dims{1, 1, 1, 8}}) {
    const AffineQuant in = random_quant(rng), out = random_quant(rng, 0.005f, 0.05f);
    const MeanParams p = make_mean_params(s.n, s.h, s.w, s.c, in, out);
    const std::vector<int8_t> x = random_codes(size_t(s.n) * s.h * s.w * s.c, rng);
    std::vector<int8_t> y(size_t(s.n) * s.c), y_ref(y.size()), y_real(y.size());
    mean_hw(p, x.data(), y.data());
    ref::mean_hw(p, x.data(), y_ref.data());
    CHECK(y == y_ref);
    for (int n = 0; n < s.n; ++n)
      for (int c = 0; c < s.c; ++c) {
        double sum = 0;
        for (int i = 0; i < s.h * s.w; ++i)
          sum += dequantize_value(x[(size_t(n) * s.h * s.w + i) * s.c + c], in);
        y_real[size_t(n) * s.c + c] =
            static_cast<int8_t>(quantize_value(static_cast<float>(sum / (s.h * s.w)), out));
      }
    CHECK(max_code_diff(y_ref, y_real) <= 1);
  }
}

namespace {

PoolParams pool(int n, int h, int w, int c, int k, int stride, bool same) {
  ops::Padding pad;
  if (same) pad = ops::tf_same_padding(h, w, k, k, stride, stride);
  return {.n = n, .h = h, .w = w, .c = c,
          .oh = static_cast<int>(ops::conv_out_size(h, k, stride, 1, pad.top, pad.bottom)),
          .ow = static_cast<int>(ops::conv_out_size(w, k, stride, 1, pad.left, pad.right)),
          .kh = k, .kw = k, .stride_h = stride, .stride_w = stride, .pad_top = pad.top, .pad_left = pad.left};
}

}  // namespace

TEST_CASE("int8 kernels: avg_pool and max_pool match their references") {
  std::mt19937 rng(19);
  const std::vector<std::pair<std::string, PoolParams>> cases = {
      {"3x3 stride 1 SAME", pool(1, 7, 6, 16, 3, 1, true)},
      {"2x2 stride 2", pool(2, 8, 8, 13, 2, 2, false)},
      {"3x3 stride 2 SAME, extra bottom/right", pool(1, 8, 10, 8, 3, 2, true)},
      {"5x5 stride 1 SAME", pool(1, 6, 6, 5, 5, 1, true)},
  };
  for (const auto& [name, base] : cases) {
    SUBCASE(name.c_str()) {
      PoolParams p = base;
      const AffineQuant in = random_quant(rng), out = random_quant(rng);
      p.input_zero_point = in.zero_point;
      p.output_zero_point = out.zero_point;
      p.input_scale = in.scale;
      p.output_scale = out.scale;
      const std::vector<int8_t> x = random_codes(size_t(p.n) * p.h * p.w * p.c, rng);
      const size_t ny = size_t(p.n) * p.oh * p.ow * p.c;
      std::vector<int8_t> y(ny), y_ref(ny), y_real(ny);
      avg_pool(p, x.data(), y.data());
      ref::avg_pool(p, x.data(), y_ref.data());
      CHECK(y == y_ref);
      // Real mean over the window's pixels inside the image.
      for (int n = 0; n < p.n; ++n)
        for (int oy = 0; oy < p.oh; ++oy)
          for (int ox = 0; ox < p.ow; ++ox)
            for (int c = 0; c < p.c; ++c) {
              double sum = 0;
              int count = 0;
              for (int iy = oy * p.stride_h - p.pad_top; iy < oy * p.stride_h - p.pad_top + p.kh; ++iy)
                for (int ix = ox * p.stride_w - p.pad_left; ix < ox * p.stride_w - p.pad_left + p.kw; ++ix)
                  if (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w) {
                    sum += dequantize_value(x[((size_t(n) * p.h + iy) * p.w + ix) * p.c + c], in);
                    ++count;
                  }
              y_real[((size_t(n) * p.oh + oy) * p.ow + ox) * p.c + c] =
                  static_cast<int8_t>(quantize_value(static_cast<float>(sum / count), out));
            }
      CHECK(max_code_diff(y_ref, y_real) <= 1);

      max_pool(p, x.data(), y.data());
      ref::max_pool(p, x.data(), y_ref.data());
      CHECK(y == y_ref);
    }
  }
}

TEST_CASE("int8 kernels: resize_bilinear matches its reference and ops::resize_bilinear") {
  std::mt19937 rng(20);
  struct Dims {
    int n, h, w, c, oh, ow;
  };
  // Upsample x2, upsample by odd factors, downsample, identity.
  for (Dims s : {Dims{1, 7, 5, 16, 14, 10}, Dims{2, 5, 9, 13, 33, 17}, Dims{1, 16, 16, 8, 5, 7},
                  Dims{1, 4, 6, 3, 4, 6}}) {
    // Similar scales: the 10-bit geometry then stays within a code of the float one.
    const AffineQuant in = random_quant(rng, 0.03f, 0.04f), out = random_quant(rng, 0.03f, 0.04f);
    const ResizeParams p = make_resize_params(s.n, s.h, s.w, s.c, s.oh, s.ow, in, out);
    const std::vector<int8_t> x = random_codes(size_t(s.n) * s.h * s.w * s.c, rng);
    const size_t ny = size_t(s.n) * s.oh * s.ow * s.c;
    std::vector<int8_t> y(ny), y_ref(ny), y_real(ny);
    resize_bilinear(p, x.data(), y.data());
    ref::resize_bilinear(p, x.data(), y_ref.data());
    CHECK(y == y_ref);
    Tensor xf = Tensor::empty({s.n, s.h, s.w, s.c});
    dequantize(x.data(), in, xf.data<float>(), xf.numel());
    const Tensor yf = ops::resize_bilinear(xf, s.oh, s.ow);
    quantize(yf.data<float>(), out, y_real.data(), yf.numel());
    CHECK(max_code_diff(y_ref, y_real) <= 1);
  }
}

TEST_CASE("int8 kernels: concat requantizes each input to the output") {
  std::mt19937 rng(21);
  const AffineQuant out{.scale = 0.04f, .zero_point = -3};
  const AffineQuant other{.scale = 0.07f, .zero_point = 25};
  const int64_t rows = 30;
  const std::vector<int8_t> a = random_codes(rows * 5, rng), b = random_codes(rows * 8, rng),
                            c = random_codes(rows * 3, rng);
  const std::vector<ConcatInput> inputs = {{.data = a.data(), .c = 5, .quant = out},
                                           {.data = b.data(), .c = 8, .quant = other},
                                           {.data = c.data(), .c = 3, .quant = out}};
  std::vector<int8_t> y(rows * 16);
  concat(inputs, out, rows, y.data());
  std::vector<int8_t> b_requant(b.size());
  requantize(make_requantize_params(other, out), b.data(), b_requant.data(), static_cast<int64_t>(b.size()));
  bool same = true;
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < 5; ++i) same = same && y[r * 16 + i] == a[r * 5 + i];
    for (int i = 0; i < 8; ++i) same = same && y[r * 16 + 5 + i] == b_requant[r * 8 + i];
    for (int i = 0; i < 3; ++i) same = same && y[r * 16 + 13 + i] == c[r * 3 + i];
  }
  CHECK(same);
}

TEST_CASE("int8 kernels: quantize and dequantize round-trip") {
  const AffineQuant q{.scale = 0.02f, .zero_point = 14};
  std::vector<int8_t> codes(256), back(256);
  for (int v = -128; v <= 127; ++v) codes[v + 128] = static_cast<int8_t>(v);
  std::vector<float> real(256);
  dequantize(codes.data(), q, real.data(), 256);
  quantize(real.data(), q, back.data(), 256);
  CHECK(back == codes);
  // Reals inside the range come back within half a step; outside, clamped.
  const std::vector<float> xs = {-2.8f, -0.013f, 0.0f, 0.011f, 0.5f, 2.2f, -100.0f, 100.0f};
  std::vector<int8_t> qs(xs.size());
  quantize(xs.data(), q, qs.data(), static_cast<int64_t>(xs.size()));
  CHECK(qs[2] == 14);
  CHECK(qs[6] == -128);
  CHECK(qs[7] == 127);
  for (size_t i = 0; i < 6; ++i)
    CHECK(std::abs(dequantize_value(qs[i], q) - xs[i]) <= 0.5f * q.scale + 1e-6f);
  // The 8-lane loop equals quantize_value everywhere: random reals, exact
  // half-step ties of both signs (rounded away from zero), the float just
  // below a tie, huge values, and a tail.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  std::vector<float> many;
  for (int i = 0; i < 4000; ++i) many.push_back(u(rng));
  for (int k = -300; k <= 300; ++k) {
    const float tie = (static_cast<float>(k) + 0.5f) * 0.25f;  // scale 0.25: x / scale is exactly k + 0.5
    many.push_back(tie);
    many.push_back(std::nextafter(tie, 0.0f));
  }
  many.insert(many.end(), {1e30f, -1e30f, 0.0f, -0.0f, 3.0f});
  for (const AffineQuant& p : {AffineQuant{.scale = 0.25f, .zero_point = -3}, AffineQuant{.scale = 0.0173f, .zero_point = 40}}) {
    std::vector<int8_t> fast(many.size());
    quantize(many.data(), p, fast.data(), static_cast<int64_t>(many.size()));
    int mismatches = 0;
    for (size_t i = 0; i < many.size(); ++i) mismatches += fast[i] != quantize_value(many[i], p);
    CHECK(mismatches == 0);
  }
  CHECK(quantize_value(0.125f, {.scale = 0.25f, .zero_point = 0}) == 1);    // 0.5 -> 1
  CHECK(quantize_value(-0.125f, {.scale = 0.25f, .zero_point = 0}) == -1);  // -0.5 -> -1
}

// ---- the runtime --------------------------------------------------------------
//
// Int8Model::run on a hand-built graph with every op type, against the
// naive references applied op by op to the codes run() returns: the
// runtime's slow twin. Values live in shared buffers (a value's buffer is
// reused after its last reader), so a run without codes is compared too.

namespace {

Tensor s8_tensor(const Shape& s, const std::vector<int8_t>& v) {
  Tensor t = Tensor::empty(s, DType::s8);
  std::copy(v.begin(), v.end(), t.data<int8_t>());
  return t;
}

struct GraphBuilder {
  std::mt19937 rng{27};
  std::vector<Int8Value> values;
  std::vector<Int8Op> ops;

  int value(const std::string& name, std::vector<int64_t> shape) {
    AffineQuant q = random_quant(rng, 0.02f, 0.08f);
    q.nudged_min = static_cast<float>(q.qmin - q.zero_point) * q.scale;
    q.nudged_max = static_cast<float>(q.qmax - q.zero_point) * q.scale;
    values.push_back({name, std::move(shape), q});
    return static_cast<int>(values.size()) - 1;
  }
  int op(Int8Op o, const std::string& name, std::vector<int64_t> shape) {
    const int v = value(name, std::move(shape));
    o.output = v;
    o.source = name;
    ops.push_back(std::move(o));
    return v;
  }
  // Random weights of `shape`, per-channel scales and bias for c_out channels.
  void weights(Int8Op& o, const Shape& shape, int64_t c_out) {
    o.weights = s8_tensor(shape, random_codes(shape.numel(), rng, -127, 127));
    o.weight_scales = Tensor::empty({c_out});
    o.bias = Tensor::empty({c_out}, DType::s32);
    std::uniform_real_distribution<float> ws(0.0005f, 0.002f);
    std::uniform_int_distribution<int32_t> b(-3000, 3000);
    for (int64_t c = 0; c < c_out; ++c) {
      o.weight_scales.data<float>()[c] = ws(rng);
      o.bias.data<int32_t>()[c] = b(rng);
    }
  }
};

Int8Model test_graph() {
  GraphBuilder g;
  auto conv_op = [&](int in, int k, int stride, int pad, int groups, int64_t c_out, int32_t act_min) {
    const auto& s = g.values[in].shape;
    Int8Op o{.type = Int8OpType::conv, .inputs = {in}, .act_min = act_min};
    o.geometry = {.kh = k, .kw = k, .stride_h = stride, .stride_w = stride, .pad_top = pad, .pad_left = pad,
                  .groups = groups};
    g.weights(o, {k, k, s[2] / groups, c_out}, c_out);
    return o;
  };
  const int x = g.op({.type = Int8OpType::quantize}, "input_q", {12, 12, 3});
  const int c1 = g.op(conv_op(x, 3, 1, 1, 1, 16, -100), "conv", {12, 12, 16});
  const int dw = g.op(conv_op(c1, 3, 1, 1, 16, 16, -128), "depthwise", {12, 12, 16});
  const int sum = g.op({.type = Int8OpType::add, .inputs = {c1, dw}, .act_min = -20}, "add", {12, 12, 16});
  Int8Op lut{.type = Int8OpType::lookup, .inputs = {sum}};
  lut.table = s8_tensor({256}, random_codes(256, g.rng));
  const int act = g.op(lut, "lookup", {12, 12, 16});
  Int8Op max_pool{.type = Int8OpType::max_pool, .inputs = {act}};
  max_pool.geometry = {.kh = 2, .kw = 2, .stride_h = 2, .stride_w = 2};
  const int pooled = g.op(max_pool, "max_pool", {6, 6, 16});
  g.values[pooled].quant = g.values[act].quant;  // max pooling keeps its input's grid
  Int8Op avg_pool{.type = Int8OpType::avg_pool, .inputs = {pooled}};
  avg_pool.geometry = {.kh = 3, .kw = 3, .pad_top = 1, .pad_left = 1};
  const int smooth = g.op(avg_pool, "avg_pool", {6, 6, 16});
  const int gate = g.op({.type = Int8OpType::mean, .inputs = {smooth}}, "mean", {1, 1, 16});
  const int gated = g.op({.type = Int8OpType::mul, .inputs = {smooth, gate}}, "mul", {6, 6, 16});
  const int up = g.op({.type = Int8OpType::resize, .inputs = {gated}}, "resize", {12, 12, 16});
  const int cat = g.op({.type = Int8OpType::concat, .inputs = {up, act}}, "concat", {12, 12, 32});
  const int req = g.op({.type = Int8OpType::requantize, .inputs = {cat}}, "requantize", {12, 12, 32});
  const int c2 = g.op(conv_op(req, 1, 1, 0, 1, 8, -128), "conv_1x1", {12, 12, 8});
  const int m2 = g.op({.type = Int8OpType::mean, .inputs = {c2}}, "mean2", {1, 1, 8});
  Int8Op fc{.type = Int8OpType::fully_connected, .inputs = {m2}};
  g.weights(fc, {8, 5}, 5);
  fc.weight_scales = Tensor::full({1}, 0.004f);
  const int out = g.op(fc, "fc", {5});
  return Int8Model(g.values, g.ops, {"input", {12, 12, 3}, {}}, out);
}

// Op `i` by the naive references, from the codes of its inputs.
Tensor reference_op(const Int8Model& m, size_t i, const std::vector<Tensor>& codes, const Tensor& images) {
  const Int8Op& o = m.ops()[i];
  const auto& vals = m.values();
  const int64_t n = images.dim(0);
  const Int8Value& out = vals[o.output];
  std::vector<int64_t> dims{n};
  for (int64_t d : out.shape) dims.push_back(d);
  Tensor y = Tensor::empty(Shape(dims), DType::s8);
  int8_t* py = y.data<int8_t>();
  auto in = [&](size_t k) { return codes[o.inputs[k]].data<int8_t>(); };
  auto shape = [&](size_t k) { return vals[o.inputs[k]].shape; };
  auto requant = [](int8_t v, const AffineQuant& from, const AffineQuant& to) {
    const RequantizeParams p = make_requantize_params(from, to);
    const int32_t q = multiply_by_quantized_multiplier(v - p.input_zero_point, p.multiplier) + p.output_zero_point;
    return static_cast<int8_t>(std::clamp(q, -128, 127));
  };
  switch (o.type) {
    case Int8OpType::quantize:
      for (int64_t e = 0; e < y.numel(); ++e) py[e] = static_cast<int8_t>(simulation_code(images.data<float>()[e], out.quant));
      break;
    case Int8OpType::conv: {
      const Int8Geometry& g = o.geometry;
      const AffineQuant& iq = vals[o.inputs[0]].quant;
      const ConvParams p{.n = static_cast<int>(n), .h = static_cast<int>(shape(0)[0]), .w = static_cast<int>(shape(0)[1]),
                         .c_in = static_cast<int>(shape(0)[2]), .oh = static_cast<int>(out.shape[0]),
                         .ow = static_cast<int>(out.shape[1]), .c_out = static_cast<int>(out.shape[2]), .kh = g.kh,
                         .kw = g.kw, .stride_h = g.stride_h, .stride_w = g.stride_w, .pad_top = g.pad_top,
                         .pad_left = g.pad_left, .groups = g.groups, .input_zero_point = iq.zero_point,
                         .output_zero_point = out.quant.zero_point, .act_min = o.act_min, .act_max = o.act_max};
      std::vector<QuantizedMultiplier> mult;
      for (int c = 0; c < p.c_out; ++c)
        mult.push_back(quantize_multiplier(static_cast<double>(iq.scale) * o.weight_scales.data<float>()[c] / out.quant.scale));
      ref::conv2d(p, o.weights.data<int8_t>(), o.bias.data<int32_t>(), mult.data(), in(0), py);
      break;
    }
    case Int8OpType::fully_connected: {
      const AffineQuant& iq = vals[o.inputs[0]].quant;
      FullyConnectedParams p{.n = static_cast<int>(n), .in = static_cast<int>(o.weights.dim(0)),
                             .out = static_cast<int>(o.weights.dim(1)), .input_zero_point = iq.zero_point,
                             .output_zero_point = out.quant.zero_point, .act_min = o.act_min, .act_max = o.act_max};
      p.multiplier = quantize_multiplier(static_cast<double>(iq.scale) * o.weight_scales.data<float>()[0] / out.quant.scale);
      ref::fully_connected(p, o.weights.data<int8_t>(), o.bias.data<int32_t>(), in(0), py);
      break;
    }
    case Int8OpType::add:
      ref::add(make_add_params(vals[o.inputs[0]].quant, vals[o.inputs[1]].quant, out.quant, o.act_min, o.act_max),
               in(0), in(1), py, y.numel());
      break;
    case Int8OpType::mul: {
      const bool broadcast = shape(1) != shape(0);
      ref::mul(make_mul_params(vals[o.inputs[0]].quant, vals[o.inputs[1]].quant, out.quant, o.act_min, o.act_max),
               in(0), in(1), py, y.numel() / shape(0)[2], shape(0)[2], broadcast ? shape(0)[0] * shape(0)[1] : 1);
      break;
    }
    case Int8OpType::lookup:
      for (int64_t e = 0; e < y.numel(); ++e) py[e] = o.table.data<int8_t>()[in(0)[e] + 128];
      break;
    case Int8OpType::requantize:
      for (int64_t e = 0; e < y.numel(); ++e) py[e] = requant(in(0)[e], vals[o.inputs[0]].quant, out.quant);
      break;
    case Int8OpType::mean:
      ref::mean_hw(make_mean_params(static_cast<int>(n), static_cast<int>(shape(0)[0]), static_cast<int>(shape(0)[1]),
                                    static_cast<int>(shape(0)[2]), vals[o.inputs[0]].quant, out.quant),
                   in(0), py);
      break;
    case Int8OpType::avg_pool:
    case Int8OpType::max_pool: {
      const Int8Geometry& g = o.geometry;
      const PoolParams p{.n = static_cast<int>(n), .h = static_cast<int>(shape(0)[0]), .w = static_cast<int>(shape(0)[1]),
                         .c = static_cast<int>(shape(0)[2]), .oh = static_cast<int>(out.shape[0]),
                         .ow = static_cast<int>(out.shape[1]), .kh = g.kh, .kw = g.kw, .stride_h = g.stride_h,
                         .stride_w = g.stride_w, .pad_top = g.pad_top, .pad_left = g.pad_left,
                         .input_zero_point = vals[o.inputs[0]].quant.zero_point,
                         .output_zero_point = out.quant.zero_point, .input_scale = vals[o.inputs[0]].quant.scale,
                         .output_scale = out.quant.scale};
      if (o.type == Int8OpType::avg_pool)
        ref::avg_pool(p, in(0), py);
      else
        ref::max_pool(p, in(0), py);
      break;
    }
    case Int8OpType::resize:
      ref::resize_bilinear(make_resize_params(static_cast<int>(n), static_cast<int>(shape(0)[0]),
                                              static_cast<int>(shape(0)[1]), static_cast<int>(shape(0)[2]),
                                              static_cast<int>(out.shape[0]), static_cast<int>(out.shape[1]),
                                              vals[o.inputs[0]].quant, out.quant),
                           in(0), py);
      break;
    case Int8OpType::concat: {
      const int64_t c_out = out.shape[2], rows = y.numel() / c_out;
      int64_t col = 0;
      for (size_t k = 0; k < o.inputs.size(); ++k) {
        const int64_t c = shape(k)[2];
        const AffineQuant& q = vals[o.inputs[k]].quant;
        const bool same = q.scale == out.quant.scale && q.zero_point == out.quant.zero_point;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < c; ++j)
            py[r * c_out + col + j] = same ? in(k)[r * c + j] : requant(in(k)[r * c + j], q, out.quant);
        col += c;
      }
      break;
    }
  }
  return y;
}

bool same_codes(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::equal(a.data<int8_t>(), a.data<int8_t>() + a.numel(), b.data<int8_t>());
}

}  // namespace

TEST_CASE("int8 runtime: every op equals its naive reference; shared buffers change nothing") {
  Int8Model m = test_graph();
  std::mt19937 rng(28);
  // The AVX-512 forms (input quantization, the pointwise and depthwise
  // kernels) where the CPU has them, and the others.
  for (const bool avx512 : {true, false})
  for (int64_t batch : {1, 2}) {
    set_avx512_for_testing(avx512);
    CAPTURE(avx512);
    CAPTURE(batch);
    for (int trial = 0; trial < 2; ++trial) {
      // Images across the input grid and past it (clamped); some exactly on code boundaries.
      Tensor images = Tensor::randn({batch, 12, 12, 3}, rng, 2.5f);
      const AffineQuant& iq = m.values()[0].quant;
      for (int64_t e = 0; e < images.numel(); e += 7)
        images.data<float>()[e] = iq.nudged_min + (static_cast<float>(e % 256) + 0.5f) * iq.scale;
      images.data<float>()[3] = std::numeric_limits<float>::infinity();
      images.data<float>()[5] = -std::numeric_limits<float>::infinity();
      std::vector<Tensor> codes;
      const Tensor with_codes = m.run(images, &codes);
      REQUIRE(codes.size() == m.values().size());
      for (size_t i = 0; i < m.ops().size(); ++i) {
        CAPTURE(m.ops()[i].source);
        CHECK(same_codes(codes[m.ops()[i].output], reference_op(m, i, codes, images)));
        // execute() (what the per-layer comparison runs) agrees too.
        CHECK(same_codes(codes[m.ops()[i].output], m.execute(i, codes, images)));
      }
      const Tensor plain = m.run(images);
      REQUIRE(plain.numel() == with_codes.numel());
      CHECK(std::equal(plain.data<float>(), plain.data<float>() + plain.numel(), with_codes.data<float>()));
    }
  }
  set_avx512_for_testing(true);
}

TEST_CASE("int8 runtime: the profile has every op type that ran") {
  Int8Model m = test_graph();
  std::mt19937 rng(29);
  const Tensor images = Tensor::randn({1, 12, 12, 3}, rng);
  m.run(images);
  CHECK(m.profile().empty());
  m.set_profiling(true);
  m.run(images);
  m.run(images);
  CHECK(m.profiled_runs() == 2);
  const auto profile = m.profile();
  for (const char* type : {"quantize", "conv", "conv_depthwise", "conv_1x1", "fully_connected", "add", "mul",
                           "lookup", "requantize", "mean", "avg_pool", "max_pool", "resize", "concat", "dequantize"}) {
    CAPTURE(type);
    REQUIRE(profile.count(type) == 1);
    CHECK(profile.at(type) >= 0.0);
  }
  CHECK(profile.size() == 15);
  m.set_profiling(false);
  m.run(images);
  CHECK(m.profiled_runs() == 2);
}
