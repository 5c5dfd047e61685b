// The MobileNet family — MobileNetV2, MobileNetV3-Large/-Small and MobileNet
// Multi-HW AVG — built from the Model Garden's block-spec tables
// (official/vision/modeling/backbones/mobilenet.py; spec
// reference/model_garden_specs.md §1):
//
//   auto backbone = make_mobilenet_backbone("mobilenet_v2", {.output_stride = 16,
//                                                            .output_intermediate_endpoints = true});
//   auto feats = backbone->endpoints(x);   // "2", "2/depthwise", "3", ..., "4" (OS16), "5" (final)
//
//   auto model = build_mobilenet("mobilenet_v3_large", {{"num_classes", 10}, {"width_multiplier", 0.75}});
//
// One builder decodes every table: each row is a Conv2dBNBlock ("convbn"), an
// InvertedBottleneckBlock ("invertedbottleneck") or a global average pool
// ("gpooling", V3 and Multi-AVG: the last 1x1 conv then runs on a 1x1 map).
// Children are "block0", "block1", ... — the row index of the table, so
// "backbone.block14.depthwise.conv.kernel" is row 14 of the spec.
//
// Endpoints follow the Model Garden: rows marked is_output give levels 2, 3,
// ... (with "L/depthwise", the depthwise-stage output, when
// output_intermediate_endpoints is on); the final tensor gets the next level.
// With an output stride, blocks past it run at stride 1 with dilated
// depthwise convs, and the level counter stops advancing (so MNV2 at OS16
// puts the 320-channel block at "4" and the 1280 conv at "5").
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/backbone.h"
#include "models/blocks.h"
#include "models/options.h"

namespace bonsai::models {

struct MobileNetOptions {
  double width_multiplier = 1.0;       // the Model Garden's filter_size_scale
  int output_stride = 0;               // 0: none (classification); else 1 or a multiple of 2, e.g. 16 for DeepLab
  bool output_intermediate_endpoints = false;  // also "L/depthwise"
  bool finegrain_classification_mode = true;   // keep the last layer wide when width < 1
  // false: stop after the last is_output row (DeepLab reads nothing past it,
  // so MobileNetV2's final 1x1→1280 conv would only cost parameters and MACs).
  bool include_final_layers = true;
  CommonOptions common;                // padding style, BN momentum/epsilon, init seed
};

// One row of a block-spec table, decoded (Model Garden BlockSpec, §1.1).
struct MobileNetBlockSpec {
  enum class Kind { convbn, inverted_bottleneck, gpooling };
  Kind kind = Kind::convbn;
  int kernel = 3;
  int stride = 1;
  double filters = 32;  // before round_filters
  ActivationKind activation = ActivationKind::relu6;
  double se_ratio = 0.0;      // 0: none
  double expand_ratio = 6.0;
  bool use_normalization = true;
  bool use_bias = false;
  bool is_output = true;
};

// The verbatim tables: "mobilenet_v2", "mobilenet_v3_large",
// "mobilenet_v3_small", "mobilenet_multi_avg".
const std::vector<MobileNetBlockSpec>& mobilenet_block_specs(const std::string& variant);

class MobileNet : public Backbone {
 public:
  MobileNet(const std::string& variant, const MobileNetOptions& o);
  std::map<std::string, Tensor> endpoints(const Tensor& x) override;  // x [N, H, W, 3]
  std::map<std::string, int64_t> endpoint_channels() const override;
  std::string type_name() const override { return "MobileNet"; }
  const std::string& variant() const { return variant_; }

  // How a table row was resolved (after rounding and the output-stride logic).
  struct ResolvedBlock {
    MobileNetBlockSpec::Kind kind;
    int64_t in = 0, out = 0;
    int stride = 1;    // applied stride
    int dilation = 1;  // applied depthwise dilation
    std::string level;  // endpoint key if is_output, else empty
  };
  const std::vector<ResolvedBlock>& resolved() const { return blocks_; }
  // The level of the final tensor (what a classifier consumes).
  const std::string& final_level() const { return final_level_; }

 private:
  std::string variant_;
  MobileNetOptions opt_;
  std::vector<ResolvedBlock> blocks_;
  std::string final_level_;
  std::map<std::string, int64_t> channels_;
};

std::shared_ptr<Backbone> make_mobilenet_backbone(const std::string& variant, const MobileNetOptions& o);

// Registry entry for mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small,
// mobilenet_multi_avg: a ClassificationModel. Options: num_classes (1000),
// dropout_rate (0.2, the Model Garden float ImageNet configs),
// width_multiplier (1.0), finegrain_classification_mode (true), and the
// common options (models/options.h). Unknown keys are rejected.
std::shared_ptr<Module> build_mobilenet(const std::string& name, const nlohmann::json& options);

}  // namespace bonsai::models
