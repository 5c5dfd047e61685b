// Magnitude pruning (prune/): schedules against a hand-computed table, exact
// per-layer sparsity with deterministic ties, block and N:M granularity,
// which weights the walk takes (every registry model; custom blocks that do
// and do not declare prunable_weights()), state round trips, and pruning +
// QAT keeping the zeros through conversion to int8.
#include <doctest/doctest.h>

#include <random>

#include "core/autograd.h"
#include "core/ops.h"
#include "layers/layers.h"
#include "models/registry.h"
#include "prune/prune.h"
#include "quant/int8_model.h"
#include "quant/quantize.h"

using namespace bonsai;
using namespace bonsai::prune;

namespace {

// A module holding one weight with the given values, as a conv kernel.
struct Holder : Module {
  explicit Holder(const Shape& s, const std::vector<float>& v) {
    kernel = add_parameter("kernel", Tensor::from(s, v), ParamRole::conv_kernel);
  }
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Holder"; }
  Tensor kernel;
};

std::vector<int> mask_of(const Pruner& p, size_t i = 0) {
  const Tensor& m = p.weights()[i].mask;
  return std::vector<int>(m.data<uint8_t>(), m.data<uint8_t>() + m.numel());
}

}  // namespace

TEST_CASE("prune: schedules match a hand-computed table") {
  Schedule poly = Schedule::polynomial_decay(
      {.initial_sparsity = 0.0, .final_sparsity = 0.8, .begin_step = 0, .end_step = 100, .frequency = 25});
  // 0.8 + (0 - 0.8) * (1 - p)^3 at p = 0, 1/4, 1/2, 3/4, 1.
  const std::vector<std::pair<int64_t, double>> table{{0, 0.0}, {25, 0.4625}, {50, 0.7}, {75, 0.7875}, {100, 0.8}};
  for (const auto& [step, want] : table) {
    const int64_t at_step = step;  // clang: no structured bindings in CAPTURE's lambda
    CAPTURE(at_step);
    CHECK(poly.should_update(step));
    CHECK(poly.sparsity(step) == doctest::Approx(want).epsilon(1e-12));
  }
  CHECK(!poly.should_update(10));
  CHECK(!poly.should_update(125));  // after end_step
  CHECK(poly.sparsity(200) == doctest::Approx(0.8));
  Schedule late = Schedule::polynomial_decay(
      {.initial_sparsity = 0.2, .final_sparsity = 0.5, .begin_step = 100, .end_step = 300, .frequency = 50});
  CHECK(!late.should_update(50));
  CHECK(late.sparsity(50) == doctest::Approx(0.2));
  CHECK(late.should_update(200));
  CHECK(late.sparsity(200) == doctest::Approx(0.5 - 0.3 * 0.125));
  Schedule constant = Schedule::by_name("ConstantSparsity", {.final_sparsity = 0.5, .begin_step = 10, .frequency = 10});
  CHECK(constant.should_update(10));
  CHECK(constant.should_update(100000));  // end_step -1: never stops
  CHECK(!constant.should_update(15));
  CHECK(constant.sparsity(0) == 0.5);
  CHECK_THROWS_WITH_AS(Schedule::by_name("Cubic", {}), doctest::Contains("Cubic"), Error);
  CHECK_THROWS_AS(Schedule::polynomial_decay({.begin_step = 10, .end_step = 10}), Error);
}

TEST_CASE("prune: exact layer sparsity, ties broken by position, masks applied and kept") {
  // |w| = 1, 5, 2, 2, 9, 2, 7, 3, 4, 6: at 45%, round(4.5) = 5 zeros (half
  // rounds up): the 1, the three 2s and the 3.
  Holder h({10}, {1, -5, 2, -2, 9, 2, 7, -3, 4, 6});
  Pruner p(h, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.45})});
  REQUIRE(p.weights().size() == 1);
  p.update_masks(0.45);
  CHECK(mask_of(p) == std::vector<int>{0, 1, 0, 0, 1, 0, 1, 0, 1, 1});
  p.apply();
  CHECK(h.kernel.data<float>()[7] == 0.0f);
  CHECK(h.kernel.data<float>()[1] == -5.0f);
  CHECK(p.weights()[0].threshold == 3.0f);
  // Ties: four equal magnitudes, prune two: the first two go.
  Holder t({4}, {2, -2, 2, -2});
  Pruner q(t, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5})});
  q.update_masks(0.5);
  CHECK(mask_of(q) == std::vector<int>{0, 0, 1, 1});
  // Exact counts on a big random weight, at every schedule value.
  std::mt19937 rng(3);
  Holder big({3, 3, 17, 29}, std::vector<float>(3 * 3 * 17 * 29));
  big.kernel.copy_from(Tensor::randn({3, 3, 17, 29}, rng));
  Pruner b(big, {.schedule = Schedule::polynomial_decay({.final_sparsity = 0.8, .end_step = 100, .frequency = 10})});
  for (int64_t step = 0; step <= 100; step += 10) {
    CHECK(b.step(step));
    const double s = b.weights()[0].sparsity();
    CHECK(s == doctest::Approx(std::llround(b.weights()[0].weight.numel() * Schedule::polynomial_decay(
                                   {.final_sparsity = 0.8, .end_step = 100, .frequency = 10}).sparsity(step)) /
                               static_cast<double>(big.kernel.numel())));
  }
  CHECK(b.weights()[0].sparsity() == doctest::Approx(0.8).epsilon(1e-3));
  // Between updates the mask holds: weights that training revives are zeroed again.
  big.kernel.fill(1.0f);
  CHECK(!b.step(105));
  CHECK(prune::kernel_sparsity(big) == doctest::Approx(0.8).epsilon(1e-3));
}

