// Softmax cross-entropy with label smoothing and an ignore label.
//
// For one row of logits z over C classes and target distribution
// t = (1-s)*onehot(label) + s/C:
//   loss = logsumexp(z) - sum_c t_c z_c,   dloss/dz = softmax(z) - t.
// The result is the mean over rows whose label is not ignored.
#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace bonsai::ops {

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels, const CrossEntropyParams& p) {
  BONSAI_CHECK(logits.rank() >= 1 && labels.dtype() == DType::s64,
               "softmax_cross_entropy: logits " + logits.shape_str() + " f32, labels " +
                   labels.shape_str() + " must be s64");
  const int64_t C = logits.dim(-1);
  const int64_t rows = logits.numel() / C;
  BONSAI_CHECK(labels.numel() == rows,
               "softmax_cross_entropy: logits " + logits.shape_str() + " need " + std::to_string(rows) +
                   " labels, got shape " + labels.shape_str());
  const float* z = logits.data<float>();
  const int64_t* lab = labels.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    BONSAI_CHECK(lab[r] == p.ignore_label || (lab[r] >= 0 && lab[r] < C),
                 "softmax_cross_entropy: label " + std::to_string(lab[r]) + " at index " +
                     std::to_string(r) + " outside [0, " + std::to_string(C) + ")");
  const float s = p.label_smoothing;
  const float off = s / static_cast<float>(C), on = 1.f - s + off;

  // Keep the softmax for the backward pass; it costs what the logits cost.
  Tensor prob = Tensor::empty(logits.shape());
  float* pr = prob.data<float>();
  double total = 0.0;
  int64_t valid = 0;
#pragma omp parallel for reduction(+ : total, valid) if (rows * C > 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const float* zr = z + r * C;
    float* q = pr + r * C;
    float mx = zr[0];
    for (int64_t c = 1; c < C; ++c) mx = std::max(mx, zr[c]);
    double se = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      q[c] = std::exp(zr[c] - mx);
      se += q[c];
    }
    float inv = static_cast<float>(1.0 / se);
    for (int64_t c = 0; c < C; ++c) q[c] *= inv;
    if (lab[r] == p.ignore_label) continue;
    double lse = mx + std::log(se), dot = 0.0;
    for (int64_t c = 0; c < C; ++c) dot += (c == lab[r] ? on : off) * zr[c];
    total += lse - dot;
    ++valid;
  }
  // With every label ignored the loss is 0 and so is its gradient.
  const float denom = valid > 0 ? static_cast<float>(valid) : 1.f;
  Tensor loss = Tensor::scalar(static_cast<float>(total / denom));
  return record(loss, "softmax_cross_entropy", {logits, labels},
                [prob, labels, C, on, off, denom, ignore = p.ignore_label](const Tensor& gy) {
                  const int64_t rows = prob.numel() / C;
                  const float g = gy.item() / denom;
                  Tensor gz = Tensor::empty(prob.shape());
                  const float* q = prob.data<float>();
                  const int64_t* lab = labels.data<int64_t>();
                  float* pd = gz.data<float>();
#pragma omp parallel for if (rows * C > 16384)
                  for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < C; ++c)
                      pd[r * C + c] = lab[r] == ignore
                                          ? 0.f
                                          : g * (q[r * C + c] - (c == lab[r] ? on : off));
                  return Grads{gz, Tensor()};
                });
}

}  // namespace bonsai::ops
