// Evaluation metrics: top-k accuracy for classification and a confusion
// matrix with per-class IoU and mIoU for segmentation (the Model Garden's
// PerClassIoU / MeanIoU: IoU_c = TP / (TP + FP + FN); classes that never
// occur in either labels or predictions are left out of the mean).
//
//   TopK acc;  acc.update(logits, labels);  acc.top1();  acc.top5();
//   ConfusionMatrix cm(21, 255);  cm.update(predicted_labels, labels);  cm.mean_iou();
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace bonsai::apps {

class TopK {
 public:
  // logits [N, C] f32, labels [N] s64.
  void update(const Tensor& logits, const Tensor& labels);
  double top1() const { return count_ ? static_cast<double>(top1_) / count_ : 0.0; }
  double top5() const { return count_ ? static_cast<double>(top5_) / count_ : 0.0; }
  int64_t count() const { return count_; }
  // Top-1 hits, top-5 hits and examples: what ranks sum to reduce the metric.
  std::array<int64_t, 3> counts() const { return {top1_, top5_, count_}; }
  void set_counts(const std::array<int64_t, 3>& c) { top1_ = c[0], top5_ = c[1], count_ = c[2]; }

 private:
  int64_t top1_ = 0, top5_ = 0, count_ = 0;
};

class ConfusionMatrix {
 public:
  ConfusionMatrix(int64_t num_classes, int64_t ignore_label = 255);
  // predictions and labels: s64 tensors of the same shape; labels equal to
  // ignore_label are skipped.
  void update(const Tensor& predictions, const Tensor& labels);
  // Per-pixel argmax of logits [N, H, W, C], then update.
  void update_from_logits(const Tensor& logits_nhwc, const Tensor& labels);
  std::vector<double> per_class_iou() const;  // -1 for classes absent from both
  double mean_iou() const;
  double pixel_accuracy() const;
  int64_t at(int64_t truth, int64_t predicted) const { return m_[truth * n_ + predicted]; }
  // The [truth][predicted] counts, which ranks sum to reduce the metric.
  std::vector<int64_t>& counts() { return m_; }

 private:
  int64_t n_, ignore_;
  std::vector<int64_t> m_;  // [truth][predicted]
};

}  // namespace bonsai::apps
