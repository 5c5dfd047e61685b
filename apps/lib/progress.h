// A one-line progress display for long loops: step, loss, learning rate,
// images/s, ETA.
// Redraws in place on a terminal; prints a line every `every` steps otherwise
// (logs, CI).
//
//   Progress bar("train", total_steps);
//   bar.update(step, loss, images_in_step);
#pragma once

#include <chrono>
#include <string>

namespace bonsai::apps {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t every = 100);
  // lr < 0: not shown.
  void update(int64_t step, float loss, int64_t images, float lr = -1.f);
  void finish();
  double elapsed_s() const;

 private:
  std::string label_;
  int64_t total_, every_;
  bool tty_;
  int64_t images_ = 0;
  double smoothed_loss_ = 0.0;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace bonsai::apps
