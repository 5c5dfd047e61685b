#include "apps/experiment/config.h"

#include <fstream>
#include <set>

#include "core/check.h"

namespace bonsai::apps {

namespace {

using nlohmann::json;

// A strict view of one JSON object at a key path: every key must be read
// (finish() reports the rest), and types must match the default's type.
class Section {
 public:
  Section(const json& j, std::string path, std::string source)
      : j_(j), path_(std::move(path)), source_(std::move(source)) {
    BONSAI_CHECK(j_.is_object(), where("") + " must be an object, got " + j_.dump());
  }

  std::string where(const std::string& key) const {
    std::string p = path_.empty() ? key : (key.empty() ? path_ : path_ + "." + key);
    return source_ + ": '" + p + "'";
  }

  template <typename T>
  void get(const std::string& key, T& out) {
    used_.insert(key);
    if (!j_.contains(key)) return;
    const json& v = j_.at(key);
    bool ok;
    if constexpr (std::is_same_v<T, bool>) ok = v.is_boolean();
    else if constexpr (std::is_integral_v<T>) ok = v.is_number_integer();
    else if constexpr (std::is_floating_point_v<T>) ok = v.is_number();
    else if constexpr (std::is_same_v<T, std::string>) ok = v.is_string();
    else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
      ok = v.is_array();
      for (const auto& e : v) ok = ok && e.is_number_integer();
    } else ok = true;
    BONSAI_CHECK(ok, where(key) + " has the wrong type: " + v.dump());
    out = v.get<T>();
  }

  void get_json(const std::string& key, json& out) {
    used_.insert(key);
    if (j_.contains(key)) out = j_.at(key);
  }

  bool has(const std::string& key) const { return j_.contains(key); }

  Section sub(const std::string& key) {
    used_.insert(key);
    static const json empty = json::object();
    return Section(j_.contains(key) ? j_.at(key) : empty, path_.empty() ? key : path_ + "." + key, source_);
  }

  void finish() const {
    for (const auto& [k, v] : j_.items())
      BONSAI_CHECK(used_.count(k), where(k) + " is not a known key");
  }

 private:
  const json& j_;
  std::string path_, source_;
  std::set<std::string> used_;
};

void one_of(const Section& s, const std::string& key, const std::string& value,
            std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += std::string(list.empty() ? "" : ", ") + a;
  }
  BONSAI_CHECK(false, s.where(key) + " is \"" + value + "\"; expected one of " + list);
}

DataConfig parse_data(Section s, bool training) {
  DataConfig d;
  d.is_training = training;
  d.shuffle = training;
  d.drop_remainder = training;
  d.aug = training ? "inception" : "center_crop";
  s.get("input_path", d.input_path);
  s.get("layout", d.layout);
  s.get("split", d.split);
  s.get("global_batch_size", d.global_batch_size);
  s.get("is_training", d.is_training);
  s.get("shuffle", d.shuffle);
  s.get("drop_remainder", d.drop_remainder);
  s.get("aug", d.aug);
  s.get("aug_rand_hflip", d.aug_rand_hflip);
  s.get("aug_scale_min", d.aug_scale_min);
  s.get("aug_scale_max", d.aug_scale_max);
  s.get("output_size", d.output_size);
  s.get("threads", d.threads);
  s.get("prefetch", d.prefetch);
  s.get("on_error", d.on_error);
  s.get("limit", d.limit);
  s.finish();
  one_of(s, "layout", d.layout, {"imagenet", "voc"});
  one_of(s, "aug", d.aug, {"inception", "shift_flip", "center_crop", "none", "scale_crop_flip", "pad"});
  one_of(s, "on_error", d.on_error, {"fail", "skip"});
  BONSAI_CHECK(d.global_batch_size > 0, s.where("global_batch_size") + " must be positive");
  BONSAI_CHECK(d.output_size.empty() || d.output_size.size() == 2, s.where("output_size") + " must be [H, W]");
  return d;
}

}  // namespace

