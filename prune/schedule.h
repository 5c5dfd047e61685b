// Pruning schedules: the target sparsity at each training step, and whether
// the masks are recomputed at that step — TFMOT's PolynomialDecay and
// ConstantSparsity, as the Model Garden's `task.pruning` configures them.
//
//   prune::Schedule s = prune::Schedule::polynomial_decay(
//       {.initial_sparsity = 0.0, .final_sparsity = 0.8, .begin_step = 0, .end_step = 1000, .frequency = 100});
//   if (s.should_update(step)) masks.update(s.sparsity(step));
//
// PolynomialDecay: with p = clamp((step - begin) / (end - begin), 0, 1),
//   sparsity = final + (initial - final) * (1 - p)^power      (power 3)
// ConstantSparsity: sparsity = target.
// Both update when begin <= step, (step <= end or end == -1), and
// (step - begin) % frequency == 0.
#pragma once

#include <cstdint>
#include <string>

namespace bonsai::prune {

struct ScheduleOptions {
  double initial_sparsity = 0.0;  // polynomial decay only
  double final_sparsity = 0.5;    // the target of both
  int64_t begin_step = 0;
  int64_t end_step = -1;  // polynomial decay needs end > begin; constant: -1 = never stop
  int64_t frequency = 100;
  double power = 3.0;
};

class Schedule {
 public:
  static Schedule polynomial_decay(const ScheduleOptions& o);
  static Schedule constant_sparsity(const ScheduleOptions& o);
  // "PolynomialDecay" or "ConstantSparsity" (the Model Garden's names).
  static Schedule by_name(const std::string& name, const ScheduleOptions& o);

  double sparsity(int64_t step) const;
  bool should_update(int64_t step) const;
  const ScheduleOptions& options() const { return o_; }
  bool polynomial() const { return polynomial_; }

 private:
  Schedule(bool polynomial, const ScheduleOptions& o);
  bool polynomial_;
  ScheduleOptions o_;
};

}  // namespace bonsai::prune
