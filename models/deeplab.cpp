#include "models/deeplab.h"

#include <cmath>
#include <random>

#include "models/blocks.h"
#include "models/mobilenet.h"
#include "models/options.h"
#include "models/segmentation.h"

namespace bonsai::models {

namespace {

// Keras VarianceScaling() defaults: scale 1, fan_in, truncated normal. The
// normal is cut at two standard deviations (redrawn outside), and its
// stddev is divided by 0.8796…, the stddev of a unit normal truncated there,
// so the kept values have variance 1/fan_in.
void init_variance_scaling(Conv2d& conv, std::mt19937& rng) {
  const Shape& s = conv.kernel.shape();  // [K, K, in/groups, out]
  const double fan_in = static_cast<double>(s[0] * s[1] * s[2]);
  const float stddev = static_cast<float>(std::sqrt(1.0 / fan_in) / 0.87962566103423978);
  std::normal_distribution<float> dist(0.0f, stddev);
  float* p = conv.kernel.data<float>();
  for (int64_t i = 0; i < conv.kernel.numel(); ++i) {
    float v;
    do v = dist(rng);
    while (std::fabs(v) > 2.0f * stddev);
    p[i] = v;
  }
}

// Keras glorot_uniform on a DepthwiseConv2D kernel, which Keras shapes
// [K, K, C, 1]: fan_in = K*K*C, fan_out = K*K (the depth multiplier 1).
void init_depthwise_glorot(Conv2d& conv, std::mt19937& rng) {
  const Shape& s = conv.kernel.shape();  // [K, K, 1, C]
  const double receptive = static_cast<double>(s[0] * s[1]);
  const float limit = static_cast<float>(std::sqrt(6.0 / (receptive * s[3] + receptive)));
  std::uniform_real_distribution<float> dist(-limit, limit);
  float* p = conv.kernel.data<float>();
  for (int64_t i = 0; i < conv.kernel.numel(); ++i) p[i] = dist(rng);
}

Conv2d& conv_of(const std::shared_ptr<Conv2dBNBlock>& block) {
  return *std::dynamic_pointer_cast<Conv2d>(block->child("conv"));
}

// VALID average pooling with a rectangular window, stride = window: the
// Keras AveragePooling2D(pool_size) of the ASPP pooling branch.
class WindowAvgPool2d : public Module {
 public:
  WindowAvgPool2d(int kernel_h, int kernel_w) : kh_(kernel_h), kw_(kernel_w) {}
  Tensor forward(const Tensor& x) override {
    BONSAI_CHECK(x.rank() == 4 && x.dim(1) >= kh_ && x.dim(2) >= kw_,
                 "ASPP pooling: a " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                     " window (pool_kernel_size / 2^level) does not fit the feature map " + x.shape_str());
    return ops::avg_pool2d(x, {.kernel_h = kh_, .kernel_w = kw_, .stride_h = kh_, .stride_w = kw_});
  }
  std::string type_name() const override { return "WindowAvgPool2d"; }

