#include "apps/lib/bench_model.h"

#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/lib/args.h"
#include "core/autograd.h"
#include "core/check.h"
#include "core/io/atomic_file.h"
#include "core/op_profile.h"
#include "core/ops.h"
#include "core/runtime.h"
#include "export/float_graph.h"
#include "infer/float_runtime.h"
#include "models/registry.h"
#include "optim/optimizer.h"
#include "quant/calibrate.h"
#include "quant/int8_model.h"
#include "quant/quantize.h"

namespace bonsai::apps {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Peak resident set of this process in MiB (Linux reports ru_maxrss in KiB),
// rounded down as the peer's `ru_maxrss // 1024` is.
int64_t peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) / 1024;
}

// Rounds to `digits` decimals, as the peer's round() does, so the JSON lines
// read alike.
double round_to(double v, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

// The int8 profile as lines "  conv_1x1      3.21 ms  41.0%", slowest first,
// averaged over the profiled runs, with the total last.
std::string profile_text(const std::map<std::string, double>& profile, int runs) {
  if (profile.empty() || runs == 0) return "";
  std::vector<std::pair<double, std::string>> rows;
  double total = 0;
  for (const auto& [type, seconds] : profile) {
    rows.emplace_back(seconds / runs, type);
    total += seconds / runs;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::string out = "int8 profile, ms per run (mean of " + std::to_string(runs) + " runs):\n";
  char line[128];
  for (const auto& [seconds, type] : rows) {
    std::snprintf(line, sizeof line, "  %-16s %8.3f ms %6.1f%%\n", type.c_str(), 1000 * seconds,
                  100 * seconds / total);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-16s %8.3f ms\n", "total", 1000 * total);
  return out + line;
}

// Seconds per timed training step outside the ops, summed over the timed steps.
struct StepParts {
  double step = 0, zero_grad = 0, backward = 0, optimizer = 0;
};

// The training profile (see kBenchTrainUsage): one row per op name and
// direction plus the step's other parts, ms per step, slowest first; "other"
// makes the rows add up to the mean step.
std::string train_profile_text(const OpProfile& prof, const StepParts& parts, int steps) {
  struct Row {
    double seconds;
    std::string name;
    int64_t calls;  // 0: not an op
  };
  std::vector<Row> rows;
  double fwd_ops = 0, bwd_ops = 0;
  for (const auto& [op, st] : prof.forward()) {
    rows.push_back({st.seconds / steps, op + " fwd", st.calls});
    fwd_ops += st.seconds / steps;
  }
  for (const auto& [op, st] : prof.backward()) {
    rows.push_back({st.seconds / steps, op + " bwd", st.calls});
    bwd_ops += st.seconds / steps;
  }
  const double step = parts.step / steps;
  const double autograd = parts.backward / steps - bwd_ops;
  rows.push_back({parts.optimizer / steps, "optimizer", 0});
  rows.push_back({parts.zero_grad / steps, "zero_grad", 0});
  rows.push_back({autograd, "autograd", 0});
  rows.push_back({0.0, "data", 0});
  double listed = 0;
  for (const Row& r : rows) listed += r.seconds;
  rows.push_back({step - listed, "other", 0});
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.seconds > b.seconds; });

  char line[160];
  std::snprintf(line, sizeof line, "train profile, ms per step (mean of %d timed steps of %.3f ms):\n", steps,
                1000 * step);
  std::string out = line;
  for (const Row& r : rows) {
    int n = std::snprintf(line, sizeof line, "  %-26s %9.3f ms %6.1f%%", r.name.c_str(), 1000 * r.seconds,
                          100 * r.seconds / step);
    if (r.calls > 0)
      std::snprintf(line + n, sizeof line - n, " %6.1f calls", static_cast<double>(r.calls) / steps);
    out += line;
    out += '\n';
  }
  std::snprintf(line, sizeof line, "  %-26s %9.3f ms %6.1f%%\n", "measured (all but other)", 1000 * listed,
                100 * listed / step);
  out += line;
  std::snprintf(line, sizeof line, "  %-26s %9.3f ms\n", "step", 1000 * step);
  out += line;
  out += "  (fwd: from the previous op's end to this op's record; bwd: its backward closure; autograd:\n"
         "   backward outside the closures; data: none, one random batch made before timing;\n"
         "   other: the step minus every row above)\n";
  return out;
}

}  // namespace

