// ONNX export of the integer-only model (quant/int8_model.h): a QDQ graph
// that ONNX Runtime fuses into its integer kernels (QLinearConv, QLinearAdd,
// QLinearMul, QLinearGlobalAveragePool, QGemm, ...).
//
//   quant::Int8Model m = quant::Int8Model::load("model_int8.safetensors");
//   exporters::write_onnx(m, "model.onnx");
//   // node tests/node/run_onnx.js --model model.onnx --images SAMPLE --out out.f32
//
// The file: ModelProto, IR 8, opset 17 (the newest python3-onnx 1.12's
// checker knows; HardSwish needs 14), producer "bonsai", written with the
// protobuf writer in export/protobuf.h. The graph takes the float image
// "input" [batch, C, H, W] (NCHW, batch symbolic) and returns the
// dequantized "output": [batch, K] for classifiers, [batch, K, h, w] for
// segmentation maps.
//
// Every int8 value becomes QuantizeLinear → DequantizeLinear on its grid,
// exported as uint8 (code + 128, zero point + 128: the same reals; ORT's x86
// kernels take uint8 activations, see onnx.cpp). Each op reads its inputs
// through DequantizeLinear nodes of its own and quantizes its float output:
//   conv             Conv, int8 OIHW weights with per-channel scales (axis
//                    0), int32 bias at s_in·s_w[c], explicit pads
//                    [top, left, bottom, right] (bottom/right: TF SAME);
//   fully_connected  Flatten (in bonsai's H, W, C order) → Gemm, int8 [in,
//                    out] weights per tensor, int32 bias;
//   add / mul        Add / Mul ([N, C, H, W] × [N, C, 1, 1] broadcasts);
//   fused clamps     Relu / Clip before the QuantizeLinear when narrower
//                    than the int8 range (else QuantizeLinear saturates);
//   lookup           by its function: Relu, Clip(0, 6), HardSwish, Sigmoid,
//                    HardSigmoid(1/6, 0.5) (files without one: re-convert);
//   mean             GlobalAveragePool; avg_pool AveragePool
//                    (count_include_pad 0); max_pool MaxPool;
//   resize           Resize, linear, half_pixel, sizes [N, C] of the input
//                    (Shape) and the output's [h, w];
//   concat           Concat on channels; requantize: DequantizeLinear →
//                    QuantizeLinear on the new grid.
// Node doc strings name the int8 op and its source layer; errors name both.
//
// Agreement with bonsai's runtime: ONNX Runtime requantizes in float
// (round half to even), bonsai with TFLite's fixed-point multipliers
// rounded once (quant::multiply_by_quantized_multiplier); the two differ
// only where float rounding moves a near-tie, a few elements in 10^5 per
// layer, but deep nets carry such one-step differences on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "export/float_graph.h"
#include "quant/int8_model.h"

namespace bonsai::exporters {

std::vector<uint8_t> to_onnx(const quant::Int8Model& model);
// Atomic (temporary file + rename).
void write_onnx(const quant::Int8Model& model, const std::string& path);

// A float model (export/float_graph.h) as a float ONNX graph, same file
// header and input/output names and layouts as above: conv → Conv (float
// OIHW weights, bias, explicit pads); fully_connected → Gemm ([in, out]
// weights); add / mul → Add / Mul; fused clamps → Relu / Clip(0, 6) after
// the op; activations → Relu, Clip, HardSwish, HardSigmoid(1/6, 0.5),
// Sigmoid; mean → GlobalAveragePool; pools → AveragePool (count_include_pad
// 0) / MaxPool; resize → Resize (linear, half_pixel); concat → Concat on
// channels; reshape → Reshape in bonsai's NHWC element order (Transpose
// around it where H·W > 1).
std::vector<uint8_t> to_onnx(const FloatGraph& graph);
void write_onnx(const FloatGraph& graph, const std::string& path);

}  // namespace bonsai::exporters
