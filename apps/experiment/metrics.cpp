#include "apps/experiment/metrics.h"

#include <algorithm>

namespace bonsai::apps {

void TopK::update(const Tensor& logits, const Tensor& labels) {
  BONSAI_CHECK(logits.rank() == 2 && labels.numel() == logits.dim(0),
               "TopK: logits " + logits.shape_str() + " and labels " + labels.shape_str() + " disagree");
  const int64_t N = logits.dim(0), C = logits.dim(1);
  const float* z = logits.data<float>();
  const int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < N; ++i) {
    const float* row = z + i * C;
    const float truth = row[y[i]];
    // Rank of the true class: the classes that score higher, and those that
    // tie with it at a lower index (argmax's order). Counting ties in the
    // label's favour, as tf.math.in_top_k does, would flatter int8 models,
    // whose logits tie often, and call a constant output 100% accurate.
    int64_t higher = 0;
    for (int64_t c = 0; c < C; ++c) higher += row[c] > truth || (row[c] == truth && c < y[i]);
    top1_ += higher < 1;
    top5_ += higher < 5;
    ++count_;
  }
}

ConfusionMatrix::ConfusionMatrix(int64_t num_classes, int64_t ignore_label)
    : n_(num_classes), ignore_(ignore_label), m_(num_classes * num_classes, 0) {}

void ConfusionMatrix::update(const Tensor& predictions, const Tensor& labels) {
  BONSAI_CHECK(predictions.numel() == labels.numel(),
               "ConfusionMatrix: predictions " + predictions.shape_str() + " and labels " + labels.shape_str());
  const int64_t* p = predictions.data<int64_t>();
  const int64_t* y = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) {
    if (y[i] == ignore_) continue;
    BONSAI_CHECK(y[i] >= 0 && y[i] < n_ && p[i] >= 0 && p[i] < n_,
                 "ConfusionMatrix: label " + std::to_string(y[i]) + " or prediction " + std::to_string(p[i]) +
                     " outside [0, " + std::to_string(n_) + ")");
    ++m_[y[i] * n_ + p[i]];
  }
}

void ConfusionMatrix::update_from_logits(const Tensor& logits, const Tensor& labels) {
  const int64_t C = logits.dim(-1), rows = logits.numel() / C;
  Tensor pred = Tensor::empty({rows}, DType::s64);
  const float* z = logits.data<float>();
  int64_t* p = pred.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r) p[r] = std::max_element(z + r * C, z + (r + 1) * C) - (z + r * C);
  update(pred, labels);
}

std::vector<double> ConfusionMatrix::per_class_iou() const {
  std::vector<double> iou(n_, -1.0);
  for (int64_t c = 0; c < n_; ++c) {
    int64_t tp = at(c, c), fp = 0, fn = 0;
    for (int64_t k = 0; k < n_; ++k) {
      if (k == c) continue;
      fp += at(k, c);
      fn += at(c, k);
    }
    if (tp + fp + fn > 0) iou[c] = static_cast<double>(tp) / static_cast<double>(tp + fp + fn);
  }
  return iou;
}

double ConfusionMatrix::mean_iou() const {
  double s = 0;
  int64_t k = 0;
  for (double v : per_class_iou())
    if (v >= 0) {
      s += v;
      ++k;
    }
  return k ? s / k : 0.0;
}

double ConfusionMatrix::pixel_accuracy() const {
  int64_t tp = 0, all = 0;
  for (int64_t c = 0; c < n_; ++c) tp += at(c, c);
  for (int64_t v : m_) all += v;
  return all ? static_cast<double>(tp) / all : 0.0;
}

}  // namespace bonsai::apps
