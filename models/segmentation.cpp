#include "models/segmentation.h"

#include <random>

#include "models/blocks.h"

namespace bonsai::models {

namespace {

// Keras RandomNormal(stddev): the head's kernel initialiser.
void init_random_normal(Tensor& kernel, float stddev, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, stddev);
  float* p = kernel.data<float>();
  for (int64_t i = 0; i < kernel.numel(); ++i) p[i] = dist(rng);
}

Tensor& conv_kernel(const std::shared_ptr<Module>& conv_bn_block) {
  auto conv = std::dynamic_pointer_cast<Conv2d>(conv_bn_block->child("conv"));
  BONSAI_CHECK(conv, "expected a Conv2d at 'conv'");
  return conv->kernel;
}

}  // namespace

SegmentationHead::SegmentationHead(const SegmentationHeadOptions& o) : opt_(o) {
  BONSAI_CHECK(o.in_channels > 0 && o.num_classes > 0 && o.num_convs >= 0 && o.num_filters > 0,
               "SegmentationHead: in_channels=" + std::to_string(o.in_channels) + " num_classes=" +
                   std::to_string(o.num_classes) + " num_convs=" + std::to_string(o.num_convs) +
                   " num_filters=" + std::to_string(o.num_filters) + " are invalid");
  std::mt19937 rng(o.seed);
  const float stddev = 0.01f;
  auto conv_bn = [&](int64_t in, int64_t out, int kernel, int groups) {
    auto block = std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
        .in = in, .out = out, .kernel = kernel, .groups = groups, .activation = o.activation,
        .padding = o.padding, .bn_momentum = o.bn_momentum, .bn_epsilon = o.bn_epsilon});
    init_random_normal(conv_kernel(block), stddev, rng);
    return block;
  };

  int64_t channels = o.in_channels;
  if (uses_low_level()) {
    BONSAI_CHECK(o.low_level_channels > 0 && o.low_level_num_filters > 0,
                 "SegmentationHead: feature fusion needs low_level_channels and low_level_num_filters "
                 "(got " + std::to_string(o.low_level_channels) + ", " +
                     std::to_string(o.low_level_num_filters) + ")");
    add("fusion", conv_bn(o.low_level_channels, o.low_level_num_filters, 1, 1));
    add("fusion_resize", std::make_shared<ResizeLike>());  // decoder output to the low-level size
    if (o.feature_fusion == FeatureFusion::deeplabv3plus) {
      add("fusion_merge", std::make_shared<Concat>());
      channels = o.in_channels + o.low_level_num_filters;  // concat
    } else {
      add("fusion_merge", std::make_shared<Add>());
      BONSAI_CHECK(o.low_level_num_filters == o.in_channels,
                   "SegmentationHead: deeplabv3plus_sum_to_merge adds the decoder output (" +
                       std::to_string(o.in_channels) + " channels) to the low-level features (" +
                       std::to_string(o.low_level_num_filters) + " filters); they must match");
    }
  }
  for (int i = 0; i < o.num_convs; ++i) {
    if (o.use_depthwise_convolution) {
      add("depthwise" + std::to_string(i), conv_bn(channels, channels, 3, static_cast<int>(channels)));
      add("conv" + std::to_string(i), conv_bn(channels, o.num_filters, 1, 1));
    } else {
      add("conv" + std::to_string(i), conv_bn(channels, o.num_filters, 3, 1));
    }
    channels = o.num_filters;
  }
  auto classifier = add("classifier", std::make_shared<Conv2d>(Conv2dOptions{
                                          .in = channels, .out = o.num_classes,
                                          .kernel = o.prediction_kernel_size, .bias = true,
                                          .padding = o.padding}));
  init_random_normal(classifier->kernel, stddev, rng);  // bias stays zero
}

Tensor SegmentationHead::forward(const Tensor& decoder_out) {
  BONSAI_CHECK(!uses_low_level(),
               "SegmentationHead with feature fusion needs the low-level features: call "
               "forward(decoder_out, low_level)");
  return forward(decoder_out, Tensor());
}

