#include "apps/experiment/runner.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "apps/experiment/checkpoints.h"
#include "apps/experiment/config.h"
#include "apps/experiment/metrics.h"
#include "apps/lib/progress.h"
#include "core/autograd.h"
#include "core/dist/communicator.h"
#include "core/dist/grad_reducer.h"
#include "core/io/safetensors.h"
#include "core/io/tensorboard.h"
#include "core/ops.h"
#include "core/runtime.h"
#include "data/augment.h"
#include "data/imagenet.h"
#include "data/loader.h"
#include "data/voc.h"
#include "layers/layers.h"
#include "layers/state.h"
#include "models/registry.h"
#include "optim/ema.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "quant/int8_model.h"
#include "quant/quantize.h"
#include "prune/prune.h"

namespace bonsai::apps {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The first `limit` examples of another dataset (DataConfig::limit).
class Prefix : public data::Dataset {
 public:
  Prefix(std::unique_ptr<data::Dataset> inner, int64_t limit) : inner_(std::move(inner)), limit_(limit) {}
  int64_t size() const override { return std::min(limit_, inner_->size()); }
  data::Example get(int64_t i) const override { return inner_->get(i); }
  int64_t num_classes() const override { return inner_->num_classes(); }
  std::vector<std::string> class_names() const override { return inner_->class_names(); }
  std::string describe() const override {
    return inner_->describe() + " (first " + std::to_string(size()) + " used)";
  }

