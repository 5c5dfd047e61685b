#include "models/registry.h"

#include <functional>
#include <map>

#include "core/io/safetensors.h"
#include "layers/layers.h"
#include "layers/state.h"
#include "models/deeplab.h"
#include "models/init.h"
#include "models/mobilenet.h"
#include "models/resnet.h"
#include "models/torchvision_import.h"

namespace bonsai::models {

namespace {

using Builder = std::function<std::shared_ptr<Module>(const nlohmann::json&)>;

const std::map<std::string, Builder>& table() {
  static const std::map<std::string, Builder> t = {
      {"resnet18", [](const nlohmann::json& o) { return build_resnet(18, o); }},
      {"resnet34", [](const nlohmann::json& o) { return build_resnet(34, o); }},
      {"resnet50", [](const nlohmann::json& o) { return build_resnet(50, o); }},
      {"resnet101", [](const nlohmann::json& o) { return build_resnet(101, o); }},
      {"resnet152", [](const nlohmann::json& o) { return build_resnet(152, o); }},
      {"mobilenet_v2", [](const nlohmann::json& o) { return build_mobilenet("mobilenet_v2", o); }},
      {"mobilenet_v3_large", [](const nlohmann::json& o) { return build_mobilenet("mobilenet_v3_large", o); }},
      {"mobilenet_v3_small", [](const nlohmann::json& o) { return build_mobilenet("mobilenet_v3_small", o); }},
      {"mobilenet_multi_avg", [](const nlohmann::json& o) { return build_mobilenet("mobilenet_multi_avg", o); }},
      {"deeplabv3_mobilenet_v2", [](const nlohmann::json& o) { return build_deeplab(false, o); }},
      {"deeplabv3plus_mobilenet_v2", [](const nlohmann::json& o) { return build_deeplab(true, o); }},
  };
  return t;
}

std::string known_names() {
  std::string s;
  for (const auto& [name, b] : table()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

}  // namespace

std::shared_ptr<Module> build(const std::string& name, const nlohmann::json& options) {
  auto it = table().find(name);
  BONSAI_CHECK(it != table().end(), "unknown model '" + name + "'; known: " + known_names());
  // kernel_initializer applies to every model, so it is handled here rather
  // than by each family's option reader.
  nlohmann::json family = options.is_null() ? nlohmann::json::object() : options;
  std::string init = "he_normal";
  if (family.is_object() && family.contains("kernel_initializer")) {
    BONSAI_CHECK(family["kernel_initializer"].is_string(), name + ": option 'kernel_initializer' must be a string");
    init = family["kernel_initializer"].get<std::string>();
    family.erase("kernel_initializer");
  }
  // So does use_sync_bn (the Model Garden's norm_activation.use_sync_bn):
  // every BatchNorm2d then takes its statistics over the ranks of
  // dist::world(), which is a single process unless dist::init() chose MPI.
  bool sync_bn = false;
  if (family.is_object() && family.contains("use_sync_bn")) {
    BONSAI_CHECK(family["use_sync_bn"].is_boolean(), name + ": option 'use_sync_bn' must be true or false");
    sync_bn = family["use_sync_bn"].get<bool>();
    family.erase("use_sync_bn");
  }
  auto model = it->second(family);
  reinitialize(*model, init, family.is_object() ? family.value("seed", 0u) : 0u);
  if (sync_bn) use_sync_batch_norm(*model, dist::world_ptr());
  return model;
}

std::vector<std::string> names() {
  std::vector<std::string> v;
  for (const auto& [name, b] : table()) v.push_back(name);
  return v;
}

int64_t reference_resolution(const std::string& name) {
  return name.rfind("deeplab", 0) == 0 ? 512 : 224;
}

ImportedModel import_torchvision(const std::string& name, const std::map<std::string, Tensor>& torch_state) {
  if (name.rfind("resnet", 0) == 0) {
    int depth = 0;
    try {
      depth = std::stoi(name.substr(6));
    } catch (const std::exception&) {
    }
    BONSAI_CHECK(depth == 18 || depth == 34 || depth == 50 || depth == 101 || depth == 152,
                 "cannot import torchvision model '" + name + "'");
    return import_torchvision_resnet(depth, torch_state);
  }
  BONSAI_CHECK(name == "mobilenet_v2" || name == "mobilenet_v3_large" || name == "mobilenet_v3_small",
               "cannot import torchvision model '" + name +
                   "'; importable: resnet18/34/50/101/152, mobilenet_v2, mobilenet_v3_large, "
                   "mobilenet_v3_small");
  return import_torchvision_mobilenet(name, torch_state);
}

LoadedModel load_checkpoint(const std::string& path) {
  io::SafetensorsFile f = io::read_safetensors(path);
  auto model_it = f.metadata.find("model");
  BONSAI_CHECK(model_it != f.metadata.end(),
               "checkpoint '" + path + "' has no 'model' in its metadata; was it written by bonsai?");
  LoadedModel m;
  m.name = model_it->second;
  auto opt_it = f.metadata.find("options");
  try {
    m.options = opt_it == f.metadata.end() ? nlohmann::json::object() : nlohmann::json::parse(opt_it->second);
  } catch (const nlohmann::json::exception& e) {
    BONSAI_CHECK(false, "checkpoint '" + path + "': metadata 'options' is not valid JSON: " + e.what());
  }
  m.module = build(m.name, m.options);
  try {
    load_state(*m.module, model_weights(f.tensors));
  } catch (const Error& e) {
    BONSAI_CHECK(false, "checkpoint '" + path + "': " + e.what());
  }
  return m;
}

void save_model_checkpoint(const std::string& path, const Module& m, const std::string& name,
                           const nlohmann::json& options) {
  save_checkpoint(path, m, {{"model", name}, {"options", options.dump()}});
}

}  // namespace bonsai::models
