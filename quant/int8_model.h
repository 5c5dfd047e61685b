// The integer-only model: what quant::convert makes of a trained QAT model,
// saved as one file and executed with integer kernels (quant/int8_kernels.h).
//
//   quant::quantize(*model, config);  ... train ...
//   model->eval();
//   quant::Int8Model int8 = quant::convert(*model, sample);   // sample: [1, H, W, C] float
//   int8.save("model.int8.safetensors");
//   quant::Int8Model loaded = quant::Int8Model::load("model.int8.safetensors");
//   Tensor logits = loaded.run(images);   // float in, float (dequantized) out
//
// Conversion traces one eval-mode forward of the QAT model (quant/trace.h)
// and lowers what it saw, op by op, the way TFLite's converter does:
//  - conv/dense → [BatchNorm2d, folded into the weights and bias] → [relu or
//    relu6, a clamp] → the output quantizer: one CONV / FULLY_CONNECTED op
//    with int8 weights (per output channel for convs; with BN folded, the
//    fake-quantized kernel's codes are kept and the channel scale becomes
//    s_w·|γ/σ|, so the folded weights are exactly the simulation's), an
//    int32 bias at scale s_in·s_w and the requantization s_in·s_w / s_out;
//  - Add / Multiply [→ relu/relu6] → quantizer: ADD / MUL;
//  - relu, relu6, hard_swish, sigmoid, hard_sigmoid on a quantized tensor:
//    a 256-entry table built by running the simulation's own float op and
//    fake quantizer on every input code, so they are exact;
//  - GlobalAvgPool → MEAN, AvgPool2d → AVERAGE_POOL, MaxPool2d → MAX_POOL,
//    Resize / ResizeLike → RESIZE_BILINEAR, Concat → CONCATENATION, each
//    with the output quantizer's grid (max pooling keeps its input's);
//  - the input quantizer → QUANTIZE (float → int8, the fake quantizer's
//    rounding); the model output is dequantized.
// Anything else stops conversion with an error naming the layer: a value
// with no quantizer where the integer graph needs one, a layer type with no
// integer form, or a value computed outside the quantized layers (an inline
// op in a block's forward). Only 8-bit models convert.
//
// Each value of the graph is named after the quantizer that defines it
// (e.g. "backbone.block3.add.output_quant"; max pooling outputs after their
// layer), so the simulation and the integer model can be compared layer by
// layer (compare_with_simulation).
//
// File format: a safetensors file (core/io/safetensors.h) whose tensors are
// the ops' int8 weights ("op12.weights"), int32 biases ("op12.bias"),
// per-channel weight scales ("op12.weight_scales") and tables
// ("op40.table"), with the graph — values (name, per-image shape, scale,
// zero point) and ops (type, inputs, output, geometry, clamp) — as JSON in
// the metadata key "bonsai.int8_graph". Requantization multipliers are not
// stored: loading recomputes them from the scales, as TFLite's Prepare does.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/module.h"
#include "quant/int8_kernels.h"
#include "quant/scheme.h"

namespace bonsai::quant {

enum class Int8OpType {
  quantize,         // float input → int8
  conv,             // regular and depthwise (groups == channels)
  fully_connected,  // [N, in] → [N, out]
  add,
  mul,              // same shape, or [H, W, C] × [1, 1, C]
  lookup,           // 256-entry table
  mean,             // over H and W → [1, 1, C]
  avg_pool,
  max_pool,
  resize,           // bilinear, half-pixel centres
  concat,           // channel axis
  requantize,       // to another grid
};
const char* op_type_name(Int8OpType t);

struct Int8Value {
  std::string name;            // the quantizer or layer that defines it
  std::vector<int64_t> shape;  // per image: [H, W, C] or [C]
  AffineQuant quant;
};

// Window geometry of conv and pooling ops.
struct Int8Geometry {
  int kh = 1, kw = 1, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int pad_top = 0, pad_left = 0;
  int groups = 1;
};

struct Int8Op {
  Int8OpType type = Int8OpType::quantize;
  std::string source;       // the layer it came from
  std::vector<int> inputs;  // value ids; quantize reads the float input
  int output = -1;
  Int8Geometry geometry;                // conv, avg_pool, max_pool
  int32_t act_min = -128, act_max = 127;  // fused clamp, output codes
  Tensor weights;        // s8: conv HWIO [kh, kw, cin/groups, cout]; fc [in, out]
  Tensor weight_scales;  // f32 [cout] (fc: [1])
  Tensor bias;           // s32 [cout], scale s_in * weight_scales
  Tensor table;          // s8 [256] (lookup)
  // lookup: the float function the table reproduces ("relu", "relu6",
  // "hard_swish", "hard_sigmoid", "sigmoid"), for exporters that map it to
  // a runtime's own op; empty in files converted before it was recorded.
  std::string function;
};

class Int8Model {
 public:
  Int8Model();
  ~Int8Model();
  Int8Model(Int8Model&&) noexcept;
  Int8Model& operator=(Int8Model&&) noexcept;

