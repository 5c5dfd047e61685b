#include "models/mobilenet.h"

#include <set>

#include "layers/state.h"
#include "models/classification.h"
#include "models/torchvision_import.h"

namespace bonsai::models {

namespace {

using Kind = MobileNetBlockSpec::Kind;
using A = ActivationKind;

// Row constructors mirroring the tables' schemas. Fields a schema lacks keep
// the BlockSpec defaults (§1.1): relu6, no SE, no bias, with BN.
MobileNetBlockSpec convbn(int k, int s, double filters, A act, bool use_norm, bool use_bias, bool out) {
  return {.kind = Kind::convbn, .kernel = k, .stride = s, .filters = filters, .activation = act,
          .use_normalization = use_norm, .use_bias = use_bias, .is_output = out};
}
MobileNetBlockSpec ib(int k, int s, double filters, A act, double se, double expand, bool out) {
  return {.kind = Kind::inverted_bottleneck, .kernel = k, .stride = s, .filters = filters, .activation = act,
          .se_ratio = se, .expand_ratio = expand, .is_output = out};
}
MobileNetBlockSpec gpooling() { return {.kind = Kind::gpooling, .filters = 0, .is_output = false}; }

constexpr double no_se = 0.0;
constexpr bool T = true, F = false;

// MNV2_BLOCK_SPECS (§1.4): schema block_fn, kernel, strides, filters,
// expand_ratio, is_output; relu6 everywhere through the default.
const std::vector<MobileNetBlockSpec> kMobileNetV2 = {
    convbn(3, 2, 32, A::relu6, T, F, F),
    ib(3, 1, 16, A::relu6, no_se, 1., F),
    ib(3, 2, 24, A::relu6, no_se, 6., F),
    ib(3, 1, 24, A::relu6, no_se, 6., T),
    ib(3, 2, 32, A::relu6, no_se, 6., F),
    ib(3, 1, 32, A::relu6, no_se, 6., F),
    ib(3, 1, 32, A::relu6, no_se, 6., T),
    ib(3, 2, 64, A::relu6, no_se, 6., F),
    ib(3, 1, 64, A::relu6, no_se, 6., F),
    ib(3, 1, 64, A::relu6, no_se, 6., F),
    ib(3, 1, 64, A::relu6, no_se, 6., F),
    ib(3, 1, 96, A::relu6, no_se, 6., F),
    ib(3, 1, 96, A::relu6, no_se, 6., F),
    ib(3, 1, 96, A::relu6, no_se, 6., T),
    ib(3, 2, 160, A::relu6, no_se, 6., F),
    ib(3, 1, 160, A::relu6, no_se, 6., F),
    ib(3, 1, 160, A::relu6, no_se, 6., F),
    ib(3, 1, 320, A::relu6, no_se, 6., T),
    convbn(1, 1, 1280, A::relu6, T, F, F),
};

// MNV3Large_BLOCK_SPECS (§1.4).
const std::vector<MobileNetBlockSpec> kMobileNetV3Large = {
    convbn(3, 2, 16, A::hard_swish, T, F, F),
    ib(3, 1, 16, A::relu, no_se, 1., F),
    ib(3, 2, 24, A::relu, no_se, 4., F),
    ib(3, 1, 24, A::relu, no_se, 3., T),
    ib(5, 2, 40, A::relu, 0.25, 3., F),
    ib(5, 1, 40, A::relu, 0.25, 3., F),
    ib(5, 1, 40, A::relu, 0.25, 3., T),
    ib(3, 2, 80, A::hard_swish, no_se, 6., F),
    ib(3, 1, 80, A::hard_swish, no_se, 2.5, F),
    ib(3, 1, 80, A::hard_swish, no_se, 2.3, F),
    ib(3, 1, 80, A::hard_swish, no_se, 2.3, F),
    ib(3, 1, 112, A::hard_swish, 0.25, 6., F),
    ib(3, 1, 112, A::hard_swish, 0.25, 6., T),
    ib(5, 2, 160, A::hard_swish, 0.25, 6., F),
    ib(5, 1, 160, A::hard_swish, 0.25, 6., F),
    ib(5, 1, 160, A::hard_swish, 0.25, 6., T),
    convbn(1, 1, 960, A::hard_swish, T, F, F),
    gpooling(),
    convbn(1, 1, 1280, A::hard_swish, F, T, F),  // bias, no BN, on the pooled 1x1 map
};

// MNV3Small_BLOCK_SPECS (mobilenet.py; same schema as V3-Large).
const std::vector<MobileNetBlockSpec> kMobileNetV3Small = {
    convbn(3, 2, 16, A::hard_swish, T, F, F),
    ib(3, 2, 16, A::relu, 0.25, 1., T),
    ib(3, 2, 24, A::relu, no_se, 72. / 16, F),
    ib(3, 1, 24, A::relu, no_se, 88. / 24, T),
    ib(5, 2, 40, A::hard_swish, 0.25, 4., F),
    ib(5, 1, 40, A::hard_swish, 0.25, 6., F),
    ib(5, 1, 40, A::hard_swish, 0.25, 6., F),
    ib(5, 1, 48, A::hard_swish, 0.25, 3., F),
    ib(5, 1, 48, A::hard_swish, 0.25, 3., T),
    ib(5, 2, 96, A::hard_swish, 0.25, 6., F),
    ib(5, 1, 96, A::hard_swish, 0.25, 6., F),
    ib(5, 1, 96, A::hard_swish, 0.25, 6., T),
    convbn(1, 1, 576, A::hard_swish, T, F, F),
    gpooling(),
    convbn(1, 1, 1024, A::hard_swish, F, T, F),
};

// MNMultiAVG_BLOCK_SPECS (§1.4): no SE; the last 1280 conv has BN and no
// bias ("to support QAT").
const std::vector<MobileNetBlockSpec> kMobileNetMultiAvg = {
    convbn(3, 2, 32, A::relu, T, F, F),
    ib(3, 2, 32, A::relu, no_se, 3., F),
    ib(3, 1, 32, A::relu, no_se, 2., T),
    ib(5, 2, 64, A::relu, no_se, 5., F),
    ib(3, 1, 64, A::relu, no_se, 3., F),
    ib(3, 1, 64, A::relu, no_se, 2., F),
    ib(3, 1, 64, A::relu, no_se, 3., T),
    ib(5, 2, 128, A::relu, no_se, 6., F),
    ib(3, 1, 128, A::relu, no_se, 3., F),
    ib(3, 1, 128, A::relu, no_se, 3., F),
    ib(3, 1, 128, A::relu, no_se, 3., F),
    ib(3, 1, 160, A::relu, no_se, 6., F),
    ib(3, 1, 160, A::relu, no_se, 4., T),
    ib(3, 2, 192, A::relu, no_se, 6., F),
    ib(5, 1, 192, A::relu, no_se, 4., F),
    ib(5, 1, 192, A::relu, no_se, 4., F),
    ib(5, 1, 192, A::relu, no_se, 4., T),
    convbn(1, 1, 960, A::relu, T, F, F),
    gpooling(),
    convbn(1, 1, 1280, A::relu, T, F, F),
};

const char* kVariants = "mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, mobilenet_multi_avg";

std::string block_name(size_t i) { return "block" + std::to_string(i); }

}  // namespace

const std::vector<MobileNetBlockSpec>& mobilenet_block_specs(const std::string& variant) {
  if (variant == "mobilenet_v2") return kMobileNetV2;
  if (variant == "mobilenet_v3_large") return kMobileNetV3Large;
  if (variant == "mobilenet_v3_small") return kMobileNetV3Small;
  if (variant == "mobilenet_multi_avg") return kMobileNetMultiAvg;
  BONSAI_CHECK(false, "unknown MobileNet variant '" + variant + "'; known: " + kVariants);
  return kMobileNetV2;
}

MobileNet::MobileNet(const std::string& variant, const MobileNetOptions& o) : variant_(variant), opt_(o) {
  BONSAI_CHECK(o.width_multiplier > 0, variant + ": width_multiplier must be positive, got " +
                                           std::to_string(o.width_multiplier));
  BONSAI_CHECK(o.output_stride == 0 || o.output_stride == 1 || (o.output_stride > 1 && o.output_stride % 2 == 0),
               variant + ": output_stride must be 0 (none), 1 or a multiple of 2, got " +
                   std::to_string(o.output_stride));
  std::vector<MobileNetBlockSpec> specs = mobilenet_block_specs(variant);

  // Decoding (block_spec_decoder): finegrain mode keeps the last layer wide
  // for thin models, then every row's filters are rounded to multiples of 8.
  constexpr int kDivisibleBy = 8, kMinDepth = 8;
  if (o.finegrain_classification_mode && o.width_multiplier < 1.0)
    specs.back().filters /= o.width_multiplier;
  if (!o.include_final_layers) {
    size_t last_output = 0;
    for (size_t i = 0; i < specs.size(); ++i)
      if (specs[i].is_output) last_output = i;
    specs.resize(last_output + 1);
  }

  const CommonOptions& c = o.common;
  const bool has_output_stride = o.output_stride != 0;
  int64_t in = 3;
  int current_stride = 1;  // product of applied strides so far
  int rate = 1;            // atrous rate once the output stride is reached
  int level = 2;
  std::set<std::string> keys;
  for (size_t i = 0; i < specs.size(); ++i) {
    const MobileNetBlockSpec& s = specs[i];
    const uint32_t seed = c.seed * 100003u + 16u * static_cast<uint32_t>(i);
    // Past the output stride a block keeps the resolution and dilates
    // everything after it instead (_mobilenet_base).
    int layer_stride = s.stride, layer_rate = 1;
    if (has_output_stride && current_stride == o.output_stride) {
      layer_stride = 1;
      layer_rate = rate;
      rate *= s.stride;
    } else {
      current_stride *= s.stride;
    }

    ResolvedBlock r{.kind = s.kind, .in = in, .out = in};
    switch (s.kind) {
      case Kind::convbn: {
        r.out = round_filters(s.filters, o.width_multiplier, kDivisibleBy, kMinDepth);
        // The Model Garden passes the table's stride here, not layer_stride.
        r.stride = s.stride;
        add(block_name(i), std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
                               .in = in, .out = r.out, .kernel = s.kernel, .stride = s.stride,
                               .use_bias = s.use_bias, .use_normalization = s.use_normalization,
                               .activation = s.activation, .padding = c.padding,
                               .bn_momentum = c.bn_momentum, .bn_epsilon = c.bn_epsilon, .seed = seed}));
        break;
      }
      case Kind::inverted_bottleneck: {
        r.out = round_filters(s.filters, o.width_multiplier, kDivisibleBy, kMinDepth);
        r.stride = layer_stride;
        // A dilation only matters for kernels wider than 1.
        r.dilation = layer_rate > 1 && s.kernel != 1 ? layer_rate : rate;
        add(block_name(i), std::make_shared<InvertedBottleneckBlock>(InvertedBottleneckOptions{
                               .in = in, .out = r.out, .expand_ratio = s.expand_ratio, .kernel = s.kernel,
                               .stride = r.stride, .dilation = r.dilation, .se_ratio = s.se_ratio,
                               .divisible_by = kDivisibleBy, .expand_se_in_filters = true,
                               .activation = s.activation,
                               .se_gating_activation = ActivationKind::hard_sigmoid,
                               .padding = c.padding, .bn_momentum = c.bn_momentum,
                               .bn_epsilon = c.bn_epsilon, .seed = seed}));
        break;
      }
      case Kind::gpooling:
        add(block_name(i), std::make_shared<GlobalAvgPool>());  // keepdims: [N, 1, 1, C]
        break;
    }
    if (s.is_output) {
      r.level = std::to_string(level);
      keys.insert(r.level);
      channels_[r.level] = r.out;
      if (o.output_intermediate_endpoints && s.kind == Kind::inverted_bottleneck) {
        auto* block = dynamic_cast<InvertedBottleneckBlock*>(child(block_name(i)).get());
        channels_[r.level + "/depthwise"] = block->has_expand() ? block->expand_filters() : in;
      }
      if (!has_output_stride || current_stride != o.output_stride) ++level;
    }
    in = r.out;
    blocks_.push_back(r);
  }
  if (keys.count(std::to_string(level))) ++level;
  final_level_ = std::to_string(level);
  channels_[final_level_] = in;
}