 private:
  std::unique_ptr<data::Dataset> inner_;
  int64_t limit_;
};

std::unique_ptr<data::Dataset> open_dataset(const DataConfig& d, const std::string& what);

std::unique_ptr<data::Dataset> make_dataset(const DataConfig& d, const std::string& what) {
  auto ds = open_dataset(d, what);
  if (d.limit > 0) return std::make_unique<Prefix>(std::move(ds), d.limit);
  return ds;
}

std::unique_ptr<data::Dataset> open_dataset(const DataConfig& d, const std::string& what) {
  BONSAI_CHECK(!d.input_path.empty(), what + ".input_path is not set");
  BONSAI_CHECK(fs::is_directory(d.input_path),
               what + ".input_path '" + d.input_path + "' is not a directory");
  data::OnError on_error = d.on_error == "skip" ? data::OnError::skip : data::OnError::fail;
  if (d.layout == "voc")
    return std::make_unique<data::VocDataset>(
        data::VocOptions{.root = d.input_path, .split = d.split, .on_error = on_error});
  return std::make_unique<data::ImageNetDataset>(
      data::ImageNetOptions{.root = d.input_path, .split = d.split, .on_error = on_error});
}

data::Transform make_transform(const DataConfig& d, const std::vector<int64_t>& input_size, bool segmentation) {
  const int64_t h = d.output_size.empty() ? input_size[0] : d.output_size[0];
  if (segmentation) {
    if (d.aug == "scale_crop_flip")
      return data::segment_train_transform({.crop = h,
                                            .scale_min = static_cast<float>(d.aug_scale_min),
                                            .scale_max = static_cast<float>(d.aug_scale_max),
                                            .flip = d.aug_rand_hflip});
    return data::segment_eval_transform({.pad = h});
  }
  if (d.aug == "inception") return data::classify_train_transform({.size = h, .flip = d.aug_rand_hflip});
  if (d.aug == "shift_flip") return data::pad_shift_transform({.pad_to = h, .shift = 2, .flip = d.aug_rand_hflip});
  if (d.aug == "pad") return data::pad_shift_transform({.pad_to = h, .shift = 0, .flip = false});
  if (d.aug == "none") return data::classify_eval_transform({.size = h, .crop_fraction = 1.0f});
  return data::classify_eval_transform({.size = h});
}

std::unique_ptr<optim::Optimizer> make_optimizer(const ExperimentConfig& c, std::vector<NamedParam> params) {
  const OptimizerConfig& o = c.optimizer;
  optim::OptimizerOptions common{.weight_decay = static_cast<float>(c.losses.l2_weight_decay),
                                 .decay_depthwise = c.losses.regularize_depthwise,
                                 .clip_global_norm = static_cast<float>(o.clip_global_norm)};
  auto num = [&](const char* k, double d) { return static_cast<float>(o.params.value(k, d)); };
  if (o.type == "sgd")
    return std::make_unique<optim::Sgd>(
        std::move(params), optim::SgdOptions{.momentum = num("momentum", 0.0), .nesterov = o.params.value("nesterov", false)},
        common);
  if (o.type == "rmsprop")
    return std::make_unique<optim::RmsProp>(
        std::move(params),
        optim::RmsPropOptions{.rho = num("rho", 0.9), .momentum = num("momentum", 0.0), .epsilon = num("epsilon", 1e-7)},
        common);
  optim::AdamOptions a{.beta1 = num("beta_1", 0.9), .beta2 = num("beta_2", 0.999), .epsilon = num("epsilon", 1e-7)};
  if (o.type == "adamw")
    return std::make_unique<optim::AdamW>(std::move(params), a, num("weight_decay_rate", 0.0), common);
  return std::make_unique<optim::Adam>(std::move(params), a, common);
}

optim::Schedule make_lr(const OptimizerConfig& o) {
  optim::ScheduleOptions s;
  s.type = optim::schedule_type_from_name(o.lr_type);
  const json& p = o.lr_params;
  s.initial_learning_rate = p.value(o.lr_type == "constant" ? "learning_rate" : "initial_learning_rate", 0.1);
  if (p.contains("boundaries")) s.boundaries = p["boundaries"].get<std::vector<double>>();
  if (p.contains("values")) s.values = p["values"].get<std::vector<double>>();
  s.decay_steps = p.value("decay_steps", 1.0);
  s.decay_rate = p.value("decay_rate", 0.96);
  s.staircase = p.value("staircase", false);
  s.alpha = p.value("alpha", 0.0);
  s.end_learning_rate = p.value("end_learning_rate", 0.0001);
  s.power = p.value("power", 1.0);
  s.offset = p.value("offset", 0.0);
  if (o.warmup_type == "linear") {
    s.warmup_steps = o.warmup_params.value("warmup_steps", 0.0);
    s.warmup_learning_rate = o.warmup_params.value("warmup_learning_rate", 0.0);
  }
  return optim::make_schedule(s);
}

// Checkpoint tensors: "model/<name>" for weights and buffers, the
// optimiser's slots under "optimizer/", EMA shadows under "ema/".
StateDict training_state(const Module& m, const optim::Optimizer& opt, const optim::Ema* ema,
                         const prune::Pruner* pruner) {
  StateDict s;
  for (auto& [k, t] : state_dict(m)) s["model/" + k] = t;
  for (auto& [k, t] : opt.state()) s["optimizer/" + k] = t;
  if (ema)
    for (auto& [k, t] : ema->state()) s[k] = t;
  if (pruner)
    for (auto& [k, t] : pruner->state()) s["pruning/" + k] = t;
  return s;
}

prune::PruneConfig prune_config(const PruningConfig& p) {
  return {.schedule = prune::Schedule::by_name(p.pruning_schedule, {.initial_sparsity = p.initial_sparsity,
                                                                    .final_sparsity = p.final_sparsity,
                                                                    .begin_step = p.begin_step,
                                                                    .end_step = p.end_step,
                                                                    .frequency = p.frequency,
                                                                    .power = p.power}),
          .granularity = prune::granularity_by_name(p.granularity),
          .block_h = static_cast<int>(p.block_size[0]),
          .block_w = static_cast<int>(p.block_size[1]),
          .n = static_cast<int>(p.n_m[0]),
          .m = static_cast<int>(p.n_m[1]),
          .prune_depthwise = p.prune_depthwise,
          .exclude = p.exclude,
          .overrides = {p.overrides.begin(), p.overrides.end()}};
}

uint32_t mix(uint64_t a, uint64_t b) {
  uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return static_cast<uint32_t>(x ^ (x >> 32));
}

void reseed_dropouts(Module& m, uint32_t seed, int64_t step) {
  m.visit([&](const std::string& name, Module& mod) {
    if (auto* d = dynamic_cast<Dropout*>(&mod)) d->reseed(mix(mix(seed, static_cast<uint64_t>(step)), std::hash<std::string>{}(name)));
  });
}

Tensor loss_for(const Tensor& logits, const Tensor& labels, const ExperimentConfig& c) {
  ops::CrossEntropyParams p{.label_smoothing = static_cast<float>(c.losses.label_smoothing),
                            .ignore_label = c.losses.ignore_label};
  if (logits.rank() == 4 && labels.rank() == 3 &&
      (logits.dim(1) != labels.dim(1) || logits.dim(2) != labels.dim(2)))
    return ops::softmax_cross_entropy(ops::resize_bilinear(logits, labels.dim(1), labels.dim(2)), labels, p);
  return ops::softmax_cross_entropy(logits, labels, p);
}

quant::QuantConfig quant_config(const QuantizationConfig& q) {
  return {.num_bits_weight = q.num_bits_weight,
          .num_bits_activation = q.num_bits_activation,
          .per_channel_weights = q.per_channel_weights,
          .quantize_input = q.quantize_input,
          .activation_range = {.decay = static_cast<float>(q.ema_decay),
                               .init = q.range_init == "first_batch" ? quant::RangeInit::first_batch
                                                                     : quant::RangeInit::fixed,
                               .freeze_step = q.freeze_step},
          .fold_batch_norm = q.fold_batch_norm,
          .simulate_integer_bias = q.simulate_integer_bias};
}

// An int8 model evaluated through the same loop as float models.
class Int8Evaluated : public Module {
 public:
  explicit Int8Evaluated(quant::Int8Model m) : model_(std::move(m)) {}
  Tensor forward(const Tensor& x) override { return model_.run(x); }
  std::string type_name() const override { return "Int8Model"; }