ExperimentConfig parse_experiment_config(const json& j, const std::string& source) {
  ExperimentConfig c;
  Section root(j, "", source);
  {
    Section task = root.sub("task");
    {
      Section model = task.sub("model");
      model.get("name", c.model_name);
      model.get_json("options", c.model_options);
      model.get("input_size", c.input_size);
      model.finish();
      BONSAI_CHECK(!c.model_name.empty(), model.where("name") + " is required (a registry model name)");
      BONSAI_CHECK(c.model_options.is_object(), model.where("options") + " must be an object");
      BONSAI_CHECK(c.input_size.size() == 3 && c.input_size[2] == 3,
                   model.where("input_size") + " must be [H, W, 3]");
    }
    if (task.has("train_data")) c.train_data = parse_data(task.sub("train_data"), true);
    else task.sub("train_data");
    if (task.has("validation_data")) c.validation_data = parse_data(task.sub("validation_data"), false);
    else {
      task.sub("validation_data");
      c.validation_data = parse_data(Section(json::object(), "task.validation_data", source), false);
    }
    {
      Section l = task.sub("losses");
      l.get("label_smoothing", c.losses.label_smoothing);
      l.get("l2_weight_decay", c.losses.l2_weight_decay);
      l.get("regularize_depthwise", c.losses.regularize_depthwise);
      l.get("ignore_label", c.losses.ignore_label);
      l.finish();
    }
    task.get("init_checkpoint", c.init_checkpoint);
    task.get("init_checkpoint_modules", c.init_checkpoint_modules);
    one_of(task, "init_checkpoint_modules", c.init_checkpoint_modules, {"all", "backbone"});
    if (task.has("quantization")) {
      Section q = task.sub("quantization");
      QuantizationConfig& qc = c.quantization;
      qc.enabled = true;
      q.get("pretrained_original_checkpoint", qc.pretrained_original_checkpoint);
      q.get("num_bits_weight", qc.num_bits_weight);
      q.get("num_bits_activation", qc.num_bits_activation);
      q.get("per_channel_weights", qc.per_channel_weights);
      q.get("quantize_input", qc.quantize_input);
      q.get("range_init", qc.range_init);
      q.get("ema_decay", qc.ema_decay);
      q.get("freeze_step", qc.freeze_step);
      q.get("fold_batch_norm", qc.fold_batch_norm);
      q.get("simulate_integer_bias", qc.simulate_integer_bias);
      q.get("freeze_bn_step", qc.freeze_bn_step);
      q.finish();
      one_of(q, "range_init", qc.range_init, {"fixed", "first_batch"});
      auto check_bits = [&](const char* key, int bits) {
        BONSAI_CHECK(bits == 4 || bits == 6 || bits == 8, q.where(key) + " must be 4, 6 or 8, got " + std::to_string(bits));
      };
      check_bits("num_bits_weight", qc.num_bits_weight);
      check_bits("num_bits_activation", qc.num_bits_activation);
      BONSAI_CHECK(qc.ema_decay > 0 && qc.ema_decay < 1, q.where("ema_decay") + " must be in (0, 1)");
    } else {
      task.sub("quantization");
    }
    if (task.has("pruning")) {
      Section q = task.sub("pruning");
      PruningConfig& pc = c.pruning;
      pc.enabled = true;
      q.get("pretrained_original_checkpoint", pc.pretrained_original_checkpoint);
      q.get("pruning_schedule", pc.pruning_schedule);
      q.get("initial_sparsity", pc.initial_sparsity);
      q.get("final_sparsity", pc.final_sparsity);
      q.get("begin_step", pc.begin_step);
      q.get("end_step", pc.end_step);
      q.get("frequency", pc.frequency);
      q.get("power", pc.power);
      q.get("granularity", pc.granularity);
      q.get("block_size", pc.block_size);
      q.get("n_m", pc.n_m);
      q.get("prune_depthwise", pc.prune_depthwise);
      json exclude = json::array(), overrides = json::object();
      q.get_json("exclude", exclude);
      q.get_json("overrides", overrides);
      q.finish();
      one_of(q, "pruning_schedule", pc.pruning_schedule, {"PolynomialDecay", "ConstantSparsity"});
      one_of(q, "granularity", pc.granularity, {"unstructured", "block", "n_m"});
      BONSAI_CHECK(pc.block_size.size() == 2 && pc.block_size[0] > 0 && pc.block_size[1] > 0,
                   q.where("block_size") + " must be [height, width] with positive sizes");
      BONSAI_CHECK(pc.n_m.size() == 2 && pc.n_m[0] >= 1 && pc.n_m[0] < pc.n_m[1],
                   q.where("n_m") + " must be [N, M] with 1 <= N < M");
      BONSAI_CHECK(exclude.is_array(), q.where("exclude") + " must be a list of name globs");
      for (const auto& e : exclude) {
        BONSAI_CHECK(e.is_string(), q.where("exclude") + " must be a list of name globs, got " + e.dump());
        pc.exclude.push_back(e.get<std::string>());
      }
      BONSAI_CHECK(overrides.is_object(), q.where("overrides") + " must map name globs to sparsities");
      for (auto it = overrides.begin(); it != overrides.end(); ++it) {
        BONSAI_CHECK(it->is_number() && it->get<double>() >= 0 && it->get<double>() < 1,
                     q.where("overrides") + " '" + it.key() + "' must be a sparsity in [0, 1)");
        pc.overrides[it.key()] = it->get<double>();
      }
    } else {
      task.sub("pruning");
    }
    task.finish();
  }
  {
    Section t = root.sub("trainer");
    t.get("train_steps", c.train_steps);
    t.get("steps_per_loop", c.steps_per_loop);
    t.get("validation_interval", c.validation_interval);
    t.get("validation_steps", c.validation_steps);
    t.get("checkpoint_interval", c.checkpoint_interval);
    t.get("max_to_keep", c.max_to_keep);
    t.get("best_checkpoint_eval_metric", c.best_checkpoint_eval_metric);
    t.get("best_checkpoint_metric_comp", c.best_checkpoint_metric_comp);
    one_of(t, "best_checkpoint_metric_comp", c.best_checkpoint_metric_comp, {"higher", "lower"});
    if (!c.best_checkpoint_eval_metric.empty())
      one_of(t, "best_checkpoint_eval_metric", c.best_checkpoint_eval_metric,
             {"accuracy", "top_5_accuracy", "mean_iou", "validation_loss"});
    BONSAI_CHECK(c.train_steps > 0 && c.steps_per_loop > 0 && c.validation_interval > 0 &&
                     c.checkpoint_interval > 0 && c.max_to_keep > 0,
                 t.where("") + ": train_steps, steps_per_loop, validation_interval, checkpoint_interval and "
                               "max_to_keep must be positive");
    Section oc = t.sub("optimizer_config");
    OptimizerConfig& o = c.optimizer;
    {
      Section opt = oc.sub("optimizer");
      opt.get("type", o.type);
      one_of(opt, "type", o.type, {"sgd", "rmsprop", "adam", "adamw"});
      opt.get_json(o.type, o.params);
      opt.finish();
      Section p(o.params, "trainer.optimizer_config.optimizer." + o.type, source);
      // Validate the per-optimizer block's keys and types here, once.
      double d;
      bool b;
      if (o.type == "sgd") {
        p.get("momentum", d);
        p.get("nesterov", b);
      } else if (o.type == "rmsprop") {
        p.get("rho", d);
        p.get("momentum", d);
        p.get("epsilon", d);
      } else {
        p.get("beta_1", d);
        p.get("beta_2", d);
        p.get("epsilon", d);
        if (o.type == "adamw") p.get("weight_decay_rate", d);
      }
      p.get("global_clipnorm", o.clip_global_norm);
      p.finish();
    }
    {
      Section lr = oc.sub("learning_rate");
      lr.get("type", o.lr_type);
      one_of(lr, "type", o.lr_type, {"constant", "stepwise", "exponential", "cosine", "polynomial"});
      lr.get_json(o.lr_type, o.lr_params);
      lr.finish();
      Section p(o.lr_params, "trainer.optimizer_config.learning_rate." + o.lr_type, source);
      double d;
      bool b;
      if (o.lr_type == "constant") p.get("learning_rate", d);
      else if (o.lr_type == "stepwise") {
        json boundaries, values;
        p.get_json("boundaries", boundaries);
        p.get_json("values", values);
        p.get("offset", d);
        BONSAI_CHECK(boundaries.is_array() && values.is_array() && values.size() == boundaries.size() + 1,
                     p.where("") + " needs arrays 'boundaries' and 'values' with one more value than boundaries");
      } else {
        p.get("initial_learning_rate", d);
        p.get("decay_steps", d);
        p.get("offset", d);
        if (o.lr_type == "exponential") {
          p.get("decay_rate", d);
          p.get("staircase", b);
        }
        if (o.lr_type == "cosine") p.get("alpha", d);
        if (o.lr_type == "polynomial") {
          p.get("end_learning_rate", d);
          p.get("power", d);
        }
      }
      p.finish();
    }
    {
      Section w = oc.sub("warmup");
      w.get("type", o.warmup_type);
      if (!o.warmup_type.empty()) {
        one_of(w, "type", o.warmup_type, {"linear"});
        w.get_json(o.warmup_type, o.warmup_params);
        Section p(o.warmup_params, "trainer.optimizer_config.warmup.linear", source);
        double d;
        p.get("warmup_steps", d);
        p.get("warmup_learning_rate", d);
        p.finish();
      }
      w.finish();
    }
    {
      Section e = oc.sub("ema");
      e.get("average_decay", o.ema_average_decay);
      e.finish();
    }
    oc.finish();
    t.finish();
  }
  {
    Section r = root.sub("runtime");
    r.get("threads", c.threads);
    r.get("seed", c.seed);
    r.get("allreduce_bucket_mb", c.allreduce_bucket_mb);
    r.finish();
    BONSAI_CHECK(c.allreduce_bucket_mb > 0, r.where("allreduce_bucket_mb") + " must be positive");
  }
  root.finish();
  return c;
}

