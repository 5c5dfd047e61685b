// Integer kernels of the int8 runtime (quant/int8_kernels.h). The fast
// versions come first, the naive references (namespace ref) last; the tests
// compare the two byte for byte.
//
// The fast loops use AVX2 intrinsics (x86-64-v3 is bonsai's baseline ISA):
// requantization needs 32x32→64-bit products, which the compiler vectorises
// poorly on its own.
#include "quant/int8_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "core/check.h"
#include "core/dnnl_util.h"

// Full unrolling of the kernels' small fixed loops, for GCC: unrolled, it
// keeps each tile's accumulators in registers. Clang (the sanitizer build)
// leaves them rolled: unrolled and instrumented, this file took 14 minutes
// to compile there.
#define BONSAI_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define BONSAI_UNROLL(n)
#else
#define BONSAI_UNROLL(n) BONSAI_PRAGMA(GCC unroll n)
#endif

namespace bonsai::quant::int8 {

using dnnl::memory;
namespace du = dnnl_util;

namespace {

constexpr int32_t kInt32Min = std::numeric_limits<int32_t>::min();

int32_t clamp_code(int32_t v, int32_t lo, int32_t hi) { return std::min(std::max(v, lo), hi); }

bool avx512_allowed = true;  // set_avx512_for_testing

}  // namespace

int32_t rescale_float32(int32_t x, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
  // Clamped in float first (as ONNX Runtime does), so no product overflows the conversion.
  const float f = std::min(std::max(static_cast<float>(x) * scale, static_cast<float>(lo - zero_point)),
                           static_cast<float>(hi - zero_point));
  return static_cast<int32_t>(std::nearbyint(f)) + zero_point;  // the default rounding: to nearest, ties to even
}

void set_avx512_for_testing(bool allowed) { avx512_allowed = allowed; }

const char* rescaling_name(Rescaling r) {
  switch (r) {
    case Rescaling::fixed_point: return "fixed_point";
    case Rescaling::float32: return "float32";
    case Rescaling::onnxruntime: return "onnxruntime";
  }
  return "?";
}

Rescaling rescaling_from_name(const std::string& name) {
  for (Rescaling r : {Rescaling::fixed_point, Rescaling::float32, Rescaling::onnxruntime})
    if (name == rescaling_name(r)) return r;
  BONSAI_CHECK(false, "unknown int8 rescaling '" + name + "' (fixed_point, float32 or onnxruntime)");
  return Rescaling::fixed_point;
}

float float32_scale(float input_scale, float weight_scale, float output_scale) {
  const float product = input_scale * weight_scale;  // rounded to float32 here, as ORT and XNNPACK do
  return product / output_scale;
}

namespace {

// ---- requantization, one value and eight at a time ------------------------------

// A QuantizedMultiplier unpacked into the shifts MBQM applies.
struct Rescale {
  int32_t multiplier = 0, left_shift = 0, right_shift = 0;
};

Rescale unpack(const QuantizedMultiplier& m) {
  return {.multiplier = m.multiplier,
          .left_shift = std::max(m.shift, 0),
          .right_shift = std::max(-m.shift, 0)};
}

// quant::multiply_by_quantized_multiplier (single rounding), bit for bit
// wherever |x * 2^left_shift| < 2^30 (every accumulator here), in the form
// the 8-lane version computes. For the product p = x' * multiplier and a
// right shift rs >= 1,
//   floor((p + 2^(30+rs)) / 2^(31+rs)) = floor((floor(p / 2^31) + 2^(rs-1)) / 2^rs),
// nested floors of divisions by powers of two composing exactly; rs = 0 is
// rs = 1 with x' doubled. floor(p / 2^31) is bits 31..62 of p, so both
// steps run on 32-bit lanes with per-multiplier constants: a left shift,
// the rounding constant 2^(rs-1) and the shift rs.
struct Rounding {
  int32_t left = 0, round = 0, shift = 0;
};

Rounding rounding_of(int32_t left_shift, int32_t right_shift) {
  return right_shift == 0 ? Rounding{.left = left_shift + 1, .round = 1, .shift = 1}
                          : Rounding{.left = left_shift, .round = int32_t{1} << (right_shift - 1), .shift = right_shift};
}

inline int32_t mbqm(int32_t x, int32_t multiplier, int32_t left_shift, int32_t right_shift) {
  const Rounding r = rounding_of(left_shift, right_shift);
  const auto shifted = static_cast<int32_t>(static_cast<uint32_t>(x) << r.left);
  const int64_t p = static_cast<int64_t>(shifted) * multiplier;
  const auto high = static_cast<uint32_t>(static_cast<uint64_t>(p) >> 31);
  return static_cast<int32_t>(high + static_cast<uint32_t>(r.round)) >> r.shift;
}

inline int32_t mbqm(int32_t x, const Rescale& r) {
  return mbqm(x, r.multiplier, r.left_shift, r.right_shift);
}

// mbqm on 8 int32 lanes, with rounding_of's constants per lane.
inline __m256i mbqm8(__m256i x, __m256i multiplier, __m256i multiplier_odd, __m256i left, __m256i round,
                     __m256i shift) {
  x = _mm256_sllv_epi32(x, left);
  // Even lanes' 64-bit products in place, odd lanes' after moving them down.
  const __m256i even = _mm256_mul_epi32(x, multiplier);
  const __m256i odd = _mm256_mul_epi32(_mm256_shuffle_epi32(x, 0xF5), multiplier_odd);
  // Bits 31..62 of each product: shifted down into the even lanes, up into the odd.
  const __m256i high = _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(odd, 1), 0xAA);
  return _mm256_srav_epi32(_mm256_add_epi32(high, round), shift);
}

// One Rescale in every lane.
struct Rescale8 {
  __m256i multiplier, left, round, shift;
};

Rescale8 broadcast(const Rescale& r) {
  const Rounding k = rounding_of(r.left_shift, r.right_shift);
  return {_mm256_set1_epi32(r.multiplier), _mm256_set1_epi32(k.left), _mm256_set1_epi32(k.round),
          _mm256_set1_epi32(k.shift)};
}

inline __m256i mbqm8(__m256i x, const Rescale8& r) {
  return mbqm8(x, r.multiplier, r.multiplier, r.left, r.round, r.shift);
}

inline __m256i load8(const int8_t* x) {
  return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x)));
}

inline __m256i clamp8(__m256i v, __m256i lo, __m256i hi) {
  return _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
}

// Stores 8 int32 lanes already in [-128, 127] as int8.
inline void store8(int8_t* y, __m256i v) {
  __m256i p = _mm256_packs_epi32(v, v);  // lanes 0-3 twice, then 4-7 twice
  p = _mm256_packs_epi16(p, p);
  const __m128i lo = _mm256_castsi256_si128(p), hi = _mm256_extracti128_si256(p, 1);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(y), _mm_unpacklo_epi32(lo, hi));
}

// The same for 32 lanes in four vectors.
inline void store32(int8_t* y, __m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  // packs work within 128-bit halves: bytes come out as v0[0:4] v1[0:4]
  // v2[0:4] v3[0:4] | v0[4:8] v1[4:8] v2[4:8] v3[4:8]; the permute restores order.
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y),
                      _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Per output channel: the unpacked multipliers as arrays the 8-lane loop loads.
struct ChannelRescale {
  std::vector<int32_t> multiplier, left_shift, right_shift;  // TFLite's form
  std::vector<int32_t> left, round, shift;                    // rounding_of's, for the 8-lane loop
  std::vector<int32_t> multiplier_odd;  // [c] = multiplier[c | 1]: the odd lanes' multipliers in the even lanes
  bool any_left_shift = false;

  // Rescaling::float32: one float32 scale per channel, used instead of the multipliers.
  std::vector<float> scale;

  // The fixed point's screen (FixedPointGroup): each multiplier's
  // real value m * 2^(left_shift - right_shift - 31) rounded to float32, and
  // whether every multiplier is one the screen's error bound covers (>= 0).
  std::vector<float> approx;
  bool screenable = true;

  ChannelRescale(const std::vector<QuantizedMultiplier>& m, const std::vector<float>& float32_scales)
      : scale(float32_scales) {
    for (const QuantizedMultiplier& q : m) {
      const Rescale r = unpack(q);
      multiplier.push_back(r.multiplier);
      left_shift.push_back(r.left_shift);
      right_shift.push_back(r.right_shift);
      const Rounding k = rounding_of(r.left_shift, r.right_shift);
      left.push_back(k.left);
      round.push_back(k.round);
      shift.push_back(k.shift);
      any_left_shift = any_left_shift || k.left != 0;
      approx.push_back(static_cast<float>(std::ldexp(static_cast<double>(r.multiplier), r.left_shift - r.right_shift - 31)));
      screenable = screenable && r.multiplier >= 0;
    }
    for (size_t c = 0; c < multiplier.size(); ++c)
      multiplier_odd.push_back(multiplier[std::min(c | 1, multiplier.size() - 1)]);
  }
  ChannelRescale() = default;

  // x rescaled to output steps, before the zero point and the clamp to [lo, hi].
  int32_t apply(int32_t x, int64_t c, int32_t zero_point, int32_t lo, int32_t hi) const {
    if (!scale.empty()) return rescale_float32(x, scale[c], zero_point, lo, hi);
    return clamp_code(mbqm(x, multiplier[c], left_shift[c], right_shift[c]) + zero_point, lo, hi);
  }
};

// ChannelRescale's arrays as raw pointers, for the 8-lane loop (the
// vectors' own pointers would be reloaded after every int8 store, which
// may alias them).
struct ChannelRescale8 {
  const int32_t *multiplier, *multiplier_odd, *left, *round, *shift;
  explicit ChannelRescale8(const ChannelRescale& r)
      : multiplier(r.multiplier.data()), multiplier_odd(r.multiplier_odd.data()), left(r.left.data()),
        round(r.round.data()), shift(r.shift.data()) {}

  // mbqm8 with channel c's parameters in lane c.
  template <bool kLeftShift>
  __m256i apply(__m256i x, int64_t c) const {
    auto at = [c](const int32_t* v) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + c)); };
    const __m256i l = kLeftShift ? at(left) : _mm256_setzero_si256();
    return mbqm8(x, at(multiplier), at(multiplier_odd), l, at(round), at(shift));
  }
};

// The clamp of a requantized output: output zero point and [act_min, act_max].
struct OutputClamp {
  int32_t zero_point = 0, lo = -128, hi = 127;
};

// y[c] = clamp(MBQM(acc[c] + offset[c], m[c]) + zo) for c < count
// (Rescaling::float32: rescale_float32 with scale[c]).
template <bool kLeftShift>
void requantize_channels(const int32_t* acc, const int32_t* offset, const ChannelRescale& r, const OutputClamp& o,
                         int64_t count, int8_t* y) {
  int64_t c = 0;
  if (!r.scale.empty()) {
    const float* scale = r.scale.data();
    const __m256i zo = _mm256_set1_epi32(o.zero_point);
    const __m256 lo = _mm256_set1_ps(static_cast<float>(o.lo - o.zero_point)),
                 hi = _mm256_set1_ps(static_cast<float>(o.hi - o.zero_point));
    auto one = [&](int64_t at) {
      const __m256i a = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + at)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offset + at)));
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(a), _mm256_loadu_ps(scale + at));
      f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
      return _mm256_add_epi32(_mm256_cvtps_epi32(f), zo);  // MXCSR's default: to nearest, ties to even
    };
    for (; c + 32 <= count; c += 32) store32(y + c, one(c), one(c + 8), one(c + 16), one(c + 24));
    for (; c + 8 <= count; c += 8) store8(y + c, one(c));
    for (; c < count; ++c) {
      const auto a = static_cast<int32_t>(static_cast<uint32_t>(acc[c]) + static_cast<uint32_t>(offset[c]));
      y[c] = static_cast<int8_t>(rescale_float32(a, scale[c], o.zero_point, o.lo, o.hi));
    }
    return;
  }
  {
    const ChannelRescale8 r8(r);
    const __m256i zo = _mm256_set1_epi32(o.zero_point), lo = _mm256_set1_epi32(o.lo), hi = _mm256_set1_epi32(o.hi);
    auto one = [&](int64_t at) {
      const __m256i a = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + at)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(offset + at)));
      return clamp8(_mm256_add_epi32(r8.apply<kLeftShift>(a, at), zo), lo, hi);
    };
    for (; c + 32 <= count; c += 32) store32(y + c, one(c), one(c + 8), one(c + 16), one(c + 24));
    for (; c + 8 <= count; c += 8) store8(y + c, one(c));
  }
  for (; c < count; ++c) {
    const auto a = static_cast<int32_t>(static_cast<uint32_t>(acc[c]) + static_cast<uint32_t>(offset[c]));
    y[c] = static_cast<int8_t>(r.apply(a, c, o.zero_point, o.lo, o.hi));
  }
}


