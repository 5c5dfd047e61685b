#include "tests/export/float_net.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>


namespace bonsai::testing {

namespace {

std::shared_ptr<Conv2d> conv(int64_t in, int64_t out, int kernel, uint32_t seed, int groups = 1, bool bias = false) {
  return std::make_shared<Conv2d>(
      Conv2dOptions{.in = in, .out = out, .kernel = kernel, .groups = groups, .bias = bias, .seed = seed});
}
std::shared_ptr<BatchNorm2d> bn(int64_t c) { return std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = c}); }
std::shared_ptr<Activation> act(ActivationKind k) { return std::make_shared<Activation>(k); }

class TestSe : public Module {
 public:
  explicit TestSe(int64_t c) {
    add("pool", std::make_shared<GlobalAvgPool>());
    add("reduce", conv(c, c / 4, 1, 11, 1, true));
    add("relu", act(ActivationKind::relu));
    add("expand", conv(c / 4, c, 1, 12, 1, true));
    add("gate", act(ActivationKind::hard_sigmoid));
    add("mul", std::make_shared<Multiply>());
  }
  Tensor forward(const Tensor& x) override {
    Tensor s = child("pool")->forward(x);
    for (const char* n : {"reduce", "relu", "expand", "gate"}) s = child(n)->forward(s);
    return merge_child(*this, "mul", {x, s});
  }
  std::string type_name() const override { return "TestSe"; }
};

class TestResidual : public Module {
 public:
  explicit TestResidual(int64_t c) {
    add("expand", conv(c, 2 * c, 1, 21));
    add("expand_bn", bn(2 * c));
    add("expand_act", act(ActivationKind::relu6));
    add("depthwise", conv(2 * c, 2 * c, 3, 22, static_cast<int>(2 * c)));
    add("depthwise_bn", bn(2 * c));
    add("depthwise_act", act(ActivationKind::hard_swish));
    add("se", std::make_shared<TestSe>(2 * c));
    add("project", conv(2 * c, c, 1, 23));
    add("project_bn", bn(c));
    add("add", std::make_shared<Add>());
    add("out", act(ActivationKind::relu));
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    for (const char* n : {"expand", "expand_bn", "expand_act", "depthwise", "depthwise_bn", "depthwise_act", "se",
                          "project", "project_bn"})
      y = child(n)->forward(y);
    return child("out")->forward(merge_child(*this, "add", {y, x}));
  }
  std::string type_name() const override { return "TestResidual"; }
};

class TestPyramid : public Module {
 public:
  TestPyramid() {
    add("pool", std::make_shared<AvgPool2d>(PoolOptions{.kernel = 3, .stride = 2, .padding = PaddingStyle::tf_same}));
    add("up", std::make_shared<ResizeLike>());
    add("concat", std::make_shared<Concat>());
  }
  Tensor forward(const Tensor& x) override {
    Tensor p = child("pool")->forward(x);
    Tensor u = merge_child(*this, "up", {p, x});
    return merge_child(*this, "concat", {x, u});
  }
  std::string type_name() const override { return "TestPyramid"; }
};

}  // namespace

std::shared_ptr<Sequential> small_float_net() {
  auto m = std::make_shared<Sequential>();
  m->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 8, .kernel = 3, .stride = 2,
                                                 .padding = PaddingStyle::symmetric, .seed = 1}),
          "stem");
  m->push(bn(8), "stem_bn");
  m->push(act(ActivationKind::relu6), "stem_act");
  m->push(std::make_shared<TestResidual>(8), "block");
  m->push(std::make_shared<TestPyramid>(), "pyramid");
  m->push(act(ActivationKind::sigmoid), "sigmoid");
  m->push(std::make_shared<MaxPool2d>(PoolOptions{.kernel = 3, .stride = 2, .padding = PaddingStyle::tf_same}), "pool");
  m->push(std::make_shared<Flatten>(), "flatten");
  m->push(std::make_shared<Dense>(DenseOptions{.in = 256, .out = 5, .seed = 3}), "dense");
  // BN statistics and affine away from (0, 1) and (1, 0), so folding is
  // tested for real.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.5f, 2.0f);
  for (const NamedParam& p : m->named_parameters()) {
    const bool gamma = p.name.find("gamma") != std::string::npos;
    if (!gamma && p.name.find("beta") == std::string::npos) continue;
    for (int64_t i = 0; i < p.tensor.numel(); ++i) p.tensor.data<float>()[i] = (gamma ? 1.0f : 0.0f) + 0.3f * normal(rng);
  }
  for (auto& [name, t] : m->named_buffers()) {
    const bool variance = name.find("moving_variance") != std::string::npos;
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = variance ? uniform(rng) : 0.5f * normal(rng);
  }
  m->eval();
  return m;
}

double relative_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b.data<float>()[i])));
  }
  return diff / scale;
}

}  // namespace bonsai::testing
