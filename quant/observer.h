// Range observers: where an activation quantizer's [min, max] comes from
// during QAT.
//
//   quant::MovingAverageMinMax obs({.init = quant::RangeInit::first_batch, .freeze_step = 5000});
//   // in a quantizer module: register the state so checkpoints carry it
//   add_buffer("min", obs.min()); add_buffer("max", obs.max()); add_buffer("step", obs.step());
//   // forward:
//   if (is_training()) obs.observe(x);
//   Tensor y = quant::fake_quant(x, obs.min(), obs.max());
//
// MovingAverageMinMax is TFMOT's MovingAverageQuantizer range
// (quant_ops.MovingAvgQuantize): each training batch's range, forced to
// contain zero (min' = min(batch_min, 0), max' = max(batch_max, 0)), is folded
// into an exponential moving average without zero-debiasing,
//   min <- min - (min - min') * (1 - decay),   decay = 0.999,
// the variables starting at -6 / +6 (RangeInit::fixed). TFMOT quantizes the
// batch with the range *after* this update, and so does a caller that
// observes before quantizing.
// RangeInit::first_batch (bonsai's, as PyTorch's observers do) sets min/max
// to the first observed batch's range (still containing zero), then averages.
// freeze_step: after that many observed training steps the range stops
// updating (observe() only counts); -1 never freezes.
// Per channel (channels > 0): the reductions run over all axes but the last.
//
// The state lives in three f32 tensors (min, max [1] or [C]; step [1], exact
// to 2^24 steps) that the owning module registers as buffers, so they are
// saved, restored and skipped by name like any other state. Loading copies
// values into them, so the observer sees the loaded state.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace bonsai::quant {

enum class RangeInit { fixed, first_batch };

struct MovingAverageOptions {
  float decay = 0.999f;  // TFMOT ema_decay
  float init_min = -6.0f, init_max = 6.0f;
  RangeInit init = RangeInit::fixed;
  int64_t freeze_step = -1;  // stop updating after this many steps; -1: never
  int64_t channels = 0;      // 0: per tensor; C: per channel (last axis)
};

class MovingAverageMinMax {
 public:
  explicit MovingAverageMinMax(const MovingAverageOptions& o = {});

  // One training step: update the range from x (unless frozen), count it.
  void observe(const Tensor& x);

  const Tensor& min() const { return min_; }    // [1] or [C]
  const Tensor& max() const { return max_; }    // [1] or [C]
  const Tensor& step() const { return step_; }  // [1], steps observed so far
  int64_t steps() const;
  bool frozen() const;
  const MovingAverageOptions& options() const { return opt_; }

 private:
  MovingAverageOptions opt_;
  Tensor min_, max_, step_;
};

}  // namespace bonsai::quant