std::map<std::string, Tensor> MobileNet::endpoints(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == 3, variant_ + " expects [N, H, W, 3], got " + x.shape_str());
  std::map<std::string, Tensor> eps;
  Tensor net = x;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const ResolvedBlock& r = blocks_[i];
    auto block = child(block_name(i));
    const bool want_depthwise = !r.level.empty() && opt_.output_intermediate_endpoints &&
                                r.kind == Kind::inverted_bottleneck;
    if (want_depthwise) {
      auto* ibb = dynamic_cast<InvertedBottleneckBlock*>(block.get());
      BONSAI_CHECK(ibb != nullptr, variant_ + ": " + block_name(i) + " was replaced by a " +
                                       block->type_name() +
                                       ", which cannot provide the '" + r.level + "/depthwise' endpoint");
      Tensor depthwise;
      net = ibb->forward(net, &depthwise);
      eps[r.level + "/depthwise"] = depthwise;
    } else {
      net = block->forward(net);
    }
    if (!r.level.empty()) eps[r.level] = net;
  }
  eps[final_level_] = net;
  return eps;
}

std::map<std::string, int64_t> MobileNet::endpoint_channels() const { return channels_; }

std::shared_ptr<Backbone> make_mobilenet_backbone(const std::string& variant, const MobileNetOptions& o) {
  return std::make_shared<MobileNet>(variant, o);
}

