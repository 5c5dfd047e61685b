#include "layers/squeeze_excitation.h"

#include <algorithm>
#include <cmath>

namespace bonsai {

int64_t make_divisible(double value, int divisor, int64_t min_value, bool round_down_protect) {
  BONSAI_CHECK(divisor > 0 && value > 0, "make_divisible: value " + std::to_string(value) +
                                              " and divisor " + std::to_string(divisor) + " must be positive");
  if (min_value <= 0) min_value = divisor;
  // Python's int() truncates toward zero; the value is positive, so floor.
  const auto truncated = static_cast<int64_t>(value + divisor / 2.0);
  int64_t rounded = std::max(min_value, truncated / divisor * divisor);
  if (round_down_protect && static_cast<double>(rounded) < 0.9 * value) rounded += divisor;
  return rounded;
}

int64_t round_filters(double filters, double multiplier, int divisor, int64_t min_depth,
                      bool round_down_protect) {
  return make_divisible(filters * multiplier, divisor, min_depth, round_down_protect);
}

SqueezeExcitation::SqueezeExcitation(const SqueezeExcitationOptions& o) : opt_(o) {
  BONSAI_CHECK(o.in_filters > 0 && o.out_filters > 0 && o.se_ratio > 0 && o.se_ratio <= 1,
               "SqueezeExcitation: in_filters=" + std::to_string(o.in_filters) +
                   " out_filters=" + std::to_string(o.out_filters) +
                   " se_ratio=" + std::to_string(o.se_ratio) + " (need positive filters, 0 < ratio <= 1)");
  // int(in * ratio) truncates like Python's int(); max(1, .) keeps tiny layers alive.
  const auto squeezed = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(o.in_filters) * o.se_ratio));
  reduced_ = make_divisible(static_cast<double>(squeezed), o.divisible_by, 0, o.round_down_protect);
  add("pool", std::make_shared<GlobalAvgPool>());
  add("reduce", std::make_shared<Conv2d>(Conv2dOptions{.in = o.out_filters, .out = reduced_, .kernel = 1,
                                                       .bias = true, .padding = o.padding, .seed = o.seed}));
  add("act", std::make_shared<Activation>(o.activation));
  add("expand", std::make_shared<Conv2d>(Conv2dOptions{.in = reduced_, .out = o.out_filters, .kernel = 1,
                                                       .bias = true, .padding = o.padding,
                                                       .seed = o.seed + 1}));
  add("gate", std::make_shared<Activation>(o.gating_activation));
  add("scale", std::make_shared<Multiply>());
}

Tensor SqueezeExcitation::forward(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == opt_.out_filters,
               "SqueezeExcitation expects [N, H, W, " + std::to_string(opt_.out_filters) + "], got " +
                   x.shape_str());
  Tensor s = child("pool")->forward(x);  // [N, 1, 1, C]
  s = child("act")->forward(child("reduce")->forward(s));
  s = child("gate")->forward(child("expand")->forward(s));  // [N, 1, 1, C]
  return merge_child(*this, "scale", {x, s});
}

}  // namespace bonsai
