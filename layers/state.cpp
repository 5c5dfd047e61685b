#include "layers/state.h"

#include <algorithm>
#include <cstring>

#include "core/io/safetensors.h"

namespace bonsai {

StateDict state_dict(const Module& m) {
  StateDict s;
  for (const NamedParam& p : m.named_parameters()) s[p.name] = p.tensor;
  for (const auto& [name, t] : m.named_buffers()) s[name] = t;
  return s;
}

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative '*' matching with backtracking to the last star.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

namespace {
bool selected(const std::string& name, const LoadOptions& o) {
  bool in = o.include.empty() ||
            std::any_of(o.include.begin(), o.include.end(), [&](auto& g) { return glob_match(g, name); });
  bool out = std::any_of(o.exclude.begin(), o.exclude.end(), [&](auto& g) { return glob_match(g, name); });
  return in && !out;
}

std::string list(const std::vector<std::string>& v, size_t max = 20) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += ", ... (" + std::to_string(v.size() - max) + " more)";
  return s;
}
}  // namespace

LoadReport load_state(Module& m, const StateDict& source, const LoadOptions& o) {
  LoadReport r;
  StateDict target = state_dict(m);
  std::vector<std::pair<Tensor, Tensor>> copies;
  for (const auto& [name, t] : target) {
    if (!selected(name, o)) {
      r.skipped.push_back(name);
      continue;
    }
    auto it = source.find(name);
    if (it == source.end()) {
      r.missing.push_back(name);
      continue;
    }
    if (it->second.shape() != t.shape() || it->second.dtype() != t.dtype()) {
      r.mismatched.push_back(name + " (model " + t.shape_str() + " " + dtype_name(t.dtype()) +
                             ", source " + it->second.shape_str() + " " + dtype_name(it->second.dtype()) + ")");
      continue;
    }
    copies.emplace_back(t, it->second);
    r.loaded.push_back(name);
  }
  for (const auto& [name, t] : source)
    if (!target.count(name) && selected(name, o)) r.unexpected.push_back(name);
  if (o.strict) {
    std::string msg;
    if (!r.missing.empty()) msg += "\n  missing from the source: " + list(r.missing);
    if (!r.unexpected.empty()) msg += "\n  not in the model: " + list(r.unexpected);
    if (!r.mismatched.empty()) msg += "\n  shape or dtype mismatch: " + list(r.mismatched);
    BONSAI_CHECK(msg.empty(), "cannot load state strictly:" + msg);
  } else {
    // Shape mismatches are errors even when not strict: silently skipping a
    // tensor the user asked for would train from the wrong weights.
    BONSAI_CHECK(r.mismatched.empty(), "cannot load state: shape or dtype mismatch: " + list(r.mismatched));
  }
  // Copy only once everything checked out: a failed load changes nothing.
  for (auto& [dst, src] : copies) std::memcpy(dst.raw(), src.raw(), dst.nbytes());
  return r;
}

StateDict with_prefix(const StateDict& s, const std::string& prefix, bool strip) {
  StateDict out;
  for (const auto& [k, t] : s)
    if (k.rfind(prefix, 0) == 0) out[strip ? k.substr(prefix.size()) : k] = t;
  return out;
}

StateDict model_weights(const StateDict& checkpoint) {
  StateDict m = with_prefix(checkpoint, "model/", true);
  return m.empty() ? checkpoint : m;
}

void save_checkpoint(const std::string& path, const Module& m, std::map<std::string, std::string> metadata) {
  metadata["bonsai_version"] = "0.1.0";
  io::save_safetensors(path, state_dict(m), metadata, {.sparse = true});  // pruned kernels stored sparsely
}

}  // namespace bonsai