void apply_overrides(json& j, const std::string& params_override) {
  // Indexing a non-object by key throws nlohmann's type_error; say what is
  // wrong instead (the schema walk would refuse such a config anyway).
  BONSAI_CHECK(params_override.empty() || j.is_object(),
               "--params_override: the config is not a JSON object, got " +
                   j.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 80));
  size_t start = 0;
  while (start < params_override.size()) {
    size_t comma = params_override.find(',', start);
    // Commas inside brackets belong to a JSON value ([1,2]).
    size_t depth_scan = start;
    int depth = 0;
    for (; depth_scan < params_override.size(); ++depth_scan) {
      char ch = params_override[depth_scan];
      if (ch == '[' || ch == '{') ++depth;
      if (ch == ']' || ch == '}') --depth;
      if (ch == ',' && depth == 0) break;
    }
    comma = depth_scan;
    std::string item = params_override.substr(start, comma - start);
    start = comma + 1;
    if (item.empty()) continue;
    auto eq = item.find('=');
    BONSAI_CHECK(eq != std::string::npos && eq > 0, "--params_override item '" + item + "' is not key.path=value");
    // JSON strings must be UTF-8: a bare-string value (or key) that is not
    // would make every later dump() of the config (error messages,
    // params.json) throw nlohmann's type_error instead of naming the item.
    try {
      (void)json(item).dump();
    } catch (const json::exception&) {
      BONSAI_CHECK(false, "--params_override item '" + json(item).dump(-1, ' ', false, json::error_handler_t::replace) +
                              "' is not valid UTF-8");
    }
    std::string path = item.substr(0, eq), raw = item.substr(eq + 1);
    json value;
    try {
      value = json::parse(raw);
    } catch (const json::exception&) {
      value = raw;  // a bare string
    }
    json* node = &j;
    size_t p = 0;
    while (true) {
      size_t dot = path.find('.', p);
      std::string key = path.substr(p, dot == std::string::npos ? std::string::npos : dot - p);
      BONSAI_CHECK(!key.empty(), "--params_override key '" + path + "' has an empty component");
      if (dot == std::string::npos) {
        (*node)[key] = value;
        break;
      }
      if (!node->contains(key)) (*node)[key] = json::object();
      node = &(*node)[key];
      BONSAI_CHECK(node->is_object(), "--params_override '" + path + "': '" + key + "' is not an object");
      p = dot + 1;
    }
  }
}

