#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "core/autograd.h"
#include "core/ops.h"
#include "quant/scheme.h"
#include "quant/trace.h"

namespace bonsai::quant {

namespace {

std::map<std::string, BlockRule>& block_rules() {
  static std::map<std::string, BlockRule> rules;
  return rules;
}

ParamRole role_of(const Module& layer, const std::string& name) {
  for (const NamedParam& p : layer.named_parameters())
    if (p.name == name) return p.role;
  return ParamRole::other;
}

// [-max|w|, max|w|] per last-axis channel (or per tensor): TFMOT's
// LastValueQuantizer range for symmetric narrow-range weights.
void symmetric_range(const Tensor& w, bool per_channel, Tensor& min, Tensor& max) {
  const int64_t channels = per_channel ? w.dim(-1) : 1, n = w.numel();
  std::vector<float> absmax(channels, 0.0f);
  const float* p = w.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    float& a = absmax[per_channel ? i % channels : 0];
    a = std::max(a, std::abs(p[i]));
  }
  min = Tensor::empty({channels});
  max = Tensor::empty({channels});
  for (int64_t c = 0; c < channels; ++c) {
    min.data<float>()[c] = -absmax[c];
    max.data<float>()[c] = absmax[c];
  }
}

// γ/σ (or its reciprocal σ/γ) per channel, σ = sqrt(moving variance + ε),
// differentiable in γ only (the moving variance is a statistic).
Tensor bn_fold_factor(const BatchNorm2d& bn, bool reciprocal) {
  const int64_t c = bn.gamma.numel();
  Tensor f = Tensor::empty({c});
  std::vector<float> sigma(c);
  const float* g = bn.gamma.data<float>();
  for (int64_t i = 0; i < c; ++i) {
    sigma[i] = std::sqrt(bn.moving_variance.data<float>()[i] + bn.options().epsilon);
    f.data<float>()[i] = reciprocal ? sigma[i] / g[i] : g[i] / sigma[i];
  }
  return record(f, reciprocal ? "bn_unfold_factor" : "bn_fold_factor", {bn.gamma},
                [sigma, gamma = bn.gamma.detach(), reciprocal](const Tensor& gy) {
                  const int64_t n = gy.numel();
                  Tensor gg = Tensor::empty({n});
                  for (int64_t i = 0; i < n; ++i) {
                    const float gi = gamma.data<float>()[i];
                    gg.data<float>()[i] = gy.data<float>()[i] * (reciprocal ? -sigma[i] / (gi * gi) : 1.0f / sigma[i]);
                  }
                  return Grads{gg};
                });
}

Tensor fake_quant_weight(const Tensor& w, bool per_channel, int num_bits) {
  Tensor min, max;
  symmetric_range(w, per_channel, min, max);
  FakeQuantOptions o{.num_bits = num_bits, .narrow_range = true};
  return per_channel ? fake_quant_per_channel(w, min, max, o) : fake_quant(w, min, max, o);
}

bool is_relu_like(const Module* m) {
  auto* a = dynamic_cast<const Activation*>(m);
  return a && (a->kind() == ActivationKind::relu || a->kind() == ActivationKind::relu6);
}

bool is_quantized_module(const Module& m) {
  return dynamic_cast<const QuantConv2d*>(&m) || dynamic_cast<const QuantDense*>(&m) ||
         dynamic_cast<const QuantLayer*>(&m) || dynamic_cast<const QuantMerge*>(&m) ||
         dynamic_cast<const ActivationQuantizer*>(&m);
}

// sigmoid and hard_sigmoid outputs get fixed grids: TFLite's LOGISTIC
// output (scale 1/256, zero point -128) and the exact [0, 1].
std::optional<std::pair<float, float>> fixed_output_range(const Module& m) {
  auto* a = dynamic_cast<const Activation*>(&m);
  if (!a) return std::nullopt;
  if (a->kind() == ActivationKind::sigmoid) return std::make_pair(0.0f, 255.0f / 256.0f);
  if (a->kind() == ActivationKind::hard_sigmoid) return std::make_pair(0.0f, 1.0f);
  return std::nullopt;
}

}  // namespace

