// Semantic segmentation: backbone → decoder → head, the Model Garden's
// segmentation_model.py with heads/segmentation_heads.py (spec:
// reference/model_garden_specs.md §3.2, §3.4).
//
//   auto model = std::make_shared<SegmentationModel>(backbone, aspp, head,
//                                                    SegmentationModelOptions{.decoder_level = "4"});
//   Tensor logits = model->forward(images);        // [N, 512, 512, 3] -> [N, 32, 32, 21]
//   Tensor full = model->predict(images);          // [N, 512, 512, 21], bilinear
//
// Children: "backbone" (a Backbone), "decoder" (e.g. ASPP, models/deeplab.h;
// Identity when there is none) and "head" (a SegmentationHead). The decoder
// reads the backbone endpoint `decoder_level`; the head may also fuse a
// low-level endpoint (DeepLabV3+). Logits stay at the feature stride, as in
// the Model Garden: the loss resizes them to the label size (bilinear,
// half-pixel centres), and predict() resizes them to the input size.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "layers/layers.h"
#include "models/backbone.h"

namespace bonsai::models {

// How the head combines the decoder output with a backbone feature map.
enum class FeatureFusion {
  none,
  // y = act(BN(conv1x1(low_level))); x = concat(resize(decoder_out, y's HxW), y)
  deeplabv3plus,
  // the same, but x = resize(decoder_out) + y (needs low_level_num_filters
  // equal to the decoder's channels)
  deeplabv3plus_sum_to_merge,
};

struct SegmentationHeadOptions {
  int64_t in_channels = 0;  // channels of the decoder output
  int64_t num_classes = 21;
  int num_convs = 2;        // conv-BN-act layers before the classifier
  int64_t num_filters = 256;
  // Each of those convs as depthwise 3x3 → BN → act → 1x1 → BN → act
  // instead of one 3x3 → BN → act.
  bool use_depthwise_convolution = false;
  int prediction_kernel_size = 1;  // the classifier's kernel
  FeatureFusion feature_fusion = FeatureFusion::none;
  std::string low_level = "2";       // backbone endpoint fused by deeplabv3plus, e.g. "2/depthwise"
  int64_t low_level_channels = 0;    // its channels
  int64_t low_level_num_filters = 48;
  ActivationKind activation = ActivationKind::relu;
  PaddingStyle padding = PaddingStyle::tf_same;
  float bn_momentum = 0.99f;  // Keras semantics
  float bn_epsilon = 1e-3f;
  uint32_t seed = 0;
};

// The Model Garden SegmentationHead. Children, each present only if used:
// "fusion" (Conv2dBNBlock 1x1 on the low-level features), "fusion_resize"
// (ResizeLike: the decoder output to the low-level size) and "fusion_merge"
// (Concat or Add), then for i <
// num_convs "depthwise{i}" (Conv2dBNBlock, depthwise variant only) and
// "conv{i}" (Conv2dBNBlock), then "classifier" (Conv2d with bias). All convs
// start from RandomNormal(stddev 0.01), the classifier bias from zeros, as
// segmentation_heads.py initialises them.
class SegmentationHead : public Module {
 public:
  explicit SegmentationHead(const SegmentationHeadOptions& o);
  // decoder_out [N, h, w, in_channels]; low_level [N, H', W', low_level_channels],
  // required with feature fusion and ignored without.
  // Returns logits [N, h', w', num_classes] at the finer of the two strides.
  Tensor forward(const Tensor& decoder_out, const Tensor& low_level);
  // Without feature fusion only.
  Tensor forward(const Tensor& decoder_out) override;
  std::string type_name() const override { return "SegmentationHead"; }
  const SegmentationHeadOptions& options() const { return opt_; }
  bool uses_low_level() const { return opt_.feature_fusion != FeatureFusion::none; }

 private:
  SegmentationHeadOptions opt_;
};

struct SegmentationModelOptions {
  std::string decoder_level = "4";  // backbone endpoint the decoder reads
};

class SegmentationModel : public Module {
 public:
  // A null decoder means none: the head reads the backbone endpoint directly.
  SegmentationModel(std::shared_ptr<Backbone> backbone, std::shared_ptr<Module> decoder,
                    std::shared_ptr<SegmentationHead> head, const SegmentationModelOptions& o = {});
  // images [N, H, W, 3] -> logits [N, h, w, num_classes] at the head's stride.
  Tensor forward(const Tensor& images) override;
  // Logits bilinearly resized (half-pixel centres) to the input's H x W:
  // what prediction and evaluation against full-size labels use.
  Tensor predict(const Tensor& images);
  std::string type_name() const override { return "SegmentationModel"; }
  std::shared_ptr<Backbone> backbone() const;
  std::shared_ptr<SegmentationHead> head() const;
  const SegmentationModelOptions& options() const { return opt_; }

 private:
  SegmentationModelOptions opt_;
};

}  // namespace bonsai::models
