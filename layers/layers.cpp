#include "layers/layers.h"

#include <typeinfo>

#include <cmath>

#include "core/dist/sync_batch_norm.h"

namespace bonsai {

ops::Padding window_padding(PaddingStyle style, int64_t h, int64_t w, int kernel, int stride, int dilation) {
  switch (style) {
    case PaddingStyle::tf_same:
      return ops::tf_same_padding(h, w, kernel, kernel, stride, stride, dilation, dilation);
    case PaddingStyle::symmetric: {
      int p = dilation * (kernel - 1) / 2;
      return {p, p, p, p};
    }
    case PaddingStyle::valid: return {};
  }
  return {};
}

Conv2d::Conv2d(const Conv2dOptions& o) : opt_(o) {
  BONSAI_CHECK(o.in > 0 && o.out > 0 && o.groups > 0 && o.in % o.groups == 0 && o.out % o.groups == 0,
               "Conv2d: in=" + std::to_string(o.in) + " out=" + std::to_string(o.out) +
                   " groups=" + std::to_string(o.groups) + " are inconsistent");
  std::mt19937 rng(o.seed);
  const int64_t fan_in = o.kernel * o.kernel * (o.in / o.groups);
  // He normal, as Keras 'he_normal' draws it (truncated normal approximated
  // by a plain normal of the same standard deviation).
  kernel = add_parameter("kernel",
                         Tensor::randn({o.kernel, o.kernel, o.in / o.groups, o.out}, rng,
                                       std::sqrt(2.0f / static_cast<float>(fan_in))),
                         o.groups == o.in && o.groups > 1 ? ParamRole::depthwise_kernel
                                                          : ParamRole::conv_kernel);
  if (o.bias) bias = add_parameter("bias", Tensor::zeros({o.out}), ParamRole::bias);
}

ops::Padding Conv2d::padding_for(int64_t h, int64_t w) const {
  return window_padding(opt_.padding, h, w, opt_.kernel, opt_.stride, opt_.dilation);
}

Tensor Conv2d::forward(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(3) == opt_.in,
               "Conv2d expects [N, H, W, " + std::to_string(opt_.in) + "], got " + x.shape_str());
  Tensor y = ops::conv2d(x, kernel, bias,
                     {.stride_h = opt_.stride, .stride_w = opt_.stride, .dilation_h = opt_.dilation,
                      .dilation_w = opt_.dilation, .pad = padding_for(x.dim(1), x.dim(2)),
                      .groups = opt_.groups});
  macs_ = y.dim(1) * y.dim(2) * kernel.numel();  // per sample: OH*OW*K*K*(in/g)*out
  return y;
}

BatchNorm2d::BatchNorm2d(const BatchNormOptions& o) : opt_(o) {
  BONSAI_CHECK(o.channels > 0, "BatchNorm2d: channels must be positive");
  gamma = add_parameter("gamma", Tensor::full({o.channels}, 1.f), ParamRole::bn_gamma);
  beta = add_parameter("beta", Tensor::zeros({o.channels}), ParamRole::bn_beta);
  moving_mean = add_buffer("moving_mean", Tensor::zeros({o.channels}));
  moving_variance = add_buffer("moving_variance", Tensor::full({o.channels}, 1.f));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  const ops::BatchNormParams p{.training = is_training(), .momentum = opt_.momentum, .epsilon = opt_.epsilon};
  if (p.training && sync_)
    return dist::sync_batch_norm(x, gamma, beta, moving_mean, moving_variance, p, *sync_);
  return ops::batch_norm(x, gamma, beta, moving_mean, moving_variance, p);
}

Tensor batch_norm_then(Module& bn, Module& act, const Tensor& x) {
  auto* b = typeid(bn) == typeid(BatchNorm2d) ? static_cast<BatchNorm2d*>(&bn) : nullptr;
  auto* a = typeid(act) == typeid(Activation) ? static_cast<Activation*>(&act) : nullptr;
  if (b && a && a->kind() == ActivationKind::relu && b->is_training() && !b->synced()) {
    const BatchNormOptions& o = b->options();
    return ops::batch_norm_relu(x, b->gamma, b->beta, b->moving_mean, b->moving_variance,
                                {.training = true, .momentum = o.momentum, .epsilon = o.epsilon});
  }
  return act.forward(bn.forward(x));
}

void use_sync_batch_norm(Module& m, std::shared_ptr<dist::Communicator> comm) {
  m.visit([&](const std::string&, Module& child) {
    if (auto* bn = dynamic_cast<BatchNorm2d*>(&child)) bn->sync_statistics(comm);
  });
}

Dense::Dense(const DenseOptions& o) {
  BONSAI_CHECK(o.in > 0 && o.out > 0, "Dense: in and out must be positive");
  std::mt19937 rng(o.seed);
  float limit = std::sqrt(6.0f / static_cast<float>(o.in + o.out));  // Glorot uniform
  kernel = add_parameter("kernel", Tensor::uniform({o.in, o.out}, rng, -limit, limit),
                         ParamRole::dense_kernel);
  if (o.bias) bias = add_parameter("bias", Tensor::zeros({o.out}), ParamRole::bias);
}

