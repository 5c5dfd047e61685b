// Importing torchvision weights (a state_dict saved as safetensors, e.g. by
// ../shared/peer/torchvision_reference.py) into the equivalent bonsai model.
//
//   ImportedModel m = import_torchvision("resnet50", io::load_safetensors("weights.safetensors"));
//   auto model = models::build(m.name, m.options);     // padding_style symmetric, torch BN eps/momentum
//   load_state(*model, m.state);                       // strict
//
// Conversions: conv OIHW [Cout, Cin/g, KH, KW] → HWIO [KH, KW, Cin/g, Cout];
// linear [out, in] → [in, out]; BN weight/bias/running_mean/running_var →
// gamma/beta/moving_mean/moving_variance; PyTorch BN momentum m → Keras
// momentum 1 - m. num_batches_tracked is dropped.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "core/tensor.h"

namespace bonsai::models {

struct ImportedModel {
  std::string name;             // registry name
  nlohmann::json options;       // registry options that reproduce torchvision's computation
  std::map<std::string, Tensor> state;  // bonsai names → tensors in bonsai layouts
};

// Dispatches on the registry name: resnet18/34/50/101/152, mobilenet_v2,
// mobilenet_v3_large, mobilenet_v3_small.
ImportedModel import_torchvision(const std::string& name, const std::map<std::string, Tensor>& torch_state);

// Per family (models/resnet.cpp, models/mobilenet.cpp).
ImportedModel import_torchvision_resnet(int depth, const std::map<std::string, Tensor>& torch_state);
ImportedModel import_torchvision_mobilenet(const std::string& name,
                                           const std::map<std::string, Tensor>& torch_state);

// Layout helpers shared by the families.
Tensor oihw_to_hwio(const Tensor& w);        // conv kernels
Tensor linear_to_dense(const Tensor& w);     // [out, in] -> [in, out]
Tensor linear_to_conv1x1(const Tensor& w);   // [out, in] -> [1, 1, in, out]
// Reads a tensor by torchvision name, naming the name and model on absence.
const Tensor& torch_get(const std::map<std::string, Tensor>& s, const std::string& name,
                        const std::string& model);

}  // namespace bonsai::models
