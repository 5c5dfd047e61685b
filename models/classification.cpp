#include "models/classification.h"

namespace bonsai::models {

ClassificationHead::ClassificationHead(const ClassificationHeadOptions& o) {
  add("pool", std::make_shared<GlobalAvgPool>());
  add("dropout", std::make_shared<Dropout>(o.dropout_rate, o.seed + 1));
  dense = add("dense", std::make_shared<Dense>(
                           DenseOptions{.in = o.in_channels, .out = o.num_classes, .seed = o.seed}));
}

Tensor ClassificationHead::forward(const Tensor& x) {
  Tensor pooled = ops::flatten(child("pool")->forward(x));  // [N, C]
  return child("dense")->forward(child("dropout")->forward(pooled));
}

ClassificationModel::ClassificationModel(std::shared_ptr<Backbone> backbone,
                                         const ClassificationHeadOptions& head) {
  add("backbone", std::move(backbone));
  head_ = add("head", std::make_shared<ClassificationHead>(head));
}

std::shared_ptr<Backbone> ClassificationModel::backbone() const {
  return std::dynamic_pointer_cast<Backbone>(child("backbone"));
}

Tensor ClassificationModel::forward(const Tensor& x) {
  return child("head")->forward(child("backbone")->forward(x));
}

}  // namespace bonsai::models
