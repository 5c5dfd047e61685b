// Optimisers with the Model Garden's semantics, state keyed by parameter name.
//
//   optim::Sgd opt(model.named_parameters(), {.momentum = 0.9f, .nesterov = true},
//                  {.weight_decay = 4e-5f});
//   loss.backward();
//   opt.step(schedule(step));   // clip (optional) → L2 → update
//   model.zero_grad();
//
// Common behaviour (OptimizerOptions):
//  - L2 as the Model Garden applies it: the task adds l2(wd/2)·Σw² over
//    kernels, i.e. wd·w is added to the gradient of conv and dense kernels
//    (depthwise kernels only with decay_depthwise), never to BN or biases.
//  - clip_global_norm > 0 rescales all gradients together so their global L2
//    norm is at most that value (tf.clip_by_global_norm), before L2 is added.
// Slots (momentum, mean square, ...) are zero-initialised and saved by name
// ("<param>/<slot>") with state(), restored with load_state().
#pragma once

#include <map>
#include <string>
#include <vector>

#include "layers/module.h"
#include "layers/state.h"

namespace bonsai::optim {

struct OptimizerOptions {
  float weight_decay = 0.0f;
  bool decay_depthwise = false;
  float clip_global_norm = 0.0f;  // 0 = off
};

class Optimizer {
 public:
  Optimizer(std::vector<NamedParam> params, const OptimizerOptions& o);
  virtual ~Optimizer() = default;
  // One update with learning rate `lr` from the parameters' current .grad.
  void step(float lr);
  int64_t iterations() const { return iterations_; }
  // Slots by "<param>/<slot>" plus "iterations"; copies.
  StateDict state() const;
  // Restores what state() saved; names and shapes must match exactly.
  void load_state(const StateDict& s);
  // Global L2 norm of the gradients before the last step's clipping (0 when
  // clipping is off: it is not computed then).
  float last_grad_norm() const { return last_norm_; }

 protected:
  // Update one parameter in place: w[n] with gradient g[n] (L2 already added).
  virtual void update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) = 0;
  float* slot(const std::string& param, const std::string& slot_name);

 private:
  std::vector<NamedParam> params_;
  OptimizerOptions opt_;
  std::map<std::string, Tensor> slots_;
  int64_t iterations_ = 0;
  float last_norm_ = 0.f;
};

struct SgdOptions {
  float momentum = 0.9f;
  bool nesterov = false;
};

// v = momentum·v + g;  w -= lr·(nesterov ? g + momentum·v : v)
// (PyTorch's formulation; with a constant learning rate it equals Keras's.)
class Sgd : public Optimizer {
 public:
  Sgd(std::vector<NamedParam> params, const SgdOptions& s, const OptimizerOptions& o = {});

 protected:
  void update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) override;

 private:
  SgdOptions s_;
};

struct RmsPropOptions {
  float rho = 0.9f;
  float momentum = 0.9f;
  float epsilon = 1e-3f;
};

// TF's ApplyRMSProp (what Keras RMSprop runs):
//   ms = rho·ms + (1-rho)·g²;  mom = momentum·mom + lr·g/√(ms+ε);  w -= mom
// with ms starting at zero (Keras v2; TF1's optimizer started it at one).
class RmsProp : public Optimizer {
 public:
  RmsProp(std::vector<NamedParam> params, const RmsPropOptions& r, const OptimizerOptions& o = {});

 protected:
  void update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) override;

 private:
  RmsPropOptions r_;
};

struct AdamOptions {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-7f;        // Keras default
};

// m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²;  t = iterations
// w -= lr·√(1-β2ᵗ)/(1-β1ᵗ) · m/(√v + ε)   (Keras's form)
class Adam : public Optimizer {
 public:
  Adam(std::vector<NamedParam> params, const AdamOptions& a, const OptimizerOptions& o = {});

 protected:
  void update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) override;
  AdamOptions a_;
  float decoupled_decay_ = 0.f;
};

// AdamW: Adam plus decoupled weight decay, w -= lr·decay·w, on conv and
// dense kernels only (BN parameters and biases are excluded, as vision
// configs of the Model Garden's AdamWeightDecay do). Use it with
// OptimizerOptions::weight_decay = 0 unless L2 is wanted as well.
class AdamW : public Adam {
 public:
  AdamW(std::vector<NamedParam> params, const AdamOptions& a, float decay, const OptimizerOptions& o = {});
};

}  // namespace bonsai::optim
