#include "models/backbone.h"

namespace bonsai::models {

std::string Backbone::last_level(const std::map<std::string, Tensor>& eps) {
  BONSAI_CHECK(!eps.empty(), "backbone produced no endpoints");
  std::string best;
  for (const auto& [k, v] : eps) {
    if (k.find('/') != std::string::npos) continue;  // intermediate endpoints ("4/depthwise")
    if (best.empty() || std::stoi(k) > std::stoi(best)) best = k;
  }
  return best;
}

Tensor Backbone::forward(const Tensor& x) {
  auto eps = endpoints(x);
  return eps.at(last_level(eps));
}

}  // namespace bonsai::models
