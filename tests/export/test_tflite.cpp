// Tests of the TFLite exporter (export/tflite.h): the flatbuffer is read
// back with a small verified reader (flatbuffers::Table with the field ids of
// export/tflite_schema.h) and checked against the Int8Model it came from —
// identifier and version, the operators in order, tensor types and shapes,
// per-channel quantization, weights transposed to TFLite's layouts, the
// sparse encoding decoding to the dense weights, and the errors for what has
// no TFLite form. (That TFLite's runtime computes what bonsai does is checked
// end to end with tests/node/run_tflite.js and scripts/compare_outputs.py.)
#include <doctest/doctest.h>

#include <flatbuffers/flatbuffers.h>

#include <cstring>
#include <random>

#include "core/autograd.h"
#include "export/tflite.h"
#include "tests/layer_check.h"
#include "export/tflite_schema.h"
#include "layers/layers.h"
#include "quant/int8_model.h"
#include "quant/quantize.h"
#include "tests/export/float_net.h"

using namespace bonsai;
using namespace bonsai::quant;
namespace s = bonsai::exporters::tflite_schema;
namespace fb = flatbuffers;

namespace {

// Read access to one table, every pointer verified before it is followed.
class Table {
 public:
  Table(const fb::Table* t, fb::Verifier* v) : t_(t), v_(v) {
    REQUIRE((t_ && t_->VerifyTableStart(*v_)));  // the table and its vtable lie inside the buffer
    v_->EndTable();                               // (depth is not tracked: tables are read one at a time)
  }
  template <typename T>
  T scalar(int id, T def = 0) const {
    return t_->GetField<T>(s::vtable_offset(id), def);
  }
  bool has(int id) const { return t_->GetOptionalFieldOffset(s::vtable_offset(id)) != 0; }
  template <typename T>
  std::vector<T> vec(int id) const {
    const auto* p = t_->GetPointer<const fb::Vector<T>*>(s::vtable_offset(id));
    if (!p) return {};
    REQUIRE(v_->VerifyVector(p));
    return {p->begin(), p->end()};
  }
  std::string str(int id) const {
    const auto* p = t_->GetPointer<const fb::String*>(s::vtable_offset(id));
    if (!p) return {};
    REQUIRE(v_->VerifyString(p));
    return p->str();
  }
  Table table(int id) const { return Table(t_->GetPointer<const fb::Table*>(s::vtable_offset(id)), v_); }
  std::vector<Table> tables(int id) const {
    const auto* p = t_->GetPointer<const fb::Vector<fb::Offset<fb::Table>>*>(s::vtable_offset(id));
    REQUIRE(p);
    REQUIRE(v_->VerifyVector(p));
    std::vector<Table> out;
    for (const fb::Table* t : *p) out.emplace_back(t, v_);
    return out;
  }