std::shared_ptr<Module> build_mobilenet(const std::string& name, const nlohmann::json& options) {
  mobilenet_block_specs(name);  // rejects unknown names first
  OptionReader r(options, name);
  MobileNetOptions o;
  o.width_multiplier = r.get("width_multiplier", o.width_multiplier);
  o.finegrain_classification_mode = r.get("finegrain_classification_mode", o.finegrain_classification_mode);
  const auto num_classes = r.get<int64_t>("num_classes", 1000);
  const float dropout_rate = r.get("dropout_rate", 0.2f);
  o.common = read_common(r);
  r.finish();
  BONSAI_CHECK(num_classes > 0, name + ": num_classes must be positive, got " + std::to_string(num_classes));
  BONSAI_CHECK(dropout_rate >= 0 && dropout_rate < 1,
               name + ": dropout_rate must be in [0, 1), got " + std::to_string(dropout_rate));
  auto backbone = std::make_shared<MobileNet>(name, o);
  const int64_t in_channels = backbone->endpoint_channels().at(backbone->final_level());
  return std::make_shared<ClassificationModel>(
      backbone, ClassificationHeadOptions{.in_channels = in_channels, .num_classes = num_classes,
                                          .dropout_rate = dropout_rate, .seed = o.common.seed + 7777u});
}

