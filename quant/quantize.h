// quantize(model, config): the QAT transform. It walks the module tree and
// swaps float layers for quantized ones that share the original parameter
// tensors (so names, optimiser state and checkpoints keep working), placing
// fake-quantizers where TFLite will execute quantized tensors.
//
//   auto model = models::build("mobilenet_v2", options);
//   load_state(*model, io::load_safetensors("float.safetensors"));     // before or ...
//   quant::quantize(*model, {.num_bits_weight = 8, .num_bits_activation = 8});
//   quant::load_float_state(*model, io::load_safetensors("float.safetensors"));  // ... after
//   for (const auto& q : quant::list_quantizers(*model)) std::cout << q.name << "\n";
//   // train as usual: observers update in train mode, freeze after freeze_step
//
// What goes where (the TFMOT Default8Bit / Model Garden placement, which is
// where TFLite executes quantized tensors):
//  - Conv2d → QuantConv2d: kernel fake-quantized symmetric narrow range, per
//    output channel (per tensor if per_channel_weights is false), the range
//    taken from the current kernel every step (TFMOT's LastValueQuantizer).
//    Dense → QuantDense: the same, always per tensor.
//  - Every other leaf layer is wrapped in a QuantLayer, every merge layer
//    (layers/layers.h: Add, Multiply, Concat, ResizeLike) in a QuantMerge;
//    the wrapper runs the float layer and, where the deployed graph has a
//    quantized tensor, an ActivationQuantizer on its output:
//      conv/dense output    only when no BatchNorm2d or quantizing activation
//                           follows it (they fold into the conv);
//      BatchNorm2d output   unless relu/relu6 follows (TFLite fuses it);
//      Add / Multiply       unless relu/relu6 follows (fused likewise);
//      relu, relu6, hard_swish and any layer bonsai does not know: always,
//                           with a moving-average range (quant/observer.h);
//      sigmoid, hard_sigmoid: always, with a fixed range ([0, 255/256] and
//                           [0, 1]: TFLite's LOGISTIC output grid, and the
//                           gate's exact range), so SE's gate is the table the
//                           integer graph looks up;
//      AvgPool2d, GlobalAvgPool, Resize, Concat, ResizeLike: always;
//      MaxPool2d: none (it keeps its input's grid).
//    Flatten, Dropout and Identity stay as they are (reshapes and no-ops).
//    "Follows" means the next sibling in registration order, which is the
//    data-flow order for Sequential and for the zoo's blocks (a merge child
//    sits where its op happens: ResNet's "add" between "bn3" and "act3").
//  - The model input: an "input_quant" on the first conv/dense layer met in
//    registration order (quantize_input).
// BatchNorm, two modes:
//  - kept (default, the Model Garden's): the conv's own kernel is
//    fake-quantized, BN runs as in float training, and conversion folds it.
//    With per-channel weights the fold is exact (the channel scale absorbs
//    γ/σ); so it is with per-tensor weights, whose converted model is then
//    per channel.
//  - folded in training (fold_batch_norm, PyTorch's fused QAT modules): a
//    conv followed by a BatchNorm2d quantizes the folded kernel
//    w·γ/σ_running, convolves, divides the result by γ/σ_running again and
//    hands it to the BN, which normalises with the batch statistics (so
//    training sees batch statistics while the weights are quantized exactly
//    as deployed). In eval mode — and in training once freeze_batch_norm()
//    is on — the BN uses its moving statistics, and the conv + BN is then
//    exactly the deployed folded conv, whose weights are the quantized
//    folded kernel: per-tensor weights stay per tensor.
//
// The integer bias (simulate_integer_bias, on by default): the integer
// graph holds each conv/dense channel's bias b (with the BN folded in, b =
// γ/σ·bias + β − μ·γ/σ) as an int32 code at scale s_in·s_w·|γ/σ|, which
// moves the output by up to half that scale: 1e-4 to 5e-2 of an output
// step in the zoo, enough to flip about one output in a thousand by a step
// and to move a few test images in deep nets. In eval mode QuantConv2d
// and QuantDense add that rounding to their output (divided by γ/σ when a
// BN follows, so that it lands after the BN), with s_in read from the
// quantizer that produced their input (through max-pools and views), so
// the simulation then computes the converted model's bias. In training the
// BN's batch statistics make the folded bias a moving target and nothing
// is added. Without a known input grid (a float input) nothing is added
// either; such a model does not convert.
//
// The quantizer state lives in buffers of the quantizer modules, e.g.
//   features.0.bn.output_quant.min / .max / .step   (BN output, no relu after)
//   backbone.block3.add.output_quant.min            (a residual sum)
// Float parameters keep their names (features.0.conv.kernel).
//
// A block therefore needs nothing to be quantized correctly if its forward
// goes through its children (merge layers included): the zoo's
// BottleneckBlock, InvertedBottleneckBlock, SqueezeExcitation, ASPP and
// SegmentationHead all work this way, and so does a user's block built the
// same way — and quant::convert (quant/int8_model.h) can then lower it to
// integer ops, because every op it runs is a quantized layer it can trace.
//
// A block whose forward computes outside its children (an inline ops::add)
// declares its quantized form by registering a rule for its type_name():
//
//   quant::register_block_rule("MyResidual",
//       [](const std::shared_ptr<Module>& block, quant::Quantizer& q) -> std::shared_ptr<Module> {
//         auto twin = std::make_shared<MyResidualQuantized>(block);  // adopts block's children
//         q.quantize_children(*twin);   // default treatment of conv/BN/act inside
//         return twin;                  // replaces the block in the tree
//       });
//
// The twin adopts the float block's children under the same names (so
// parameter names do not change) and adds its own ActivationQuantizer
// children (e.g. "add_quant") that its forward applies. Such a block trains
// with QAT, but conversion refuses it (naming the untraced value) unless its
// extra ops are quantized layers too. Layers and models know nothing of
// quantization: rules live with the quantizer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layers/layers.h"
#include "layers/state.h"
#include "quant/fake_quant.h"
#include "quant/observer.h"
#include "quant/scheme.h"