 private:
  const fb::Table* t_;
  fb::Verifier* v_;
};

struct Tflite {
  explicit Tflite(std::vector<uint8_t> b) : bytes(std::move(b)), verifier(bytes.data(), bytes.size()) {}
  std::vector<uint8_t> bytes;
  fb::Verifier verifier;
  Table model() {
    REQUIRE(fb::BufferHasIdentifier(bytes.data(), s::kFileIdentifier));
    return Table(fb::GetRoot<fb::Table>(bytes.data()), &verifier);
  }
};

// The builtin code of every operator of the (one) subgraph, in order.
std::vector<int32_t> op_codes(const Table& model) {
  const std::vector<Table> codes = model.tables(s::model::operator_codes);
  std::vector<int32_t> out;
  for (const Table& op : model.tables(s::model::subgraphs)[0].tables(s::subgraph::operators))
    out.push_back(codes.at(op.scalar<uint32_t>(s::op::opcode_index)).scalar<int32_t>(s::operator_code::builtin_code));
  return out;
}

std::vector<int8_t> buffer_of(const Table& model, const Table& tensor) {
  const uint32_t b = tensor.scalar<uint32_t>(s::tensor::buffer);
  const std::vector<uint8_t> d = model.tables(s::model::buffers).at(b).vec<uint8_t>(s::buffer::data);
  return {d.begin(), d.end()};
}

// Decodes TFLite's sparse encoding as the exporter writes it (all
// dimensions DENSE but the last, which is CSR over elements or, with a
// block_map on it, over blocks whose elements are one more DENSE level) to
// the dense values.
std::vector<int8_t> densify(const Table& tensor, const std::vector<int8_t>& nonzeros) {
  const Table sp = tensor.table(s::tensor::sparsity);
  const std::vector<int32_t> order = sp.vec<int32_t>(s::sparsity::traversal_order);
  std::vector<Table> dims = sp.tables(s::sparsity::dim_metadata);
  REQUIRE(dims.size() == order.size());
  for (size_t i = 0; i < order.size(); ++i) CHECK(order[i] == static_cast<int32_t>(i));
  const std::vector<int32_t> shape = tensor.vec<int32_t>(s::tensor::shape);
  int32_t block = 1;
  if (dims.size() == shape.size() + 1) {
    CHECK(sp.vec<int32_t>(s::sparsity::block_map) == std::vector<int32_t>{static_cast<int32_t>(shape.size()) - 1});
    CHECK(dims.back().scalar<int8_t>(s::dimension_metadata::format) == s::kDense);
    block = dims.back().scalar<int32_t>(s::dimension_metadata::dense_size);
    dims.pop_back();
  } else {
    REQUIRE(dims.size() == shape.size());
  }
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    CHECK(dims[i].scalar<int8_t>(s::dimension_metadata::format) == s::kDense);
    CHECK(dims[i].scalar<int32_t>(s::dimension_metadata::dense_size) == shape[i]);
    rows *= dims[i].scalar<int32_t>(s::dimension_metadata::dense_size);
  }
  const Table& last = dims.back();
  REQUIRE(last.scalar<int8_t>(s::dimension_metadata::format) == s::kSparseCsr);
  const int64_t blocks = last.scalar<int32_t>(s::dimension_metadata::dense_size);
  CHECK(blocks * block == shape.back());
  auto index_vector = [&](int type_id, int value_id) {
    const uint8_t type = last.scalar<uint8_t>(type_id);
    const Table v = last.table(value_id);
    std::vector<int32_t> out;
    if (type == s::kUint8Vector)
      for (uint8_t x : v.vec<uint8_t>(s::index_vector::values)) out.push_back(x);
    else if (type == s::kUint16Vector)
      for (uint16_t x : v.vec<uint16_t>(s::index_vector::values)) out.push_back(x);
    else
      out = v.vec<int32_t>(s::index_vector::values);
    return out;
  };
  const std::vector<int32_t> segments =
      index_vector(s::dimension_metadata::array_segments_type, s::dimension_metadata::array_segments);
  const std::vector<int32_t> indices =
      index_vector(s::dimension_metadata::array_indices_type, s::dimension_metadata::array_indices);
  REQUIRE(static_cast<int64_t>(segments.size()) == rows + 1);
  REQUIRE(indices.size() * block == nonzeros.size());
  std::vector<int8_t> dense(rows * blocks * block, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int32_t k = segments[r]; k < segments[r + 1]; ++k)
      for (int32_t e = 0; e < block; ++e) dense[(r * blocks + indices[k]) * block + e] = nonzeros[k * block + e];
  return dense;
}

void settle(Module& model, const Shape& s) {
  model.train();
  NoGrad ng;
  std::mt19937 rng(5);
  for (int i = 0; i < 3; ++i) model.forward(Tensor::randn(s, rng));
  model.eval();
}

// quantize → conv(s2)+relu6 → depthwise → hard_swish → max pool → mean → dense
Int8Model small_model() {
  auto m = testing::small_conv_net();
  quantize(*m);
  settle(*m, {4, 16, 16, 3});
  return convert(*m, Tensor::zeros({1, 16, 16, 3}));
}

// A copy of `m` with its ops edited.
Int8Model with_ops(const Int8Model& m, const std::function<void(std::vector<Int8Op>&)>& edit) {
  std::vector<Int8Op> ops = m.ops();
  edit(ops);
  return Int8Model(m.values(), std::move(ops), m.input(), m.output());
}

