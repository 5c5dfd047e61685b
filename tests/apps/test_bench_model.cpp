// bench_model: the JSON line carries the peer's fields with sane values.
#include <doctest/doctest.h>

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
