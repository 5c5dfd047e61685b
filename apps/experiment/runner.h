// The experiment runner: `bonsai train`, `bonsai eval`, `bonsai train_and_eval`.
//
//   RunOptions o{.config = "configs/fashion_mnist_mobilenet_v2.json", .model_dir = "runs/mnv2",
//                .mode = "train_and_eval"};
//   RunResult r = run_experiment(o);
//
// Train: builds the model and data from the config (failing before any step
// on a bad key, path or model name), resumes from the newest
// ckpt-<step>.safetensors in model_dir if there is one (else loads
// task.init_checkpoint, all or backbone only), then steps: forward → loss
// (+ L2 via the optimiser) → backward → update → EMA. Every steps_per_loop
// steps it logs loss, learning rate and images/s to TensorBoard
// (model_dir/train); every checkpoint_interval it writes a checkpoint (model,
// BN statistics, optimiser slots, EMA, step); every validation_interval and at
// the end it evaluates (model_dir/validation), keeping the best checkpoint
// by trainer.best_checkpoint_eval_metric. A NaN or infinite loss stops the
// run with an error naming the step; the last checkpoint stays intact.
//
// Data-parallel: when dist::world() has several ranks (bonsai train under
// mpirun), every rank runs this in step on its shard of the data, with
// gradients averaged over ranks; rank 0 alone prints and writes model_dir
// (docs/distributed.md).
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/experiment/config.h"
#include "data/loader.h"
#include "layers/module.h"

namespace bonsai::apps {

struct RunOptions {
  std::string config;           // JSON experiment config
  std::string model_dir;
  std::string mode = "train";   // train | eval | train_and_eval
  std::string params_override;  // "a.b=v,..."
  std::string checkpoint;       // eval: a specific checkpoint (default: the newest)
  std::string int8_model;       // eval: a converted int8 model instead of a checkpoint
  std::string int8_rescaling = "fixed_point";  // with int8_model: quant::int8::Rescaling by name
  int64_t stop_at_step = 0;     // > 0: stop (after checkpointing) once this step is reached; tests use it
  bool quiet = false;           // no progress display
};

struct RunResult {
  int64_t step = 0;                         // global step reached
  std::map<std::string, double> metrics;    // last evaluation: accuracy, top_5_accuracy or mean_iou, validation_loss
  std::vector<double> per_class_iou;        // segmentation
  double final_loss = 0.0;
  double train_seconds = 0.0;
  std::string last_checkpoint;
  std::string int8_model;  // QAT runs (8-bit) that reach train_steps: model_dir/model_int8.safetensors
  double sparsity = 0.0;   // pruning runs: zeros over the pruned weights at the end
};

RunResult run_experiment(const RunOptions& o);

// Pieces of the runner for the other commands that run a config's model on
// its data (bonsai convert, verify-int8, ptq).
//
// The config's model, quantized (quant::quantize) when task.quantization is
// present, with the weights of `checkpoint` (a bonsai train checkpoint or a
// model checkpoint) loaded strictly.
std::shared_ptr<Module> build_config_model(const ExperimentConfig& c, const std::string& checkpoint);
// The config's model, quantized with `qc` after loading a float checkpoint
// (quantizer state starts fresh): what PTQ calibrates.
std::shared_ptr<Module> build_quantized_from_float(const ExperimentConfig& c, const QuantizationConfig& qc,
                                                   const std::string& float_checkpoint);
// A loader over a config's training or validation data with the eval
// transform (no augmentation), batches of `batch` (0: the config's).
struct ConfigData {
  std::unique_ptr<data::Dataset> dataset;
  std::unique_ptr<data::Loader> loader;
};
ConfigData eval_data(const ExperimentConfig& c, bool train_split, int64_t batch = 0);
// A model's top-1 (classification) or mean IoU (segmentation), in percent,
// on the config's validation data, at most `max_batches` batches (0: all).
double evaluate_metric(Module& model, const ExperimentConfig& c, int64_t max_batches = 0);
// A segmentation experiment (VOC layout data) rather than classification.
bool is_segmentation(const ExperimentConfig& c);

}  // namespace bonsai::apps
