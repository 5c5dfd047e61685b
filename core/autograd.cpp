#include "core/autograd.h"

#include <unordered_map>

#include "core/op_profile.h"
#include "core/ops.h"

namespace bonsai {

namespace {
thread_local bool g_grad_enabled = true;

// In-place a += b for f32 tensors of equal shape.
void accumulate_into(Tensor& a, const Tensor& b) {
  float* pa = a.data<float>();
  const float* pb = b.data<float>();
  int64_t n = a.numel();
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) pa[i] += pb[i];
}
}  // namespace

bool grad_enabled() { return g_grad_enabled; }

NoGrad::NoGrad() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = previous_; }

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  return any_requires_grad(std::vector<Tensor>(inputs));
}

Tensor record(Tensor out, const char* name, const std::vector<Tensor>& inputs, BackwardFn fn) {
  if (OpProfile* prof = OpProfile::active(); prof && g_grad_enabled) prof->on_record(name);
  if (!any_requires_grad(inputs)) return out;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->backward = std::move(fn);
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn()) e.node = t.grad_fn();
      else e.leaf = t.impl_ptr();
    }
    node->inputs.push_back(std::move(e));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = std::move(node);
  return out;
}

void run_backward(const Tensor& root, const Tensor& seed, const BackwardHooks& hooks) {
  BONSAI_CHECK(root.requires_grad(), "backward() on a tensor that does not require grad");
  BONSAI_CHECK(seed.shape() == root.shape(),
               "backward seed shape " + seed.shape_str() + " differs from root " + root.shape_str());
  NoGrad no_grad;  // backward closures compute plain tensors
  OpProfile* prof = OpProfile::active();
  if (prof) prof->on_backward_start();

  if (!root.grad_fn()) {  // the root is itself a leaf
    TensorImpl* leaf = root.impl();
    if (leaf->grad) {
      Tensor g(leaf->grad);
      accumulate_into(g, seed);
    } else {
      leaf->grad = seed.clone().impl_ptr();
    }
    if (hooks.leaf_ready) hooks.leaf_ready(leaf);
    return;
  }

  // Count, for every node reachable from the root, how many edges point at
  // it; with a leaf_ready hook, also how many edges point at each leaf.
  std::unordered_map<Node*, int> dependents;
  std::unordered_map<TensorImpl*, int> leaf_uses;
  const bool track_leaves = static_cast<bool>(hooks.leaf_ready);
  std::vector<Node*> stack{root.grad_fn().get()};
  dependents[root.grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->inputs) {
      if (e.leaf && track_leaves) ++leaf_uses[e.leaf.get()];
      if (!e.node) continue;
      auto [it, inserted] = dependents.try_emplace(e.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(e.node.get());
    }
  }

  // A node is done with one of its leaf inputs: the leaf's gradient is final
  // once no other node will add to it.
  auto leaf_done = [&](TensorImpl* leaf) {
    if (track_leaves && --leaf_uses[leaf] == 0) hooks.leaf_ready(leaf);
  };

  // Process nodes once all their consumers have delivered gradients
  // (reverse topological order). Pending gradients are owned by this map.
  std::unordered_map<Node*, Tensor> pending;
  std::unordered_map<Node*, bool> owned;  // may we add into pending[n] in place?
  pending[root.grad_fn().get()] = seed;
  std::vector<std::shared_ptr<Node>> ready{root.grad_fn()};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Tensor grad_out = std::move(pending[node.get()]);
    pending.erase(node.get());
    owned.erase(node.get());
    BONSAI_CHECK(node->backward, std::string("backward through '") + node->name +
                                     "' a second time: its saved tensors were already freed");
    const double t0 = prof ? OpProfile::now() : 0;
    Grads grads = node->backward(grad_out);
    if (prof) prof->on_backward(node->name, OpProfile::now() - t0);
    node->backward = nullptr;  // frees the saved tensors now
    grad_out = Tensor();
    BONSAI_CHECK(grads.size() == node->inputs.size(),
                 std::string("backward of '") + node->name + "' returned " +
                     std::to_string(grads.size()) + " gradients for " +
                     std::to_string(node->inputs.size()) + " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      const Edge& e = node->inputs[i];
      if (!e.active()) continue;
      Tensor& g = grads[i];
      if (g.defined())
        BONSAI_CHECK(g.shape() == node->input_shapes[i],
                     std::string("backward of '") + node->name + "' gave gradient " + g.shape_str() +
                         " for input " + std::to_string(i) + " of shape " +
                         node->input_shapes[i].str());
      if (e.leaf) {
        if (g.defined()) {
          if (e.leaf->grad) {
            Tensor acc(e.leaf->grad);
            accumulate_into(acc, g);
          } else {
            e.leaf->grad = g.clone().impl_ptr();
          }
        }
        leaf_done(e.leaf.get());
        continue;
      }
      Node* target = e.node.get();
      if (g.defined()) {
        auto it = pending.find(target);
        if (it == pending.end() || !it->second.defined()) {
          pending[target] = g;
          owned[target] = false;
        } else {
          if (!owned[target]) {
            it->second = it->second.clone();
            owned[target] = true;
          }
          accumulate_into(it->second, g);
        }
      }
      if (--dependents[target] == 0) {
        if (!pending[target].defined()) {
          // No gradient reached this node: it contributes nothing, but its
          // inputs may still be waiting on it.
          pending.erase(target);
          std::vector<Node*> quiet{target};
          // Release dependents of an all-zero branch without running it.
          while (!quiet.empty()) {
            Node* q = quiet.back();
            quiet.pop_back();
            q->backward = nullptr;
            for (const Edge& qe : q->inputs) {
              if (qe.leaf) leaf_done(qe.leaf.get());
              if (!qe.node) continue;
              if (--dependents[qe.node.get()] == 0) {
                auto pit = pending.find(qe.node.get());
                if (pit != pending.end() && pit->second.defined()) ready.push_back(qe.node);
                else quiet.push_back(qe.node.get());
              }
            }
          }
        } else {
          ready.push_back(e.node);
        }
      }
    }
  }
}

}  // namespace bonsai
