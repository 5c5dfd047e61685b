// Integer kernels of the int8 runtime (quant/int8_model.h): every op the
// converted graph executes, on int8 NHWC tensors with TFLite's arithmetic.
// Each op has a naive scalar reference (namespace ref) and a fast version;
// the two are bit-exact (tests/quant/test_int8_kernels.cpp).
//
//   quant::int8::ConvParams p{...};                      // shapes, zero points, clamp
//   std::vector<QuantizedMultiplier> m = ...;             // one per output channel
//   quant::int8::Conv2dKernel conv(p, weights, bias, m);  // prepares oneDNN once
//   conv.run(x, y);                                       // x [N,H,W,Cin] int8 -> y int8
//   quant::int8::ref::conv2d(p, weights, bias, m.data(), x, y_ref);  // same bytes
//
// Conventions shared by all ops:
//  - real = (q - zero_point) * scale; int8 codes in [-128, 127].
//  - accumulators are exact int32; rescaling uses quant::multiply_by_quantized_multiplier
//    (quant/scheme.h); the result gets the output zero point added and is
//    clamped to [act_min, act_max] (the fused activation, in output codes;
//    no activation: [-128, 127]).
//  - rounding of real → int8 (quantize) is half away from zero (TFLite).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/scheme.h"

namespace bonsai::quant::int8 {

// How convolutions, fully connected layers and ADD take their exact integer
// results to the output grid.
//  - fixed_point (the default): TFLite's reference arithmetic. The real
//    multiplier as a Q31 number and a shift (quant/scheme.h), rounded once,
//    ties up: the exact result to within 2^-31 of the multiplier, what the
//    QAT simulation computes; TFLite's reference kernels and TFLite Micro.
//  - float32: the arithmetic of ONNX Runtime (MLAS) and TFLite's XNNPACK
//    delegate. A float32 scale, float32(s_in * s_w) / s_out
//    (float32_scale), times float32(acc), rounded to nearest with ties to
//    even; ADD as MLAS's float formula on the int8 codes (add_float32).
//    A model run this way gives those runtimes' codes: the two differ
//    only where the float32 product lands within its rounding error of a
//    half step (about one output in 10^5).
//  - onnxruntime: float32, except that ADD runs on uint8 codes (code + 128,
//    zero points + 128), as ONNX Runtime does on x86, where it turns int8
//    activations into uint8 before running its QLinear kernels. Equal in
//    exact arithmetic; in float32 a near-tie can round the other way (19 of
//    128,000 outputs of one MobileNetV2 add).
enum class Rescaling { fixed_point, float32, onnxruntime };
const char* rescaling_name(Rescaling r);                 // "fixed_point", "float32", "onnxruntime"
Rescaling rescaling_from_name(const std::string& name);  // the inverse; anything else is an error
// Whether convolutions and fully connected layers take float32 scales
// (float32 and onnxruntime) rather than the fixed-point multipliers.
inline bool uses_float32_scales(Rescaling r) { return r != Rescaling::fixed_point; }
// The shift of the codes ADD's float formula runs on: 128 for ONNX
// Runtime's uint8 codes, 0 otherwise (AddFloat32Params::offset).
inline int32_t add_code_offset(Rescaling r) { return r == Rescaling::onnxruntime ? 128 : 0; }

// float32(input_scale * weight_scale) / output_scale, each step rounded to
// float32 (no fused multiply-add), as ONNX Runtime's QLinearConv computes
// its output scales.
float float32_scale(float input_scale, float weight_scale, float output_scale);
// clamp(round_half_even(float32(x) * scale) + zero_point, lo, hi), clamping
// in float before rounding as MLAS does.
int32_t rescale_float32(int32_t x, float scale, int32_t zero_point, int32_t lo, int32_t hi);

// Kernels with an AVX-512 form (the requantization of convolutions, both
// rescalings) use it where the CPU has AVX-512; false makes them take their
// AVX2 form, so tests can check both on one machine.
void set_avx512_for_testing(bool allowed);
// Whether the AVX-512 forms run: the CPU has AVX-512 F, BW and DQ, and tests allow them.
bool use_avx512();

// ---- convolution (regular and depthwise) -----------------------------------

struct ConvParams {
  int n = 1, h = 0, w = 0, c_in = 0;  // input [n, h, w, c_in]
  int oh = 0, ow = 0, c_out = 0;      // output [n, oh, ow, c_out]
  int kh = 1, kw = 1;
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;
  int pad_top = 0, pad_left = 0;  // bottom/right follow from the output size
  int groups = 1;                 // 1, or c_in == c_out (depthwise)
  int32_t input_zero_point = 0;   // padded positions hold this code (real 0)
  int32_t output_zero_point = 0;
  int32_t act_min = -128, act_max = 127;
};
// weights: HWIO int8 [kh, kw, c_in/groups, c_out] (depthwise: [kh, kw, 1, c]),
// symmetric (zero point 0); bias: int32 [c_out] (may be null: zeros);
// multipliers: [c_out], each s_in * s_w[c] / s_out.
//   acc[c] = bias[c] + Σ (x - input_zero_point) * w   over the window
//   y = clamp(MBQM(acc, multipliers[c]) + output_zero_point, act_min, act_max)

// The fast path: oneDNN's int8 convolution (on VNNI CPUs) into int32
// accumulators, then the requantization above in one vectorised pass.
// oneDNN pads with zeros, not with the zero point, so it returns
// Σ x*w over the taps inside the image; the zero point's part,
// -zi * Σ w over those same taps, depends only on which taps a window loses
// at the borders and is folded, per border case, into the bias. oneDNN's
// kernels pass each final int32 sum through f32 on the way out, exact while
// |Σ| <= 2^24: a result of magnitude >= 2^24 may have been rounded, so those
// few are recomputed with an integer loop. Without VNNI (oneDNN would round
// the weights) the accumulators come from that loop throughout.
// Construction checks the shapes and reorders the weights once; run() may be
// called any number of times, one call at a time.
class Conv2dKernel {
 public:
  // float32_scales (one per output channel, float32_scale) selects
  // Rescaling::float32; empty: the multipliers (fixed point).
  Conv2dKernel(const ConvParams& p, const int8_t* weights, const int32_t* bias,
               const std::vector<QuantizedMultiplier>& multipliers, const std::vector<float>& float32_scales = {});
  ~Conv2dKernel();
  Conv2dKernel(const Conv2dKernel&) = delete;
  Conv2dKernel& operator=(const Conv2dKernel&) = delete;
  // x [n, h, w, c_in] -> y [n, oh, ow, c_out], with scratch held by the kernel.
  void run(const int8_t* x, int8_t* y);
  // The same with the caller's scratch (scratch_bytes() bytes, 64-byte
  // aligned), so kernels run one after another can share one buffer.
  void run(const int8_t* x, int8_t* y, void* scratch);
  size_t scratch_bytes() const;
  const ConvParams& params() const { return p_; }
  // How run() computes the accumulators: "pointwise" (a 1x1 convolution
  // requantized in registers, AVX-512 VNNI), "depthwise" (the same for a
  // 3x3 or 5x5 depthwise one), "onednn" or "direct" (tests, profiles).
  const char* path() const;

