#include "tests/grad_check.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/autograd.h"

namespace bonsai::testing {

namespace {
double weighted_sum(const Tensor& y, const Tensor& r) {
  const float* py = y.data<float>();
  const float* pr = r.data<float>();
  double s = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(py[i]) * pr[i];
  return s;
}
}  // namespace

int check_gradients(const std::string& name, const OpFn& f, std::vector<Tensor> inputs,
                    const GradCheckOptions& o) {
  std::mt19937 rng(o.seed);
  for (Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.zero_grad();
  Tensor y = f(inputs);
  REQUIRE_MESSAGE(y.requires_grad(), name << ": output does not require grad");
  Tensor r = Tensor::randn(y.shape(), rng);
  run_backward(y, r);

  int bad = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& in = inputs[k];
    if (!in.defined() || !in.requires_grad()) continue;
    Tensor g = in.grad();
    REQUIRE_MESSAGE(g.defined(), name << ": no gradient reached input " << k);
    REQUIRE_MESSAGE(g.shape() == in.shape(),
                    name << ": gradient shape " << g.shape_str() << " for input " << in.shape_str());
    std::vector<int64_t> idx(in.numel());
    for (int64_t i = 0; i < in.numel(); ++i) idx[i] = i;
    if (o.max_elements > 0 && in.numel() > o.max_elements) {
      std::shuffle(idx.begin(), idx.end(), rng);
      idx.resize(o.max_elements);
    }
    float* p = in.data<float>();
    for (int64_t i : idx) {
      NoGrad no_grad;
      float saved = p[i];
      p[i] = saved + static_cast<float>(o.eps);
      double up = weighted_sum(f(inputs), r);
      p[i] = saved - static_cast<float>(o.eps);
      double down = weighted_sum(f(inputs), r);
      p[i] = saved;
      double numeric = (up - down) / (2 * o.eps);
      double analytic = g.data<float>()[i];
      if (std::abs(analytic - numeric) > o.atol + o.rtol * std::abs(numeric)) {
        ++bad;
        if (bad <= 5)
          FAIL_CHECK(name << ": input " << k << " " << in.shape_str() << " element " << i
                          << ": analytic " << analytic << " vs numeric " << numeric);
      }
    }
  }
  CHECK_MESSAGE(bad == 0, name << ": " << bad << " gradient mismatches");
  return bad;
}

double rel_error(const Tensor& a, const Tensor& b) {
  REQUIRE_MESSAGE(a.shape() == b.shape(), "rel_error: shapes " << shapes_str(a, b));
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  double diff = 0.0, mag = 1.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(pa[i] - pb[i])));
    mag = std::max(mag, static_cast<double>(std::abs(pb[i])));
  }
  return diff / mag;
}

}  // namespace bonsai::testing