std::string bench_model(const ModelBenchSpec& s, std::string* profile_out) {
  BONSAI_CHECK(s.mode == "train" || s.mode == "infer", "bench mode must be train or infer, got " + s.mode);
  BONSAI_CHECK(s.steps > 0 && s.warmup >= 0 && s.res > 0 && s.classes > 0,
               "--steps, --res and --classes must be positive and --warmup non-negative");
  set_num_threads(s.threads);
  if (profile_out) profile_out->clear();
  const bool train = s.mode == "train";
  const int batch = train ? s.batch : 1;
  BONSAI_CHECK(batch > 0, "--batch must be positive");
  BONSAI_CHECK(s.engine == "graph" || s.engine == "eager", "--engine must be graph or eager, got " + s.engine);

  auto model = models::build(s.model, {{"num_classes", s.classes}});
  std::mt19937 rng(0);
  // Activations are NHWC; the values do not matter for speed, only that they
  // are ordinary (no denormals, no NaNs).
  Tensor x = Tensor::randn({batch, s.res, s.res, 3}, rng);
  Tensor labels = Tensor::zeros({batch}, DType::s64);
  std::uniform_int_distribution<int64_t> pick(0, s.classes - 1);
  for (int i = 0; i < batch; ++i) labels.data<int64_t>()[i] = pick(rng);

  std::vector<double> times;
  std::map<std::string, double> profile;  // int8 --profile: seconds by op type
  int profiled_runs = 0;
  if (train) {
    model->train();
    optim::Sgd opt(model->named_parameters(), {.momentum = 0.9f}, {.weight_decay = 4e-5f});
    std::optional<OpProfile> prof;  // --profile: the timed steps only
    StepParts parts;
    for (int i = 0; i < s.warmup + s.steps; ++i) {
      if (s.profile && i == s.warmup) prof.emplace();
      double t0 = now_s();
      model->zero_grad();
      double t_zero = now_s();
      if (prof) prof->mark();
      Tensor loss = ops::softmax_cross_entropy(model->forward(x), labels);
      double t_fwd = now_s();
      loss.backward();
      double t_bwd = now_s();
      opt.step(0.01f);
      double t1 = now_s();
      BONSAI_CHECK(std::isfinite(loss.item()), "bench train: the loss is not finite");
      if (i < s.warmup) continue;
      times.push_back(t1 - t0);
      parts.step += t1 - t0;
      parts.zero_grad += t_zero - t0;
      parts.backward += t_bwd - t_fwd;
      parts.optimizer += t1 - t_bwd;
    }
    if (prof && profile_out) *profile_out = train_profile_text(*prof, parts, s.steps);
  } else if (!s.int8.empty()) {
    // The integer model: a file, or this model quantized, calibrated on the
    // (random) input and converted — the weights do not change the speed.
    quant::Int8Model int8;
    if (s.int8 == "true") {
      quant::quantize(*model);
      quant::calibrate(*model, [&](int) { model->forward(x); });
      int8 = quant::convert(*model, x);
      if (!s.save_int8.empty()) int8.save(s.save_int8);
    } else {
      int8 = quant::Int8Model::load(s.int8);
    }
    int8.set_rescaling(quant::int8::rescaling_from_name(s.rescaling));
    for (int i = 0; i < s.warmup + s.steps; ++i) {
      if (s.profile && i == s.warmup) int8.set_profiling(true);  // the timed runs only
      double t0 = now_s();
      Tensor logits = int8.run(x);
      double t1 = now_s();
      if (i >= s.warmup) times.push_back(t1 - t0);
    }
    if (s.profile) {
      profile = int8.profile();
      profiled_runs = int8.profiled_runs();
    }
  } else if (s.engine == "graph") {
    infer::FloatRuntime rt(exporters::convert_float(*model, x));
    for (int i = 0; i < s.warmup + s.steps; ++i) {
      double t0 = now_s();
      Tensor logits = rt.run(x);
      double t1 = now_s();
      if (i >= s.warmup) times.push_back(t1 - t0);
    }
  } else {
    model->eval();
    NoGrad no_grad;
    for (int i = 0; i < s.warmup + s.steps; ++i) {
      double t0 = now_s();
      Tensor logits = model->forward(x);
      double t1 = now_s();
      if (i >= s.warmup) times.push_back(t1 - t0);
    }
  }
  std::sort(times.begin(), times.end());
  double med = times[times.size() / 2];  // the peer's median (upper one for even counts)

  nlohmann::ordered_json j;
  j["peer"] = "bonsai";
  j["model"] = s.model;
  j["mode"] = s.mode;
  if (!train) j["precision"] = s.int8.empty() ? "fp32" : "int8";
  if (!train && s.int8.empty()) j["engine"] = s.engine;
  if (!train && !s.int8.empty()) j["rescaling"] = s.rescaling;
  j["batch"] = batch;
  j["res"] = s.res;
  j["threads"] = num_threads();
  j["params"] = model->num_parameters();
  j["median_step_s"] = round_to(med, 4);
  if (!train) j["median_ms"] = round_to(1000.0 * med, 3);  // 3 decimals: sub-ms latencies (the float graph)
  j["images_per_s"] = round_to(batch / med, 2);
  j["peak_rss_mib"] = peak_rss_mib();
  if (profile_out && !train) *profile_out = profile_text(profile, profiled_runs);
  return j.dump();
}