// ---------------------------------------------------------------------------
// torchvision import.
//
// torchvision's MobileNetV2/V3 are the same networks as the Model Garden
// tables at width 1.0 (checked row by row: expand widths, SE widths
// _make_divisible(exp // 4, 8) = make_divisible(int(exp * 0.25), 8), the
// hard-sigmoid gate, residual rule, activations). The differences are
// conventions only:
//  - padding: symmetric (k-1)/2 → padding_style "symmetric";
//  - BN: V2 eps 1e-5, momentum 0.1; V3 eps 1e-3, momentum 0.01 → Keras
//    momentum 1 - m;
//  - V3's classifier Linear(960→1280) + hardswish + dropout + Linear(→K): the
//    first Linear acts on the pooled 1x1 map, so it is the table's last
//    "convbn" row (1x1 conv with bias, no BN, hard_swish) and is imported
//    with linear_to_conv1x1; dropout + Linear is our ClassificationHead.
//  - V2's classifier Dropout + Linear(1280→K) is the head; the backbone's
//    1x1 1280 conv is torchvision's features.18.
// torchvision names, per inverted residual, its stages by position:
//   V2: features.i.conv.{[expand j: j.0 conv, j.1 bn], dw: j.0, j.1,
//       project conv j, project bn j+1}
//   V3: features.i.block.{[expand j: j.0, j.1], dw j.0/j.1, [se j: fc1, fc2],
//       project j.0/j.1}
// ---------------------------------------------------------------------------

namespace {

class TorchMapper {
 public:
  TorchMapper(const std::map<std::string, Tensor>& torch, std::string model, const StateDict& target)
      : torch_(torch), model_(std::move(model)), target_(target) {}

  void put(const std::string& ours, const std::string& theirs, Tensor (*convert)(const Tensor&) = nullptr) {
    const Tensor& t = torch_get(torch_, theirs, model_);
    consumed_.insert(theirs);
    Tensor v = convert ? convert(t) : t.clone();
    auto it = target_.find(ours);
    BONSAI_CHECK(it != target_.end(), "torchvision " + model_ + ": '" + theirs + "' maps to '" + ours +
                                          "', which the bonsai model does not have");
    BONSAI_CHECK(it->second.shape() == v.shape(), "torchvision " + model_ + ": '" + theirs + "' " +
                                                      t.shape_str() + " converts to " + v.shape_str() +
                                                      " but bonsai '" + ours + "' is " +
                                                      it->second.shape_str());
    state_[ours] = v;
  }

  void conv(const std::string& ours, const std::string& theirs) { put(ours + ".kernel", theirs + ".weight", oihw_to_hwio); }
  void bn(const std::string& ours, const std::string& theirs) {
    put(ours + ".gamma", theirs + ".weight");
    put(ours + ".beta", theirs + ".bias");
    put(ours + ".moving_mean", theirs + ".running_mean");
    put(ours + ".moving_variance", theirs + ".running_var");
    consumed_.insert(theirs + ".num_batches_tracked");  // optional; no counterpart
  }
  // A Conv2dBNBlock from a torchvision Conv2dNormActivation ("p.0" conv, "p.1" BN).
  void conv_bn(const std::string& ours, const std::string& theirs) {
    conv(ours + ".conv", theirs + ".0");
    bn(ours + ".bn", theirs + ".1");
  }

