#include "export/tflite_builder.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>

namespace bonsai::exporters::tflite {

namespace {

namespace fb = flatbuffers;

fb::Offset<void> write_options(fb::FlatBufferBuilder& b, const std::vector<OptionField>& fields) {
  const fb::uoffset_t start = b.StartTable();
  for (const OptionField& f : fields) {
    if (f.bytes == 1)
      b.AddElement<int8_t>(s::vtable_offset(f.id), static_cast<int8_t>(f.value), 0);
    else
      b.AddElement<int32_t>(s::vtable_offset(f.id), static_cast<int32_t>(f.value), 0);
  }
  return fb::Offset<void>(b.EndTable(start));
}

// A SparseIndexVector member in the narrowest type that holds `v`.
std::pair<uint8_t, fb::Offset<void>> write_index_vector(fb::FlatBufferBuilder& b, const std::vector<int32_t>& v) {
  const int32_t top = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
  fb::uoffset_t data = 0;
  uint8_t type = 0;
  if (top < 256) {
    std::vector<uint8_t> u(v.begin(), v.end());
    b.ForceVectorAlignment(u.size(), sizeof(uint8_t), 4);  // schema: force_align 4
    data = b.CreateVector(u).o;
    type = s::kUint8Vector;
  } else if (top < 65536) {
    std::vector<uint16_t> u(v.begin(), v.end());
    b.ForceVectorAlignment(u.size(), sizeof(uint16_t), 4);
    data = b.CreateVector(u).o;
    type = s::kUint16Vector;
  } else {
    data = b.CreateVector(v).o;
    type = s::kInt32Vector;
  }
  const fb::uoffset_t start = b.StartTable();
  b.AddOffset(s::vtable_offset(s::index_vector::values), fb::Offset<void>(data));
  return {type, fb::Offset<void>(b.EndTable(start))};
}

fb::Offset<void> write_sparsity(fb::FlatBufferBuilder& b, const TensorSparsity& sp) {
  const int rank = static_cast<int>(sp.dense_shape.size());
  const bool blocked = sp.block > 1;
  // Blocked: one more dimension in traversal order, the block's elements
  // (dense), after the last dimension counted in blocks.
  const int levels = rank + (blocked ? 1 : 0);
  std::vector<int32_t> order(levels);
  for (int i = 0; i < levels; ++i) order[i] = i;
  std::vector<fb::Offset<void>> dims;
  for (int i = 0; i < levels; ++i) {
    const bool sparse = i == rank - 1;
    const int32_t size = i == rank ? sp.block : sparse && blocked ? sp.dense_shape[i] / sp.block : sp.dense_shape[i];
    std::pair<uint8_t, fb::Offset<void>> segments{0, 0}, indices{0, 0};
    if (sparse) {
      segments = write_index_vector(b, sp.segments);
      indices = write_index_vector(b, sp.indices);
    }
    const fb::uoffset_t start = b.StartTable();
    b.AddElement<int8_t>(s::vtable_offset(s::dimension_metadata::format), sparse ? s::kSparseCsr : s::kDense, 0);
    b.AddElement<int32_t>(s::vtable_offset(s::dimension_metadata::dense_size), size, 0);
    if (sparse) {
      b.AddElement<uint8_t>(s::vtable_offset(s::dimension_metadata::array_segments_type), segments.first, 0);
      b.AddOffset(s::vtable_offset(s::dimension_metadata::array_segments), segments.second);
      b.AddElement<uint8_t>(s::vtable_offset(s::dimension_metadata::array_indices_type), indices.first, 0);
      b.AddOffset(s::vtable_offset(s::dimension_metadata::array_indices), indices.second);
    }
    dims.push_back(fb::Offset<void>(b.EndTable(start)));
  }
  const auto order_vec = b.CreateVector(order);
  const auto dims_vec = b.CreateVector(dims);
  fb::Offset<fb::Vector<int32_t>> block_map_vec;
  if (blocked) block_map_vec = b.CreateVector(std::vector<int32_t>{rank - 1});
  const fb::uoffset_t start = b.StartTable();
  b.AddOffset(s::vtable_offset(s::sparsity::traversal_order), order_vec);
  if (blocked) b.AddOffset(s::vtable_offset(s::sparsity::block_map), block_map_vec);
  b.AddOffset(s::vtable_offset(s::sparsity::dim_metadata), dims_vec);
  return fb::Offset<void>(b.EndTable(start));
}

fb::Offset<void> write_tensor(fb::FlatBufferBuilder& b, const TensorDef& t) {
  const auto shape = b.CreateVector(t.shape);
  const auto name = b.CreateString(t.name);
  fb::Offset<void> quant = 0, sparsity = 0;
  if (t.quant) {
    const auto scales = b.CreateVector(t.quant->scales);
    const auto zero_points = b.CreateVector(t.quant->zero_points);
    const fb::uoffset_t start = b.StartTable();
    b.AddOffset(s::vtable_offset(s::quantization::scale), scales);
    b.AddOffset(s::vtable_offset(s::quantization::zero_point), zero_points);
    b.AddElement<int32_t>(s::vtable_offset(s::quantization::quantized_dimension), t.quant->dimension, 0);
    quant = fb::Offset<void>(b.EndTable(start));
  }
  if (t.sparsity) sparsity = write_sparsity(b, *t.sparsity);
  const fb::uoffset_t start = b.StartTable();
  b.AddOffset(s::vtable_offset(s::tensor::shape), shape);
  b.AddElement<int8_t>(s::vtable_offset(s::tensor::type), t.type, 0);
  b.AddElement<uint32_t>(s::vtable_offset(s::tensor::buffer), t.buffer, 0);
  b.AddOffset(s::vtable_offset(s::tensor::name), name);
  if (t.quant) b.AddOffset(s::vtable_offset(s::tensor::quantization), quant);
  if (t.sparsity) b.AddOffset(s::vtable_offset(s::tensor::sparsity), sparsity);
  return fb::Offset<void>(b.EndTable(start));
}

}  // namespace

std::vector<uint8_t> GraphBuilder::finish(int input, int output, const std::string& description_text) const {
  fb::FlatBufferBuilder b(1 << 20);
  b.ForceDefaults(true);  // write every field we set, defaults included (explicit files)

  std::vector<fb::Offset<void>> buffers;
  for (size_t i = 0; i < buffers_.size(); ++i) {
    fb::Offset<fb::Vector<uint8_t>> data = 0;
    if (i > 0) {
      b.ForceVectorAlignment(buffers_[i].size(), sizeof(uint8_t), 16);  // schema: force_align 16
      data = b.CreateVector(buffers_[i]);
    }
    const fb::uoffset_t start = b.StartTable();
    if (i > 0) b.AddOffset(s::vtable_offset(s::buffer::data), data);
    buffers.push_back(fb::Offset<void>(b.EndTable(start)));
  }

  std::vector<fb::Offset<void>> tensors;
  for (const TensorDef& t : tensors_) tensors.push_back(write_tensor(b, t));

  std::vector<fb::Offset<void>> operators;
  for (const OpDef& op : ops_) {
    const auto inputs = b.CreateVector(op.inputs);
    const auto outputs = b.CreateVector(op.outputs);
    fb::Offset<void> options = 0;
    if (op.options_type) options = write_options(b, op.options);
    const fb::uoffset_t start = b.StartTable();
    b.AddElement<uint32_t>(s::vtable_offset(s::op::opcode_index), static_cast<uint32_t>(op.opcode), 0);
    b.AddOffset(s::vtable_offset(s::op::inputs), inputs);
    b.AddOffset(s::vtable_offset(s::op::outputs), outputs);
    if (op.options_type) {
      b.AddElement<uint8_t>(s::vtable_offset(s::op::builtin_options_type), op.options_type, 0);
      b.AddOffset(s::vtable_offset(s::op::builtin_options), options);
    }
    operators.push_back(fb::Offset<void>(b.EndTable(start)));
  }

  std::vector<fb::Offset<void>> opcodes;
  for (const auto& [code, version] : opcodes_) {
    const fb::uoffset_t start = b.StartTable();
    // deprecated_builtin_code (a byte) holds codes up to 127; larger codes
    // live in builtin_code alone, with the byte set to 127, the value the
    // schema reserves for exactly that (kPlaceholderForGreaterOpCodes).
    b.AddElement<int8_t>(s::vtable_offset(s::operator_code::deprecated_builtin_code),
                         static_cast<int8_t>(std::min<int32_t>(code, s::kPlaceholderForGreaterOpCodes)), 0);
    b.AddElement<int32_t>(s::vtable_offset(s::operator_code::version), version, 1);
    b.AddElement<int32_t>(s::vtable_offset(s::operator_code::builtin_code), code, 0);
    opcodes.push_back(fb::Offset<void>(b.EndTable(start)));
  }

  const auto tensors_vec = b.CreateVector(tensors);
  const auto inputs_vec = b.CreateVector(std::vector<int32_t>{input});
  const auto outputs_vec = b.CreateVector(std::vector<int32_t>{output});
  const auto operators_vec = b.CreateVector(operators);
  const auto subgraph_name = b.CreateString("main");
  fb::uoffset_t start = b.StartTable();
  b.AddOffset(s::vtable_offset(s::subgraph::tensors), tensors_vec);
  b.AddOffset(s::vtable_offset(s::subgraph::inputs), inputs_vec);
  b.AddOffset(s::vtable_offset(s::subgraph::outputs), outputs_vec);
  b.AddOffset(s::vtable_offset(s::subgraph::operators), operators_vec);
  b.AddOffset(s::vtable_offset(s::subgraph::name), subgraph_name);
  const fb::Offset<void> subgraph(b.EndTable(start));

  const auto opcodes_vec = b.CreateVector(opcodes);
  const auto subgraphs_vec = b.CreateVector(std::vector<fb::Offset<void>>{subgraph});
  const auto description = b.CreateString(description_text);
  const auto buffers_vec = b.CreateVector(buffers);
  start = b.StartTable();
  b.AddElement<uint32_t>(s::vtable_offset(s::model::version), s::kSchemaVersion, 0);
  b.AddOffset(s::vtable_offset(s::model::operator_codes), opcodes_vec);
  b.AddOffset(s::vtable_offset(s::model::subgraphs), subgraphs_vec);
  b.AddOffset(s::vtable_offset(s::model::description), description);
  b.AddOffset(s::vtable_offset(s::model::buffers), buffers_vec);
  const fb::Offset<void> model(b.EndTable(start));
  b.Finish(model, s::kFileIdentifier);
  return {b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize()};
}

}  // namespace bonsai::exporters::tflite
