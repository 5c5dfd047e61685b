// Tracing a quantized model: what quant::convert (quant/int8_model.h) reads
// to build the integer graph, and what verify-int8 compares layer by layer.
//
//   quant::Trace trace;
//   {
//     quant::TraceScope scope(trace);   // this thread records while it lives
//     model->eval();
//     model->forward(images);
//   }
//   for (const quant::TracedOp& op : trace.ops) ...   // in execution order
//
// Only the quantized layers record (QuantConv2d, QuantDense, QuantLayer,
// QuantMerge and ActivationQuantizer — quant/quantize.h), each with its input
// tensors and its output: for the wrappers the float layer's output *before*
// the wrapper's output quantizer, which records itself as the next op. A
// value is identified by its storage (data pointer), so the reshapes and
// no-ops that stay unwrapped (Flatten, eval-mode Dropout, Identity) are
// views of a traced value. The trace holds every tensor it saw, so no
// storage is reused while it lives.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "layers/module.h"

namespace bonsai::quant {

struct TracedOp {
  const Module* module = nullptr;
  std::vector<Tensor> inputs;
  Tensor output;
};

struct Trace {
  std::vector<TracedOp> ops;
};

// While alive, the quantized layers' forwards on this thread append to
// `trace`. Scopes do not nest.
class TraceScope {
 public:
  explicit TraceScope(Trace& trace);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;
};

// Append to the active trace, if any (called by the quantized layers on
// every forward, so without a trace they cost a thread-local check only).
void record_traced(const Module* module, const std::vector<Tensor>& inputs, const Tensor& output);
void record_traced(const Module* module, const Tensor& input, const Tensor& output);

}  // namespace bonsai::quant