 private:
  int kh_, kw_;
};

}  // namespace

ASPP::ASPP(const ASPPOptions& o) : opt_(o) {
  BONSAI_CHECK(o.in_channels > 0 && o.num_filters > 0,
               "ASPP: in_channels=" + std::to_string(o.in_channels) + " and num_filters=" +
                   std::to_string(o.num_filters) + " must be positive");
  BONSAI_CHECK(o.pool_kernel_size.empty() || o.pool_kernel_size.size() == 2,
               "ASPP: pool_kernel_size must be empty (global pooling) or [height, width], got " +
                   std::to_string(o.pool_kernel_size.size()) + " values");
  BONSAI_CHECK(o.dropout_rate >= 0 && o.dropout_rate < 1,
               "ASPP: dropout_rate must be in [0, 1), got " + std::to_string(o.dropout_rate));
  std::mt19937 rng(o.seed);
  auto conv_bn = [&](int64_t in, int kernel, int dilation) {
    auto block = std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
        .in = in, .out = o.num_filters, .kernel = kernel, .dilation = dilation,
        .activation = o.activation, .padding = o.padding, .bn_momentum = o.bn_momentum,
        .bn_epsilon = o.bn_epsilon});
    init_variance_scaling(conv_of(block), rng);
    return block;
  };

  add("conv1x1", conv_bn(o.in_channels, 1, 1));
  for (size_t i = 0; i < o.dilation_rates.size(); ++i) {
    const int rate = o.dilation_rates[i];
    BONSAI_CHECK(rate >= 1, "ASPP: dilation rates must be >= 1, got " + std::to_string(rate));
    const std::string name = "atrous" + std::to_string(i);
    if (o.use_depthwise_convolution) {
      // Depthwise 3x3 (no BN, no activation) then the 1x1 conv → BN → act.
      auto dw = add(name + "_depthwise",
                    std::make_shared<Conv2d>(Conv2dOptions{.in = o.in_channels, .out = o.in_channels,
                                                           .kernel = 3, .dilation = rate,
                                                           .groups = static_cast<int>(o.in_channels),
                                                           .padding = o.padding}));
      init_depthwise_glorot(*dw, rng);
      add(name, conv_bn(o.in_channels, 1, 1));
    } else {
      add(name, conv_bn(o.in_channels, 3, rate));
    }
  }
  if (o.pool_kernel_size.empty()) {
    add("pool", std::make_shared<GlobalAvgPool>());
  } else {
    // The window is given in input pixels; the feature map is 2^level smaller.
    const int kh = o.pool_kernel_size[0] >> o.level, kw = o.pool_kernel_size[1] >> o.level;
    BONSAI_CHECK(kh >= 1 && kw >= 1, "ASPP: pool_kernel_size [" + std::to_string(o.pool_kernel_size[0]) + ", " +
                                         std::to_string(o.pool_kernel_size[1]) + "] is under one feature pixel at level " +
                                         std::to_string(o.level));
    add("pool", std::make_shared<WindowAvgPool2d>(kh, kw));
  }
  add("pool_conv", conv_bn(o.in_channels, 1, 1));
  add("pool_resize", std::make_shared<ResizeLike>());  // back to the feature map's size
  add("concat", std::make_shared<Concat>());
  const int64_t branches = 2 + static_cast<int64_t>(o.dilation_rates.size());
  add("project", conv_bn(branches * o.num_filters, 1, 1));
  add("dropout", std::make_shared<Dropout>(o.dropout_rate, o.seed + 1));
}

Tensor ASPP::forward(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == opt_.in_channels,
               "ASPP expects [N, h, w, " + std::to_string(opt_.in_channels) + "], got " + x.shape_str());
  std::vector<Tensor> branches;
  branches.push_back(child("conv1x1")->forward(x));  // [N, h, w, F]
  for (size_t i = 0; i < opt_.dilation_rates.size(); ++i) {
    const std::string name = "atrous" + std::to_string(i);
    Tensor y = opt_.use_depthwise_convolution ? child(name + "_depthwise")->forward(x) : x;
    branches.push_back(child(name)->forward(y));  // [N, h, w, F]
  }
  Tensor pooled = child("pool")->forward(x);  // [N, 1, 1, C] (or [N, ph, pw, C])
  // The pooling branch's BN sees N*ph*pw values per channel; with one there
  // are no batch statistics (PyTorch refuses too; TF would output beta).
  BONSAI_CHECK(!is_training() || pooled.dim(0) * pooled.dim(1) * pooled.dim(2) > 1,
               "ASPP: training needs a batch of at least 2 — the image-pooling branch reduces each image to " +
                   pooled.shape_str() + " and its batch norm needs more than one value per channel");
  pooled = child("pool_conv")->forward(pooled);                           // [N, ph, pw, F]
  branches.push_back(merge_child(*this, "pool_resize", {pooled, x}));     // [N, h, w, F]
  Tensor y = child("project")->forward(merge_child(*this, "concat", branches));  // [N, h, w, (2 + rates) F] -> F
  return child("dropout")->forward(y);
}

