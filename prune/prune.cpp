#include "prune/prune.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "core/check.h"

namespace bonsai::prune {

Granularity granularity_by_name(const std::string& name) {
  if (name == "unstructured") return Granularity::unstructured;
  if (name == "block") return Granularity::block;
  if (name == "n_m") return Granularity::n_m;
  BONSAI_CHECK(false, "unknown pruning granularity '" + name + "' (unstructured, block, n_m)");
  return Granularity::unstructured;
}

int64_t PrunedWeight::zeros() const {
  const uint8_t* m = mask.data<uint8_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < mask.numel(); ++i) n += m[i] == 0;
  return n;
}

double PrunedWeight::sparsity() const {
  return mask.numel() ? static_cast<double>(zeros()) / mask.numel() : 0.0;
}

namespace {

bool prunable_role(ParamRole r, bool depthwise) {
  return r == ParamRole::conv_kernel || r == ParamRole::dense_kernel || (depthwise && r == ParamRole::depthwise_kernel);
}

bool any_glob(const std::vector<std::string>& globs, const std::string& name) {
  for (const auto& g : globs)
    if (glob_match(g, name)) return true;
  return false;
}

// Collects (full name, tensor) of the weights to prune below `m`.
void collect(const Module& m, const std::string& prefix, const PruneConfig& c,
             std::vector<std::pair<std::string, Tensor>>& out) {
  const auto params = m.named_parameters();
  if (auto declared = m.prunable_weights()) {
    for (const std::string& rel : *declared) {
      auto it = std::find_if(params.begin(), params.end(), [&](const NamedParam& p) { return p.name == rel; });
      BONSAI_CHECK(it != params.end(), m.type_name() + " '" + prefix + "' declares prunable weight '" + rel +
                                           "', which is not one of its parameters");
      out.emplace_back(prefix.empty() ? rel : prefix + "." + rel, it->tensor);
    }
    return;
  }
  for (const NamedParam& p : params)
    if (p.name.find('.') == std::string::npos && prunable_role(p.role, c.prune_depthwise))
      out.emplace_back(prefix.empty() ? p.name : prefix + "." + p.name, p.tensor);
  for (const auto& [name, child] : m.children()) collect(*child, prefix.empty() ? name : prefix + "." + name, c, out);
}

// The smallest-first order of `score` (ties: lower index first), first k.
std::vector<int64_t> smallest(const std::vector<float>& score, const std::vector<int64_t>& among, int64_t k) {
  std::vector<int64_t> idx = among;
  k = std::min<int64_t>(k, static_cast<int64_t>(idx.size()));
  auto less = [&](int64_t a, int64_t b) { return score[a] < score[b] || (score[a] == score[b] && a < b); };
  std::nth_element(idx.begin(), idx.begin() + k, idx.end(), less);
  idx.resize(k);
  return idx;
}

}  // namespace

Pruner::Pruner(Module& model, const PruneConfig& config) : config_(config) {
  BONSAI_CHECK(config.block_h >= 1 && config.block_w >= 1, "pruning: block sizes must be positive");
  BONSAI_CHECK(config.m >= 2 && config.n >= 1 && config.n < config.m,
               "pruning: N:M needs 1 <= N < M, got " + std::to_string(config.n) + ":" + std::to_string(config.m));
  std::vector<std::pair<std::string, Tensor>> found;
  collect(model, "", config, found);
  for (auto& [name, w] : found) {
    if (any_glob(config.exclude, name)) continue;
    BONSAI_CHECK(w.dtype() == DType::f32, "pruning: weight " + name + " is not float");
    PrunedWeight p{name, w, Tensor::empty(w.shape(), DType::u8), config.schedule.options().final_sparsity, 0.0f};
    std::fill(p.mask.data<uint8_t>(), p.mask.data<uint8_t>() + p.mask.numel(), uint8_t{1});
    for (const auto& [glob, target] : config.overrides) {
      BONSAI_CHECK(target >= 0 && target < 1, "pruning override for '" + glob + "' must be in [0, 1)");
      if (glob_match(glob, name)) p.final_sparsity = target;
    }
    if (config.granularity == Granularity::n_m)
      BONSAI_CHECK(w.rank() >= 2, "pruning: N:M needs a kernel with an input axis, " + name + " is " + w.shape_str());
    weights_.push_back(std::move(p));
  }
  BONSAI_CHECK(!weights_.empty(), "pruning: no prunable weights in " + model.type_name() +
                                      " (conv/dense kernels, or declared by prunable_weights())");
}

Pruner Pruner::with_fixed_masks(Module& model, const StateDict& state) {
  Pruner p;
  p.fixed_ = true;
  const auto params = model.named_parameters();
  for (const NamedParam& np : params) {
    auto it = state.find(np.name + ".mask");
    if (it == state.end()) continue;
    BONSAI_CHECK(it->second.shape() == np.tensor.shape() && it->second.dtype() == DType::u8,
                 "pruning state: mask of " + np.name + " is " + it->second.shape_str() + ", the weight " +
                     np.tensor.shape_str());
    PrunedWeight w{np.name, np.tensor, it->second.clone(), 0.0, 0.0f};
    w.final_sparsity = w.sparsity();
    auto t = state.find(np.name + ".threshold");
    if (t != state.end()) w.threshold = t->second.item();
    p.weights_.push_back(std::move(w));
  }
  BONSAI_CHECK(!p.weights_.empty(), "pruning state: no mask matches a parameter of the model");
  return p;
}

bool Pruner::step(int64_t step) {
  const bool update = !fixed_ && config_.schedule.should_update(step);
  if (update) update_masks(config_.schedule.sparsity(step));
  apply();
  return update;
}

