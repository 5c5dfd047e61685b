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
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace bonsai::apps {

struct RunOptions {
  std::string config;           // JSON experiment config
  std::string model_dir;
  std::string mode = "train";   // train | eval | train_and_eval
  std::string params_override;  // "a.b=v,..."
  std::string checkpoint;       // eval: a specific checkpoint (default: the newest)
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
};

RunResult run_experiment(const RunOptions& o);

}  // namespace bonsai::apps
