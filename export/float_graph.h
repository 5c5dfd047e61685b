// The float graph: what the exporters write for a float (not quantized)
// model — the counterpart of quant::Int8Model for float export.
//
//   auto model = models::build("mobilenet_v2", options);
//   load_state(*model, io::load_safetensors("ckpt.safetensors"));
//   exporters::FloatGraph g = exporters::convert_float(*model, Tensor::zeros({1, 224, 224, 3}));
//   exporters::write_tflite(g, "model.tflite");   // export/tflite.h
//   exporters::write_onnx(g, "model.onnx");       // export/onnx.h
//   Tensor logits = g.run(images);                // naive reference evaluator (tests)
//
// convert_float traces one eval-mode forward of the model and lowers it op
// by op, the way TFLite's converter does for float models:
//  - Conv2d → [BatchNorm2d, folded into weights and bias] → [relu / relu6,
//    a fused clamp]: one conv op (depthwise when groups == channels);
//  - Dense → [relu / relu6] → fully_connected;
//  - Add [→ relu / relu6], Multiply (SE's [1, 1, C] gate broadcasts) → add,
//    mul with a fused clamp;
//  - any other Activation → an activation op (relu, relu6, hard_swish,
//    hard_sigmoid, sigmoid);
//  - GlobalAvgPool → mean (keeps [1, 1, C]); AvgPool2d / MaxPool2d →
//    avg_pool / max_pool; Resize / ResizeLike → resize (bilinear,
//    half-pixel centres); Concat → concat (channels);
//  - Flatten, eval-mode Dropout, Identity and any view → reshape where the
//    shape changes, nothing where it does not.
// Tracing: every leaf layer and merge layer of the tree is swapped, for the
// one forward, for a wrapper that runs it unchanged and records its inputs
// and output (quant/trace.h); the original layers are put back before
// convert_float returns (also when it throws). So the zoo's custom blocks
// (ResNet's BottleneckBlock, MobileNet's InvertedBottleneckBlock with
// SqueezeExcitation, ...) convert without declaring anything, as long as
// their forward goes through their children (merge layers included); a value
// computed inline in a block's forward is refused with an error naming the
// layer that reads it, as is a layer with no float op here.
//
// Values are identified by their storage, as in quant::convert; each is
// named after the layer that produced it (the last fused one).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/module.h"

namespace bonsai::exporters {

enum class FloatOpType {
  conv,             // regular and depthwise (groups == channels); weights HWIO
  fully_connected,  // [in] → [out]; weights [in, out]
  add,              // same shapes
  mul,              // same shapes, or [H, W, C] × [1, 1, C]
  activation,       // `activation` element-wise
  mean,             // over H and W → [1, 1, C]
  avg_pool,         // padding excluded from the count (TF)
  max_pool,
  resize,           // bilinear, half-pixel centres, to the output's H, W
  concat,           // channel (last) axis
  reshape,          // same elements in bonsai's (NHWC, row-major) order
};
const char* float_op_name(FloatOpType t);

// Fused (conv, fully_connected, add, mul: none, relu, relu6) or the
// function of an activation op.
enum class FloatActivation { none, relu, relu6, hard_swish, hard_sigmoid, sigmoid };
const char* float_activation_name(FloatActivation a);

struct FloatValue {
  std::string name;            // the layer that produced it ("input" for value 0)
  std::vector<int64_t> shape;  // per image: [H, W, C] or [C]
};

// Window geometry of conv and pooling ops (explicit pads: top/left given,
// bottom/right whatever the output size needs).
struct FloatGeometry {
  int kh = 1, kw = 1, stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int groups = 1;
};

struct FloatOp {
  FloatOpType type = FloatOpType::conv;
  std::string source;       // the layer(s) it came from
  std::vector<int> inputs;  // value ids
  int output = -1;
  FloatActivation activation = FloatActivation::none;
  FloatGeometry geometry;  // conv, avg_pool, max_pool
  Tensor weights;          // conv [kh, kw, cin/groups, cout]; fully_connected [in, out]
  Tensor bias;             // [cout] (always defined for conv / fully_connected)
};

struct FloatGraph {
  std::vector<FloatValue> values;  // value 0 is the input
  std::vector<FloatOp> ops;        // in execution order
  int output = -1;

  const FloatValue& input() const { return values.at(0); }
  // images [N, H, W, C] → the output [N, ...output shape], with naive loops
  // (the reference kernels of core/ops_ref.h, double accumulation): the
  // slow twin tests compare the model's own forward with.
  Tensor run(const Tensor& images) const;
  // Throws naming the op if ids, shapes or weights are inconsistent.
  void validate() const;
  int64_t parameter_count() const;
};

// Lowers the float model (put in eval mode for the trace, its mode restored
// afterwards) by tracing one forward of `sample` [1, H, W, C]. Refuses a
// quantized model (quant::quantize): export that as int8.
FloatGraph convert_float(Module& model, const Tensor& sample);

}  // namespace bonsai::exporters
