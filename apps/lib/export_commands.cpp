#include "apps/lib/export_commands.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/experiment/config.h"
#include "apps/experiment/runner.h"
#include "apps/lib/args.h"
#include "core/check.h"
#include "core/io/atomic_file.h"
#include "core/autograd.h"
#include "core/runtime.h"
#include "export/float_graph.h"
#include "export/onnx.h"
#include "export/tflite.h"
#include "quant/int8_model.h"

namespace bonsai::apps {

const char* kExportUsage = R"(  bonsai export --format tflite|onnx --int8 M.safetensors --out F [--dense] [--native-activations]
      The int8 model (bonsai convert / ptq / QAT) as a TFLite flatbuffer (NHWC,
      sparse weights where smaller unless --dense; lookup tables as GATHER,
      or with --native-activations as HARD_SWISH / LOGISTIC / ADD+RELU6+MUL,
      which round differently) or an ONNX QDQ graph (NCHW).
  bonsai export --format tflite|onnx --config C.json --checkpoint K.safetensors --out F [--params_override ...]
      The float model of a float config (no task.quantization) with the
      checkpoint's weights, as a float32 TFLite file or a float ONNX graph
      (BatchNorm folded into the convolutions, relu/relu6 fused).
  bonsai export sample --config C.json --out DIR [--count 0]
      The config's validation images (eval preprocessing) as DIR/images.f32
      (float32 NHWC), labels as DIR/labels.i32, and DIR/meta.json; count 0: all.
  bonsai export run --int8 M.safetensors --images DIR --out OUT.f32 [--batch 64] [--values VDIR]
                    [--rescaling fixed_point|float32|onnxruntime]
      bonsai's int8 runtime on DIR's images: the float outputs (NHWC) in
      OUT.f32, their shape and output grid in OUT.f32.json. --values VDIR
      also writes every value's int8 codes (VDIR/<id>.s8, VDIR/values.json).
      --rescaling float32: the arithmetic of TFLite's XNNPACK delegate
      instead of TFLite's fixed point; onnxruntime: ONNX Runtime's on x86,
      which adds in uint8 (docs/export.md).
  bonsai export run --config C.json --checkpoint K.safetensors --images DIR --out OUT.f32 [--batch 64]
      bonsai's own float model (eval mode) on DIR's images, for comparison
      with a float export: OUT.f32 and OUT.f32.json ({"shape", "precision": "float"}).
)";

namespace {

void write_raw(const std::string& path, const std::vector<char>& bytes) {
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

std::vector<char> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BONSAI_CHECK(in.good(), "cannot open '" + path + "'");
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  BONSAI_CHECK(in.good(), "cannot open '" + path + "'");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    BONSAI_CHECK(false, path + ": not valid JSON: " + e.what());
  }
  return {};
}

