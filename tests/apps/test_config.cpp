#include <doctest/doctest.h>

#include "apps/experiment/config.h"
#include "core/check.h"

using namespace bonsai;
using namespace bonsai::apps;
using nlohmann::json;

namespace {
json minimal() {
  return json::parse(R"({"task": {"model": {"name": "mobilenet_v2", "input_size": [32, 32, 3],
                                            "options": {"num_classes": 10}},
                                  "train_data": {"input_path": "/d", "global_batch_size": 128},
                                  "losses": {"label_smoothing": 0.1}},
                         "trainer": {"train_steps": 100,
                                     "optimizer_config": {
                                       "optimizer": {"type": "sgd", "sgd": {"momentum": 0.9, "nesterov": true}},
                                       "learning_rate": {"type": "cosine",
                                                         "cosine": {"initial_learning_rate": 0.1, "decay_steps": 100}},
                                       "warmup": {"type": "linear", "linear": {"warmup_steps": 10}}}}})");
}

std::string error_of(const json& j) {
  try {
    parse_experiment_config(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("experiment config: defaults, round trip through to_json") {
  ExperimentConfig c = parse_experiment_config(minimal(), "cfg.json");
  CHECK(c.model_name == "mobilenet_v2");
  CHECK(c.train_data.global_batch_size == 128);
  CHECK(c.validation_data.is_training == false);
  CHECK(c.losses.label_smoothing == 0.1);
  CHECK(c.optimizer.params["nesterov"] == true);
  CHECK(c.max_to_keep == 5);
  ExperimentConfig again = parse_experiment_config(to_json(c), "resolved");
  CHECK(to_json(again) == to_json(c));
}

TEST_CASE("experiment config: unknown keys and wrong types name the full key path") {
  json j = minimal();
  j["task"]["train_data"]["globl_batch_size"] = 3;
  CHECK(error_of(j).find("'task.train_data.globl_batch_size' is not a known key") != std::string::npos);
  j = minimal();
  j["trainer"]["train_steps"] = "many";
  CHECK(error_of(j).find("'trainer.train_steps' has the wrong type") != std::string::npos);
  j = minimal();
  j["trainer"]["optimizer_config"]["optimizer"]["sgd"]["momentun"] = 0.9;
  CHECK(error_of(j).find("'trainer.optimizer_config.optimizer.sgd.momentun' is not a known key") !=
        std::string::npos);
  j = minimal();
  j["trainer"]["optimizer_config"]["learning_rate"]["type"] = "linear";
  CHECK(error_of(j).find("expected one of constant, stepwise") != std::string::npos);
  j = minimal();
  j["task"]["model"].erase("name");
  CHECK(error_of(j).find("'task.model.name' is required") != std::string::npos);
  CHECK(error_of(json::parse(R"({"bogus": 1, "task": {"model": {"name": "x"}}})")).find("'bogus'") !=
        std::string::npos);
}

TEST_CASE("--params_override sets nested keys with JSON or string values") {
  json j = minimal();
  apply_overrides(j, "trainer.train_steps=7,task.train_data.input_path=/other,task.model.input_size=[64,64,3]");
  ExperimentConfig c = parse_experiment_config(j, "cfg.json");
  CHECK(c.train_steps == 7);
  CHECK(c.train_data.input_path == "/other");
  CHECK(c.input_size == std::vector<int64_t>{64, 64, 3});
  json k = minimal();
  apply_overrides(k, "trainer.trian_steps=7");
  CHECK(error_of(k).find("'trainer.trian_steps' is not a known key") != std::string::npos);
  CHECK_THROWS_AS(apply_overrides(k, "novalue"), Error);
}

// Found by fuzz/fuzz_config (docs/reliability.md): a bare-string override
// value that is not UTF-8 went into the config, and the "wrong type" error
// message's dump() then threw nlohmann::json::type_error (316) instead of
// bonsai::Error naming the key.
TEST_CASE("--params_override refuses values that are not UTF-8, naming the item") {
  json j = minimal();
  try {
    apply_overrides(j, "task.train_data.global_batch_size=\xff\xfe,trainer.train_steps=3");
    FAIL("a non-UTF-8 override must throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("is not valid UTF-8") != std::string::npos);
    CHECK(std::string(e.what()).find("global_batch_size") != std::string::npos);
  }
  // Also found by fuzz/fuzz_config: overrides on a config file that is not
  // a JSON object (a number, a list) threw nlohmann's type_error 305.
  for (const char* text : {"3", "[1, 2]", "\"x\"", "null"}) {
    json k = json::parse(text);
    try {
      apply_overrides(k, "trainer.train_steps=3");
      FAIL("overrides on a non-object config must throw");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("is not a JSON object") != std::string::npos);
    }
  }
  // Valid UTF-8 beyond ASCII is fine.
  apply_overrides(j, "task.train_data.input_path=/data/\xc3\xa9t\xc3\xa9");
  CHECK(parse_experiment_config(j, "cfg.json").train_data.input_path == "/data/\xc3\xa9t\xc3\xa9");
}
