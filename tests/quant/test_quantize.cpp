// The QAT transform (quant/quantize.h): quantizer placement on a
// SmallCNN-style Sequential, on every Conv2dBNBlock configuration, and on a
// custom block with a nested custom block; float weights loading by name
// with the quantizer state skipped.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/state.h"
#include "models/blocks.h"
#include "models/registry.h"
#include "quant/quantize.h"
#include "quant/scheme.h"
#include "tests/layer_check.h"

using namespace bonsai;
using namespace bonsai::quant;

namespace {

// SmallCNN's structure, built from children only (models::SmallCNN caches
// child pointers in forward, so swaps of its "head" would be bypassed).
std::shared_ptr<Sequential> small_cnn(uint32_t seed) {
  auto model = std::make_shared<Sequential>();
  int64_t in = 1;
  for (int b = 0; b < 2; ++b) {
    const int64_t out = 4 * (b + 1);
    auto block = std::make_shared<Sequential>();
    block->push(std::make_shared<Conv2d>(Conv2dOptions{.in = in, .out = out, .kernel = 3, .seed = seed++}), "conv");
    block->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = out}), "bn");
    block->push(std::make_shared<Activation>(ActivationKind::relu), "relu");
    model->push(block, "block" + std::to_string(b));
    model->push(std::make_shared<MaxPool2d>(PoolOptions{.kernel = 2, .stride = 2}), "pool" + std::to_string(b));
    in = out;
  }
  model->push(std::make_shared<Flatten>(), "flatten");
  model->push(std::make_shared<Dense>(DenseOptions{.in = 2 * 2 * in, .out = 3, .seed = seed}), "head");
  return model;
}

std::vector<std::string> listing(Module& m) {
  std::vector<std::string> out;
  for (const QuantizerInfo& q : list_quantizers(m)) out.push_back(q.kind + " " + q.name);
  return out;
}

Tensor images(uint32_t seed, const Shape& s = {2, 8, 8, 1}) {
  std::mt19937 rng(seed);
  return Tensor::randn(s, rng);
}

// Every element of y lies on the grid of the quantizer `q` (eval mode).
void check_on_grid(const Tensor& y, const ActivationQuantizer& q) {
  AffineQuant a = nudge_range(q.observer().min().item(), q.observer().max().item(), {.num_bits = q.num_bits()});
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float steps = (y.data<float>()[i] - a.nudged_min) / a.scale;
    CHECK(std::abs(steps - std::round(steps)) < 1e-3f);
  }
}

}  // namespace

TEST_CASE("quantize: SmallCNN-style Sequential gets TFMOT's placement, parameters keep names and tensors") {
  auto model = small_cnn(1);
  const auto before = model->named_parameters();
  quantize(*model);
  CHECK(listing(*model) == std::vector<std::string>{
                               "weight block0.conv",
                               "activation block0.conv.input_quant",  // the model input
                               "activation block0.relu.output_quant",
                               "weight block1.conv",
                               "activation block1.relu.output_quant",
                               "weight head",
                               "activation head.output_quant",
                           });
  // Wrapped (so conversion can trace them) but without a quantizer: relu
  // follows the BN; max pooling keeps its input's grid.
  CHECK(model->child("block0.bn")->type_name() == "QuantBatchNorm2d");
  CHECK(model->child("block0.bn")->children().empty());
  CHECK(model->child("pool0")->type_name() == "QuantMaxPool2d");
  CHECK(model->child("pool0")->children().empty());
  CHECK(model->child("flatten")->type_name() == "Flatten");
  const auto after = model->named_parameters();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    CHECK(after[i].name == before[i].name);
    CHECK(after[i].tensor.same(before[i].tensor));
    CHECK(after[i].role == before[i].role);
  }
  CHECK(quantizer_state_names(*model).size() == 4 * 3);
  CHECK_THROWS(quantize(*model));

  // Structure, train/eval reach, deterministic eval, gradients reach every
  // parameter (fake quant is not finite-difference differentiable).
  testing::check_layer(*model, {2, 8, 8, 1}, {.check_input_gradient = false, .max_params_checked = 0});

  SUBCASE("observers step in training only; eval outputs sit on the output grid; weights on theirs") {
    auto m = small_cnn(2);
    quantize(*m, {.activation_range = {.init = RangeInit::first_batch}});
    auto head_q = std::dynamic_pointer_cast<ActivationQuantizer>(m->child("head.output_quant"));
    REQUIRE(head_q);
    m->train();
    for (int i = 0; i < 3; ++i) m->forward(images(10 + i));
    CHECK(head_q->observer().steps() == 3);
    m->eval();
    Tensor y;
    {
      NoGrad ng;
      y = m->forward(images(20));
    }
    CHECK(head_q->observer().steps() == 3);
    CHECK(y.shape() == Shape{2, 3});
    check_on_grid(y, *head_q);

    auto conv = std::dynamic_pointer_cast<QuantConv2d>(m->child("block1.conv"));
    REQUIRE(conv);
    Tensor wq = conv->quantized_kernel();
    auto grids = weight_quant_per_channel(conv->kernel);
    for (int64_t i = 0; i < wq.numel(); ++i) {
      const AffineQuant& a = grids[i % conv->kernel.dim(-1)];
      const float steps = wq.data<float>()[i] / a.scale;
      CHECK(std::abs(steps - std::round(steps)) < 1e-3f);
      CHECK(std::abs(steps) <= 127.001f);
    }
  }
}

