#include "apps/lib/model_commands.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/layout.h"
#include "data/augment.h"
#include "data/image.h"
#include "layers/state.h"
#include "models/registry.h"
#include "models/torchvision_import.h"

namespace bonsai::apps {

namespace {

int64_t count(const std::vector<NamedParam>& ps) {
  int64_t n = 0;
  for (const auto& p : ps) n += p.tensor.numel();
  return n;
}

int64_t count(const std::vector<std::pair<std::string, Tensor>>& bs) {
  int64_t n = 0;
  for (const auto& [k, t] : bs) n += t.numel();
  return n;
}

nlohmann::json node(const std::string& name, const Module& m) {
  nlohmann::json j{{"name", name},
                   {"type", m.type_name()},
                   {"params", count(m.named_parameters())},
                   {"buffers", count(m.named_buffers())},
                   {"macs", m.macs()}};
  nlohmann::json kids = nlohmann::json::array();
  for (const auto& [cname, c] : m.children()) kids.push_back(node(name.empty() ? cname : name + "." + cname, *c));
  if (!kids.empty()) j["children"] = kids;
  return j;
}

void text(const nlohmann::json& n, int depth, std::string& out) {
  char line[512];
  std::string label = n["name"].get<std::string>();
  label = label.empty() ? "(model)" : label.substr(label.rfind('.') == std::string::npos ? 0 : label.rfind('.') + 1);
  std::snprintf(line, sizeof line, "%*s%-*s %-22s %12lld params %14lld MACs\n", 2 * depth, "",
                std::max(1, 36 - 2 * depth), label.c_str(), n["type"].get<std::string>().c_str(),
                static_cast<long long>(n["params"].get<int64_t>()),
                static_cast<long long>(n["macs"].get<int64_t>()));
  out += line;
  if (n.contains("children"))
    for (const auto& c : n["children"]) text(c, depth + 1, out);
}

}  // namespace

nlohmann::json model_info(const std::string& name, const nlohmann::json& options, int64_t res) {
  auto m = models::build(name, options);
  m->eval();
  {
    NoGrad ng;
    m->forward(Tensor::zeros({1, res, res, 3}));  // fills each layer's MAC count
  }
  nlohmann::json j = node("", *m);
  j["model"] = name;
  j["options"] = options;
  j["resolution"] = res;
  nlohmann::json children = nlohmann::json::object();
  for (const auto& [cname, c] : m->children())
    children[cname] = {{"params", count(c->named_parameters())},
                       {"buffers", count(c->named_buffers())},
                       {"macs", c->macs()}};
  j["children_summary"] = children;
  return j;
}

std::string model_info_text(const nlohmann::json& info) {
  std::string out = info["model"].get<std::string>() + " at " + std::to_string(info["resolution"].get<int64_t>()) +
                    "x" + std::to_string(info["resolution"].get<int64_t>()) + ": " +
                    std::to_string(info["params"].get<int64_t>()) + " trainable parameters, " +
                    std::to_string(info["buffers"].get<int64_t>()) + " buffer values, " +
                    std::to_string(info["macs"].get<int64_t>()) + " MACs\n";
  text(info, 0, out);
  return out;
}

std::string import_torchvision_checkpoint(const std::string& model, const std::string& in,
                                          const std::string& out) {
  models::ImportedModel imp = models::import_torchvision(model, io::load_safetensors(in));
  auto m = models::build(imp.name, imp.options);
  load_state(*m, imp.state);
  models::save_model_checkpoint(out, *m, imp.name, imp.options);
  return "imported torchvision " + model + " from " + in + " into " + out + " (" +
         std::to_string(m->num_parameters()) + " parameters, options " + imp.options.dump() + ")";
}

std::string predict_tensors(const std::string& checkpoint, const std::string& input,
                            const std::string& output) {
  models::LoadedModel lm = models::load_checkpoint(checkpoint);
  auto tensors = io::load_safetensors(input);
  auto it = tensors.find("input");
  BONSAI_CHECK(it != tensors.end(), "'" + input + "' has no tensor named 'input'");
  BONSAI_CHECK(it->second.dtype() == DType::f32 && it->second.rank() == 4 && it->second.dim(1) == 3,
               "'" + input + "': tensor 'input' must be f32 NCHW with 3 channels, got " +
                   it->second.shape_str());
  lm.module->eval();
  Tensor logits;
  {
    NoGrad ng;
    logits = lm.module->forward(nchw_to_nhwc(it->second));
  }
  if (logits.rank() == 4) logits = nhwc_to_nchw(logits);
  io::save_safetensors(output, {{"logits", logits}}, {{"model", lm.name}, {"checkpoint", checkpoint}});
  return "wrote logits " + logits.shape_str() + " to " + output;
}

std::string predict_images(const std::string& checkpoint, const std::vector<std::string>& images) {
  BONSAI_CHECK(!images.empty(), "bonsai predict: no image files given");
  io::SafetensorsFile f = io::read_safetensors(checkpoint);
  auto meta = [&](const std::string& k, const std::string& fallback) {
    auto it = f.metadata.find(k);
    return it == f.metadata.end() ? fallback : it->second;
  };
  models::LoadedModel lm = models::load_checkpoint(checkpoint);
  std::vector<int64_t> input_size = nlohmann::json::parse(meta("input_size", "[224, 224, 3]")).get<std::vector<int64_t>>();
  std::vector<std::string> names = nlohmann::json::parse(meta("class_names", "[]")).get<std::vector<std::string>>();
  const std::string aug = meta("eval_aug", "center_crop");
  lm.module->eval();
  std::string out;
  for (const std::string& path : images) {
    Tensor img = data::decode_image(path);  // u8 [H, W, 3]; errors name the file
    Tensor x;
    if (aug == "pad") {
      std::mt19937 rng(0);
      x = data::pad_shift({.image = img, .path = path},
                          {.pad_to = input_size[0], .shift = 0, .flip = false}, rng).image;
    } else {
      x = data::preprocess_for_eval(img, input_size[0]);
    }
    Tensor logits;
    {
      NoGrad ng;
      logits = lm.module->forward(x.view({1, x.dim(0), x.dim(1), x.dim(2)}));
    }
    BONSAI_CHECK(logits.rank() == 2, "bonsai predict on images needs a classification model; '" + lm.name +
                                         "' gives logits of shape " + logits.shape_str());
    const int64_t C = logits.dim(1);
    const float* z = logits.data<float>();
    float mx = *std::max_element(z, z + C);
    std::vector<std::pair<double, int64_t>> p;
    double sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(static_cast<double>(z[c] - mx));
    for (int64_t c = 0; c < C; ++c) p.emplace_back(std::exp(static_cast<double>(z[c] - mx)) / sum, c);
    std::partial_sort(p.begin(), p.begin() + std::min<int64_t>(5, C), p.end(), std::greater<>());
    out += path + "\n";
    for (int64_t k = 0; k < std::min<int64_t>(5, C); ++k) {
      char line[256];
      std::string name = p[k].second < static_cast<int64_t>(names.size()) ? names[p[k].second] : "";
      std::snprintf(line, sizeof line, "  %6.2f%%  %lld %s\n", 100.0 * p[k].first, static_cast<long long>(p[k].second),
                    name.c_str());
      out += line;
    }
  }
  return out;
}

}  // namespace bonsai::apps
