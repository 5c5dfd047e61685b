// Building blocks shared by the model families (Model Garden nn_blocks.py and
// mobilenet.py; spec: reference/model_garden_specs.md §2.2, §2.4).
//
// Conv2dBNBlock — conv → [BN] → [activation], the unit almost every conv in
// MobileNet, ASPP and the segmentation heads is made of:
//
//   auto stem = std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
//       .in = 3, .out = 32, .kernel = 3, .stride = 2, .activation = ActivationKind::relu6});
//   Tensor y = stem->forward(x);        // [N, 224, 224, 3] -> [N, 112, 112, 32]
//   // children: "conv" (Conv2d), "bn" (BatchNorm2d, unless use_normalization
//   // is false), "act" (Activation, unless activation is nullopt = linear)
//
// A depthwise conv is `.groups = .in` with `.out == .in`.
//
// InvertedBottleneckBlock — MobileNetV2/V3's block:
//
//   expand 1x1 (only if expand_ratio > 1) → depthwise kxk (stride, dilation)
//   → [squeeze-excitation] → project 1x1 (linear: BN, no activation)
//   → [+ input, when use_residual, in == out and the applied stride is 1]
//
//   auto ib = std::make_shared<InvertedBottleneckBlock>(InvertedBottleneckOptions{
//       .in = 24, .out = 40, .expand_ratio = 3, .kernel = 5, .stride = 2, .se_ratio = 0.25,
//       .divisible_by = 8, .expand_se_in_filters = true,
//       .se_gating_activation = ActivationKind::hard_sigmoid});
//   // children: "expand", "depthwise", "se", "project", "add" (the residual
//   // sum; each present only if used); expand/depthwise/project are Conv2dBNBlocks, so parameter names
//   // read "block4.depthwise.conv.kernel", "block4.se.reduce.bias", ...
#pragma once

#include <memory>
#include <optional>

#include "layers/layers.h"
#include "layers/squeeze_excitation.h"

namespace bonsai::models {

struct Conv2dBNOptions {
  int64_t in = 0, out = 0;
  int kernel = 3;
  int stride = 1;
  int dilation = 1;
  int groups = 1;                 // groups == in == out: depthwise
  bool use_bias = false;
  bool use_normalization = true;  // BN after the conv
  std::optional<ActivationKind> activation = ActivationKind::relu6;  // nullopt: linear
  PaddingStyle padding = PaddingStyle::tf_same;
  float bn_momentum = 0.99f;  // Keras semantics
  float bn_epsilon = 1e-3f;
  uint32_t seed = 0;
};

class Conv2dBNBlock : public Module {
 public:
  explicit Conv2dBNBlock(const Conv2dBNOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, H, W, in] -> [N, OH, OW, out]
  std::string type_name() const override { return "Conv2dBNBlock"; }
  const Conv2dBNOptions& options() const { return opt_; }

 private:
  Conv2dBNOptions opt_;
};

struct InvertedBottleneckOptions {
  int64_t in = 0, out = 0;
  double expand_ratio = 6.0;  // expand channels = make_divisible(in * expand_ratio, divisible_by)
  int kernel = 3;             // depthwise kernel
  int stride = 1;             // applied (output-stride adjusted) stride of the depthwise conv
  int dilation = 1;           // depthwise dilation
  double se_ratio = 0.0;      // squeeze-excitation when 0 < se_ratio <= 1
  int divisible_by = 1;       // MobileNet passes 8
  bool expand_se_in_filters = false;  // SE reduce width from the expanded (true) or input channels
  bool se_round_down_protect = true;
  ActivationKind activation = ActivationKind::relu;
  std::optional<ActivationKind> depthwise_activation;  // nullopt: same as `activation`
  ActivationKind se_inner_activation = ActivationKind::relu;
  ActivationKind se_gating_activation = ActivationKind::sigmoid;
  bool use_residual = true;
  PaddingStyle padding = PaddingStyle::tf_same;
  float bn_momentum = 0.99f;
  float bn_epsilon = 1e-3f;
  uint32_t seed = 0;
};

class InvertedBottleneckBlock : public Module {
 public:
  explicit InvertedBottleneckBlock(const InvertedBottleneckOptions& o);
  Tensor forward(const Tensor& x) override { return forward(x, nullptr); }
  // Also hands out the depthwise stage's output (after its BN and activation,
  // before SE): the Model Garden's "depthwise" intermediate endpoint.
  Tensor forward(const Tensor& x, Tensor* depthwise_out);
  std::string type_name() const override { return "InvertedBottleneckBlock"; }
  const InvertedBottleneckOptions& options() const { return opt_; }
  int64_t expand_filters() const { return expand_filters_; }
  bool has_expand() const { return opt_.expand_ratio > 1.0; }
  bool has_se() const { return opt_.se_ratio > 0.0 && opt_.se_ratio <= 1.0; }
  bool has_residual() const { return opt_.use_residual && opt_.in == opt_.out && opt_.stride == 1; }

 private:
  InvertedBottleneckOptions opt_;
  int64_t expand_filters_ = 0;
};

}  // namespace bonsai::models