int export_sample(int argc, char** argv) {
  Args a(argc, argv, 3, {{"config", ""}, {"out", ""}, {"count", "0"}, {"params_override", ""}});
  BONSAI_CHECK(!a.get("config").empty() && !a.get("out").empty(), "bonsai export sample needs --config and --out");
  const ExperimentConfig c = load_experiment_config(a.get("config"), a.get("params_override"));
  const int64_t count = a.get_int("count");
  ConfigData d = eval_data(c, /*train_split=*/false);
  std::vector<char> images, labels;
  int64_t n = 0;
  std::vector<int64_t> shape;
  d.loader->start_epoch(0);
  while (count == 0 || n < count) {
    std::optional<data::Batch> b = d.loader->next();
    if (!b) break;
    const int64_t take = count == 0 ? b->size() : std::min<int64_t>(b->size(), count - n);
    const int64_t per_image = b->images.numel() / b->size();
    const int64_t per_label = b->labels.numel() / b->size();
    shape = {b->images.dim(1), b->images.dim(2), b->images.dim(3)};
    const char* pi = static_cast<const char*>(b->images.raw());
    images.insert(images.end(), pi, pi + take * per_image * sizeof(float));
    for (int64_t i = 0; i < take * per_label; ++i) {
      const int32_t l = static_cast<int32_t>(b->labels.data<int64_t>()[i]);
      const char* p = reinterpret_cast<const char*>(&l);
      labels.insert(labels.end(), p, p + 4);
    }
    n += take;
  }
  BONSAI_CHECK(n > 0, a.get("config") + ": no validation images");
  std::filesystem::create_directories(a.get("out"));
  const std::string dir = a.get("out") + "/";
  write_raw(dir + "images.f32", images);
  write_raw(dir + "labels.i32", labels);
  const bool seg = is_segmentation(c);
  const nlohmann::json meta{{"count", n},
                            {"shape", shape},
                            {"task", seg ? "segmentation" : "classification"},
                            {"num_classes", c.model_options.value("num_classes", d.dataset->num_classes())},
                            {"ignore_label", 255}};
  const std::string text = meta.dump(1) + "\n";
  io::write_file_atomically(dir + "meta.json", text.data(), text.size());
  std::printf("wrote %lld validation images [%lld, %lld, %lld] to %s\n", static_cast<long long>(n),
              static_cast<long long>(shape[0]), static_cast<long long>(shape[1]), static_cast<long long>(shape[2]),
              a.get("out").c_str());
  return 0;
}

// --values DIR: every value's int8 codes over all images, DIR/<id>.s8
// ([N, ...shape] row-major), listed with name, shape and grid in
// DIR/values.json — for finding the first layer where two runtimes part.
void write_value_codes(const quant::Int8Model& m, const std::string& dir, int64_t n,
                       const std::vector<std::vector<char>>& codes) {
  std::filesystem::create_directories(dir);
  nlohmann::json list = nlohmann::json::array();
  for (size_t v = 0; v < codes.size(); ++v) {
    if (codes[v].empty()) continue;
    const quant::Int8Value& value = m.values()[v];
    write_raw(dir + "/" + std::to_string(v) + ".s8", codes[v]);
    std::vector<int64_t> full{n};
    full.insert(full.end(), value.shape.begin(), value.shape.end());
    list.push_back({{"id", v}, {"name", value.name}, {"shape", full}, {"scale", value.quant.scale},
                    {"zero_point", value.quant.zero_point}});
  }
  const std::string text = list.dump(1) + "\n";
  io::write_file_atomically(dir + "/values.json", text.data(), text.size());
}

// DIR's images ([count, H, W, C] float32) after checking them against the
// model's input shape.
struct Sample {
  std::vector<char> raw;
  std::vector<int64_t> shape;  // [H, W, C]
  int64_t count = 0;
  int64_t per_image() const { return shape[0] * shape[1] * shape[2]; }
  Tensor batch(int64_t start, int64_t n) const {
    Tensor x = Tensor::empty({n, shape[0], shape[1], shape[2]});
    std::memcpy(x.raw(), raw.data() + start * per_image() * 4, n * per_image() * 4);
    return x;
  }
};

Sample read_sample(const std::string& images, const std::vector<int64_t>& model_input) {
  const std::string dir = images + "/";
  const nlohmann::json meta = read_json(dir + "meta.json");
  Sample s;
  s.shape = meta.at("shape").get<std::vector<int64_t>>();
  s.count = meta.at("count").get<int64_t>();
  BONSAI_CHECK(s.shape == model_input, dir + "meta.json: images of shape " + nlohmann::json(s.shape).dump() +
                                           " but the model takes " + nlohmann::json(model_input).dump());
  s.raw = read_raw(dir + "images.f32");
  BONSAI_CHECK(static_cast<int64_t>(s.raw.size()) == s.count * s.per_image() * 4,
               dir + "images.f32: " + std::to_string(s.raw.size()) + " bytes, expected " +
                   std::to_string(s.count * s.per_image() * 4) + " for " + std::to_string(s.count) + " images");
  return s;
}