// The tensor an op of the subgraph reads at `input`.
Table op_input(const Table& subgraph, size_t op, size_t input) {
  const Table o = subgraph.tables(s::subgraph::operators).at(op);
  return subgraph.tables(s::subgraph::tensors).at(o.vec<int32_t>(s::op::inputs).at(input));
}

}  // namespace

TEST_CASE("tflite: a small int8 model becomes the expected graph with TFLite's layouts and quantization") {
  Int8Model m = small_model();
  Tflite f(exporters::to_tflite(m, {.sparse = false, .native_activations = true}));
  const Table model = f.model();
  CHECK(model.scalar<uint32_t>(s::model::version) == 3u);
  const std::vector<Table> buffers = model.tables(s::model::buffers);
  CHECK(buffers[0].vec<uint8_t>(s::buffer::data).empty());
  CHECK(op_codes(model) == std::vector<int32_t>{s::kQuantize, s::kConv2d, s::kDepthwiseConv2d, s::kHardSwish,
                                                s::kMaxPool2d, s::kMean, s::kReshape, s::kFullyConnected,
                                                s::kDequantize});
  const std::vector<Table> subgraphs = model.tables(s::model::subgraphs);
  REQUIRE(subgraphs.size() == 1);
  const Table& g = subgraphs[0];
  const std::vector<Table> tensors = g.tables(s::subgraph::tensors);
  const Table in = tensors.at(g.vec<int32_t>(s::subgraph::inputs).at(0));
  const Table out = tensors.at(g.vec<int32_t>(s::subgraph::outputs).at(0));
  CHECK(in.str(s::tensor::name) == "input");
  CHECK(in.scalar<int8_t>(s::tensor::type) == s::kFloat32);
  CHECK(in.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 16, 16, 3});
  CHECK(out.str(s::tensor::name) == "output");
  CHECK(out.scalar<int8_t>(s::tensor::type) == s::kFloat32);
  CHECK(out.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 5});

  SUBCASE("conv: OHWI int8 weights, per-channel scales on dimension 0, int32 bias at s_in * s_w") {
    const Int8Op& op = m.ops()[1];
    const Table w = op_input(g, 1, 1), b = op_input(g, 1, 2), x = op_input(g, 1, 0);
    CHECK(w.scalar<int8_t>(s::tensor::type) == s::kInt8);
    CHECK(w.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{8, 3, 3, 3});
    const Table wq = w.table(s::tensor::quantization);
    CHECK(wq.scalar<int32_t>(s::quantization::quantized_dimension) == 0);
    const std::vector<float> scales = wq.vec<float>(s::quantization::scale);
    REQUIRE(scales.size() == 8);
    for (int c = 0; c < 8; ++c) CHECK(scales[c] == op.weight_scales.data<float>()[c]);
    CHECK(wq.vec<int64_t>(s::quantization::zero_point) == std::vector<int64_t>(8, 0));
    const std::vector<int8_t> data = buffer_of(model, w);
    REQUIRE(data.size() == 216);
    const int8_t* hwio = op.weights.data<int8_t>();  // [3, 3, 3, 8]
    int mismatches = 0;
    for (int o = 0; o < 8; ++o)
      for (int t = 0; t < 9; ++t)
        for (int c = 0; c < 3; ++c) mismatches += data[(o * 9 + t) * 3 + c] != hwio[(t * 3 + c) * 8 + o];
    CHECK(mismatches == 0);
    CHECK(b.scalar<int8_t>(s::tensor::type) == s::kInt32);
    const float s_in = x.table(s::tensor::quantization).vec<float>(s::quantization::scale).at(0);
    CHECK(s_in == m.values()[op.inputs[0]].quant.scale);
    const std::vector<float> bias_scales = b.table(s::tensor::quantization).vec<float>(s::quantization::scale);
    REQUIRE(bias_scales.size() == 8);
    for (int c = 0; c < 8; ++c) CHECK(bias_scales[c] == doctest::Approx(s_in * scales[c]).epsilon(1e-6));
    // The fused relu6 is TFLite's RELU6 or, when the grid already ends at 6, NONE.
    const Table opts = g.tables(s::subgraph::operators)[1].table(s::op::builtin_options);
    const int8_t act = opts.scalar<int8_t>(s::conv2d_options::fused_activation);
    CHECK((act == s::kActRelu6 || act == s::kActNone || act == s::kActRelu));
    CHECK(opts.scalar<int32_t>(s::conv2d_options::stride_w) == 2);
  }

  SUBCASE("depthwise: [1, kh, kw, C] weights, per-channel on dimension 3") {
    const Table w = op_input(g, 2, 1);
    CHECK(w.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 3, 3, 8});
    CHECK(w.table(s::tensor::quantization).scalar<int32_t>(s::quantization::quantized_dimension) == 3);
    const std::vector<int8_t> data = buffer_of(model, w);
    const int8_t* hwio = m.ops()[2].weights.data<int8_t>();
    CHECK(data == std::vector<int8_t>(hwio, hwio + 72));
    const Table opts = g.tables(s::subgraph::operators)[2].table(s::op::builtin_options);
    CHECK(opts.scalar<int32_t>(s::depthwise_options::depth_multiplier) == 1);
    CHECK(opts.scalar<int8_t>(s::depthwise_options::padding) == s::kSame);
  }

  SUBCASE("fully connected: [out, in] weights, one scale") {
    const Int8Op& op = m.ops()[6];
    REQUIRE(op.type == Int8OpType::fully_connected);
    const Table w = op_input(g, 7, 1);
    CHECK(w.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{5, 8});
    CHECK(w.table(s::tensor::quantization).vec<float>(s::quantization::scale) ==
          std::vector<float>{op.weight_scales.data<float>()[0]});
    const std::vector<int8_t> data = buffer_of(model, w);
    const int8_t* io = op.weights.data<int8_t>();  // [8, 5]
    int mismatches = 0;
    for (int o = 0; o < 5; ++o)
      for (int i = 0; i < 8; ++i) mismatches += data[o * 8 + i] != io[i * 5 + o];
    CHECK(mismatches == 0);
    CHECK(op_input(g, 7, 0).vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 8});  // reshaped
  }

  SUBCASE("weight buffers are 16-byte aligned in the file") {
    const Table w = op_input(g, 1, 1);
    const fb::Table* bt = fb::GetRoot<fb::Table>(f.bytes.data())
                              ->GetPointer<const fb::Vector<fb::Offset<fb::Table>>*>(s::vtable_offset(s::model::buffers))
                              ->Get(w.scalar<uint32_t>(s::tensor::buffer));
    const auto* data = bt->GetPointer<const fb::Vector<uint8_t>*>(s::vtable_offset(s::buffer::data));
    CHECK((data->data() - f.bytes.data()) % 16 == 0);
  }
}

