// The first real job: train SmallCNN on Fashion-MNIST (Debian's
// dataset-fashion-mnist) with SGD + Nesterov momentum and a warmup + cosine
// learning rate, then report test accuracy. `bonsai demo` runs it.
#pragma once

#include <string>

namespace bonsai::apps {

struct FashionDemoOptions {
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int epochs = 3;
  int batch = 64;
  float learning_rate = 0.05f;
  float weight_decay = 5e-4f;
  int threads = 0;  // 0 = all cores
  uint32_t seed = 0;
  int64_t train_limit = 0;  // use only the first N training images (0 = all)
};

struct FashionDemoResult {
  double test_accuracy = 0.0;  // top-1, fraction
  double final_loss = 0.0;
  double train_seconds = 0.0;
  double images_per_second = 0.0;
};

FashionDemoResult run_fashion_demo(const FashionDemoOptions& o);

}  // namespace bonsai::apps
