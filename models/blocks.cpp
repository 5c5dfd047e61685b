#include "models/blocks.h"

namespace bonsai::models {

Conv2dBNBlock::Conv2dBNBlock(const Conv2dBNOptions& o) : opt_(o) {
  add("conv", std::make_shared<Conv2d>(Conv2dOptions{.in = o.in, .out = o.out, .kernel = o.kernel,
                                                     .stride = o.stride, .dilation = o.dilation,
                                                     .groups = o.groups, .bias = o.use_bias,
                                                     .padding = o.padding, .seed = o.seed}));
  if (o.use_normalization)
    add("bn", std::make_shared<BatchNorm2d>(
                  BatchNormOptions{.channels = o.out, .momentum = o.bn_momentum, .epsilon = o.bn_epsilon}));
  if (o.activation) add("act", std::make_shared<Activation>(*o.activation));
}

Tensor Conv2dBNBlock::forward(const Tensor& x) {
  Tensor y = child("conv")->forward(x);
  if (opt_.use_normalization && opt_.activation) return batch_norm_then(*child("bn"), *child("act"), y);
  if (opt_.use_normalization) y = child("bn")->forward(y);
  if (opt_.activation) y = child("act")->forward(y);
  return y;
}

InvertedBottleneckBlock::InvertedBottleneckBlock(const InvertedBottleneckOptions& o) : opt_(o) {
  BONSAI_CHECK(o.in > 0 && o.out > 0 && o.expand_ratio > 0 && o.stride > 0 && o.dilation > 0,
               "InvertedBottleneckBlock: in=" + std::to_string(o.in) + " out=" + std::to_string(o.out) +
                   " expand_ratio=" + std::to_string(o.expand_ratio) + " stride=" +
                   std::to_string(o.stride) + " dilation=" + std::to_string(o.dilation) +
                   " must all be positive");
  expand_filters_ = make_divisible(static_cast<double>(o.in) * o.expand_ratio, o.divisible_by);
  // With expand_ratio <= 1 the Model Garden never calls its expand conv, so
  // it has no weights and the depthwise stage sees the input itself.
  const int64_t mid = has_expand() ? expand_filters_ : o.in;
  if (has_expand())
    add("expand", std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
                      .in = o.in, .out = expand_filters_, .kernel = 1, .activation = o.activation,
                      .padding = o.padding, .bn_momentum = o.bn_momentum, .bn_epsilon = o.bn_epsilon,
                      .seed = o.seed}));
  add("depthwise", std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
                       .in = mid, .out = mid, .kernel = o.kernel, .stride = o.stride,
                       .dilation = o.dilation, .groups = static_cast<int>(mid),
                       .activation = o.depthwise_activation.value_or(o.activation), .padding = o.padding,
                       .bn_momentum = o.bn_momentum, .bn_epsilon = o.bn_epsilon, .seed = o.seed + 1}));
  if (has_se())
    add("se", std::make_shared<SqueezeExcitation>(SqueezeExcitationOptions{
                  .in_filters = o.expand_se_in_filters ? expand_filters_ : o.in,
                  .out_filters = expand_filters_,
                  .se_ratio = o.se_ratio,
                  .divisible_by = o.divisible_by,
                  .round_down_protect = o.se_round_down_protect,
                  .activation = o.se_inner_activation,
                  .gating_activation = o.se_gating_activation,
                  .padding = o.padding,
                  .seed = o.seed + 2}));
  // The SE is sized for expand_filters channels; without the expand conv the
  // depthwise output has `in` channels, so the two must agree.
  BONSAI_CHECK(!has_se() || mid == expand_filters_,
               "InvertedBottleneckBlock: squeeze-excitation on " + std::to_string(expand_filters_) +
                   " channels but the depthwise stage has " + std::to_string(mid) +
                   " (expand_ratio <= 1 with in not divisible by divisible_by)");
  add("project", std::make_shared<Conv2dBNBlock>(Conv2dBNOptions{
                     .in = mid, .out = o.out, .kernel = 1, .activation = std::nullopt,
                     .padding = o.padding, .bn_momentum = o.bn_momentum, .bn_epsilon = o.bn_epsilon,
                     .seed = o.seed + 4}));
  if (has_residual()) add("add", std::make_shared<Add>());
}

Tensor InvertedBottleneckBlock::forward(const Tensor& x, Tensor* depthwise_out) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == opt_.in, "InvertedBottleneckBlock expects [N, H, W, " +
                                                          std::to_string(opt_.in) + "], got " + x.shape_str());
  Tensor y = has_expand() ? child("expand")->forward(x) : x;  // [N, H, W, expand]
  y = child("depthwise")->forward(y);                         // [N, H/s, W/s, expand]
  if (depthwise_out) *depthwise_out = y;
  if (has_se()) y = child("se")->forward(y);
  y = child("project")->forward(y);  // [N, H/s, W/s, out], linear
  if (has_residual()) y = merge_child(*this, "add", {y, x});
  return y;
}

}  // namespace bonsai::models
