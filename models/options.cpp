#include "models/options.h"

namespace bonsai::models {

OptionReader::OptionReader(const nlohmann::json& options, std::string context)
    : options_(options.is_null() ? nlohmann::json::object() : options), context_(std::move(context)) {
  BONSAI_CHECK(options_.is_object(), context_ + ": options must be a JSON object, got " + options_.dump());
}

void OptionReader::finish() const {
  std::string unknown, known;
  for (const auto& [k, v] : options_.items())
    if (!used_.count(k)) unknown += (unknown.empty() ? "" : ", ") + k;
  for (const auto& k : used_) known += (known.empty() ? "" : ", ") + k;
  BONSAI_CHECK(unknown.empty(), context_ + ": unknown option(s) " + unknown + "; known: " + known);
}

const char* padding_style_name(PaddingStyle p) {
  switch (p) {
    case PaddingStyle::tf_same: return "tf_same";
    case PaddingStyle::symmetric: return "symmetric";
    case PaddingStyle::valid: return "valid";
  }
  return "?";
}

CommonOptions read_common(OptionReader& r) {
  CommonOptions c;
  std::string pad = r.get<std::string>("padding_style", "tf_same");
  BONSAI_CHECK(pad == "tf_same" || pad == "symmetric",
               "option 'padding_style' must be \"tf_same\" or \"symmetric\", got \"" + pad + "\"");
  c.padding = pad == "tf_same" ? PaddingStyle::tf_same : PaddingStyle::symmetric;
  c.bn_momentum = r.get("bn_momentum", c.bn_momentum);
  c.bn_epsilon = r.get("bn_epsilon", c.bn_epsilon);
  c.seed = r.get("seed", c.seed);
  return c;
}

}  // namespace bonsai::models