namespace {

// The node runner next to the sources: tests/node/run_onnx.js under the
// working directory, else two levels above the executable (build/apps/bonsai).
std::string find_run_onnx() {
  namespace fs = std::filesystem;
  const fs::path here = fs::path("tests") / "node" / "run_onnx.js";
  if (fs::exists(here)) return here.string();
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path beside = exe.parent_path().parent_path().parent_path() / "tests" / "node" / "run_onnx.js";
  BONSAI_CHECK(!ec && fs::exists(beside), "bonsai bench infer --onnx: tests/node/run_onnx.js not found in " +
                                              fs::current_path().string() + " nor at " + beside.string() +
                                              " (run from the source tree, with its node_modules installed)");
  return beside.string();
}

// Batch-1 latency of an exported ONNX model in ONNX Runtime (onnxruntime-node
// via tests/node/run_onnx.js --bench) on one random image of the model's
// input size: the same kind of JSON line as bench_model's, peer "onnxruntime".
std::string bench_onnxruntime(const ModelBenchSpec& s, const std::string& onnx) {
  namespace fs = std::filesystem;
  BONSAI_CHECK(fs::exists(onnx), "bonsai bench infer --onnx: no file " + onnx);
  const std::string script = find_run_onnx();
  char tmpl[] = "/tmp/bonsai_bench_onnx_XXXXXX";
  BONSAI_CHECK(::mkdtemp(tmpl) != nullptr, "bonsai bench infer --onnx: cannot make a temporary directory");
  const std::string dir = tmpl;
  std::vector<float> image(static_cast<size_t>(s.res) * s.res * 3);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : image) v = u(rng);
  io::write_file_atomically(dir + "/images.f32", reinterpret_cast<const char*>(image.data()), image.size() * sizeof(float));
  const std::string meta = nlohmann::json({{"count", 1}, {"shape", {s.res, s.res, 3}}, {"task", "classification"}}).dump();
  io::write_file_atomically(dir + "/meta.json", meta.data(), meta.size());
  const std::string cmd = "node " + script + " --model '" + onnx + "' --images " + dir + " --bench " +
                          std::to_string(s.steps) + " --threads " + std::to_string(std::max(1, s.threads)) + " 2>&1";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, f)) out += buf;
    const int rc = ::pclose(f);
    fs::remove_all(dir);
    BONSAI_CHECK(rc == 0, "bonsai bench infer --onnx: the ONNX Runtime runner failed (" + cmd + "): " + out);
  } else {
    fs::remove_all(dir);
    BONSAI_CHECK(false, "bonsai bench infer --onnx: cannot start " + cmd);
  }
  const auto brace = out.rfind('{');
  BONSAI_CHECK(brace != std::string::npos, "bonsai bench infer --onnx: no result from " + cmd + ": " + out);
  const nlohmann::json r = nlohmann::json::parse(out.substr(brace), nullptr, false);
  BONSAI_CHECK(!r.is_discarded() && r.contains("median_ms"), "bonsai bench infer --onnx: unreadable result: " + out);
  nlohmann::ordered_json j;
  j["peer"] = "onnxruntime";
  j["model"] = s.model;
  j["mode"] = "infer";
  j["onnx"] = onnx;
  j["batch"] = 1;
  j["res"] = s.res;
  j["threads"] = std::max(1, s.threads);
  j["median_ms"] = r["median_ms"];
  j["images_per_s"] = round_to(1000.0 / r["median_ms"].get<double>(), 2);
  return j.dump();
}