 private:
  struct Impl;
  ConvParams p_;
  std::unique_ptr<Impl> impl_;
};

// ---- fully connected ---------------------------------------------------------

struct FullyConnectedParams {
  int n = 1, in = 0, out = 0;  // x [n, in] -> y [n, out]
  int32_t input_zero_point = 0, output_zero_point = 0;
  int32_t act_min = -128, act_max = 127;
  QuantizedMultiplier multiplier;  // s_in * s_w / s_out (per tensor)
};
// weights int8 [in, out] (bonsai's dense layout), bias int32 [out] or null.
void fully_connected(const FullyConnectedParams& p, const int8_t* weights, const int32_t* bias,
                     const int8_t* x, int8_t* y);

// ---- elementwise -------------------------------------------------------------

// TFLite's int8 ADD: both inputs shifted left by 20 bits and rescaled to
// twice the larger input scale, summed, rescaled to the output.
struct AddParams {
  int32_t input1_offset = 0, input2_offset = 0;  // -zero_point
  int32_t output_offset = 0;                     // +zero_point
  int left_shift = 20;
  QuantizedMultiplier input1_multiplier, input2_multiplier, output_multiplier;
  int32_t act_min = -128, act_max = 127;
};
// As TFLite's PrepareGeneralSubOp / CalculateQuantizedAddParams:
//   twice_max = 2 * max(s1, s2)
//   input1_multiplier = s1 / twice_max, input2_multiplier = s2 / twice_max,
//   output_multiplier = twice_max / ((1 << left_shift) * s_out)
AddParams make_add_params(const AffineQuant& in1, const AffineQuant& in2, const AffineQuant& out,
                          int32_t act_min = -128, int32_t act_max = 127);
// a, b, y: `count` elements each.
void add(const AddParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t count);

// ADD with Rescaling::float32 and onnxruntime, the float formula of ONNX
// Runtime's QLinearAdd (MLAS, AVX2), on codes shifted by `offset` (0 for
// int8, 128 for the uint8 codes ONNX Runtime runs on x86):
//   ratio_a = s_a / s_out, ratio_b = s_b / s_out   (float32)
//   fixed = (zo + offset) - fma(ratio_a, za + offset, ratio_b * (zb + offset))    (float32)
//   y = clamp(round_half_even(fma(a + offset, ratio_a, fma(b + offset, ratio_b, fixed))) - offset,
//             act_min, act_max)
struct AddFloat32Params {
  float ratio_a = 1, ratio_b = 1, fixed = 0;
  int32_t offset = 0;
  int32_t act_min = -128, act_max = 127;
};
AddFloat32Params make_add_float32_params(const AffineQuant& in1, const AffineQuant& in2, const AffineQuant& out,
                                         int32_t act_min = -128, int32_t act_max = 127, int32_t offset = 0);
void add_float32(const AddFloat32Params& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t count);

// TFLite's int8 MUL: acc = (a - za) * (b - zb); y = MBQM(acc, s_a*s_b/s_out) + zo.
struct MulParams {
  int32_t input1_offset = 0, input2_offset = 0, output_offset = 0;
  QuantizedMultiplier multiplier;
  int32_t act_min = -128, act_max = 127;
};
MulParams make_mul_params(const AffineQuant& in1, const AffineQuant& in2, const AffineQuant& out,
                          int32_t act_min = -128, int32_t act_max = 127);
// a [outer, inner]; b [outer / broadcast_group, inner]: row r of a meets row
// r / broadcast_group of b. broadcast_group = 1: b has a's shape. The SE case,
// a [N, H, W, C] times b [N, 1, 1, C]: outer = N*H*W, inner = C,
// broadcast_group = H*W.
void mul(const MulParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t outer, int64_t inner,
         int64_t broadcast_group);

// A two-input op with both inputs' grids fixed (as in a converted model) is
// a function of 65536 code pairs: the whole op as one 64 KiB table, built
// by running the kernel above on every pair (so exact by construction) and
// read with AVX2 gathers — a few times faster than the arithmetic. ADD
// goes faster still through a float shortcut that is provably the exact
// result away from rounding ties, and reads the table near them (see
// int8_kernels.cpp).
//   PairTable t = PairTable::add(params);   // once
//   t.run(a, b, y, count);                  // y[i] = add(a[i], b[i])
class PairTable {
 public:
  static constexpr int kSize = 256 * 256;
  // ADD's shortcut: t = a * scale_a + (b * scale_b + offset) in f32; where
  // frac(t) keeps `band` away from 0 and 1, y = clamp(floor(t) + zero_point).
  struct Screen {
    bool on = false;
    float scale_a = 0, scale_b = 0, offset = 0, band = 0;
    int32_t zero_point = 0, lo = -128, hi = 127;
  };

