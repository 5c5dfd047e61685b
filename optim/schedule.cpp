#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace bonsai::optim {

ScheduleType schedule_type_from_name(const std::string& name) {
  if (name == "constant") return ScheduleType::constant;
  if (name == "stepwise") return ScheduleType::stepwise;
  if (name == "exponential") return ScheduleType::exponential;
  if (name == "cosine") return ScheduleType::cosine;
  if (name == "polynomial") return ScheduleType::polynomial;
  BONSAI_CHECK(false, "unknown learning rate type '" + name +
                          "'; known: constant, stepwise, exponential, cosine, polynomial");
  return ScheduleType::constant;
}

Schedule make_schedule(const ScheduleOptions& o) {
  if (o.type == ScheduleType::stepwise) {
    BONSAI_CHECK(o.values.size() == o.boundaries.size() + 1,
                 "stepwise learning rate needs one more value than boundaries (" +
                     std::to_string(o.values.size()) + " values, " + std::to_string(o.boundaries.size()) +
                     " boundaries)");
    for (size_t i = 1; i < o.boundaries.size(); ++i)
      BONSAI_CHECK(o.boundaries[i] > o.boundaries[i - 1], "stepwise boundaries must increase");
  }
  if (o.type != ScheduleType::constant && o.type != ScheduleType::stepwise)
    BONSAI_CHECK(o.decay_steps > 0, "learning rate decay_steps must be positive");
  Schedule decay = [o](int64_t step) -> double {
    const double s = std::max(0.0, static_cast<double>(step) - o.offset);
    const double lr = o.initial_learning_rate;
    switch (o.type) {
      case ScheduleType::constant: return lr;
      case ScheduleType::stepwise: {
        size_t i = 0;
        while (i < o.boundaries.size() && s > o.boundaries[i]) ++i;
        return o.values[i];
      }
      case ScheduleType::exponential: {
        double e = s / o.decay_steps;
        return lr * std::pow(o.decay_rate, o.staircase ? std::floor(e) : e);
      }
      case ScheduleType::cosine: {
        double t = std::min(s, o.decay_steps) / o.decay_steps;
        return lr * ((1.0 - o.alpha) * 0.5 * (1.0 + std::cos(M_PI * t)) + o.alpha);
      }
      case ScheduleType::polynomial: {
        double t = std::min(s, o.decay_steps) / o.decay_steps;
        return (lr - o.end_learning_rate) * std::pow(1.0 - t, o.power) + o.end_learning_rate;
      }
    }
    return lr;
  };
  if (o.warmup_steps <= 0) return decay;
  const double w = o.warmup_steps, w0 = o.warmup_learning_rate;
  const double w1 = decay(static_cast<int64_t>(w));
  return [decay, w, w0, w1](int64_t step) {
    return static_cast<double>(step) < w ? w0 + static_cast<double>(step) / w * (w1 - w0) : decay(step);
  };
}

}  // namespace bonsai::optim
