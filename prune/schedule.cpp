#include "prune/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace bonsai::prune {

Schedule::Schedule(bool polynomial, const ScheduleOptions& o) : polynomial_(polynomial), o_(o) {
  auto in01 = [](double s) { return s >= 0.0 && s < 1.0; };
  BONSAI_CHECK(in01(o.initial_sparsity) && in01(o.final_sparsity),
               "pruning schedule: sparsities must be in [0, 1), got initial " + std::to_string(o.initial_sparsity) +
                   ", final " + std::to_string(o.final_sparsity));
  BONSAI_CHECK(o.frequency > 0, "pruning schedule: frequency must be positive, got " + std::to_string(o.frequency));
  BONSAI_CHECK(o.begin_step >= 0, "pruning schedule: begin_step must be >= 0");
  BONSAI_CHECK(!polynomial || o.end_step > o.begin_step,
               "PolynomialDecay needs end_step > begin_step, got " + std::to_string(o.begin_step) + ".." +
                   std::to_string(o.end_step));
  BONSAI_CHECK(o.end_step == -1 || o.end_step >= o.begin_step, "pruning schedule: end_step before begin_step");
}

Schedule Schedule::polynomial_decay(const ScheduleOptions& o) { return Schedule(true, o); }
Schedule Schedule::constant_sparsity(const ScheduleOptions& o) { return Schedule(false, o); }

Schedule Schedule::by_name(const std::string& name, const ScheduleOptions& o) {
  if (name == "PolynomialDecay") return polynomial_decay(o);
  if (name == "ConstantSparsity") return constant_sparsity(o);
  BONSAI_CHECK(false, "unknown pruning schedule '" + name + "' (PolynomialDecay, ConstantSparsity)");
  return constant_sparsity(o);
}

double Schedule::sparsity(int64_t step) const {
  if (!polynomial_) return o_.final_sparsity;
  const double p = std::clamp(static_cast<double>(step - o_.begin_step) / static_cast<double>(o_.end_step - o_.begin_step),
                              0.0, 1.0);
  return o_.final_sparsity + (o_.initial_sparsity - o_.final_sparsity) * std::pow(1.0 - p, o_.power);
}

bool Schedule::should_update(int64_t step) const {
  return step >= o_.begin_step && (o_.end_step == -1 || step <= o_.end_step) &&
         (step - o_.begin_step) % o_.frequency == 0;
}

}  // namespace bonsai::prune
