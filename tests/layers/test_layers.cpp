#include <doctest/doctest.h>

#include "core/ops.h"
#include "layers/layers.h"
#include "models/small_cnn.h"
#include "tests/grad_check.h"

using namespace bonsai;

TEST_CASE("module tree: dotted names, roles, buffers, train/eval") {
  models::SmallCNN m({.in_channels = 1, .classes = 10, .width = 4});
  auto params = m.named_parameters();
  REQUIRE(params.size() == 8);  // 2 × (kernel, gamma, beta) + dense kernel, bias
  CHECK(params[0].name == "features.0.conv.kernel");
  CHECK(params[0].role == ParamRole::conv_kernel);
  CHECK(params[1].name == "features.0.bn.gamma");
  CHECK(params[1].role == ParamRole::bn_gamma);
  CHECK(params.back().name == "head.bias");
  auto buffers = m.named_buffers();
  REQUIRE(buffers.size() == 4);
  CHECK(buffers[0].first == "features.0.bn.moving_mean");
  for (const auto& p : params) CHECK(p.tensor.requires_grad());
  for (const auto& b : buffers) CHECK_FALSE(b.second.requires_grad());
  m.eval();
  int visited = 0;
  m.visit([&](const std::string&, Module& mod) {
    CHECK_FALSE(mod.is_training());
    ++visited;
  });
  CHECK(visited > 5);
  // 1*4*9 + 4+4 + 4*8*9 + 8+8 + 7*7*8*10 + 10
  CHECK(m.num_parameters() == 36 + 8 + 288 + 16 + 3920 + 10);
}

TEST_CASE("SmallCNN: output shape and gradients through the whole model") {
  models::SmallCNN m({.in_channels = 1, .classes = 3, .input_size = 8, .width = 2});
  std::mt19937 rng(1);
  Tensor x = Tensor::randn({2, 8, 8, 1}, rng).requires_grad_();
  m.eval();  // fixed statistics: a smooth function of the input for the checker
  Tensor y = m.forward(x);
  CHECK(y.shape() == Shape{2, 3});
  testing::check_gradients("SmallCNN input gradient", [&m](const std::vector<Tensor>& in) { return m.forward(in[0]); },
                           {x}, {.atol = 2e-3});
}

TEST_CASE("Conv2d: TF SAME padding and shape errors") {
  Conv2d c({.in = 3, .out = 5, .kernel = 3, .stride = 2});
  ops::Padding p = c.padding_for(8, 8);  // TF SAME, stride 2, even input: pad only bottom/right
  CHECK(p.top == 0);
  CHECK(p.left == 0);
  CHECK(p.bottom == 1);
  CHECK(p.right == 1);
  Tensor y = c.forward(Tensor::zeros({1, 8, 8, 3}));
  CHECK(y.shape() == Shape{1, 4, 4, 5});
  CHECK_THROWS_AS(c.forward(Tensor::zeros({1, 8, 8, 4})), Error);
  Conv2d dw({.in = 4, .out = 4, .kernel = 3, .groups = 4});
  CHECK(dw.named_parameters()[0].role == ParamRole::depthwise_kernel);
}

#include "tests/layer_check.h"

TEST_CASE("layer conformance: built-in layers") {
  using testing::check_layer;
  Conv2d conv({.in = 3, .out = 4, .kernel = 3, .stride = 2, .bias = true});
  check_layer(conv, {2, 7, 8, 3});
  Conv2d dw({.in = 4, .out = 4, .kernel = 3, .groups = 4});
  check_layer(dw, {2, 6, 6, 4});
  BatchNorm2d bn({.channels = 5});
  check_layer(bn, {3, 4, 4, 5}, {.grad = {.rtol = 2e-2, .atol = 2e-3}});
  Dense dense({.in = 6, .out = 3});
  check_layer(dense, {4, 6});
  Sequential seq;
  seq.push(std::make_shared<Conv2d>(Conv2dOptions{.in = 2, .out = 3, .kernel = 1}), "conv");
  seq.push(std::make_shared<Activation>(ActivationKind::hard_swish), "act");
  seq.push(std::make_shared<AvgPool2d>(PoolOptions{.kernel = 2, .stride = 2}), "pool");
  seq.push(std::make_shared<Resize>(ResizeOptions{.scale = 2}), "up");
  check_layer(seq, {2, 6, 6, 2});
}

TEST_CASE("module tree: child lookup and replace_child by dotted path") {
  models::SmallCNN m({.in_channels = 1, .classes = 10, .width = 4});
  CHECK(m.child("features.0.conv")->type_name() == "Conv2d");
  m.eval();
  m.replace_child("features.0.relu", std::make_shared<Activation>(ActivationKind::relu6));
  auto act = std::dynamic_pointer_cast<Activation>(m.child("features.0.relu"));
  REQUIRE(act);
  CHECK(act->kind() == ActivationKind::relu6);
  CHECK_FALSE(act->is_training());  // takes the replaced module's mode
  try {
    m.child("features.0.nope");
    FAIL("missing child must throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("children are: conv, bn, relu") != std::string::npos);
  }
  // MACs per sample: conv 28*28*9*1*4 + conv 14*14*9*4*8 + dense 196*8*10
  m.forward(Tensor::zeros({1, 28, 28, 1}));
  CHECK(m.macs() == 28 * 28 * 9 * 4 + 14 * 14 * 9 * 4 * 8 + 7 * 7 * 8 * 10);
}
