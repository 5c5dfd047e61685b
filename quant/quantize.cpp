#include "quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/ops.h"
#include "quant/scheme.h"

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

Tensor fake_quant_weight(const Tensor& w, bool per_channel, int num_bits) {
  Tensor min, max;
  symmetric_range(w, per_channel, min, max);
  FakeQuantOptions o{.num_bits = num_bits, .narrow_range = true};
  return per_channel ? fake_quant_per_channel(w, min, max, o) : fake_quant(w, min, max, o);
}

bool is_quantizing_activation(const Module* m) {
  auto* a = dynamic_cast<const Activation*>(m);
  return a && (a->kind() == ActivationKind::relu || a->kind() == ActivationKind::relu6 ||
               a->kind() == ActivationKind::hard_swish);
}

bool is_relu_like(const Module* m) {
  auto* a = dynamic_cast<const Activation*>(m);
  return a && (a->kind() == ActivationKind::relu || a->kind() == ActivationKind::relu6);
}

bool is_quantized_module(const Module& m) {
  return dynamic_cast<const QuantConv2d*>(&m) || dynamic_cast<const QuantDense*>(&m) ||
         dynamic_cast<const OutputQuantized*>(&m) || dynamic_cast<const ActivationQuantizer*>(&m);
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

Tensor ActivationQuantizer::forward(const Tensor& x) {
  if (is_training()) observer_.observe(x);
  return fake_quant(x, observer_.min(), observer_.max(), {.num_bits = num_bits_});
}

// ---- quantized layers -------------------------------------------------------

namespace {
std::shared_ptr<ActivationQuantizer> make_act_quant(const QuantLayerOptions& o) {
  return std::make_shared<ActivationQuantizer>(o.num_bits_activation, o.activation_range);
}
}  // namespace

QuantConv2d::QuantConv2d(const Conv2d& conv, const QuantLayerOptions& o) : conv_(conv.options()), opt_(o) {
  check_num_bits(o.num_bits_weight);
  kernel = add_parameter("kernel", conv.kernel, role_of(conv, "kernel"));
  if (conv.bias.defined()) bias = add_parameter("bias", conv.bias, ParamRole::bias);
  if (o.quantize_input) add("input_quant", make_act_quant(o));
  if (o.quantize_output) add("output_quant", make_act_quant(o));
}

Tensor QuantConv2d::quantized_kernel() const {
  return fake_quant_weight(kernel, opt_.per_channel, opt_.num_bits_weight);
}

Tensor QuantConv2d::forward(const Tensor& x_in) {
  BONSAI_CHECK(x_in.rank() == 4 && x_in.dim(3) == conv_.in,
               "QuantConv2d expects [N, H, W, " + std::to_string(conv_.in) + "], got " + x_in.shape_str());
  Tensor x = opt_.quantize_input ? child("input_quant")->forward(x_in) : x_in;
  Tensor y = ops::conv2d(
      x, quantized_kernel(), bias,
      {.stride_h = conv_.stride, .stride_w = conv_.stride, .dilation_h = conv_.dilation,
       .dilation_w = conv_.dilation,
       .pad = window_padding(conv_.padding, x.dim(1), x.dim(2), conv_.kernel, conv_.stride, conv_.dilation),
       .groups = conv_.groups});
  macs_ = y.dim(1) * y.dim(2) * kernel.numel();
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
  return opt_.quantize_output ? child("output_quant")->forward(y) : y;
}

OutputQuantized::OutputQuantized(std::shared_ptr<Module> layer, const QuantLayerOptions& o)
    : layer_(std::move(layer)) {
  BONSAI_CHECK(layer_ && layer_->children().empty(),
               "OutputQuantized wraps a leaf layer, got " + (layer_ ? layer_->type_name() : std::string("null")));
  for (const NamedParam& p : layer_->named_parameters()) add_parameter(p.name, p.tensor, p.role);
  for (const auto& [name, t] : layer_->named_buffers()) add_buffer(name, t);
  add("output_quant", make_act_quant(o));
}

Tensor OutputQuantized::forward(const Tensor& x) {
  layer_->train(is_training());
  return child("output_quant")->forward(layer_->forward(x));
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

  if (auto* conv = dynamic_cast<Conv2d*>(m.get())) {
    lo.quantize_input = take_input();
    lo.quantize_output = !dynamic_cast<const BatchNorm2d*>(next) && !is_quantizing_activation(next);
    return std::make_shared<QuantConv2d>(*conv, lo);
  }
  if (auto* dense = dynamic_cast<Dense*>(m.get())) {
    lo.quantize_input = take_input();
    lo.quantize_output = !is_quantizing_activation(next);
    return std::make_shared<QuantDense>(*dense, lo);
  }
  if (dynamic_cast<BatchNorm2d*>(m.get()))
    return is_relu_like(next) ? m : std::make_shared<OutputQuantized>(m, lo);
  if (dynamic_cast<Activation*>(m.get()))
    return is_quantizing_activation(m.get()) ? std::make_shared<OutputQuantized>(m, lo) : m;
  if (dynamic_cast<AvgPool2d*>(m.get()) || dynamic_cast<GlobalAvgPool*>(m.get()) ||
      dynamic_cast<Resize*>(m.get()))
    return std::make_shared<OutputQuantized>(m, lo);

  // A block: its own rule, or the default treatment of its children.
  auto rule = block_rules().find(m->type_name());
  if (rule != block_rules().end()) {
    std::shared_ptr<Module> twin = rule->second(m, *this);
    BONSAI_CHECK(twin != nullptr, "quantize rule for " + m->type_name() + " returned null");
    return twin;
  }
  quantize_children(*m);
  return m;  // leaves not listed above (MaxPool2d, Flatten, Dropout, ...) stay as they are
}

void Quantizer::quantize_children(Module& block) {
  // Copy: replace_child edits the list being walked.
  const auto kids = block.children();
  for (size_t i = 0; i < kids.size(); ++i) {
    const Module* next = i + 1 < kids.size() ? kids[i + 1].second.get() : nullptr;
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