// batch 0: the mode takes no --batch flag.
int run_command(int argc, char** argv, const char* mode, int batch, int threads, int steps, int warmup) {
  std::map<std::string, std::string> flags = {
      {"model", ""}, {"res", "224"}, {"threads", std::to_string(threads)},
      {"steps", std::to_string(steps)}, {"warmup", std::to_string(warmup)}, {"classes", "1000"},
      {"profile", "false"}};
  if (batch == 0) {  // infer: FP32 or int8
    flags["int8"] = "";
    flags["save-int8"] = "";
    flags["engine"] = "graph";
    flags["rescaling"] = "fixed_point";
    flags["onnx"] = "";
  }
  if (batch > 0) flags["batch"] = std::to_string(batch);  // infer is batch 1 by definition
  Args a(argc, argv, 3, flags);
  BONSAI_CHECK(!a.get("model").empty(), std::string("bonsai bench ") + mode + " needs --model NAME");
  ModelBenchSpec s;
  s.model = a.get("model");
  s.mode = mode;
  s.batch = batch > 0 ? a.get_int("batch") : 1;
  s.res = a.get_int("res");
  s.classes = a.get_int("classes");
  s.threads = a.get_int("threads");
  s.steps = a.get_int("steps");
  s.warmup = a.get_int("warmup");
  s.profile = a.get_bool("profile");
  if (batch == 0) {
    s.int8 = a.get("int8");
    s.save_int8 = a.get("save-int8");
    s.engine = a.get("engine");
    s.rescaling = a.get("rescaling");
    quant::int8::rescaling_from_name(s.rescaling);  // refused early when unknown
    BONSAI_CHECK(s.save_int8.empty() || s.int8 == "true", "bonsai bench infer: --save-int8 needs --int8 true");
    BONSAI_CHECK(!s.profile || !s.int8.empty(), "bonsai bench infer: --profile needs --int8");
  }
  if (batch == 0 && !a.get("onnx").empty()) {
    std::printf("%s\n", bench_onnxruntime(s, a.get("onnx")).c_str());
    return 0;
  }
  // The JSON line first (scripts read it), then the profile as more lines.
  std::string profile;
  std::printf("%s\n", bench_model(s, &profile).c_str());
  std::fputs(profile.c_str(), stdout);
  return 0;
}

}  // namespace

int bench_train_command(int argc, char** argv) { return run_command(argc, argv, "train", 8, 2, 5, 2); }

int bench_infer_command(int argc, char** argv) { return run_command(argc, argv, "infer", 0, 1, 20, 3); }

}  // namespace bonsai::apps
