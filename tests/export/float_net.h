// A small float net for the float export tests (export/float_graph.h,
// test_float_graph.cpp, test_tflite.cpp, test_onnx.cpp), with custom blocks
// whose forwards go through their children as the zoo's do:
//
//   stem     conv 3x3 stride 2, symmetric padding (neither SAME nor VALID:
//            an explicit pad in TFLite) → BN → relu6            [8, 8, 8]
//   block    expand 1x1 → BN → relu6 → depthwise 3x3 → BN → hard_swish →
//            SE (global pool → 1x1 conv + bias → relu → 1x1 conv + bias →
//            hard_sigmoid → multiply) → project 1x1 → BN → add(input) → relu
//   pyramid  avg pool 3x3 stride 2 (SAME) → resize like the input →
//            concat(input, resized) → sigmoid                 [8, 8, 16]
//   pool     max pool 3x3 stride 2 (SAME)                      [4, 4, 16]
//   flatten  (a reshape over H·W > 1) → dense 256 → 5
#pragma once

#include <memory>

#include "layers/layers.h"

namespace bonsai::testing {

// Input [N, 16, 16, 3]. BN statistics and affine parameters are random (so
// the folds are not identities); the net is left in eval mode.
std::shared_ptr<Sequential> small_float_net();

// max |a − b| / max |b| over two same-shape f32 tensors (a test REQUIREs the shapes).
double relative_difference(const Tensor& a, const Tensor& b);

}  // namespace bonsai::testing