Tensor SegmentationHead::forward(const Tensor& decoder_out, const Tensor& low_level) {
  BONSAI_CHECK(decoder_out.rank() == 4 && decoder_out.dim(3) == opt_.in_channels,
               "SegmentationHead expects decoder output [N, h, w, " + std::to_string(opt_.in_channels) +
                   "], got " + decoder_out.shape_str());
  Tensor x = decoder_out;
  if (uses_low_level()) {
    BONSAI_CHECK(low_level.defined() && low_level.rank() == 4 && low_level.dim(0) == x.dim(0) &&
                     low_level.dim(3) == opt_.low_level_channels,
                 "SegmentationHead expects low-level features '" + opt_.low_level + "' [" +
                     std::to_string(x.dim(0)) + ", H, W, " + std::to_string(opt_.low_level_channels) +
                     "], got " + (low_level.defined() ? low_level.shape_str() : "none"));
    Tensor y = child("fusion")->forward(low_level);               // [N, H, W, 48]
    x = merge_child(*this, "fusion_resize", {x, y});               // [N, H, W, in]
    x = merge_child(*this, "fusion_merge", {x, y});                // concat: [N, H, W, in + 48]; add: [N, H, W, in]
  }
  for (int i = 0; i < opt_.num_convs; ++i) {
    if (opt_.use_depthwise_convolution) x = child("depthwise" + std::to_string(i))->forward(x);
    x = child("conv" + std::to_string(i))->forward(x);  // [N, H, W, num_filters]
  }
  return child("classifier")->forward(x);  // [N, H, W, num_classes]
}

SegmentationModel::SegmentationModel(std::shared_ptr<Backbone> backbone, std::shared_ptr<Module> decoder,
                                     std::shared_ptr<SegmentationHead> head, const SegmentationModelOptions& o)
    : opt_(o) {
  BONSAI_CHECK(backbone && head, "SegmentationModel needs a backbone and a head");
  auto channels = backbone->endpoint_channels();
  BONSAI_CHECK(channels.count(o.decoder_level),
               "SegmentationModel: the backbone has no endpoint '" + o.decoder_level + "' for the decoder");
  if (head->uses_low_level())
    BONSAI_CHECK(channels.count(head->options().low_level),
                 "SegmentationModel: the backbone has no endpoint '" + head->options().low_level +
                     "' for the head's feature fusion (MobileNet: output_intermediate_endpoints?)");
  add("backbone", std::move(backbone));
  add("decoder", decoder ? std::move(decoder) : std::make_shared<Identity>());
  add("head", std::move(head));
}

std::shared_ptr<Backbone> SegmentationModel::backbone() const {
  auto b = std::dynamic_pointer_cast<Backbone>(child("backbone"));
  BONSAI_CHECK(b, "SegmentationModel: child 'backbone' is not a Backbone");
  return b;
}

std::shared_ptr<SegmentationHead> SegmentationModel::head() const {
  auto h = std::dynamic_pointer_cast<SegmentationHead>(child("head"));
  BONSAI_CHECK(h, "SegmentationModel: child 'head' is not a SegmentationHead");
  return h;
}

Tensor SegmentationModel::forward(const Tensor& images) {
  BONSAI_CHECK(images.rank() == 4, "SegmentationModel expects images [N, H, W, C], got " + images.shape_str());
  std::map<std::string, Tensor> feats = backbone()->endpoints(images);
  auto at = [&](const std::string& level) {
    auto it = feats.find(level);
    BONSAI_CHECK(it != feats.end(), "SegmentationModel: the backbone produced no endpoint '" + level + "'");
    return it->second;
  };
  Tensor decoded = child("decoder")->forward(at(opt_.decoder_level));  // [N, h, w, C]
  auto h = head();
  return h->forward(decoded, h->uses_low_level() ? at(h->options().low_level) : Tensor());
}

Tensor SegmentationModel::predict(const Tensor& images) {
  Tensor logits = forward(images);
  return ops::resize_bilinear(logits, images.dim(1), images.dim(2));
}

}  // namespace bonsai::models
