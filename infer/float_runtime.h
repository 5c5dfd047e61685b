// Fast FP32 inference of a float graph (export/float_graph.h): the model as
// convert_float lowers it (BatchNorm folded into the convolutions, relu and
// relu6 fused) run on oneDNN with further fusions a deployed runtime makes —
// what `bonsai bench infer` times for FP32.
//
//   exporters::FloatGraph g = exporters::convert_float(*model, Tensor::zeros({1, 224, 224, 3}));
//   infer::FloatRuntime rt(std::move(g));
//   Tensor logits = rt.run(images);   // [N, H, W, C] → [N, ...output shape]
//
// Fusions, decided once from the graph (plan() lists them):
//  - an activation op (hard_swish, hard_sigmoid, sigmoid, relu, relu6) that
//    is the only reader of a convolution's output becomes a post-op of that
//    convolution;
//  - an add that is the only reader of a convolution's output (residual
//    connections) becomes the convolution's sum post-op, followed by the
//    add's own clamp: the convolution accumulates into the other operand's
//    buffer when the add is that operand's last reader, or into a copy;
//  - reshapes are views of their input's buffer.
// Convolutions and fully connected layers are oneDNN primitives with their
// weights reordered once to the layout oneDNN picks; activations stay NHWC
// (plain) between ops; pools are oneDNN's; mean, add, mul, activation,
// resize and concat are plain loops. Buffers are allocated once per batch
// size, on the first run of that size.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "export/float_graph.h"

namespace bonsai::infer {

class FloatRuntime {
 public:
  explicit FloatRuntime(exporters::FloatGraph graph);
  ~FloatRuntime();
  FloatRuntime(FloatRuntime&&) noexcept;
  FloatRuntime& operator=(FloatRuntime&&) noexcept;

  // images [N, H, W, C] → the output [N, ...output shape] (a new tensor).
  // One call at a time.
  Tensor run(const Tensor& images);

  const exporters::FloatGraph& graph() const { return graph_; }
  // One line per executed step: the graph ops it runs, e.g.
  // "conv+hard_swish backbone.blocks.3.expand", "conv+add+relu ...".
  std::vector<std::string> plan() const;

 private:
  struct Step;
  struct Prepared;
  void make_plan();
  Prepared& prepared(int64_t batch);

  exporters::FloatGraph graph_;
  std::vector<Step> steps_;
  std::vector<int> storage_of_;  // by value: the value whose buffer holds it
  std::unique_ptr<Prepared> prepared_;
};

}  // namespace bonsai::infer
