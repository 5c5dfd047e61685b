// Tests of the float graph (export/float_graph.h): convert_float traced
// through custom blocks equals the model's eval forward when run by the
// graph's naive reference evaluator, with BN folded and relu/relu6 fused
// where TFLite fuses them; the model comes back unchanged; and what the
// float graph cannot express is refused with an error naming the layer.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "core/autograd.h"
#include "core/check.h"
#include "export/float_graph.h"
#include "layers/layers.h"
#include "quant/quantize.h"
#include "tests/export/float_net.h"

using namespace bonsai;
using namespace bonsai::exporters;

using testing::relative_difference;

namespace {

std::string op_list(const FloatGraph& g) {
  std::string s;
  for (const FloatOp& o : g.ops) {
    s += float_op_name(o.type);
    if (o.activation != FloatActivation::none) s += std::string("(") + float_activation_name(o.activation) + ")";
    s += " ";
  }
  return s;
}

Tensor images(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  return Tensor::randn({n, 16, 16, 3}, rng, 1.5f);
}

// A block that adds inline instead of through a merge layer.
class InlineAdd : public Module {
 public:
  InlineAdd() { add("conv", std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 3, .kernel = 1, .seed = 4})); }
  Tensor forward(const Tensor& x) override { return ops::add(child("conv")->forward(x), x); }
  std::string type_name() const override { return "InlineAdd"; }
};

}  // namespace

TEST_CASE("float graph: equals the model's eval forward, BN folded, clamps fused, through custom blocks") {
  auto m = testing::small_float_net();
  const FloatGraph g = convert_float(*m, Tensor::zeros({1, 16, 16, 3}));
  CAPTURE(op_list(g));
  CHECK(op_list(g) ==
        "conv(relu6) "                                   // stem + stem_bn + stem_act
        "conv(relu6) conv activation(hard_swish) "       // expand (+BN, relu6), depthwise (+BN), hard_swish
        "mean conv(relu) conv activation(hard_sigmoid) mul "  // SE
        "conv add(relu) "                                // project + BN, residual add + relu
        "avg_pool resize concat activation(sigmoid) max_pool "
        "reshape fully_connected ");
  CHECK(g.input().shape == std::vector<int64_t>{16, 16, 3});
  CHECK(g.values[g.output].shape == std::vector<int64_t>{5});
  CHECK(g.ops[0].geometry.pad_top == 1);  // symmetric padding kept (TF SAME would be 0 and 1)
  CHECK(g.ops[0].geometry.pad_bottom == 1);
  CHECK(g.ops[2].geometry.groups == 16);
  CHECK(g.ops[0].source == "stem+stem_bn+stem_act");
  REQUIRE(g.ops[10].inputs.size() == 2);  // the residual add reads the project conv and the block input
  CHECK(g.ops[10].inputs[0] == g.ops[9].output);
  CHECK(g.ops[10].inputs[1] == g.ops[0].output);

  const Tensor x = images(3, 1);
  Tensor expected;
  {
    NoGrad ng;
    expected = m->forward(x);
  }
  const Tensor got = g.run(x);
  const double rel = relative_difference(got, expected);
  CAPTURE(rel);
  CHECK(rel < 1e-4);
  CHECK(rel > 0);  // different arithmetic (folded weights, double accumulation), so not bit-equal by accident

  // The model is back as it was: its own layers, the same outputs, eval mode kept.
  bool traced = false;
  m->visit([&](const std::string&, Module& mod) { traced = traced || mod.type_name().rfind("Traced", 0) == 0; });
  CHECK_FALSE(traced);
  CHECK(m->child("block.se.mul")->type_name() == "Multiply");
  CHECK_FALSE(m->is_training());
  NoGrad ng;
  CHECK(relative_difference(m->forward(x), expected) == 0);
}

TEST_CASE("float graph: the reference evaluator is sensitive to the folded parameters") {
  auto m = testing::small_float_net();
  FloatGraph g = convert_float(*m, Tensor::zeros({1, 16, 16, 3}));
  const Tensor x = images(2, 2);
  Tensor expected;
  {
    NoGrad ng;
    expected = m->forward(x);
  }
  // A one-channel error in a folded bias is visible at the output.
  g.ops[1].bias.data<float>()[3] += 0.05f;
  CHECK(relative_difference(g.run(x), expected) > 1e-4);
}

TEST_CASE("float graph: a model in train mode is traced in eval mode and put back in train mode") {
  auto m = testing::small_float_net();
  Tensor expected;
  const Tensor x = images(2, 3);
  {
    NoGrad ng;
    expected = m->forward(x);
  }
  m->train();
  const FloatGraph g = convert_float(*m, Tensor::zeros({1, 16, 16, 3}));
  CHECK(m->is_training());
  CHECK(relative_difference(g.run(x), expected) < 1e-4);
}

TEST_CASE("float graph: what it cannot express is refused, naming the layer") {
  SUBCASE("a quantized model") {
    auto m = testing::small_float_net();
    quant::quantize(*m);
    CHECK_THROWS_WITH_AS(convert_float(*m, Tensor::zeros({1, 16, 16, 3})),
                         doctest::Contains("is quantized"), bonsai::Error);
  }
  SUBCASE("an op inline in a block's forward") {
    auto m = std::make_shared<Sequential>();
    m->push(std::make_shared<InlineAdd>(), "block");
    m->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 2, .kernel = 1, .seed = 5}), "head");
    m->eval();
    CHECK_THROWS_WITH_AS(convert_float(*m, Tensor::zeros({1, 4, 4, 3})),
                         doctest::Contains("entering head"), bonsai::Error);
    CHECK(m->child("block.conv")->type_name() == "Conv2d");  // put back after the error too
  }
  SUBCASE("batch norm not after a convolution") {
    auto m = std::make_shared<Sequential>();
    m->push(std::make_shared<Activation>(ActivationKind::relu), "act");
    m->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 3}), "bn");
    m->eval();
    CHECK_THROWS_WITH_AS(convert_float(*m, Tensor::zeros({1, 4, 4, 3})),
                         doctest::Contains("batch norm bn must follow a convolution"), bonsai::Error);
  }
  SUBCASE("a sample that is not one [1, H, W, C] image") {
    auto m = testing::small_float_net();
    CHECK_THROWS_WITH_AS(convert_float(*m, Tensor::zeros({2, 16, 16, 3})), doctest::Contains("[1, H, W, C]"),
                         bonsai::Error);
  }
}
