// Integer kernels of the int8 runtime (quant/int8_kernels.h). The fast
// versions come first, the naive references (namespace ref) last; the tests
// compare the two byte for byte.
#include "quant/int8_kernels.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "core/check.h"
#include "core/dnnl_util.h"

namespace bonsai::quant::int8 {

using dnnl::memory;
namespace du = dnnl_util;

namespace {

int32_t clamp_code(int32_t v, int32_t lo, int32_t hi) { return std::min(std::max(v, lo), hi); }

// ---- vectorisable requantization ----------------------------------------------

// A QuantizedMultiplier unpacked into the shifts MBQM applies.
struct Rescale {
  int32_t multiplier = 0, left_shift = 0, right_shift = 0;
};

Rescale unpack(const QuantizedMultiplier& m) {
  return {.multiplier = m.multiplier,
          .left_shift = std::max(m.shift, 0),
          .right_shift = std::max(-m.shift, 0)};
}

// quant::multiply_by_quantized_multiplier, bit for bit, as branch-free
// integer arithmetic the compiler can vectorise (scheme.cpp's version is an
// out-of-line call with a range check). The doubling high mul rounds a*b/2^31
// to nearest with ties toward +infinity, which for every sign is
// floor((a*b + 2^30) / 2^31): the low 32 bits of that quotient are bits 31..62
// of the 64-bit sum, so a logical shift gives them.
inline int32_t mbqm(int32_t x, int32_t multiplier, int32_t left_shift, int32_t right_shift) {
  constexpr int32_t kMin = std::numeric_limits<int32_t>::min();
  const auto shifted = static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);
  const int64_t ab = static_cast<int64_t>(shifted) * multiplier;
  auto high = static_cast<int32_t>(static_cast<uint64_t>(ab + (int64_t{1} << 30)) >> 31);
  high = (shifted == kMin && multiplier == kMin) ? std::numeric_limits<int32_t>::max() : high;
  // Rounding right shift, ties away from zero (gemmlowp's RoundingDivideByPOT).
  const auto mask = static_cast<int32_t>((uint32_t{1} << right_shift) - 1);
  const int32_t remainder = high & mask;
  const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right_shift) + (remainder > threshold ? 1 : 0);
}

inline int32_t mbqm(int32_t x, const Rescale& r) {
  return mbqm(x, r.multiplier, r.left_shift, r.right_shift);
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

// Whether oneDNN's int8 convolution returns the exact int32 Σ x*w for these
// weights on this CPU. Its jit kernels pass the s32 accumulator through f32
// (to apply output scales) before storing it as s32, exact only while
// |Σ x*w| <= 2^24, which 128 * Σ|w| <= 2^24 per output channel guarantees
// (|x| <= 128); and without VNNI they halve s8 weights (rounding them) to
// keep vpmaddubsw's int16 pair sums from saturating.
bool onednn_is_exact(const ConvParams& p, const int8_t* weights) {
  using dnnl::cpu_isa;
  const cpu_isa isa = dnnl::get_effective_cpu_isa();
  if (isa != cpu_isa::avx2_vnni && isa != cpu_isa::avx512_core_vnni && isa != cpu_isa::avx512_core_bf16 &&
      isa != cpu_isa::avx512_core_amx)
    return false;
  const int64_t taps = int64_t{p.kh} * p.kw * (p.c_in / p.groups);
  std::vector<int64_t> abs_sum(p.c_out, 0);
  for (int64_t k = 0; k < taps; ++k)
    for (int co = 0; co < p.c_out; ++co) abs_sum[co] += std::abs(int{weights[k * p.c_out + co]});
  return 128 * *std::max_element(abs_sum.begin(), abs_sum.end()) <= (int64_t{1} << 24);
}

}  // namespace

// ---- Conv2dKernel ----------------------------------------------------------------
//
// run(): unless x itself fits the windows exactly, it first goes into a
// scratch copy padded with input_zero_point (and cut to the rows and columns
// the windows read), so every window lies inside it; oneDNN (or the direct
// loop) convolves that without padding into acc = Σ x*w. Since padded codes
// equal the zero point,
//   Σ (x - zi) * w = acc - zi * Σ w,
// with Σ w over the whole window of channel c: one constant per channel,
// folded with the bias into offset[c]. Requantization is then one
// vectorisable pass over [positions, c_out].

struct Conv2dKernel::Impl {
  int hp = 0, wp = 0;     // rows and columns of the convolved input
  bool pad_copy = false;  // convolve a padded copy of x, else x itself
  bool use_onednn = false;
  std::vector<int8_t> padded;  // [n, hp, wp, c_in] when pad_copy
  std::vector<int32_t> acc;    // [n, oh, ow, c_out]
  // Per output channel: bias - zi * Σ w, and the unpacked multipliers.
  std::vector<int32_t> offset, multiplier, left_shift, right_shift;
  std::vector<int8_t> weights;  // HWIO, for the direct loop
  dnnl::convolution_forward conv;
  memory src, wei, dst;
};

