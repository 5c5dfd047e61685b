// Autograd: a define-by-run graph. Each differentiable op returns a tensor
// whose grad_fn is a Node holding a backward closure; Tensor::backward() runs
// the closures in reverse topological order and accumulates into leaves.
//
// Writing an op (forward, backward and the saved state in one place):
//
//   Tensor y = compute_forward(x);
//   return record(y, "relu", {x}, [x_saved = x.detach()](const Tensor& gy) {
//     return Grads{relu_backward(gy, x_saved)};
//   });
//
// The closure captures only what the gradient needs; it is destroyed as soon
// as backward has used it, so saved activations are freed early. Closures
// must capture inputs detached (or raw data), never the output handle, so the
// graph has no cycles.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace bonsai {

// One gradient per input of the op, in order; an undefined Tensor means "no
// gradient for this input".
using Grads = std::vector<Tensor>;
using BackwardFn = std::function<Grads(const Tensor& grad_out)>;

struct Edge {
  std::shared_ptr<Node> node;        // the input was produced by this node, or
  std::shared_ptr<TensorImpl> leaf;  // the input is a leaf that requires grad
  bool active() const { return node || leaf; }
};

struct Node {
  std::string name;          // op name, for error messages and debugging
  std::vector<Edge> inputs;  // aligned with the Grads the closure returns
  std::vector<Shape> input_shapes;
  BackwardFn backward;
};

// Whether ops record history on this thread (false inside a NoGrad scope).
bool grad_enabled();

// RAII scope in which ops record no graph (evaluation, optimiser updates).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// True when the op's result needs a graph node: grad mode is on and at least
// one input requires grad.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attach a Node to `out` if any input requires grad (and grad mode is on);
// otherwise return `out` untouched and drop `fn`.
Tensor record(Tensor out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn);

// Callbacks into a backward pass. leaf_ready(leaf) fires once per leaf that
// requires grad, as soon as every node that uses it has delivered its
// gradient, so leaf->grad is final (it stays empty if no gradient reached
// it). Data-parallel training starts reducing gradients there while the
// rest of backward runs (core/dist/grad_reducer.h).
struct BackwardHooks {
  std::function<void(TensorImpl* leaf)> leaf_ready;
};

// Run backward from `root` with seed gradient `seed` (same shape as root).
void run_backward(const Tensor& root, const Tensor& seed, const BackwardHooks& hooks = {});

}  // namespace bonsai
