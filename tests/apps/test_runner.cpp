// The experiment runner end to end on a small Fashion-MNIST subset written in
// the ImageNet layout: exact resume, fine-tuning from a dense checkpoint,
// NaN handling, config errors before training, TensorBoard output.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "apps/experiment/runner.h"
#include "core/io/safetensors.h"
#include "core/io/tensorboard.h"
#include "data/prepare.h"
#include "layers/state.h"
#include "models/registry.h"

using namespace bonsai;
using namespace bonsai::apps;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// One prepared dataset for all runner tests (200 train / 100 val images).
const std::string& dataset_dir() {
  static std::string dir = [] {
    std::string d = (fs::temp_directory_path() / ("bonsai_runner_fm_" + std::to_string(::getpid()))).string();
    data::prepare_fashion_mnist_imagenet({.out_dir = d, .limit = 200});
    return d;
  }();
  return dir;
}

struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name)
      : path((fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))).string()) {
    fs::remove_all(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

json small_config() {
  return {{"task",
           {{"model",
             {{"name", "mobilenet_v2"},
              {"input_size", {32, 32, 3}},
              {"options", {{"num_classes", 10}, {"width_multiplier", 0.35}, {"dropout_rate", 0.2}}}}},
            {"train_data",
             {{"input_path", dataset_dir()}, {"split", "train"}, {"global_batch_size", 16}, {"aug", "shift_flip"},
              {"threads", 2}}},
            {"validation_data",
             {{"input_path", dataset_dir()}, {"split", "val"}, {"global_batch_size", 50}, {"aug", "pad"}}},
            {"losses", {{"label_smoothing", 0.1}, {"l2_weight_decay", 4e-5}}}}},
          {"trainer",
           {{"train_steps", 6},
            {"steps_per_loop", 2},
            {"validation_interval", 6},
            {"checkpoint_interval", 3},
            {"optimizer_config",
             {{"optimizer", {{"type", "sgd"}, {"sgd", {{"momentum", 0.9}, {"nesterov", true}}}}},
              {"learning_rate", {{"type", "cosine"}, {"cosine", {{"initial_learning_rate", 0.05}, {"decay_steps", 6}}}}},
              {"warmup", {{"type", "linear"}, {"linear", {{"warmup_steps", 2}}}}}}}}},
          {"runtime", {{"threads", 1}, {"seed", 3}}}};
}

std::string write_config(const std::string& dir, const json& j) {
  fs::create_directories(dir);
  std::string p = dir + "/config.json";
  std::ofstream(p) << j.dump(1);
  return p;
}

StateDict model_tensors(const std::string& ckpt) {
  StateDict out;
  for (auto& [k, t] : io::load_safetensors(ckpt))
    if (k.rfind("model/", 0) == 0) out[k] = t;
  return out;
}

std::string error_of(const RunOptions& o) {
  try {
    run_experiment(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("runner: N steps + resume + N steps equals 2N steps, bit for bit (1 thread)") {
  TempDir straight("bonsai_run_a"), resumed("bonsai_run_b"), cfg("bonsai_run_cfg");
  std::string config = write_config(cfg.path, small_config());
  RunResult a = run_experiment({.config = config, .model_dir = straight.path, .mode = "train", .quiet = true});
  CHECK(a.step == 6);
  RunResult b1 = run_experiment(
      {.config = config, .model_dir = resumed.path, .mode = "train", .stop_at_step = 3, .quiet = true});
  CHECK(b1.step == 3);
  RunResult b2 = run_experiment({.config = config, .model_dir = resumed.path, .mode = "train", .quiet = true});
  CHECK(b2.step == 6);
  StateDict ta = model_tensors(straight.path + "/ckpt-6.safetensors");
  StateDict tb = model_tensors(resumed.path + "/ckpt-6.safetensors");
  REQUIRE(ta.size() == tb.size());
  REQUIRE(ta.size() > 100);
  int differing = 0;
  for (auto& [k, t] : ta) {
    const Tensor& u = tb.at(k);
    if (std::memcmp(t.raw(), u.raw(), t.nbytes()) != 0) ++differing;
  }
  CHECK(differing == 0);
  // Optimiser slots too.
  auto fa = io::load_safetensors(straight.path + "/ckpt-6.safetensors");
  auto fb = io::load_safetensors(resumed.path + "/ckpt-6.safetensors");
  for (auto& entry : fa) {  // not a structured binding: clang cannot capture one in CHECK_MESSAGE
    const std::string& k = entry.first;
    const Tensor& t = entry.second;
    if (k.rfind("optimizer/", 0) == 0)
      CHECK_MESSAGE(std::memcmp(t.raw(), fb.at(k).raw(), t.nbytes()) == 0, k);
  }
  // The resolved config is saved; TensorBoard has the training scalars.
  CHECK(fs::exists(straight.path + "/params.json"));
  std::vector<io::ScalarEvent> ev;
  for (auto& f : fs::directory_iterator(straight.path + "/train"))
    for (auto& e : io::read_scalar_events(f.path().string())) ev.push_back(e);
  int losses = 0;
  for (auto& e : ev) losses += e.tag == "loss";
  CHECK(losses == 3);  // steps 2, 4, 6
}

TEST_CASE("runner: fine-tuning from a dense checkpoint loads the backbone and re-initialises the head") {
  TempDir dense("bonsai_run_dense"), tune("bonsai_run_tune"), cfg("bonsai_run_cfg2");
  json j = small_config();
  j["trainer"]["train_steps"] = 2;
  std::string config = write_config(cfg.path, j);
  run_experiment({.config = config, .model_dir = dense.path, .mode = "train", .quiet = true});
  std::string ckpt = dense.path + "/ckpt-2.safetensors";
  // Fine-tune config: same backbone, head for 10 classes, zero steps beyond
  // loading (stop at step 1 to keep the loaded values barely moved; compare
  // the state right after loading via a 0-step eval instead).
  json t = small_config();
  t["task"]["init_checkpoint"] = ckpt;
  t["task"]["init_checkpoint_modules"] = "backbone";
  t["trainer"]["train_steps"] = 1;
  t["trainer"]["optimizer_config"]["learning_rate"] = {{"type", "constant"}, {"constant", {{"learning_rate", 0.0}}}};
  t["trainer"]["optimizer_config"]["warmup"] = json::object();
  t["task"]["losses"] = {{"l2_weight_decay", 0.0}};
  std::string tconfig = write_config(cfg.path + "/t", t);
  run_experiment({.config = tconfig, .model_dir = tune.path, .mode = "train", .quiet = true});
  // With a zero learning rate the weights after one step are the loaded ones
  // (BN moving statistics do move: compare only parameters).
  auto dense_t = io::load_safetensors(ckpt);
  auto tuned = io::load_safetensors(tune.path + "/ckpt-1.safetensors");
  auto fresh = models::build("mobilenet_v2", t["task"]["model"]["options"]);
  StateDict fresh_state = state_dict(*fresh);
  int backbone_same = 0, head_fresh = 0, checked = 0;
  for (const auto& p : fresh->named_parameters()) {
    const Tensor& got = tuned.at("model/" + p.name);
    ++checked;
    if (p.name.rfind("backbone.", 0) == 0)
      backbone_same += std::memcmp(got.raw(), dense_t.at("model/" + p.name).raw(), got.nbytes()) == 0;
    else
      head_fresh += std::memcmp(got.raw(), p.tensor.raw(), got.nbytes()) == 0;
  }
  int backbone_params = 0;
  for (const auto& p : fresh->named_parameters()) backbone_params += p.name.rfind("backbone.", 0) == 0;
  CHECK(backbone_same == backbone_params);
  CHECK(head_fresh == checked - backbone_params);
  CHECK(head_fresh == 2);  // head.dense.kernel, head.dense.bias
}

TEST_CASE("runner: a NaN loss stops with the step named and the last checkpoint intact") {
  TempDir run("bonsai_run_nan"), cfg("bonsai_run_cfg3");
  json j = small_config();
  j["trainer"]["train_steps"] = 20;
  j["trainer"]["checkpoint_interval"] = 1;
  j["trainer"]["optimizer_config"]["learning_rate"] = {{"type", "constant"}, {"constant", {{"learning_rate", 1e30}}}};
  j["trainer"]["optimizer_config"]["warmup"] = json::object();
  std::string config = write_config(cfg.path, j);
  std::string e = error_of({.config = config, .model_dir = run.path, .mode = "train", .quiet = true});
  CHECK(e.find("loss is") != std::string::npos);
  CHECK(e.find("at step") != std::string::npos);
  CHECK(e.find("ckpt-") != std::string::npos);
  // Every checkpoint present loads.
  for (auto& f : fs::directory_iterator(run.path))
    if (f.path().extension() == ".safetensors") CHECK_NOTHROW(io::load_safetensors(f.path().string()));
}

TEST_CASE("runner: bad configs fail before training, naming the key or path") {
  TempDir run("bonsai_run_bad"), cfg("bonsai_run_cfg4");
  json j = small_config();
  j["task"]["model"]["name"] = "resnet9000";
  std::string e = error_of({.config = write_config(cfg.path, j), .model_dir = run.path, .quiet = true});
  CHECK(e.find("unknown model 'resnet9000'") != std::string::npos);
  j = small_config();
  j["task"]["train_data"]["input_path"] = "/nonexistent/fm";
  e = error_of({.config = write_config(cfg.path, j), .model_dir = run.path, .quiet = true});
  CHECK(e.find("/nonexistent/fm") != std::string::npos);
  j = small_config();
  j["task"]["model"]["options"]["widht_multiplier"] = 0.5;
  e = error_of({.config = write_config(cfg.path, j), .model_dir = run.path, .quiet = true});
  CHECK(e.find("widht_multiplier") != std::string::npos);
  CHECK_FALSE(fs::exists(run.path + "/ckpt-1.safetensors"));
}

TEST_CASE("runner: train_and_eval reports accuracy and keeps the best checkpoint") {
  TempDir run("bonsai_run_eval"), cfg("bonsai_run_cfg5");
  json j = small_config();
  j["trainer"]["best_checkpoint_eval_metric"] = "accuracy";
  j["trainer"]["validation_interval"] = 3;
  std::string config = write_config(cfg.path, j);
  RunResult r = run_experiment({.config = config, .model_dir = run.path, .mode = "train_and_eval", .quiet = true});
  REQUIRE(r.metrics.count("accuracy"));
  CHECK(r.metrics.at("accuracy") >= 0.0);
  CHECK(r.metrics.at("top_5_accuracy") >= r.metrics.at("accuracy"));
  CHECK(fs::exists(run.path + "/best_ckpt.safetensors"));
  CHECK(fs::exists(run.path + "/best_ckpt.json"));
  CHECK(fs::exists(run.path + "/summary.json"));
  RunResult ev = run_experiment({.config = config, .model_dir = run.path, .mode = "eval", .quiet = true});
  CHECK(ev.metrics.at("accuracy") == doctest::Approx(r.metrics.at("accuracy")));
}
