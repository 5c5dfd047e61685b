// check_layer: the one conformance test every layer and block passes.
//
//   check_layer(*std::make_shared<Conv2d>(...), {2, 9, 9, 3});
//
// It checks, on a random input of `input_shape`:
//  - parameter and buffer names are unique dotted names; parameters require
//    grad, buffers do not;
//  - train()/eval() reach every descendant;
//  - eval-mode forward is deterministic;
//  - a train-mode backward reaches every parameter with a gradient of its
//    shape;
//  - eval-mode gradients (input and a sample of parameters) agree with finite
//    differences (tests/grad_check.h).
#pragma once

#include "core/tensor.h"
#include "layers/layers.h"
#include "layers/module.h"
#include "tests/grad_check.h"

namespace bonsai::testing {

struct LayerCheckOptions {
  bool check_input_gradient = true;
  int max_params_checked = 4;  // finite differences on this many parameters
  GradCheckOptions grad;
};

void check_layer(Module& m, const Shape& input_shape, const LayerCheckOptions& o = {});

// conv(s2)+BN+relu6 → depthwise+BN → hard_swish → max pool → mean →
// flatten → dense (3 → 5 classes): the small float net the quantization and
// export tests quantize and convert.
std::shared_ptr<Sequential> small_conv_net();

}  // namespace bonsai::testing