// ---- ActivationQuantizer ----------------------------------------------------

ActivationQuantizer::ActivationQuantizer(int num_bits, const MovingAverageOptions& range)
    : observer_(range), num_bits_(num_bits) {
  check_num_bits(num_bits);
  BONSAI_CHECK(range.channels == 0, "ActivationQuantizer: activations are quantized per tensor");
  add_buffer("min", observer_.min());
  add_buffer("max", observer_.max());
  add_buffer("step", observer_.step());
}

void ActivationQuantizer::set_range(float min, float max) {
  observer_.min().data<float>()[0] = min;
  observer_.max().data<float>()[0] = max;
}

Tensor ActivationQuantizer::forward(const Tensor& x) {
  if (recorder_) {
    recorder_(x);
    return x;
  }
  if (is_training()) observer_.observe(x);
  Tensor y = fake_quant(x, observer_.min(), observer_.max(), {.num_bits = num_bits_});
  record_traced(this, x, y);
  return y;
}

AffineQuant ActivationQuantizer::grid() const {
  return nudge_range(observer_.min().item(), observer_.max().item(), {.num_bits = num_bits_});
}

// ---- quantized layers -------------------------------------------------------

namespace {
std::shared_ptr<ActivationQuantizer> make_act_quant(const QuantLayerOptions& o) {
  return std::make_shared<ActivationQuantizer>(o.num_bits_activation, o.activation_range);
}
}  // namespace

QuantConv2d::QuantConv2d(const Conv2d& conv, const QuantLayerOptions& o, std::shared_ptr<BatchNorm2d> folded_bn)
    : conv_(conv.options()), opt_(o), folded_bn_(std::move(folded_bn)) {
  BONSAI_CHECK(!folded_bn_ || folded_bn_->gamma.numel() == conv.options().out,
               "QuantConv2d: the folded batch norm has " + std::to_string(folded_bn_ ? folded_bn_->gamma.numel() : 0) +
                   " channels, the conv " + std::to_string(conv.options().out));
  check_num_bits(o.num_bits_weight);
  kernel = add_parameter("kernel", conv.kernel, role_of(conv, "kernel"));
  if (conv.bias.defined()) bias = add_parameter("bias", conv.bias, ParamRole::bias);
  if (o.quantize_input) add("input_quant", make_act_quant(o));
  if (o.quantize_output) add("output_quant", make_act_quant(o));
}

Tensor QuantConv2d::quantized_kernel() const {
  const Tensor w = folded_bn_ ? ops::mul(kernel, bn_fold_factor(*folded_bn_, false)) : kernel;
  return fake_quant_weight(w, opt_.per_channel, opt_.num_bits_weight);
}

Tensor QuantConv2d::unfold_scale() const { return folded_bn_ ? bn_fold_factor(*folded_bn_, true) : Tensor(); }

Tensor QuantConv2d::forward(const Tensor& x_in) {
  BONSAI_CHECK(x_in.rank() == 4 && x_in.dim(3) == conv_.in,
               "QuantConv2d expects [N, H, W, " + std::to_string(conv_.in) + "], got " + x_in.shape_str());
  Tensor x = opt_.quantize_input ? child("input_quant")->forward(x_in) : x_in;
  // Folded: conv(x, q(w·γ/σ))·σ/γ + bias, so the BN that follows sees what
  // the float conv would give it.
  Tensor y = ops::conv2d(
      x, quantized_kernel(), folded_bn_ ? Tensor() : bias,
      {.stride_h = conv_.stride, .stride_w = conv_.stride, .dilation_h = conv_.dilation,
       .dilation_w = conv_.dilation,
       .pad = window_padding(conv_.padding, x.dim(1), x.dim(2), conv_.kernel, conv_.stride, conv_.dilation),
       .groups = conv_.groups});
  macs_ = y.dim(1) * y.dim(2) * kernel.numel();
  if (folded_bn_) {
    y = ops::mul(y, unfold_scale());
    if (bias.defined()) y = ops::add(y, bias);
  }
  record_traced(this, x, y);
  return opt_.quantize_output ? child("output_quant")->forward(y) : y;
}

