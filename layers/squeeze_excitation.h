// SqueezeExcitation: channel attention (Hu et al.), as the Model Garden's
// nn_layers.SqueezeExcitation builds it (spec §2.3):
//
//   s = mean over H, W of x                      // [N, 1, 1, in]
//   s = gate(conv1x1_expand(act(conv1x1_reduce(s))))   // [N, 1, 1, out], both convs with bias
//   y = x * s                                    // broadcast over H, W
//
// with reduce width make_divisible(max(1, int(in * se_ratio)), divisible_by,
// round_down_protect). MobileNetV3 uses it after the depthwise stage with
// in = out = the expanded channels and a hard-sigmoid gate.
//
//   auto se = std::make_shared<SqueezeExcitation>(SqueezeExcitationOptions{
//       .in_filters = 72, .out_filters = 72, .se_ratio = 0.25, .divisible_by = 8,
//       .gating_activation = ActivationKind::hard_sigmoid});   // reduce width 24
//   Tensor y = se->forward(x);     // [N, H, W, 72] -> [N, H, W, 72]
//   // children: "pool" (GlobalAvgPool), "reduce" (Conv2d), "act", "expand"
//   // (Conv2d), "gate", "scale" (Multiply: x * gate)
//
// The channel-rounding helpers every MobileNet-style model uses live here too,
// so layers and models share one definition.
#pragma once

#include <memory>

#include "layers/layers.h"

namespace bonsai {

// The Model Garden's make_divisible (nn_layers.py), exactly:
//   new = max(min_value, int(value + divisor/2) // divisor * divisor)
//   if round_down_protect and new < 0.9*value: new += divisor
// min_value 0 means "divisor". Values are doubles as in Python, so products
// such as 88/24*24 round the same way they do there.
int64_t make_divisible(double value, int divisor, int64_t min_value = 0, bool round_down_protect = true);

// round_filters(filters, multiplier, divisor, min_depth, round_down_protect)
// = make_divisible(filters * multiplier, divisor, min_depth, round_down_protect).
int64_t round_filters(double filters, double multiplier, int divisor = 8, int64_t min_depth = 0,
                      bool round_down_protect = true);

struct SqueezeExcitationOptions {
  int64_t in_filters = 0;   // sets the reduce width
  int64_t out_filters = 0;  // channels of the input and of the gate
  double se_ratio = 0.25;
  int divisible_by = 1;
  bool round_down_protect = true;
  ActivationKind activation = ActivationKind::relu;
  // The Model Garden's MobileNet gate is hard_sigmoid = relu6(x+3) * 0.16667;
  // ops::hard_sigmoid uses the exact 1/6 (PyTorch's Hardsigmoid), a relative
  // difference of 2e-5 on the gate (0.16667 vs 0.1666667) — well below what
  // training notices, and it keeps torchvision imports exact.
  ActivationKind gating_activation = ActivationKind::sigmoid;
  PaddingStyle padding = PaddingStyle::tf_same;  // irrelevant for 1x1 convs; kept for uniformity
  uint32_t seed = 0;
};

class SqueezeExcitation : public Module {
 public:
  explicit SqueezeExcitation(const SqueezeExcitationOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, H, W, out] -> same
  std::string type_name() const override { return "SqueezeExcitation"; }
  int64_t reduced_filters() const { return reduced_; }
  const SqueezeExcitationOptions& options() const { return opt_; }

 private:
  SqueezeExcitationOptions opt_;
  int64_t reduced_ = 0;
};

}  // namespace bonsai
