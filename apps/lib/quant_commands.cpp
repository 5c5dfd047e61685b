#include "apps/lib/quant_commands.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "apps/experiment/config.h"
#include "apps/experiment/runner.h"
#include "apps/lib/args.h"
#include "core/check.h"
#include "core/runtime.h"
#include "quant/calibrate.h"
#include "quant/int8_model.h"

namespace bonsai::apps {

const char* kQuantUsage = R"(  bonsai convert --config C.json --checkpoint K --out M.safetensors
      A QAT checkpoint (a config with task.quantization) → the integer-only int8 model.
  bonsai ptq --config C.json --checkpoint K --out M.safetensors [--calibration-steps 10]
             [--method minmax|percentile|mse] [--percentile 99.99] [--batch 0]
      Post-training quantization of a float checkpoint: calibrate activation
      ranges on training images (eval preprocessing), convert, save.
  bonsai verify-int8 --config C.json --qat-checkpoint K --int8 M [--batches 1] [--batch 0] [--json]
      Run the QAT simulation and the int8 model on the same validation batches
      and report, per layer, the largest difference in quantization steps;
      then, end to end, on how many images (output pixels, for segmentation) their
      predictions agree, and where they differ which one is right.
  bonsai eval --config C.json --model_dir D --int8 M
      Top-1 / mIoU of an int8 model on the config's validation data.
)";

namespace {

Tensor sample_input(const ExperimentConfig& c) {
  return Tensor::zeros({1, c.input_size[0], c.input_size[1], c.input_size[2]});
}

// Converts the quantized model, writes the int8 file and says what it holds.
void convert_and_save(Module& model, const ExperimentConfig& c, const std::string& path) {
  const quant::Int8Model m = quant::convert(model, sample_input(c));
  m.save(path);
  std::printf("wrote %s: %zu int8 ops, %zu values, %.2f MiB of weights, file %.2f MiB\n", path.c_str(),
              m.ops().size(), m.values().size(), m.parameter_bytes() / 1048576.0,
              std::filesystem::file_size(path) / 1048576.0);
}

// Where the simulation's and the int8 model's predictions (argmax over the
// last axis, per image or per pixel) agree, and where they do not, which of
// them matches the label (classification: labels [N]; for segmentation only
// the agreement is counted).
struct PredictionAgreement {
  int64_t positions = 0, equal = 0, simulation_only_right = 0, int8_only_right = 0;
};

// The output codes order classes as the logits do (one grid, positive scale).
void count_predictions(const quant::OutputCodes& out, const Tensor& labels, PredictionAgreement& a) {
  BONSAI_CHECK(out.simulation.numel() == out.int8.numel(),
               "verify-int8: the simulation's output is " + out.simulation.shape_str() + ", the int8 model's " +
                   out.int8.shape_str());
  const int64_t classes = out.simulation.dim(-1), n = out.simulation.numel() / classes;
  const bool labelled = labels.rank() == 1 && labels.numel() == n;
  auto argmax = [classes](const int8_t* p) { return std::max_element(p, p + classes) - p; };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = argmax(out.simulation.data<int8_t>() + i * classes),
                  q = argmax(out.int8.data<int8_t>() + i * classes);
    ++a.positions;
    if (s == q) {
      ++a.equal;
    } else if (labelled) {
      const int64_t y = labels.data<int64_t>()[i];
      a.simulation_only_right += s == y;
      a.int8_only_right += q == y;
    }
  }
}

}  // namespace

int convert_command(int argc, char** argv) {
  Args a(argc, argv, 2, {{"config", ""}, {"checkpoint", ""}, {"out", ""}, {"params_override", ""}});
  BONSAI_CHECK(!a.get("config").empty() && !a.get("checkpoint").empty() && !a.get("out").empty(),
               "bonsai convert needs --config, --checkpoint and --out");
  ExperimentConfig c = load_experiment_config(a.get("config"), a.get("params_override"));
  BONSAI_CHECK(c.quantization.enabled, a.get("config") +
                                           ": convert needs a QAT config (task.quantization); for a float "
                                           "checkpoint use bonsai ptq");
  convert_and_save(*build_config_model(c, a.get("checkpoint")), c, a.get("out"));
  return 0;
}

int ptq_command(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"config", ""}, {"checkpoint", ""}, {"out", ""}, {"calibration-steps", "10"}, {"method", "minmax"},
          {"percentile", "99.99"}, {"batch", "0"}, {"params_override", ""}, {"threads", "0"}});
  BONSAI_CHECK(!a.get("config").empty() && !a.get("checkpoint").empty() && !a.get("out").empty(),
               "bonsai ptq needs --config, --checkpoint (float) and --out");
  ExperimentConfig c = load_experiment_config(a.get("config"), a.get("params_override"));
  set_num_threads(a.get_int("threads") > 0 ? a.get_int("threads") : c.threads);
  QuantizationConfig qc = c.quantization;  // bits and scheme from the config if it has them
  qc.enabled = true;
  auto model = build_quantized_from_float(c, qc, a.get("checkpoint"));
  const int steps = a.get_int("calibration-steps");
  BONSAI_CHECK(steps > 0, "--calibration-steps must be positive");
  ConfigData data = eval_data(c, /*train_split=*/true, a.get_int("batch"));
  int64_t images = 0;
  const int n = quant::calibrate(
      *model,
      [&](int) {
        data.loader->start_epoch(0);
        for (int i = 0; i < steps; ++i) {
          auto b = data.loader->next();
          if (!b) break;
          model->forward(b->images);
          images += b->size();
        }
      },
      {.method = quant::calibration_method(a.get("method")), .percentile = a.get_float("percentile")});
  std::printf("calibrated %d activation ranges (%s) on %lld images\n", n, a.get("method").c_str(),
              static_cast<long long>(images));
  convert_and_save(*model, c, a.get("out"));
  return 0;
}

