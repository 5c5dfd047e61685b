// bench_model: the JSON line carries the peer's fields with sane values.
#include <doctest/doctest.h>

#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "apps/lib/bench_model.h"

using namespace bonsai;

TEST_CASE("bench_model train prints the PyTorch peer's fields") {
  apps::ModelBenchSpec s{.model = "mobilenet_v2", .mode = "train", .batch = 2, .res = 32,
                         .classes = 10, .threads = 1, .steps = 1, .warmup = 0};
  auto j = nlohmann::json::parse(apps::bench_model(s));
  // The keys tests/peer/torch_train_step.py prints, no more and no fewer.
  for (const char* k : {"peer", "model", "mode", "batch", "res", "threads", "params", "median_step_s",
                        "images_per_s", "peak_rss_mib"})
    CHECK_MESSAGE(j.contains(k), k);
  CHECK(j.size() == 10);
  CHECK(j["model"] == "mobilenet_v2");
  CHECK(j["mode"] == "train");
  CHECK(j["batch"] == 2);
  CHECK(j["params"] == 2236682);  // torchvision mobilenet_v2(num_classes=10)
  CHECK(j["median_step_s"].get<double>() > 0.0);
  CHECK(j["images_per_s"].get<double>() > 0.0);
  CHECK(j["peak_rss_mib"].get<int64_t>() > 0);
}

TEST_CASE("bench_model infer runs batch 1 and reports milliseconds") {
  apps::ModelBenchSpec s{.model = "mobilenet_v2", .mode = "infer", .batch = 8, .res = 32,
                         .classes = 10, .threads = 1, .steps = 2, .warmup = 1};
  auto j = nlohmann::json::parse(apps::bench_model(s));
  CHECK(j["batch"] == 1);
  CHECK(j["mode"] == "infer");
  double ms = j["median_ms"].get<double>();
  CHECK(ms > 0.0);
  CHECK(j["images_per_s"].get<double>() == doctest::Approx(1000.0 / ms).epsilon(0.01));
}

namespace {

// The profile's rows "  <name>  <ms> ms  <pct>%[ <calls> calls]": ms by name,
// and calls per step by name for the op rows.
std::map<std::string, double> profile_rows(const std::string& text, std::map<std::string, double>* calls) {
  std::map<std::string, double> rows;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto ms = line.find(" ms");
    if (line.rfind("  ", 0) != 0 || ms == std::string::npos) continue;
    std::string head = line.substr(0, ms);
    auto cut = head.find_last_of(' ');
    std::string name = head.substr(0, cut);
    name = name.substr(2, name.find_last_not_of(' ') - 1);
    rows[name] = std::stod(head.substr(cut + 1));
    auto c = line.find(" calls");
    if (c != std::string::npos) {
      std::string before = line.substr(0, c);
      (*calls)[name] = std::stod(before.substr(before.find_last_of(' ') + 1));
    }
  }
  return rows;
}

}  // namespace

TEST_CASE("bench_model train --profile: time per op type adds up to the step") {
  apps::ModelBenchSpec s{.model = "mobilenet_v2", .mode = "train", .batch = 2, .res = 32,
                         .classes = 10, .threads = 1, .steps = 2, .warmup = 1, .profile = true};
  std::string text;
  auto j = nlohmann::json::parse(apps::bench_model(s, &text));
  CAPTURE(text);
  CHECK(j.size() == 10);  // the JSON line is unchanged
  std::map<std::string, double> calls;
  auto rows = profile_rows(text, &calls);
  for (const char* name : {"conv2d fwd", "conv2d bwd", "conv2d_1x1 fwd", "conv2d_1x1 bwd",
                           "conv2d_depthwise fwd", "conv2d_depthwise bwd", "batch_norm fwd",
                           "batch_norm bwd", "relu6 fwd", "relu6 bwd", "add fwd", "add bwd",
                           "softmax_cross_entropy fwd", "optimizer", "zero_grad", "autograd", "data",
                           "other", "measured (all but other)", "step"}) {
    CAPTURE(name);
    REQUIRE(rows.count(name) == 1);
    CHECK(rows[name] >= 0.0);
  }
  CHECK(rows["conv2d_1x1 bwd"] > 0.0);
  CHECK(rows["batch_norm fwd"] > 0.0);
  CHECK(rows["optimizer"] > 0.0);
  CHECK(rows["data"] == 0.0);
  // MobileNetV2 per step: the 3x3 stem, 17 depthwise and 34 1x1 convs (16
  // expansions, 17 projections, the last 1x1), each with a batch norm.
  CHECK(calls["conv2d fwd"] == 1.0);
  CHECK(calls["conv2d_depthwise fwd"] == 17.0);
  CHECK(calls["conv2d_depthwise bwd"] == 17.0);
  CHECK(calls["conv2d_1x1 bwd"] == 34.0);
  CHECK(calls["batch_norm fwd"] == 52.0);
  CHECK(calls["batch_norm bwd"] == 52.0);
  CHECK(calls.count("optimizer") == 0);
  double step = rows["step"], sum = 0;
  for (const auto& [name, ms] : rows)
    if (name != "step" && name != "measured (all but other)") sum += ms;
  CHECK(sum == doctest::Approx(step).epsilon(0.01));
  // The ops and the step's parts account for nearly all of it.
  CHECK(rows["measured (all but other)"] > 0.9 * step);
  CHECK(rows["other"] < 0.1 * step);
  CHECK(step == doctest::Approx(rows["measured (all but other)"] + rows["other"]).epsilon(0.01));

  s.profile = false;
  apps::bench_model(s, &text);
  CHECK(text.empty());
}