TEST_CASE("quantize: float weights load by name into the QAT model, quantizer state skipped") {
  auto float_model = small_cnn(5);
  float_model->train();
  float_model->forward(images(1));  // moves BN statistics away from their init
  const StateDict float_state = state_dict(*float_model);

  auto qat = small_cnn(99);
  quantize(*qat, {.activation_range = {.init_min = -6.f, .init_max = 6.f}});
  CHECK_THROWS(load_state(*qat, float_state));  // strict: quantizer state is missing from the source
  LoadReport report = load_float_state(*qat, float_state);
  CHECK(report.loaded.size() == float_state.size());
  CHECK(report.skipped.size() == quantizer_state_names(*qat).size());
  CHECK(report.missing.empty());
  const StateDict loaded = state_dict(*qat);
  for (const auto& [name, t] : float_state) {
    const std::string& key = name;  // clang: no structured bindings in CAPTURE's lambda
    CAPTURE(key);
    REQUIRE(loaded.count(name) == 1);
    CHECK(testing::rel_error(loaded.at(name), t) == 0.0);
  }
  CHECK(loaded.at("block0.relu.output_quant.min").item() == -6.f);
  CHECK(loaded.at("block0.relu.output_quant.max").item() == 6.f);
  CHECK(loaded.at("head.output_quant.step").item() == 0.f);
  // The BN inside the quantized tree still updates the shared statistics.
  qat->train();
  const float mean_before = loaded.at("block1.bn.moving_mean").data<float>()[0];
  qat->forward(images(3));
  CHECK(state_dict(*qat).at("block1.bn.moving_mean").data<float>()[0] != mean_before);
}

TEST_CASE("quantize: Conv2dBNBlock placement follows the Model Garden's Conv2DBNBlockQuantized") {
  struct Case {
    const char* what;
    bool bn;
    std::optional<ActivationKind> act;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases{
      {"BN + relu6: the activation quantizes", true, ActivationKind::relu6,
       {"weight unit.conv", "activation unit.act.output_quant"}},
      {"BN + hard_swish: BN output and activation output", true, ActivationKind::hard_swish,
       {"weight unit.conv", "activation unit.bn.output_quant", "activation unit.act.output_quant"}},
      {"BN, linear: BN output", true, std::nullopt, {"weight unit.conv", "activation unit.bn.output_quant"}},
      {"no BN, linear: conv output", false, std::nullopt, {"weight unit.conv", "activation unit.conv.output_quant"}},
      {"no BN + relu: the activation quantizes", false, ActivationKind::relu,
       {"weight unit.conv", "activation unit.act.output_quant"}},
      {"BN + hard_sigmoid: BN output, and the gate on its fixed [0, 1] grid", true, ActivationKind::hard_sigmoid,
       {"weight unit.conv", "activation unit.bn.output_quant", "activation unit.act.output_quant"}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.what);
    auto root = std::make_shared<Sequential>();
    root->push(std::make_shared<models::Conv2dBNBlock>(models::Conv2dBNOptions{
                   .in = 3, .out = 4, .kernel = 3, .use_bias = !c.bn, .use_normalization = c.bn, .activation = c.act}),
               "unit");
    quantize(*root, {.quantize_input = false});
    CHECK(listing(*root) == c.want);
    Tensor y = root->forward(images(4, {2, 5, 5, 3}));
    CHECK(y.shape() == Shape{2, 5, 5, 4});
  }
  SUBCASE("depthwise kernels are per channel; per-tensor and 4-bit configs") {
    auto root = std::make_shared<Sequential>();
    root->push(std::make_shared<models::Conv2dBNBlock>(
                   models::Conv2dBNOptions{.in = 4, .out = 4, .kernel = 3, .groups = 4}),
               "dw");
    quantize(*root, {.num_bits_weight = 4, .per_channel_weights = false});
    auto conv = std::dynamic_pointer_cast<QuantConv2d>(root->child("dw.conv"));
    REQUIRE(conv);
    CHECK(root->named_parameters()[0].role == ParamRole::depthwise_kernel);
    Tensor wq = conv->quantized_kernel();
    AffineQuant a = weight_quant_per_tensor(conv->kernel, 4);
    for (int64_t i = 0; i < wq.numel(); ++i) {
      const float steps = wq.data<float>()[i] / a.scale;
      CHECK(std::abs(steps - std::round(steps)) < 1e-3f);
      CHECK(std::abs(steps) <= 7.001f);
    }
  }
}

namespace {

// A custom block that declares nothing: conv → bn, chain order.
class TestInner : public Module {
 public:
  TestInner() {
    add("conv", std::make_shared<Conv2d>(Conv2dOptions{.in = 4, .out = 4, .kernel = 1, .seed = 3}));
    add("bn", std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 4}));
  }
  Tensor forward(const Tensor& x) override { return child("bn")->forward(child("conv")->forward(x)); }
  std::string type_name() const override { return "TestInner"; }
};

