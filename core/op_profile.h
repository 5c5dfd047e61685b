// Op profiling: wall time per autograd op name, forward and backward, so a
// training step can be broken down by op type (`bonsai bench train --profile`).
//
//   OpProfile prof;                 // profiling on for this thread, until prof dies
//   prof.mark();                    // forward intervals start here
//   Tensor loss = ops::softmax_cross_entropy(model->forward(x), labels);
//   loss.backward();
//   for (const auto& [op, stat] : prof.forward()) ...  // seconds and calls per op name
//
// Forward: every op computes its output and then calls record(), so the wall
// time since the previous record() (or mark()) is attributed to the op that
// records; code between two ops (module bookkeeping, views) goes to the op
// after it. Only ops recorded in grad mode after a mark() count: backward
// disarms the forward clock (its closures run under NoGrad, as optimiser
// updates do), and the next mark() re-arms it.
// Backward: each node's closure call in run_backward is timed under the node's
// name; the engine's own work (summing gradients, ordering, leaf hooks) is
// outside the closures and not counted here.
//
// With OpenMP the wall time is the right measure: ops run one at a time, each
// with its threads inside. Off (no OpProfile alive on the thread) autograd
// pays one thread-local load per op.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace bonsai {

struct OpStat {
  double seconds = 0;
  int64_t calls = 0;
};

using OpStats = std::map<std::string, OpStat, std::less<>>;

class OpProfile {
 public:
  OpProfile();   // becomes this thread's active profile (an outer one is restored after)
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  // Starts (re-arms) forward timing now: the next recorded op gets the time
  // from here.
  void mark();

  const OpStats& forward() const { return forward_; }
  const OpStats& backward() const { return backward_; }

  // The active profile of this thread, or nullptr (profiling off).
  static OpProfile* active();

  // Called by autograd: an op recorded in grad mode; a closure run in backward;
  // backward started (disarms forward timing).
  void on_record(std::string_view op);
  void on_backward(std::string_view op, double seconds);
  void on_backward_start() { armed_ = false; }

  static double now();  // steady clock, seconds

 private:
  static void add(OpStats& stats, std::string_view op, double seconds);

  OpStats forward_, backward_;
  double last_ = 0;
  bool armed_ = false;
  OpProfile* previous_;
};

}  // namespace bonsai
