// Exponential moving average of the weights, for evaluation (the Model
// Garden's ExponentialMovingAverage with dynamic decay):
//   decay_t = min(average_decay, (1 + t)/(10 + t));  shadow = decay_t·shadow + (1-decay_t)·w
//
//   optim::Ema ema(model.named_parameters(), {.average_decay = 0.9999});
//   ... opt.step(lr); ema.update(opt.iterations());
//   { auto swap = ema.swap_in(); evaluate(model); }   // weights restored at scope end
#pragma once

#include <map>
#include <string>
#include <vector>

#include "layers/module.h"
#include "layers/state.h"

namespace bonsai::optim {

struct EmaOptions {
  double average_decay = 0.9999;
  bool dynamic_decay = true;
};

class Ema {
 public:
  Ema(std::vector<NamedParam> params, const EmaOptions& o);
  void update(int64_t step);
  StateDict state() const;  // "ema/<param>" copies
  void load_state(const StateDict& s);

  // While alive, the model holds the averaged weights; the trained weights
  // come back when it is destroyed.
  class Swap {
   public:
    explicit Swap(Ema& e);
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    Ema& e_;
  };
  Swap swap_in() { return Swap(*this); }

 private:
  void swap_all();
  std::vector<NamedParam> params_;
  EmaOptions o_;
  std::map<std::string, Tensor> shadow_;
};

}  // namespace bonsai::optim
