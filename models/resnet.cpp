#include "models/resnet.h"

#include <set>

#include "models/blocks.h"
#include "models/classification.h"
#include "models/torchvision_import.h"

namespace bonsai::models {

namespace {

std::shared_ptr<Conv2d> make_conv(const ResNetBlockOptions& o, int64_t in, int64_t out, int kernel,
                                  int stride, int dilation, uint32_t seed) {
  return std::make_shared<Conv2d>(Conv2dOptions{.in = in, .out = out, .kernel = kernel, .stride = stride,
                                                .dilation = dilation, .bias = false,
                                                .padding = o.padding, .seed = seed});
}

std::shared_ptr<BatchNorm2d> make_bn(const ResNetBlockOptions& o, int64_t channels) {
  return std::make_shared<BatchNorm2d>(
      BatchNormOptions{.channels = channels, .momentum = o.bn_momentum, .epsilon = o.bn_epsilon});
}

// The projection shortcut: 1x1 conv carrying the block's stride, then BN, no
// activation (nn_blocks.py `_shortcut` + `_norm0`).
std::shared_ptr<Conv2dBNBlock> make_shortcut(const ResNetBlockOptions& o, int64_t out, uint32_t seed) {
  return std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
      .in = o.in, .out = out, .kernel = 1, .stride = o.stride, .activation = std::nullopt,
      .padding = o.padding, .bn_momentum = o.bn_momentum, .bn_epsilon = o.bn_epsilon, .seed = seed});
}

// An identity shortcut is only possible when the block keeps shape.
void check_block(const ResNetBlockOptions& o, int64_t out, const std::string& type) {
  BONSAI_CHECK(o.in > 0 && o.filters > 0 && o.stride > 0 && o.dilation > 0,
               type + ": in=" + std::to_string(o.in) + " filters=" + std::to_string(o.filters) +
                   " stride=" + std::to_string(o.stride) + " dilation=" + std::to_string(o.dilation) +
                   " must all be positive");
  BONSAI_CHECK(o.use_projection || (o.stride == 1 && o.in == out),
               type + ": an identity shortcut needs stride 1 and in == out, got stride " +
                   std::to_string(o.stride) + ", in " + std::to_string(o.in) + ", out " +
                   std::to_string(out) + " (set use_projection)");
}

void check_input(const Tensor& x, int64_t channels, const std::string& type) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == channels,
               type + " expects [N, H, W, " + std::to_string(channels) + "], got " + x.shape_str());
}

}  // namespace

BottleneckBlock::BottleneckBlock(const ResNetBlockOptions& o) : opt_(o) {
  const int64_t f = o.filters, out = 4 * o.filters;
  check_block(o, out, "BottleneckBlock");
  if (o.use_projection) add("shortcut", make_shortcut(o, out, o.seed + 3));
  add("conv1", make_conv(o, o.in, f, 1, 1, 1, o.seed));
  add("bn1", make_bn(o, f));
  add("act1", std::make_shared<Activation>(o.activation));
  // v1.5: the stride sits on the 3x3 conv, not on conv1 (v1).
  add("conv2", make_conv(o, f, f, 3, o.stride, o.dilation, o.seed + 1));
  add("bn2", make_bn(o, f));
  add("act2", std::make_shared<Activation>(o.activation));
  add("conv3", make_conv(o, f, out, 1, 1, 1, o.seed + 2));
  add("bn3", make_bn(o, out));
  add("add", std::make_shared<Add>());                      // + shortcut
  add("act3", std::make_shared<Activation>(o.activation));  // after the residual add
}

Tensor BottleneckBlock::forward(const Tensor& x) {
  check_input(x, opt_.in, "BottleneckBlock");
  Tensor shortcut = opt_.use_projection ? child("shortcut")->forward(x) : x;  // [N, H/s, W/s, 4f]
  Tensor y = batch_norm_then(*child("bn1"), *child("act1"), child("conv1")->forward(x));  // [N, H, W, f]
  y = batch_norm_then(*child("bn2"), *child("act2"), child("conv2")->forward(y));  // [N, H/s, W/s, f]
  y = child("bn3")->forward(child("conv3")->forward(y));                         // [N, H/s, W/s, 4f]
  return merge_then(*this, "add", *child("act3"), {y, shortcut});
}

ResidualBlock::ResidualBlock(const ResNetBlockOptions& o) : opt_(o) {
  check_block(o, o.filters, "ResidualBlock");
  BONSAI_CHECK(o.dilation == 1, "ResidualBlock: dilation is not supported (the Model Garden has none)");
  if (o.use_projection) add("shortcut", make_shortcut(o, o.filters, o.seed + 2));
  add("conv1", make_conv(o, o.in, o.filters, 3, o.stride, 1, o.seed));
  add("bn1", make_bn(o, o.filters));
  add("act1", std::make_shared<Activation>(o.activation));
  add("conv2", make_conv(o, o.filters, o.filters, 3, 1, 1, o.seed + 1));
  add("bn2", make_bn(o, o.filters));
  add("add", std::make_shared<Add>());                      // + shortcut
  add("act2", std::make_shared<Activation>(o.activation));  // after the residual add
}