namespace bonsai::quant {

struct QuantConfig {
  int num_bits_weight = 8;      // 8; 4 and 6 in simulation only
  int num_bits_activation = 8;  // 8; 4 and 6 in simulation only
  bool per_channel_weights = true;  // conv and depthwise kernels; dense is always per tensor
  bool quantize_input = true;       // an input quantizer on the first conv/dense
  MovingAverageOptions activation_range;  // decay 0.999 from ±6 (TFMOT), init, freeze_step
  // BatchNorm folded in training (see "BatchNorm" below) instead of kept
  // and folded at conversion (the Model Garden's way, the default).
  bool fold_batch_norm = false;
  // In eval mode, each conv/dense adds to its output the rounding of the
  // int32 bias the integer graph will hold (see "The integer bias" above),
  // so the simulation computes what the converted model computes. false:
  // TFMOT's simulation, with the float bias.
  bool simulate_integer_bias = true;
};

// Fake-quantizes the tensor it is given, with a moving-average range (or a
// fixed one: freeze_step 0). The state is three buffers: "min", "max" and
// "step".
class ActivationQuantizer : public Module {
 public:
  ActivationQuantizer(int num_bits, const MovingAverageOptions& range);
  Tensor forward(const Tensor& x) override;  // train: observe, then fake-quantize
  std::string type_name() const override { return "ActivationQuantizer"; }
  const MovingAverageMinMax& observer() const { return observer_; }
  int num_bits() const { return num_bits_; }
  // The grid of the current range (quant/scheme.h nudge_range).
  AffineQuant grid() const;
  // Calibration (quant/calibrate.h): while a recorder is set, forward hands
  // it the input and returns the input unquantized; set_range then writes
  // the calibrated range into the state.
  void set_recorder(std::function<void(const Tensor&)> recorder) { recorder_ = std::move(recorder); }
  void set_range(float min, float max);
  // True for fixed ranges (sigmoid gates): nothing to observe or calibrate.
  bool fixed_range() const { return observer_.options().freeze_step == 0; }

 private:
  MovingAverageMinMax observer_;
  int num_bits_;
  std::function<void(const Tensor&)> recorder_;
};

// Options common to the quantized layers.
struct QuantLayerOptions {
  int num_bits_weight = 8;
  bool per_channel = true;  // conv only
  bool quantize_input = false;
  bool quantize_output = false;
  int num_bits_activation = 8;
  MovingAverageOptions activation_range;  // of the output quantizer (and the input one)
  bool simulate_integer_bias = true;      // conv and dense (QuantConfig)
  bool fold_batch_norm = false;           // conv: fold the following BN in training
};

// Conv2d with a fake-quantized kernel. Shares the float layer's "kernel" and
// "bias"; optional children "input_quant" and "output_quant".
class QuantConv2d : public Module {
 public:
  // `next_bn`: the BatchNorm2d that follows (null if none), folded in
  // training when o.fold_batch_norm and read for the integer bias. Its
  // tensors are read, never written here.
  QuantConv2d(const Conv2d& conv, const QuantLayerOptions& o, std::shared_ptr<BatchNorm2d> next_bn = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantConv2d"; }
  int64_t own_macs() const override { return macs_; }
  // The kernel as the forward uses it: fake-quantized, differentiable (STE);
  // in the folded mode the quantized folded kernel w·γ/σ.
  Tensor quantized_kernel() const;
  const Conv2dOptions& conv_options() const { return conv_; }
  bool per_channel() const { return opt_.per_channel; }
  // Folded mode: the factor [C] the conv output is multiplied by before the
  // BN (σ/γ, undoing the fold); undefined in kept mode.
  Tensor unfold_scale() const;
  bool folds_batch_norm() const { return folded_bn() != nullptr; }
  Tensor kernel, bias;

 private:
  Conv2dOptions conv_;
  QuantLayerOptions opt_;
  // The BN folded in training: the next one, in that mode.
  const BatchNorm2d* folded_bn() const { return opt_.fold_batch_norm ? next_bn_.get() : nullptr; }
  std::shared_ptr<BatchNorm2d> next_bn_;
  int64_t macs_ = 0;
};

// Dense with a per-tensor fake-quantized kernel; shares "kernel" and "bias".
class QuantDense : public Module {
 public:
  QuantDense(const Dense& dense, const QuantLayerOptions& o);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantDense"; }
  int64_t own_macs() const override { return kernel.numel(); }
  Tensor quantized_kernel() const;
  Tensor kernel, bias;

