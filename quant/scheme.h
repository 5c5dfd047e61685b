// The int8 quantization scheme bonsai simulates in training and executes at
// deployment: TFLite's, number for number.
//
//   // Activations: asymmetric per tensor, range nudged so 0.0 is a grid point.
//   quant::AffineQuant a = quant::nudge_range(-0.8f, 5.3f, {.num_bits = 8});
//   int32_t q = quant::quantize_value(1.7f, a);        // in [-128, 127]
//   float back = quant::dequantize_value(q, a);        // (q - zero_point) * scale
//
//   // Conv / depthwise weights: symmetric, narrow range, per output channel
//   // (HWIO: the last axis); dense weights: the same, per tensor.
//   std::vector<quant::AffineQuant> w = quant::weight_quant_per_channel(kernel, 8);
//
//   // Requantizing an int32 accumulator to the output's int8 grid:
//   quant::QuantizedMultiplier m = quant::quantize_multiplier(s_in * s_w / s_out);
//   int32_t out = quant::multiply_by_quantized_multiplier(acc, m) + out_zero_point;
//
// The three pieces of the scheme:
//  - weights: symmetric, narrow range [-(2^(b-1)-1), 2^(b-1)-1] (int8: [-127,
//    127]), zero point 0, scale = max|w| / (2^(b-1)-1); per output channel
//    for conv and depthwise, per tensor for dense (TFMOT Default8Bit).
//  - activations: asymmetric [-2^(b-1), 2^(b-1)-1] with a zero point, the range
//    nudged exactly as TensorFlow's FakeQuantWithMinMaxVars does it so that
//    0.0 (zero padding, ReLU's floor) is represented without error.
//  - bias: int32, scale s_in * s_w (per channel with the weights), zero point 0.
// Integer ops rescale their int32 accumulators by a real multiplier expressed
// as a Q31 fixed-point number and a power-of-two shift (TFLite's
// QuantizeMultiplier / MultiplyByQuantizedMultiplier in its single-rounding
// form).
//
// num_bits may be 8 (deployable), 6 or 4 (simulation only, as the Model
// Garden's n-bit scheme).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace bonsai::quant {

// Checks that `num_bits` is one the scheme supports (4, 6 or 8).
void check_num_bits(int num_bits);

// Signed integer range of a quantized tensor.
struct QuantRange {
  int32_t qmin = -128, qmax = 127;
};
// Activations: the full signed range [-2^(b-1), 2^(b-1)-1].
QuantRange activation_range(int num_bits);
// Weights: narrow range, symmetric around 0: [-(2^(b-1)-1), 2^(b-1)-1].
QuantRange weight_range(int num_bits);

// An affine quantizer: real = (q - zero_point) * scale, q in [qmin, qmax].
// nudged_min/nudged_max are the real values of qmin/qmax: the range
// fake-quantization clamps to.
struct AffineQuant {
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t qmin = -128, qmax = 127;
  float nudged_min = 0.0f, nudged_max = 0.0f;
};

struct NudgeOptions {
  int num_bits = 8;
  bool narrow_range = false;  // true drops the lowest code (weights)
};

// TensorFlow's Nudge (core/kernels/fake_quant_ops_functor.h), in float as TF
// computes it. On TF's unsigned grid [qmin_u, qmax_u] = [narrow ? 1 : 0,
// 2^b - 1]:
//   scale = (max - min) / (qmax_u - qmin_u)
//   zero_point_from_min = qmin_u - min / scale
//   zp_u = qmin_u if zero_point_from_min < qmin_u, qmax_u if above qmax_u,
//          else round(zero_point_from_min)      (half away from zero)
//   nudged_min = (qmin_u - zp_u) * scale, nudged_max = (qmax_u - zp_u) * scale
// The signed (TFLite int8) zero point is zp_u - 2^(b-1); the nudged range is
// the same on either grid. Rounding on the unsigned grid keeps TF's choice
// at exact .5 ties. Requires min < max (observers guarantee min <= 0 <= max;
// if 0 lies outside [min, max] the nudge moves the range so it contains 0,
// keeping its width). A range narrower than 1e-7 (all-zero data) is widened
// to 1e-7 around its centre so the scale stays finite.
AffineQuant nudge_range(float min, float max, const NudgeOptions& o = {});