TEST_CASE("tflite: lookup tables become CAST, ADD 128, GATHER from bonsai's own table") {
  Int8Model m = small_model();
  const Int8Op& lookup = m.ops().at(3);
  REQUIRE(lookup.type == Int8OpType::lookup);
  Tflite f(exporters::to_tflite(m, {.sparse = false}));
  const Table model = f.model();
  CHECK(op_codes(model) == std::vector<int32_t>{s::kQuantize, s::kConv2d, s::kDepthwiseConv2d, s::kCast, s::kAdd,
                                                s::kGather, s::kMaxPool2d, s::kMean, s::kReshape,
                                                s::kFullyConnected, s::kDequantize});
  const Table g = model.tables(s::model::subgraphs)[0];
  const std::vector<Table> ops = g.tables(s::subgraph::operators);
  const std::vector<Table> tensors = g.tables(s::subgraph::tensors);
  // CAST reads the depthwise output; ADD adds the int32 constant 128 to it.
  CHECK(ops[3].vec<int32_t>(s::op::inputs) == ops[2].vec<int32_t>(s::op::outputs));
  const Table wide = tensors.at(ops[3].vec<int32_t>(s::op::outputs).at(0));
  CHECK(wide.scalar<int8_t>(s::tensor::type) == s::kInt32);
  CHECK(ops[4].vec<int32_t>(s::op::inputs).at(0) == ops[3].vec<int32_t>(s::op::outputs).at(0));
  const Table offset = op_input(g, 4, 1);
  CHECK(offset.scalar<int8_t>(s::tensor::type) == s::kInt32);
  const std::vector<int8_t> offset_bytes = buffer_of(model, offset);
  REQUIRE(offset_bytes.size() == 4);
  int32_t offset_value = 0;
  std::memcpy(&offset_value, offset_bytes.data(), 4);
  CHECK(offset_value == 128);
  // GATHER: params are the table's 256 codes on the output grid, indices the ADD's result.
  const Table table = op_input(g, 5, 0);
  CHECK(table.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{256});
  CHECK(table.scalar<int8_t>(s::tensor::type) == s::kInt8);
  const int8_t* codes = lookup.table.data<int8_t>();
  CHECK(buffer_of(model, table) == std::vector<int8_t>(codes, codes + 256));
  const AffineQuant& q = m.values()[lookup.output].quant;
  CHECK(table.table(s::tensor::quantization).vec<float>(s::quantization::scale) == std::vector<float>{q.scale});
  CHECK(op_input(g, 5, 1).str(s::tensor::name) == tensors.at(ops[4].vec<int32_t>(s::op::outputs).at(0)).str(s::tensor::name));
  const Table y = tensors.at(ops[5].vec<int32_t>(s::op::outputs).at(0));
  CHECK(y.table(s::tensor::quantization).vec<int64_t>(s::quantization::zero_point) ==
        std::vector<int64_t>{q.zero_point});
  CHECK(ops[5].table(s::op::builtin_options).scalar<int32_t>(s::gather_options::axis) == 0);
  // A file converted before lookups recorded their function exports as well:
  // the table is all the GATHER needs.
  Int8Model old = with_ops(m, [](std::vector<Int8Op>& o) { o.at(3).function.clear(); });
  CHECK_NOTHROW(exporters::to_tflite(old));
}

