#include "models/small_cnn.h"

namespace bonsai::models {

SmallCNN::SmallCNN(const SmallCnnOptions& o) {
  features_ = add("features", std::make_shared<Sequential>());
  uint32_t seed = o.seed;
  int64_t in = o.in_channels;
  auto conv_bn_relu = [&](int64_t out) {
    auto block = std::make_shared<Sequential>();
    block->push(std::make_shared<Conv2d>(Conv2dOptions{.in = in, .out = out, .kernel = 3, .seed = seed++}),
                "conv");
    block->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = out}), "bn");
    block->push(std::make_shared<Activation>(ActivationKind::relu), "relu");
    features_->push(block);
    in = out;
  };
  conv_bn_relu(o.width);
  features_->push(std::make_shared<MaxPool2d>(PoolOptions{.kernel = 2, .stride = 2}));
  conv_bn_relu(2 * o.width);
  features_->push(std::make_shared<MaxPool2d>(PoolOptions{.kernel = 2, .stride = 2}));
  features_->push(std::make_shared<Flatten>());
  const int64_t side = o.input_size / 4;  // two 2x2 max pools, VALID
  head_ = add("head", std::make_shared<Dense>(
                          DenseOptions{.in = side * side * in, .out = o.classes, .seed = seed++}));
}

// Through child() so a transform that swaps "features" or "head" takes effect.
Tensor SmallCNN::forward(const Tensor& x) { return child("head")->forward(child("features")->forward(x)); }

}  // namespace bonsai::models