// Symmetric narrow-range weight quantizer for |w| <= absmax: the range
// [-absmax, absmax] through nudge_range(narrow), which gives zero point 0 and
// scale absmax / (2^(b-1)-1). absmax == 0 (an all-zero channel) gets the
// tiny symmetric range above, still with zero point 0.
AffineQuant weight_quant(float absmax, int num_bits = 8);
// Per output channel (the last axis: HWIO conv and depthwise kernels, [in,
// out] dense kernels) and per tensor.
std::vector<AffineQuant> weight_quant_per_channel(const Tensor& w, int num_bits = 8);
// max |w| per last-axis channel, or of the whole tensor ([1]).
std::vector<float> weight_absmax(const Tensor& w, bool per_channel);
AffineQuant weight_quant_per_tensor(const Tensor& w, int num_bits = 8);

// Real → integer as TFLite's Quantize: round(x / scale) (half away from zero)
// + zero_point, clamped to [qmin, qmax]. Integer → real.
int32_t quantize_value(float x, const AffineQuant& q);
float dequantize_value(int32_t q, const AffineQuant& p);

// Bias: int32 with scale s_in * s_w and zero point 0 (TFLite).
double bias_scale(double input_scale, double weight_scale);
// round(b / bias_scale), half away from zero, clamped to int32. With a BN
// folded in, weight_scale is the channel's s_w·|γ/σ| (fold_channel).
int32_t quantize_bias(double b, double input_scale, double weight_scale);

// One output channel of a conv/dense with what follows it folded in: the BN
// as y = k_bn·x + shift (1, 0 without one) and, for BN folded in training,
// the factor pre_scale (σ/γ) the conv output is multiplied by first. The
// folded channel computes k·(Σ x·w) + bias: weight scale s_w·|k| (s_w when
// k is 0), codes negated where k < 0, bias at s_in times that scale. What
// quant::convert builds and what the simulation's integer bias rounds.
struct FoldedChannel {
  double k = 1, weight_scale = 1, bias = 0;
};
FoldedChannel fold_channel(double s_w, double k_bn, double shift, double pre_scale, double own_bias);

// A real multiplier m as m ≈ multiplier * 2^(shift - 31), multiplier in
// [2^30, 2^31) (Q31 of a mantissa in [0.5, 1)), or 0 for m == 0 and for
// m < 2^-31 (flushed to zero: for every accumulator the kernels take,
// |x| < 2^30, such a product is below one half and rounds to 0 anyway).
struct QuantizedMultiplier {
  int32_t multiplier = 0;
  int shift = 0;  // > 0: left shift; < 0: right shift
};
// TFLite's QuantizeMultiplier: frexp, then round(q * 2^31) half away from
// zero; a mantissa that rounds up to 2^31 becomes 2^30 with shift + 1.
QuantizedMultiplier quantize_multiplier(double m);

// x * m rounded once, to nearest with ties toward +infinity (1.5 -> 2,
// -1.5 -> -1): TFLite's MultiplyByQuantizedMultiplier in its single-rounding
// form (TFLITE_SINGLE_ROUNDING), i.e.
//   (x' * multiplier + 2^(30 - shift)) >> (31 - shift)   in 64 bits,
// where x' = x << shift when shift > 0 (in 32 bits, as TFLite's reference
// kernels shift) and x otherwise. One rounding of the exact product is
// what the QAT simulation's float requantization computes and what ONNX
// Runtime and XNNPACK's float requantization approximate; the
// double-rounding form (round the Q31 product, then the shift) moves about
// one output in a thousand by a step, and deep nets carry that on.
int32_t multiply_by_quantized_multiplier(int32_t x, const QuantizedMultiplier& m);

}  // namespace bonsai::quant
