// The built-in layers. Each is a Module with an options struct:
//
//   auto conv = std::make_shared<Conv2d>(Conv2dOptions{.in = 32, .out = 64, .kernel = 3, .stride = 2});
//   auto bn = std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 64});
//   Tensor y = ops::relu((*bn)((*conv)(x)));      // x [N, H, W, 32] -> y [N, H/2, W/2, 64]
//
// Parameter names follow the Keras/Model Garden vocabulary where it exists
// (kernel/bias, gamma/beta, moving_mean/moving_variance).
#pragma once

#include <random>

#include "core/dist/communicator.h"
#include "core/ops.h"
#include "layers/module.h"

namespace bonsai {

// How a conv or pooling layer pads: TF 'SAME' (asymmetric, extra pixel
// bottom/right — the Model Garden's), symmetric (PyTorch's k/2 each side,
// times dilation), or none ('VALID').
enum class PaddingStyle { tf_same, symmetric, valid };

struct Conv2dOptions {
  int64_t in = 0, out = 0;
  int kernel = 3;
  int stride = 1;
  int dilation = 1;
  int groups = 1;
  bool bias = false;
  PaddingStyle padding = PaddingStyle::tf_same;
  uint32_t seed = 0;  // He-normal initialisation seed
};

class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, H, W, in] -> [N, OH, OW, out]
  std::string type_name() const override { return "Conv2d"; }
  ops::Padding padding_for(int64_t h, int64_t w) const;
  const Conv2dOptions& options() const { return opt_; }
  int64_t own_macs() const override { return macs_; }
  Tensor kernel;  // [K, K, in/groups, out]
  Tensor bias;    // [out] or undefined

 private:
  Conv2dOptions opt_;
  int64_t macs_ = 0;
};

struct BatchNormOptions {
  int64_t channels = 0;
  float momentum = 0.99f;  // Keras semantics
  float epsilon = 1e-3f;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(const BatchNormOptions& o);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "BatchNorm2d"; }
  const BatchNormOptions& options() const { return opt_; }
  // Training normalises with the statistics of the batch over every rank of
  // `comm` (dist::sync_batch_norm) when it has more than one rank; null (the
  // default): this replica's batch alone. Set by use_sync_batch_norm().
  void sync_statistics(std::shared_ptr<dist::Communicator> comm) { sync_ = std::move(comm); }
  bool synced() const { return sync_ != nullptr; }
  Tensor gamma, beta, moving_mean, moving_variance;  // [C]

 private:
  BatchNormOptions opt_;
  std::shared_ptr<dist::Communicator> sync_;
};

// act(bn(x)), as one fused op (ops::batch_norm_relu) when `bn` is a plain
// BatchNorm2d training on its own batch (not synced) and `act` a plain relu
// Activation; otherwise the two modules' own forwards. A transform that
// wraps or replaces either (QAT, tracing) so gets the unfused path. Blocks
// call this where a BN feeds an activation.
Tensor batch_norm_then(Module& bn, Module& act, const Tensor& x);
// act(parent's merge child `merge` of `inputs`), as one fused op
// (ops::add_relu) when the merge is a plain Add of two same-shape inputs
// and `act` a plain relu Activation; otherwise merge_child then act's
// forward (the residual add + activation of ResNet's blocks).
Tensor merge_then(const Module& parent, const std::string& merge, Module& act, const std::vector<Tensor>& inputs);

// Every BatchNorm2d below `m` takes its training statistics over the ranks
// of `comm` (synchronized batch norm; PyTorch's convert_sync_batchnorm).
void use_sync_batch_norm(Module& m, std::shared_ptr<dist::Communicator> comm);

struct DenseOptions {
  int64_t in = 0, out = 0;
  bool bias = true;
  uint32_t seed = 0;  // Glorot-uniform initialisation seed
};

class Dense : public Module {
 public:
  explicit Dense(const DenseOptions& o);
  Tensor forward(const Tensor& x) override;  // [N, in] -> [N, out]
  std::string type_name() const override { return "Dense"; }
  int64_t own_macs() const override { return kernel.numel(); }
  Tensor kernel;  // [in, out]
  Tensor bias;    // [out] or undefined
};

enum class ActivationKind { relu, relu6, hard_swish, hard_sigmoid, sigmoid };

class Activation : public Module {
 public:
  explicit Activation(ActivationKind kind) : kind_(kind) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override;
  ActivationKind kind() const { return kind_; }

