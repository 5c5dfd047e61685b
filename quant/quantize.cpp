#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>

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
  const std::vector<float> absmax = weight_absmax(w, per_channel);
  const int64_t channels = static_cast<int64_t>(absmax.size());
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

// ---- the integer bias (quant/quantize.h) --------------------------------------

// The grids of the quantized tensors of eval-mode forwards on this thread, by
// storage, so a conv/dense can find the scale of its input. Entries hold the
// storage weakly: a freed tensor's entry expires, and a new tensor at the same
// address cannot inherit it.
struct KnownGrid {
  std::weak_ptr<Storage> storage;
  AffineQuant grid;
};
thread_local std::unordered_map<const Storage*, KnownGrid> known_grids;

void remember_grid(const Tensor& t, const AffineQuant& grid) {
  const std::shared_ptr<Storage>& storage = t.impl_ptr()->storage;
  if (known_grids.size() >= 4096)
    std::erase_if(known_grids, [](const auto& kv) { return kv.second.storage.expired(); });
  known_grids[storage.get()] = {storage, grid};
}

std::optional<AffineQuant> grid_of(const Tensor& t) {
  const std::shared_ptr<Storage>& storage = t.impl_ptr()->storage;
  auto it = known_grids.find(storage.get());
  if (it == known_grids.end() || it->second.storage.lock() != storage) return std::nullopt;
  return it->second.grid;
}

// What the integer graph's int32 bias adds on top of the simulation's float
// bias, per output channel, in the units of the layer's output (before the
// BN that follows, if any: the correction is divided by the BN's γ/σ).
// `kernel`: the fake-quantized kernel, channels last; `bias`: the layer's own
// (may be undefined); `pre_scale`: the folded mode's σ/γ (may be undefined).
Tensor integer_bias_correction(const Tensor& kernel, bool per_channel_grid, int num_bits, const Tensor& bias,
                               const BatchNorm2d* bn, const Tensor& pre_scale, double s_in) {
  const int64_t cout = kernel.dim(-1);
  const std::vector<float> absmax = weight_absmax(kernel, per_channel_grid);
  Tensor out = Tensor::empty({cout});
  for (int64_t c = 0; c < cout; ++c) {
    const auto [k_bn, shift] = bn ? batch_norm_affine(*bn, c) : std::pair<double, double>{1.0, 0.0};
    const FoldedChannel f =
        fold_channel(weight_quant(absmax[per_channel_grid ? c : 0], num_bits).scale, k_bn, shift,
                     pre_scale.defined() ? pre_scale.data<float>()[c] : 1.0, bias.defined() ? bias.data<float>()[c] : 0.0);
    const double delta = s_in * f.weight_scale * quantize_bias(f.bias, s_in, f.weight_scale) - f.bias;
    out.data<float>()[c] = k_bn == 0 ? 0.0f : static_cast<float>(delta / k_bn);
  }
  return out;
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
  if (!is_training()) remember_grid(y, grid());
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

QuantConv2d::QuantConv2d(const Conv2d& conv, const QuantLayerOptions& o, std::shared_ptr<BatchNorm2d> next_bn)
    : conv_(conv.options()), opt_(o), next_bn_(std::move(next_bn)) {
  BONSAI_CHECK(!folded_bn() || folded_bn()->gamma.numel() == conv.options().out,
               "QuantConv2d: the folded batch norm has " + std::to_string(folded_bn() ? folded_bn()->gamma.numel() : 0) +
                   " channels, the conv " + std::to_string(conv.options().out));
  check_num_bits(o.num_bits_weight);
  kernel = add_parameter("kernel", conv.kernel, role_of(conv, "kernel"));
  if (conv.bias.defined()) bias = add_parameter("bias", conv.bias, ParamRole::bias);
  if (o.quantize_input) add("input_quant", make_act_quant(o));
  if (o.quantize_output) add("output_quant", make_act_quant(o));
}

Tensor QuantConv2d::quantized_kernel() const {
  const Tensor w = folded_bn() ? ops::mul(kernel, bn_fold_factor(*folded_bn(), false)) : kernel;
  return fake_quant_weight(w, opt_.per_channel, opt_.num_bits_weight);
}

Tensor QuantConv2d::unfold_scale() const { return folded_bn() ? bn_fold_factor(*folded_bn(), true) : Tensor(); }

Tensor QuantConv2d::forward(const Tensor& x_in) {
  BONSAI_CHECK(x_in.rank() == 4 && x_in.dim(3) == conv_.in,
               "QuantConv2d expects [N, H, W, " + std::to_string(conv_.in) + "], got " + x_in.shape_str());
  Tensor x = opt_.quantize_input ? child("input_quant")->forward(x_in) : x_in;
  // Folded: conv(x, q(w·γ/σ))·σ/γ + bias, so the BN that follows sees what
  // the float conv would give it.
  const Tensor wq = quantized_kernel();
  Tensor y = ops::conv2d(
      x, wq, folded_bn() ? Tensor() : bias,
      {.stride_h = conv_.stride, .stride_w = conv_.stride, .dilation_h = conv_.dilation,
       .dilation_w = conv_.dilation,
       .pad = window_padding(conv_.padding, x.dim(1), x.dim(2), conv_.kernel, conv_.stride, conv_.dilation),
       .groups = conv_.groups});
  macs_ = y.dim(1) * y.dim(2) * kernel.numel();
  if (folded_bn()) {
    y = ops::mul(y, unfold_scale());
    if (bias.defined()) y = ops::add(y, bias);
  }
  if (opt_.simulate_integer_bias && !is_training()) {
    if (auto in = grid_of(x)) {
      NoGrad ng;
      y = ops::add(y, integer_bias_correction(wq, opt_.per_channel, opt_.num_bits_weight, bias,
                                              next_bn_.get(), unfold_scale(), in->scale));
    }
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
  const Tensor wq = quantized_kernel();
  Tensor y = ops::dense(x, wq, bias);
  if (opt_.simulate_integer_bias && !is_training()) {
    if (auto in = grid_of(x)) {
      NoGrad ng;
      y = ops::add(y, integer_bias_correction(wq, /*per_channel_grid=*/false, opt_.num_bits_weight,
                                              bias, nullptr, Tensor(), in->scale));
    }
  }
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
  // A max-pool keeps its input's grid (it has no quantizer of its own).
  if (!is_training() && dynamic_cast<const MaxPool2d*>(layer_.get()))
    if (auto in = grid_of(x)) remember_grid(y, *in);
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
                       .activation_range = config_.activation_range,
                       .simulate_integer_bias = config_.simulate_integer_bias};
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
    lo.fold_batch_norm = config_.fold_batch_norm;
    return std::make_shared<QuantConv2d>(*conv, lo, std::dynamic_pointer_cast<BatchNorm2d>(next_module_));
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

std::pair<double, double> batch_norm_affine(const BatchNorm2d& bn, int64_t c) {
  const double k = bn.gamma.data<float>()[c] /
                   std::sqrt(static_cast<double>(bn.moving_variance.data<float>()[c]) + bn.options().epsilon);
  return {k, bn.beta.data<float>()[c] - bn.moving_mean.data<float>()[c] * k};
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
