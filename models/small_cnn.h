// SmallCNN: the first real model, for Fashion-MNIST-sized inputs.
// conv3x3(32)-BN-ReLU → maxpool 2 → conv3x3(64)-BN-ReLU → maxpool 2 →
// flatten → dense(classes).
//
//   auto model = models::SmallCNN({.in_channels = 1, .classes = 10});
//   Tensor logits = model->forward(images);   // [N, 28, 28, 1] -> [N, 10]
#pragma once

#include <memory>

#include "layers/layers.h"

namespace bonsai::models {

struct SmallCnnOptions {
  int64_t in_channels = 1;
  int64_t classes = 10;
  int64_t input_size = 28;  // square input side
  int64_t width = 32;  // channels of the first stage; the second has twice as many
  uint32_t seed = 0;
};

class SmallCNN : public Module {
 public:
  explicit SmallCNN(const SmallCnnOptions& o);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SmallCNN"; }

 private:
  std::shared_ptr<Sequential> features_;
  std::shared_ptr<Dense> head_;
};

}  // namespace bonsai::models
