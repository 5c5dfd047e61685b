#include "quant/trace.h"

#include "core/check.h"

namespace bonsai::quant {

namespace {
thread_local Trace* active_trace = nullptr;
}  // namespace

TraceScope::TraceScope(Trace& trace) {
  BONSAI_CHECK(active_trace == nullptr, "TraceScope: a trace is already recording on this thread");
  active_trace = &trace;
}

TraceScope::~TraceScope() { active_trace = nullptr; }

void record_traced(const Module* module, const std::vector<Tensor>& inputs, const Tensor& output) {
  if (active_trace) active_trace->ops.push_back({module, inputs, output});
}

void record_traced(const Module* module, const Tensor& input, const Tensor& output) {
  if (active_trace) active_trace->ops.push_back({module, {input}, output});
}

}  // namespace bonsai::quant
