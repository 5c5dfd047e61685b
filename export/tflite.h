// TFLite export of the integer-only model (quant/int8_model.h): a .tflite
// flatbuffer (file identifier "TFL3", schema version 3) that TFLite's own
// interpreter runs with the same integer arithmetic bonsai's runtime does.
//
//   quant::Int8Model m = quant::Int8Model::load("model_int8.safetensors");
//   exporters::write_tflite(m, "model.tflite");
//
// The graph takes the float image [1, H, W, C] (NHWC, as bonsai's models
// do) named "input", QUANTIZEs it, runs the int8 ops and DEQUANTIZEs the
// output into "output". Op mapping (export/tflite.cpp): conv → CONV_2D or
// DEPTHWISE_CONV_2D (per-channel int8 weights, int32 bias), with SAME/VALID
// when the pads agree with TF's, else an explicit PADV2; the fused clamp
// must be TFLite's NONE/RELU/RELU6 on the output grid; fully_connected →
// [RESHAPE] FULLY_CONNECTED; add/mul → ADD/MUL; lookup tables → the table
// itself (CAST, ADD 128, GATHER), or with native_activations by their
// function → RELU / RELU6 / HARD_SWISH / LOGISTIC, hard_sigmoid as ADD 3
// (fused RELU6) then MUL 1/6; mean → MEAN; pools → AVERAGE/MAX_POOL_2D;
// resize → RESIZE_BILINEAR (half-pixel); concat → CONCATENATION; requantize
// → QUANTIZE. Ops whose TFLite kernel keeps the input grid (pools, resize,
// concat inputs) get a QUANTIZE to the value's grid where it differs.
// Anything else is refused with an error naming the op index and source.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "export/float_graph.h"
#include "quant/int8_model.h"

namespace bonsai::exporters {

struct TfliteOptions {
  // Store conv / fully connected weights with TFLite's sparse tensor
  // encoding (every dimension dense but the last, which is CSR; a DENSIFY op
  // rebuilds the dense weights at the first run) where that is smaller than
  // dense: below about half nonzeros with uint8 indices (input channels
  // <= 256), a third with uint16. TFLite's DENSIFY kernel takes int8, and
  // tfjs-tflite 0.0.1-alpha.10 runs it, giving the dense file's outputs.
  bool sparse = true;
  // Lookup ops (hard_swish, hard_sigmoid, sigmoid, unfused relu/relu6) as
  // TFLite's own activation ops instead of bonsai's table. Those ops round
  // differently (HARD_SWISH in 16-bit fixed point, hard_sigmoid in three
  // requantized steps), so outputs move by a step here and there and deep
  // nets carry it on: MobileNetV3-Large's logits then agree with bonsai
  // within a step on 63% of elements instead of 99%. What delegates that
  // lack GATHER (GPU, NNAPI, Edge TPU) need.
  bool native_activations = false;
};

std::vector<uint8_t> to_tflite(const quant::Int8Model& model, const TfliteOptions& options = {});
// Atomic (temporary file + rename).
void write_tflite(const quant::Int8Model& model, const std::string& path, const TfliteOptions& options = {});

// A float model (export/float_graph.h) as a float32 TFLite file
// (export/tflite_float.cpp): float input "input" [1, H, W, C] → "output",
// no quantization anywhere. conv → CONV_2D (weights OHWI) or
// DEPTHWISE_CONV_2D ([1, kh, kw, C]) with a float bias and the fused
// NONE/RELU/RELU6, SAME/VALID or an explicit PADV2 (zeros) + VALID;
// fully_connected → FULLY_CONNECTED (weights [out, in]); add / mul → ADD /
// MUL (broadcast for SE gates) with fused clamps; activations → RELU,
// RELU6, HARD_SWISH, LOGISTIC, hard_sigmoid as ADD 3 (fused RELU6) then
// MUL 1/6; mean → MEAN (keep_dims); pools → AVERAGE/MAX_POOL_2D (max with
// PADV2 −FLT_MAX where needed); resize → RESIZE_BILINEAR (half-pixel);
// concat → CONCATENATION; reshape → RESHAPE.
std::vector<uint8_t> to_tflite(const FloatGraph& graph);
void write_tflite(const FloatGraph& graph, const std::string& path);

}  // namespace bonsai::exporters
