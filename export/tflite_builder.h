// The TFLite flatbuffer writer shared by the int8 (export/tflite.cpp) and
// float (export/tflite_float.cpp) exporters: the graph collected as plain
// data — tensors, constant buffers, operators with their builtin options —
// then serialized in one pass with Debian's flatbuffers builder and the
// schema's field numbers (export/tflite_schema.h).
//
//   tflite::GraphBuilder g;
//   const int x = g.add_tensor({.shape = {1, 8, 8, 3}, .type = s::kFloat32, .name = "input"});
//   const int y = g.add_tensor({.shape = {1, 8, 8, 3}, .type = s::kFloat32, .name = "output"});
//   g.add_op(s::kRelu, 1, {x}, {y});
//   std::vector<uint8_t> bytes = g.finish(x, y, "a model");
//
// Internal to export/: not installed API.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "export/tflite_schema.h"

namespace bonsai::exporters::tflite {

namespace s = tflite_schema;

// ---- the graph as plain data, serialized in one pass at the end ----------

struct TensorQuant {
  std::vector<float> scales;
  std::vector<int64_t> zero_points;
  int32_t dimension = 0;  // quantized_dimension (per-channel)
};

// TFLite's sparse encoding of a constant: the dense shape traversed in
// order, every dimension DENSE except the last, stored as CSR (row pointers
// into the column indices of the nonzeros; the buffer holds the nonzeros).
// TFLite's sparse encoding as bonsai writes it: every dimension dense but
// the last, which is CSR over its elements or, with block > 1, over blocks
// of `block` consecutive elements (TFLite's block_map on the last
// dimension: the stored values are whole blocks, zeros inside kept).
struct TensorSparsity {
  std::vector<int32_t> dense_shape;
  std::vector<int32_t> segments;  // [rows + 1]
  std::vector<int32_t> indices;   // [nnz], each < last extent (block > 1: in blocks)
  int32_t block = 1;              // > 1: divides the last extent
};

struct TensorDef {
  std::vector<int32_t> shape;
  s::TensorType type = s::kInt8;
  uint32_t buffer = 0;  // 0: no data (activations)
  std::string name;
  std::optional<TensorQuant> quant;
  std::optional<TensorSparsity> sparsity;
};

// A scalar field of a builtin options table.
struct OptionField {
  int id;
  int64_t value;
  int bytes;  // 1 (byte, bool) or 4 (int)
};

struct OpDef {
  int32_t opcode = 0;  // index into the operator codes
  std::vector<int32_t> inputs, outputs;
  uint8_t options_type = 0;  // BuiltinOptions member; 0: none
  std::vector<OptionField> options;
};

// Collects tensors, buffers and operators, then writes the flatbuffer.
class GraphBuilder {
 public:
  int add_tensor(TensorDef t) {
    tensors_.push_back(std::move(t));
    return static_cast<int>(tensors_.size()) - 1;
  }
  uint32_t add_buffer(std::vector<uint8_t> bytes) {
    buffers_.push_back(std::move(bytes));
    return static_cast<uint32_t>(buffers_.size()) - 1;
  }
  template <typename T>
  int add_constant(const std::string& name, std::vector<int32_t> shape, s::TensorType type, const T* data,
                   size_t count, std::optional<TensorQuant> quant = {}) {
    std::vector<uint8_t> bytes(count * sizeof(T));
    if (count) std::memcpy(bytes.data(), data, bytes.size());
    return add_tensor({.shape = std::move(shape), .type = type, .buffer = add_buffer(std::move(bytes)),
                       .name = name, .quant = std::move(quant)});
  }
  // shape: [v.size()] unless given.
  int add_int32_constant(const std::string& name, const std::vector<int32_t>& v, std::vector<int32_t> shape = {}) {
    if (shape.empty()) shape = {static_cast<int32_t>(v.size())};
    return add_constant(name, std::move(shape), s::kInt32, v.data(), v.size());
  }
  void add_op(s::BuiltinOperator code, int version, std::vector<int32_t> inputs, std::vector<int32_t> outputs,
              uint8_t options_type = 0, std::vector<OptionField> options = {}) {
    const auto key = std::make_pair(static_cast<int32_t>(code), version);
    auto it = opcode_index_.find(key);
    if (it == opcode_index_.end()) {
      it = opcode_index_.emplace(key, static_cast<int32_t>(opcodes_.size())).first;
      opcodes_.push_back(key);
    }
    ops_.push_back({it->second, std::move(inputs), std::move(outputs), options_type, std::move(options)});
  }
  const TensorDef& tensor(int id) const { return tensors_[id]; }