// A custom residual block holding a nested custom block; its add needs a
// quantizer no child provides, so it declares a quantized twin.
class TestResidual : public Module {
 public:
  TestResidual() {
    add("body", std::make_shared<models::Conv2dBNBlock>(
                    models::Conv2dBNOptions{.in = 4, .out = 4, .kernel = 3, .activation = ActivationKind::relu}));
    add("inner", std::make_shared<TestInner>());
  }
  Tensor forward(const Tensor& x) override {
    return ops::add(x, child("inner")->forward(child("body")->forward(x)));
  }
  std::string type_name() const override { return "TestResidual"; }
};

class TestResidualQuantized : public Module {
 public:
  TestResidualQuantized(const Module& float_block, Quantizer& q) {
    for (const auto& [name, c] : float_block.children()) add(name, c);  // same names, same tensors
    add("add_quant", q.activation_quantizer());
  }
  Tensor forward(const Tensor& x) override {
    Tensor y = ops::add(x, child("inner")->forward(child("body")->forward(x)));
    return child("add_quant")->forward(y);
  }
  std::string type_name() const override { return "TestResidualQuantized"; }
};

}  // namespace

TEST_CASE("quantize: a custom block declares its quantized form; a nested one without a rule gets the default") {
  register_block_rule("TestResidual", [](const std::shared_ptr<Module>& block, Quantizer& q) {
    auto twin = std::make_shared<TestResidualQuantized>(*block, q);
    q.quantize_children(*twin);
    return std::static_pointer_cast<Module>(twin);
  });
  auto root = std::make_shared<Sequential>();
  root->push(std::make_shared<TestResidual>(), "block");
  const auto before = root->named_parameters();
  quantize(*root, {.activation_range = {.init = RangeInit::first_batch}});
  CHECK(root->child("block")->type_name() == "TestResidualQuantized");
  CHECK(listing(*root) == std::vector<std::string>{
                              "weight block.body.conv",
                              "activation block.body.conv.input_quant",
                              "activation block.body.act.output_quant",
                              "weight block.inner.conv",
                              "activation block.inner.bn.output_quant",
                              "activation block.add_quant",
                          });
  const auto after = root->named_parameters();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    CHECK(after[i].name == before[i].name);
    CHECK(after[i].tensor.same(before[i].tensor));
  }
  root->train();
  root->forward(images(7, {2, 5, 5, 4}));
  root->eval();
  Tensor y = root->forward(images(8, {2, 5, 5, 4}));
  check_on_grid(y, *std::dynamic_pointer_cast<ActivationQuantizer>(root->child("block.add_quant")));
  testing::check_layer(*root, {2, 5, 5, 4}, {.check_input_gradient = false, .max_params_checked = 0});
}

namespace {

std::vector<std::string> listing_under(Module& m, const std::string& prefix) {
  std::vector<std::string> out;
  for (const QuantizerInfo& q : list_quantizers(m))
    if (q.name.rfind(prefix, 0) == 0) out.push_back(q.kind + " " + q.name.substr(prefix.size()));
  return out;
}

}  // namespace