 private:
  QuantLayerOptions opt_;
};

// A leaf layer (BatchNorm2d, Activation, pools, Resize, ...) with an
// optional output quantizer. It re-registers the float layer's parameters
// and buffers under their own names (gamma, beta, moving_mean,
// moving_variance) and runs the float layer's forward; child "output_quant"
// when quantize_output.
class QuantLayer : public Module {
 public:
  QuantLayer(std::shared_ptr<Module> layer, const QuantLayerOptions& o);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Quant" + layer_->type_name(); }
  const Module& layer() const { return *layer_; }
  // A frozen BatchNorm2d uses (and keeps) its moving statistics in training too.
  void freeze(bool on) { frozen_ = on; }

 private:
  bool frozen_ = false;
  // Not a child: its tensors are registered here directly so names do not
  // gain a level. Its train/eval mode follows this module's in forward().
  std::shared_ptr<Module> layer_;
};

// A merge layer (Add, Multiply, Concat, ResizeLike) with an optional output
// quantizer (child "output_quant"). A Merge itself, so blocks call it as
// before.
class QuantMerge : public Merge {
 public:
  QuantMerge(std::shared_ptr<Merge> merge, const QuantLayerOptions& o);
  Tensor merge(const std::vector<Tensor>& inputs) override;
  std::string type_name() const override { return "Quant" + merge_->type_name(); }
  const Merge& layer() const { return *merge_; }

 private:
  std::shared_ptr<Merge> merge_;
};

// The walk, handed to block rules so they can reuse the default treatment.
class Quantizer {
 public:
  explicit Quantizer(const QuantConfig& config);
  const QuantConfig& config() const { return config_; }
  // A fresh activation quantizer with the config's bits and range options.
  std::shared_ptr<ActivationQuantizer> activation_quantizer() const;
  // Quantizes every child of `block` (rules for known layers, registered
  // block rules, or recursion), replacing children in place.
  void quantize_children(Module& block);
  // The quantized form of one module given the sibling that follows it in
  // its parent (nullptr if last); may return `m` itself (nothing to do).
  std::shared_ptr<Module> quantized(const std::shared_ptr<Module>& m, const Module* next);

 private:
  QuantConfig config_;
  bool input_placed_ = false;
  std::shared_ptr<Module> next_module_;  // the sibling after the module being quantized
};

// How a block type turns into its quantized form (see the header comment).
using BlockRule = std::function<std::shared_ptr<Module>(const std::shared_ptr<Module>& block, Quantizer& q)>;
// Registers (or replaces) the rule for blocks whose type_name() is `type_name`.
void register_block_rule(const std::string& type_name, BlockRule rule);

// The transform, in place. Throws if the model already holds quantized
// layers.
void quantize(Module& model, const QuantConfig& config = {});

struct QuantizerInfo {
  std::string name;  // full dotted name of the quantizer module / layer
  std::string kind;  // "activation" or "weight"
};
// Every quantizer in the tree, in registration order: activation quantizers
// and quantized-weight layers (QuantConv2d, QuantDense).
std::vector<QuantizerInfo> list_quantizers(Module& model);

// Freezes (or unfreezes) every BatchNorm2d of a quantized model: in
// training it then normalises with its moving statistics and stops
// updating them (PyTorch's freeze_bn, typically a few epochs into QAT).
void freeze_batch_norm(Module& model, bool frozen);

// A BatchNorm2d in eval mode as y = k·x + shift on channel c: k = γ/σ with
// σ = sqrt(moving variance + ε) in double, shift = β − μ·k. What
// conversion folds into the conv before it.
std::pair<double, double> batch_norm_affine(const BatchNorm2d& bn, int64_t c);

// Full names of all quantizer state (buffers of ActivationQuantizers).
std::vector<std::string> quantizer_state_names(Module& model);

// Loads a float checkpoint's state into a quantized model by name: strict on
// every float parameter and buffer, with the quantizer state skipped (it
// keeps its initial value: ±6 ranges, step 0).
LoadReport load_float_state(Module& model, const StateDict& source);

}  // namespace bonsai::quant
