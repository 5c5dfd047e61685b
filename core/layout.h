// Converting activations between PyTorch's NCHW and bonsai's NHWC (for
// tensors that come from, or go to, PyTorch files).
//
//   Tensor x = nchw_to_nhwc(io::load_safetensors("input.safetensors").at("input"));
#pragma once

#include "core/tensor.h"

namespace bonsai {

Tensor nchw_to_nhwc(const Tensor& x);  // [N, C, H, W] -> [N, H, W, C], f32
Tensor nhwc_to_nchw(const Tensor& x);  // [N, H, W, C] -> [N, C, H, W], f32

}  // namespace bonsai