Tensor ResidualBlock::forward(const Tensor& x) {
  check_input(x, opt_.in, "ResidualBlock");
  Tensor shortcut = opt_.use_projection ? child("shortcut")->forward(x) : x;  // [N, H/s, W/s, f]
  Tensor y = batch_norm_then(*child("bn1"), *child("act1"), child("conv1")->forward(x));  // [N, H/s, W/s, f]
  y = child("bn2")->forward(child("conv2")->forward(y));
  return merge_then(*this, "add", *child("act2"), {y, shortcut});
}

const std::vector<ResNet::GroupSpec>& ResNet::specs(int depth) {
  // RESNET_SPECS of resnet.py: (block kind, filters, repeats) per group.
  static const std::map<int, std::vector<GroupSpec>> table = {
      {18, {{false, 64, 2}, {false, 128, 2}, {false, 256, 2}, {false, 512, 2}}},
      {34, {{false, 64, 3}, {false, 128, 4}, {false, 256, 6}, {false, 512, 3}}},
      {50, {{true, 64, 3}, {true, 128, 4}, {true, 256, 6}, {true, 512, 3}}},
      {101, {{true, 64, 3}, {true, 128, 4}, {true, 256, 23}, {true, 512, 3}}},
      {152, {{true, 64, 3}, {true, 128, 8}, {true, 256, 36}, {true, 512, 3}}},
  };
  auto it = table.find(depth);
  BONSAI_CHECK(it != table.end(),
               "ResNet: unsupported depth " + std::to_string(depth) + "; supported: 18, 34, 50, 101, 152");
  return it->second;
}

ResNet::ResNet(const ResNetOptions& o) : opt_(o) {
  const auto& groups = specs(o.depth);
  const CommonOptions& c = o.common;
  uint32_t seed = c.seed;

  auto stem = add("stem", std::make_shared<Sequential>());
  stem->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 64, .kernel = 7, .stride = 2,
                                                    .bias = false, .padding = c.padding, .seed = seed++}),
             "conv");
  stem->push(std::make_shared<BatchNorm2d>(
                 BatchNormOptions{.channels = 64, .momentum = c.bn_momentum, .epsilon = c.bn_epsilon}),
             "bn");
  stem->push(std::make_shared<Activation>(o.activation), "act");
  // Max-pool pads with -inf, so padding never wins the max (TF SAME and
  // PyTorch's padding=1 alike).
  stem->push(std::make_shared<MaxPool2d>(PoolOptions{.kernel = 3, .stride = 2, .padding = c.padding}),
             "pool");

  int64_t channels = 64;
  for (size_t i = 0; i < groups.size(); ++i) {
    const GroupSpec& g = groups[i];
    // resnet.py: use_first_projection = bottleneck or i > 0 or the option.
    const bool first_projection = g.bottleneck || i > 0 || o.use_first_projection;
    auto group = add("group" + std::to_string(i + 2), std::make_shared<Sequential>());
    for (int b = 0; b < g.blocks; ++b) {
      ResNetBlockOptions bo{.in = channels,
                            .filters = g.filters,
                            .stride = (b == 0 && i > 0) ? 2 : 1,
                            .use_projection = b == 0 && first_projection,
                            .activation = o.activation,
                            .padding = c.padding,
                            .bn_momentum = c.bn_momentum,
                            .bn_epsilon = c.bn_epsilon,
                            .seed = seed};
      seed += 4;
      const std::string name = "block" + std::to_string(b);
      if (g.bottleneck) {
        channels = group->push(std::make_shared<BottleneckBlock>(bo), name)->out_channels();
      } else {
        channels = group->push(std::make_shared<ResidualBlock>(bo), name)->out_channels();
      }
    }
  }
}

std::map<std::string, Tensor> ResNet::endpoints(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == 3, "ResNet expects [N, H, W, 3], got " + x.shape_str());
  std::map<std::string, Tensor> eps;
  Tensor y = child("stem")->forward(x);  // [N, H/4, W/4, 64]
  for (size_t i = 0; i < specs(opt_.depth).size(); ++i) {
    const std::string level = std::to_string(i + 2);
    y = child("group" + level)->forward(y);  // [N, H/2^level, W/2^level, C]
    eps[level] = y;
  }
  return eps;
}

std::map<std::string, int64_t> ResNet::endpoint_channels() const {
  std::map<std::string, int64_t> ch;
  const auto& groups = specs(opt_.depth);
  for (size_t i = 0; i < groups.size(); ++i)
    ch[std::to_string(i + 2)] = groups[i].bottleneck ? 4 * groups[i].filters : groups[i].filters;
  return ch;
}

std::shared_ptr<Backbone> make_resnet_backbone(const ResNetOptions& o) { return std::make_shared<ResNet>(o); }

std::shared_ptr<Backbone> make_resnet_backbone(int depth, const CommonOptions& common) {
  return make_resnet_backbone(ResNetOptions{.depth = depth, .common = common});
}

