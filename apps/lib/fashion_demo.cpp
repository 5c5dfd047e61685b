#include "apps/lib/fashion_demo.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "apps/lib/progress.h"
#include "core/autograd.h"
#include "core/ops.h"
#include "core/runtime.h"
#include "data/idx.h"
#include "models/small_cnn.h"
#include "optim/optimizer.h"

namespace bonsai::apps {

namespace {

// Fashion-MNIST's pixel mean and standard deviation (of x/255).
constexpr float kMean = 0.286f, kStd = 0.353f;

// Gather images [idx...] into a normalised [B, 28, 28, 1] batch and labels.
void make_batch(const Tensor& images, const Tensor& labels, const int64_t* idx, int64_t b, Tensor& x,
                Tensor& y) {
  const int64_t px = 28 * 28;
  x = Tensor::empty({b, 28, 28, 1});
  y = Tensor::empty({b}, DType::s64);
  const uint8_t* src = images.data<uint8_t>();
  const int64_t* lab = labels.data<int64_t>();
  float* dst = x.data<float>();
  int64_t* out = y.data<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    const uint8_t* img = src + idx[i] * px;
    for (int64_t p = 0; p < px; ++p) dst[i * px + p] = (img[p] / 255.f - kMean) / kStd;
    out[i] = lab[idx[i]];
  }
}

double evaluate(models::SmallCNN& model, const Tensor& images, const Tensor& labels) {
  NoGrad no_grad;
  model.eval();
  const int64_t n = images.dim(0), bs = 500;
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  int64_t correct = 0;
  for (int64_t s = 0; s < n; s += bs) {
    int64_t b = std::min(bs, n - s);
    Tensor x, y;
    make_batch(images, labels, idx.data() + s, b, x, y);
    Tensor logits = model.forward(x);
    const float* z = logits.data<float>();
    const int64_t C = logits.dim(1);
    for (int64_t i = 0; i < b; ++i)
      if (std::max_element(z + i * C, z + (i + 1) * C) - (z + i * C) == y.data<int64_t>()[i]) ++correct;
  }
  model.train();
  return static_cast<double>(correct) / static_cast<double>(n);
}

}  // namespace

FashionDemoResult run_fashion_demo(const FashionDemoOptions& o) {
  set_num_threads(o.threads);
  data::FashionMnist ds = data::load_fashion_mnist(o.data_dir);
  const int64_t n_train = o.train_limit > 0 ? std::min(o.train_limit, ds.train_images.dim(0))
                                            : ds.train_images.dim(0);
  std::printf("Fashion-MNIST: %lld training, %lld test images from %s; %d threads\n",
              static_cast<long long>(n_train), static_cast<long long>(ds.test_images.dim(0)),
              o.data_dir.c_str(), num_threads());

  models::SmallCNN model({.in_channels = 1, .classes = 10, .seed = o.seed});
  std::printf("model SmallCNN, %lld parameters\n", static_cast<long long>(model.num_parameters()));
  optim::Sgd opt(model.named_parameters(), {.momentum = 0.9f, .nesterov = true},
                 {.weight_decay = o.weight_decay});

  const int64_t steps_per_epoch = n_train / o.batch;
  const int64_t total = steps_per_epoch * o.epochs, warmup = std::min<int64_t>(200, total / 10);
  std::mt19937 rng(o.seed);
  std::vector<int64_t> order(n_train);
  std::iota(order.begin(), order.end(), 0);
  Progress bar("train", total, 100);
  FashionDemoResult r;
  int64_t step = 0;
  for (int e = 0; e < o.epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      // Linear warmup, then cosine decay to zero.
      float lr = step < warmup ? o.learning_rate * (step + 1) / warmup
                               : 0.5f * o.learning_rate *
                                     (1.f + std::cos(3.14159265f * (step - warmup) / (total - warmup)));
      Tensor x, y;
      make_batch(ds.train_images, ds.train_labels, order.data() + s * o.batch, o.batch, x, y);
      Tensor loss = ops::softmax_cross_entropy(model.forward(x), y);
      float lv = loss.item();
      BONSAI_CHECK(std::isfinite(lv), "loss became " + std::to_string(lv) + " at step " +
                                          std::to_string(step) + "; lower the learning rate");
      model.zero_grad();
      loss.backward();
      opt.step(lr);
      ++step;
      bar.update(step, lv, o.batch);
      r.final_loss = lv;
    }
  }
  bar.finish();
  r.train_seconds = bar.elapsed_s();
  r.images_per_second = static_cast<double>(total * o.batch) / r.train_seconds;
  r.test_accuracy = evaluate(model, ds.test_images, ds.test_labels);
  return r;
}

}  // namespace bonsai::apps