Conv2dKernel::Conv2dKernel(const ConvParams& p, const int8_t* weights, const int32_t* bias,
                           const std::vector<QuantizedMultiplier>& multipliers)
    : p_(p), impl_(std::make_unique<Impl>()) {
  check_conv_params(p, multipliers.size());
  Impl& im = *impl_;
  const int ext_h = extent(p.kh, p.dilation_h), ext_w = extent(p.kw, p.dilation_w);
  im.hp = (p.oh - 1) * p.stride_h + ext_h;
  im.wp = (p.ow - 1) * p.stride_w + ext_w;
  // x itself serves when the windows start at its corner and the last ones
  // end within a stride of its far edges (what oneDNN's unpadded output size
  // formula requires).
  const bool fits = p.pad_top == 0 && p.pad_left == 0 && im.hp <= p.h && p.h - im.hp < p.stride_h &&
                    im.wp <= p.w && p.w - im.wp < p.stride_w;
  im.pad_copy = !fits;
  if (fits) {
    im.hp = p.h;
    im.wp = p.w;
  } else {
    im.padded.resize(static_cast<size_t>(p.n) * im.hp * im.wp * p.c_in);
  }
  im.acc.resize(static_cast<size_t>(p.n) * p.oh * p.ow * p.c_out);

  const int64_t taps = int64_t{p.kh} * p.kw * (p.c_in / p.groups);
  const int64_t weight_count = taps * p.c_out;
  std::vector<int32_t> weight_sum(p.c_out, 0);
  for (int64_t k = 0; k < taps; ++k)
    for (int co = 0; co < p.c_out; ++co) weight_sum[co] += weights[k * p.c_out + co];
  im.offset.resize(p.c_out);
  im.multiplier.resize(p.c_out);
  im.left_shift.resize(p.c_out);
  im.right_shift.resize(p.c_out);
  for (int co = 0; co < p.c_out; ++co) {
    im.offset[co] = (bias ? bias[co] : 0) - p.input_zero_point * weight_sum[co];
    const Rescale r = unpack(multipliers[co]);
    im.multiplier[co] = r.multiplier;
    im.left_shift[co] = r.left_shift;
    im.right_shift[co] = r.right_shift;
  }

  im.use_onednn = onednn_is_exact(p, weights);
  if (!im.use_onednn) {
    im.weights.assign(weights, weights + weight_count);
    return;
  }
  using dt = memory::data_type;
  using tag = memory::format_tag;
  auto& eng = du::engine();
  const memory::desc src_md({p.n, p.c_in, im.hp, im.wp}, dt::s8, tag::nhwc);
  const memory::desc dst_md({p.n, p.c_out, p.oh, p.ow}, dt::s32, tag::nhwc);
  // HWIO [kh, kw, c_in, c_out] is oneDNN's hwio over {O, I, KH, KW}; the
  // depthwise [kh, kw, 1, c] is hwigo over {G, 1, 1, KH, KW}.
  const memory::dims wdims =
      p.groups == 1 ? memory::dims{p.c_out, p.c_in, p.kh, p.kw} : memory::dims{p.groups, 1, 1, p.kh, p.kw};
  const memory::desc user_w_md(wdims, dt::s8, p.groups == 1 ? tag::hwio : tag::hwigo);
  const memory::desc any_w_md(wdims, dt::s8, tag::any);
  const dnnl::convolution_forward::desc desc(
      dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, any_w_md, dst_md,
      {p.stride_h, p.stride_w}, {p.dilation_h - 1, p.dilation_w - 1}, {0, 0}, {0, 0});
  const dnnl::convolution_forward::primitive_desc pd(desc, eng);
  im.conv = dnnl::convolution_forward(pd);
  // The reorder also computes oneDNN's s8-source compensation.
  memory user_w(user_w_md, eng, const_cast<int8_t*>(weights));
  im.wei = memory(pd.weights_desc(), eng);
  dnnl::reorder(user_w, im.wei).execute(du::stream(), user_w, im.wei);
  du::stream().wait();
  im.src = memory(src_md, eng, DNNL_MEMORY_NONE);
  im.dst = memory(dst_md, eng, im.acc.data());
}

Conv2dKernel::~Conv2dKernel() = default;

