#include "apps/experiment/checkpoints.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"

namespace bonsai::apps {

namespace fs = std::filesystem;

CheckpointManager::CheckpointManager(std::string dir, int64_t max_to_keep)
    : dir_(std::move(dir)), max_to_keep_(max_to_keep) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  BONSAI_CHECK(!ec, "cannot create model directory '" + dir_ + "': " + ec.message());
  // Temporary files of a write that a crash interrupted: never complete, so
  // never loaded; remove them so they do not pile up.
  for (const auto& e : fs::directory_iterator(dir_)) {
    std::string f = e.path().filename().string();
    if (f.rfind("ckpt-", 0) == 0 && f.find(".safetensors.tmp") != std::string::npos) fs::remove(e.path(), ec);
  }
}

std::string CheckpointManager::path_for(int64_t step) const {
  return dir_ + "/ckpt-" + std::to_string(step) + ".safetensors";
}

std::vector<int64_t> CheckpointManager::steps() const {
  static const std::regex name("ckpt-([0-9]+)\\.safetensors");
  std::vector<int64_t> out;
  for (const auto& e : fs::directory_iterator(dir_)) {
    std::smatch m;
    std::string f = e.path().filename().string();
    if (std::regex_match(f, m, name)) out.push_back(std::stoll(m[1]));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> CheckpointManager::latest() const {
  auto s = steps();
  if (s.empty()) return std::nullopt;
  return path_for(s.back());
}

std::string CheckpointManager::save(int64_t step, const StateDict& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  std::string path = path_for(step);
  io::save_safetensors(path, tensors, metadata, {.sparse = true});  // pruned weights stored sparsely
  auto s = steps();
  // Keep the newest max_to_keep; never delete the best checkpoint's source
  // (best_ckpt is its own copy, so plain pruning is safe).
  for (size_t i = 0; i + max_to_keep_ < s.size(); ++i) {
    std::error_code ec;
    fs::remove(path_for(s[i]), ec);
  }
  return path;
}

bool CheckpointManager::update_best(const std::string& path, int64_t step, const std::string& metric, double value,
                                    bool higher_is_better) {
  std::string info = dir_ + "/best_ckpt.json";
  if (fs::exists(info)) {
    std::ifstream in(info);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      BONSAI_CHECK(false, "'" + info + "' is not valid JSON: " + e.what());
    }
    if (j.value("metric", "") == metric) {
      double best = j.value("value", 0.0);
      if (higher_is_better ? value <= best : value >= best) return false;
    }
  }
  // Copy through a temporary name so a crash leaves either the old or the
  // new best checkpoint, never half of one.
  std::string target = dir_ + "/best_ckpt.safetensors", tmp = target + ".tmp";
  fs::copy_file(path, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, target);
  nlohmann::json j{{"metric", metric}, {"value", value}, {"step", step}, {"source", path}};
  std::string info_tmp = info + ".tmp";
  {
    std::ofstream out(info_tmp);
    out << j.dump(1) << "\n";
    BONSAI_CHECK(out.good(), "cannot write '" + info_tmp + "'");
  }
  fs::rename(info_tmp, info);
  return true;
}

}  // namespace bonsai::apps
