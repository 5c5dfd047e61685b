// Experiment configuration: JSON whose keys mirror the Model Garden's YAML
// (task.model, task.train_data, task.validation_data, task.losses,
// task.init_checkpoint(_modules), trainer.optimizer_config, trainer.*).
// Parsing is strict: unknown keys and wrong types are errors naming the full
// key path; defaults are filled in and the resolved config can be written
// back (the runner saves it as <model_dir>/params.json).
//
//   ExperimentConfig c = load_experiment_config("configs/fashion_mnist_mobilenet_v2.json",
//                                               "trainer.train_steps=100,task.train_data.global_batch_size=64");
//   nlohmann::json resolved = to_json(c);
//
// Example (every key optional except task.model.name and the data paths):
//   {"task": {"model": {"name": "mobilenet_v2", "input_size": [32, 32, 3],
//                       "options": {"num_classes": 10, "width_multiplier": 1.0}},
//             "train_data": {"input_path": "/data/fmnist", "layout": "imagenet", "split": "train",
//                            "global_batch_size": 128, "aug": "shift_flip"},
//             "validation_data": {"input_path": "/data/fmnist", "layout": "imagenet", "split": "val",
//                                 "global_batch_size": 500},
//             "losses": {"label_smoothing": 0.1, "l2_weight_decay": 4e-5},
//             "init_checkpoint": "", "init_checkpoint_modules": "all"},
//    "trainer": {"train_steps": 1404, "steps_per_loop": 100, "validation_interval": 468,
//                "checkpoint_interval": 468, "max_to_keep": 3,
//                "best_checkpoint_eval_metric": "accuracy",
//                "optimizer_config": {
//                  "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9, "nesterov": true}},
//                  "learning_rate": {"type": "cosine", "cosine": {"initial_learning_rate": 0.1,
//                                                                 "decay_steps": 1404}},
//                  "warmup": {"type": "linear", "linear": {"warmup_steps": 200}}}},
//    "runtime": {"threads": 0, "seed": 0, "allreduce_bucket_mb": 25}}
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bonsai::apps {

struct DataConfig {
  std::string input_path;
  std::string layout = "imagenet";  // imagenet | voc | fashion_mnist_idx
  std::string split = "train";
  int64_t global_batch_size = 128;
  bool is_training = true;
  bool shuffle = true;
  bool drop_remainder = true;
  // Augmentation: "inception" (random resized crop + flip), "shift_flip"
  // (pad + random shift + flip, small images), "center_crop" (eval), "none";
  // segmentation: "scale_crop_flip" / "pad" (eval).
  std::string aug = "inception";
  bool aug_rand_hflip = true;
  double aug_scale_min = 0.5, aug_scale_max = 2.0;  // segmentation
  std::vector<int64_t> output_size;                 // [H, W]; empty: task.model.input_size
  int threads = 2;                                  // decode workers
  int prefetch = 4;                                 // batches
  std::string on_error = "fail";                    // fail | skip
  int64_t limit = 0;                                // use only the first N examples (0 = all)
};

struct LossConfig {
  double label_smoothing = 0.0;
  double l2_weight_decay = 0.0;
  bool regularize_depthwise = false;
  int64_t ignore_label = 255;
};

struct OptimizerConfig {
  std::string type = "sgd";  // sgd | rmsprop | adam | adamw
  nlohmann::json params = nlohmann::json::object();  // the block under optimizer.<type>
  std::string lr_type = "constant";                    // constant | stepwise | exponential | cosine | polynomial
  nlohmann::json lr_params = nlohmann::json::object();
  std::string warmup_type;  // "" | linear
  nlohmann::json warmup_params = nlohmann::json::object();
  double ema_average_decay = 0.0;  // 0 = no EMA
  double clip_global_norm = 0.0;
};

// task.quantization: QAT as the Model Garden configures it. Present (enabled)
// means the model is quantized (quant::quantize) right after it is built;
// the float weights of pretrained_original_checkpoint load into it by name
// (quantizer state skipped) unless the run resumes.
struct QuantizationConfig {
  bool enabled = false;
  std::string pretrained_original_checkpoint;
  int num_bits_weight = 8;
  int num_bits_activation = 8;
  bool per_channel_weights = true;
  bool quantize_input = true;
  std::string range_init = "fixed";  // fixed (TFMOT: from ±6) | first_batch
  double ema_decay = 0.999;          // moving-average decay of activation ranges
  int64_t freeze_step = -1;          // ranges stop moving after this many QAT steps; -1: never
  bool fold_batch_norm = false;      // BN folded in training (quant/quantize.h) instead of at conversion
  bool simulate_integer_bias = true; // eval-mode simulation adds the int32 bias rounding (quant/quantize.h)
  int64_t freeze_bn_step = -1;       // from this step on BN uses its moving statistics; -1: never
};

// task.pruning: magnitude pruning as the Model Garden configures it (its
// keys), plus bonsai's granularity, depthwise, exclusion and override keys.
// Present (enabled) means the model's kernels are pruned on the schedule
// (prune/prune.h); float weights come from pretrained_original_checkpoint.
struct PruningConfig {
  bool enabled = false;
  std::string pretrained_original_checkpoint;
  std::string pruning_schedule = "PolynomialDecay";  // PolynomialDecay | ConstantSparsity
  double initial_sparsity = 0.0;
  double final_sparsity = 0.5;
  int64_t begin_step = 0;
  int64_t end_step = -1;   // PolynomialDecay: required (> begin_step)
  int64_t frequency = 100;
  double power = 3.0;
  std::string granularity = "unstructured";  // unstructured | block | n_m
  std::vector<int64_t> block_size{1, 1};       // block: [height, width]
  std::vector<int64_t> n_m{2, 4};              // n_m: [N, M]
  bool prune_depthwise = false;
  std::vector<std::string> exclude;                  // globs on parameter names
  std::map<std::string, double> overrides;           // glob -> final sparsity
};

struct ExperimentConfig {
  // task
  std::string model_name;
  nlohmann::json model_options = nlohmann::json::object();
  std::vector<int64_t> input_size{224, 224, 3};
  DataConfig train_data, validation_data;
  LossConfig losses;
  std::string init_checkpoint;
  std::string init_checkpoint_modules = "all";  // all | backbone
  QuantizationConfig quantization;
  PruningConfig pruning;
  // trainer
  int64_t train_steps = 1000;
  int64_t steps_per_loop = 100;
  int64_t validation_interval = 1000;
  int64_t validation_steps = -1;  // -1: the whole validation set
  int64_t checkpoint_interval = 1000;
  int64_t max_to_keep = 5;
  std::string best_checkpoint_eval_metric;  // "" = no best checkpoint; "accuracy", "top_5_accuracy", "mean_iou"
  std::string best_checkpoint_metric_comp = "higher";
  OptimizerConfig optimizer;
  // runtime
  int threads = 0;  // per rank; 0: all cores, or under MPI the cores of this rank (dist::threads_per_rank)
  uint32_t seed = 0;
  double allreduce_bucket_mb = 25.0;  // MPI: gradients are averaged in buckets of about this size
};

// Parses `j` strictly; `source` names the file in messages.
ExperimentConfig parse_experiment_config(const nlohmann::json& j, const std::string& source);
// Reads a JSON file and applies "a.b=v,c.d=w" overrides (values parsed as
// JSON when they can be, else taken as strings) before parsing.
ExperimentConfig load_experiment_config(const std::string& path, const std::string& params_override = "");
// Applies overrides to a JSON document; each key path must already exist
// or be a key the schema accepts (checked by the parse that follows).
void apply_overrides(nlohmann::json& j, const std::string& params_override);
nlohmann::json to_json(const ExperimentConfig& c);

}  // namespace bonsai::apps