ExperimentConfig load_experiment_config(const std::string& path, const std::string& params_override) {
  std::ifstream in(path);
  BONSAI_CHECK(in.good(), "cannot read experiment config '" + path + "'");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    BONSAI_CHECK(false, "experiment config '" + path + "' is not valid JSON: " + e.what());
  }
  apply_overrides(j, params_override);
  return parse_experiment_config(j, path);
}

namespace {
json data_json(const DataConfig& d) {
  return {{"input_path", d.input_path}, {"layout", d.layout},           {"split", d.split},
          {"global_batch_size", d.global_batch_size},                   {"is_training", d.is_training},
          {"shuffle", d.shuffle},       {"drop_remainder", d.drop_remainder}, {"aug", d.aug},
          {"aug_rand_hflip", d.aug_rand_hflip}, {"aug_scale_min", d.aug_scale_min},
          {"aug_scale_max", d.aug_scale_max},   {"output_size", d.output_size}, {"threads", d.threads},
          {"prefetch", d.prefetch},     {"on_error", d.on_error},       {"limit", d.limit}};
}

json to_json_base(const ExperimentConfig& c) {
  json oc = {{"optimizer", {{"type", c.optimizer.type}, {c.optimizer.type, c.optimizer.params}}},
             {"learning_rate", {{"type", c.optimizer.lr_type}, {c.optimizer.lr_type, c.optimizer.lr_params}}}};
  if (!c.optimizer.warmup_type.empty())
    oc["warmup"] = {{"type", c.optimizer.warmup_type}, {c.optimizer.warmup_type, c.optimizer.warmup_params}};
  if (c.optimizer.ema_average_decay > 0) oc["ema"] = {{"average_decay", c.optimizer.ema_average_decay}};
  return {{"task",
           {{"model", {{"name", c.model_name}, {"options", c.model_options}, {"input_size", c.input_size}}},
            {"train_data", data_json(c.train_data)},
            {"validation_data", data_json(c.validation_data)},
            {"losses",
             {{"label_smoothing", c.losses.label_smoothing},
              {"l2_weight_decay", c.losses.l2_weight_decay},
              {"regularize_depthwise", c.losses.regularize_depthwise},
              {"ignore_label", c.losses.ignore_label}}},
            {"init_checkpoint", c.init_checkpoint},
            {"init_checkpoint_modules", c.init_checkpoint_modules}}},
          {"trainer",
           {{"train_steps", c.train_steps},
            {"steps_per_loop", c.steps_per_loop},
            {"validation_interval", c.validation_interval},
            {"validation_steps", c.validation_steps},
            {"checkpoint_interval", c.checkpoint_interval},
            {"max_to_keep", c.max_to_keep},
            {"best_checkpoint_eval_metric", c.best_checkpoint_eval_metric},
            {"best_checkpoint_metric_comp", c.best_checkpoint_metric_comp},
            {"optimizer_config", oc}}},
          {"runtime", {{"threads", c.threads}, {"seed", c.seed}, {"allreduce_bucket_mb", c.allreduce_bucket_mb}}}};
}

}  // namespace

