// Reading model options from JSON, strictly: every key a builder does not
// read is an error naming the key and the model, and a wrong type names the
// key and what was expected.
//
//   OptionReader r(json_options, "mobilenet_v2");
//   float width = r.get("width_multiplier", 1.0f);
//   CommonOptions common = read_common(r);
//   r.finish();   // throws on keys nobody read
#pragma once

#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "layers/layers.h"

namespace bonsai::models {

class OptionReader {
 public:
  OptionReader(const nlohmann::json& options, std::string context);

  template <typename T>
  T get(const std::string& key, T fallback) {
    used_.insert(key);
    if (!options_.contains(key)) return fallback;
    try {
      return options_.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
      BONSAI_CHECK(false, context_ + ": option '" + key + "' has the wrong type: " +
                              options_.at(key).dump());
      return fallback;
    }
  }
  bool has(const std::string& key) const { return options_.contains(key); }
  // Throws if the options hold a key that no get() asked for.
  void finish() const;

 private:
  nlohmann::json options_;
  std::string context_;
  std::set<std::string> used_;
};

// Options every model accepts.
struct CommonOptions {
  PaddingStyle padding = PaddingStyle::tf_same;  // "padding_style": "tf_same" | "symmetric"
  float bn_momentum = 0.99f;                     // Keras semantics
  float bn_epsilon = 1e-3f;
  uint32_t seed = 0;                             // initialisation
};

CommonOptions read_common(OptionReader& r);
const char* padding_style_name(PaddingStyle p);

}  // namespace bonsai::models
