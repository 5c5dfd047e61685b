// Learning-rate schedules as the Model Garden configures them (Keras
// semantics), each optionally preceded by a linear warmup.
//
//   auto lr = optim::make_schedule({.type = ScheduleType::cosine, .initial_learning_rate = 0.1,
//                                   .decay_steps = 10000, .warmup_steps = 500});
//   float rate = lr(step);    // step = optimiser iterations before this update
//
// Definitions (step s, after any offset):
//   constant     lr
//   stepwise     values[i] where i = number of boundaries b with s > b
//   exponential  lr · rate^(s/decay_steps)   (floor of the exponent if staircase)
//   cosine       lr · ((1-α)·½(1+cos(π·min(s,D)/D)) + α)
//   polynomial   (lr-end)·(1 - min(s,D)/D)^power + end
// Linear warmup (the Model Garden's LinearWarmup): for s < W,
//   warmup_lr + s/W · (schedule(W) - warmup_lr); from W on, schedule(s).
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace bonsai::optim {

enum class ScheduleType { constant, stepwise, exponential, cosine, polynomial };

struct ScheduleOptions {
  ScheduleType type = ScheduleType::constant;
  double initial_learning_rate = 0.1;
  // stepwise
  std::vector<double> boundaries;  // strictly increasing steps
  std::vector<double> values;      // boundaries.size() + 1 rates
  // exponential / cosine / polynomial
  double decay_steps = 1.0;
  double decay_rate = 0.96;
  bool staircase = false;
  double alpha = 0.0;                  // cosine floor, as a fraction of the initial rate
  double end_learning_rate = 0.0;      // polynomial
  double power = 1.0;                  // polynomial
  double offset = 0.0;                 // decay(s - offset)
  // warmup
  double warmup_steps = 0.0;
  double warmup_learning_rate = 0.0;
};

using Schedule = std::function<double(int64_t step)>;

Schedule make_schedule(const ScheduleOptions& o);
ScheduleType schedule_type_from_name(const std::string& name);  // "constant", "stepwise", ...

}  // namespace bonsai::optim
