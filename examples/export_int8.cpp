// Post-training quantization of a zoo model and export of the int8 model to
// TFLite and ONNX.
//
//   c++ export_int8.cpp $(pkg-config --cflags --libs bonsai) -o export_int8
//   ./export_int8 /tmp/mnv3        # writes /tmp/mnv3.tflite and /tmp/mnv3.onnx
//
// (Random weights and calibration images keep the example self-contained;
// a real run loads a trained checkpoint and calibrates on training images —
// `bonsai ptq` does exactly that from a config.)
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "core/autograd.h"
#include "export/onnx.h"
#include "export/tflite.h"
#include "models/registry.h"
#include "quant/calibrate.h"
#include "quant/int8_model.h"
#include "quant/quantize.h"

using namespace bonsai;

int main(int argc, char** argv) {
  const std::string base = argc > 1 ? argv[1] : "model";
  // MobileNetV3-Small: hard-swish, squeeze-excitation, residual adds.
  auto model = models::build("mobilenet_v3_small", {{"num_classes", 10}});
  quant::quantize(*model, {});

  std::mt19937 rng(0);
  std::vector<Tensor> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(Tensor::uniform({8, 32, 32, 3}, rng, 0.0f, 1.0f));
  quant::calibrate(*model, [&](int) {
    for (const Tensor& x : batches) model->forward(x);
  });
  quant::Int8Model int8 = quant::convert(*model, Tensor::uniform({1, 32, 32, 3}, rng, 0.0f, 1.0f));

  exporters::write_tflite(int8, base + ".tflite");
  exporters::write_onnx(int8, base + ".onnx");
  std::printf("wrote %s.tflite (%ju bytes), wrote %s.onnx (%ju bytes) from %zu int8 ops\n", base.c_str(),
              static_cast<uintmax_t>(std::filesystem::file_size(base + ".tflite")), base.c_str(),
              static_cast<uintmax_t>(std::filesystem::file_size(base + ".onnx")), int8.ops().size());
  return 0;
}
