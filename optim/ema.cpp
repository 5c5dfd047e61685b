#include "optim/ema.h"

#include <algorithm>

namespace bonsai::optim {

Ema::Ema(std::vector<NamedParam> params, const EmaOptions& o) : params_(std::move(params)), o_(o) {
  for (const NamedParam& p : params_) shadow_[p.name] = p.tensor.detach().clone();
}

void Ema::update(int64_t step) {
  double d = o_.average_decay;
  if (o_.dynamic_decay) d = std::min(d, (1.0 + step) / (10.0 + step));
  const float decay = static_cast<float>(d);
  for (const NamedParam& p : params_) {
    float* s = shadow_.at(p.name).data<float>();
    const float* w = p.tensor.data<float>();
    for (int64_t i = 0; i < p.tensor.numel(); ++i) s[i] = decay * s[i] + (1.f - decay) * w[i];
  }
}

StateDict Ema::state() const {
  StateDict s;
  for (const auto& [k, t] : shadow_) s["ema/" + k] = t.clone();
  return s;
}

void Ema::load_state(const StateDict& s) {
  for (auto& [k, t] : shadow_) {
    auto it = s.find("ema/" + k);
    BONSAI_CHECK(it != s.end(), "EMA state has no entry for parameter '" + k + "'");
    t.copy_from(it->second);
  }
}

void Ema::swap_all() {
  for (const NamedParam& p : params_) {
    float* s = shadow_.at(p.name).data<float>();
    float* w = p.tensor.data<float>();
    std::swap_ranges(w, w + p.tensor.numel(), s);
  }
}

Ema::Swap::Swap(Ema& e) : e_(e) { e_.swap_all(); }
Ema::Swap::~Swap() { e_.swap_all(); }

}  // namespace bonsai::optim
