// ClassificationModel: backbone → global average pool → dropout → dense, the
// Model Garden's classification_model.py. Children: "backbone", "head".
//
//   auto model = std::make_shared<ClassificationModel>(backbone, ClassificationHeadOptions{
//       .in_channels = 1280, .num_classes = 1000, .dropout_rate = 0.2f});
//   Tensor logits = model->forward(images);   // [N, H, W, 3] -> [N, 1000]
#pragma once

#include <memory>

#include "layers/layers.h"
#include "models/backbone.h"

namespace bonsai::models {

struct ClassificationHeadOptions {
  int64_t in_channels = 0;
  int64_t num_classes = 1000;
  float dropout_rate = 0.2f;
  uint32_t seed = 0;
};

// Global average pool → dropout → dense (with bias). Children: "pool",
// "dropout", "dense".
class ClassificationHead : public Module {
 public:
  explicit ClassificationHead(const ClassificationHeadOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, H, W, C] -> [N, classes]
  std::string type_name() const override { return "ClassificationHead"; }
  std::shared_ptr<Dense> dense;
};

class ClassificationModel : public Module {
 public:
  ClassificationModel(std::shared_ptr<Backbone> backbone, const ClassificationHeadOptions& head);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ClassificationModel"; }
  std::shared_ptr<Backbone> backbone() const;

 private:
  std::shared_ptr<ClassificationHead> head_;
};

}  // namespace bonsai::models