namespace {

// x [n, h, w, c] into padded [n, hp, wp, c]: the image at (pad_top,
// pad_left), every other position (and nothing past hp, wp) set to zi.
void pad_input(const ConvParams& p, int hp, int wp, const int8_t* x, int8_t* padded) {
  const auto fill = static_cast<int8_t>(p.input_zero_point);
  const int64_t c = p.c_in;
  const int col_lo = std::min(p.pad_left, wp), col_hi = std::min(p.pad_left + p.w, wp);
#pragma omp parallel for collapse(2) if (int64_t{p.n} * hp * wp * c > 65536)
  for (int n = 0; n < p.n; ++n)
    for (int r = 0; r < hp; ++r) {
      int8_t* row = padded + (int64_t{n} * hp + r) * wp * c;
      const int sy = r - p.pad_top;
      if (sy < 0 || sy >= p.h || col_hi <= col_lo) {
        std::memset(row, fill, wp * c);
        continue;
      }
      std::memset(row, fill, col_lo * c);
      std::memcpy(row + col_lo * c, x + ((int64_t{n} * p.h + sy) * p.w + col_lo - p.pad_left) * c,
                  (col_hi - col_lo) * c);
      std::memset(row + col_hi * c, fill, (wp - col_hi) * c);
    }
}

// acc [n, oh, ow, c_out] = Σ x*w over unpadded windows of src [n, hp, wp,
// c_in]: the exact integer path where oneDNN would not be exact.
void accumulate_direct(const ConvParams& p, int hp, int wp, const int8_t* src, const int8_t* w,
                       int32_t* acc) {
  const int64_t ci_n = p.c_in, co_n = p.c_out;
  const bool depthwise = p.groups != 1;
#pragma omp parallel for collapse(2) if (int64_t{p.n} * p.oh * p.ow * co_n > 16384)
  for (int n = 0; n < p.n; ++n)
    for (int oy = 0; oy < p.oh; ++oy)
      for (int ox = 0; ox < p.ow; ++ox) {
        int32_t* a = acc + ((int64_t{n} * p.oh + oy) * p.ow + ox) * co_n;
        std::fill(a, a + co_n, 0);
        for (int ky = 0; ky < p.kh; ++ky)
          for (int kx = 0; kx < p.kw; ++kx) {
            const int iy = oy * p.stride_h + ky * p.dilation_h, ix = ox * p.stride_w + kx * p.dilation_w;
            const int8_t* xs = src + ((int64_t{n} * hp + iy) * wp + ix) * ci_n;
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

}  // namespace

void Conv2dKernel::run(const int8_t* x, int8_t* y) {
  const ConvParams& p = p_;
  Impl& im = *impl_;
  const int8_t* src = x;
  if (im.pad_copy) {
    pad_input(p, im.hp, im.wp, x, im.padded.data());
    src = im.padded.data();
  }
  if (im.use_onednn) {
    im.src.set_data_handle(const_cast<int8_t*>(src));
    im.conv.execute(du::stream(),
                    {{DNNL_ARG_SRC, im.src}, {DNNL_ARG_WEIGHTS, im.wei}, {DNNL_ARG_DST, im.dst}});
    du::stream().wait();
  } else {
    accumulate_direct(p, im.hp, im.wp, src, im.weights.data(), im.acc.data());
  }
  const int64_t positions = int64_t{p.n} * p.oh * p.ow, co_n = p.c_out;
  const int32_t* offset = im.offset.data();
  const int32_t* mult = im.multiplier.data();
  const int32_t* ls = im.left_shift.data();
  const int32_t* rs = im.right_shift.data();
  const int32_t zo = p.output_zero_point, lo = p.act_min, hi = p.act_max;
#pragma omp parallel for if (positions * co_n > 65536)
  for (int64_t i = 0; i < positions; ++i) {
    const int32_t* a = im.acc.data() + i * co_n;
    int8_t* out = y + i * co_n;
    for (int64_t c = 0; c < co_n; ++c)
      out[c] = static_cast<int8_t>(clamp_code(mbqm(a[c] + offset[c], mult[c], ls[c], rs[c]) + zo, lo, hi));
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
  const int32_t scale_up = 1 << p.left_shift;
  for (int64_t i = 0; i < count; ++i) {
    const int32_t sum =
        mbqm((a[i] + p.input1_offset) * scale_up, r1) + mbqm((b[i] + p.input2_offset) * scale_up, r2);
    y[i] = static_cast<int8_t>(clamp_code(mbqm(sum, ro) + p.output_offset, p.act_min, p.act_max));
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
  for (int64_t row = 0; row < outer; ++row) {
    const int8_t* ar = a + row * inner;
    const int8_t* br = b + (row / broadcast_group) * inner;
    int8_t* yr = y + row * inner;
    for (int64_t i = 0; i < inner; ++i) {
      const int32_t prod = (ar[i] + p.input1_offset) * (br[i] + p.input2_offset);
      yr[i] = static_cast<int8_t>(clamp_code(mbqm(prod, r) + p.output_offset, p.act_min, p.act_max));
    }
  }
}

void lookup(const int8_t* table, const int8_t* x, int8_t* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = table[x[i] + 128];
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
  for (int64_t i = 0; i < count; ++i)
    y[i] =
        static_cast<int8_t>(clamp_code(mbqm(x[i] - p.input_zero_point, r) + p.output_zero_point, -128, 127));
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

void quantize(const float* x, const AffineQuant& q, int8_t* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = static_cast<int8_t>(quantize_value(x[i], q));
}

void dequantize(const int8_t* x, const AffineQuant& q, float* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) y[i] = dequantize_value(x[i], q);
}

// ---- naive references -------------------------------------------------------------------

namespace ref {

void conv2d(const ConvParams& p, const int8_t* weights, const int32_t* bias,
            const QuantizedMultiplier* multipliers, const int8_t* x, int8_t* y) {
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
          const int32_t q = multiply_by_quantized_multiplier(acc, multipliers[co]) + p.output_zero_point;
          y[((int64_t{n} * p.oh + oy) * p.ow + ox) * p.c_out + co] =
              static_cast<int8_t>(clamp_code(q, p.act_min, p.act_max));
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
