// Module: a node of the model tree. It owns named parameters (trained),
// named buffers (state such as BatchNorm running statistics: saved, never
// optimised) and named children, in registration order. Full dotted names
// ("features.0.conv.weight") are what checkpoints, optimisers and transforms
// key on.
//
//   struct Block : Module {
//     Block() {
//       conv = add("conv", std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 8, .kernel = 3}));
//       bn = add("bn", std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 8}));
//     }
//     Tensor forward(const Tensor& x) override { return ops::relu((*bn)((*conv)(x))); }
//     std::shared_ptr<Conv2d> conv;
//     std::shared_ptr<BatchNorm2d> bn;
//   };
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace bonsai {

// What a parameter is, so optimisers (L2 on kernels only), QAT and pruning
// can choose by role rather than by name.
enum class ParamRole { conv_kernel, depthwise_kernel, dense_kernel, bias, bn_gamma, bn_beta, other };
const char* role_name(ParamRole r);

struct NamedParam {
  std::string name;
  Tensor tensor;
  ParamRole role;
};

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  virtual std::string type_name() const = 0;

  // Train/eval mode, applied to the whole subtree.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Full dotted names, depth first in registration order.
  std::vector<NamedParam> named_parameters(const std::string& prefix = "") const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(const std::string& prefix = "") const;
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  int64_t num_parameters() const;

  // Visit this module and every descendant with its full name.
  void visit(const std::function<void(const std::string&, Module&)>& fn, const std::string& prefix = "");

  // The descendant at a dotted path ("backbone.block3"); throws naming the
  // path if there is none.
  std::shared_ptr<Module> child(const std::string& path) const;
  // Swap the descendant at `path` for `replacement` (transforms: QAT, pruning,
  // BN folding). The new module takes the old one's train/eval mode.
  void replace_child(const std::string& path, std::shared_ptr<Module> replacement);

  // Multiply-accumulates per sample of this module's own compute (conv and
  // dense kernels) in its last forward pass, and of the whole subtree.
  virtual int64_t own_macs() const { return 0; }
  int64_t macs() const;

  void zero_grad();

  // The weights magnitude pruning may zero (prune/prune.h), as parameter
  // names relative to this module ("kernel", "conv.kernel"). nullopt — the
  // default — declares nothing: the pruner then takes the built-in layers'
  // kernels below this module. A block overrides it to choose for itself
  // (an empty list: prune nothing inside it).
  virtual std::optional<std::vector<std::string>> prunable_weights() const { return std::nullopt; }

 protected:
  Tensor& add_parameter(const std::string& name, Tensor t, ParamRole role);
  Tensor& add_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }
  void add_child(const std::string& name, std::shared_ptr<Module> child);

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    ParamRole role;
  };
  std::vector<Param> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace bonsai