std::shared_ptr<Module> build_deeplab(bool plus, const nlohmann::json& options) {
  const std::string name = plus ? "deeplabv3plus_mobilenet_v2" : "deeplabv3_mobilenet_v2";
  OptionReader r(options, name);
  const auto num_classes = r.get<int64_t>("num_classes", 21);
  const double width = r.get("width_multiplier", 1.0);
  const int output_stride = r.get("output_stride", 16);
  const auto dilation_rates = r.get("dilation_rates", std::vector<int>{});
  const auto pool_kernel_size = r.get("pool_kernel_size", std::vector<int>{});
  const bool aspp_depthwise = r.get("aspp_use_depthwise_convolution", false);
  const float dropout_rate = r.get("dropout_rate", 0.0f);
  const auto num_filters = r.get<int64_t>("num_filters", 256);
  const int num_convs = r.get("num_convs", plus ? 2 : 0);
  const bool head_depthwise = r.get("use_depthwise_convolution", plus);
  const int prediction_kernel_size = r.get("prediction_kernel_size", 1);
  FeatureFusion fusion = FeatureFusion::none;
  std::string low_level;
  int64_t low_level_num_filters = 48;
  if (plus) {
    const std::string f = r.get<std::string>("feature_fusion", "deeplabv3plus");
    BONSAI_CHECK(f == "deeplabv3plus" || f == "deeplabv3plus_sum_to_merge",
                 name + ": feature_fusion must be \"deeplabv3plus\" or \"deeplabv3plus_sum_to_merge\", got \"" +
                     f + "\"");
    fusion = f == "deeplabv3plus" ? FeatureFusion::deeplabv3plus : FeatureFusion::deeplabv3plus_sum_to_merge;
    low_level = r.get<std::string>("low_level", "2/depthwise");
    low_level_num_filters = r.get("low_level_num_filters", low_level_num_filters);
  }
  const CommonOptions common = read_common(r);
  r.finish();
  BONSAI_CHECK(num_classes > 0, name + ": num_classes must be positive, got " + std::to_string(num_classes));
  BONSAI_CHECK(output_stride == 8 || output_stride == 16 || output_stride == 32,
               name + ": output_stride must be 8, 16 or 32, got " + std::to_string(output_stride));
  // The ASPP reads the deepest features, which sit at the output stride.
  const int level = output_stride == 8 ? 3 : output_stride == 16 ? 4 : 5;
  const std::string decoder_level = std::to_string(level);

  // DeepLab reads nothing past the last is_output row (include_final_layers).
  auto backbone = make_mobilenet_backbone(
      "mobilenet_v2", MobileNetOptions{.width_multiplier = width, .output_stride = output_stride,
                                       .output_intermediate_endpoints = plus, .include_final_layers = false,
                                       .common = common});
  const auto channels = backbone->endpoint_channels();
  auto channels_at = [&](const std::string& key) {
    auto it = channels.find(key);
    BONSAI_CHECK(it != channels.end(), name + ": MobileNetV2 at output stride " + std::to_string(output_stride) +
                                           " has no endpoint '" + key + "'");
    return it->second;
  };

  auto aspp = std::make_shared<ASPP>(ASPPOptions{
      .in_channels = channels_at(decoder_level), .level = level, .dilation_rates = dilation_rates,
      .num_filters = num_filters, .pool_kernel_size = pool_kernel_size,
      .use_depthwise_convolution = aspp_depthwise, .dropout_rate = dropout_rate, .padding = common.padding,
      .bn_momentum = common.bn_momentum, .bn_epsilon = common.bn_epsilon, .seed = common.seed + 1000u});
  auto head = std::make_shared<SegmentationHead>(SegmentationHeadOptions{
      .in_channels = num_filters, .num_classes = num_classes, .num_convs = num_convs,
      .num_filters = num_filters, .use_depthwise_convolution = head_depthwise,
      .prediction_kernel_size = prediction_kernel_size, .feature_fusion = fusion, .low_level = low_level,
      .low_level_channels = plus ? channels_at(low_level) : 0, .low_level_num_filters = low_level_num_filters,
      .padding = common.padding, .bn_momentum = common.bn_momentum, .bn_epsilon = common.bn_epsilon,
      .seed = common.seed + 2000u});
  return std::make_shared<SegmentationModel>(backbone, aspp, head,
                                             SegmentationModelOptions{.decoder_level = decoder_level});
}

}  // namespace bonsai::models
