// The ResNet family (He et al.) as the Model Garden builds it
// (official/vision/modeling/backbones/resnet.py and nn_blocks.py; spec
// reference/model_garden_specs.md §1.6): ResNet v1.5, depths 18/34 with
// ResidualBlocks and 50/101/152 with BottleneckBlocks.
//
//   auto backbone = make_resnet_backbone(50, CommonOptions{});
//   auto feats = backbone->endpoints(x);   // x [N, 224, 224, 3]
//   Tensor c5 = feats.at("5");             // [N, 7, 7, 2048]
//
//   auto model = build_resnet(50, {{"num_classes", 10}, {"padding_style", "symmetric"}});
//   Tensor logits = model->forward(x);     // [N, 10]
//
// Topology (stem "v0", the default):
//
//   stem:    conv 7x7/64 s2 (no bias) → BN → ReLU → max-pool 3x3 s2
//   group2:  blocks at 1/4 resolution,  filters  64   (endpoint "2")
//   group3:  first block stride 2,      filters 128   (endpoint "3")
//   group4:  first block stride 2,      filters 256   (endpoint "4")
//   group5:  first block stride 2,      filters 512   (endpoint "5")
//
// Blocks per group: 18: 2,2,2,2  34: 3,4,6,3  50: 3,4,6,3  101: 3,4,23,3
// 152: 3,8,36,3. Endpoint channels are the filters (basic blocks) or 4x the
// filters (bottlenecks). The first block of every group has a projection
// shortcut (1x1 conv carrying the block's stride, then BN); the rest are
// stride 1 with an identity shortcut. For 18/34 the Model Garden projects
// even in group2, where neither stride nor width changes
// (use_first_projection=True, tensorflow/models issue 10583; the official
// R18 count of 11,190,464 includes that 64→64 projection). torchvision's
// basic-block ResNets have no projection there, so importing them sets
// "use_first_projection": false.
//
// Dotted names: backbone.stem.conv.kernel, backbone.stem.bn.gamma,
// backbone.group4.block2.conv2.kernel, backbone.group3.block0.shortcut.conv.kernel,
// backbone.group3.block0.shortcut.bn.moving_mean, head.dense.kernel.
//
// Options (JSON, strict): num_classes (1000), dropout_rate (0.0, as the
// Model Garden's ResNet ImageNet config), use_first_projection (true), and
// the common padding_style / bn_momentum / bn_epsilon / seed. padding_style
// "symmetric" gives torchvision's computation (7x7 conv pad 3, max-pool pad
// 1, 3x3 convs pad 1); "tf_same" (default) the Model Garden's.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layers/layers.h"
#include "models/backbone.h"
#include "models/options.h"

namespace bonsai::models {

// Options shared by both block kinds. `filters` is the width of the inner
// convs; a BottleneckBlock outputs 4 * filters channels, a ResidualBlock
// `filters`.
struct ResNetBlockOptions {
  int64_t in = 0;
  int64_t filters = 64;
  int stride = 1;               // on the 3x3 conv (v1.5) and on the projection
  int dilation = 1;             // of the 3x3 conv (BottleneckBlock only)
  bool use_projection = false;  // 1x1 conv + BN shortcut; otherwise identity
  ActivationKind activation = ActivationKind::relu;
  PaddingStyle padding = PaddingStyle::tf_same;
  float bn_momentum = 0.99f;    // Keras semantics
  float bn_epsilon = 1e-3f;
  uint32_t seed = 0;            // convs use seed, seed+1, ... in build order
};

// conv1 1x1 (f) → bn1 → act1 → conv2 3x3 (f, stride, dilation) → bn2 → act2
// → conv3 1x1 (4f) → bn3 → + shortcut → act3 (the activation is ReLU unless
// the options say otherwise).
// Children: "shortcut" (Conv2dBNBlock with "conv", "bn"; only if
// projecting), "conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3",
// "bn3", "add" (the residual sum), "act3". No conv has a bias.
class BottleneckBlock : public Module {
 public:
  explicit BottleneckBlock(const ResNetBlockOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, H, W, in] -> [N, H/s, W/s, 4f]
  std::string type_name() const override { return "BottleneckBlock"; }
  const ResNetBlockOptions& options() const { return opt_; }
  int64_t out_channels() const { return 4 * opt_.filters; }

 private:
  ResNetBlockOptions opt_;
};

// conv1 3x3 (f, stride) → bn1 → act1 → conv2 3x3 (f) → bn2 → + shortcut → act2.
// Children: "shortcut" (only if projecting), "conv1", "bn1", "act1",
// "conv2", "bn2", "add", "act2".
class ResidualBlock : public Module {
 public:
  explicit ResidualBlock(const ResNetBlockOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, H, W, in] -> [N, H/s, W/s, f]
  std::string type_name() const override { return "ResidualBlock"; }
  const ResNetBlockOptions& options() const { return opt_; }
  int64_t out_channels() const { return opt_.filters; }

 private:
  ResNetBlockOptions opt_;
};

struct ResNetOptions {
  int depth = 50;                    // 18, 34, 50, 101, 152
  bool use_first_projection = true;  // project in group2's first block (matters for 18/34 only)
  ActivationKind activation = ActivationKind::relu;
  CommonOptions common;
};

// Children: "stem" (Sequential: "conv", "bn", "act", "pool"), "group2" ..
// "group5" (Sequential of "block0", "block1", ...).
class ResNet : public Backbone {
 public:
  explicit ResNet(const ResNetOptions& o);
  std::map<std::string, Tensor> endpoints(const Tensor& x) override;  // x [N, H, W, 3]
  std::map<std::string, int64_t> endpoint_channels() const override;
  std::string type_name() const override { return "ResNet"; }
  const ResNetOptions& options() const { return opt_; }

  // One block group of the Model Garden's RESNET_SPECS.
  struct GroupSpec {
    bool bottleneck;
    int64_t filters;
    int blocks;
  };
  static const std::vector<GroupSpec>& specs(int depth);  // throws on an unknown depth

 private:
  ResNetOptions opt_;
};

std::shared_ptr<Backbone> make_resnet_backbone(int depth, const CommonOptions& common);
std::shared_ptr<Backbone> make_resnet_backbone(const ResNetOptions& o);

// The registry's builder for "resnet18" .. "resnet152": a ClassificationModel
// (children "backbone", "head") from JSON options (see above).
std::shared_ptr<Module> build_resnet(int depth, const nlohmann::json& options);

}  // namespace bonsai::models
