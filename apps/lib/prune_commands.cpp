#include "apps/lib/prune_commands.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "apps/lib/args.h"
#include "core/check.h"
#include "core/io/safetensors.h"
#include "layers/state.h"

namespace bonsai::apps {

const char* kPruneUsage = R"(  bonsai prune strip --checkpoint K --out M
      A checkpoint of a pruning (or pruning + QAT) run → a model checkpoint with the
      masks and optimiser state removed; pruned weights are zero and stored sparsely.
  bonsai prune info --checkpoint K [--json]
      Per-weight zeros of every kernel in a checkpoint (or of the int8 weights of an
      int8 model file).
)";

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Float kernels of a checkpoint, or the int8 weights of an int8 model file.
bool is_kernel(const std::string& name, const Tensor& t) {
  return t.rank() >= 2 && ((t.dtype() == DType::f32 && ends_with(name, "kernel")) ||
                           (t.dtype() == DType::s8 && ends_with(name, ".weights")));
}

double zeros_of(const Tensor& t) {
  int64_t z = 0;
  for (int64_t i = 0; i < t.numel(); ++i)
    z += t.dtype() == DType::s8 ? t.data<int8_t>()[i] == 0 : t.data<float>()[i] == 0.0f;
  return t.numel() ? static_cast<double>(z) / t.numel() : 0.0;
}

int strip(int argc, char** argv) {
  Args a(argc, argv, 3, {{"checkpoint", ""}, {"out", ""}});
  BONSAI_CHECK(!a.get("checkpoint").empty() && !a.get("out").empty(), "bonsai prune strip needs --checkpoint and --out");
  io::SafetensorsFile f = io::read_safetensors(a.get("checkpoint"));
  std::map<std::string, Tensor> model = model_weights(f.tensors);
  // The masks, where the checkpoint has them, are applied once more so the
  // file's zeros are exactly the masks' (they already are after training).
  int masks = 0;
  for (const auto& [k, t] : with_prefix(f.tensors, "pruning/", true)) {
    if (!ends_with(k, ".mask")) continue;  // thresholds
    auto w = model.find(k.substr(0, k.size() - 5));
    BONSAI_CHECK(w != model.end() && w->second.shape() == t.shape() && t.dtype() == DType::u8,
                 a.get("checkpoint") + ": mask pruning/" + k + " does not match a model weight");
    Tensor masked = w->second.clone();
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!t.data<uint8_t>()[i]) masked.data<float>()[i] = 0.0f;
    w->second = masked;
    ++masks;
  }
  std::map<std::string, std::string> meta = f.metadata;
  meta.erase("step");
  meta["stripped_from"] = a.get("checkpoint");
  io::save_safetensors(a.get("out"), model, meta, {.sparse = true});
  int64_t dense_bytes = 0, kernel_elems = 0;
  double kernel_zeros = 0;
  for (const auto& [k, t] : model) {
    dense_bytes += static_cast<int64_t>(t.nbytes());
    if (is_kernel(k, t)) {
      kernel_zeros += zeros_of(t) * t.numel();
      kernel_elems += t.numel();
    }
  }
  std::printf("wrote %s: %zu tensors (%d masks removed), kernel sparsity %.2f%%, %lld bytes (tensors dense: %lld)\n",
              a.get("out").c_str(), model.size(), masks, 100.0 * kernel_zeros / std::max<int64_t>(kernel_elems, 1),
              static_cast<long long>(std::filesystem::file_size(a.get("out"))), static_cast<long long>(dense_bytes));
  return 0;
}

int info(int argc, char** argv) {
  Args a(argc, argv, 3, {{"checkpoint", ""}, {"json", "false"}});
  BONSAI_CHECK(!a.get("checkpoint").empty(), "bonsai prune info needs --checkpoint");
  std::map<std::string, Tensor> model = model_weights(io::read_safetensors(a.get("checkpoint")).tensors);
  double zeros = 0;
  int64_t elems = 0;
  const bool json = a.get_bool("json");
  for (const auto& [k, t] : model) {
    if (!is_kernel(k, t)) continue;
    const double z = zeros_of(t);
    if (!json) std::printf("%-60s %-20s %7.2f%%\n", k.c_str(), t.shape_str().c_str(), 100.0 * z);
    zeros += z * t.numel();
    elems += t.numel();
  }
  const double overall = zeros / std::max<int64_t>(elems, 1);
  if (json)
    std::printf("{\"kernel_sparsity\": %.6f, \"kernel_weights\": %lld, \"file_bytes\": %lld}\n", overall,
                static_cast<long long>(elems), static_cast<long long>(std::filesystem::file_size(a.get("checkpoint"))));
  else
    std::printf("kernels: %.2f%% zeros of %lld weights\n", 100.0 * overall, static_cast<long long>(elems));
  return 0;
}

}  // namespace

int prune_command(int argc, char** argv) {
  const std::string sub = argc > 2 ? argv[2] : "";
  if (sub == "strip") return strip(argc, argv);
  if (sub == "info") return info(argc, argv);
  BONSAI_CHECK(false, std::string("usage:\n") + kPruneUsage);
  return 2;
}

}  // namespace bonsai::apps
