// Re-drawing a model's initial weights with another framework's scheme, so a
// recipe copied from elsewhere starts where it started there.
//
//   auto m = models::build("mobilenet_v2", {{"kernel_initializer", "torchvision"}});
//
// Schemes:
//   "he_normal"   (bonsai's default, drawn at construction) conv N(0, √(2/fan_in)),
//                 dense Glorot uniform.
//   "torchvision" conv N(0, √(2/fan_out)) with PyTorch's fan_out = Cout·KH·KW
//                 (kaiming_normal_, mode fan_out, as torchvision's ResNet and
//                 MobileNet constructors do); dense N(0, 0.01) (torchvision's
//                 MobileNets; its ResNet keeps PyTorch's default Linear init);
//                 biases 0.
// BatchNorm starts at gamma 1, beta 0 in every scheme.
#pragma once

#include <string>

#include "layers/module.h"

namespace bonsai::models {

void reinitialize(Module& m, const std::string& scheme, uint32_t seed);

}  // namespace bonsai::models