TEST_CASE("prune: block and N:M granularity") {
  SUBCASE("2x2 blocks of a 4x4 matrix, by mean magnitude") {
    Holder h({4, 4}, {1, 1, 9, 9,  //
                      1, 1, 9, 9,  //
                      5, 5, 2, 2,  //
                      5, 5, 2, 2});
    Pruner p(h, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5}),
                 .granularity = Granularity::block, .block_h = 2, .block_w = 2});
    p.update_masks(0.5);
    CHECK(mask_of(p) == std::vector<int>{0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0});
    CHECK(p.weights()[0].threshold == 2.0f);
  }
  SUBCASE("2:4 along input channels, reached gradually") {
    // HWIO [1, 1, 8, 2]: inputs 0-3 and 4-7 form the groups of each output.
    std::vector<float> v(16);
    for (int i = 0; i < 8; ++i) {
      v[i * 2 + 0] = static_cast<float>(i + 1);      // output 0: 1..8
      v[i * 2 + 1] = static_cast<float>(8 - i) * 10;  // output 1: 80..10
    }
    Holder h({1, 1, 8, 2}, v);
    Pruner p(h, {.schedule = Schedule::polynomial_decay({.final_sparsity = 0.5, .end_step = 10, .frequency = 1}),
                 .granularity = Granularity::n_m, .n = 2, .m = 4});
    p.update_masks(0.25);  // 4 of the 8 candidates: the smallest magnitudes 1, 2, 5, 6
    CHECK(p.weights()[0].sparsity() == 0.25);
    p.update_masks(0.5);
    const auto m = mask_of(p);
    for (int c = 0; c < 2; ++c)
      for (int g = 0; g < 8; g += 4) {
        int kept = 0;
        for (int i = g; i < g + 4; ++i) kept += m[i * 2 + c];
        CHECK(kept == 2);
      }
    CHECK(m[0 * 2 + 0] == 0);  // 1 and 2 go in output 0's first group
    CHECK(m[3 * 2 + 0] == 1);  // 4 stays
    CHECK(m[0 * 2 + 1] == 1);  // 80 stays in output 1
  }
}

namespace {

// Declares one of its two convs prunable.
struct Declares : Module {
  Declares() {
    add("a", std::make_shared<Conv2d>(Conv2dOptions{.in = 4, .out = 4, .kernel = 3, .seed = 1}));
    add("b", std::make_shared<Conv2d>(Conv2dOptions{.in = 4, .out = 4, .kernel = 1, .seed = 2}));
  }
  Tensor forward(const Tensor& x) override { return child("b")->forward(child("a")->forward(x)); }
  std::string type_name() const override { return "Declares"; }
  std::optional<std::vector<std::string>> prunable_weights() const override {
    return std::vector<std::string>{"b.kernel"};
  }
};

// Declares nothing: its built-in layers' kernels are taken.
struct Silent : Module {
  Silent() {
    add("inner", std::make_shared<Declares>());
    add("conv", std::make_shared<Conv2d>(Conv2dOptions{.in = 4, .out = 4, .kernel = 3, .seed = 3}));
    add("dw", std::make_shared<Conv2d>(Conv2dOptions{.in = 4, .out = 4, .kernel = 3, .groups = 4, .seed = 4}));
  }
  Tensor forward(const Tensor& x) override {
    return child("dw")->forward(child("conv")->forward(child("inner")->forward(x)));
  }
  std::string type_name() const override { return "Silent"; }
};

std::vector<std::string> names(const Pruner& p) {
  std::vector<std::string> out;
  for (const auto& w : p.weights()) out.push_back(w.name);
  return out;
}

}  // namespace

