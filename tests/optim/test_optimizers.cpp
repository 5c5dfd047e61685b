// Optimisers, schedules and EMA against hand-computed sequences.
#include <doctest/doctest.h>

#include <cmath>

#include "layers/layers.h"
#include "optim/ema.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"

using namespace bonsai;
using namespace bonsai::optim;

namespace {
// A module holding one scalar parameter of a chosen role, so an optimiser can
// be driven with chosen gradients.
struct Scalar : Module {
  Scalar(float v, ParamRole role, const std::string& name = "w") {
    w = add_parameter(name, Tensor::scalar(v), role);
  }
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Scalar"; }
  Tensor w;
};

void set_grad(Tensor& w, float g) { w.impl()->grad = Tensor::scalar(g).impl_ptr(); }
}  // namespace

TEST_CASE("SGD momentum against a hand-computed sequence") {
  Scalar m(1.f, ParamRole::conv_kernel);
  Sgd opt(m.named_parameters(), {.momentum = 0.5f});
  // v1 = 1, w = 1 - 0.1*1 = 0.9 ; v2 = 0.5*1 + 2 = 2.5, w = 0.9 - 0.25 = 0.65
  set_grad(m.w, 1.f);
  opt.step(0.1f);
  CHECK(m.w.item() == doctest::Approx(0.9f));
  set_grad(m.w, 2.f);
  opt.step(0.1f);
  CHECK(m.w.item() == doctest::Approx(0.65f));
}

TEST_CASE("SGD Nesterov, and L2 on kernels only") {
  Scalar k(2.f, ParamRole::conv_kernel), g(2.f, ParamRole::bn_gamma, "gamma"),
      d(2.f, ParamRole::depthwise_kernel, "dw");
  auto params = k.named_parameters();
  params.push_back(g.named_parameters()[0]);
  params.push_back(d.named_parameters()[0]);
  Sgd opt(params, {.momentum = 0.9f, .nesterov = true}, {.weight_decay = 0.1f});
  for (Tensor* t : {&k.w, &g.w, &d.w}) set_grad(*t, 1.f);
  opt.step(0.5f);
  // kernel: g' = 1 + 0.1*2 = 1.2 ; v = 1.2 ; w = 2 - 0.5*(1.2 + 0.9*1.2) = 0.86
  CHECK(k.w.item() == doctest::Approx(0.86f));
  // gamma and depthwise (decay_depthwise off): v = 1, w = 2 - 0.5*(1 + 0.9) = 1.05
  CHECK(g.w.item() == doctest::Approx(1.05f));
  CHECK(d.w.item() == doctest::Approx(1.05f));
}

TEST_CASE("global-norm clipping scales all gradients together") {
  Scalar a(0.f, ParamRole::conv_kernel, "a"), b(0.f, ParamRole::conv_kernel, "b");
  auto params = a.named_parameters();
  params.push_back(b.named_parameters()[0]);
  Sgd opt(params, {.momentum = 0.f}, {.clip_global_norm = 1.f});
  set_grad(a.w, 3.f);
  set_grad(b.w, 4.f);  // norm 5 -> scaled by 1/5
  opt.step(1.f);
  CHECK(opt.last_grad_norm() == doctest::Approx(5.f));
  CHECK(a.w.item() == doctest::Approx(-0.6f));
  CHECK(b.w.item() == doctest::Approx(-0.8f));
}

TEST_CASE("RMSProp with TF semantics") {
  Scalar m(1.f, ParamRole::conv_kernel);
  RmsProp opt(m.named_parameters(), {.rho = 0.9f, .momentum = 0.5f, .epsilon = 1e-3f});
  // step 1: ms = 0.1*4 = 0.4; mom = 0.1*2/sqrt(0.401); w = 1 - mom
  set_grad(m.w, 2.f);
  opt.step(0.1f);
  double ms = 0.4, mom = 0.1 * 2 / std::sqrt(0.401), w = 1 - mom;
  CHECK(m.w.item() == doctest::Approx(w).epsilon(1e-6));
  // step 2, g = -1: ms = 0.9*0.4 + 0.1*1 = 0.46; mom = 0.5*mom + 0.1*(-1)/sqrt(0.461)
  set_grad(m.w, -1.f);
  opt.step(0.1f);
  ms = 0.9 * ms + 0.1;
  mom = 0.5 * mom + 0.1 * -1 / std::sqrt(ms + 1e-3);
  w -= mom;
  CHECK(m.w.item() == doctest::Approx(w).epsilon(1e-6));
}