// Whether any of `count` accumulators has magnitude >= 2^24 (oneDNN may
// have rounded it on its way through f32).
bool any_beyond_f32_exact(const int32_t* acc, int64_t count) {
  constexpr int32_t kLimit = 1 << 24;
  __m256i vmax = _mm256_set1_epi32(kInt32Min), vmin = _mm256_set1_epi32(std::numeric_limits<int32_t>::max());
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i));
    vmax = _mm256_max_epi32(vmax, a);
    vmin = _mm256_min_epi32(vmin, a);
  }
  const __m256i beyond = _mm256_or_si256(_mm256_cmpgt_epi32(vmax, _mm256_set1_epi32(kLimit - 1)),
                                         _mm256_cmpgt_epi32(_mm256_set1_epi32(-kLimit + 1), vmin));
  bool any = !_mm256_testz_si256(beyond, beyond);
  for (; i < count; ++i) any = any || acc[i] >= kLimit || acc[i] <= -kLimit;
  return any;
}

// ---- window geometry -----------------------------------------------------------

// The input rows [lo, hi) a window starting at `first` of `k` taps covers.
struct Span {
  int lo = 0, hi = 0;
};
Span window_span(int first, int k, int in) { return {std::max(first, 0), std::min(first + k, in)}; }

// The bilinear taps of one output index along an axis, in fixed point.
// The float geometry (ops::resize_bilinear) is
//   src = max(0, (o + 0.5) * in / out - 0.5), i0 = min(floor(src), in - 1),
//   i1 = min(i0 + 1, in - 1), weight of i1 = src - i0.
// Here src carries 10 fractional bits: src_q = floor(src * 2^10), computed
// exactly as ((2o + 1) * in * 2^9) / out - 2^9 (integer division), then
// clamped at 0; i0 = min(src_q >> 10, in - 1), and the weights are
// w1 = src_q - (i0 << 10) and w0 = 2^10 - w1. The four products w_y * w_x
// sum to 2^20.
struct ResizeTap {
  int i0 = 0, i1 = 0;
  int32_t w0 = 0, w1 = 0;
};

ResizeTap resize_tap(int o, int in, int out) {
  constexpr int64_t kOne = 1 << 10, kHalf = 1 << 9;
  const int64_t src = std::max<int64_t>(0, (2 * int64_t{o} + 1) * in * kHalf / out - kHalf);
  const int i0 = static_cast<int>(std::min<int64_t>(src >> 10, in - 1));
  const auto w1 = static_cast<int32_t>(src - int64_t{i0} * kOne);
  return {.i0 = i0, .i1 = std::min(i0 + 1, in - 1), .w0 = static_cast<int32_t>(kOne) - w1, .w1 = w1};
}

std::vector<ResizeTap> resize_taps(int in, int out) {
  std::vector<ResizeTap> taps(out);
  for (int o = 0; o < out; ++o) taps[o] = resize_tap(o, in, out);
  return taps;
}

// Average pooling's real multiplier for a window of `count` valid positions.
QuantizedMultiplier avg_pool_multiplier(const PoolParams& p, int count) {
  return quantize_multiplier(p.input_scale / (p.output_scale * count));
}

// ---- convolution helpers ---------------------------------------------------------

// Window extent along one axis with dilation: (k - 1) * d + 1.
int extent(int k, int d) { return (k - 1) * d + 1; }

void check_conv_params(const ConvParams& p, size_t multipliers) {
  const std::string shapes = "input [" + std::to_string(p.n) + "," + std::to_string(p.h) + "," +
                             std::to_string(p.w) + "," + std::to_string(p.c_in) + "] -> output [" +
                             std::to_string(p.n) + "," + std::to_string(p.oh) + "," + std::to_string(p.ow) +
                             "," + std::to_string(p.c_out) + "]";
  BONSAI_CHECK(p.n > 0 && p.h > 0 && p.w > 0 && p.c_in > 0 && p.oh > 0 && p.ow > 0 && p.c_out > 0,
               "int8 conv: empty shape, " + shapes);
  BONSAI_CHECK(p.kh > 0 && p.kw > 0 && p.stride_h > 0 && p.stride_w > 0 && p.dilation_h > 0 &&
                   p.dilation_w > 0 && p.pad_top >= 0 && p.pad_left >= 0,
               "int8 conv: kernel, stride and dilation must be positive and padding >= 0, " + shapes);
  BONSAI_CHECK(p.groups == 1 || (p.groups == p.c_in && p.groups == p.c_out),
               "int8 conv: groups=" + std::to_string(p.groups) +
                   " must be 1 or equal c_in and c_out (depthwise), " + shapes);
  BONSAI_CHECK(multipliers == static_cast<size_t>(p.c_out), "int8 conv: " + std::to_string(multipliers) +
                                                                " multipliers for " +
                                                                std::to_string(p.c_out) + " output channels");
}

// The taps [lo, hi) of a window, starting at input index `first`, that fall
// inside the input along one axis (tap t reads first + t * dilation).
Span valid_taps(int first, int k, int dilation, int in) {
  int lo = 0, hi = k;
  while (lo < k && first + lo * dilation < 0) ++lo;
  while (hi > lo && first + (hi - 1) * dilation >= in) --hi;
  return {lo, hi};
}

// Output rows (or columns) grouped by the taps their windows keep inside
// the input: the interior, and a few cases at each border.
struct BorderCases {
  std::vector<int> of;     // [out]: each output index's case
  std::vector<Span> taps;  // by case
};

BorderCases border_cases(int out, int stride, int pad, int k, int dilation, int in) {
  BorderCases b;
  std::map<std::pair<int, int>, int> ids;
  for (int o = 0; o < out; ++o) {
    const Span t = valid_taps(o * stride - pad, k, dilation, in);
    const auto [it, fresh] = ids.emplace(std::make_pair(t.lo, t.hi), static_cast<int>(b.taps.size()));
    if (fresh) b.taps.push_back(t);
    b.of.push_back(it->second);
  }
  return b;
}

// How oneDNN sees one axis: the input extent it convolves and the padding
// at the far end for which its output-size formula gives `out`; crop when x
// has more unread rows past the last window than the formula allows (then
// oneDNN convolves a copy cut to `in`).
struct AxisFit {
  int in = 0, pad_end = 0;
  bool crop = false;
};

AxisFit onednn_axis(int in, int out, int k, int stride, int dilation, int pad) {
  const int reach = (out - 1) * stride + extent(k, dilation) - pad;  // the windows read [0, reach)
  if (reach >= in) return {in, reach - in, false};
  if (in - reach < stride) return {in, 0, false};  // the formula's floor drops the unread rest
  return {reach, 0, true};
}

// oneDNN implementations whose int8 results are known (tests/quant/
// test_int8_kernels.cpp) to be the exact integer sum passed once through
// f32: its jit direct and brgemm kernels. Others take the direct loop.
bool trusted_onednn_impl(const std::string& name) {
  return name.rfind("jit_int8", 0) == 0 || name.rfind("brgconv", 0) == 0;
}

bool cpu_has_vnni() {
  using dnnl::cpu_isa;
  const cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == cpu_isa::avx2_vnni || isa == cpu_isa::avx512_core_vnni || isa == cpu_isa::avx512_core_bf16 ||
         isa == cpu_isa::avx512_core_amx;
}

size_t round_up_64(size_t bytes) { return (bytes + 63) / 64 * 64; }

// acc [n, oh, ow, c_out] = Σ x*w over each window's taps inside x [n, h, w,
// c_in]: the exact integer path where oneDNN is not used.
void accumulate_direct(const ConvParams& p, const BorderCases& rows, const BorderCases& cols, const int8_t* x,
                       const int8_t* w, int32_t* acc) {
  const int64_t ci_n = p.c_in, co_n = p.c_out;
  const bool depthwise = p.groups != 1;
#pragma omp parallel for collapse(2) if (int64_t{p.n} * p.oh * p.ow * co_n > 16384)
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy) {
      const Span ty = rows.taps[rows.of[oy]];
      for (int ox = 0; ox < p.ow; ++ox) {
        const Span tx = cols.taps[cols.of[ox]];
        int32_t* a = acc + ((int64_t{n} * p.oh + oy) * p.ow + ox) * co_n;
        std::fill(a, a + co_n, 0);
        for (int ky = ty.lo; ky < ty.hi; ++ky)
          for (int kx = tx.lo; kx < tx.hi; ++kx) {
            const int iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
            const int ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
            const int8_t* xs = x + ((int64_t{n} * p.h + iy) * p.w + ix) * ci_n;
            if (depthwise) {
              const int8_t* wk = w + (int64_t{ky} * p.kw + kx) * co_n;  // [c]
              for (int64_t c = 0; c < co_n; ++c) a[c] += int32_t{xs[c]} * wk[c];
              continue;
            }
            const int8_t* wk = w + (int64_t{ky} * p.kw + kx) * ci_n * co_n;  // [c_in, c_out]
            for (int64_t ci = 0; ci < ci_n; ++ci) {
              const int32_t v = xs[ci];
              const int8_t* wr = wk + ci * co_n;
              for (int64_t co = 0; co < co_n; ++co) a[co] += v * wr[co];
            }
          }
      }
    }
}

// One output's Σ x*w over its window's taps inside x, in wrapping int32.
int32_t window_sum(const ConvParams& p, Span ty, Span tx, const int8_t* x, const int8_t* w, int n, int oy, int ox,
                   int co) {
  const int64_t ci_n = p.c_in, co_n = p.c_out;
  const bool depthwise = p.groups != 1;
  uint32_t sum = 0;
  for (int ky = ty.lo; ky < ty.hi; ++ky)
    for (int kx = tx.lo; kx < tx.hi; ++kx) {
      const int iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      const int ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
      const int8_t* xs = x + ((int64_t{n} * p.h + iy) * p.w + ix) * ci_n;
      const int64_t tap = int64_t{ky} * p.kw + kx;
      if (depthwise) {
        sum += static_cast<uint32_t>(int32_t{xs[co]} * w[tap * co_n + co]);
        continue;
      }
      for (int64_t ci = 0; ci < ci_n; ++ci)
        sum += static_cast<uint32_t>(int32_t{xs[ci]} * w[(tap * ci_n + ci) * co_n + co]);
    }
  return static_cast<int32_t>(sum);
}

// x [n, h, w, c] cut to [n, h_in, w_in, c].
void crop_input(const ConvParams& p, int h_in, int w_in, const int8_t* x, int8_t* out) {
  const int64_t row = int64_t{w_in} * p.c_in;
  for (int n = 0; n < p.n; ++n)
    for (int r = 0; r < h_in; ++r)
      std::memcpy(out + (int64_t{n} * h_in + r) * row, x + ((int64_t{n} * p.h + r) * p.w) * p.c_in, row);
}

}  // namespace

// ---- requantization of a whole output row, 16 lanes (AVX-512) -------------------

bool use_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq");
  return has && avx512_allowed;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on its own _mm512_undefined_* in the intrinsics
#pragma GCC diagnostic ignored "-Wuninitialized"       // (the same, where the pointwise tiles inline them)

// The constants of one output row's requantization, in registers and raw
// pointers: the int8 stores may alias anything reached through a
// reference, so without these copies every group reloads them.
struct Row16 {
  const float* scale;  // float32: the scales; fixed point: the multipliers' values in float32
  const int32_t *multiplier, *multiplier_odd, *left, *round, *shift;  // fixed point: ChannelRescale's
  __m512i zo, lo_code, hi_code;
  __m512 lo, hi;  // the clamp in float: [lo - zo, hi - zo]
};

__attribute__((target("avx512f,avx512bw"))) inline Row16 row16(const ChannelRescale& r, const float* scale,
                                                                const OutputClamp& o) {
  return {.scale = scale,
          .multiplier = r.multiplier.data(),
          .multiplier_odd = r.multiplier_odd.data(),
          .left = r.left.data(),
          .round = r.round.data(),
          .shift = r.shift.data(),
          .zo = _mm512_set1_epi32(o.zero_point),
          .lo_code = _mm512_set1_epi32(o.lo),
          .hi_code = _mm512_set1_epi32(o.hi),
          .lo = _mm512_set1_ps(static_cast<float>(o.lo - o.zero_point)),
          .hi = _mm512_set1_ps(static_cast<float>(o.hi - o.zero_point))};
}

