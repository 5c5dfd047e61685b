// The bonsai command line: thin subcommands over the apps library.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/experiment/runner.h"
#include "apps/lib/args.h"
#include "apps/lib/bench_model.h"
#include "apps/lib/bench_op.h"
#include "apps/lib/data_bench.h"
#include "apps/lib/data_prepare.h"
#include "apps/lib/fashion_demo.h"
#include "apps/lib/model_commands.h"
#include "apps/lib/quant_commands.h"
#include "apps/lib/prune_commands.h"
#include "apps/lib/export_commands.h"
#include "core/check.h"
#include "core/dist/launch.h"
#include "core/io/tensorboard.h"
#include "core/runtime.h"
#include "models/registry.h"

namespace {

const char* kUsage = R"(bonsai — train, quantize and prune convolutional vision models

usage:
  bonsai train --config C.json --model_dir D [--params_override a.b=v,...]
  bonsai train_and_eval --config C.json --model_dir D [--params_override ...]
  bonsai eval --config C.json --model_dir D [--checkpoint K] [--params_override ...]
              [--int8 M.safetensors [--rescaling fixed_point|float32|onnxruntime]]
      Run an experiment (configs/*.json; keys mirror the Model Garden's).
      Training resumes from the newest checkpoint in D. eval --int8 evaluates
      a converted int8 model; --rescaling float32 with XNNPACK's arithmetic,
      onnxruntime with ONNX Runtime's on x86 (docs/quantization.md).
      [--distributed auto|mpi|none]: data-parallel over MPI ranks, e.g.
      mpirun -np 4 bonsai train ... (auto: when started by mpirun; the global
      batch is split over the ranks; rank 0 writes D). See docs/distributed.md.
  bonsai info --model NAME [--num-classes K] [--res R] [--options JSON] [--json]
      Parameters, BN buffers and MACs of a zoo model, whole, per top-level child
      and per layer. Models: resnet18/34/50/101/152, mobilenet_v2,
      mobilenet_v3_large, mobilenet_v3_small, mobilenet_multi_avg,
      deeplabv3_mobilenet_v2, deeplabv3plus_mobilenet_v2.
  bonsai import torchvision --model M --in W.safetensors --out C.safetensors
      Convert a torchvision state_dict into a bonsai checkpoint.
  bonsai predict --checkpoint C IMAGE...
      Top-5 classes with probabilities for image files (a checkpoint from bonsai train).
  bonsai predict --checkpoint C --input X.safetensors --output Y.safetensors
      Run a checkpoint on tensor "input" (NCHW f32) and write "logits".
  bonsai tensorboard dump EVENTFILE...
      Print the scalars of TensorBoard event files as JSON lines.
  bonsai demo [--epochs 3] [--batch 64] [--lr 0.05] [--threads 0] [--seed 0]
              [--data /usr/share/datasets/fashion-mnist] [--train_limit 0]
      Train the small CNN on Fashion-MNIST IDX files and print test accuracy.
  bonsai bench op conv [--n 8 --h 56 --w 56 --c 64 --k 64 --kernel 3 --stride 1 --groups 1]
                       [--threads 0 --iters 20 --warmup 3]
  bonsai bench op batchnorm [--n 8 --h 56 --w 56 --c 64] [--threads 0 --iters 20]
  bonsai bench op sgemm [--m 2048] [--threads 0 --iters 10]
      Print one JSON line: median forward/backward ms and GFLOP/s.
)";

using bonsai::apps::Args;

int cmd_demo(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"epochs", "3"}, {"batch", "64"}, {"lr", "0.05"}, {"threads", "0"}, {"seed", "0"},
          {"data", "/usr/share/datasets/fashion-mnist"}, {"train_limit", "0"}});
  bonsai::apps::FashionDemoOptions o;
  o.epochs = a.get_int("epochs");
  o.batch = a.get_int("batch");
  o.learning_rate = a.get_float("lr");
  o.threads = a.get_int("threads");
  o.seed = static_cast<uint32_t>(a.get_int("seed"));
  o.data_dir = a.get("data");
  o.train_limit = a.get_int("train_limit");
  BONSAI_CHECK(o.epochs > 0 && o.batch > 0, "--epochs and --batch must be positive");
  auto r = bonsai::apps::run_fashion_demo(o);
  std::printf("test accuracy %.2f%%  (final loss %.4f, %.1f s training, %.0f images/s)\n",
              100.0 * r.test_accuracy, r.final_loss, r.train_seconds, r.images_per_second);
  return 0;
}

int cmd_bench(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[2], "data") == 0) return bonsai::apps::bench_data_command(argc, argv);
  if (argc >= 3 && std::strcmp(argv[2], "train") == 0) return bonsai::apps::bench_train_command(argc, argv);
  if (argc >= 3 && std::strcmp(argv[2], "infer") == 0) return bonsai::apps::bench_infer_command(argc, argv);
  BONSAI_CHECK(argc >= 4 && std::strcmp(argv[2], "op") == 0,
               "usage: bonsai bench op|data|train|infer [flags]");
  bonsai::apps::OpBenchSpec s;
  s.op = argv[3];
  Args a(argc, argv, 4,
         {{"n", "8"}, {"h", "56"}, {"w", "56"}, {"c", "64"}, {"k", "64"}, {"kernel", "3"},
          {"stride", "1"}, {"groups", "1"}, {"m", "2048"}, {"threads", "0"}, {"iters", "20"},
          {"warmup", "3"}});
  s.n = a.get_int("n"); s.h = a.get_int("h"); s.w = a.get_int("w"); s.c = a.get_int("c");
  s.k = a.get_int("k"); s.kernel = a.get_int("kernel"); s.stride = a.get_int("stride");
  s.groups = a.get_int("groups"); s.m = a.get_int("m"); s.threads = a.get_int("threads");
  s.iters = a.get_int("iters"); s.warmup = a.get_int("warmup");
  std::printf("%s\n", bonsai::apps::bench_op(s).c_str());
  return 0;
}

int cmd_info(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"model", ""}, {"num-classes", "0"}, {"res", "0"}, {"options", "{}"}, {"json", "false"},
          {"threads", "0"}});
  BONSAI_CHECK(!a.get("model").empty(), "bonsai info needs --model NAME");
  bonsai::set_num_threads(a.get_int("threads"));
  nlohmann::json options;
  try {
    options = nlohmann::json::parse(a.get("options"));
  } catch (const nlohmann::json::exception& e) {
    BONSAI_CHECK(false, std::string("--options is not valid JSON: ") + e.what());
  }
  if (a.get_int("num-classes") > 0) options["num_classes"] = a.get_int("num-classes");
  int64_t res = a.get_int("res") > 0 ? a.get_int("res") : bonsai::models::reference_resolution(a.get("model"));
  auto info = bonsai::apps::model_info(a.get("model"), options, res);
  if (a.get_bool("json")) {
    // Top-level: params/buffers/macs; "children": the same per top-level
    // child; "layers": the whole per-layer tree.
    info["layers"] = info["children"];
    info["children"] = info["children_summary"];
    info.erase("children_summary");
    std::printf("%s\n", info.dump().c_str());
  } else {
    std::fputs(bonsai::apps::model_info_text(info).c_str(), stdout);
  }
  return 0;
}

int cmd_import(int argc, char** argv) {
  BONSAI_CHECK(argc >= 3 && std::strcmp(argv[2], "torchvision") == 0,
               "usage: bonsai import torchvision --model M --in W.safetensors --out C.safetensors");
  Args a(argc, argv, 3, {{"model", ""}, {"in", ""}, {"out", ""}});
  BONSAI_CHECK(!a.get("model").empty() && !a.get("in").empty() && !a.get("out").empty(),
               "bonsai import torchvision needs --model, --in and --out");
  std::printf("%s\n", bonsai::apps::import_torchvision_checkpoint(a.get("model"), a.get("in"), a.get("out")).c_str());
  return 0;
}

int cmd_predict(int argc, char** argv) {
  // Flags are --key value; anything else is an image file.
  std::vector<char*> flags{argv[0], argv[1]};
  std::vector<std::string> images;
  for (int i = 2; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) == 0) {
      flags.push_back(argv[i]);
      if (i + 1 < argc && !std::strchr(argv[i], '=')) flags.push_back(argv[++i]);
    } else {
      images.push_back(argv[i]);
    }
  }
  Args a(static_cast<int>(flags.size()), flags.data(), 2,
         {{"checkpoint", ""}, {"input", ""}, {"output", ""}, {"threads", "0"}});
  BONSAI_CHECK(!a.get("checkpoint").empty(), "bonsai predict needs --checkpoint");
  bonsai::set_num_threads(a.get_int("threads"));
  if (!images.empty()) {
    std::fputs(bonsai::apps::predict_images(a.get("checkpoint"), images).c_str(), stdout);
    return 0;
  }
  BONSAI_CHECK(!a.get("input").empty() && !a.get("output").empty(),
               "bonsai predict needs image files, or --input X.safetensors and --output Y.safetensors");
  std::printf("%s\n", bonsai::apps::predict_tensors(a.get("checkpoint"), a.get("input"), a.get("output")).c_str());
  return 0;
}

// Prints every scalar of the given event files, one JSON line each, so other
// tools (and the interop test) can compare.
int cmd_tensorboard(int argc, char** argv) {
  BONSAI_CHECK(argc >= 4 && std::strcmp(argv[2], "dump") == 0, "usage: bonsai tensorboard dump EVENTFILE...");
  for (int i = 3; i < argc; ++i)
    for (const auto& e : bonsai::io::read_scalar_events(argv[i]))
      std::printf("%s\n", nlohmann::json({{"file", argv[i]}, {"tag", e.tag}, {"step", e.step}, {"value", e.value}})
                               .dump()
                               .c_str());
  return 0;
}

int cmd_run(const std::string& mode, int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"config", ""}, {"model_dir", ""}, {"params_override", ""}, {"checkpoint", ""}, {"stop_at_step", "0"},
          {"int8", ""}, {"rescaling", "fixed_point"}, {"distributed", "auto"}});
  BONSAI_CHECK(!a.get("config").empty() && !a.get("model_dir").empty(),
               "bonsai " + mode + " needs --config C.json and --model_dir D");
  const bool chief = bonsai::dist::init(a.get("distributed")).rank() == 0;
  auto r = bonsai::apps::run_experiment({.config = a.get("config"),
                                         .model_dir = a.get("model_dir"),
                                         .mode = mode,
                                         .params_override = a.get("params_override"),
                                         .checkpoint = a.get("checkpoint"),
                                         .int8_model = a.get("int8"),
                                         .int8_rescaling = a.get("rescaling"),
                                         .stop_at_step = a.get_int("stop_at_step")});
  bonsai::dist::finalize();
  if (!chief) return 0;  // rank 0 reports for all
  std::printf("done at step %lld; logs and checkpoints in %s\n", static_cast<long long>(r.step),
              a.get("model_dir").c_str());
  for (const auto& [k, v] : r.metrics) std::printf("  %s: %.4f\n", k.c_str(), v);
  for (size_t i = 0; i < r.per_class_iou.size(); ++i)
    if (r.per_class_iou[i] >= 0) std::printf("  iou class %zu: %.4f\n", i, r.per_class_iou[i]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "help";
  bonsai::keep_freed_memory();  // training reallocates the same sizes every step
  try {
    if (cmd == "train" || cmd == "eval" || cmd == "train_and_eval") return cmd_run(cmd, argc, argv);
    if (cmd == "demo") return cmd_demo(argc, argv);
    if (cmd == "convert") return bonsai::apps::convert_command(argc, argv);
    if (cmd == "ptq") return bonsai::apps::ptq_command(argc, argv);
    if (cmd == "verify-int8") return bonsai::apps::verify_int8_command(argc, argv);
    if (cmd == "prune") return bonsai::apps::prune_command(argc, argv);
    if (cmd == "export") return bonsai::apps::export_command(argc, argv);
    if (cmd == "bench") return cmd_bench(argc, argv);
    if (cmd == "info") return cmd_info(argc, argv);
    if (cmd == "import") return cmd_import(argc, argv);
    if (cmd == "predict") return cmd_predict(argc, argv);
    if (cmd == "tensorboard") return cmd_tensorboard(argc, argv);
    if (cmd == "data") {
      BONSAI_CHECK(argc >= 3 && std::strcmp(argv[2], "prepare") == 0,
                   std::string("usage:\n") + bonsai::apps::kDataPrepareUsage);
      return bonsai::apps::data_prepare_command(argc, argv);
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      std::fputs(kUsage, stdout);
      std::fputs(bonsai::apps::kQuantUsage, stdout);
      std::fputs(bonsai::apps::kPruneUsage, stdout);
      std::fputs(bonsai::apps::kExportUsage, stdout);
      std::fputs(bonsai::apps::kDataPrepareUsage, stdout);
      std::fputs(bonsai::apps::kBenchDataUsage, stdout);
      std::fputs(bonsai::apps::kBenchTrainUsage, stdout);
      std::fputs(bonsai::apps::kBenchInferUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "bonsai: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const bonsai::dist::CollectiveError& e) {
    // Every rank threw this together: rank 0 reports, all exit normally.
    if (bonsai::dist::world().rank() == 0) std::fprintf(stderr, "bonsai: error: %s\n", e.what());
    bonsai::dist::finalize();
    return 1;
  } catch (const std::exception& e) {
    bonsai::dist::Communicator& world = bonsai::dist::world();
    if (world.size() == 1) {
      std::fprintf(stderr, "bonsai: error: %s\n", e.what());
      return 1;
    }
    // One rank failed alone while the others may wait for it in a
    // collective: say which and why, then end the whole job.
    std::fprintf(stderr, "bonsai: error on rank %d of %d: %s\n", world.rank(), world.size(), e.what());
    world.abort(1);
  }
}