  static PairTable add(const AddParams& p);
  static PairTable add(const AddFloat32Params& p);  // Rescaling::float32 and onnxruntime
  static PairTable mul(const MulParams& p);
  void run(const int8_t* a, const int8_t* b, int8_t* y, int64_t count) const;
  // a [outer, inner], b [outer / broadcast_group, inner], as mul().
  void run(const int8_t* a, const int8_t* b, int8_t* y, int64_t outer, int64_t inner,
           int64_t broadcast_group) const;
  int8_t at(int8_t a, int8_t b) const {
    if (float32_) {
      int8_t y = 0;
      add_float32(add_float32_, &a, &b, &y, 1);
      return y;
    }
    return table_[(static_cast<uint8_t>(a ^ 0x80) << 8) | static_cast<uint8_t>(b ^ 0x80)];
  }

 private:
  explicit PairTable(size_t entries = kSize + 3) : table_(entries) {}  // 3 bytes of slack: the gathers read 4 at a time
  std::vector<int8_t> table_;         // [(a + 128) * 256 + (b + 128)]
  Screen screen_;
  bool float32_ = false;  // ADD with a float32 rescaling: add_float32 with add_float32_, no table
  AddFloat32Params add_float32_;
};

// A 256-entry table: y = table[x + 128]. Unary ops (hard_swish, sigmoid,
// hard_sigmoid, relu on its own, ...) are tables computed at conversion
// from the quantization parameters, so they equal the simulation exactly.
void lookup(const int8_t* table, const int8_t* x, int8_t* y, int64_t count);
// The table for f: table[q + 128] = quantize(f(dequantize(q, in)), out).
std::vector<int8_t> make_table(const AffineQuant& in, const AffineQuant& out, float (*f)(float));

// Requantize to other parameters: y = clamp(MBQM(x - zi, m) + zo), m = s_in / s_out.
struct RequantizeParams {
  int32_t input_zero_point = 0, output_zero_point = 0;
  QuantizedMultiplier multiplier;
};
RequantizeParams make_requantize_params(const AffineQuant& in, const AffineQuant& out);
void requantize(const RequantizeParams& p, const int8_t* x, int8_t* y, int64_t count);
// The same as a lookup() table.
std::vector<int8_t> make_requantize_table(const RequantizeParams& p);

// ---- pooling, resize, concat -------------------------------------------------

// Mean over H and W: x [n, h, w, c] -> y [n, 1, 1, c].
//   acc = Σ (x - zi); y = clamp(MBQM(acc, s_in / (s_out * h * w)) + zo)
struct MeanParams {
  int n = 1, h = 0, w = 0, c = 0;
  int32_t input_zero_point = 0, output_zero_point = 0;
  QuantizedMultiplier multiplier;  // s_in / (s_out * h * w)
};
MeanParams make_mean_params(int n, int h, int w, int c, const AffineQuant& in, const AffineQuant& out);
void mean_hw(const MeanParams& p, const int8_t* x, int8_t* y);

// Average pooling with explicit padding; padded positions are not counted
// (TF semantics): acc = Σ over valid (x - zi), count = number of valid
// positions; y = clamp(MBQM(acc, s_in / (s_out * count)) + zo). A window
// wholly in the padding gives zo.
struct PoolParams {
  int n = 1, h = 0, w = 0, c = 0;
  int oh = 0, ow = 0;
  int kh = 1, kw = 1, stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0;
  int32_t input_zero_point = 0, output_zero_point = 0;
  double input_scale = 1.0, output_scale = 1.0;  // avg pool: multipliers per count
};
void avg_pool(const PoolParams& p, const int8_t* x, int8_t* y);
// Max pooling: the output shares the input's quantization; padding ignored
// (a window wholly in the padding gives -128).
void max_pool(const PoolParams& p, const int8_t* x, int8_t* y);

// Bilinear resize with half-pixel centres (ops::resize_bilinear's geometry),
// in fixed point: source coordinates with 10 fractional bits, products of
// the two weights with 20, then
//   y = clamp(MBQM(Σ w * (x - zi), s_in / (s_out * 2^20)) + zo)
struct ResizeParams {
  int n = 1, h = 0, w = 0, c = 0;
  int oh = 0, ow = 0;
  int32_t input_zero_point = 0, output_zero_point = 0;
  QuantizedMultiplier multiplier;  // s_in / (s_out * 2^20)
};
ResizeParams make_resize_params(int n, int h, int w, int c, int oh, int ow, const AffineQuant& in,
                                const AffineQuant& out);
void resize_bilinear(const ResizeParams& p, const int8_t* x, int8_t* y);

// Concatenation along the last axis of inputs [rows, c_i] into [rows, Σ c_i];
// each input is requantized to the output's parameters (copied when equal).
struct ConcatInput {
  const int8_t* data = nullptr;
  int c = 0;
  AffineQuant quant;
};
void concat(const std::vector<ConcatInput>& inputs, const AffineQuant& out, int64_t rows, int8_t* y);

// ---- float boundaries ----------------------------------------------------------

void quantize(const float* x, const AffineQuant& q, int8_t* y, int64_t count);
void dequantize(const int8_t* x, const AffineQuant& q, float* y, int64_t count);

// ---- naive references ------------------------------------------------------------

namespace ref {
// float32_scales non-null: Rescaling::float32 with those scales.
void conv2d(const ConvParams& p, const int8_t* weights, const int32_t* bias,
            const QuantizedMultiplier* multipliers, const int8_t* x, int8_t* y,
            const float* float32_scales = nullptr);
void fully_connected(const FullyConnectedParams& p, const int8_t* weights, const int32_t* bias,
                     const int8_t* x, int8_t* y);
void add(const AddParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t count);
void mul(const MulParams& p, const int8_t* a, const int8_t* b, int8_t* y, int64_t outer, int64_t inner,
         int64_t broadcast_group);
void mean_hw(const MeanParams& p, const int8_t* x, int8_t* y);
void avg_pool(const PoolParams& p, const int8_t* x, int8_t* y);
void max_pool(const PoolParams& p, const int8_t* x, int8_t* y);
void resize_bilinear(const ResizeParams& p, const int8_t* x, int8_t* y);
}  // namespace ref

}  // namespace bonsai::quant::int8