namespace {

// conv0 (3 -> 16) -> relu -> conv1 (16 -> 64, 9216 weights, op 2) -> mean
// -> dense, converted: the model the sparse-weight tests prune.
Int8Model two_conv_model() {
  auto net = std::make_shared<Sequential>();
  net->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 16, .kernel = 3, .seed = 1}), "conv0");
  net->push(std::make_shared<Activation>(ActivationKind::relu), "act0");
  net->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 16, .out = 64, .kernel = 3, .seed = 2}), "conv1");
  net->push(std::make_shared<GlobalAvgPool>(), "gap");
  net->push(std::make_shared<Flatten>(), "flatten");
  net->push(std::make_shared<Dense>(DenseOptions{.in = 64, .out = 10, .seed = 3}), "dense");
  quantize(*net);
  settle(*net, {2, 8, 8, 3});
  return convert(*net, Tensor::zeros({1, 8, 8, 3}));
}

// conv1's weights as decoded from the sparse export f equal the dense
// export's bytes.
void check_decodes_to_dense(Tflite& f, const std::vector<uint8_t>& dense_bytes) {
  const Table model = f.model();
  const Table stored = op_input(model.tables(s::model::subgraphs)[0], 2, 0);
  const std::vector<int8_t> decoded = densify(stored, buffer_of(model, stored));
  Tflite d(dense_bytes);
  const Table dmodel = d.model();
  CHECK(decoded == buffer_of(dmodel, op_input(dmodel.tables(s::model::subgraphs)[0], 2, 1)));
}

}  // namespace

