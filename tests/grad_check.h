// The one finite-difference gradient checker every op's test calls.
//
// For y = f(inputs) it draws a fixed random cotangent r (same shape as y) and
// compares the analytic gradient of L = Σ y·r (from autograd, seeded with r)
// against central differences of L, evaluated in double, for every input
// that requires grad (all elements, or a random sample of `max_elements`).
//
//   check_gradients("relu", [](const std::vector<Tensor>& in) { return ops::relu(in[0]); },
//                   {Tensor::randn({2, 3}, rng).requires_grad_()});
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace bonsai::testing {

struct GradCheckOptions {
  double eps = 1e-2;   // central-difference step
  double rtol = 1e-2;  // |analytic - numeric| <= atol + rtol * |numeric|
  double atol = 1e-3;
  int max_elements = 48;  // per input; 0 = all
  uint32_t seed = 7;
};

using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Returns the number of mismatching elements; also reports each via doctest.
int check_gradients(const std::string& name, const OpFn& f, std::vector<Tensor> inputs,
                    const GradCheckOptions& o = {});

// max |a - b| / max(1, max |b|): the relative error used for fast-vs-reference
// and golden comparisons.
double rel_error(const Tensor& a, const Tensor& b);

}  // namespace bonsai::testing