// Both groups start from v = acc + offset and the float32 product
// f = float(v) * scale, clamped in float to [lo - zo, hi - zo]. A group's
// code(v, c, lanes, k) is the output codes of channels c .. c + 15 (as
// int32, clamped); requantize16 loads v from a row of sums and stores them.
__attribute__((target("avx512f,avx512bw"))) inline __m512 scaled16(__m512i v, int64_t c, __mmask16 lanes,
                                                                   const Row16& k) {
  return _mm512_min_ps(
      _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_maskz_loadu_ps(lanes, k.scale + c)), k.lo), k.hi);
}

template <class Group>
__attribute__((target("avx512f,avx512bw,avx512dq"))) inline void requantize16(const int32_t* acc, const int32_t* offset,
                                                                               int64_t c, __mmask16 lanes,
                                                                               const Row16& k, int8_t* y) {
  const __m512i v =
      _mm512_add_epi32(_mm512_maskz_loadu_epi32(lanes, acc + c), _mm512_maskz_loadu_epi32(lanes, offset + c));
  _mm512_mask_cvtsepi32_storeu_epi8(y + c, lanes, Group::code(v, c, lanes, k));
}

// Rescaling::float32: requantize_channels' float32 branch.
struct Float32Group {
  __attribute__((target("avx512f,avx512bw,avx512dq"))) static __m512i code(__m512i v, int64_t c, __mmask16 lanes,
                                                                           const Row16& k) {
    return _mm512_add_epi32(_mm512_cvtps_epi32(scaled16(v, c, lanes, k)), k.zo);
  }
};

// The fixed point, through a float32 screen. For v = acc + offset and
// channel c the fixed point computes floor(R + 1/2) for the real
// R = v * m[c] (m[c] the multiplier's exact value), then adds the zero
// point and clamps. In float32, f = float(v) * approx[c] carries three
// roundings (v, approx, the product), so |f - R| <= 3 * 2^-24 * |R| (plus a
// hair): below 2^-14 wherever |R| <= 512, and beyond that both R and f lie
// past the clamp (|zo| <= 128, outputs in [-128, 127]) and clamp alike. So
// wherever f, clamped in float, is at least kTieBand = 2^-12 from a
// half-integer, R rounds to the same integer, and rounding f to nearest is
// the fixed point's result; a group of 16 with any value nearer (about 1 in
// 2^11 values per lane, so under 1% of groups) goes through the exact
// 64-bit arithmetic instead (exact16). The exact form costs a 64-bit
// product per value; the screen is float32 on 16 lanes. Only where
// ChannelRescale::screenable.
constexpr float kTieBand = 1.0f / 4096;

struct FixedPointGroup {
  // mbqm on 16 lanes, channel c + j's parameters in lane j (c even): the
  // 8-lane form's arithmetic (mbqm8) on AVX-512, then the zero point and
  // the clamp.
  __attribute__((target("avx512f,avx512bw"))) static __m512i exact16(__m512i x, const Row16& k, int64_t c,
                                                                     __mmask16 lanes) {
    x = _mm512_sllv_epi32(x, _mm512_maskz_loadu_epi32(lanes, k.left + c));
    const __m512i even = _mm512_mul_epi32(x, _mm512_maskz_loadu_epi32(lanes, k.multiplier + c));
    const __m512i odd = _mm512_mul_epi32(_mm512_shuffle_epi32(x, _MM_PERM_DDBB),
                                         _mm512_maskz_loadu_epi32(lanes, k.multiplier_odd + c));
    const __m512i high = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 31), _mm512_slli_epi64(odd, 1));
    const __m512i rounded = _mm512_srav_epi32(_mm512_add_epi32(high, _mm512_maskz_loadu_epi32(lanes, k.round + c)),
                                              _mm512_maskz_loadu_epi32(lanes, k.shift + c));
    return _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(rounded, k.zo), k.lo_code), k.hi_code);
  }

  __attribute__((target("avx512f,avx512bw,avx512dq"))) static __m512i code(__m512i v, int64_t c, __mmask16 lanes,
                                                                           const Row16& k) {
    const __m512 f = scaled16(v, c, lanes, k);
    // f - round_to_nearest(f), in [-1/2, 1/2] (vreduceps; imm 8: nearest, no precision exception).
    const __m512 rest = _mm512_reduce_ps(f, 8);
    const __mmask16 near_tie =
        _mm512_mask_cmp_ps_mask(lanes, _mm512_abs_ps(rest), _mm512_set1_ps(0.5f - kTieBand), _CMP_GT_OQ);
    return near_tie == 0 ? _mm512_add_epi32(_mm512_cvtps_epi32(f), k.zo) : exact16(v, k, c, lanes);
  }
};

// requantize_channels for every pixel of one output row, 16 channels at a
// time (the row's last group masked): pixel ox reads acc + ox * count and
// offsets + col_of[ox] * count, channel c scale[c]. requantize16<Group> does one
// group; vpmovsdb narrows (the values are clamped already). Runs only
// where use_avx512().
template <class Group>
__attribute__((target("avx512f,avx512bw,avx512dq"))) void requantize_row_avx512(
    const int32_t* acc, const int32_t* offsets, const int* col_of, int ow, int64_t count, const Row16& k, int8_t* y) {
  const int64_t full = count / 16 * 16;
  const auto tail = static_cast<__mmask16>((1u << (count - full)) - 1);
  for (int ox = 0; ox < ow; ++ox) {
    const int32_t* a = acc + int64_t{ox} * count;
    const int32_t* off = offsets + int64_t{col_of[ox]} * count;
    int8_t* out = y + int64_t{ox} * count;
    for (int64_t c = 0; c < full; c += 16) requantize16<Group>(a, off, c, 0xFFFF, k, out);
    if (tail) requantize16<Group>(a, off, full, tail, k, out);
  }
}

// Whether a ChannelRescale has an AVX-512 group: always for float32
// scales, for the fixed point where screenable.
bool has_avx512_group(const ChannelRescale& r) { return !r.scale.empty() || r.screenable; }

// Calls f(Group{}, k) with r's group and the row constants it reads (the
// float32 scales, or the multipliers' float32 values). Only where
// has_avx512_group(r) and use_avx512().
template <class F>
__attribute__((target("avx512f,avx512bw"))) void with_avx512_group(const ChannelRescale& r, const OutputClamp& o,
                                                                    F&& f) {
  if (!r.scale.empty())
    f(Float32Group{}, row16(r, r.scale.data(), o));
  else
    f(FixedPointGroup{}, row16(r, r.approx.data(), o));
}

// ---- pointwise convolution, requantized in registers (AVX-512 VNNI) -------------
//
// A 1x1 convolution with stride 1 and no padding is the product of the
// [pixels, c_in] codes with the [c_in, c_out] weights. oneDNN computes it
// fast but hands back int32 sums that the requantization then reads again;
// on the MobileNets' wide, shallow layers (c_in 16 to 384 against up to
// 1,152 outputs per pixel) that round trip through memory costs more than
// the product itself. Here a tile of MR pixels by NV * 16 channels keeps its
// sums in registers from the first input channel to the int8 store.
//
// vpdpbusd multiplies unsigned by signed bytes, four at a time: the codes go
// in as x + 128 (their sign bit flipped) and the offsets lose 128 * Σ w.
// It does not saturate, and |Σ (x + 128) * w| < 255 * 127 * c_in < 2^31, so
// the sums are the reference's exactly (no f32 detour, nothing to recompute).
// Weights are packed per block of NV * 16 channels as [c_in / 4][NV][16][4]:
// one 64-byte load gives 16 channels their four taps. Past c_in = 512 oneDNN's
// kernel is the faster (its reuse of loaded weights is better): there the
// kernel keeps to oneDNN.
constexpr int kPointwiseMaxCin = 512;

// VNNI, and VL for the depthwise kernel's 16-byte masked loads (every
// AVX-512 CPU with VNNI has both).
bool cpu_has_avx512_vnni() {
  static const bool has = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
  return has;
}

// Pixels per tile for NV vectors of 16 channels: MR * NV accumulators plus
// NV weight vectors and a broadcast fit AVX-512's 32 registers.
constexpr int pointwise_rows(int nv) { return nv == 1 ? 12 : nv == 2 ? 10 : nv == 3 ? 6 : 5; }
// Pixels per parallel chunk: a multiple of every pointwise_rows.
constexpr int64_t kPointwiseChunk = 60;

struct PointwiseBlock {
  int first_channel = 0, vectors = 0;  // channels [first, first + 16 * vectors), the last vector maybe partial
  size_t weights_at = 0;               // into Pointwise::weights
};

struct Pointwise {
  int c_in = 0, c_out = 0;
  std::vector<PointwiseBlock> blocks;
  std::vector<int8_t> weights;   // the blocks' packed weights, one after another
  std::vector<int32_t> offsets;  // [c_out rounded up to 16]: offsets - 128 * Σ w (wrapping)

  Pointwise(const int8_t* w, const int32_t* offsets_in, int c_in_, int c_out_) : c_in(c_in_), c_out(c_out_) {
    size_t at = 0;
    for (int first = 0; first < c_out;) {
      const int vectors = std::min(4, (c_out - first + 15) / 16);
      blocks.push_back({first, vectors, at});
      at += static_cast<size_t>(c_in) * vectors * 16;
      first += vectors * 16;
    }
    weights.assign(at, 0);
    for (const PointwiseBlock& b : blocks)
      for (int ci = 0; ci < c_in; ++ci)
        for (int lane = 0; lane < b.vectors * 16; ++lane) {
          const int co = b.first_channel + lane;
          if (co >= c_out) continue;
          weights[b.weights_at + (static_cast<size_t>(ci / 4) * b.vectors + lane / 16) * 64 + (lane % 16) * 4 + ci % 4] =
              w[static_cast<size_t>(ci) * c_out + co];
        }
    offsets.assign((c_out + 15) / 16 * 16, 0);
    for (int co = 0; co < c_out; ++co) {
      uint32_t sum = 0;
      for (int ci = 0; ci < c_in; ++ci) sum += static_cast<uint32_t>(int32_t{w[static_cast<size_t>(ci) * c_out + co]});
      offsets[co] = static_cast<int32_t>(static_cast<uint32_t>(offsets_in[co]) - 128u * sum);
    }
  }
};

// acc += the four unsigned bytes of each lane of u times the signed bytes of
// w. In asm: GCC 12 copies the accumulators of the intrinsic's form between
// registers (and spills them) instead of updating them in place.
__attribute__((target("avx512f,avx512vnni"))) inline __m512i dot4(__m512i acc, __m512i u, __m512i w) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(w));
  return acc;
}

// One tile: pixels x[0 .. MR) (rows of c_in codes) by the block's NV vectors
// of channels, written to y[m * c_out + first_channel + ...].
template <int MR, int NV, class Group>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni"))) inline void pointwise_tile(
    const Pointwise& pw, const PointwiseBlock& b, const int8_t* x, const Row16& k, int8_t* y) {
  const int c_in = pw.c_in;
  const int8_t* w = pw.weights.data() + b.weights_at;
  __m512i acc[MR][NV];
BONSAI_UNROLL(16)
  for (int m = 0; m < MR; ++m)
BONSAI_UNROLL(4)
    for (int v = 0; v < NV; ++v) acc[m][v] = _mm512_setzero_si512();
  const __m512i sign = _mm512_set1_epi32(static_cast<int32_t>(0x80808080u));
  for (int q = 0; q < c_in / 4; ++q) {
    __m512i wv[NV];
BONSAI_UNROLL(4)
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_si512(w + (static_cast<size_t>(q) * NV + v) * 64);
BONSAI_UNROLL(16)
    for (int m = 0; m < MR; ++m) {
      int32_t four;
      std::memcpy(&four, x + static_cast<size_t>(m) * c_in + 4 * q, 4);
      const __m512i u = _mm512_xor_si512(_mm512_set1_epi32(four), sign);
BONSAI_UNROLL(4)
      for (int v = 0; v < NV; ++v) acc[m][v] = dot4(acc[m][v], u, wv[v]);
    }
  }
BONSAI_UNROLL(4)
  for (int v = 0; v < NV; ++v) {
    const int c = b.first_channel + 16 * v, left = pw.c_out - c;
    const auto lanes = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1);
    const __m512i offset = _mm512_loadu_si512(pw.offsets.data() + c);
BONSAI_UNROLL(16)
    for (int m = 0; m < MR; ++m) {
      const __m512i q = Group::code(_mm512_add_epi32(acc[m][v], offset), c, lanes, k);
      int8_t* out = y + static_cast<size_t>(m) * pw.c_out + c;
      if (lanes == 0xFFFF)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtsepi32_epi8(q));
      else
        _mm512_mask_cvtsepi32_storeu_epi8(out, lanes, q);
    }
  }
}

