// OpProfile: autograd attributes forward intervals and backward closures to op
// names, only while a profile is alive, only in grad mode after mark().
#include <doctest/doctest.h>

#include <random>

#include "core/autograd.h"
#include "core/op_profile.h"
#include "core/ops.h"

using namespace bonsai;

namespace {

// A conv of each kind the profile tells apart, then relu and a sum.
Tensor small_net(const Tensor& x, const Tensor& w3, const Tensor& w1, const Tensor& wd) {
  Tensor y = ops::conv2d(x, w3, Tensor(), {.pad = {1, 1, 1, 1}});  // 3x3, groups 1
  y = ops::conv2d(y, w1, Tensor(), {});                             // 1x1
  y = ops::conv2d(y, wd, Tensor(), {.pad = {1, 1, 1, 1}, .groups = 4});  // depthwise
  return ops::sum(ops::relu(y));
}

}  // namespace

TEST_CASE("OpProfile: forward and backward time per op name, conv kinds apart") {
  std::mt19937 rng(1);
  Tensor x = Tensor::randn({2, 8, 8, 3}, rng);
  Tensor w3 = Tensor::randn({3, 3, 3, 4}, rng).requires_grad_();
  Tensor w1 = Tensor::randn({1, 1, 4, 4}, rng).requires_grad_();
  Tensor wd = Tensor::randn({3, 3, 1, 4}, rng).requires_grad_();

  OpProfile prof;
  CHECK(OpProfile::active() == &prof);
  prof.mark();
  Tensor loss = small_net(x, w3, w1, wd);
  loss.backward();
  for (const char* op : {"conv2d", "conv2d_1x1", "conv2d_depthwise", "relu", "sum"}) {
    CAPTURE(op);
    REQUIRE(prof.forward().count(op) == 1);
    REQUIRE(prof.backward().count(op) == 1);
    CHECK(prof.forward().find(op)->second.calls == 1);
    CHECK(prof.backward().find(op)->second.calls == 1);
    CHECK(prof.forward().find(op)->second.seconds >= 0.0);
    CHECK(prof.backward().find(op)->second.seconds > 0.0);
  }
  CHECK(prof.forward().size() == 5);
  CHECK(prof.backward().size() == 5);

  // Backward disarmed the forward clock: ops now (no mark) are not forwards,
  // and neither are ops under NoGrad after a mark.
  ops::sum(ops::relu(ops::scale(w1, 2.f)));
  prof.mark();
  {
    NoGrad ng;
    ops::relu(w1);
  }
  CHECK(prof.forward().count("scale") == 0);
  CHECK(prof.forward().find("relu")->second.calls == 1);
  CHECK(prof.forward().find("sum")->second.calls == 1);
}

TEST_CASE("OpProfile: nothing is recorded without a live profile; nesting restores the outer one") {
  CHECK(OpProfile::active() == nullptr);
  Tensor a = Tensor::from({2}, {1.f, -1.f}).requires_grad_();
  {
    OpProfile outer;
    {
      OpProfile inner;
      inner.mark();
      ops::sum(ops::relu(a)).backward();
      CHECK(inner.forward().size() == 2);
      CHECK(inner.backward().size() == 2);
      CHECK(OpProfile::active() == &inner);
    }
    CHECK(OpProfile::active() == &outer);
    CHECK(outer.forward().empty());
    CHECK(outer.backward().empty());
  }
  CHECK(OpProfile::active() == nullptr);
  ops::sum(ops::relu(a)).backward();  // must not touch a dead profile
  CHECK(a.grad().defined());
}
