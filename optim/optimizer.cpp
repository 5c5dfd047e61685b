#include "optim/optimizer.h"

#include <cmath>
#include <cstring>

#include "core/autograd.h"

namespace bonsai::optim {

namespace {
bool is_decayed_kernel(ParamRole r, bool depthwise) {
  return r == ParamRole::conv_kernel || r == ParamRole::dense_kernel ||
         (depthwise && r == ParamRole::depthwise_kernel);
}
}  // namespace

Optimizer::Optimizer(std::vector<NamedParam> params, const OptimizerOptions& o)
    : params_(std::move(params)), opt_(o) {
  for (const NamedParam& p : params_)
    BONSAI_CHECK(p.tensor.dtype() == DType::f32, "optimiser: parameter " + p.name + " is not f32");
}

float* Optimizer::slot(const std::string& param, const std::string& slot_name) {
  std::string key = param + "/" + slot_name;
  auto it = slots_.find(key);
  if (it == slots_.end()) {
    int64_t n = 0;
    for (const NamedParam& p : params_)
      if (p.name == param) n = p.tensor.numel();
    it = slots_.emplace(key, Tensor::zeros({n})).first;
  }
  return it->second.data<float>();
}

void Optimizer::step(float lr) {
  NoGrad no_grad;
  ++iterations_;
  // Global norm over every gradient present (only needed for clipping).
  double sq = 0.0;
  if (opt_.clip_global_norm > 0.f) {
    for (const NamedParam& p : params_) {
      Tensor g = p.tensor.grad();
      if (!g.defined()) continue;
      const float* pg = g.data<float>();
      for (int64_t i = 0; i < g.numel(); ++i) sq += static_cast<double>(pg[i]) * pg[i];
    }
  }
  last_norm_ = static_cast<float>(std::sqrt(sq));
  const float clip = opt_.clip_global_norm > 0.f && last_norm_ > opt_.clip_global_norm
                         ? opt_.clip_global_norm / last_norm_
                         : 1.f;
  std::vector<float> buf;
  for (const NamedParam& p : params_) {
    Tensor g = p.tensor.grad();
    if (!g.defined()) continue;
    const int64_t n = p.tensor.numel();
    float* w = p.tensor.data<float>();
    const float* pg = g.data<float>();
    const float wd = opt_.weight_decay > 0.f && is_decayed_kernel(p.role, opt_.decay_depthwise)
                         ? opt_.weight_decay
                         : 0.f;
    buf.resize(n);
    for (int64_t i = 0; i < n; ++i) buf[i] = pg[i] * clip + wd * w[i];
    update(p, w, buf.data(), n, lr);
  }
}

StateDict Optimizer::state() const {
  StateDict s;
  for (const auto& [k, t] : slots_) s[k] = t.clone();
  Tensor it = Tensor::empty({1}, DType::s64);
  it.data<int64_t>()[0] = iterations_;
  s["iterations"] = it;
  return s;
}

void Optimizer::load_state(const StateDict& s) {
  auto it = s.find("iterations");
  BONSAI_CHECK(it != s.end() && it->second.dtype() == DType::s64 && it->second.numel() == 1,
               "optimiser state has no 'iterations' counter");
  std::map<std::string, Tensor> slots;
  for (const auto& [k, t] : s) {
    if (k == "iterations") continue;
    auto slash = k.rfind('/');
    BONSAI_CHECK(slash != std::string::npos, "optimiser state: malformed slot name '" + k + "'");
    std::string param = k.substr(0, slash);
    const NamedParam* found = nullptr;
    for (const NamedParam& p : params_)
      if (p.name == param) found = &p;
    BONSAI_CHECK(found, "optimiser state: slot '" + k + "' for unknown parameter '" + param + "'");
    BONSAI_CHECK(t.dtype() == DType::f32 && t.numel() == found->tensor.numel(),
                 "optimiser state: slot '" + k + "' has shape " + t.shape_str() + ", parameter " +
                     found->tensor.shape_str());
    slots[k] = t.clone().view({t.numel()});
  }
  slots_ = std::move(slots);
  iterations_ = it->second.data<int64_t>()[0];
}

Sgd::Sgd(std::vector<NamedParam> params, const SgdOptions& s, const OptimizerOptions& o)
    : Optimizer(std::move(params), o), s_(s) {}

void Sgd::update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) {
  const float m = s_.momentum;
  if (m == 0.f) {
    for (int64_t i = 0; i < n; ++i) w[i] -= lr * g[i];
    return;
  }
  float* v = slot(p.name, "momentum");
  const bool nesterov = s_.nesterov;
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    v[i] = m * v[i] + g[i];
    w[i] -= lr * (nesterov ? g[i] + m * v[i] : v[i]);
  }
}

RmsProp::RmsProp(std::vector<NamedParam> params, const RmsPropOptions& r, const OptimizerOptions& o)
    : Optimizer(std::move(params), o), r_(r) {}

void RmsProp::update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) {
  float* ms = slot(p.name, "rms");
  float* mom = r_.momentum > 0.f ? slot(p.name, "momentum") : nullptr;
  const float rho = r_.rho, m = r_.momentum, eps = r_.epsilon;
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    ms[i] = rho * ms[i] + (1.f - rho) * g[i] * g[i];
    float step = lr * g[i] / std::sqrt(ms[i] + eps);
    if (mom) {
      mom[i] = m * mom[i] + step;
      w[i] -= mom[i];
    } else {
      w[i] -= step;
    }
  }
}

Adam::Adam(std::vector<NamedParam> params, const AdamOptions& a, const OptimizerOptions& o)
    : Optimizer(std::move(params), o), a_(a) {}

void Adam::update(const NamedParam& p, float* w, const float* g, int64_t n, float lr) {
  float* m = slot(p.name, "m");
  float* v = slot(p.name, "v");
  const double t = static_cast<double>(iterations());
  const float b1 = a_.beta1, b2 = a_.beta2, eps = a_.epsilon;
  const float lr_t = static_cast<float>(lr * std::sqrt(1.0 - std::pow(b2, t)) / (1.0 - std::pow(b1, t)));
  const float decay = is_decayed_kernel(p.role, false) ? decoupled_decay_ : 0.f;
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + (1.f - b1) * g[i];
    v[i] = b2 * v[i] + (1.f - b2) * g[i] * g[i];
    w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps) + lr * decay * w[i];
  }
}

AdamW::AdamW(std::vector<NamedParam> params, const AdamOptions& a, float decay, const OptimizerOptions& o)
    : Adam(std::move(params), a, o) {
  decoupled_decay_ = decay;
}

}  // namespace bonsai::optim
