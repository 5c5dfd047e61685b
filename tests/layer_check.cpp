#include "tests/layer_check.h"

#include <doctest/doctest.h>

#include <set>

#include "core/autograd.h"
#include "core/ops.h"

namespace bonsai::testing {

void check_layer(Module& m, const Shape& input_shape, const LayerCheckOptions& o) {
  const std::string type = m.type_name();
  auto params = m.named_parameters();
  auto buffers = m.named_buffers();
  std::set<std::string> names;
  for (const auto& p : params) {
    CHECK_MESSAGE(names.insert(p.name).second, type << ": duplicate name " << p.name);
    CHECK_MESSAGE(p.tensor.requires_grad(), type << ": parameter " << p.name << " does not require grad");
  }
  for (const auto& b : buffers) {
    // Not a structured binding: clang cannot capture those in the lambdas
    // doctest's CHECK_MESSAGE expands to (clang 14; 16 with OpenMP on).
    const std::string& name = b.first;
    CHECK_MESSAGE(names.insert(name).second, type << ": duplicate name " << name);
    CHECK_MESSAGE(!b.second.requires_grad(), type << ": buffer " << name << " requires grad");
  }

  m.eval();
  m.visit([&](const std::string& path, Module& mod) {
    CHECK_MESSAGE(!mod.is_training(), type << ": eval() did not reach " << path);
  });
  std::mt19937 rng(11);
  Tensor x = Tensor::randn(input_shape, rng);
  Tensor y1, y2;
  {
    NoGrad ng;
    y1 = m.forward(x);
    y2 = m.forward(x);
  }
  CHECK_MESSAGE(rel_error(y1, y2) == 0.0, type << ": eval forward is not deterministic");

  m.train();
  m.visit([&](const std::string& path, Module& mod) {
    CHECK_MESSAGE(mod.is_training(), type << ": train() did not reach " << path);
  });
  m.zero_grad();
  Tensor y = m.forward(x);
  Tensor r = Tensor::randn(y.shape(), rng);
  ops::sum(ops::mul(y, r)).backward();
  for (const auto& p : params) {
    Tensor g = p.tensor.grad();
    CHECK_MESSAGE(g.defined(), type << ": no gradient reached " << p.name);
    if (g.defined())
      CHECK_MESSAGE(g.shape() == p.tensor.shape(), type << ": gradient of " << p.name << " has shape "
                                                        << g.shape_str() << ", parameter "
                                                        << p.tensor.shape_str());
  }
  m.zero_grad();

  // Finite differences in eval mode (fixed BN statistics, no dropout).
  m.eval();
  std::vector<Tensor> inputs{x.clone().requires_grad_(o.check_input_gradient)};
  std::vector<size_t> which;
  for (size_t i = 0; i < params.size() && static_cast<int>(which.size()) < o.max_params_checked;
       i += std::max<size_t>(1, params.size() / std::max(1, o.max_params_checked)))
    which.push_back(i);
  for (size_t i : which) inputs.push_back(params[i].tensor);
  if (!o.check_input_gradient && which.empty()) return;
  check_gradients(type + " (eval)", [&m](const std::vector<Tensor>& in) { return m.forward(in[0]); },
                  inputs, o.grad);
  m.zero_grad();
  m.train();
}

std::shared_ptr<Sequential> small_conv_net() {
  auto m = std::make_shared<Sequential>();
  m->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 8, .kernel = 3, .stride = 2, .seed = 1}), "conv0");
  m->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 8}), "bn0");
  m->push(std::make_shared<Activation>(ActivationKind::relu6), "act0");
  m->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 8, .out = 8, .kernel = 3, .groups = 8, .seed = 2}), "dw");
  m->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 8}), "bn1");
  m->push(std::make_shared<Activation>(ActivationKind::hard_swish), "act1");
  m->push(std::make_shared<MaxPool2d>(PoolOptions{.kernel = 2, .stride = 2}), "pool");
  m->push(std::make_shared<GlobalAvgPool>(), "gap");
  m->push(std::make_shared<Flatten>(), "flatten");
  m->push(std::make_shared<Dense>(DenseOptions{.in = 8, .out = 5, .seed = 3}), "dense");
  return m;
}

}  // namespace bonsai::testing
