// TFLite export of the integer-only model (quant/int8_model.h): a .tflite
// flatbuffer (file identifier "TFL3", schema version 3) that TFLite's own
// interpreter runs with the same integer arithmetic bonsai's runtime does.
//
//   quant::Int8Model m = quant::Int8Model::load("model_int8.safetensors");
//   exporters::write_tflite(m, "model.tflite");
//
// The graph takes the float image [1, H, W, C] (NHWC, as bonsai's models
// do), QUANTIZEs it, runs the int8 ops and DEQUANTIZEs the output.
// See docs/export.md for the op mapping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/int8_model.h"

namespace bonsai::exporters {

struct TfliteOptions {
  // Store weights with TFLite's sparse tensor encoding (sparsity parameters
  // + a DENSIFY op) where that is smaller than dense.
  bool sparse = true;
};

std::vector<uint8_t> to_tflite(const quant::Int8Model& model, const TfliteOptions& options = {});
// Atomic (temporary file + rename).
void write_tflite(const quant::Int8Model& model, const std::string& path, const TfliteOptions& options = {});

}  // namespace bonsai::exporters