  // Loads and validates (every id, shape and tensor size) a converted model;
  // errors name the file and the op.
  static Int8Model load(const std::string& path);
  // Atomic (temporary file + rename).
  void save(const std::string& path) const;

  // images [N, H, W, C] float (the QAT model's input) → the dequantized
  // output [N, ...output shape]. One call at a time: runs of a batch size
  // share the buffers and kernels prepared for it on its first run.
  Tensor run(const Tensor& images);
  // The same, also returning every value's int8 codes ([N, ...shape] s8) by
  // value id.
  Tensor run(const Tensor& images, std::vector<Tensor>* codes);
  // One op on given value codes (by value id; only its inputs are read, and
  // `images` only by the quantize op and for the batch size): its output
  // codes. What the per-layer comparison with the simulation runs.
  Tensor execute(size_t op, const std::vector<Tensor>& values, const Tensor& images);

  const std::vector<Int8Value>& values() const { return values_; }
  const std::vector<Int8Op>& ops() const { return ops_; }
  const Int8Value& input() const { return input_; }  // float input: shape only
  int output() const { return output_; }
  // Bytes of weights, biases and tables: the model's size in memory.
  int64_t parameter_bytes() const;

  // How convs, fully connected layers and ADD rescale (quant/int8_kernels.h):
  // fixed_point (TFLite's reference arithmetic, the default), float32
  // (TFLite-XNNPACK's) or onnxruntime (ONNX Runtime's on x86). A runtime
  // setting, not part of the file: the same model runs any way.
  void set_rescaling(int8::Rescaling r);
  int8::Rescaling rescaling() const { return rescaling_; }

  // Per-op-type timing of run(): while on, every run adds each op's wall
  // time to its type's total ("conv" is split into "conv_1x1", "conv" and
  // "conv_depthwise"; "dequantize" is the float output). Turning it on
  // clears the totals.
  //   int8.set_profiling(true);  for (...) int8.run(x);
  //   for (auto& [type, s] : int8.profile()) ... s / int8.profiled_runs() ...
  void set_profiling(bool on);
  std::map<std::string, double> profile() const { return profile_; }  // seconds, summed over runs
  int profiled_runs() const { return profiled_runs_; }

  // Built by convert() and load().
  Int8Model(std::vector<Int8Value> values, std::vector<Int8Op> ops, Int8Value input, int output);

 private:
  struct Prepared;
  Prepared& prepared(int64_t batch);
  // Op `op` reading and writing codes by value id (its inputs and output).
  void execute(size_t op, Prepared& p, const std::vector<int8_t*>& codes, const Tensor& images);
  void validate() const;

  std::vector<Int8Value> values_;
  std::vector<Int8Op> ops_;
  Int8Value input_;
  int output_ = -1;
  std::map<int64_t, std::unique_ptr<Prepared>> prepared_;  // by batch size
  int8::Rescaling rescaling_ = int8::Rescaling::fixed_point;
  bool profiling_ = false;
  std::map<std::string, double> profile_;
  int profiled_runs_ = 0;
};

// Lowers a quantized model (quant::quantize, 8-bit, in eval mode) to the
// integer graph, tracing one forward of `sample` [1, H, W, C]: the integer
// model takes inputs of that H, W and C (any batch).
Int8Model convert(Module& qat_model, const Tensor& sample);

// The fake quantizer's integer code of a float value on `grid`:
// qmin + floor((clamp(v, nmin, nmax) - nmin) / scale + 0.5), exactly as
// quant::fake_quant rounds (so simulation outputs map back to codes).
int32_t simulation_code(float v, const AffineQuant& grid);

// Layer-by-layer agreement of the integer model with the simulation on the
// same images. For every op of the integer graph:
//  - local: the op run on the simulation's own input codes, its output
//    compared with the simulation's output codes — the integer arithmetic
//    against the float simulation of the same layer, which the scheme keeps
//    within one step (the int32 bias and the fixed-point requantization
//    round where the simulation does not);
//  - end to end: the whole integer model run from the image, so one-step
//    differences of earlier layers have propagated.
// Both as the largest difference in quantization steps and the number of
// elements that differ at all.
struct LayerAgreement {
  std::string name;     // the output value (its quantizer)
  std::string op;       // the op type
  int64_t elements = 0;
  int32_t max_steps = 0;  // local
  int64_t differing = 0;  // local
  int32_t end_to_end_max_steps = 0;
  int64_t end_to_end_differing = 0;
};
// The model output's codes ([N, ...], s8) as the simulation and the int8
// model, run end to end, computed them.
struct OutputCodes {
  Tensor simulation, int8;
};
std::vector<LayerAgreement> compare_with_simulation(Module& qat_model, Int8Model& int8, const Tensor& images,
                                                    OutputCodes* output = nullptr);

}  // namespace bonsai::quant