 private:
  quant::Int8Model model_;
};

struct EvalResult {
  std::map<std::string, double> metrics;
  std::vector<double> per_class_iou;
};

// Each rank evaluates the batches of its shard of the validation data; the
// loss sums, top-k counts and confusion matrices are summed over ranks, so
// every rank returns the metrics of the whole set.
EvalResult evaluate(Module& model, data::Loader& loader, const ExperimentConfig& c, int64_t num_classes,
                    bool segmentation, dist::Communicator& comm) {
  NoGrad no_grad;
  TopK topk;
  ConfusionMatrix cm(num_classes, c.losses.ignore_label);
  double loss_sum = 0;
  int64_t batches = 0;
  dist::collectively(comm, [&] {
    model.eval();
    loader.start_epoch(0);
    while (auto b = loader.next()) {
      if (c.validation_steps > 0 && batches >= c.validation_steps) break;
      Tensor logits = model.forward(b->images);
      loss_sum += loss_for(logits, b->labels, c).item();
      ++batches;
      if (segmentation) {
        if (logits.dim(1) != b->labels.dim(1) || logits.dim(2) != b->labels.dim(2))
          logits = ops::resize_bilinear(logits, b->labels.dim(1), b->labels.dim(2));
        cm.update_from_logits(logits, b->labels);
      } else {
        topk.update(logits, b->labels);
      }
    }
    model.train();
  });
  if (comm.size() > 1) {
    double sums[2] = {loss_sum, static_cast<double>(batches)};
    comm.allreduce_sum(sums, 2);
    loss_sum = sums[0];
    batches = static_cast<int64_t>(sums[1]);
    std::array<int64_t, 3> k = topk.counts();
    comm.allreduce_sum(k.data(), 3);
    topk.set_counts(k);
    if (segmentation) comm.allreduce_sum(cm.counts().data(), static_cast<int64_t>(cm.counts().size()));
  }
  EvalResult r;
  r.metrics["validation_loss"] = batches ? loss_sum / batches : 0.0;
  if (segmentation) {
    r.metrics["mean_iou"] = cm.mean_iou();
    r.metrics["pixel_accuracy"] = cm.pixel_accuracy();
    r.per_class_iou = cm.per_class_iou();
  } else {
    r.metrics["accuracy"] = topk.top1();
    r.metrics["top_5_accuracy"] = topk.top5();
  }
  return r;
}

void write_json_atomic(const std::string& path, const json& j) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(1) << "\n";
    BONSAI_CHECK(out.good(), "cannot write '" + tmp + "'");
  }
  fs::rename(tmp, path);
}

std::string metrics_line(const EvalResult& e) {
  std::string s;
  char buf[96];
  for (const auto& [k, v] : e.metrics) {
    std::snprintf(buf, sizeof buf, "%s%s %.4f", s.empty() ? "" : ", ", k.c_str(), v);
    s += buf;
  }
  return s;
}

}  // namespace