// The float model of a float config with a checkpoint's weights, in eval mode.
std::shared_ptr<Module> float_model(const ExperimentConfig& c, const std::string& config, const std::string& checkpoint) {
  BONSAI_CHECK(!c.quantization.enabled,
               config + " has task.quantization: float export takes a float config; for the int8 model use "
                        "bonsai convert, then --int8");
  auto model = build_config_model(c, checkpoint);
  model->eval();
  return model;
}

// export run --config C --checkpoint K: bonsai's float model on the sample.
int export_run_float(const Args& a) {
  const ExperimentConfig c = load_experiment_config(a.get("config"), a.get("params_override"));
  auto model = float_model(c, a.get("config"), a.get("checkpoint"));
  const Sample s = read_sample(a.get("images"), c.input_size);
  const int64_t batch = std::max<int64_t>(1, a.get_int("batch"));
  std::vector<char> out;
  std::vector<int64_t> out_shape;
  NoGrad ng;
  for (int64_t i = 0; i < s.count; i += batch) {
    const int64_t b = std::min(batch, s.count - i);
    const Tensor y = model->forward(s.batch(i, b));
    const char* p = static_cast<const char*>(y.raw());
    out.insert(out.end(), p, p + y.nbytes());
    out_shape = y.shape().vec();
    out_shape.erase(out_shape.begin());
  }
  write_raw(a.get("out"), out);
  std::vector<int64_t> full{s.count};
  full.insert(full.end(), out_shape.begin(), out_shape.end());
  const std::string text = nlohmann::json{{"shape", full}, {"precision", "float"}}.dump() + "\n";
  io::write_file_atomically(a.get("out") + ".json", text.data(), text.size());
  std::printf("wrote %s: %lld float outputs of shape %s\n", a.get("out").c_str(), static_cast<long long>(s.count),
              nlohmann::json(out_shape).dump().c_str());
  return 0;
}

int export_run(int argc, char** argv) {
  Args a(argc, argv, 3, {{"int8", ""}, {"config", ""}, {"checkpoint", ""}, {"params_override", ""}, {"images", ""},
                         {"out", ""}, {"batch", "64"}, {"threads", "0"}, {"values", ""},
                         {"rescaling", "fixed_point"}});
  const bool int8 = !a.get("int8").empty(), fp = !a.get("config").empty() || !a.get("checkpoint").empty();
  BONSAI_CHECK(int8 != fp, "bonsai export run takes either --int8 M (the int8 runtime) or --config C --checkpoint K "
                           "(the float model), not both or neither");
  BONSAI_CHECK(!a.get("images").empty() && !a.get("out").empty(), "bonsai export run needs --images DIR and --out");
  set_num_threads(a.get_int("threads"));
  if (fp) {
    BONSAI_CHECK(!a.get("config").empty() && !a.get("checkpoint").empty(),
                 "bonsai export run: the float model needs both --config and --checkpoint");
    BONSAI_CHECK(a.get("values").empty(), "bonsai export run: --values is for int8 models");
    return export_run_float(a);
  }
  quant::Int8Model m = quant::Int8Model::load(a.get("int8"));
  m.set_rescaling(quant::int8::rescaling_from_name(a.get("rescaling")));
  const Sample s = read_sample(a.get("images"), m.input().shape);
  const int64_t n = s.count;
  const int64_t batch = std::max<int64_t>(1, a.get_int("batch"));
  const std::string values_dir = a.get("values");
  std::vector<std::vector<char>> value_codes(values_dir.empty() ? 0 : m.values().size());
  std::vector<char> out;
  std::vector<int64_t> out_shape;
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t b = std::min(batch, n - i);
    Tensor x = s.batch(i, b);
    std::vector<Tensor> codes;
    const Tensor y = m.run(x, values_dir.empty() ? nullptr : &codes);
    for (size_t v = 0; v < codes.size() && v < value_codes.size(); ++v) {
      if (!codes[v].defined()) continue;
      const char* c = static_cast<const char*>(codes[v].raw());
      value_codes[v].insert(value_codes[v].end(), c, c + codes[v].nbytes());
    }
    const char* p = static_cast<const char*>(y.raw());
    out.insert(out.end(), p, p + y.nbytes());
    out_shape = y.shape().vec();
    out_shape.erase(out_shape.begin());
  }
  write_raw(a.get("out"), out);
  if (!values_dir.empty()) write_value_codes(m, values_dir, n, value_codes);
  const quant::AffineQuant& q = m.values()[m.output()].quant;
  std::vector<int64_t> full{n};
  full.insert(full.end(), out_shape.begin(), out_shape.end());
  const std::string text =
      nlohmann::json{{"shape", full}, {"scale", q.scale}, {"zero_point", q.zero_point}}.dump() + "\n";
  io::write_file_atomically(a.get("out") + ".json", text.data(), text.size());
  std::printf("wrote %s: %lld outputs of shape %s\n", a.get("out").c_str(), static_cast<long long>(n),
              nlohmann::json(out_shape).dump().c_str());
  return 0;
}

}  // namespace