TEST_CASE("tflite: sparse weights are stored CSR with a DENSIFY op and decode to the dense weights") {
  const Int8Model dense_model = two_conv_model();
  // Prune conv1 (9216 weights) to 10%: every code whose index is not a
  // multiple of 10 becomes zero.
  Int8Model pruned = with_ops(dense_model, [](std::vector<Int8Op>& ops) {
    Int8Op& conv1 = ops.at(2);
    REQUIRE(conv1.weights.numel() == 9216);
    Tensor w = conv1.weights.clone();
    for (int64_t i = 0; i < w.numel(); ++i)
      if (i % 10) w.data<int8_t>()[i] = 0;
    conv1.weights = w;
  });
  const std::vector<uint8_t> dense_bytes = exporters::to_tflite(pruned, {.sparse = false});
  Tflite f(exporters::to_tflite(pruned, {.sparse = true}));
  CHECK(f.bytes.size() + 5000 < dense_bytes.size());
  const Table model = f.model();
  // Only conv1's weights are smaller sparse (conv0 and dense are tiny, dense).
  CHECK(op_codes(model) == std::vector<int32_t>{s::kQuantize, s::kConv2d, s::kDensify, s::kConv2d, s::kMean,
                                                s::kReshape, s::kFullyConnected, s::kDequantize});
  const Table g = model.tables(s::model::subgraphs)[0];
  const Table stored = op_input(g, 2, 0);
  const Table dense = op_input(g, 3, 1);
  const std::vector<Table> ops = g.tables(s::subgraph::operators);
  CHECK(ops[2].vec<int32_t>(s::op::outputs) == std::vector<int32_t>{ops[3].vec<int32_t>(s::op::inputs)[1]});
  CHECK(dense.scalar<uint32_t>(s::tensor::buffer) == 0u);  // computed by DENSIFY
  CHECK(dense.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{64, 3, 3, 16});
  CHECK(stored.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{64, 3, 3, 16});
  CHECK(dense.table(s::tensor::quantization).vec<float>(s::quantization::scale).size() == 64);
  check_decodes_to_dense(f, dense_bytes);
}

TEST_CASE("tflite: block-pruned weights are stored as blocks of 4 (smaller already at 50%)") {
  const Int8Model dense_model = two_conv_model();
  // conv1 (HWIO [3, 3, 16, 64]) pruned in blocks of 4 input channels (what
  // block pruning [4, 1] leaves): half the blocks zero, and every other
  // code of the kept blocks too, which a block keeps.
  Int8Model pruned = with_ops(dense_model, [](std::vector<Int8Op>& ops) {
    Int8Op& conv1 = ops.at(2);
    Tensor w = conv1.weights.clone();
    int8_t* v = w.data<int8_t>();
    for (int64_t i = 0; i < w.numel(); ++i) {
      const int64_t ci = (i / 64) % 16, co = i % 64;
      if ((ci / 4 + co) % 2 == 1 || (ci % 4 == 3 && co % 3 == 0)) v[i] = 0;
      else if (v[i] == 0) v[i] = 1;  // kept blocks hold nonzero codes (and a few zeros, above)
    }
    conv1.weights = w;
  });
  const std::vector<uint8_t> dense_bytes = exporters::to_tflite(pruned, {.sparse = false});
  Tflite f(exporters::to_tflite(pruned, {.sparse = true}));
  // 9216 codes, half in zero blocks: blocks (4 values + a 2-byte index
  // each, 577 row segments) beat dense and single-element CSR (a value and
  // an index each: larger than dense at 50%), by about 2 kB less the second
  // tensor's own quantization parameters.
  CHECK(f.bytes.size() + 1000 < dense_bytes.size());
  const Table model = f.model();
  CHECK(op_codes(model) == std::vector<int32_t>{s::kQuantize, s::kConv2d, s::kDensify, s::kConv2d, s::kMean,
                                                s::kReshape, s::kFullyConnected, s::kDequantize});
  const Table g = model.tables(s::model::subgraphs)[0];
  const Table stored = op_input(g, 2, 0);
  const Table sp = stored.table(s::tensor::sparsity);
  CHECK(sp.vec<int32_t>(s::sparsity::block_map) == std::vector<int32_t>{3});
  CHECK(sp.tables(s::sparsity::dim_metadata).size() == 5);
  CHECK(buffer_of(model, stored).size() == 9216 / 2);  // whole blocks, the zeros inside kept
  check_decodes_to_dense(f, dense_bytes);
}

