#include "apps/lib/progress.h"

#include <unistd.h>

#include <cstdio>

namespace bonsai::apps {

Progress::Progress(std::string label, int64_t total, int64_t every)
    : label_(std::move(label)), total_(total), every_(every), tty_(isatty(fileno(stdout))),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t step, float loss, int64_t images, float lr) {
  images_ += images;
  smoothed_loss_ = step <= 1 ? loss : 0.95 * smoothed_loss_ + 0.05 * loss;
  if (!tty_ && step % every_ != 0 && step != total_) return;
  double t = elapsed_s();
  double eta = step > 0 ? t / step * (total_ - step) : 0.0;
  char rate[32] = "";
  if (lr >= 0.f) std::snprintf(rate, sizeof rate, "  lr %.3g", lr);
  std::printf("%s%s step %lld/%lld  loss %.4f%s  %.0f images/s  elapsed %.0fs  ETA %.0fs%s",
              tty_ ? "\r" : "", label_.c_str(), static_cast<long long>(step),
              static_cast<long long>(total_), smoothed_loss_, rate, images_ / std::max(t, 1e-9), t, eta,
              tty_ ? "   " : "\n");
  std::fflush(stdout);
}

void Progress::finish() {
  if (tty_) std::printf("\n");
  std::fflush(stdout);
}

}  // namespace bonsai::apps