int export_command(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[2], "sample") == 0) return export_sample(argc, argv);
  if (argc >= 3 && std::strcmp(argv[2], "run") == 0) return export_run(argc, argv);
  Args a(argc, argv, 2, {{"format", ""}, {"int8", ""}, {"config", ""}, {"checkpoint", ""}, {"params_override", ""},
                         {"out", ""}, {"dense", "false"}, {"native-activations", "false"}});
  const std::string format = a.get("format");
  BONSAI_CHECK(format == "tflite" || format == "onnx",
               "bonsai export needs --format tflite or --format onnx (got '" + format + "')");
  const bool int8 = !a.get("int8").empty(), fp = !a.get("config").empty() || !a.get("checkpoint").empty();
  BONSAI_CHECK(int8 != fp, "bonsai export takes either --int8 M.safetensors (the int8 model) or --config C.json "
                           "--checkpoint K.safetensors (a float model), not both or neither");
  BONSAI_CHECK(!a.get("out").empty(), "bonsai export needs --out");
  if (fp) {
    BONSAI_CHECK(!a.get("config").empty() && !a.get("checkpoint").empty(),
                 "bonsai export: a float model needs both --config and --checkpoint");
    BONSAI_CHECK(!a.get_bool("dense") && !a.get_bool("native-activations"),
                 "bonsai export: --dense and --native-activations apply to int8 models only");
    const ExperimentConfig c = load_experiment_config(a.get("config"), a.get("params_override"));
    auto model = float_model(c, a.get("config"), a.get("checkpoint"));
    const exporters::FloatGraph g =
        exporters::convert_float(*model, Tensor::zeros({1, c.input_size[0], c.input_size[1], c.input_size[2]}));
    if (format == "tflite")
      exporters::write_tflite(g, a.get("out"));
    else
      exporters::write_onnx(g, a.get("out"));
    std::printf("wrote %s (%s, %zu float ops, %lld parameters, %.2f MiB)\n", a.get("out").c_str(), format.c_str(),
                g.ops.size(), static_cast<long long>(g.parameter_count()),
                std::filesystem::file_size(a.get("out")) / 1048576.0);
    return 0;
  }
  const quant::Int8Model m = quant::Int8Model::load(a.get("int8"));
  if (format == "tflite")
    exporters::write_tflite(m, a.get("out"), {.sparse = !a.get_bool("dense"),
                                              .native_activations = a.get_bool("native-activations")});
  else
    exporters::write_onnx(m, a.get("out"));
  std::printf("wrote %s (%s, %zu int8 ops, %.2f MiB)\n", a.get("out").c_str(), format.c_str(), m.ops().size(),
              std::filesystem::file_size(a.get("out")) / 1048576.0);
  return 0;
}

}  // namespace bonsai::apps