TEST_CASE("tflite: what has no TFLite form is refused, naming the op") {
  Int8Model m = small_model();
  SUBCASE("a table without its function (files converted before it was recorded)") {
    Int8Model old = with_ops(m, [](std::vector<Int8Op>& ops) { ops.at(3).function.clear(); });
    const exporters::TfliteOptions native{.native_activations = true};
    CHECK_THROWS_WITH_AS(exporters::to_tflite(old, native), doctest::Contains("op 3 (lookup from 'act1')"), Error);
    CHECK_THROWS_WITH_AS(exporters::to_tflite(old, native), doctest::Contains("re-convert the model"), Error);
  }
  SUBCASE("a table of a function TFLite has no op for") {
    Int8Model odd = with_ops(m, [](std::vector<Int8Op>& ops) { ops.at(3).function = "gelu"; });
    CHECK_THROWS_WITH_AS(exporters::to_tflite(odd, {.native_activations = true}), doctest::Contains("'gelu'"), Error);
  }
  SUBCASE("a clamp that is no fused activation") {
    Int8Model odd = with_ops(m, [](std::vector<Int8Op>& ops) { ops.at(1).act_max = 3; });
    CHECK_THROWS_WITH_AS(exporters::to_tflite(odd), doctest::Contains("op 1 (conv from 'act0')"), Error);
  }
  SUBCASE("average pooling with padding that SAME cannot express") {
    Int8Model odd = with_ops(m, [](std::vector<Int8Op>& ops) {
      Int8Op& pool = ops.at(4);
      pool.type = Int8OpType::avg_pool;
      pool.geometry.pad_top = 1;  // 2x2 stride 2 on 8x8: SAME and VALID both pad nothing
    });
    CHECK_THROWS_WITH_AS(exporters::to_tflite(odd), doctest::Contains("op 4 (avg_pool"), Error);
  }
}

// ---- float export ------------------------------------------------------------------

namespace {

std::vector<float> floats_of(const Table& model, const Table& tensor) {
  const std::vector<int8_t> bytes = buffer_of(model, tensor);
  REQUIRE(bytes.size() % 4 == 0);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace

TEST_CASE("tflite float: the float graph becomes float32 TFLite ops with fused activations and no quantization") {
  auto net = testing::small_float_net();
  const exporters::FloatGraph fg = exporters::convert_float(*net, Tensor::zeros({1, 16, 16, 3}));
  Tflite f(exporters::to_tflite(fg));
  const Table model = f.model();
  CHECK(model.scalar<uint32_t>(s::model::version) == 3u);
  CHECK(model.str(s::model::description) == "bonsai float model");
  CHECK(op_codes(model) ==
        std::vector<int32_t>{s::kPadV2, s::kConv2d,                       // stem (symmetric padding) + BN + relu6
                             s::kConv2d, s::kDepthwiseConv2d, s::kHardSwish,  // expand, depthwise
                             s::kMean, s::kConv2d, s::kConv2d, s::kAdd, s::kMul, s::kMul,  // SE: hard_sigmoid = ADD, MUL
                             s::kConv2d, s::kAdd,                             // project, residual
                             s::kAveragePool2d, s::kResizeBilinear, s::kConcatenation, s::kLogistic,
                             s::kMaxPool2d, s::kReshape, s::kFullyConnected});
  const Table g = model.tables(s::model::subgraphs).at(0);
  const std::vector<Table> tensors = g.tables(s::subgraph::tensors);
  int float_tensors = 0, int32_tensors = 0;
  for (const Table& t : tensors) {
    CHECK_FALSE(t.has(s::tensor::quantization));
    CHECK_FALSE(t.has(s::tensor::sparsity));
    const int8_t type = t.scalar<int8_t>(s::tensor::type);
    CHECK((type == s::kFloat32 || type == s::kInt32));  // int32: shapes, sizes, axes, paddings
    float_tensors += type == s::kFloat32;
    int32_tensors += type == s::kInt32;
  }
  CHECK(float_tensors > 30);
  CHECK(int32_tensors == 4);  // paddings, mean axes, resize size, reshape shape
  const Table in = tensors.at(g.vec<int32_t>(s::subgraph::inputs).at(0));
  const Table out = tensors.at(g.vec<int32_t>(s::subgraph::outputs).at(0));
  CHECK(in.str(s::tensor::name) == "input");
  CHECK(in.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 16, 16, 3});
  CHECK(out.str(s::tensor::name) == "output");
  CHECK(out.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 5});
  const std::vector<Table> ops = g.tables(s::subgraph::operators);

