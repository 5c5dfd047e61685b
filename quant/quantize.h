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
// What goes where (the TFMOT Default8Bit / Model Garden placement):
//  - Conv2d → QuantConv2d: kernel fake-quantized symmetric narrow range, per
//    output channel (per tensor if per_channel_weights is false), the range
//    taken from the current kernel every step (TFMOT's LastValueQuantizer).
//    Dense → QuantDense: the same, always per tensor.
//  - Activation quantizers (ActivationQuantizer: moving-average min/max,
//    quant/observer.h) on the output of each conv/BN/activation *unit*:
//      conv/dense output   only when no BatchNorm2d or quantizing activation
//                          follows it;
//      BatchNorm2d output  unless a relu/relu6 follows (the activation then
//                          quantizes; the Model Garden's norm_by_activation);
//      relu, relu6, hard_swish outputs always; sigmoid and hard_sigmoid never
//                          (TFLite gives them fixed output parameters);
//      AvgPool2d, GlobalAvgPool, Resize outputs always;
//      MaxPool2d, Flatten, Dropout, Identity: nothing (they keep the grid).
//    "Follows" means the next sibling in registration order, which is the
//    data-flow order for Sequential and for chain blocks (Conv2dBNBlock).
//  - The model input: an "input_quant" on the first conv/dense layer met in
//    registration order (quantize_input).
// The quantizer state lives in buffers of the quantizer modules, e.g.
//   features.0.bn.output_quant.min / .max / .step   (BN output, no relu after)
//   features.0.relu.output_quant.min                 (relu output)
// Float parameters keep their names (features.0.conv.kernel).
//
// The extension point — how a block declares its quantized form. A block
// whose data flow is not a chain (residual add, SE multiply, concat) needs
// quantizers on values no child produces. It declares how by registering a
// rule for its type_name():
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
// children (e.g. "add_quant") that its forward applies. A rule may also
// return the block itself after swapping children. Blocks that declare
// nothing get the default: each child quantized by the rules above,
// recursing into nested blocks (which may themselves have rules). Layers and
// models know nothing of quantization: rules live with the quantizer (quant/
// registers the zoo's blocks; user code registers its own).
//
// Not done yet (issue 7): rules for the zoo's non-chain blocks (Bottleneck,
// InvertedBottleneck, SE with decomposed hard-sigmoid, ASPP, segmentation
// head, DeepLabV3+ decoder), BN folding in training, LSQ ranges in the
// transform. Until those exist, such blocks get the default chain treatment
// and their adds/multiplies/concats are not quantized.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "layers/layers.h"
#include "layers/state.h"
#include "quant/fake_quant.h"
#include "quant/observer.h"

namespace bonsai::quant {

struct QuantConfig {
  int num_bits_weight = 8;      // 8; 4 and 6 in simulation only
  int num_bits_activation = 8;  // 8; 4 and 6 in simulation only
  bool per_channel_weights = true;  // conv and depthwise kernels; dense is always per tensor
  bool quantize_input = true;       // an input quantizer on the first conv/dense
  MovingAverageOptions activation_range;  // decay 0.999 from ±6 (TFMOT), init, freeze_step
};

// Fake-quantizes the tensor it is given, with a moving-average range. The
// state is three buffers: "min", "max" and "step".
class ActivationQuantizer : public Module {
 public:
  ActivationQuantizer(int num_bits, const MovingAverageOptions& range);
  Tensor forward(const Tensor& x) override;  // train: observe, then fake-quantize
  std::string type_name() const override { return "ActivationQuantizer"; }
  const MovingAverageMinMax& observer() const { return observer_; }
  int num_bits() const { return num_bits_; }

 private:
  MovingAverageMinMax observer_;
  int num_bits_;
};

// Options common to the quantized layers.
struct QuantLayerOptions {
  int num_bits_weight = 8;
  bool per_channel = true;  // conv only
  bool quantize_input = false;
  bool quantize_output = false;
  int num_bits_activation = 8;
  MovingAverageOptions activation_range;
};

// Conv2d with a fake-quantized kernel. Shares the float layer's "kernel" and
// "bias"; optional children "input_quant" and "output_quant".
class QuantConv2d : public Module {
 public:
  QuantConv2d(const Conv2d& conv, const QuantLayerOptions& o);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "QuantConv2d"; }
  int64_t own_macs() const override { return macs_; }
  // The kernel as the forward uses it: fake-quantized, differentiable (STE).
  Tensor quantized_kernel() const;
  const Conv2dOptions& conv_options() const { return conv_; }
  Tensor kernel, bias;

 private:
  Conv2dOptions conv_;
  QuantLayerOptions opt_;
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

// A parameter-free or normalisation layer (BatchNorm2d, Activation, pools,
// Resize) followed by an output quantizer. It re-registers the float layer's
// parameters and buffers under their own names (gamma, beta, moving_mean,
// moving_variance) and runs the float layer's forward; child "output_quant".
class OutputQuantized : public Module {
 public:
  OutputQuantized(std::shared_ptr<Module> layer, const QuantLayerOptions& o);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Quant" + layer_->type_name(); }
  const Module& layer() const { return *layer_; }

 private:
  // Not a child: its tensors are registered here directly so names do not
  // gain a level. Its train/eval mode follows this module's in forward().
  std::shared_ptr<Module> layer_;
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

// Full names of all quantizer state (buffers of ActivationQuantizers).
std::vector<std::string> quantizer_state_names(Module& model);

// Loads a float checkpoint's state into a quantized model by name: strict on
// every float parameter and buffer, with the quantizer state skipped (it
// keeps its initial value: ±6 ranges, step 0).
LoadReport load_float_state(Module& model, const StateDict& source);

}  // namespace bonsai::quant