TEST_CASE("Adam and AdamW against hand-computed steps") {
  Scalar m(1.f, ParamRole::dense_kernel), b(1.f, ParamRole::bias, "b");
  auto params = m.named_parameters();
  params.push_back(b.named_parameters()[0]);
  AdamW opt(params, {.beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-7f}, 0.01f);
  double w = 1, bb = 1, mm = 0, vv = 0;
  for (int t = 1; t <= 3; ++t) {
    float g = static_cast<float>(t) * 0.5f;
    set_grad(m.w, g);
    set_grad(b.w, g);
    opt.step(0.01f);
    mm = 0.9 * mm + 0.1 * g;
    vv = 0.999 * vv + 0.001 * g * g;
    double lr_t = 0.01 * std::sqrt(1 - std::pow(0.999, t)) / (1 - std::pow(0.9, t));
    double adam = lr_t * mm / (std::sqrt(vv) + 1e-7);
    w -= adam + 0.01 * 0.01 * w;  // decoupled decay on the kernel
    bb -= adam;                   // none on the bias
    CHECK(m.w.item() == doctest::Approx(w).epsilon(1e-5));
    CHECK(b.w.item() == doctest::Approx(bb).epsilon(1e-5));
  }
}

TEST_CASE("optimiser state round trip continues the same sequence") {
  Scalar a(1.f, ParamRole::conv_kernel), b(1.f, ParamRole::conv_kernel);
  Sgd oa(a.named_parameters(), {.momentum = 0.9f});
  set_grad(a.w, 1.f);
  oa.step(0.1f);
  Sgd ob(b.named_parameters(), {.momentum = 0.9f});
  b.w.copy_from(a.w);
  ob.load_state(oa.state());
  CHECK(ob.iterations() == 1);
  set_grad(a.w, 0.5f);
  set_grad(b.w, 0.5f);
  oa.step(0.1f);
  ob.step(0.1f);
  CHECK(a.w.item() == b.w.item());
  StateDict bad = oa.state();
  bad["nope/momentum"] = Tensor::zeros({1});
  CHECK_THROWS_AS(ob.load_state(bad), Error);
}

TEST_CASE("learning-rate schedules match hand-computed values") {
  auto near = [](double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(1.0, std::abs(b)); };
  Schedule c = make_schedule({.type = ScheduleType::constant, .initial_learning_rate = 0.3});
  CHECK(near(c(0), 0.3));
  CHECK(near(c(1000), 0.3));
  Schedule st = make_schedule(
      {.type = ScheduleType::stepwise, .boundaries = {10, 20}, .values = {1.0, 0.1, 0.01}});
  CHECK(near(st(10), 1.0));  // Keras PiecewiseConstantDecay: step <= boundary keeps the value
  CHECK(near(st(11), 0.1));
  CHECK(near(st(21), 0.01));
  Schedule ex = make_schedule({.type = ScheduleType::exponential, .initial_learning_rate = 1.0,
                               .decay_steps = 10, .decay_rate = 0.5});
  CHECK(near(ex(5), std::pow(0.5, 0.5)));
  Schedule exs = make_schedule({.type = ScheduleType::exponential, .initial_learning_rate = 1.0,
                                .decay_steps = 10, .decay_rate = 0.5, .staircase = true});
  CHECK(near(exs(19), 0.5));
  CHECK(near(exs(20), 0.25));
  Schedule co = make_schedule({.type = ScheduleType::cosine, .initial_learning_rate = 2.0,
                               .decay_steps = 100, .alpha = 0.1});
  CHECK(near(co(0), 2.0));
  CHECK(near(co(50), 2.0 * (0.9 * 0.5 + 0.1)));
  CHECK(near(co(100), 0.2));
  CHECK(near(co(500), 0.2));
  Schedule po = make_schedule({.type = ScheduleType::polynomial, .initial_learning_rate = 0.007,
                               .decay_steps = 30000, .end_learning_rate = 0.0, .power = 0.9});
  CHECK(near(po(15000), 0.007 * std::pow(0.5, 0.9)));
  CHECK(near(po(40000), 0.0));
  // Warmup over 10 steps from 0 to cosine(10), then the schedule itself.
  Schedule wc = make_schedule({.type = ScheduleType::cosine, .initial_learning_rate = 1.0,
                               .decay_steps = 100, .warmup_steps = 10, .warmup_learning_rate = 0.0});
  double at10 = 0.5 * (1 + std::cos(M_PI * 0.1));
  CHECK(near(wc(0), 0.0));
  CHECK(near(wc(5), 0.5 * at10));
  CHECK(near(wc(10), at10));
  CHECK(near(wc(60), 0.5 * (1 + std::cos(M_PI * 0.6))));
  CHECK_THROWS_AS(make_schedule({.type = ScheduleType::stepwise, .boundaries = {1}, .values = {1}}), Error);
  CHECK_THROWS_AS(schedule_type_from_name("linear"), Error);
}

TEST_CASE("EMA with dynamic decay, and swapping for evaluation") {
  Scalar m(0.f, ParamRole::conv_kernel);
  Ema ema(m.named_parameters(), {.average_decay = 0.9});
  m.w.fill(1.f);
  ema.update(0);  // decay = min(0.9, 1/10) = 0.1: shadow = 0.1*0 + 0.9*1
  m.w.fill(2.f);
  ema.update(100);  // decay = min(0.9, 101/110) = 0.9: shadow = 0.9*0.9 + 0.1*2
  {
    auto swap = ema.swap_in();
    CHECK(m.w.item() == doctest::Approx(0.81 + 0.2));
  }
  CHECK(m.w.item() == 2.f);
}
