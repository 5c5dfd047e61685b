// Magnitude pruning as a transform over the module tree.
//
//   prune::Pruner pruner = prune::prune_low_magnitude(*model, {
//       .schedule = prune::Schedule::polynomial_decay({.final_sparsity = 0.8, .begin_step = 0,
//                                                       .end_step = 2000, .frequency = 100})});
//   // training loop, after each optimiser step:
//   pruner.step(step);            // masks recomputed when the schedule says so, then w *= mask
//   std::cout << pruner.table();  // per-weight sparsity and threshold
//
// Which weights: the walk asks each module for prunable_weights()
// (layers/module.h). A module that declares a list gets exactly those
// parameters pruned (and its subtree is not searched further); one that
// declares nothing contributes its own conv and dense kernels (by ParamRole;
// depthwise kernels only with prune_depthwise) and its children are searched
// in turn. `exclude` globs drop weights by full name, `overrides` give a
// weight (by glob) its own final sparsity, the schedule scaled to it.
//
// Masks are layer-local: at an update step each weight keeps its largest
// magnitudes so that exactly round(sparsity · n) elements are zero (ties
// broken by position: the earlier element goes first), in one of three
// granularities:
//   unstructured  single elements;
//   block         [block_h, block_w] tiles of the weight viewed as a matrix
//                 [numel / out, out] (out = the last axis), scored by mean
//                 |w|; round(sparsity · tiles) tiles are zeroed;
//   n_m           N:M along the input channels (the second-to-last axis of
//                 HWIO kernels, the first of dense kernels): in every group
//                 of M consecutive inputs the M - N smallest are candidates,
//                 and the round(sparsity · n) smallest candidates are zeroed,
//                 so the pattern is reached gradually and is exact N:M once
//                 sparsity reaches (M - N) / M.
// After every step the weights are multiplied by their masks, so pruned
// weights stay exactly zero (and a QAT model's fake quantizer sees zeros:
// their int8 codes are 0). The pruner works on the parameter tensors, which
// QAT's quantized layers share, so pruning and QAT compose in either order.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "layers/module.h"
#include "layers/state.h"
#include "prune/schedule.h"

namespace bonsai::prune {

enum class Granularity { unstructured, block, n_m };
Granularity granularity_by_name(const std::string& name);  // "unstructured" | "block" | "n_m"

struct PruneConfig {
  Schedule schedule = Schedule::constant_sparsity({});
  Granularity granularity = Granularity::unstructured;
  int block_h = 1, block_w = 1;  // block
  int n = 2, m = 4;              // n_m
  bool prune_depthwise = false;
  std::vector<std::string> exclude;                         // globs on full parameter names
  std::vector<std::pair<std::string, double>> overrides;    // glob -> final sparsity
};

struct PrunedWeight {
  std::string name;  // full parameter name
  Tensor weight;     // the model's tensor
  Tensor mask;       // u8 0/1, the weight's shape
  double final_sparsity = 0.0;
  float threshold = 0.0f;  // the largest pruned |w| (block: tile score) at the last update
  int64_t zeros() const;    // zeros in the mask
  double sparsity() const;  // zeros / elements
};

class Pruner {
 public:
  Pruner(Module& model, const PruneConfig& config);
  // Masks taken from a pruning state (state()), kept fixed: what pruning +
  // QAT uses to keep a pruned checkpoint's zeros.
  static Pruner with_fixed_masks(Module& model, const StateDict& state);

  // After the optimiser step that made `step` the global step: recompute
  // masks if the schedule updates at `step`, then apply them. Returns
  // whether the masks were recomputed.
  bool step(int64_t step);
  // Recompute masks for a sparsity fraction of each weight's final target
  // (`sparsity` is the schedule's value; per-weight overrides scale it).
  void update_masks(double sparsity);
  // w *= mask for every pruned weight.
  void apply() const;

  const std::vector<PrunedWeight>& weights() const { return weights_; }
  // Zeros over all pruned weights.
  double sparsity() const;
  // "<name>.mask" (u8) and "<name>.threshold" ([1] f32) per weight.
  StateDict state() const;
  void load_state(const StateDict& state);
  // A text table: weight, shape, elements, final target, sparsity, threshold.
  std::string table() const;

 private:
  Pruner() = default;
  PruneConfig config_;
  bool fixed_ = false;
  std::vector<PrunedWeight> weights_;
};

inline Pruner prune_low_magnitude(Module& model, const PruneConfig& config) { return Pruner(model, config); }

// Zeros of every conv and dense kernel of a model (for reports).
double kernel_sparsity(const Module& model);

}  // namespace bonsai::prune
