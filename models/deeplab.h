// DeepLabV3 / DeepLabV3+ with a MobileNetV2 backbone, as the Model Garden
// builds them (decoders/aspp.py, layers/deeplab.py, heads/segmentation_heads.py;
// spec: reference/model_garden_specs.md §3).
//
// ASPP — atrous spatial pyramid pooling, the decoder. On the backbone's
// feature map x [N, h, w, C] it runs parallel branches and fuses them:
//
//   conv1x1:  1x1 conv → BN → act                                 [N, h, w, F]
//   atrous_i: 3x3 conv, dilation rate_i → BN → act, one per rate   [N, h, w, F]
//             (depthwise variant: depthwise 3x3 dilated, then 1x1 → BN → act)
//   pooling:  global average pool (or VALID average pool of pool_kernel_size
//             / 2^level) → 1x1 conv → BN → act → bilinear resize to h x w
//   project:  concat → 1x1 conv → BN → act → dropout               [N, h, w, F]
//
//   auto aspp = std::make_shared<ASPP>(ASPPOptions{.in_channels = 320});
//   Tensor y = aspp->forward(x);   // [N, 32, 32, 320] -> [N, 32, 32, 256]
//
// Children: "conv1x1", "atrous{i}" (and "atrous{i}_depthwise"), "pool" (the
// pooling op), "pool_conv", "pool_resize" (ResizeLike back to the feature
// map), "concat", "project" (Conv2dBNBlocks except the pool, the merges and
// the depthwise conv), "dropout". Convs start from Keras VarianceScaling
// (truncated normal, fan-in, scale 1), the initialiser aspp.py passes in.
//
// build_deeplab — the registry entries:
//   "deeplabv3_mobilenet_v2" (plus = false): MNV2 at output stride 16 →
//     ASPP (level 4, no atrous rates, global pooling) → head (no convs,
//     1x1 classifier); logits at stride 16.
//   "deeplabv3plus_mobilenet_v2" (plus = true): the same backbone with its
//     intermediate endpoints → ASPP → head fusing "2/depthwise" (144 ch at
//     stride 4, reduced to 48) with two depthwise-separable 256 convs;
//     logits at stride 4.
// Both drop MobileNetV2's final 1x1→1280 conv, which DeepLab never reads.
// Options (all optional; unknown keys are rejected):
//   num_classes (21), width_multiplier (1.0), output_stride (16: 8, 16 or 32;
//   the ASPP reads level log2(output_stride)), dilation_rates ([]),
//   pool_kernel_size ([] = global pooling, else [h, w] in input pixels),
//   aspp_use_depthwise_convolution (false), dropout_rate (0.0, ASPP),
//   num_filters (256, ASPP and head), num_convs (0 | 2),
//   use_depthwise_convolution (false | true, head), prediction_kernel_size (1);
//   V3+ only: low_level ("2/depthwise"), low_level_num_filters (48),
//   feature_fusion ("deeplabv3plus" | "deeplabv3plus_sum_to_merge");
//   and the common options (models/options.h).
#pragma once

#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "layers/layers.h"

namespace bonsai::models {

struct ASPPOptions {
  int64_t in_channels = 0;
  // The backbone level ASPP runs on (stride 2^level). It only scales
  // pool_kernel_size from input pixels to feature pixels.
  int level = 4;
  std::vector<int> dilation_rates;  // one atrous 3x3 branch per rate; none for DeepLabV3-MNV2
  int64_t num_filters = 256;
  // [h, w] of the pooling window in input pixels (divided by 2^level), VALID
  // with stride = window; empty: global average pooling.
  std::vector<int> pool_kernel_size;
  bool use_depthwise_convolution = false;  // separable atrous branches
  float dropout_rate = 0.0f;
  ActivationKind activation = ActivationKind::relu;
  PaddingStyle padding = PaddingStyle::tf_same;
  float bn_momentum = 0.99f;  // Keras semantics
  float bn_epsilon = 1e-3f;
  uint32_t seed = 0;
};

class ASPP : public Module {
 public:
  explicit ASPP(const ASPPOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, h, w, in_channels] -> [N, h, w, num_filters]
  std::string type_name() const override { return "ASPP"; }
  const ASPPOptions& options() const { return opt_; }

 private:
  ASPPOptions opt_;
};

std::shared_ptr<Module> build_deeplab(bool plus, const nlohmann::json& options);

}  // namespace bonsai::models
