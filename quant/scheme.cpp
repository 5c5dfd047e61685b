#include "quant/scheme.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace bonsai::quant {

namespace {
// The smallest range width nudge_range accepts; narrower ranges (an all-zero
// tensor or channel) are widened to it so the scale stays finite and nonzero.
constexpr float kMinRangeWidth = 1e-7f;
}  // namespace

void check_num_bits(int num_bits) {
  BONSAI_CHECK(num_bits == 4 || num_bits == 6 || num_bits == 8,
               "quantization num_bits must be 4, 6 or 8, got " + std::to_string(num_bits));
}

QuantRange activation_range(int num_bits) {
  check_num_bits(num_bits);
  const int32_t half = 1 << (num_bits - 1);
  return {.qmin = -half, .qmax = half - 1};
}

QuantRange weight_range(int num_bits) {
  check_num_bits(num_bits);
  const int32_t half = 1 << (num_bits - 1);
  return {.qmin = -(half - 1), .qmax = half - 1};
}

AffineQuant nudge_range(float min, float max, const NudgeOptions& o) {
  check_num_bits(o.num_bits);
  BONSAI_CHECK(std::isfinite(min) && std::isfinite(max) && min <= max,
               "quantization range [" + std::to_string(min) + ", " + std::to_string(max) +
                   "] must be finite with min <= max");
  if (max - min < kMinRangeWidth) {  // widen around the centre: [0, 0] stays symmetric
    const float centre = 0.5f * (min + max);
    min = centre - 0.5f * kMinRangeWidth;
    max = centre + 0.5f * kMinRangeWidth;
  }
  // TF's unsigned grid; the signed grid is this one shifted by 2^(b-1).
  const int32_t offset = 1 << (o.num_bits - 1);
  const int32_t qmin_u = o.narrow_range ? 1 : 0;
  const int32_t qmax_u = (1 << o.num_bits) - 1;
  const float qmin_f = static_cast<float>(qmin_u), qmax_f = static_cast<float>(qmax_u);
  const float scale = (max - min) / (qmax_f - qmin_f);
  const float zero_point_from_min = qmin_f - min / scale;
  int32_t zp_u;
  if (zero_point_from_min < qmin_f) zp_u = qmin_u;
  else if (zero_point_from_min > qmax_f) zp_u = qmax_u;
  else zp_u = static_cast<int32_t>(std::round(zero_point_from_min));
  return {.scale = scale,
          .zero_point = zp_u - offset,
          .qmin = qmin_u - offset,
          .qmax = qmax_u - offset,
          .nudged_min = (qmin_f - static_cast<float>(zp_u)) * scale,
          .nudged_max = (qmax_f - static_cast<float>(zp_u)) * scale};
}

AffineQuant weight_quant(float absmax, int num_bits) {
  absmax = std::abs(absmax);
  return nudge_range(-absmax, absmax, {.num_bits = num_bits, .narrow_range = true});
}

std::vector<float> weight_absmax(const Tensor& w, bool per_channel) {
  BONSAI_CHECK(w.dtype() == DType::f32 && w.rank() >= 1, "weight quantization needs an f32 tensor, got " + w.shape_str());
  const int64_t channels = per_channel ? w.dim(-1) : 1, n = w.numel();
  std::vector<float> absmax(channels, 0.0f);
  const float* p = w.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    float& a = absmax[per_channel ? i % channels : 0];
    a = std::max(a, std::abs(p[i]));
  }
  return absmax;
}

std::vector<AffineQuant> weight_quant_per_channel(const Tensor& w, int num_bits) {
  std::vector<AffineQuant> out;
  for (float a : weight_absmax(w, /*per_channel=*/true)) out.push_back(weight_quant(a, num_bits));
  return out;
}

AffineQuant weight_quant_per_tensor(const Tensor& w, int num_bits) {
  return weight_quant(weight_absmax(w, /*per_channel=*/false)[0], num_bits);
}

int32_t quantize_value(float x, const AffineQuant& q) {
  const float r = std::round(x / q.scale);
  // Clamp in float first so huge values cannot overflow the int conversion.
  const float lo = static_cast<float>(q.qmin - q.zero_point), hi = static_cast<float>(q.qmax - q.zero_point);
  return static_cast<int32_t>(std::clamp(r, lo, hi)) + q.zero_point;
}

float dequantize_value(int32_t q, const AffineQuant& p) {
  return static_cast<float>(q - p.zero_point) * p.scale;
}

double bias_scale(double input_scale, double weight_scale) { return input_scale * weight_scale; }

int32_t quantize_bias(double b, double input_scale, double weight_scale) {
  const double r = std::round(b / bias_scale(input_scale, weight_scale));
  constexpr double lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(std::clamp(r, lo, hi));
}

FoldedChannel fold_channel(double s_w, double k_bn, double shift, double pre_scale, double own_bias) {
  const double k = k_bn * pre_scale;
  return {.k = k, .weight_scale = k == 0 ? s_w : s_w * std::abs(k), .bias = k_bn * own_bias + shift};
}

QuantizedMultiplier quantize_multiplier(double m) {
  if (m == 0.0) return {};
  int shift = 0;
  const double q = std::frexp(m, &shift);  // m = q * 2^shift, |q| in [0.5, 1)
  auto q_fixed = static_cast<int64_t>(std::round(q * static_cast<double>(1LL << 31)));
  BONSAI_CHECK(q_fixed <= (1LL << 31), "quantize_multiplier: mantissa overflow");
  if (q_fixed == (1LL << 31)) {
    q_fixed /= 2;
    ++shift;
  }
  // 2^31 and above would need a left shift of 32 or more in the kernels
  // (undefined on 32-bit values); no real model has such a rescale, but an
  // int8 model file's scales can claim one.
  BONSAI_CHECK(shift <= 31, "quantize_multiplier: rescale " + std::to_string(m) +
                                " is 2^31 or more (scales of 8-bit grids that far apart are not a model)");
  // Below 2^-31 every product of an accumulator under 2^30 is below one
  // half: flush to zero (TFLite flushes below 2^-32; keeping right shifts
  // at 30 or less lets the kernels round with 32-bit lanes).
  if (shift < -30) {
    shift = 0;
    q_fixed = 0;
  }
  return {.multiplier = static_cast<int32_t>(q_fixed), .shift = shift};
}

int32_t multiply_by_quantized_multiplier(int32_t x, const QuantizedMultiplier& m) {
  const int left_shift = m.shift > 0 ? m.shift : 0;
  const int right_shift = m.shift > 0 ? 0 : -m.shift;  // <= 30 (quantize_multiplier)
  // As TFLite's kernels: x * 2^left_shift in int32 (wraps if the caller overflows it).
  const auto shifted = static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);
  const int total = 31 + right_shift;
  const int64_t sum = static_cast<int64_t>(shifted) * m.multiplier + (int64_t{1} << (total - 1));
  return static_cast<int32_t>(sum >> total);  // arithmetic: floor
}

}  // namespace bonsai::quant