json to_json(const ExperimentConfig& c) {
  json j = to_json_base(c);
  if (c.quantization.enabled) {
    const QuantizationConfig& q = c.quantization;
    j["task"]["quantization"] = {{"pretrained_original_checkpoint", q.pretrained_original_checkpoint},
                                 {"num_bits_weight", q.num_bits_weight},
                                 {"num_bits_activation", q.num_bits_activation},
                                 {"per_channel_weights", q.per_channel_weights},
                                 {"quantize_input", q.quantize_input},
                                 {"range_init", q.range_init},
                                 {"ema_decay", q.ema_decay},
                                 {"freeze_step", q.freeze_step},
                                 {"fold_batch_norm", q.fold_batch_norm},
                                 {"simulate_integer_bias", q.simulate_integer_bias},
                                 {"freeze_bn_step", q.freeze_bn_step}};
  }
  if (c.pruning.enabled) {
    const PruningConfig& p = c.pruning;
    j["task"]["pruning"] = {{"pretrained_original_checkpoint", p.pretrained_original_checkpoint},
                            {"pruning_schedule", p.pruning_schedule},
                            {"initial_sparsity", p.initial_sparsity},
                            {"final_sparsity", p.final_sparsity},
                            {"begin_step", p.begin_step},
                            {"end_step", p.end_step},
                            {"frequency", p.frequency},
                            {"power", p.power},
                            {"granularity", p.granularity},
                            {"block_size", p.block_size},
                            {"n_m", p.n_m},
                            {"prune_depthwise", p.prune_depthwise},
                            {"exclude", p.exclude},
                            {"overrides", p.overrides}};
  }
  return j;
}

}  // namespace bonsai::apps