int verify_int8_command(int argc, char** argv) {
  Args a(argc, argv, 2,
         {{"config", ""}, {"qat-checkpoint", ""}, {"int8", ""}, {"batches", "1"}, {"batch", "0"},
          {"params_override", ""}, {"json", "false"}});
  BONSAI_CHECK(!a.get("config").empty() && !a.get("qat-checkpoint").empty() && !a.get("int8").empty(),
               "bonsai verify-int8 needs --config, --qat-checkpoint and --int8");
  ExperimentConfig c = load_experiment_config(a.get("config"), a.get("params_override"));
  BONSAI_CHECK(c.quantization.enabled, a.get("config") + ": verify-int8 needs the QAT config (task.quantization)");
  auto model = build_config_model(c, a.get("qat-checkpoint"));
  quant::Int8Model int8 = quant::Int8Model::load(a.get("int8"));
  ConfigData data = eval_data(c, /*train_split=*/false, a.get_int("batch"));
  data.loader->start_epoch(0);
  std::vector<quant::LayerAgreement> total;
  PredictionAgreement predictions;
  for (int i = 0; i < a.get_int("batches"); ++i) {
    auto b = data.loader->next();
    if (!b) break;
    quant::OutputCodes output;
    auto layers = quant::compare_with_simulation(*model, int8, b->images, &output);
    count_predictions(output, b->labels, predictions);
    if (total.empty()) {
      total = layers;
      continue;
    }
    for (size_t k = 0; k < layers.size(); ++k) {
      total[k].elements += layers[k].elements;
      total[k].differing += layers[k].differing;
      total[k].max_steps = std::max(total[k].max_steps, layers[k].max_steps);
      total[k].end_to_end_differing += layers[k].end_to_end_differing;
      total[k].end_to_end_max_steps = std::max(total[k].end_to_end_max_steps, layers[k].end_to_end_max_steps);
    }
  }
  BONSAI_CHECK(!total.empty(), "verify-int8: the validation data gave no batch");
  int32_t worst = 0, worst_e2e = 0;
  int64_t elements = 0, differing = 0;
  for (const auto& l : total) {
    worst = std::max(worst, l.max_steps);
    worst_e2e = std::max(worst_e2e, l.end_to_end_max_steps);
    elements += l.elements;
    differing += l.differing;
  }
  if (a.get_bool("json")) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& l : total)
      j.push_back({{"name", l.name}, {"op", l.op}, {"elements", l.elements}, {"max_steps", l.max_steps},
                   {"differing", l.differing}, {"end_to_end_max_steps", l.end_to_end_max_steps},
                   {"end_to_end_differing", l.end_to_end_differing}});
    const nlohmann::json p{{"positions", predictions.positions},
                           {"equal", predictions.equal},
                           {"simulation_only_right", predictions.simulation_only_right},
                           {"int8_only_right", predictions.int8_only_right}};
    std::printf("%s\n", nlohmann::json{{"layers", j},
                                       {"max_steps", worst},
                                       {"end_to_end_max_steps", worst_e2e},
                                       {"predictions", p}}
                            .dump()
                            .c_str());
  } else {
    std::printf("%-58s %-15s %10s | %6s %9s | %6s %9s\n", "value (quantizer)", "op", "elements", "steps", "differ",
                "e2e", "differ");
    for (const auto& l : total)
      std::printf("%-58s %-15s %10lld | %6d %8.4f%% | %6d %8.4f%%\n", l.name.c_str(), l.op.c_str(),
                  static_cast<long long>(l.elements), l.max_steps, 100.0 * l.differing / std::max<int64_t>(l.elements, 1),
                  l.end_to_end_max_steps, 100.0 * l.end_to_end_differing / std::max<int64_t>(l.elements, 1));
  }
  std::printf("%zu layers, each run on the simulation's inputs: largest difference %d quantization step%s, %.4f%% "
              "of %lld values differ; run end to end: largest difference %d\n",
              total.size(), worst, worst == 1 ? "" : "s", 100.0 * differing / std::max<int64_t>(elements, 1),
              static_cast<long long>(elements), worst_e2e);
  std::printf("predictions (argmax per %s): equal on %lld of %lld", is_segmentation(c) ? "output pixel" : "image",
              static_cast<long long>(predictions.equal), static_cast<long long>(predictions.positions));
  if (!is_segmentation(c))
    std::printf("; where they differ, the simulation alone is right on %lld, the int8 model alone on %lld",
                static_cast<long long>(predictions.simulation_only_right),
                static_cast<long long>(predictions.int8_only_right));
  std::printf("\n");
  return worst <= 1 ? 0 : 1;
}

}  // namespace bonsai::apps
