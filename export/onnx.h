// ONNX export of the integer-only model (quant/int8_model.h): a QDQ graph
// (QuantizeLinear / DequantizeLinear around float ops, int8 weights with
// per-channel scales on axis 0, int32 biases), opset 13, that ONNX Runtime
// fuses into its integer kernels (QLinearConv, ...).
//
//   quant::Int8Model m = quant::Int8Model::load("model_int8.safetensors");
//   exporters::write_onnx(m, "model.onnx");
//
// The graph takes the float image in NCHW ([1, C, H, W], ONNX's layout) and
// returns the dequantized output (NCHW for segmentation maps).
// See docs/export.md for the op mapping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/int8_model.h"

namespace bonsai::exporters {

std::vector<uint8_t> to_onnx(const quant::Int8Model& model);
// Atomic (temporary file + rename).
void write_onnx(const quant::Int8Model& model, const std::string& path);

}  // namespace bonsai::exporters