  StateDict finish() {
    std::string left;
    for (const auto& [name, t] : torch_)
      if (!consumed_.count(name)) left += (left.empty() ? "" : ", ") + name;
    BONSAI_CHECK(left.empty(), "torchvision " + model_ + ": tensors with no bonsai counterpart: " + left);
    std::string missing;
    for (const auto& [name, t] : target_)
      if (!state_.count(name)) missing += (missing.empty() ? "" : ", ") + name;
    BONSAI_CHECK(missing.empty(), "torchvision " + model_ + ": bonsai tensors left unset: " + missing);
    return std::move(state_);
  }

 private:
  const std::map<std::string, Tensor>& torch_;
  std::string model_;
  const StateDict& target_;
  std::set<std::string> consumed_;
  StateDict state_;
};

}  // namespace

ImportedModel import_torchvision_mobilenet(const std::string& name,
                                           const std::map<std::string, Tensor>& torch_state) {
  BONSAI_CHECK(name == "mobilenet_v2" || name == "mobilenet_v3_large" || name == "mobilenet_v3_small",
               "import_torchvision_mobilenet: cannot import '" + name +
                   "'; importable: mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small");
  const bool v2 = name == "mobilenet_v2";
  const std::string head = v2 ? "classifier.1" : "classifier.3";
  const Tensor& head_w = torch_get(torch_state, head + ".weight", name);
  BONSAI_CHECK(head_w.rank() == 2, "torchvision " + name + ": '" + head + ".weight' should be [classes, in], is " +
                                       head_w.shape_str());
  ImportedModel m;
  m.name = name;
  m.options = {{"num_classes", head_w.dim(0)},
               {"padding_style", "symmetric"},
               {"bn_epsilon", v2 ? 1e-5 : 1e-3},
               {"bn_momentum", v2 ? 0.9 : 0.99},
               {"dropout_rate", 0.2}};
  auto model = build_mobilenet(name, m.options);
  const StateDict target = state_dict(*model);
  auto* backbone = dynamic_cast<MobileNet*>(std::dynamic_pointer_cast<ClassificationModel>(model)->backbone().get());
  TorchMapper map(torch_state, name, target);

  const auto& blocks = backbone->resolved();
  size_t feature = 0;  // torchvision's features index
  bool pooled = false;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string ours = "backbone." + block_name(i);
    const std::string f = "features." + std::to_string(feature);
    switch (blocks[i].kind) {
      case Kind::gpooling:
        pooled = true;  // torchvision's avgpool; what follows is its classifier
        break;
      case Kind::convbn:
        if (pooled) {  // V3: classifier.0 Linear(960 -> 1280) on the pooled map
          map.put(ours + ".conv.kernel", "classifier.0.weight", linear_to_conv1x1);
          map.put(ours + ".conv.bias", "classifier.0.bias");
        } else {
          map.conv_bn(ours, f);
          ++feature;
        }
        break;
      case Kind::inverted_bottleneck: {
        auto* ibb = dynamic_cast<InvertedBottleneckBlock*>(backbone->child(block_name(i)).get());
        const std::string p = f + (v2 ? ".conv." : ".block.");
        int j = 0;
        if (ibb->has_expand()) map.conv_bn(ours + ".expand", p + std::to_string(j++));
        map.conv_bn(ours + ".depthwise", p + std::to_string(j++));
        if (ibb->has_se()) {
          const std::string se = p + std::to_string(j++);
          map.put(ours + ".se.reduce.kernel", se + ".fc1.weight", oihw_to_hwio);
          map.put(ours + ".se.reduce.bias", se + ".fc1.bias");
          map.put(ours + ".se.expand.kernel", se + ".fc2.weight", oihw_to_hwio);
          map.put(ours + ".se.expand.bias", se + ".fc2.bias");
        }
        if (v2) {  // project conv and BN are direct children
          map.conv(ours + ".project.conv", p + std::to_string(j));
          map.bn(ours + ".project.bn", p + std::to_string(j + 1));
        } else {
          map.conv_bn(ours + ".project", p + std::to_string(j));
        }
        ++feature;
        break;
      }
    }
  }
  map.put("head.dense.kernel", head + ".weight", linear_to_dense);
  map.put("head.dense.bias", head + ".bias");
  m.state = map.finish();
  return m;
}

}  // namespace bonsai::models