void Pruner::update_masks(double sparsity) {
  const double final_target = config_.schedule.options().final_sparsity;
  for (PrunedWeight& p : weights_) {
    // An override scales the schedule to its own target.
    const double s = final_target > 0 ? sparsity * p.final_sparsity / final_target : 0.0;
    const int64_t n = p.weight.numel();
    const float* w = p.weight.data<float>();
    uint8_t* mask = p.mask.data<uint8_t>();
    std::vector<float> mag(n);
    for (int64_t i = 0; i < n; ++i) mag[i] = std::abs(w[i]);
    std::fill(mask, mask + n, uint8_t{1});
    p.threshold = 0.0f;
    if (config_.granularity == Granularity::block) {
      const int64_t cols = p.weight.dim(-1), rows = n / cols;
      const int64_t bh = config_.block_h, bw = config_.block_w;
      const int64_t tr = (rows + bh - 1) / bh, tc = (cols + bw - 1) / bw;
      std::vector<float> score(tr * tc, 0.0f);
      std::vector<int64_t> count(tr * tc, 0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          score[(r / bh) * tc + c / bw] += mag[r * cols + c];
          ++count[(r / bh) * tc + c / bw];
        }
      for (size_t t = 0; t < score.size(); ++t) score[t] /= static_cast<float>(count[t]);
      std::vector<int64_t> all(score.size());
      std::iota(all.begin(), all.end(), 0);
      for (int64_t t : smallest(score, all, std::llround(s * static_cast<double>(score.size())))) {
        p.threshold = std::max(p.threshold, score[t]);
        const int64_t r0 = (t / tc) * bh, c0 = (t % tc) * bw;
        for (int64_t r = r0; r < std::min(r0 + bh, rows); ++r)
          for (int64_t c = c0; c < std::min(c0 + bw, cols); ++c) mask[r * cols + c] = 0;
      }
      continue;
    }
    std::vector<int64_t> candidates;
    if (config_.granularity == Granularity::n_m) {
      // Input axis: second to last (HWIO, and [in, out] dense kernels).
      const int64_t out = p.weight.dim(-1), in = p.weight.dim(-2), outer = n / (in * out);
      const int m = config_.m, keep = config_.n;
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t c = 0; c < out; ++c)
          for (int64_t g = 0; g < in; g += m) {
            std::vector<int64_t> group;
            for (int64_t i = g; i < std::min<int64_t>(g + m, in); ++i) group.push_back((o * in + i) * out + c);
            const int64_t drop = static_cast<int64_t>(group.size()) - keep;
            if (drop <= 0) continue;
            for (int64_t e : smallest(mag, group, drop)) candidates.push_back(e);
          }
    } else {
      candidates.resize(n);
      std::iota(candidates.begin(), candidates.end(), 0);
    }
    for (int64_t e : smallest(mag, candidates, std::llround(s * static_cast<double>(n)))) {
      mask[e] = 0;
      p.threshold = std::max(p.threshold, mag[e]);
    }
  }
}

void Pruner::apply() const {
  for (const PrunedWeight& p : weights_) {
    float* w = p.weight.data<float>();
    const uint8_t* m = p.mask.data<uint8_t>();
    for (int64_t i = 0; i < p.weight.numel(); ++i) w[i] = m[i] ? w[i] : 0.0f;
  }
}

double Pruner::sparsity() const {
  int64_t zeros = 0, total = 0;
  for (const PrunedWeight& p : weights_) {
    zeros += p.zeros();
    total += p.mask.numel();
  }
  return total ? static_cast<double>(zeros) / total : 0.0;
}

StateDict Pruner::state() const {
  StateDict s;
  for (const PrunedWeight& p : weights_) {
    s[p.name + ".mask"] = p.mask;
    s[p.name + ".threshold"] = Tensor::from({1}, {p.threshold});
  }
  return s;
}

void Pruner::load_state(const StateDict& state) {
  for (PrunedWeight& p : weights_) {
    auto m = state.find(p.name + ".mask");
    BONSAI_CHECK(m != state.end(), "pruning state has no mask for " + p.name);
    BONSAI_CHECK(m->second.shape() == p.mask.shape() && m->second.dtype() == DType::u8,
                 "pruning state: mask of " + p.name + " is " + m->second.shape_str() + ", expected " + p.mask.shape_str());
    p.mask.copy_from(m->second);
    auto t = state.find(p.name + ".threshold");
    if (t != state.end()) p.threshold = t->second.item();
  }
}

std::string Pruner::table() const {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-52s %-18s %10s %7s %9s %10s\n", "weight", "shape", "elements", "target",
                "sparsity", "threshold");
  out << line;
  for (const PrunedWeight& p : weights_) {
    std::snprintf(line, sizeof line, "%-52s %-18s %10lld %6.1f%% %8.2f%% %10.3g\n", p.name.c_str(),
                  p.weight.shape_str().c_str(), static_cast<long long>(p.weight.numel()), 100.0 * p.final_sparsity,
                  100.0 * p.sparsity(), p.threshold);
    out << line;
  }
  std::snprintf(line, sizeof line, "%d weights, overall sparsity %.2f%%\n", static_cast<int>(weights_.size()),
                100.0 * sparsity());
  out << line;
  return out.str();
}

double kernel_sparsity(const Module& model) {
  int64_t zeros = 0, total = 0;
  for (const NamedParam& p : model.named_parameters()) {
    if (p.role != ParamRole::conv_kernel && p.role != ParamRole::dense_kernel && p.role != ParamRole::depthwise_kernel)
      continue;
    const float* w = p.tensor.data<float>();
    for (int64_t i = 0; i < p.tensor.numel(); ++i) zeros += w[i] == 0.0f;
    total += p.tensor.numel();
  }
  return total ? static_cast<double>(zeros) / total : 0.0;
}

}  // namespace bonsai::prune