Tensor Dense::forward(const Tensor& x) { return ops::dense(x, kernel, bias); }

Tensor Activation::forward(const Tensor& x) {
  switch (kind_) {
    case ActivationKind::relu: return ops::relu(x);
    case ActivationKind::relu6: return ops::relu6(x);
    case ActivationKind::hard_swish: return ops::hard_swish(x);
    case ActivationKind::hard_sigmoid: return ops::hard_sigmoid(x);
    case ActivationKind::sigmoid: return ops::sigmoid(x);
  }
  return x;
}

std::string Activation::type_name() const {
  switch (kind_) {
    case ActivationKind::relu: return "ReLU";
    case ActivationKind::relu6: return "ReLU6";
    case ActivationKind::hard_swish: return "HardSwish";
    case ActivationKind::hard_sigmoid: return "HardSigmoid";
    case ActivationKind::sigmoid: return "Sigmoid";
  }
  return "Activation";
}

Tensor MaxPool2d::forward(const Tensor& x) {
  ops::Padding pad = window_padding(opt_.padding, x.dim(1), x.dim(2), opt_.kernel, opt_.stride, 1);
  return ops::max_pool2d(x, {.kernel_h = opt_.kernel, .kernel_w = opt_.kernel, .stride_h = opt_.stride,
                             .stride_w = opt_.stride, .pad = pad});
}

Tensor AvgPool2d::forward(const Tensor& x) {
  ops::Padding pad = window_padding(opt_.padding, x.dim(1), x.dim(2), opt_.kernel, opt_.stride, 1);
  return ops::avg_pool2d(x, {.kernel_h = opt_.kernel, .kernel_w = opt_.kernel, .stride_h = opt_.stride,
                             .stride_w = opt_.stride, .pad = pad, .exclude_padding = true});
}

Tensor Resize::forward(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4, "Resize expects [N, H, W, C], got " + x.shape_str());
  if (opt_.height > 0) return ops::resize_bilinear(x, opt_.height, opt_.width);
  return ops::resize_bilinear(x, x.dim(1) * opt_.scale, x.dim(2) * opt_.scale);
}

Tensor Merge::forward(const Tensor&) {
  throw_error(__FILE__, __LINE__, type_name() + " merges several tensors: call merge({...}), not forward()");
}

Tensor Add::merge(const std::vector<Tensor>& inputs) {
  BONSAI_CHECK(!inputs.empty(), "Add needs at least one input");
  Tensor y = inputs[0];
  for (size_t i = 1; i < inputs.size(); ++i) {
    BONSAI_CHECK(inputs[i].shape() == y.shape(),
                 "Add: input " + std::to_string(i) + " is " + inputs[i].shape_str() + ", input 0 is " + y.shape_str());
    y = ops::add(y, inputs[i]);
  }
  return y;
}

Tensor Multiply::merge(const std::vector<Tensor>& inputs) {
  BONSAI_CHECK(inputs.size() == 2, "Multiply takes two inputs, got " + std::to_string(inputs.size()));
  return ops::mul(inputs[0], inputs[1]);
}

Tensor Concat::merge(const std::vector<Tensor>& inputs) { return ops::concat(inputs); }

Tensor ResizeLike::merge(const std::vector<Tensor>& inputs) {
  BONSAI_CHECK(inputs.size() == 2 && inputs[0].rank() == 4 && inputs[1].rank() == 4,
               "ResizeLike takes [N, h, w, C] and a [N, H, W, *] size reference");
  return ops::resize_bilinear(inputs[0], inputs[1].dim(1), inputs[1].dim(2));
}

Tensor merge_child(const Module& parent, const std::string& name, const std::vector<Tensor>& inputs) {
  auto m = std::dynamic_pointer_cast<Merge>(parent.child(name));
  BONSAI_CHECK(m, parent.type_name() + ": child '" + name + "' is a " + parent.child(name)->type_name() +
                      ", not a merge layer");
  return m->merge(inputs);
}

Tensor merge_then(const Module& parent, const std::string& merge, Module& act, const std::vector<Tensor>& inputs) {
  const auto m = parent.child(merge);
  const auto* a = typeid(act) == typeid(Activation) ? static_cast<Activation*>(&act) : nullptr;
  if (m && typeid(*m) == typeid(Add) && a && a->kind() == ActivationKind::relu && inputs.size() == 2 &&
      inputs[0].shape() == inputs[1].shape())
    return ops::add_relu(inputs[0], inputs[1]);
  return act.forward(merge_child(parent, merge, inputs));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& [name, child] : children()) y = child->forward(y);
  return y;
}

}  // namespace bonsai
