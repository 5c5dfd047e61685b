// Checkpoints: state dicts by name, strict and filtered loading, and the
// errors a bad checkpoint must give.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "core/io/safetensors.h"
#include "layers/state.h"
#include "models/small_cnn.h"

using namespace bonsai;
namespace fs = std::filesystem;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("bonsai_state_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
}  // namespace

TEST_CASE("checkpoint round trip restores parameters and BN statistics") {
  fs::path dir = temp_dir();
  models::SmallCNN a({.seed = 1}), b({.seed = 2});
  a.child("features.0.bn")->named_buffers()[0].second.fill(0.25f);
  save_checkpoint((dir / "a.safetensors").string(), a, {{"model", "small_cnn"}});
  auto file = io::read_safetensors((dir / "a.safetensors").string());
  CHECK(file.metadata.at("model") == "small_cnn");
  CHECK(file.metadata.count("bonsai_version") == 1);
  LoadReport r = load_state(b, file.tensors);
  CHECK(r.loaded.size() == state_dict(a).size());
  for (const auto& [name, t] : state_dict(a)) {
    Tensor u = state_dict(b).at(name);
    const std::string& key = name;  // clang: no structured bindings in CHECK_MESSAGE's lambda
    CHECK_MESSAGE(std::equal(t.data<float>(), t.data<float>() + t.numel(), u.data<float>()), key);
  }
  fs::remove_all(dir);
}

TEST_CASE("strict loading reports every missing, unexpected and mismatched name at once") {
  models::SmallCNN m({.width = 4});
  StateDict s = state_dict(models::SmallCNN({.width = 4}));
  s.erase("head.bias");
  s.erase("features.0.bn.moving_mean");
  s["extra.weight"] = Tensor::zeros({3});
  s["features.0.conv.kernel"] = Tensor::zeros({3, 3, 1, 5});
  Tensor before = m.named_parameters()[0].tensor.clone();
  std::string e = error_of([&] { load_state(m, s); });
  CHECK(e.find("head.bias") != std::string::npos);
  CHECK(e.find("features.0.bn.moving_mean") != std::string::npos);
  CHECK(e.find("extra.weight") != std::string::npos);
  CHECK(e.find("features.0.conv.kernel (model [3, 3, 1, 4] f32, source [3, 3, 1, 5] f32)") !=
        std::string::npos);
  // A failed load changes nothing.
  Tensor after = m.named_parameters()[0].tensor;
  CHECK(std::equal(before.data<float>(), before.data<float>() + before.numel(), after.data<float>()));
}

TEST_CASE("filtered loading: include/exclude globs for fine-tuning") {
  models::SmallCNN src({.classes = 10, .seed = 3}), dst({.classes = 5, .seed = 4});
  // The head differs in shape (10 vs 5 classes): load only the features.
  LoadReport r = load_state(dst, state_dict(src), {.include = {"features.*"}, .strict = true});
  CHECK(r.skipped.size() == 2);  // head.kernel, head.bias
  CHECK(r.missing.empty());
  r = load_state(dst, state_dict(src), {.exclude = {"head.*"}, .strict = true});
  CHECK(r.loaded.size() == state_dict(dst).size() - 2);
  // Without the filter the head's shape mismatch is an error, strict or not.
  CHECK(error_of([&] { load_state(dst, state_dict(src), {.strict = false}); }).find("head.kernel") !=
        std::string::npos);
  CHECK(glob_match("backbone.*", "backbone.block1.conv.kernel"));
  CHECK(glob_match("*.bn.*", "features.0.bn.gamma"));
  CHECK_FALSE(glob_match("head.*", "backbone.head.x") );
}

TEST_CASE("truncated or corrupt checkpoint files name the file") {
  fs::path dir = temp_dir();
  models::SmallCNN m({.width = 4});
  std::string good = (dir / "good.safetensors").string();
  save_checkpoint(good, m);
  std::string bytes;
  {
    std::ifstream f(good, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  std::string cut = (dir / "cut.safetensors").string();
  std::ofstream(cut, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() / 2));
  CHECK(error_of([&] { io::load_safetensors(cut); }).find(cut) != std::string::npos);
  std::string bad = (dir / "bad.safetensors").string();
  std::string corrupt = bytes;
  corrupt[10] = '#';  // inside the JSON header
  std::ofstream(bad, std::ios::binary).write(corrupt.data(), static_cast<std::streamsize>(corrupt.size()));
  CHECK(error_of([&] { io::load_safetensors(bad); }).find(bad) != std::string::npos);
  fs::remove_all(dir);
}
