// The model registry: build any zoo model by name from JSON options.
//
//   auto model = models::build("mobilenet_v2", {{"num_classes", 10}, {"width_multiplier", 0.5}});
//   for (auto& name : models::names()) ...
//
// Every model accepts the common options (models/options.h: padding_style,
// bn_momentum, bn_epsilon, seed), kernel_initializer (models/init.h) and
// use_sync_bn (batch statistics over all ranks: layers/layers.h);
// classifiers also num_classes (default
// 1000) and dropout_rate; each family adds its own (see its header).
// Unknown keys are rejected with the key's name.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layers/module.h"

namespace bonsai::models {

std::shared_ptr<Module> build(const std::string& name, const nlohmann::json& options = {});
std::vector<std::string> names();
// Input resolution each model is usually run at (224, or 512 for DeepLab).
int64_t reference_resolution(const std::string& name);

// A model rebuilt from a checkpoint (save_model_checkpoint, or a training
// checkpoint of `bonsai train`, whose weights sit under "model/"): the
// metadata names the registry model and its options; weights load strictly.
struct LoadedModel {
  std::string name;
  nlohmann::json options;
  std::shared_ptr<Module> module;
};
LoadedModel load_checkpoint(const std::string& path);
void save_model_checkpoint(const std::string& path, const Module& m, const std::string& name,
                           const nlohmann::json& options);

}  // namespace bonsai::models