std::shared_ptr<Module> build_resnet(int depth, const nlohmann::json& options) {
  const std::string name = "resnet" + std::to_string(depth);
  ResNet::specs(depth);  // rejects an unknown depth before reading options
  OptionReader r(options, name);
  const int64_t num_classes = r.get<int64_t>("num_classes", 1000);
  const float dropout_rate = r.get("dropout_rate", 0.0f);
  const bool use_first_projection = r.get("use_first_projection", true);
  const CommonOptions common = read_common(r);
  r.finish();
  BONSAI_CHECK(num_classes > 0, name + ": num_classes must be positive, got " + std::to_string(num_classes));
  BONSAI_CHECK(dropout_rate >= 0.0f && dropout_rate < 1.0f,
               name + ": dropout_rate must be in [0, 1), got " + std::to_string(dropout_rate));
  auto backbone = make_resnet_backbone(
      ResNetOptions{.depth = depth, .use_first_projection = use_first_projection, .common = common});
  const int64_t channels = backbone->endpoint_channels().at("5");
  return std::make_shared<ClassificationModel>(
      backbone, ClassificationHeadOptions{.in_channels = channels,
                                          .num_classes = num_classes,
                                          .dropout_rate = dropout_rate,
                                          .seed = common.seed + 7919});
}

// torchvision's resnet names → ours:
//   conv1, bn1                      → backbone.stem.conv, backbone.stem.bn
//   layer{g}.{b}.conv{k}, .bn{k}    → backbone.group{g+1}.block{b}.conv{k}, .bn{k}
//   layer{g}.{b}.downsample.0 / .1  → backbone.group{g+1}.block{b}.shortcut.conv / .bn
//   fc                              → head.dense
// torchvision's blocks are v1.5 too (stride on the 3x3 of Bottleneck, on
// conv1 of BasicBlock), so the topologies agree once padding is symmetric;
// its BasicBlock ResNets have no projection in layer1.0, hence
// use_first_projection false for them.
ImportedModel import_torchvision_resnet(int depth, const std::map<std::string, Tensor>& torch_state) {
  const std::string model = "resnet" + std::to_string(depth);
  const auto& groups = ResNet::specs(depth);
  ImportedModel m;
  m.name = model;
  std::set<std::string> used;
  auto take = [&](const std::string& name) -> const Tensor& {
    used.insert(name);
    return torch_get(torch_state, name, model);
  };
  auto conv = [&](const std::string& torch_name, const std::string& ours) {
    m.state[ours + ".kernel"] = oihw_to_hwio(take(torch_name + ".weight"));
  };
  auto bn = [&](const std::string& torch_name, const std::string& ours) {
    m.state[ours + ".gamma"] = take(torch_name + ".weight");
    m.state[ours + ".beta"] = take(torch_name + ".bias");
    m.state[ours + ".moving_mean"] = take(torch_name + ".running_mean");
    m.state[ours + ".moving_variance"] = take(torch_name + ".running_var");
  };

  conv("conv1", "backbone.stem.conv");
  bn("bn1", "backbone.stem.bn");
  const bool first_projection = torch_state.count("layer1.0.downsample.0.weight") > 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    const int convs = groups[i].bottleneck ? 3 : 2;
    for (int b = 0; b < groups[i].blocks; ++b) {
      const std::string t = "layer" + std::to_string(i + 1) + "." + std::to_string(b);
      const std::string ours = "backbone.group" + std::to_string(i + 2) + ".block" + std::to_string(b);
      for (int k = 1; k <= convs; ++k) {
        conv(t + ".conv" + std::to_string(k), ours + ".conv" + std::to_string(k));
        bn(t + ".bn" + std::to_string(k), ours + ".bn" + std::to_string(k));
      }
      if (b == 0 && (groups[i].bottleneck || i > 0 || first_projection)) {
        conv(t + ".downsample.0", ours + ".shortcut.conv");
        bn(t + ".downsample.1", ours + ".shortcut.bn");
      }
    }
  }
  const Tensor& fc = take("fc.weight");
  m.state["head.dense.kernel"] = linear_to_dense(fc);
  m.state["head.dense.bias"] = take("fc.bias");

  std::string leftovers;
  for (const auto& [name, t] : torch_state) {
    if (used.count(name) || name.ends_with("num_batches_tracked")) continue;
    leftovers += (leftovers.empty() ? "" : ", ") + name;
  }
  BONSAI_CHECK(leftovers.empty(), "torchvision " + model + " weights hold tensors the " + model +
                                      " topology has no place for: " + leftovers);

  m.options = {{"num_classes", fc.dim(0)},
               {"padding_style", "symmetric"},
               {"bn_epsilon", 1e-5},
               // PyTorch's running = (1-m)*running + m*batch with m = 0.1 is
               // Keras momentum 0.9.
               {"bn_momentum", 0.9},
               {"dropout_rate", 0.0}};
  if (!first_projection) m.options["use_first_projection"] = false;
  return m;
}

}  // namespace bonsai::models