  // The model flatbuffer: one subgraph "main" with this input and output
  // tensor, schema version 3, identifier "TFL3".
  std::vector<uint8_t> finish(int input, int output, const std::string& description) const;

 private:
  std::vector<TensorDef> tensors_;
  std::vector<std::vector<uint8_t>> buffers_{{}};  // buffer 0: the empty sentinel
  std::vector<std::pair<int32_t, int>> opcodes_;   // (builtin code, version)
  std::map<std::pair<int32_t, int>, int32_t> opcode_index_;
  std::vector<OpDef> ops_;
};

// One spatial axis of a window op: TFLite can express our explicit padding
// as SAME or VALID when the pads and output size agree with its formulas.
struct Axis {
  int64_t in, out;
  int k, stride, dilation, pad_before;
  int64_t extent() const { return static_cast<int64_t>(k - 1) * dilation + 1; }
  int64_t needed() const { return (out - 1) * stride + extent() - in; }  // total padding used
  bool valid() const { return pad_before == 0 && in >= extent() && out == (in - extent()) / stride + 1; }
  bool same() const {
    return out == (in + stride - 1) / stride && pad_before == std::max<int64_t>(needed(), 0) / 2;
  }
  int64_t pad_after() const { return std::max<int64_t>(needed() - pad_before, 0); }
};

// Conv weights HWIO [kh, kw, cin/groups, cout] in TFLite's layout, with its
// shape: OHWI [cout, kh, kw, cin], or for depthwise [1, kh, kw, cout] (the
// same bytes).
template <typename T>
std::vector<T> conv_weights(const T* w, int kh, int kw, int64_t cin, int64_t cout, bool depthwise,
                            std::vector<int32_t>& shape) {
  const int64_t taps = int64_t{kh} * kw;
  if (depthwise) {
    shape = {1, kh, kw, static_cast<int32_t>(cout)};
    return std::vector<T>(w, w + taps * cout);
  }
  std::vector<T> packed(static_cast<size_t>(taps * cin * cout));
  for (int64_t o = 0; o < cout; ++o)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t c = 0; c < cin; ++c) packed[(o * taps + t) * cin + c] = w[(t * cin + c) * cout + o];
  shape = {static_cast<int32_t>(cout), kh, kw, static_cast<int32_t>(cin)};
  return packed;
}

// CONV_2D, or DEPTHWISE_CONV_2D with depth multiplier 1, reading {input,
// weights, bias}; g has stride_h/w and dilation_h/w.
template <typename Geometry>
void add_conv(GraphBuilder& b, bool depthwise, int version, std::vector<int32_t> inputs, int32_t output,
              s::Padding padding, const Geometry& g, s::Activation act) {
  if (depthwise) {
    namespace f = s::depthwise_options;
    b.add_op(s::kDepthwiseConv2d, version, std::move(inputs), {output}, s::kDepthwiseConv2DOptions,
             {{f::padding, padding, 1}, {f::stride_w, g.stride_w, 4}, {f::stride_h, g.stride_h, 4},
              {f::depth_multiplier, 1, 4}, {f::fused_activation, act, 1}, {f::dilation_w, g.dilation_w, 4},
              {f::dilation_h, g.dilation_h, 4}});
  } else {
    namespace f = s::conv2d_options;
    b.add_op(s::kConv2d, version, std::move(inputs), {output}, s::kConv2DOptions,
             {{f::padding, padding, 1}, {f::stride_w, g.stride_w, 4}, {f::stride_h, g.stride_h, 4},
              {f::fused_activation, act, 1}, {f::dilation_w, g.dilation_w, 4}, {f::dilation_h, g.dilation_h, 4}});
  }
}

}  // namespace bonsai::exporters::tflite