// Pixels [0, count) of x through one block: whole tiles, then single pixels.
template <int NV, class Group>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni"))) void pointwise_block(const Pointwise& pw,
                                                                                     const PointwiseBlock& b,
                                                                                     const int8_t* x, int64_t count,
                                                                                     const Row16& k, int8_t* y) {
  constexpr int kRows = pointwise_rows(NV);
  int64_t m = 0;
  for (; m + kRows <= count; m += kRows) pointwise_tile<kRows, NV, Group>(pw, b, x + m * pw.c_in, k, y + m * pw.c_out);
  for (; m < count; ++m) pointwise_tile<1, NV, Group>(pw, b, x + m * pw.c_in, k, y + m * pw.c_out);
}

template <class Group>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni"))) void pointwise_run(const Pointwise& pw, const int8_t* x, int64_t pixels, const Row16& k, int8_t* y) {
  const int64_t chunks = (pixels + kPointwiseChunk - 1) / kPointwiseChunk;
#pragma omp parallel for if (pixels * pw.c_out > 65536)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t first = chunk * kPointwiseChunk, count = std::min(kPointwiseChunk, pixels - first);
    const int8_t* xc = x + first * pw.c_in;
    int8_t* yc = y + first * pw.c_out;
    for (const PointwiseBlock& b : pw.blocks) switch (b.vectors) {
        case 1: pointwise_block<1, Group>(pw, b, xc, count, k, yc); break;
        case 2: pointwise_block<2, Group>(pw, b, xc, count, k, yc); break;
        case 3: pointwise_block<3, Group>(pw, b, xc, count, k, yc); break;
        default: pointwise_block<4, Group>(pw, b, xc, count, k, yc); break;
      }
  }
}

// ---- depthwise convolution, requantized in registers (AVX-512 VNNI) ------------
//
// The same round trip dominates oneDNN's depthwise convolutions (one multiply
// per tap and output against a 4-byte sum written and read back). Here 16
// channels of B neighbouring outputs of one row accumulate in registers:
// per tap, each output's 16 input codes are sign-extended to int32 lanes and
// vpdpwssd adds code * weight (the weights are int32 lanes whose upper
// int16 is zero, so the pair sum is the one product). Taps outside the input
// get a zero weight and read a clamped address instead: the sum is then over
// the taps inside, as the offsets of the output's border case expect. Square
// 3x3 and 5x5 kernels, any stride and dilation; other shapes keep to oneDNN.
struct Depthwise {
  int k = 0, channels = 0;
  std::vector<int32_t> weights;  // [k * k][channels rounded up to 16]: each weight in the low int16

  Depthwise(const int8_t* w, int k_, int c) : k(k_), channels((c + 15) / 16 * 16) {
    weights.assign(static_cast<size_t>(k) * k * channels, 0);
    for (int t = 0; t < k * k; ++t)
      for (int ch = 0; ch < c; ++ch)
        weights[static_cast<size_t>(t) * channels + ch] =
            static_cast<int32_t>(static_cast<uint16_t>(int16_t{w[static_cast<size_t>(t) * c + ch]}));
  }
};

// acc += the products of the int16 pairs of x and w, summed per int32 lane.
// In asm for the reason dot4 is.
__attribute__((target("avx512f,avx512vnni"))) inline __m512i dot2(__m512i acc, __m512i x, __m512i w) {
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
}

// Where one output row of a depthwise convolution reads and writes.
struct DepthwiseRow {
  const int8_t* x;          // image n's input codes [h][w][c]
  int8_t* y;                // the output row [ow][c]
  const int32_t* offsets;   // the row case's offsets [column case][c]
  const int* column_case;   // [ow]
  const Span* column_taps;  // by column case
  Span rows;                // the row's taps inside the input
  int first_row = 0;        // input row of tap 0: oy * stride - pad_top
};

// One output row, 16 channels at a time. The row's taps outside the input
// get zero weights once per channel group (and read a clamped row). The
// interior outputs, whose every column tap lies inside the input, go in
// blocks of 8, 4 and 1 sharing the group's weights; the few border outputs
// one at a time, with zero weights for their columns outside. kStride and
// kDilation: the convolution's (along rows), or 0 where given at run time.
template <int K, int kStride, int kDilation, class Group>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) void depthwise_row(const ConvParams& p,
                                                                                            const Depthwise& dw,
                                                                                            const DepthwiseRow& row,
                                                                                            const Row16& k) {
  const int c_in = p.c_in, stride = kStride > 0 ? kStride : p.stride_w, dilation = kStride > 0 ? kDilation : p.dilation_w;
  const int64_t step = int64_t{stride} * c_in;  // from one output's input to the next's
  const int reach = (K - 1) * dilation;         // from a window's first column to its last
  const int ox_lo = std::min(p.ow, (p.pad_left + stride - 1) / stride);
  // The last interior output's window starts at most w - 1 - reach (none
  // where that is negative: inputs narrower than a window).
  const int last_start = p.w - 1 - reach + p.pad_left;
  const int ox_hi = last_start < 0 ? ox_lo : std::max(ox_lo, std::min(p.ow, last_start / stride + 1));
  const int8_t* rows[K];
  for (int ky = 0; ky < K; ++ky)
    rows[ky] = row.x + static_cast<int64_t>(std::clamp(row.first_row + ky * p.dilation_h, 0, p.h - 1)) * p.w * c_in;
  for (int c = 0; c < c_in; c += 16) {
    const auto lanes = static_cast<__mmask16>(c_in - c >= 16 ? 0xFFFF : (1u << (c_in - c)) - 1);
    __m512i w[K * K];
BONSAI_UNROLL(25)
    for (int t = 0; t < K * K; ++t) {
      const int ky = t / K;
      w[t] = ky >= row.rows.lo && ky < row.rows.hi
                 ? _mm512_loadu_si512(dw.weights.data() + static_cast<size_t>(t) * dw.channels + c)
                 : _mm512_setzero_si512();
    }
    auto finish = [&](__m512i acc, int ox) __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"), always_inline)) {
      const int32_t* offset = row.offsets + static_cast<int64_t>(row.column_case[ox]) * c_in + c;
      const __m512i v = _mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(lanes, offset));
      _mm512_mask_cvtsepi32_storeu_epi8(row.y + static_cast<int64_t>(ox) * c_in + c, lanes, Group::code(v, c, lanes, k));
    };
    auto input = [&](const int8_t* at) __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"), always_inline)) { return _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lanes, at)); };
    auto interior = [&](auto outputs, int ox) __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"),
                                                               always_inline)) {
      constexpr int B = decltype(outputs)::value;
      const int64_t first = static_cast<int64_t>(ox * stride - p.pad_left) * c_in + c;
      __m512i acc[B];
BONSAI_UNROLL(8)
      for (int j = 0; j < B; ++j) acc[j] = _mm512_setzero_si512();
      if constexpr (kStride > 0) {
        // Input column `col` of the block (from its first output's first
        // tap) serves output j through tap kx wherever kx * kDilation +
        // j * kStride == col: each column is loaded once for all of them.
        constexpr int kColumns = (B - 1) * kStride + (K - 1) * kDilation + 1;
BONSAI_UNROLL(5)
        for (int ky = 0; ky < K; ++ky) {
          const int8_t* at = rows[ky] + first;
BONSAI_UNROLL(32)
          for (int col = 0; col < kColumns; ++col, at += c_in) {
            const __m512i v = input(at);
BONSAI_UNROLL(8)
            for (int j = 0; j < B; ++j) {
              const int tap = col - j * kStride;
              if (tap >= 0 && tap % kDilation == 0 && tap / kDilation < K)
                acc[j] = dot2(acc[j], v, w[ky * K + tap / kDilation]);
            }
          }
        }
      } else {
BONSAI_UNROLL(5)
        for (int ky = 0; ky < K; ++ky)
BONSAI_UNROLL(5)
          for (int kx = 0; kx < K; ++kx)
BONSAI_UNROLL(8)
            for (int j = 0; j < B; ++j)
              acc[j] = dot2(acc[j], input(rows[ky] + first + int64_t{kx} * dilation * c_in + j * step), w[ky * K + kx]);
      }
BONSAI_UNROLL(8)
      for (int j = 0; j < B; ++j) finish(acc[j], ox + j);
    };
    auto border = [&](int ox) __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"), always_inline)) {
      // Taps outside: zero weight, clamped column. One accumulator per row
      // of taps, so the chain of dependent dot2s is K long, not K * K.
      const Span cols = row.column_taps[row.column_case[ox]];
      const int first_col = ox * stride - p.pad_left;
      __m512i acc[K];
BONSAI_UNROLL(5)
      for (int ky = 0; ky < K; ++ky) acc[ky] = _mm512_setzero_si512();
BONSAI_UNROLL(5)
      for (int kx = 0; kx < K; ++kx) {
        const bool inside = kx >= cols.lo && kx < cols.hi;
        const int64_t at = static_cast<int64_t>(std::clamp(first_col + kx * dilation, 0, p.w - 1)) * c_in + c;
BONSAI_UNROLL(5)
        for (int ky = 0; ky < K; ++ky)
          acc[ky] = dot2(acc[ky], input(rows[ky] + at), inside ? w[ky * K + kx] : _mm512_setzero_si512());
      }
BONSAI_UNROLL(5)
      for (int ky = 1; ky < K; ++ky) acc[0] = _mm512_add_epi32(acc[0], acc[ky]);
      finish(acc[0], ox);
    };
    int ox = 0;
    for (; ox < ox_lo; ++ox) border(ox);
    for (; ox + 8 <= ox_hi; ox += 8) interior(std::integral_constant<int, 8>{}, ox);
    for (; ox + 4 <= ox_hi; ox += 4) interior(std::integral_constant<int, 4>{}, ox);
    for (; ox < ox_hi; ++ox) interior(std::integral_constant<int, 1>{}, ox);
    for (; ox < p.ow; ++ox) border(ox);
  }
}

template <class Group>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni"))) void depthwise_run(
    const ConvParams& p, const Depthwise& dw, const BorderCases& rows, const BorderCases& cols,
    const std::vector<int32_t>& offsets, const Row16& k, const int8_t* x, int8_t* y) {
  const int64_t col_cases = static_cast<int64_t>(cols.taps.size());
#pragma omp parallel for collapse(2) if (int64_t{p.n} * p.oh * p.ow * p.c_in > 65536)
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy) {
      const DepthwiseRow row{.x = x + static_cast<int64_t>(n) * p.h * p.w * p.c_in,
                             .y = y + (static_cast<int64_t>(n) * p.oh + oy) * p.ow * p.c_in,
                             .offsets = offsets.data() + rows.of[oy] * col_cases * p.c_in,
                             .column_case = cols.of.data(),
                             .column_taps = cols.taps.data(),
                             .rows = rows.taps[rows.of[oy]],
                             .first_row = oy * p.stride_h - p.pad_top};
      const bool dense = p.dilation_w == 1 && p.stride_w <= 2;  // the usual shapes, with compile-time steps
      if (dw.k == 3 && dense)
        p.stride_w == 1 ? depthwise_row<3, 1, 1, Group>(p, dw, row, k) : depthwise_row<3, 2, 1, Group>(p, dw, row, k);
      else if (dw.k == 3)
        depthwise_row<3, 0, 0, Group>(p, dw, row, k);
      else if (dense)
        p.stride_w == 1 ? depthwise_row<5, 1, 1, Group>(p, dw, row, k) : depthwise_row<5, 2, 1, Group>(p, dw, row, k);
      else
        depthwise_row<5, 0, 0, Group>(p, dw, row, k);
    }
}

#pragma GCC diagnostic pop

// ---- Conv2dKernel ----------------------------------------------------------------
//
// run(): oneDNN (or the direct loop) convolves x with zero padding into
// acc = Σ x*w over the taps inside the input. Padded codes stand for the
// zero point, so the wanted sum is
//   Σ (x - zi) * w = acc - zi * Σ w   (Σ w over the same taps),
// and the taps a window keeps depend only on its border case (top rows,
// interior, bottom rows; the same for columns): offsets[case][c] = bias -
// zi * Σ w holds one vector per case pair. Requantization is then one
// vectorised pass over [positions, c_out]; rows where oneDNN returned a
// magnitude >= 2^24 get those outputs recomputed exactly (every integer up
// to 2^24 is a float, so anything smaller passed through f32 unchanged).

struct Conv2dKernel::Impl {
  BorderCases rows, cols;
  std::vector<int32_t> offsets;  // [row case][column case][c_out]
  ChannelRescale rescale;
  OutputClamp clamp;
  std::vector<int8_t> weights;  // HWIO, for the direct loop and recomputation
  bool use_onednn = false;
  bool scan = false;  // some Σ x*w may reach 2^24: look for rounded results
  bool crop = false;  // oneDNN convolves x cut to [h_in, w_in]
  int h_in = 0, w_in = 0;
  size_t acc_bytes = 0, crop_bytes = 0;
  std::unique_ptr<void, decltype(&std::free)> own_scratch{nullptr, &std::free};
  dnnl::convolution_forward conv;
  memory src, wei, dst;
  // A pointwise convolution the CPU can run in registers (AVX-512 VNNI):
  // run() takes that path while use_avx512() (else oneDNN's, as set up).
  std::unique_ptr<Pointwise> pointwise;
  std::unique_ptr<Depthwise> depthwise;  // the same for a depthwise convolution

