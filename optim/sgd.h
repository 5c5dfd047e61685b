// SGD with momentum (optionally Nesterov) and L2 weight decay on chosen
// roles. State is keyed by parameter name, never by position.
//
//   optim::Sgd opt(model.named_parameters(), {.momentum = 0.9f, .weight_decay = 5e-4f});
//   loss.backward();
//   opt.step(learning_rate);   // then model.zero_grad()
#pragma once

#include <map>
#include <string>
#include <vector>

#include "layers/module.h"

namespace bonsai::optim {

struct SgdOptions {
  float momentum = 0.9f;
  bool nesterov = false;
  // L2 decay added to the gradient of kernels (conv, dense, and depthwise if
  // decay_depthwise), as the Model Garden applies it; never to BN or biases.
  float weight_decay = 0.0f;
  bool decay_depthwise = false;
};

class Sgd {
 public:
  Sgd(std::vector<NamedParam> params, const SgdOptions& o);
  // v = momentum*v + g;  w -= lr * (nesterov ? g + momentum*v : v)
  void step(float lr);
  const std::map<std::string, Tensor>& velocity() const { return velocity_; }

 private:
  std::vector<NamedParam> params_;
  SgdOptions opt_;
  std::map<std::string, Tensor> velocity_;
};

}  // namespace bonsai::optim
