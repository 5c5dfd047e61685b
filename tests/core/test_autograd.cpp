#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/ops.h"

using namespace bonsai;

TEST_CASE("autograd: shared subexpressions accumulate (reverse topological order)") {
  // y = sum((a*b) + (a*b)*a) ; dy/da = 2ab + b... checked elementwise
  Tensor a = Tensor::from({2}, {2.f, 3.f}).requires_grad_();
  Tensor b = Tensor::from({2}, {5.f, 7.f}).requires_grad_();
  Tensor ab = ops::mul(a, b);
  Tensor y = ops::sum(ops::add(ab, ops::mul(ab, a)));
  y.backward();
  // d/da [ab + a^2 b] = b + 2ab ; d/db = a + a^2
  CHECK(a.grad().data<float>()[0] == doctest::Approx(5 + 2 * 2 * 5));
  CHECK(a.grad().data<float>()[1] == doctest::Approx(7 + 2 * 3 * 7));
  CHECK(b.grad().data<float>()[0] == doctest::Approx(2 + 4));
  CHECK(b.grad().data<float>()[1] == doctest::Approx(3 + 9));
}

TEST_CASE("autograd: gradients accumulate across backward calls until zeroed") {
  Tensor a = Tensor::from({1}, {3.f}).requires_grad_();
  ops::scale(a, 2.f).backward();
  ops::scale(a, 2.f).backward();
  CHECK(a.grad().item() == 4.f);
  a.zero_grad();
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("autograd: no_grad records nothing; detach cuts history") {
  Tensor a = Tensor::from({1}, {3.f}).requires_grad_();
  {
    NoGrad ng;
    Tensor y = ops::scale(a, 2.f);
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(y.grad_fn());
  }
  Tensor y = ops::scale(a, 2.f);
  CHECK(y.requires_grad());
  Tensor d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.raw() == y.raw());
  Tensor z = ops::mul(d, a);  // gradient flows to a only through the second factor
  z.backward();
  CHECK(a.grad().item() == 6.f);
}

TEST_CASE("autograd: saved tensors are freed once backward used them") {
  Tensor a = Tensor::from({4}, {1, 2, 3, 4}).requires_grad_();
  Tensor h = Tensor::from({4}, {1, 1, 1, 1});
  std::weak_ptr<Storage> saved = h.impl()->storage;
  Tensor y = ops::sum(ops::mul(a, h));
  h = Tensor();
  CHECK_FALSE(saved.expired());  // held by the mul node for backward
  y.backward();
  CHECK(saved.expired());        // released right after mul's backward ran
  CHECK_THROWS_AS(y.backward(), Error);  // a second pass is refused with a message
}

TEST_CASE("autograd: a branch whose gradient is unused still releases its inputs") {
  Tensor a = Tensor::from({2}, {1, 2}).requires_grad_();
  Tensor labels = Tensor::zeros({1}, DType::s64);
  Tensor z = ops::reshape(ops::mul(a, a), {1, 2});
  Tensor loss = ops::softmax_cross_entropy(z, labels);
  loss.backward();
  CHECK(a.grad().defined());
}

TEST_CASE("autograd: backward needs a scalar that requires grad") {
  Tensor a = Tensor::from({2}, {1, 2}).requires_grad_();
  CHECK_THROWS_AS(ops::scale(a, 2.f).backward(), Error);
  CHECK_THROWS_AS(Tensor::scalar(1.f).backward(), Error);
}