  void setup_onednn(const ConvParams& p, const int8_t* weights);
  void recompute_row(const ConvParams& p, const int8_t* x, const int32_t* acc, int n, int oy, int8_t* y) const;
};

void Conv2dKernel::Impl::setup_onednn(const ConvParams& p, const int8_t* w) {
  if (!cpu_has_vnni()) return;  // without VNNI oneDNN rounds s8 weights
  const AxisFit fh = onednn_axis(p.h, p.oh, p.kh, p.stride_h, p.dilation_h, p.pad_top);
  const AxisFit fw = onednn_axis(p.w, p.ow, p.kw, p.stride_w, p.dilation_w, p.pad_left);
  if (fh.in <= 0 || fw.in <= 0) return;  // every window in the padding
  using dt = memory::data_type;
  using tag = memory::format_tag;
  try {
    auto& eng = du::engine();
    const memory::desc src_md({p.n, p.c_in, fh.in, fw.in}, dt::s8, tag::nhwc);
    const memory::desc dst_md({p.n, p.c_out, p.oh, p.ow}, dt::s32, tag::nhwc);
    // HWIO [kh, kw, c_in, c_out] is oneDNN's hwio over {O, I, KH, KW}; the
    // depthwise [kh, kw, 1, c] is hwigo over {G, 1, 1, KH, KW}.
    const memory::dims wdims =
        p.groups == 1 ? memory::dims{p.c_out, p.c_in, p.kh, p.kw} : memory::dims{p.groups, 1, 1, p.kh, p.kw};
    const memory::desc user_w_md(wdims, dt::s8, p.groups == 1 ? tag::hwio : tag::hwigo);
    const memory::desc any_w_md(wdims, dt::s8, tag::any);
    const dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, any_w_md, dst_md,
        {p.stride_h, p.stride_w}, {p.dilation_h - 1, p.dilation_w - 1}, {p.pad_top, p.pad_left},
        {fh.pad_end, fw.pad_end});
    const dnnl::convolution_forward::primitive_desc pd(desc, eng);
    if (!trusted_onednn_impl(pd.impl_info_str())) return;
    conv = dnnl::convolution_forward(pd);
    // The reorder also computes oneDNN's s8-source compensation.
    memory user_w(user_w_md, eng, const_cast<int8_t*>(w));
    wei = memory(pd.weights_desc(), eng);
    dnnl::reorder(user_w, wei).execute(du::stream(), user_w, wei);
    du::stream().wait();
    src = memory(src_md, eng, DNNL_MEMORY_NONE);
    dst = memory(dst_md, eng, DNNL_MEMORY_NONE);
  } catch (const dnnl::error&) {
    return;  // a geometry oneDNN does not take: the direct loop
  }
  use_onednn = true;
  crop = fh.crop || fw.crop;
  h_in = fh.in;
  w_in = fw.in;
  crop_bytes = crop ? round_up_64(static_cast<size_t>(p.n) * h_in * w_in * p.c_in) : 0;
}

void Conv2dKernel::Impl::recompute_row(const ConvParams& p, const int8_t* x, const int32_t* acc, int n, int oy,
                                       int8_t* y) const {
  constexpr int32_t kLimit = 1 << 24;
  const int64_t co_n = p.c_out;
  const Span ty = rows.taps[rows.of[oy]];
  for (int ox = 0; ox < p.ow; ++ox) {
    const Span tx = cols.taps[cols.of[ox]];
    const int64_t at = ((int64_t{n} * p.oh + oy) * p.ow + ox) * co_n;
    const int32_t* off = offsets.data() + (int64_t{rows.of[oy]} * cols.taps.size() + cols.of[ox]) * co_n;
    for (int co = 0; co < p.c_out; ++co) {
      if (acc[at + co] < kLimit && acc[at + co] > -kLimit) continue;
      const uint32_t sum = static_cast<uint32_t>(window_sum(p, ty, tx, x, weights.data(), n, oy, ox, co)) +
                           static_cast<uint32_t>(off[co]);
      y[at + co] = static_cast<int8_t>(rescale.apply(static_cast<int32_t>(sum), co, clamp.zero_point, clamp.lo, clamp.hi));
    }
  }
}

Conv2dKernel::Conv2dKernel(const ConvParams& p, const int8_t* weights, const int32_t* bias,
                           const std::vector<QuantizedMultiplier>& multipliers,
                           const std::vector<float>& float32_scales)
    : p_(p), impl_(std::make_unique<Impl>()) {
  check_conv_params(p, multipliers.size());
  BONSAI_CHECK(float32_scales.empty() || float32_scales.size() == multipliers.size(),
               "int8 conv: " + std::to_string(float32_scales.size()) + " float32 scales for " +
                   std::to_string(multipliers.size()) + " output channels");
  Impl& im = *impl_;
  im.rows = border_cases(p.oh, p.stride_h, p.pad_top, p.kh, p.dilation_h, p.h);
  im.cols = border_cases(p.ow, p.stride_w, p.pad_left, p.kw, p.dilation_w, p.w);
  im.rescale = ChannelRescale(multipliers, float32_scales);
  im.clamp = {.zero_point = p.output_zero_point, .lo = p.act_min, .hi = p.act_max};

  // Σ w and Σ |w| per tap and output channel.
  const int64_t taps = int64_t{p.kh} * p.kw, ci_g = p.c_in / p.groups, co_n = p.c_out;
  std::vector<int64_t> tap_sum(taps * co_n, 0), abs_sum(co_n, 0);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t ci = 0; ci < ci_g; ++ci)
      for (int64_t co = 0; co < co_n; ++co) {
        const int8_t v = weights[(t * ci_g + ci) * co_n + co];
        tap_sum[t * co_n + co] += v;
        abs_sum[co] += std::abs(int{v});
      }
  const size_t row_cases = im.rows.taps.size(), col_cases = im.cols.taps.size();
  im.offsets.resize(row_cases * col_cases * co_n);
  for (size_t ry = 0; ry < row_cases; ++ry)
    for (size_t rx = 0; rx < col_cases; ++rx) {
      const Span ty = im.rows.taps[ry], tx = im.cols.taps[rx];
      int32_t* off = im.offsets.data() + (ry * col_cases + rx) * co_n;
      for (int64_t co = 0; co < co_n; ++co) {
        int64_t s = 0;
        for (int ky = ty.lo; ky < ty.hi; ++ky)
          for (int kx = tx.lo; kx < tx.hi; ++kx) s += tap_sum[(int64_t{ky} * p.kw + kx) * co_n + co];
        // In wrapping int32, as the reference's accumulator.
        off[co] = static_cast<int32_t>(static_cast<uint32_t>(bias ? bias[co] : 0) -
                                       static_cast<uint32_t>(p.input_zero_point) * static_cast<uint32_t>(s));
      }
    }

  im.setup_onednn(p, weights);
  const bool pointwise_shape = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.groups == 1 &&
                               p.pad_top == 0 && p.pad_left == 0 && p.oh == p.h && p.ow == p.w && p.c_in % 4 == 0 &&
                               p.c_in < kPointwiseMaxCin && im.offsets.size() == static_cast<size_t>(co_n);
  const bool depthwise_shape = p.groups == p.c_in && p.c_out == p.c_in && p.kh == p.kw && (p.kh == 3 || p.kh == 5);
  const bool in_registers = cpu_has_avx512_vnni() && has_avx512_group(im.rescale);
  if (pointwise_shape && in_registers)
    im.pointwise = std::make_unique<Pointwise>(weights, im.offsets.data(), p.c_in, p.c_out);
  if (depthwise_shape && in_registers)
    im.depthwise = std::make_unique<Depthwise>(weights, p.kh, p.c_in);
  // |x| <= 128: below this bound no Σ x*w reaches 2^24.
  im.scan = im.use_onednn && 128 * *std::max_element(abs_sum.begin(), abs_sum.end()) > (int64_t{1} << 24);
  if (!im.use_onednn || im.scan) im.weights.assign(weights, weights + taps * ci_g * co_n);
  im.acc_bytes = round_up_64(static_cast<size_t>(p.n) * p.oh * p.ow * co_n * sizeof(int32_t));
}

Conv2dKernel::~Conv2dKernel() = default;

size_t Conv2dKernel::scratch_bytes() const { return impl_->acc_bytes + impl_->crop_bytes; }

const char* Conv2dKernel::path() const {
  if (impl_->pointwise && use_avx512()) return "pointwise";
  if (impl_->depthwise && use_avx512()) return "depthwise";
  return impl_->use_onednn ? "onednn" : "direct";
}

void Conv2dKernel::run(const int8_t* x, int8_t* y) {
  Impl& im = *impl_;
  if (!im.own_scratch) {
    im.own_scratch.reset(std::aligned_alloc(64, scratch_bytes()));
    BONSAI_CHECK(im.own_scratch, "int8 conv: cannot allocate " + std::to_string(scratch_bytes()) + " bytes");
  }
  run(x, y, im.own_scratch.get());
}

void Conv2dKernel::run(const int8_t* x, int8_t* y, void* scratch) {
  const ConvParams& p = p_;
  Impl& im = *impl_;
  if (im.pointwise && use_avx512()) {
    with_avx512_group(im.rescale, im.clamp, [&](auto group, const Row16& k) {
      pointwise_run<decltype(group)>(*im.pointwise, x, int64_t{p.n} * p.h * p.w, k, y);
    });
    return;
  }
  if (im.depthwise && use_avx512()) {
    with_avx512_group(im.rescale, im.clamp, [&](auto group, const Row16& k) {
      depthwise_run<decltype(group)>(p, *im.depthwise, im.rows, im.cols, im.offsets, k, x, y);
    });
    return;
  }
  auto* acc = static_cast<int32_t*>(scratch);
  if (im.use_onednn) {
    const int8_t* src = x;
    if (im.crop) {
      int8_t* cropped = static_cast<int8_t*>(scratch) + im.acc_bytes;
      crop_input(p, im.h_in, im.w_in, x, cropped);
      src = cropped;
    }
    im.src.set_data_handle(const_cast<int8_t*>(src));
    im.dst.set_data_handle(acc);
    im.conv.execute(du::stream(),
                    {{DNNL_ARG_SRC, im.src}, {DNNL_ARG_WEIGHTS, im.wei}, {DNNL_ARG_DST, im.dst}});
    du::stream().wait();
  } else {
    accumulate_direct(p, im.rows, im.cols, x, im.weights.data(), acc);
  }
  const int64_t co_n = p.c_out, col_cases = static_cast<int64_t>(im.cols.taps.size());
#pragma omp parallel for collapse(2) if (int64_t{p.n} * p.oh * p.ow * co_n > 65536)
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy) {
      const int64_t row = (int64_t{n} * p.oh + oy) * p.ow * co_n;
      const int32_t* row_offsets = im.offsets.data() + im.rows.of[oy] * col_cases * co_n;
      if (has_avx512_group(im.rescale) && use_avx512()) {
        with_avx512_group(im.rescale, im.clamp, [&](auto group, const Row16& k) {
          requantize_row_avx512<decltype(group)>(acc + row, row_offsets, im.cols.of.data(), p.ow, co_n, k, y + row);
        });
      } else {
        for (int ox = 0; ox < p.ow; ++ox) {
          const int32_t* offset = row_offsets + im.cols.of[ox] * co_n;
          const int32_t* a = acc + row + ox * co_n;
          int8_t* out = y + row + ox * co_n;
          if (im.rescale.any_left_shift)
            requantize_channels<true>(a, offset, im.rescale, im.clamp, co_n, out);
          else
            requantize_channels<false>(a, offset, im.rescale, im.clamp, co_n, out);
        }
      }
      if (im.scan && any_beyond_f32_exact(acc + row, p.ow * co_n)) im.recompute_row(p, x, acc, n, oy, y);
    }
}

// ---- fully connected ---------------------------------------------------------------