QuantDense::QuantDense(const Dense& dense, const QuantLayerOptions& o) : opt_(o) {
  check_num_bits(o.num_bits_weight);
  kernel = add_parameter("kernel", dense.kernel, ParamRole::dense_kernel);
  if (dense.bias.defined()) bias = add_parameter("bias", dense.bias, ParamRole::bias);
  if (o.quantize_input) add("input_quant", make_act_quant(o));
  if (o.quantize_output) add("output_quant", make_act_quant(o));
}

Tensor QuantDense::quantized_kernel() const {
  return fake_quant_weight(kernel, /*per_channel=*/false, opt_.num_bits_weight);
}

Tensor QuantDense::forward(const Tensor& x_in) {
  Tensor x = opt_.quantize_input ? child("input_quant")->forward(x_in) : x_in;
  Tensor y = ops::dense(x, quantized_kernel(), bias);
  record_traced(this, x, y);
  return opt_.quantize_output ? child("output_quant")->forward(y) : y;
}

QuantLayer::QuantLayer(std::shared_ptr<Module> layer, const QuantLayerOptions& o) : layer_(std::move(layer)) {
  BONSAI_CHECK(layer_ && layer_->children().empty(),
               "QuantLayer wraps a leaf layer, got " + (layer_ ? layer_->type_name() : std::string("null")));
  for (const NamedParam& p : layer_->named_parameters()) add_parameter(p.name, p.tensor, p.role);
  for (const auto& [name, t] : layer_->named_buffers()) add_buffer(name, t);
  if (o.quantize_output) add("output_quant", make_act_quant(o));
}

Tensor QuantLayer::forward(const Tensor& x) {
  layer_->train(is_training() && !frozen_);
  Tensor y = layer_->forward(x);
  record_traced(this, x, y);
  return children().empty() ? y : child("output_quant")->forward(y);
}

QuantMerge::QuantMerge(std::shared_ptr<Merge> merge, const QuantLayerOptions& o) : merge_(std::move(merge)) {
  BONSAI_CHECK(merge_ && merge_->children().empty() && merge_->named_parameters().empty(),
               "QuantMerge wraps a parameter-free merge layer");
  if (o.quantize_output) add("output_quant", make_act_quant(o));
}

Tensor QuantMerge::merge(const std::vector<Tensor>& inputs) {
  Tensor y = merge_->merge(inputs);
  record_traced(this, inputs, y);
  return children().empty() ? y : child("output_quant")->forward(y);
}

// ---- the walk -----------------------------------------------------------------

Quantizer::Quantizer(const QuantConfig& config) : config_(config) {
  check_num_bits(config.num_bits_weight);
  check_num_bits(config.num_bits_activation);
}

std::shared_ptr<ActivationQuantizer> Quantizer::activation_quantizer() const {
  return std::make_shared<ActivationQuantizer>(config_.num_bits_activation, config_.activation_range);
}

