#include "core/op_profile.h"

#include <chrono>

namespace bonsai {

namespace {
thread_local OpProfile* g_active = nullptr;
}  // namespace

OpProfile::OpProfile() : previous_(g_active) { g_active = this; }
OpProfile::~OpProfile() { g_active = previous_; }

OpProfile* OpProfile::active() { return g_active; }

double OpProfile::now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void OpProfile::mark() {
  last_ = now();
  armed_ = true;
}

void OpProfile::add(OpStats& stats, std::string_view op, double seconds) {
  auto it = stats.find(op);
  if (it == stats.end()) it = stats.emplace(std::string(op), OpStat{}).first;
  it->second.seconds += seconds;
  ++it->second.calls;
}

void OpProfile::on_record(std::string_view op) {
  if (!armed_) return;
  double t = now();
  add(forward_, op, t - last_);
  last_ = t;
}

void OpProfile::on_backward(std::string_view op, double seconds) { add(backward_, op, seconds); }

}  // namespace bonsai
