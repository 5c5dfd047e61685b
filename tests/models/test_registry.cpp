// Every registry model builds from JSON options, runs forward and backward at
// its reference resolution, and rejects unknown options.
#include <doctest/doctest.h>

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/layers.h"
#include "models/init.h"
#include "models/registry.h"

using namespace bonsai;

TEST_CASE("registry: every model trains one step at its reference size") {
  for (const std::string& name : models::names()) {
    CAPTURE(name);
    const int64_t res = models::reference_resolution(name);
    const bool seg = name.rfind("deeplab", 0) == 0;
    auto m = models::build(name, {{"num_classes", 7}});
    std::mt19937 rng(1);
    Tensor x = Tensor::randn({2, res, res, 3}, rng);
    Tensor logits = m->forward(x);
    Tensor labels;
    if (seg) {
      CHECK(logits.rank() == 4);
      CHECK(logits.dim(-1) == 7);
      logits = ops::resize_bilinear(logits, res, res);
      labels = Tensor::zeros({2, res, res}, DType::s64);
    } else {
      CHECK(logits.shape() == Shape{2, 7});
      labels = Tensor::zeros({2}, DType::s64);
    }
    Tensor loss = ops::softmax_cross_entropy(logits, labels);
    CHECK(std::isfinite(loss.item()));
    loss.backward();
    int missing = 0;
    for (const auto& p : m->named_parameters()) missing += !p.tensor.grad().defined();
    CHECK(missing == 0);
  }
  CHECK_THROWS_AS(models::build("mobilenet_v2", {{"num_clases", 3}}), Error);
  CHECK_THROWS_AS(models::build("nope"), Error);
}

TEST_CASE("kernel_initializer torchvision: conv N(0, sqrt(2/fan_out)), dense N(0, 0.01)") {
  auto m = models::build("mobilenet_v2", {{"num_classes", 10}, {"kernel_initializer", "torchvision"}});
  int convs = 0;
  m->visit([&](const std::string& name, Module& mod) {
    auto std_of = [](const Tensor& t) {
      double s = 0, s2 = 0;
      const float* p = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        s += p[i];
        s2 += static_cast<double>(p[i]) * p[i];
      }
      double n = static_cast<double>(t.numel());
      return std::sqrt(s2 / n - (s / n) * (s / n));
    };
    if (auto* c = dynamic_cast<Conv2d*>(&mod)) {
      const Shape& s = c->kernel.shape();
      if (s.numel() < 2000) return;  // too few samples for a tight estimate
      double want = std::sqrt(2.0 / static_cast<double>(s[0] * s[1] * s[3]));
      CHECK_MESSAGE(std::abs(std_of(c->kernel) / want - 1.0) < 0.1, name);
      ++convs;
    } else if (auto* d = dynamic_cast<Dense*>(&mod)) {
      CHECK(std::abs(std_of(d->kernel) / 0.01 - 1.0) < 0.1);
    }
  });
  CHECK(convs > 20);
  CHECK_THROWS_AS(models::build("resnet18", {{"kernel_initializer", "glorot"}}), Error);
}