TEST_CASE("quantize: every registry model — quantizer counts, block placement, forward, float weights by name") {
  // weight quantizers = convs + dense; activation quantizers as the header's
  // placement rules give them (counted by hand for ResNet50: input, stem relu,
  // 16 blocks x {act1, act2, bn3, act3 (add + relu)}, 4 projection BNs, pool,
  // logits = 72).
  const std::map<std::string, std::pair<int, int>> counts{
      {"resnet18", {22, 32}},           {"resnet34", {38, 56}},
      {"resnet50", {54, 72}},           {"resnet101", {105, 140}},
      {"resnet152", {156, 208}},        {"mobilenet_v2", {53, 65}},
      {"mobilenet_v3_large", {64, 122}}, {"mobilenet_v3_small", {54, 109}},
      {"mobilenet_multi_avg", {52, 66}}, {"deeplabv3_mobilenet_v2", {55, 69}},
      {"deeplabv3plus_mobilenet_v2", {60, 76}},
  };
  CHECK(counts.size() == models::names().size());
  for (const std::string& name : models::names()) {
    CAPTURE(name);
    auto model = models::build(name, {{"num_classes", 10}});
    int convs = 0;
    model->visit([&](const std::string&, Module& m) {
      convs += dynamic_cast<Conv2d*>(&m) != nullptr || dynamic_cast<Dense*>(&m) != nullptr;
    });
    const StateDict float_state = state_dict(*model);
    quantize(*model);
    int weights = 0, activations = 0;
    for (const QuantizerInfo& q : list_quantizers(*model)) (q.kind == "weight" ? weights : activations)++;
    CHECK(weights == convs);
    REQUIRE(counts.count(name));
    CHECK(weights == counts.at(name).first);
    CHECK(activations == counts.at(name).second);
    LoadReport report = load_float_state(*model, float_state);
    CHECK(report.loaded.size() == float_state.size());
    CHECK(report.missing.empty());
    model->eval();
    NoGrad ng;
    const bool seg = name.find("deeplab") == 0, plus = name.find("plus") != std::string::npos;
    Tensor y = model->forward(images(1, {1, 64, 64, 3}));
    // DeepLabV3 logits at stride 16, V3+ at the low-level stride 4.
    CHECK(y.shape() == (!seg ? Shape{1, 10} : plus ? Shape{1, 16, 16, 10} : Shape{1, 4, 4, 10}));
  }

  SUBCASE("placement inside the zoo's blocks") {
    auto r50 = models::build("resnet50", {{"num_classes", 10}});
    quantize(*r50);
    // Projection shortcut's BN, the relus, bn3 before the sum; the sum and
    // its relu share one quantizer (TFLite's ADD with fused RELU).
    CHECK(listing_under(*r50, "backbone.group2.block0.") ==
          std::vector<std::string>{"weight shortcut.conv", "activation shortcut.bn.output_quant", "weight conv1",
                                   "activation act1.output_quant", "weight conv2", "activation act2.output_quant",
                                   "weight conv3", "activation bn3.output_quant", "activation act3.output_quant"});
    CHECK(r50->child("backbone.group2.block0.add")->type_name() == "QuantAdd");
    CHECK(r50->child("backbone.group2.block0.add")->children().empty());

    auto v3 = models::build("mobilenet_v3_large", {{"num_classes", 10}});
    quantize(*v3);
    // hard_swish: BN output and activation output; SE: pooled, relu, the
    // expand conv's output, the gate on its fixed grid, the product; the
    // residual sum.
    CHECK(listing_under(*v3, "backbone.block12.") ==
          std::vector<std::string>{
              "weight expand.conv", "activation expand.bn.output_quant", "activation expand.act.output_quant",
              "weight depthwise.conv", "activation depthwise.bn.output_quant",
              "activation depthwise.act.output_quant", "activation se.pool.output_quant", "weight se.reduce",
              "activation se.act.output_quant", "weight se.expand", "activation se.expand.output_quant",
              "activation se.gate.output_quant", "activation se.scale.output_quant", "weight project.conv",
              "activation project.bn.output_quant", "activation add.output_quant"});
    auto gate = std::dynamic_pointer_cast<ActivationQuantizer>(v3->child("backbone.block12.se.gate.output_quant"));
    REQUIRE(gate);
    v3->train();
    v3->forward(images(2, {2, 64, 64, 3}));
    CHECK(gate->observer().min().item() == 0.0f);  // fixed: training does not move it
    CHECK(gate->observer().max().item() == 1.0f);

    auto dl = models::build("deeplabv3plus_mobilenet_v2", {{"num_classes", 10}});
    quantize(*dl);
    CHECK(listing_under(*dl, "decoder.") ==
          std::vector<std::string>{"weight conv1x1.conv", "activation conv1x1.act.output_quant",
                                   "activation pool.output_quant", "weight pool_conv.conv",
                                   "activation pool_conv.act.output_quant", "activation pool_resize.output_quant",
                                   "activation concat.output_quant", "weight project.conv",
                                   "activation project.act.output_quant"});
    CHECK(listing_under(*dl, "head.") ==
          std::vector<std::string>{
              "weight fusion.conv", "activation fusion.act.output_quant", "activation fusion_resize.output_quant",
              "activation fusion_merge.output_quant", "weight depthwise0.conv", "activation depthwise0.act.output_quant",
              "weight conv0.conv", "activation conv0.act.output_quant", "weight depthwise1.conv",
              "activation depthwise1.act.output_quant", "weight conv1.conv", "activation conv1.act.output_quant",
              "weight classifier", "activation classifier.output_quant"});
  }
}