void fully_connected(const FullyConnectedParams& p, const int8_t* weights, const int32_t* bias,
                     const int8_t* x, int8_t* y) {
  const Rescale r = unpack(p.multiplier);
  // Locals, not p's fields: int8 stores may alias p, which would stop vectorisation.
  const int out_n = p.out;
  const int32_t zo = p.output_zero_point, lo = p.act_min, hi = p.act_max;
  std::vector<int32_t> acc(out_n);
  for (int n = 0; n < p.n; ++n) {
    if (bias)
      std::copy(bias, bias + out_n, acc.begin());
    else
      std::fill(acc.begin(), acc.end(), 0);
    // Row by row of the [in, out] weights, so the inner loop runs along out.
    for (int i = 0; i < p.in; ++i) {
      const int32_t v = x[int64_t{n} * p.in + i] - p.input_zero_point;
      const int8_t* wr = weights + int64_t{i} * out_n;
      for (int o = 0; o < out_n; ++o) acc[o] += v * wr[o];
    }
    int8_t* out = y + int64_t{n} * out_n;
    for (int o = 0; o < out_n; ++o) out[o] = static_cast<int8_t>(clamp_code(mbqm(acc[o], r) + zo, lo, hi));
  }
}

// ---- elementwise ---------------------------------------------------------------------

AddParams make_add_params(const AffineQuant& in1, const AffineQuant& in2, const AffineQuant& out,
                          int32_t act_min, int32_t act_max) {
  AddParams p;
  p.input1_offset = -in1.zero_point;
  p.input2_offset = -in2.zero_point;
  p.output_offset = out.zero_point;
  const double s1 = in1.scale, s2 = in2.scale, so = out.scale;
  const double twice_max = 2 * std::max(s1, s2);
  p.input1_multiplier = quantize_multiplier(s1 / twice_max);
  p.input2_multiplier = quantize_multiplier(s2 / twice_max);
  p.output_multiplier = quantize_multiplier(twice_max / ((1 << p.left_shift) * so));
  p.act_min = act_min;
  p.act_max = act_max;
  return p;
}

void add(const AddParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t count) {
  const Rescale r1 = unpack(p.input1_multiplier), r2 = unpack(p.input2_multiplier),
                ro = unpack(p.output_multiplier);
  int64_t i = 0;
  if (p.left_shift >= 0 && p.left_shift <= 30) {
    const Rescale8 v1 = broadcast(r1), v2 = broadcast(r2), vo = broadcast(ro);
    const __m256i o1 = _mm256_set1_epi32(p.input1_offset), o2 = _mm256_set1_epi32(p.input2_offset);
    const __m256i zo = _mm256_set1_epi32(p.output_offset), lo = _mm256_set1_epi32(p.act_min),
                  hi = _mm256_set1_epi32(p.act_max);
    const __m128i up = _mm_cvtsi32_si128(p.left_shift);
    auto one = [&](int64_t at) {
      const __m256i s1 = mbqm8(_mm256_sll_epi32(_mm256_add_epi32(load8(a + at), o1), up), v1);
      const __m256i s2 = mbqm8(_mm256_sll_epi32(_mm256_add_epi32(load8(b + at), o2), up), v2);
      return clamp8(_mm256_add_epi32(mbqm8(_mm256_add_epi32(s1, s2), vo), zo), lo, hi);
    };
    for (; i + 32 <= count; i += 32) store32(y + i, one(i), one(i + 8), one(i + 16), one(i + 24));
    for (; i + 8 <= count; i += 8) store8(y + i, one(i));
  }
  const int32_t scale_up = 1 << p.left_shift;
  for (; i < count; ++i) {
    const int32_t sum =
        mbqm((a[i] + p.input1_offset) * scale_up, r1) + mbqm((b[i] + p.input2_offset) * scale_up, r2);
    y[i] = static_cast<int8_t>(clamp_code(mbqm(sum, ro) + p.output_offset, p.act_min, p.act_max));
  }
}

AddFloat32Params make_add_float32_params(const AffineQuant& in1, const AffineQuant& in2, const AffineQuant& out,
                                         int32_t act_min, int32_t act_max, int32_t offset) {
  AddFloat32Params p;
  p.ratio_a = in1.scale / out.scale;
  p.ratio_b = in2.scale / out.scale;
  p.offset = offset;
  // ORT's zo - (ratio_a * za + ratio_b * zb), written as GCC compiles it at
  // x86-64-v3 (one product fused into the sum; the form whose outputs
  // matched ONNX Runtime's), explicitly so no compiler setting changes it.
  const float parts = std::fma(p.ratio_a, static_cast<float>(in1.zero_point + offset),
                               p.ratio_b * static_cast<float>(in2.zero_point + offset));
  p.fixed = static_cast<float>(out.zero_point + offset) - parts;
  p.act_min = act_min;
  p.act_max = act_max;
  return p;
}

void add_float32(const AddFloat32Params& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t count) {
  const __m256 ra = _mm256_set1_ps(p.ratio_a), rb = _mm256_set1_ps(p.ratio_b), fixed = _mm256_set1_ps(p.fixed);
  const __m256i lo = _mm256_set1_epi32(p.act_min), hi = _mm256_set1_epi32(p.act_max);
  const __m256i offset = _mm256_set1_epi32(p.offset);
  auto one = [&](int64_t at) {
    const __m256 fa = _mm256_cvtepi32_ps(_mm256_add_epi32(load8(a + at), offset));
    const __m256 fb = _mm256_cvtepi32_ps(_mm256_add_epi32(load8(b + at), offset));
    const __m256i t = _mm256_cvtps_epi32(_mm256_fmadd_ps(fa, ra, _mm256_fmadd_ps(fb, rb, fixed)));
    return clamp8(_mm256_sub_epi32(t, offset), lo, hi);
  };
  int64_t i = 0;
  for (; i + 32 <= count; i += 32) store32(y + i, one(i), one(i + 8), one(i + 16), one(i + 24));
  for (; i + 8 <= count; i += 8) store8(y + i, one(i));
  for (; i < count; ++i) {
    const float t = std::fma(static_cast<float>(a[i] + p.offset), p.ratio_a,
                             std::fma(static_cast<float>(b[i] + p.offset), p.ratio_b, p.fixed));
    // |t| < 2^31 for int8 inputs and sane scales, so the conversion does not saturate.
    y[i] = static_cast<int8_t>(clamp_code(static_cast<int32_t>(std::nearbyint(t)) - p.offset, p.act_min, p.act_max));
  }
}

MulParams make_mul_params(const AffineQuant& in1, const AffineQuant& in2, const AffineQuant& out,
                          int32_t act_min, int32_t act_max) {
  return {.input1_offset = -in1.zero_point,
          .input2_offset = -in2.zero_point,
          .output_offset = out.zero_point,
          .multiplier = quantize_multiplier(static_cast<double>(in1.scale) * in2.scale / out.scale),
          .act_min = act_min,
          .act_max = act_max};
}

void mul(const MulParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t outer, int64_t inner,
         int64_t broadcast_group) {
  const Rescale r = unpack(p.multiplier);
  const Rescale8 v = broadcast(r);
  const __m256i o1 = _mm256_set1_epi32(p.input1_offset), o2 = _mm256_set1_epi32(p.input2_offset);
  const __m256i zo = _mm256_set1_epi32(p.output_offset), lo = _mm256_set1_epi32(p.act_min),
                hi = _mm256_set1_epi32(p.act_max);
  for (int64_t row = 0; row < outer; ++row) {
    const int8_t* ar = a + row * inner;
    const int8_t* br = b + (row / broadcast_group) * inner;
    int8_t* yr = y + row * inner;
    int64_t i = 0;
    {
      auto one = [&](int64_t at) {
        const __m256i prod =
            _mm256_mullo_epi32(_mm256_add_epi32(load8(ar + at), o1), _mm256_add_epi32(load8(br + at), o2));
        return clamp8(_mm256_add_epi32(mbqm8(prod, v), zo), lo, hi);
      };
      for (; i + 32 <= inner; i += 32) store32(yr + i, one(i), one(i + 8), one(i + 16), one(i + 24));
      for (; i + 8 <= inner; i += 8) store8(yr + i, one(i));
    }
    for (; i < inner; ++i) {
      const int32_t prod = (ar[i] + p.input1_offset) * (br[i] + p.input2_offset);
      yr[i] = static_cast<int8_t>(clamp_code(mbqm(prod, r) + p.output_offset, p.act_min, p.act_max));
    }
  }
}

// ---- two-input tables ----------------------------------------------------------------

namespace {

// Every (a, b) pair in table order: a = i / 256 - 128, b = i % 256 - 128.
std::pair<std::vector<int8_t>, std::vector<int8_t>> all_pairs() {
  std::vector<int8_t> a(PairTable::kSize), b(PairTable::kSize);
  for (int i = 0; i < PairTable::kSize; ++i) {
    a[i] = static_cast<int8_t>((i >> 8) - 128);
    b[i] = static_cast<int8_t>((i & 255) - 128);
  }
  return {std::move(a), std::move(b)};
}

}  // namespace

namespace {

// ADD in f32, and where it is exact.
//
// Exactly, with v_i = code_i + offset_i (|v_i| <= 255) and m = M * 2^-(31 + rs)
// the real value of each quantized multiplier (left shifts 0):
//   T_i = MBQM(v_i * 2^20, M_i),  S = T_1 + T_2,  q = MBQM(S, M_o),  y = clamp(q + zo).
// MBQM(x, M) is x*m rounded once to nearest (error <= 1/2), so
// |T_i - v_i 2^20 m_i| <= 1/2, and with r = v_1 (2^20 m_1 m_o) + v_2 (2^20 m_2 m_o)
// (the real sum in output steps), |S m_o - r| <= m_o; q is S m_o rounded.
// Hence, if r is more than 2 m_o (a margin of two) from every
// half-integer, q = round(r) = floor(r + 1/2).
// The kernel computes t ≈ r + 1/2 in f32 with two FMAs from f32 constants;
// E bounds that error (constants, two roundings, and frac(t) = t - floor(t)
// itself, exact but near t in (-1/2, 0)). Where frac(t) lies in
// [band, 1 - band], band = 2 m_o + 2E, floor(t) is q exactly; elsewhere
// (a near-tie: about 2 * band of the pairs) the kernel reads the table.
PairTable::Screen add_screen(const AddParams& p) {
  const Rescale r1 = unpack(p.input1_multiplier), r2 = unpack(p.input2_multiplier),
                ro = unpack(p.output_multiplier);
  PairTable::Screen s;
  if (r1.left_shift != 0 || r2.left_shift != 0 || ro.left_shift != 0 ||
      p.left_shift < 0 || p.left_shift > 22)  // |v| * 2^left_shift must stay an int32
    return s;
  auto real = [](const Rescale& r) { return std::ldexp(static_cast<double>(r.multiplier), -31 - r.right_shift); };
  const double m_o = std::abs(real(ro));
  const double alpha = std::ldexp(real(r1) * real(ro), p.left_shift);
  const double beta = std::ldexp(real(r2) * real(ro), p.left_shift);
  const double offset = alpha * p.input1_offset + beta * p.input2_offset + 0.5;
  // |t| and every partial sum stay below `most`; each f32 rounding (three
  // constants, two FMAs) costs at most most * 2^-24, the double arithmetic
  // above far less, and frac(t) at most 2^-24.
  const double most = 128 * (std::abs(alpha) + std::abs(beta)) + std::abs(offset) + 1;
  const double error = 6 * most * std::ldexp(1.0, -24) + std::ldexp(1.0, -23);
  const double band = 2 * m_o + 2 * error;
  if (!(band < 1.0 / 64)) return s;  // too many near-ties (or too large a range): the table throughout
  s.on = true;
  s.scale_a = static_cast<float>(alpha);
  s.scale_b = static_cast<float>(beta);
  s.offset = static_cast<float>(offset);
  s.band = static_cast<float>(band);
  s.zero_point = p.output_offset;
  s.lo = p.act_min;
  s.hi = p.act_max;
  return s;
}

}  // namespace

PairTable PairTable::add(const AddParams& p) {
  PairTable t;
  const auto [a, b] = all_pairs();
  int8::add(p, a.data(), b.data(), t.table_.data(), kSize);
  t.screen_ = add_screen(p);
  return t;
}

PairTable PairTable::add(const AddFloat32Params& p) {
  PairTable t(0);  // computed directly: no table
  t.float32_ = true;
  t.add_float32_ = p;
  return t;
}

PairTable PairTable::mul(const MulParams& p) {
  PairTable t;
  const auto [a, b] = all_pairs();
  int8::mul(p, a.data(), b.data(), t.table_.data(), 1, kSize, 1);
  return t;
}