  SUBCASE("stem: explicit padding, then a VALID conv with folded OHWI weights, float bias, fused RELU6") {
    const exporters::FloatOp& op = fg.ops[0];
    const Table paddings = op_input(g, 0, 1);
    const std::vector<int8_t> pb = buffer_of(model, paddings);
    std::vector<int32_t> pads(pb.size() / 4);
    std::memcpy(pads.data(), pb.data(), pb.size());
    CHECK(pads == std::vector<int32_t>{0, 0, 1, 0, 1, 0, 0, 0});  // top 1, bottom 0 suffices for 8 outputs
    CHECK(floats_of(model, op_input(g, 0, 2)) == std::vector<float>{0.0f});
    const Table w = op_input(g, 1, 1);
    CHECK(w.scalar<int8_t>(s::tensor::type) == s::kFloat32);
    CHECK(w.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{8, 3, 3, 3});
    const std::vector<float> data = floats_of(model, w);
    REQUIRE(data.size() == 216);
    const float* hwio = op.weights.data<float>();
    int mismatches = 0;
    for (int o = 0; o < 8; ++o)
      for (int t = 0; t < 9; ++t)
        for (int c = 0; c < 3; ++c) mismatches += data[(o * 9 + t) * 3 + c] != hwio[(t * 3 + c) * 8 + o];
    CHECK(mismatches == 0);
    CHECK(floats_of(model, op_input(g, 1, 2)) == std::vector<float>(op.bias.data<float>(), op.bias.data<float>() + 8));
    const Table opts = ops[1].table(s::op::builtin_options);
    CHECK(opts.scalar<int8_t>(s::conv2d_options::fused_activation) == s::kActRelu6);
    CHECK(opts.scalar<int8_t>(s::conv2d_options::padding) == s::kValid);
    CHECK(opts.scalar<int32_t>(s::conv2d_options::stride_h) == 2);
  }

  SUBCASE("depthwise: [1, kh, kw, C] float weights, SAME") {
    const Table w = op_input(g, 3, 1);
    CHECK(w.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 3, 3, 16});
    const float* hwio = fg.ops[2].weights.data<float>();
    CHECK(floats_of(model, w) == std::vector<float>(hwio, hwio + 144));
    CHECK(ops[3].table(s::op::builtin_options).scalar<int8_t>(s::depthwise_options::padding) == s::kSame);
  }

  SUBCASE("hard_sigmoid: ADD 3 with fused RELU6, then MUL 1/6; the residual ADD fuses RELU") {
    CHECK(floats_of(model, op_input(g, 8, 1)) == std::vector<float>{3.0f});
    CHECK(ops[8].table(s::op::builtin_options).scalar<int8_t>(s::add_options::fused_activation) == s::kActRelu6);
    CHECK(floats_of(model, op_input(g, 9, 1)) == std::vector<float>{1.0f / 6.0f});
    CHECK(ops[12].table(s::op::builtin_options).scalar<int8_t>(s::add_options::fused_activation) == s::kActRelu);
    // The SE multiply broadcasts the [1, 1, 1, 16] gate.
    CHECK(op_input(g, 10, 1).vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 1, 1, 16});
  }

  SUBCASE("resize: half-pixel centres, version 3; fully connected: [out, in] weights") {
    const std::vector<Table> codes = model.tables(s::model::operator_codes);
    const Table resize = codes.at(ops[14].scalar<uint32_t>(s::op::opcode_index));
    CHECK(resize.scalar<int32_t>(s::operator_code::version) == 3);
    CHECK(ops[14].table(s::op::builtin_options).scalar<int8_t>(s::resize_bilinear_options::half_pixel_centers) == 1);
    const Table w = op_input(g, 19, 1);
    CHECK(w.vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{5, 256});
    const std::vector<float> data = floats_of(model, w);
    const float* io = fg.ops.back().weights.data<float>();  // [256, 5]
    int mismatches = 0;
    for (int o = 0; o < 5; ++o)
      for (int i = 0; i < 256; ++i) mismatches += data[o * 256 + i] != io[i * 5 + o];
    CHECK(mismatches == 0);
    CHECK(op_input(g, 19, 0).vec<int32_t>(s::tensor::shape) == std::vector<int32_t>{1, 256});
  }
}