std::shared_ptr<Module> Quantizer::quantized(const std::shared_ptr<Module>& m, const Module* next) {
  if (is_quantized_module(*m)) return m;
  QuantLayerOptions lo{.num_bits_weight = config_.num_bits_weight,
                       .per_channel = config_.per_channel_weights,
                       .num_bits_activation = config_.num_bits_activation,
                       .activation_range = config_.activation_range};
  auto take_input = [&] {
    const bool place = config_.quantize_input && !input_placed_;
    input_placed_ = true;
    return place;
  };

  // A registered rule comes first: that is how a type declares its form.
  auto rule = block_rules().find(m->type_name());
  if (rule != block_rules().end()) {
    std::shared_ptr<Module> twin = rule->second(m, *this);
    BONSAI_CHECK(twin != nullptr, "quantize rule for " + m->type_name() + " returned null");
    return twin;
  }
  if (auto* conv = dynamic_cast<Conv2d*>(m.get())) {
    lo.quantize_input = take_input();
    lo.quantize_output = !dynamic_cast<const BatchNorm2d*>(next) && !is_relu_like(next);
    std::shared_ptr<BatchNorm2d> folded;
    if (config_.fold_batch_norm && next_module_) folded = std::dynamic_pointer_cast<BatchNorm2d>(next_module_);
    return std::make_shared<QuantConv2d>(*conv, lo, folded);
  }
  if (auto* dense = dynamic_cast<Dense*>(m.get())) {
    lo.quantize_input = take_input();
    lo.quantize_output = !is_relu_like(next);
    return std::make_shared<QuantDense>(*dense, lo);
  }
  if (auto merge = std::dynamic_pointer_cast<Merge>(m)) {
    const bool fusable = dynamic_cast<Add*>(m.get()) || dynamic_cast<Multiply*>(m.get());
    lo.quantize_output = !(fusable && is_relu_like(next));
    return std::make_shared<QuantMerge>(merge, lo);
  }
  if (dynamic_cast<Flatten*>(m.get()) || dynamic_cast<Dropout*>(m.get()) || dynamic_cast<Identity*>(m.get()))
    return m;  // views and no-ops: nothing to quantize, nothing to trace
  if (m->children().empty()) {
    if (dynamic_cast<BatchNorm2d*>(m.get())) {
      lo.quantize_output = !is_relu_like(next);
    } else if (dynamic_cast<MaxPool2d*>(m.get())) {
      lo.quantize_output = false;
    } else if (auto range = fixed_output_range(*m)) {
      lo.quantize_output = true;
      lo.activation_range = {.init_min = range->first, .init_max = range->second, .init = RangeInit::fixed,
                             .freeze_step = 0};
    } else {
      lo.quantize_output = true;  // activations, pools, resize, and leaves bonsai does not know
    }
    return std::make_shared<QuantLayer>(m, lo);
  }

  // A block without a rule: the default treatment of its children.
  quantize_children(*m);
  return m;
}

void Quantizer::quantize_children(Module& block) {
  // Copy: replace_child edits the list being walked.
  const auto kids = block.children();
  for (size_t i = 0; i < kids.size(); ++i) {
    const Module* next = i + 1 < kids.size() ? kids[i + 1].second.get() : nullptr;
    next_module_ = i + 1 < kids.size() ? kids[i + 1].second : nullptr;
    std::shared_ptr<Module> q = quantized(kids[i].second, next);
    if (q != kids[i].second) block.replace_child(kids[i].first, q);
  }
}

void register_block_rule(const std::string& type_name, BlockRule rule) {
  block_rules()[type_name] = std::move(rule);
}

void quantize(Module& model, const QuantConfig& config) {
  bool already = false;
  model.visit([&](const std::string&, Module& m) { already = already || is_quantized_module(m); });
  BONSAI_CHECK(!already, "quantize: the model (" + model.type_name() + ") is already quantized");
  BONSAI_CHECK(!model.children().empty(),
               "quantize: the model must be a container (a " + model.type_name() + " has no children to swap)");
  Quantizer q(config);
  q.quantize_children(model);
}

void freeze_batch_norm(Module& model, bool frozen) {
  model.visit([&](const std::string&, Module& m) {
    auto* q = dynamic_cast<QuantLayer*>(&m);
    if (q && dynamic_cast<const BatchNorm2d*>(&q->layer())) q->freeze(frozen);
  });
}

std::vector<QuantizerInfo> list_quantizers(Module& model) {
  std::vector<QuantizerInfo> out;
  model.visit([&](const std::string& name, Module& m) {
    if (dynamic_cast<ActivationQuantizer*>(&m)) out.push_back({name, "activation"});
    else if (dynamic_cast<QuantConv2d*>(&m) || dynamic_cast<QuantDense*>(&m)) out.push_back({name, "weight"});
  });
  return out;
}

std::vector<std::string> quantizer_state_names(Module& model) {
  std::vector<std::string> out;
  model.visit([&](const std::string& name, Module& m) {
    if (!dynamic_cast<ActivationQuantizer*>(&m)) return;
    for (const auto& [buffer, t] : m.named_buffers(name)) out.push_back(buffer);
  });
  return out;
}

LoadReport load_float_state(Module& model, const StateDict& source) {
  // Names contain no '*', so each is a glob matching exactly itself.
  return load_state(model, source, {.exclude = quantizer_state_names(model), .strict = true});
}

}  // namespace bonsai::quant
