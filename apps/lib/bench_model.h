// Whole-model benchmarks: `bonsai bench train` (full SGD-momentum training
// steps) and `bonsai bench infer` (batch-1 FP32 or int8 latency) on a registry
// model with random inputs, each printing ONE JSON line with the same fields
// as the PyTorch peer tests/peer/torch_train_step.py, so scripts/bench can
// put the two side by side.
//
//   bonsai bench train --model resnet50 --batch 8 --res 224 --threads 2 --steps 5 --warmup 2
//   {"peer":"bonsai","model":"resnet50","mode":"train","batch":8,"res":224,"threads":2,
//    "params":25557032,"median_step_s":1.2,"images_per_s":6.6,"peak_rss_mib":1500}
//   bonsai bench infer --model mobilenet_v2 --res 224 --threads 1 --steps 20 --warmup 3
//   {..."mode":"infer","batch":1,...,"median_ms":8.1,...}
//
// A training step is what the peer times: clear gradients, forward in train
// mode (BN batch statistics), softmax cross-entropy, backward, optimiser
// update (SGD, lr 0.01, momentum 0.9, weight decay 4e-5). The peer's PyTorch
// SGD decays every parameter; bonsai's L2 (Model Garden semantics) decays only
// conv and dense kernels, a negligible difference in work. The reported time
// is the median over `steps` steps after `warmup` untimed ones; peak_rss_mib
// is getrusage's ru_maxrss for the whole process (model build included).
#pragma once

#include <string>

namespace bonsai::apps {

struct ModelBenchSpec {
  std::string model = "resnet50";  // any models::names() entry
  std::string mode = "train";      // train | infer
  int batch = 8;                   // infer always runs batch 1
  int res = 224;
  int classes = 1000;
  int threads = 2;                 // <= 0: all cores
  int steps = 5;
  int warmup = 2;
  // infer only: "" FP32; "true" this model quantized (calibrated on the
  // random input) and converted to int8; else the path of an int8 model file.
  std::string int8;
  std::string save_int8;  // int8 "true" only: also save the converted model here (to export it)
  std::string rescaling = "fixed_point";  // int8: quant::int8::Rescaling by name
  // Time the timed steps per op type: train, per autograd op name forward and
  // backward plus the step's other parts (core/op_profile.h); infer, int8 only
  // (Int8Model::set_profiling).
  bool profile = false;
  // FP32 only: "graph" runs the float graph (export/float_graph.h: BN folded)
  // on infer::FloatRuntime (fused oneDNN post-ops); "eager" the module tree's
  // own eval forward.
  std::string engine = "graph";
};

// Runs the benchmark and returns the JSON line it prints; with s.profile,
// *profile_out gets the per-op-type table (ms per step or run, slowest first),
// otherwise it is cleared.
std::string bench_model(const ModelBenchSpec& s, std::string* profile_out = nullptr);

inline constexpr const char* kBenchTrainUsage =
    "  bonsai bench train --model M [--batch 8 --res 224 --threads 2 --steps 5 --warmup 2 --classes 1000]\n"
    "                     [--profile]\n"
    "      Median full SGD-momentum training step on random data; one JSON line\n"
    "      (median_step_s, images_per_s, peak_rss_mib, params), fields as the PyTorch peer.\n"
    "      --profile adds lines after it: ms per timed step (mean) for each op type forward\n"
    "      and backward (conv2d = k x k, conv2d_1x1, conv2d_depthwise, batch_norm, relu, add,\n"
    "      ...), optimizer, zero_grad, autograd (backward outside the ops), data and other,\n"
    "      slowest first, adding up to the step.\n";
inline constexpr const char* kBenchInferUsage =
    "  bonsai bench infer --model M [--res 224 --threads 1 --steps 20 --warmup 3 --classes 1000]\n"
    "                     [--int8 true|MODEL.safetensors [--profile]] [--save-int8 M.safetensors]\n"
    "                     [--engine graph|eager] [--rescaling fixed_point|float32|onnxruntime]\n"
    "                     [--onnx M.onnx]\n"
    "      Median batch-1 eval-mode forward latency, FP32 or the integer-only int8 model\n"
    "      (true: M quantized and converted here); one JSON line (median_ms, images_per_s);\n"
    "      FP32 runs the fused float graph (infer/float_runtime.h), or with --engine eager\n"
    "      the module tree's forward.\n"
    "      --profile adds lines after it: int8 time per op type. --save-int8 keeps the\n"
    "      model --int8 true made, so other runtimes can time the same one (bonsai export).\n"
    "      --rescaling: the int8 runtime's arithmetic (quant/int8_kernels.h).\n"
    "      --onnx M.onnx: time that exported model in ONNX Runtime instead (onnxruntime-node\n"
    "      through tests/node/run_onnx.js, one random image of --res), as the same JSON line.\n";

// `bonsai bench train ...` / `bonsai bench infer ...`: parse argv[3..] and
// print bench_model's line.
int bench_train_command(int argc, char** argv);
int bench_infer_command(int argc, char** argv);

}  // namespace bonsai::apps