RunResult run_experiment(const RunOptions& options) {
  // Data-parallel (docs/distributed.md): every rank of dist::world() runs
  // this function in step with the others, on its shard of the data. Rank
  // 0, the chief, alone prints and writes to model_dir.
  dist::Communicator& comm = dist::world();
  const int world = comm.size();
  const bool chief = comm.rank() == 0;
  RunOptions o = options;
  if (!chief) o.quiet = true;
  BONSAI_CHECK(o.mode == "train" || o.mode == "eval" || o.mode == "train_and_eval",
               "unknown mode '" + o.mode + "' (train, eval, train_and_eval)");
  BONSAI_CHECK(!o.model_dir.empty(), "--model_dir is required");
  ExperimentConfig c = load_experiment_config(o.config, o.params_override);
  set_num_threads(dist::threads_per_rank(comm, c.threads));
  const bool training = o.mode != "eval";
  const bool segmentation = is_segmentation(c);

  // Everything that can be wrong with the config fails here, before a step.
  auto model = models::build(c.model_name, c.model_options);
  if (c.quantization.enabled) quant::quantize(*model, quant_config(c.quantization));
  // Pruning works on the parameter tensors, which the quantized layers share.
  std::unique_ptr<prune::Pruner> pruner;
  if (c.pruning.enabled) pruner = std::make_unique<prune::Pruner>(*model, prune_config(c.pruning));
  BONSAI_CHECK(o.int8_model.empty() || o.mode == "eval", "--int8 evaluates a converted model: use it with bonsai eval");
  std::unique_ptr<data::Dataset> train_ds, val_ds;
  if (training) train_ds = make_dataset(c.train_data, "task.train_data");
  const bool validate = o.mode != "train" || !c.validation_data.input_path.empty();
  if (validate) val_ds = make_dataset(c.validation_data, "task.validation_data");
  BONSAI_CHECK(!training || c.train_data.global_batch_size % world == 0,
               "task.train_data.global_batch_size " + std::to_string(c.train_data.global_batch_size) +
                   " must be a multiple of the " + std::to_string(world) + " ranks");
  if (chief) {
    fs::create_directories(o.model_dir);
    write_json_atomic(o.model_dir + "/params.json", to_json(c));
  }

  auto params = model->named_parameters();
  auto opt = make_optimizer(c, params);
  optim::Schedule lr = make_lr(c.optimizer);
  std::unique_ptr<optim::Ema> ema;
  if (c.optimizer.ema_average_decay > 0)
    ema = std::make_unique<optim::Ema>(params, optim::EmaOptions{.average_decay = c.optimizer.ema_average_decay});
  CheckpointManager ckpts(o.model_dir, c.max_to_keep);

  RunResult result;
  int64_t step = 0;
  std::string resume = o.mode == "eval" && !o.checkpoint.empty() ? o.checkpoint : ckpts.latest().value_or("");
  // The chief chooses and reads the checkpoint to resume from; the other
  // ranks receive its contents (model_dir need only exist where rank 0 runs).
  dist::broadcast_string(comm, resume, 0);
  auto read_on_chief = [&](const std::string& path) {
    io::SafetensorsFile f;
    dist::collectively(comm, [&] {
      if (chief) f = io::read_safetensors(path);
    });
    dist::broadcast_map(comm, f.tensors, 0);
    dist::broadcast_map(comm, f.metadata, 0);
    return f;
  };
  std::string float_init = c.init_checkpoint;
  if (c.pruning.enabled && !c.pruning.pretrained_original_checkpoint.empty())
    float_init = c.pruning.pretrained_original_checkpoint;
  if (c.quantization.enabled && !c.quantization.pretrained_original_checkpoint.empty())
    float_init = c.quantization.pretrained_original_checkpoint;
  // Masks saved with a checkpoint ("pruning/..."): restored into the
  // schedule's pruner, or — without task.pruning, e.g. QAT of a pruned
  // model — kept fixed so the zeros survive the fine-tuning.
  auto take_masks = [&](const StateDict& file, const std::string& from) {
    StateDict masks = with_prefix(file, "pruning/", true);
    if (masks.empty()) return;
    if (pruner) {
      pruner->load_state(masks);
    } else {
      pruner = std::make_unique<prune::Pruner>(prune::Pruner::with_fixed_masks(*model, masks));
      if (!o.quiet)
        std::printf("keeping the pruning masks of %s fixed (%.1f%% sparsity)\n", from.c_str(),
                    100.0 * pruner->sparsity());
    }
  };
  if (!o.int8_model.empty()) {
    quant::Int8Model int8 = quant::Int8Model::load(o.int8_model);
    int8.set_rescaling(quant::int8::rescaling_from_name(o.int8_rescaling));
    model = std::make_shared<Int8Evaluated>(std::move(int8));
    if (!o.quiet)
      std::printf("evaluating the int8 model %s (%s rescaling)\n", o.int8_model.c_str(), o.int8_rescaling.c_str());
  } else if (!resume.empty()) {
    io::SafetensorsFile f = read_on_chief(resume);
    load_state(*model, model_weights(f.tensors));
    if (training) take_masks(f.tensors, resume);
    StateDict opt_state = with_prefix(f.tensors, "optimizer/", true);
    if (!opt_state.empty()) opt->load_state(opt_state);
    if (ema) {
      StateDict e = with_prefix(f.tensors, "ema/", false);
      if (!e.empty()) ema->load_state(e);
    }
    step = f.metadata.count("step") ? std::stoll(f.metadata.at("step")) : 0;
    if (!o.quiet) std::printf("resumed from %s at step %lld\n", resume.c_str(), static_cast<long long>(step));
  } else if (training && !float_init.empty()) {
    const StateDict file = io::load_safetensors(float_init);
    const StateDict w = model_weights(file);
    LoadOptions lo{.strict = true};
    if (c.init_checkpoint_modules == "backbone") lo.include = {"backbone.*"};
    // A QAT model takes float weights by name; its quantizer state starts fresh.
    if (c.quantization.enabled) lo.exclude = quant::quantizer_state_names(*model);
    LoadReport rep = load_state(*model, w, lo);
    if (!o.quiet)
      std::printf("initialised %zu tensors from %s (%s); %zu left at their initial values\n", rep.loaded.size(),
                  float_init.c_str(), c.init_checkpoint_modules.c_str(), rep.skipped.size());
    take_masks(file, float_init);
  } else if (!training) {
    BONSAI_CHECK(false, "bonsai eval: no checkpoint in '" + o.model_dir + "' and none given with --checkpoint");
  }

  // Replicas start from rank 0's weights and statistics, whatever their seeds.
  std::vector<std::pair<std::string, Tensor>> param_pairs;
  for (const NamedParam& p : params) param_pairs.emplace_back(p.name, p.tensor);
  if (world > 1 && o.int8_model.empty()) {
    dist::broadcast_tensors(comm, param_pairs, 0);
    dist::broadcast_tensors(comm, model->named_buffers(), 0);
  }

  // The model may have more outputs than the data has classes (the Model
  // Garden's 1001 ImageNet outputs), never fewer.
  const int64_t data_classes = val_ds ? val_ds->num_classes() : train_ds->num_classes();
  const int64_t num_classes = c.model_options.value("num_classes", data_classes);
  BONSAI_CHECK(num_classes >= data_classes,
               "task.model.options.num_classes is " + std::to_string(num_classes) + " but the data has " +
                   std::to_string(data_classes) + " classes");
  std::unique_ptr<data::Loader> val_loader;
  if (val_ds)
    val_loader = std::make_unique<data::Loader>(data::LoaderOptions{
        .dataset = val_ds.get(),
        .batch_size = (c.validation_data.global_batch_size + world - 1) / world,  // each rank: its shard
        .shuffle = false,
        .seed = c.seed,
        .threads = c.validation_data.threads,
        .prefetch = c.validation_data.prefetch,
        .drop_remainder = false,
        .rank = comm.rank(),
        .world_size = world,
        .on_error = c.validation_data.on_error == "skip" ? data::OnError::skip : data::OnError::fail,
        .transform = make_transform(c.validation_data, c.input_size, segmentation)});

  auto run_eval = [&](io::EventWriter* tb) {
    // The replicas' BatchNorm statistics (each of its own data) are averaged.
    if (world > 1) dist::average_tensors(comm, model->named_buffers());
    EvalResult e;
    if (ema) {
      auto swap = ema->swap_in();
      e = evaluate(*model, *val_loader, c, num_classes, segmentation, comm);
    } else {
      e = evaluate(*model, *val_loader, c, num_classes, segmentation, comm);
    }
    if (tb) {
      for (const auto& [k, v] : e.metrics) tb->scalar(k, step, static_cast<float>(v));
      for (size_t i = 0; i < e.per_class_iou.size(); ++i)
        if (e.per_class_iou[i] >= 0) tb->scalar("iou/class_" + std::to_string(i), step, static_cast<float>(e.per_class_iou[i]));
      tb->flush();
    }
    if (!o.quiet) std::printf("step %lld validation: %s\n", static_cast<long long>(step), metrics_line(e).c_str());
    result.metrics = e.metrics;
    result.per_class_iou = e.per_class_iou;
    json summary{{"step", step}, {"metrics", e.metrics}};
    if (!e.per_class_iou.empty()) summary["per_class_iou"] = e.per_class_iou;
    if (chief) write_json_atomic(o.model_dir + "/summary.json", summary);
    return e;
  };

  if (!training) {
    io::EventWriter tb(chief ? o.model_dir + "/validation" : "");
    run_eval(&tb);
    result.step = step;
    return result;
  }

  data::Loader loader(data::LoaderOptions{
      .dataset = train_ds.get(),
      .batch_size = c.train_data.global_batch_size / world,
      .shuffle = c.train_data.shuffle,
      .seed = c.seed,
      .threads = c.train_data.threads,
      .prefetch = c.train_data.prefetch,
      .drop_remainder = c.train_data.drop_remainder,
      .rank = comm.rank(),
      .world_size = world,
      .shard_remainder = data::ShardRemainder::drop,  // equal shards: the same steps per epoch on every rank
      .on_error = c.train_data.on_error == "skip" ? data::OnError::skip : data::OnError::fail,
      .transform = make_transform(c.train_data, c.input_size, segmentation)});
  const int64_t per_epoch = loader.batches_per_epoch();
  BONSAI_CHECK(per_epoch > 0, "task.train_data: " + train_ds->describe() + " has fewer examples than one batch of " +
                                  std::to_string(c.train_data.global_batch_size));
  io::EventWriter tb_train(chief ? o.model_dir + "/train" : "");
  std::unique_ptr<io::EventWriter> tb_val;
  if (val_loader) tb_val = std::make_unique<io::EventWriter>(chief ? o.model_dir + "/validation" : "");

  const int64_t end = o.stop_at_step > 0 ? std::min(o.stop_at_step, c.train_steps) : c.train_steps;
  if (!o.quiet)
    std::printf("training %s (%lld parameters) on %s: steps %lld..%lld, %lld batches per epoch\n",
                c.model_name.c_str(), static_cast<long long>(model->num_parameters()), train_ds->describe().c_str(),
                static_cast<long long>(step), static_cast<long long>(c.train_steps), static_cast<long long>(per_epoch));
  Progress bar("train", c.train_steps, c.steps_per_loop);
  // Gradients averaged over the ranks in buckets, while backward runs.
  std::unique_ptr<dist::GradientReducer> reducer;
  if (world > 1) {
    std::vector<Tensor> ts;
    for (const NamedParam& p : params) ts.push_back(p.tensor);
    reducer = std::make_unique<dist::GradientReducer>(comm, ts,
                                                      dist::GradientReducerOptions{.bucket_mb = c.allreduce_bucket_mb});
    if (!o.quiet)
      std::printf("data-parallel over %d ranks (%s): batch %lld per rank, %d threads each, gradients in %lld buckets\n",
                  world, comm.describe().c_str(), static_cast<long long>(c.train_data.global_batch_size / world),
                  num_threads(), static_cast<long long>(reducer->num_buckets()));
  }
  // Dropout masks differ between ranks (each sees other examples) yet stay
  // reproducible; a single process keeps the seeds it always had.
  const uint32_t dropout_seed = world > 1 ? mix(c.seed, 0xD1570000u + static_cast<uint32_t>(comm.rank())) : c.seed;
  double status_seconds = 0;  // the per-step agreement between ranks
  const int64_t first_step = step;
  // The next batch. With several ranks they agree first: a rank's error
  // (a bad file) stops every rank, naming it; when one rank's epoch ends
  // (a batch of skipped files), every rank starts the next.
  auto next_batch = [&]() -> std::optional<data::Batch> {
    if (world == 1) return loader.next();
    std::optional<data::Batch> b;
    std::string failure;
    try {
      b = loader.next();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    const auto t0 = std::chrono::steady_clock::now();
    double mine[2] = {failure.empty() ? 0.0 : 1.0, b ? 0.0 : 1.0}, any[2] = {mine[0], mine[1]};
    comm.allreduce_sum(any, 2);
    status_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (any[0] > 0) {
      if (!o.quiet) bar.finish();
      dist::agree(comm, failure);  // throws on every rank
    }
    if (any[1] > 0) b.reset();
    return b;
  };
  // The loss of the global batch (the mean over ranks); a NaN on any rank
  // stops every rank, naming it.
  auto global_loss = [&](float lv) {
    if (world == 1) return lv;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<double> all = dist::allgather(comm, lv);
    status_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double sum = 0;
    for (int r = 0; r < world; ++r) {
      if (!std::isfinite(all[r])) {
        if (!o.quiet) bar.finish();
        auto last = ckpts.latest();
        throw dist::CollectiveError("rank " + std::to_string(r) + ": loss is " + std::to_string(all[r]) + " at step " +
                                    std::to_string(step) + "; stopping. The last good checkpoint is " +
                                    (last ? *last : std::string("(none)")));
      }
      sum += all[r];
    }
    return static_cast<float>(sum / world);
  };
  int64_t epoch = step / per_epoch;
  loader.start_epoch(epoch, step % per_epoch);
  model->train();
  double loop_loss = 0;
  int64_t loop_n = 0, loop_images = 0;
  auto loop_start = std::chrono::steady_clock::now();
  auto save = [&] {
    if (world > 1) {
      dist::average_tensors(comm, model->named_buffers());
      dist::check_identical(comm, param_pairs, "at step " + std::to_string(step));
      if (!chief) return result.last_checkpoint;  // rank 0 alone writes
    }
    // What `bonsai predict` needs to run the checkpoint on image files.
    std::map<std::string, std::string> meta{{"step", std::to_string(step)},
                                            {"model", c.model_name},
                                            {"options", c.model_options.dump()},
                                            {"input_size", json(c.input_size).dump()},
                                            {"eval_aug", c.validation_data.aug},
                                            {"class_names", json(train_ds->class_names()).dump()}};
    result.last_checkpoint = ckpts.save(step, training_state(*model, *opt, ema.get(), pruner.get()), meta);
    return result.last_checkpoint;
  };
  while (step < end) {
    std::optional<data::Batch> batch = next_batch();
    if (!batch) {
      for (const auto& s : loader.skipped())
        std::fprintf(stderr, "%sskipped %s: %s\n", world > 1 ? ("rank " + std::to_string(comm.rank()) + ": ").c_str() : "",
                     s.path.c_str(), s.message.c_str());
      loader.start_epoch(++epoch);
      continue;
    }
    reseed_dropouts(*model, dropout_seed, step);
    if (c.quantization.enabled && c.quantization.freeze_bn_step >= 0)
      quant::freeze_batch_norm(*model, step >= c.quantization.freeze_bn_step);
    if (pruner) pruner->step(step);  // masks recomputed when the schedule says, then applied
    const float rate = static_cast<float>(lr(step));
    Tensor loss = loss_for(model->forward(batch->images), batch->labels, c);
    const float lv = global_loss(loss.item());
    if (!std::isfinite(lv)) {
      bar.finish();
      auto last = ckpts.latest();
      BONSAI_CHECK(false, "loss is " + std::to_string(lv) + " at step " + std::to_string(step) +
                              "; stopping. The last good checkpoint is " + (last ? *last : std::string("(none)")));
    }
    model->zero_grad();
    if (reducer) {
      reducer->start();
      run_backward(loss, Tensor::full(loss.shape(), 1.0f), reducer->hooks());
      reducer->finish();  // averaged gradients: every rank takes the same step
    } else {
      loss.backward();
    }
    opt->step(rate);
    if (pruner) pruner->apply();  // pruned weights stay zero
    ++step;
    if (ema) ema->update(step);
    loop_loss += lv;
    ++loop_n;
    loop_images += batch->size() * world;
    result.final_loss = lv;
    if (!o.quiet) bar.update(step, lv, batch->size() * world, rate);
    if (step % c.steps_per_loop == 0 || step == end) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
      tb_train.scalar("loss", step, static_cast<float>(loop_loss / loop_n));
      tb_train.scalar("learning_rate", step, rate);
      tb_train.scalar("images_per_second", step, static_cast<float>(loop_images / std::max(secs, 1e-9)));
      if (pruner) {
        tb_train.scalar("pruning/sparsity", step, static_cast<float>(pruner->sparsity()));
        for (const prune::PrunedWeight& w : pruner->weights()) {
          tb_train.scalar("pruning/" + w.name + "/sparsity", step, static_cast<float>(w.sparsity()));
          tb_train.scalar("pruning/" + w.name + "/threshold", step, w.threshold);
        }
      }
      tb_train.flush();
      loop_loss = 0;
      loop_n = loop_images = 0;
      loop_start = std::chrono::steady_clock::now();
    }
    bool ckpt_due = step % c.checkpoint_interval == 0 || step == end;
    if (ckpt_due) save();
    if (val_loader && o.mode == "train_and_eval" && (step % c.validation_interval == 0 || step == c.train_steps)) {
      if (!o.quiet) bar.finish();
      EvalResult e = run_eval(tb_val.get());
      if (!c.best_checkpoint_eval_metric.empty() && e.metrics.count(c.best_checkpoint_eval_metric)) {
        std::string src = ckpt_due ? result.last_checkpoint : save();
        if (chief) ckpts.update_best(src, step, c.best_checkpoint_eval_metric, e.metrics.at(c.best_checkpoint_eval_metric),
                          c.best_checkpoint_metric_comp == "higher");
      }
    }
  }
  if (!o.quiet) bar.finish();
  result.train_seconds = bar.elapsed_s();
  result.step = step;
  if (reducer && !o.quiet && step > first_step) {
    const double steps = static_cast<double>(step - first_step);
    const double per_step = result.train_seconds / steps;
    const double comm_s = reducer->comm_seconds() / steps, wait_s = reducer->wait_seconds() / steps;
    // The agreement between ranks also waits for the slowest one to load
    // its batch and run forward: load imbalance more than communication.
    std::printf("gradient allreduce: %.1f ms of %.1f ms per step (%.1f%%), %.1f ms (%.1f%%) after backward ended; "
                "agreeing on loss and errors: %.1f ms\n",
                1e3 * comm_s, 1e3 * per_step, 100.0 * comm_s / per_step, 1e3 * wait_s, 100.0 * wait_s / per_step,
                1e3 * status_seconds / steps);
  }
  if (pruner) {
    const std::string table = pruner->table();
    if (!o.quiet) std::printf("%s", table.c_str());
    if (chief) std::ofstream(o.model_dir + "/sparsity.txt") << table;
    result.sparsity = pruner->sparsity();
  }
  if (chief && c.quantization.enabled && c.quantization.num_bits_weight == 8 &&
      c.quantization.num_bits_activation == 8 && step == c.train_steps) {
    // The deployable integer model of the final weights.
    std::optional<optim::Ema::Swap> swap;
    if (ema) swap.emplace(*ema);
    quant::Int8Model int8 = quant::convert(*model, Tensor::zeros({1, c.input_size[0], c.input_size[1], c.input_size[2]}));
    result.int8_model = o.model_dir + "/model_int8.safetensors";
    int8.save(result.int8_model);
    if (!o.quiet) std::printf("int8 model: %s\n", result.int8_model.c_str());
  }
  return result;
}