 private:
  ActivationKind kind_;
};

struct PoolOptions {
  int kernel = 2;
  int stride = 2;
  PaddingStyle padding = PaddingStyle::valid;
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const PoolOptions& o) : opt_(o) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MaxPool2d"; }
  const PoolOptions& options() const { return opt_; }

 private:
  PoolOptions opt_;
};

// Average pooling; TF semantics (padding excluded from the count).
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(const PoolOptions& o) : opt_(o) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AvgPool2d"; }
  const PoolOptions& options() const { return opt_; }

 private:
  PoolOptions opt_;
};

// Bilinear resize (half-pixel centres) to a fixed size, or by an integer
// factor when the size is 0.
struct ResizeOptions {
  int64_t height = 0, width = 0;
  int scale = 1;
};

class Resize : public Module {
 public:
  explicit Resize(const ResizeOptions& o) : opt_(o) {}
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Resize"; }

 private:
  ResizeOptions opt_;
};

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

class GlobalAvgPool : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::global_avg_pool(x); }  // -> [N,1,1,C]
  std::string type_name() const override { return "GlobalAvgPool"; }
};

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return ops::flatten(x); }
  std::string type_name() const override { return "Flatten"; }
};

class Dropout : public Module {
 public:
  explicit Dropout(float rate, uint32_t seed = 0) : rate_(rate), rng_(seed) {}
  Tensor forward(const Tensor& x) override { return ops::dropout(x, rate_, is_training(), rng_); }
  std::string type_name() const override { return "Dropout"; }
  // Training reseeds every dropout each step from (seed, step, name), so a
  // resumed run draws the same masks as an uninterrupted one.
  void reseed(uint64_t seed) { rng_.seed(static_cast<std::mt19937::result_type>(seed)); }
  float rate() const { return rate_; }

 private:
  float rate_;
  std::mt19937 rng_;
};

// Merge layers: the ops of a block's data flow that take more than one
// tensor (a residual sum, SE's gating multiply, a concatenation, resizing to
// another tensor's size). Blocks own them as children and call merge(), so
// every op the data flow performs is a node of the model tree: transforms
// (QAT, conversion to int8) see them by name, exactly like convolutions.
//
//   add("add", std::make_shared<Add>());                       // in the constructor
//   Tensor y = merge_child(*this, "add", {residual, shortcut});  // in forward()
class Merge : public Module {
 public:
  virtual Tensor merge(const std::vector<Tensor>& inputs) = 0;
  // A merge has no single-input form; this throws naming the layer type.
  Tensor forward(const Tensor& x) override;
};

// Σ inputs, all of one shape.
class Add : public Merge {
 public:
  Tensor merge(const std::vector<Tensor>& inputs) override;
  std::string type_name() const override { return "Add"; }
};

// inputs[0] * inputs[1], broadcasting the second ([N, 1, 1, C] gates [N, H, W, C]).
class Multiply : public Merge {
 public:
  Tensor merge(const std::vector<Tensor>& inputs) override;
  std::string type_name() const override { return "Multiply"; }
};

// Concatenation along the channel (last) axis.
class Concat : public Merge {
 public:
  Tensor merge(const std::vector<Tensor>& inputs) override;
  std::string type_name() const override { return "Concat"; }
};

// Bilinear resize (half-pixel centres) of inputs[0] [N, h, w, C] to the
// height and width of inputs[1], whose values are not read.
class ResizeLike : public Merge {
 public:
  Tensor merge(const std::vector<Tensor>& inputs) override;
  std::string type_name() const override { return "ResizeLike"; }
};

// parent.child(name) as a Merge, merged over `inputs`; throws if that child
// is not a Merge.
Tensor merge_child(const Module& parent, const std::string& name, const std::vector<Tensor>& inputs);

// Children run in order; they are named "0", "1", ... unless named explicitly.
class Sequential : public Module {
 public:
  Sequential() = default;
  template <typename M>
  std::shared_ptr<M> push(std::shared_ptr<M> m, std::string name = "") {
    if (name.empty()) name = std::to_string(children().size());
    return add(name, std::move(m));
  }
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
};

// Padding of a window along both axes for a padding style.
ops::Padding window_padding(PaddingStyle style, int64_t h, int64_t w, int kernel, int stride, int dilation);

}  // namespace bonsai
