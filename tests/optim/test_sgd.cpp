#include <doctest/doctest.h>

#include "layers/layers.h"
#include "optim/sgd.h"

using namespace bonsai;

namespace {
// A one-parameter module so the optimiser can be driven with chosen gradients.
struct Scalar : Module {
  explicit Scalar(float v, ParamRole role) { w = add_parameter("w", Tensor::scalar(v), role); }
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Scalar"; }
  Tensor w;
};

void set_grad(Tensor& w, float g) { w.impl()->grad = Tensor::scalar(g).impl_ptr(); }
}  // namespace

TEST_CASE("SGD momentum against a hand-computed sequence") {
  Scalar m(1.f, ParamRole::conv_kernel);
  optim::Sgd opt(m.named_parameters(), {.momentum = 0.5f});
  // v1 = 1, w = 1 - 0.1*1 = 0.9 ; v2 = 0.5*1 + 2 = 2.5, w = 0.9 - 0.25 = 0.65
  set_grad(m.w, 1.f);
  opt.step(0.1f);
  CHECK(m.w.item() == doctest::Approx(0.9f));
  set_grad(m.w, 2.f);
  opt.step(0.1f);
  CHECK(m.w.item() == doctest::Approx(0.65f));
}

TEST_CASE("SGD Nesterov and L2 on kernels only") {
  Scalar k(2.f, ParamRole::conv_kernel), g(2.f, ParamRole::bn_gamma);
  auto params = k.named_parameters();
  auto pg = g.named_parameters();
  pg[0].name = "gamma";
  params.push_back(pg[0]);
  optim::Sgd opt(params, {.momentum = 0.9f, .nesterov = true, .weight_decay = 0.1f});
  set_grad(k.w, 1.f);
  set_grad(g.w, 1.f);
  opt.step(0.5f);
  // kernel: g' = 1 + 0.1*2 = 1.2 ; v = 1.2 ; w = 2 - 0.5*(1.2 + 0.9*1.2) = 0.86
  CHECK(k.w.item() == doctest::Approx(0.86f));
  // gamma: no decay: v = 1, w = 2 - 0.5*(1 + 0.9) = 1.05
  CHECK(g.w.item() == doctest::Approx(1.05f));
}
