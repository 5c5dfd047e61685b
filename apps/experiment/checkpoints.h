// Training checkpoints in a model directory: ckpt-<step>.safetensors files
// (weights, BN statistics, optimiser slots, EMA, step, RNG and data-order
// state), written atomically, the newest max_to_keep kept, plus the best one
// by an evaluation metric (best_ckpt.safetensors + best_ckpt.json).
//
//   CheckpointManager cm(model_dir, 5);
//   cm.save(step, tensors, {{"rng", rng_state}});
//   if (auto last = cm.latest()) resume_from(*last);
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "layers/state.h"

namespace bonsai::apps {

class CheckpointManager {
 public:
  CheckpointManager(std::string dir, int64_t max_to_keep);
  // Writes ckpt-<step>.safetensors (atomically) and deletes the oldest
  // beyond max_to_keep. Returns the path.
  std::string save(int64_t step, const StateDict& tensors, const std::map<std::string, std::string>& metadata);
  // Steps of the complete checkpoints present, ascending (temporary files of
  // an interrupted write are ignored).
  std::vector<int64_t> steps() const;
  std::optional<std::string> latest() const;
  std::string path_for(int64_t step) const;
  // Records `path` as the best checkpoint if `value` beats the stored one.
  // Returns true if it did.
  bool update_best(const std::string& path, int64_t step, const std::string& metric, double value,
                   bool higher_is_better);

 private:
  std::string dir_;
  int64_t max_to_keep_;
};

}  // namespace bonsai::apps