namespace {

// y[i] = table[(a[i] + 128) * 256 + (b[i] + 128)] for i < count.
void pair_lookup(const int8_t* table, const int8_t* a, const int8_t* b, int8_t* y, int64_t count) {
  int64_t i = 0;
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));  // code + 128, as an unsigned byte
  const __m256i low_byte = _mm256_set1_epi32(0xFF);
  for (; i + 16 <= count; i += 16) {
    const __m128i av = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)), flip);
    const __m128i bv = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)), flip);
    // 16-bit indices (a + 128) * 256 + (b + 128), widened to 32 bits for the gathers, which
    // read 4 bytes each (the table has 3 bytes of slack) of which the low one is wanted.
    const __m256i i0 = _mm256_cvtepu16_epi32(_mm_unpacklo_epi8(bv, av));
    const __m256i i1 = _mm256_cvtepu16_epi32(_mm_unpackhi_epi8(bv, av));
    const __m256i g0 = _mm256_and_si256(_mm256_i32gather_epi32(reinterpret_cast<const int*>(table), i0, 1), low_byte);
    const __m256i g1 = _mm256_and_si256(_mm256_i32gather_epi32(reinterpret_cast<const int*>(table), i1, 1), low_byte);
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packus_epi32(g0, g1), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1)));
  }
  for (; i < count; ++i)
    y[i] = table[(static_cast<uint8_t>(a[i] ^ 0x80) << 8) | static_cast<uint8_t>(b[i] ^ 0x80)];
}

// ADD through its screen (add_screen), 32 pairs at a time; a group with a
// near-tie reads the table. Should near-ties be common after all (inputs
// concentrated on them), the rest goes to the table directly.
void screened_add_avx2(const int8_t* table, const PairTable::Screen& s, const int8_t* a, const int8_t* b, int8_t* y,
                       int64_t count) {
  const __m256 sa = _mm256_set1_ps(s.scale_a), sb = _mm256_set1_ps(s.scale_b), offset = _mm256_set1_ps(s.offset);
  const __m256 low = _mm256_set1_ps(s.band), high = _mm256_set1_ps(1.0f - s.band);
  const __m256i zo = _mm256_set1_epi32(s.zero_point), lo = _mm256_set1_epi32(s.lo), hi = _mm256_set1_epi32(s.hi);
  int64_t i = 0, groups = 0, fallbacks = 0;
  for (; i + 32 <= count; i += 32, ++groups) {
    if (groups >= 64 && 4 * fallbacks > groups) break;
    __m256i q[4];
    __m256 near_tie = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      const __m256 fa = _mm256_cvtepi32_ps(load8(a + i + 8 * j)), fb = _mm256_cvtepi32_ps(load8(b + i + 8 * j));
      const __m256 t = _mm256_fmadd_ps(fa, sa, _mm256_fmadd_ps(fb, sb, offset));
      const __m256 k = _mm256_floor_ps(t), frac = _mm256_sub_ps(t, k);
      near_tie = _mm256_or_ps(near_tie, _mm256_or_ps(_mm256_cmp_ps(frac, low, _CMP_LT_OQ),
                                                     _mm256_cmp_ps(frac, high, _CMP_GT_OQ)));
      q[j] = clamp8(_mm256_add_epi32(_mm256_cvttps_epi32(k), zo), lo, hi);
    }
    if (_mm256_testz_ps(near_tie, near_tie)) {
      store32(y + i, q[0], q[1], q[2], q[3]);
    } else {
      pair_lookup(table, a + i, b + i, y + i, 32);
      ++fallbacks;
    }
  }
  pair_lookup(table, a + i, b + i, y + i, count - i);
}

// screened_add on 16 lanes (AVX-512): the same screen, with frac(t) from
// vreduceps and floor(t) converted in one instruction. Runs only where
// use_avx512().
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on its own _mm512_undefined_* in the intrinsics
__attribute__((target("avx512f,avx512bw,avx512dq"))) void screened_add_avx512(
    const int8_t* table, const PairTable::Screen& s, const int8_t* a, const int8_t* b, int8_t* y, int64_t count) {
  const __m512 sa = _mm512_set1_ps(s.scale_a), sb = _mm512_set1_ps(s.scale_b), offset = _mm512_set1_ps(s.offset);
  const __m512 low = _mm512_set1_ps(s.band), high = _mm512_set1_ps(1.0f - s.band);
  const __m512i zo = _mm512_set1_epi32(s.zero_point), lo = _mm512_set1_epi32(s.lo), hi = _mm512_set1_epi32(s.hi);
  int64_t i = 0, groups = 0, fallbacks = 0;
  for (; i + 16 <= count; i += 16, ++groups) {
    if (groups >= 128 && 4 * fallbacks > groups) break;
    const __m512 fa = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i))));
    const __m512 fb = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i))));
    const __m512 t = _mm512_fmadd_ps(fa, sa, _mm512_fmadd_ps(fb, sb, offset));
    const __m512 frac = _mm512_reduce_ps(t, 9);  // t - floor(t) (imm 9: toward -infinity, no precision exception)
    if (_mm512_cmp_ps_mask(frac, low, _CMP_LT_OQ) | _mm512_cmp_ps_mask(frac, high, _CMP_GT_OQ)) {
      pair_lookup(table, a + i, b + i, y + i, 16);
      ++fallbacks;
      continue;
    }
    const __m512i k = _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512i q = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(k, zo), lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtepi32_epi8(q));
  }
  pair_lookup(table, a + i, b + i, y + i, count - i);
}
#pragma GCC diagnostic pop

void screened_add(const int8_t* table, const PairTable::Screen& s, const int8_t* a, const int8_t* b, int8_t* y,
                  int64_t count) {
  if (use_avx512())
    screened_add_avx512(table, s, a, b, y, count);
  else
    screened_add_avx2(table, s, a, b, y, count);
}

// Elementwise loops split into blocks for the OpenMP threads, when large enough.
constexpr int64_t kBlock = 16384;

}  // namespace

void PairTable::run(const int8_t* a, const int8_t* b, int8_t* y, int64_t count) const {
  auto span = [&](int64_t start, int64_t n) {
    if (float32_)
      add_float32(add_float32_, a + start, b + start, y + start, n);
    else if (screen_.on)
      screened_add(table_.data(), screen_, a + start, b + start, y + start, n);
    else
      pair_lookup(table_.data(), a + start, b + start, y + start, n);
  };
  if (count <= 4 * kBlock) return span(0, count);  // no OpenMP region: entering one costs microseconds
#pragma omp parallel for
  for (int64_t start = 0; start < count; start += kBlock) span(start, std::min(kBlock, count - start));
}

void PairTable::run(const int8_t* a, const int8_t* b, int8_t* y, int64_t outer, int64_t inner,
                    int64_t broadcast_group) const {
  if (broadcast_group == 1) return run(a, b, y, outer * inner);
#pragma omp parallel for if (outer * inner > 4 * kBlock)
  for (int64_t row = 0; row < outer; ++row) {
    const int64_t at = row * inner;
    const int8_t* br = b + (row / broadcast_group) * inner;
    if (float32_)
      add_float32(add_float32_, a + at, br, y + at, inner);
    else if (screen_.on)
      screened_add(table_.data(), screen_, a + at, br, y + at, inner);
    else
      pair_lookup(table_.data(), a + at, br, y + at, inner);
  }
}

// ---- one-input ops -------------------------------------------------------------------

namespace {

void lookup_span(const int8_t* table, const int8_t* x, int8_t* y, int64_t count) {
  // The 256 entries as 16 rows of 16: vpshufb picks within every row by the
  // low nibble of x + 128, then a tree of blends on the high nibble's bits
  // (each shifted up to the byte's top bit, which blendv reads) picks the row.
  __m256i rows[16];
  for (int k = 0; k < 16; ++k)
    rows[k] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * k)));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), nibble = _mm256_set1_epi8(0x0F);
  int64_t i = 0;
  for (; i + 32 <= count; i += 32) {
    const __m256i idx = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), flip);
    const __m256i low = _mm256_and_si256(idx, nibble);
    __m256i r[16];
    for (int k = 0; k < 16; ++k) r[k] = _mm256_shuffle_epi8(rows[k], low);
    for (int bit = 0, n = 16; bit < 4; ++bit, n /= 2) {
      const __m256i select = _mm256_slli_epi16(idx, 3 - bit);  // bit 4 + bit to the top of each byte
      for (int k = 0; k < n / 2; ++k) r[k] = _mm256_blendv_epi8(r[2 * k], r[2 * k + 1], select);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), r[0]);
  }
  for (; i < count; ++i) y[i] = table[x[i] + 128];
}

}  // namespace

void lookup(const int8_t* table, const int8_t* x, int8_t* y, int64_t count) {
  if (count <= 4 * kBlock) return lookup_span(table, x, y, count);  // no OpenMP region for small ones
#pragma omp parallel for
  for (int64_t start = 0; start < count; start += kBlock)
    lookup_span(table, x + start, y + start, std::min(kBlock, count - start));
}

std::vector<int8_t> make_table(const AffineQuant& in, const AffineQuant& out, float (*f)(float)) {
  std::vector<int8_t> table(256);
  for (int q = -128; q <= 127; ++q)
    table[q + 128] = static_cast<int8_t>(quantize_value(f(dequantize_value(q, in)), out));
  return table;
}

RequantizeParams make_requantize_params(const AffineQuant& in, const AffineQuant& out) {
  return {.input_zero_point = in.zero_point,
          .output_zero_point = out.zero_point,
          .multiplier = quantize_multiplier(static_cast<double>(in.scale) / out.scale)};
}

void requantize(const RequantizeParams& p, const int8_t* x, int8_t* y, int64_t count) {
  const Rescale r = unpack(p.multiplier);
  int64_t i = 0;
  {
    const Rescale8 v = broadcast(r);
    const __m256i zi = _mm256_set1_epi32(p.input_zero_point), zo = _mm256_set1_epi32(p.output_zero_point);
    const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
    auto one = [&](int64_t at) {
      return clamp8(_mm256_add_epi32(mbqm8(_mm256_sub_epi32(load8(x + at), zi), v), zo), lo, hi);
    };
    for (; i + 32 <= count; i += 32) store32(y + i, one(i), one(i + 8), one(i + 16), one(i + 24));
    for (; i + 8 <= count; i += 8) store8(y + i, one(i));
  }
  for (; i < count; ++i)
    y[i] =
        static_cast<int8_t>(clamp_code(mbqm(x[i] - p.input_zero_point, r) + p.output_zero_point, -128, 127));
}

std::vector<int8_t> make_requantize_table(const RequantizeParams& p) {
  std::vector<int8_t> codes(256), table(256);
  for (int q = -128; q <= 127; ++q) codes[q + 128] = static_cast<int8_t>(q);
  requantize(p, codes.data(), table.data(), 256);
  return table;
}

// ---- pooling, resize, concat -------------------------------------------------------------

MeanParams make_mean_params(int n, int h, int w, int c, const AffineQuant& in, const AffineQuant& out) {
  return {.n = n,
          .h = h,
          .w = w,
          .c = c,
          .input_zero_point = in.zero_point,
          .output_zero_point = out.zero_point,
          .multiplier =
              quantize_multiplier(static_cast<double>(in.scale) / (static_cast<double>(out.scale) * h * w))};
}

void mean_hw(const MeanParams& p, const int8_t* x, int8_t* y) {
  const Rescale r = unpack(p.multiplier);
  const int64_t hw = int64_t{p.h} * p.w, c_n = p.c;
  // Σ (x - zi) = Σ x - zi * h * w.
  const auto zero_sum = static_cast<int32_t>(p.input_zero_point * hw);
  std::vector<int32_t> acc(c_n);
  for (int n = 0; n < p.n; ++n) {
    std::fill(acc.begin(), acc.end(), -zero_sum);
    const int8_t* xn = x + n * hw * c_n;
    for (int64_t i = 0; i < hw; ++i)
      for (int64_t c = 0; c < c_n; ++c) acc[c] += xn[i * c_n + c];
    for (int64_t c = 0; c < c_n; ++c)
      y[n * c_n + c] = static_cast<int8_t>(clamp_code(mbqm(acc[c], r) + p.output_zero_point, -128, 127));
  }
}

void avg_pool(const PoolParams& p, const int8_t* x, int8_t* y) {
  std::vector<Rescale> by_count(p.kh * p.kw + 1);  // index: valid positions
  for (int count = 1; count <= p.kh * p.kw; ++count) by_count[count] = unpack(avg_pool_multiplier(p, count));
  const int64_t c_n = p.c;
  std::vector<int32_t> acc(c_n);
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy) {
      const Span sy = window_span(oy * p.stride_h - p.pad_top, p.kh, p.h);
      for (int ox = 0; ox < p.ow; ++ox) {
        const Span sx = window_span(ox * p.stride_w - p.pad_left, p.kw, p.w);
        const int count = std::max(sy.hi - sy.lo, 0) * std::max(sx.hi - sx.lo, 0);
        int8_t* out = y + ((int64_t{n} * p.oh + oy) * p.ow + ox) * c_n;
        if (count == 0) {  // a window entirely in the padding: the mean of nothing, real 0
          std::fill(out, out + c_n, static_cast<int8_t>(clamp_code(p.output_zero_point, -128, 127)));
          continue;
        }
        std::fill(acc.begin(), acc.end(), -p.input_zero_point * count);
        for (int iy = sy.lo; iy < sy.hi; ++iy)
          for (int ix = sx.lo; ix < sx.hi; ++ix) {
            const int8_t* xs = x + ((int64_t{n} * p.h + iy) * p.w + ix) * c_n;
            for (int64_t c = 0; c < c_n; ++c) acc[c] += xs[c];
          }
        const Rescale r = by_count[count];
        for (int64_t c = 0; c < c_n; ++c)
          out[c] = static_cast<int8_t>(clamp_code(mbqm(acc[c], r) + p.output_zero_point, -128, 127));
      }
    }
}