TEST_CASE("prune: which weights — every registry model, custom blocks, depthwise opt-in, exclusions, overrides") {
  for (const std::string& name : models::names()) {
    CAPTURE(name);
    auto model = models::build(name, {{"num_classes", 10}});
    int kernels = 0, depthwise = 0;
    for (const NamedParam& p : model->named_parameters()) {
      kernels += p.role == ParamRole::conv_kernel || p.role == ParamRole::dense_kernel;
      depthwise += p.role == ParamRole::depthwise_kernel;
    }
    Pruner p(*model, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5})});
    CHECK(static_cast<int>(p.weights().size()) == kernels);
    Pruner all(*model, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5}), .prune_depthwise = true});
    CHECK(static_cast<int>(all.weights().size()) == kernels + depthwise);
  }
  auto root = std::make_shared<Sequential>();
  root->push(std::make_shared<Silent>(), "block");
  Pruner p(*root, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5})});
  CHECK(names(p) == std::vector<std::string>{"block.inner.b.kernel", "block.conv.kernel"});
  Pruner dw(*root, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5}), .prune_depthwise = true,
                    .exclude = {"*.conv.*"}, .overrides = {{"*.dw.*", 0.25}}});
  CHECK(names(dw) == std::vector<std::string>{"block.inner.b.kernel", "block.dw.kernel"});
  dw.update_masks(0.5);
  CHECK(dw.weights()[0].sparsity() == 0.5);
  CHECK(dw.weights()[1].sparsity() == doctest::Approx(0.25).epsilon(0.05));  // round(0.25 * 36) = 9
}

TEST_CASE("prune: state round trip and fixed masks") {
  auto root = std::make_shared<Sequential>();
  root->push(std::make_shared<Silent>(), "block");
  Pruner p(*root, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.6})});
  p.step(0);
  const StateDict s = p.state();
  CHECK(s.size() == 4);
  Pruner q(*root, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.6})});
  q.load_state(s);
  CHECK(mask_of(q, 1) == mask_of(p, 1));
  Pruner fixed = Pruner::with_fixed_masks(*root, s);
  CHECK(fixed.weights().size() == 2);
  CHECK(!fixed.step(0));  // never recomputed
  CHECK(fixed.weights()[0].sparsity() == doctest::Approx(0.6).epsilon(0.05));
  StateDict bad = s;
  bad["block.conv.kernel.mask"] = Tensor::zeros({3}, DType::u8);
  CHECK_THROWS_WITH_AS(q.load_state(bad), doctest::Contains("block.conv.kernel"), Error);
}

TEST_CASE("prune: pruning + QAT keeps the zeros through training and into the int8 model") {
  auto model = std::make_shared<Sequential>();
  model->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 8, .kernel = 3, .seed = 1}), "conv");
  model->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 8}), "bn");
  model->push(std::make_shared<Activation>(ActivationKind::relu), "relu");
  model->push(std::make_shared<GlobalAvgPool>(), "pool");
  model->push(std::make_shared<Flatten>(), "flatten");
  model->push(std::make_shared<Dense>(DenseOptions{.in = 8, .out = 4, .seed = 2}), "dense");
  Pruner dense_pruner(*model, {.schedule = Schedule::constant_sparsity({.final_sparsity = 0.5})});
  dense_pruner.step(0);
  const StateDict masks = dense_pruner.state();

  quant::quantize(*model);
  Pruner kept = Pruner::with_fixed_masks(*model, masks);
  std::mt19937 rng(5);
  model->train();
  for (int step = 1; step <= 3; ++step) {  // SGD steps that would revive pruned weights
    model->zero_grad();
    Tensor loss = ops::mean(model->forward(Tensor::randn({4, 8, 8, 3}, rng)));
    loss.backward();
    NoGrad ng;
    for (const NamedParam& p : model->named_parameters()) {
      Tensor g = p.tensor.grad();
      if (!g.defined()) continue;
      for (int64_t i = 0; i < p.tensor.numel(); ++i) p.tensor.data<float>()[i] -= 0.1f * g.data<float>()[i];
    }
    kept.step(step);
  }
  CHECK(kernel_sparsity(*model) == doctest::Approx(0.5).epsilon(0.02));
  model->eval();
  quant::Int8Model int8 = quant::convert(*model, Tensor::zeros({1, 8, 8, 3}));
  int checked = 0;
  for (const quant::Int8Op& o : int8.ops()) {
    if (!o.weights.defined()) continue;
    const PrunedWeight& w = kept.weights()[checked++];
    REQUIRE(o.weights.numel() == w.mask.numel());
    for (int64_t i = 0; i < w.mask.numel(); ++i)
      if (!w.mask.data<uint8_t>()[i]) CHECK(o.weights.data<int8_t>()[i] == 0);
  }
  CHECK(checked == 2);
}