std::shared_ptr<Module> build_config_model(const ExperimentConfig& c, const std::string& checkpoint) {
  auto model = models::build(c.model_name, c.model_options);
  if (c.quantization.enabled) quant::quantize(*model, quant_config(c.quantization));
  load_state(*model, model_weights(io::load_safetensors(checkpoint)));
  return model;
}

std::shared_ptr<Module> build_quantized_from_float(const ExperimentConfig& c, const QuantizationConfig& qc,
                                                   const std::string& float_checkpoint) {
  auto model = models::build(c.model_name, c.model_options);
  quant::quantize(*model, quant_config(qc));
  quant::load_float_state(*model, model_weights(io::load_safetensors(float_checkpoint)));
  return model;
}

ConfigData eval_data(const ExperimentConfig& c, bool train_split, int64_t batch) {
  const DataConfig& d = train_split ? c.train_data : c.validation_data;
  DataConfig e = d;
  e.aug = c.validation_data.aug;  // the evaluation preprocessing, also for calibration images
  ConfigData out;
  out.dataset = make_dataset(e, train_split ? "task.train_data" : "task.validation_data");
  out.loader = std::make_unique<data::Loader>(data::LoaderOptions{
      .dataset = out.dataset.get(),
      .batch_size = batch > 0 ? batch : d.global_batch_size,
      .shuffle = train_split,  // calibration sees a sample of the classes, not the first few
      .seed = c.seed,
      .threads = d.threads,
      .prefetch = d.prefetch,
      .drop_remainder = false,
      .on_error = d.on_error == "skip" ? data::OnError::skip : data::OnError::fail,
      .transform = make_transform(e, c.input_size, is_segmentation(c))});
  return out;
}

bool is_segmentation(const ExperimentConfig& c) { return c.train_data.layout == "voc"; }

double evaluate_metric(Module& model, const ExperimentConfig& c, int64_t max_batches) {
  ConfigData d = eval_data(c, false);
  ExperimentConfig limited = c;
  if (max_batches > 0) limited.validation_steps = max_batches;
  const int64_t num_classes = c.model_options.value("num_classes", d.dataset->num_classes());
  EvalResult e = evaluate(model, *d.loader, limited, num_classes, is_segmentation(c), *dist::local());
  return 100.0 * (is_segmentation(c) ? e.metrics.at("mean_iou") : e.metrics.at("accuracy"));
}

}  // namespace bonsai::apps
