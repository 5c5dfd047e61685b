// Model state by name: collecting a module tree's parameters and buffers into
// a name → tensor map, loading such a map back (strictly, or filtered by name
// patterns for fine-tuning), and checkpoint files in safetensors.
//
//   save_checkpoint("model.safetensors", *model, {{"model", "resnet50"}, {"options", "{}"}});
//   auto report = load_state(*model, io::load_safetensors(path), {.strict = true});
//   load_state(*model, state, {.include = {"backbone.*"}, .strict = false});
#pragma once

#include <map>
#include <string>
#include <vector>

#include "layers/module.h"

namespace bonsai {

using StateDict = std::map<std::string, Tensor>;

// Parameters and buffers by full dotted name (sharing storage, no copies).
StateDict state_dict(const Module& m);

struct LoadOptions {
  // Glob patterns ('*' matches any run of characters, including dots) on the
  // module's names: only names matching an include (all, if empty) and no
  // exclude are loaded.
  std::vector<std::string> include, exclude;
  // Strict: every selected module name must be in the source with the same
  // shape, and the source may hold no name the module lacks. All problems
  // are reported in one error.
  bool strict = true;
};

struct LoadReport {
  std::vector<std::string> loaded, missing, unexpected, mismatched, skipped;
};

// Copies values (not handles) into the module's tensors; f32 only.
LoadReport load_state(Module& m, const StateDict& source, const LoadOptions& o = {});

bool glob_match(const std::string& pattern, const std::string& name);

// The tensors under "<prefix>" in a checkpoint, with the prefix removed
// (strip) or kept. A training checkpoint of `bonsai train` keeps sections
// "model/", "optimizer/", "ema/" and "pruning/".
StateDict with_prefix(const StateDict& s, const std::string& prefix, bool strip);
// The model's tensors of a training checkpoint (its "model/" section) or of
// a model checkpoint (all of it).
StateDict model_weights(const StateDict& checkpoint);

// Writes the state as safetensors atomically, with `metadata` (e.g. model
// name and options JSON) plus "bonsai_version".
void save_checkpoint(const std::string& path, const Module& m,
                     std::map<std::string, std::string> metadata = {});

}  // namespace bonsai