void max_pool(const PoolParams& p, const int8_t* x, int8_t* y) {
  const int64_t c_n = p.c;
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy) {
      const Span sy = window_span(oy * p.stride_h - p.pad_top, p.kh, p.h);
      for (int ox = 0; ox < p.ow; ++ox) {
        const Span sx = window_span(ox * p.stride_w - p.pad_left, p.kw, p.w);
        int8_t* out = y + ((int64_t{n} * p.oh + oy) * p.ow + ox) * c_n;
        std::fill(out, out + c_n, int8_t{-128});
        for (int iy = sy.lo; iy < sy.hi; ++iy)
          for (int ix = sx.lo; ix < sx.hi; ++ix) {
            const int8_t* xs = x + ((int64_t{n} * p.h + iy) * p.w + ix) * c_n;
            for (int64_t c = 0; c < c_n; ++c) out[c] = std::max(out[c], xs[c]);
          }
      }
    }
}

ResizeParams make_resize_params(int n, int h, int w, int c, int oh, int ow, const AffineQuant& in,
                                const AffineQuant& out) {
  return {.n = n,
          .h = h,
          .w = w,
          .c = c,
          .oh = oh,
          .ow = ow,
          .input_zero_point = in.zero_point,
          .output_zero_point = out.zero_point,
          .multiplier = quantize_multiplier(static_cast<double>(in.scale) /
                                            (static_cast<double>(out.scale) * (1 << 20)))};
}

void resize_bilinear(const ResizeParams& p, const int8_t* x, int8_t* y) {
  const std::vector<ResizeTap> ty = resize_taps(p.h, p.oh), tx = resize_taps(p.w, p.ow);
  const Rescale r = unpack(p.multiplier);
  const int64_t c_n = p.c;
  // Σ w * (x - zi) = Σ w * x - zi * 2^20, as the weights sum to 2^20.
  const int32_t zero_sum = p.input_zero_point * (1 << 20);
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy) {
      const int8_t* row0 = x + (int64_t{n} * p.h + ty[oy].i0) * p.w * c_n;
      const int8_t* row1 = x + (int64_t{n} * p.h + ty[oy].i1) * p.w * c_n;
      for (int ox = 0; ox < p.ow; ++ox) {
        const ResizeTap& t = tx[ox];
        const int32_t w00 = ty[oy].w0 * t.w0, w01 = ty[oy].w0 * t.w1;
        const int32_t w10 = ty[oy].w1 * t.w0, w11 = ty[oy].w1 * t.w1;
        const int8_t *a = row0 + t.i0 * c_n, *b = row0 + t.i1 * c_n;
        const int8_t *c = row1 + t.i0 * c_n, *d = row1 + t.i1 * c_n;
        int8_t* out = y + ((int64_t{n} * p.oh + oy) * p.ow + ox) * c_n;
        for (int64_t ch = 0; ch < c_n; ++ch) {
          const int32_t acc = w00 * a[ch] + w01 * b[ch] + w10 * c[ch] + w11 * d[ch] - zero_sum;
          out[ch] = static_cast<int8_t>(clamp_code(mbqm(acc, r) + p.output_zero_point, -128, 127));
        }
      }
    }
}

void concat(const std::vector<ConcatInput>& inputs, const AffineQuant& out, int64_t rows, int8_t* y) {
  int64_t total = 0;
  for (const ConcatInput& in : inputs) total += in.c;
  int64_t col = 0;
  for (const ConcatInput& in : inputs) {
    const bool same = in.quant.scale == out.scale && in.quant.zero_point == out.zero_point;
    const RequantizeParams rp = make_requantize_params(in.quant, out);
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* src = in.data + r * in.c;
      int8_t* dst = y + r * total + col;
      if (same)
        std::memcpy(dst, src, in.c);
      else
        requantize(rp, src, dst, in.c);
    }
    col += in.c;
  }
}

// ---- float boundaries -------------------------------------------------------------------

// quantize_value on 8 lanes: round(x / scale) half away from zero as
// trunc(v) + sign(v) where |v - trunc(v)| >= 1/2 (v - trunc(v) is exact in
// float, so no addition rounds first), clamped in float, plus the zero point.
void quantize(const float* x, const AffineQuant& q, int8_t* y, int64_t count) {
  const __m256 scale = _mm256_set1_ps(q.scale), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(q.qmin - q.zero_point)),
               hi = _mm256_set1_ps(static_cast<float>(q.qmax - q.zero_point));
  const __m256i zp = _mm256_set1_epi32(q.zero_point);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), scale);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 away = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half, _CMP_GE_OQ);
    const __m256 r = _mm256_add_ps(t, _mm256_and_ps(away, _mm256_or_ps(_mm256_and_ps(v, sign), one)));
    store8(y + i, _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi)), zp));
  }
  for (; i < count; ++i) y[i] = static_cast<int8_t>(quantize_value(x[i], q));
}

void dequantize(const int8_t* x, const AffineQuant& q, float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = dequantize_value(x[i], q);
}

// ---- naive references -------------------------------------------------------------------

namespace ref {

void conv2d(const ConvParams& p, const int8_t* weights, const int32_t* bias,
            const QuantizedMultiplier* multipliers, const int8_t* x, int8_t* y, const float* float32_scales) {
  const int ci_per_group = p.c_in / p.groups, co_per_group = p.c_out / p.groups;
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy)
      for (int ox = 0; ox < p.ow; ++ox)
        for (int co = 0; co < p.c_out; ++co) {
          const int g = co / co_per_group;
          int32_t acc = bias ? bias[co] : 0;
          for (int ky = 0; ky < p.kh; ++ky)
            for (int kx = 0; kx < p.kw; ++kx) {
              const int iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
              const int ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
              // A padded position holds input_zero_point: it adds 0.
              if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
              for (int ci = 0; ci < ci_per_group; ++ci) {
                const int32_t xv = x[((int64_t{n} * p.h + iy) * p.w + ix) * p.c_in + g * ci_per_group + ci];
                const int32_t wv = weights[((int64_t{ky} * p.kw + kx) * ci_per_group + ci) * p.c_out + co];
                acc += (xv - p.input_zero_point) * wv;
              }
            }
          const int32_t q =
              float32_scales
                  ? rescale_float32(acc, float32_scales[co], p.output_zero_point, p.act_min, p.act_max)
                  : clamp_code(multiply_by_quantized_multiplier(acc, multipliers[co]) + p.output_zero_point,
                               p.act_min, p.act_max);
          y[((int64_t{n} * p.oh + oy) * p.ow + ox) * p.c_out + co] = static_cast<int8_t>(q);
        }
}

void fully_connected(const FullyConnectedParams& p, const int8_t* weights, const int32_t* bias,
                     const int8_t* x, int8_t* y) {
  for (int n = 0; n < p.n; ++n)
    for (int o = 0; o < p.out; ++o) {
      int32_t acc = bias ? bias[o] : 0;
      for (int i = 0; i < p.in; ++i)
        acc += (x[int64_t{n} * p.in + i] - p.input_zero_point) * weights[int64_t{i} * p.out + o];
      const int32_t q = multiply_by_quantized_multiplier(acc, p.multiplier) + p.output_zero_point;
      y[int64_t{n} * p.out + o] = static_cast<int8_t>(clamp_code(q, p.act_min, p.act_max));
    }
}

void add(const AddParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const int32_t shifted1 = (a[i] + p.input1_offset) * (1 << p.left_shift);
    const int32_t shifted2 = (b[i] + p.input2_offset) * (1 << p.left_shift);
    const int32_t sum = multiply_by_quantized_multiplier(shifted1, p.input1_multiplier) +
                        multiply_by_quantized_multiplier(shifted2, p.input2_multiplier);
    const int32_t q = multiply_by_quantized_multiplier(sum, p.output_multiplier) + p.output_offset;
    y[i] = static_cast<int8_t>(clamp_code(q, p.act_min, p.act_max));
  }
}

void mul(const MulParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t outer, int64_t inner,
         int64_t broadcast_group) {
  for (int64_t row = 0; row < outer; ++row)
    for (int64_t i = 0; i < inner; ++i) {
      const int32_t av = a[row * inner + i] + p.input1_offset;
      const int32_t bv = b[(row / broadcast_group) * inner + i] + p.input2_offset;
      const int32_t q = multiply_by_quantized_multiplier(av * bv, p.multiplier) + p.output_offset;
      y[row * inner + i] = static_cast<int8_t>(clamp_code(q, p.act_min, p.act_max));
    }
}

void mean_hw(const MeanParams& p, const int8_t* x, int8_t* y) {
  for (int n = 0; n < p.n; ++n)
    for (int c = 0; c < p.c; ++c) {
      int32_t acc = 0;
      for (int iy = 0; iy < p.h; ++iy)
        for (int ix = 0; ix < p.w; ++ix)
          acc += x[((int64_t{n} * p.h + iy) * p.w + ix) * p.c + c] - p.input_zero_point;
      const int32_t q = multiply_by_quantized_multiplier(acc, p.multiplier) + p.output_zero_point;
      y[int64_t{n} * p.c + c] = static_cast<int8_t>(clamp_code(q, -128, 127));
    }
}

void avg_pool(const PoolParams& p, const int8_t* x, int8_t* y) {
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy)
      for (int ox = 0; ox < p.ow; ++ox)
        for (int c = 0; c < p.c; ++c) {
          int32_t acc = 0;
          int count = 0;
          for (int ky = 0; ky < p.kh; ++ky)
            for (int kx = 0; kx < p.kw; ++kx) {
              const int iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
              if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
              acc += x[((int64_t{n} * p.h + iy) * p.w + ix) * p.c + c] - p.input_zero_point;
              ++count;
            }
          const int32_t q = count == 0
                                ? p.output_zero_point
                                : multiply_by_quantized_multiplier(acc, avg_pool_multiplier(p, count)) +
                                      p.output_zero_point;
          y[((int64_t{n} * p.oh + oy) * p.ow + ox) * p.c + c] = static_cast<int8_t>(clamp_code(q, -128, 127));
        }
}

void max_pool(const PoolParams& p, const int8_t* x, int8_t* y) {
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy)
      for (int ox = 0; ox < p.ow; ++ox)
        for (int c = 0; c < p.c; ++c) {
          int8_t m = -128;
          for (int ky = 0; ky < p.kh; ++ky)
            for (int kx = 0; kx < p.kw; ++kx) {
              const int iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
              if (iy < 0 || iy >= p.h || ix < 0 || ix >= p.w) continue;
              m = std::max(m, x[((int64_t{n} * p.h + iy) * p.w + ix) * p.c + c]);
            }
          y[((int64_t{n} * p.oh + oy) * p.ow + ox) * p.c + c] = m;
        }
}

void resize_bilinear(const ResizeParams& p, const int8_t* x, int8_t* y) {
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy)
      for (int ox = 0; ox < p.ow; ++ox)
        for (int c = 0; c < p.c; ++c) {
          const ResizeTap ty = resize_tap(oy, p.h, p.oh), tx = resize_tap(ox, p.w, p.ow);
          auto at = [&](int iy, int ix) -> int32_t {
            return x[((int64_t{n} * p.h + iy) * p.w + ix) * p.c + c] - p.input_zero_point;
          };
          const int32_t acc = ty.w0 * tx.w0 * at(ty.i0, tx.i0) + ty.w0 * tx.w1 * at(ty.i0, tx.i1) +
                              ty.w1 * tx.w0 * at(ty.i1, tx.i0) + ty.w1 * tx.w1 * at(ty.i1, tx.i1);
          const int32_t q = multiply_by_quantized_multiplier(acc, p.multiplier) + p.output_zero_point;
          y[((int64_t{n} * p.oh + oy) * p.ow + ox) * p.c + c] = static_cast<int8_t>(clamp_code(q, -128, 127));
        }
}

}  // namespace ref

}  // namespace bonsai::quant::int8
