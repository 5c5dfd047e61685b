#include <doctest/doctest.h>

#include "apps/experiment/metrics.h"

using namespace bonsai;
using namespace bonsai::apps;

TEST_CASE("top-1 and top-5 accuracy") {
  // 7 classes; row 0: label ranked 1st, row 1: 3rd, row 2: 6th.
  Tensor z = Tensor::from({3, 7}, {9, 1, 2, 3, 4, 5, 6,   //
                                   9, 8, 7, 6, 5, 4, 3,   //
                                   1, 2, 3, 4, 5, 6, 7});
  Tensor y = Tensor::empty({3}, DType::s64);
  int64_t lab[] = {0, 2, 1};
  std::copy(lab, lab + 3, y.data<int64_t>());
  TopK acc;
  acc.update(z, y);
  CHECK(acc.top1() == doctest::Approx(1.0 / 3));
  CHECK(acc.top5() == doctest::Approx(2.0 / 3));
}

TEST_CASE("confusion matrix: per-class IoU, mIoU, ignore label") {
  ConfusionMatrix cm(3, 255);
  Tensor pred = Tensor::empty({6}, DType::s64), truth = Tensor::empty({6}, DType::s64);
  int64_t p[] = {0, 0, 1, 1, 2, 0};
  int64_t t[] = {0, 1, 1, 1, 255, 2};
  std::copy(p, p + 6, pred.data<int64_t>());
  std::copy(t, t + 6, truth.data<int64_t>());
  cm.update(pred, truth);
  auto iou = cm.per_class_iou();
  // class 0: TP 1, FP 2 (truth 1 and 2 predicted 0), FN 0 -> 1/3
  CHECK(iou[0] == doctest::Approx(1.0 / 3));
  // class 1: TP 2, FP 0, FN 1 -> 2/3
  CHECK(iou[1] == doctest::Approx(2.0 / 3));
  // class 2: TP 0, FP 0 (the 2-prediction was ignored), FN 1 -> 0
  CHECK(iou[2] == doctest::Approx(0.0));
  CHECK(cm.mean_iou() == doctest::Approx((1.0 / 3 + 2.0 / 3 + 0) / 3));
  CHECK(cm.pixel_accuracy() == doctest::Approx(3.0 / 5));
  // A class absent from labels and predictions is left out of the mean.
  ConfusionMatrix cm4(4, 255);
  cm4.update(pred, truth);
  CHECK(cm4.per_class_iou()[3] == -1.0);
  CHECK(cm4.mean_iou() == doctest::Approx(cm.mean_iou()));
}

TEST_CASE("metrics: top-k breaks ties by class index, as argmax does") {
  bonsai::apps::TopK k;
  // Both rows tie classes 0 and 2; argmax picks class 0.
  k.update(bonsai::Tensor::from({2, 3}, {1, 0, 1, 1, 0, 1}), bonsai::Tensor::from({2}, {0, 0}).to(bonsai::DType::s64));
  bonsai::apps::TopK l;
  l.update(bonsai::Tensor::from({2, 3}, {1, 0, 1, 1, 0, 1}), bonsai::Tensor::from({2}, {2, 2}).to(bonsai::DType::s64));
  CHECK(k.top1() == 1.0);
  CHECK(l.top1() == 0.0);
  CHECK(l.top5() == 1.0);
}
