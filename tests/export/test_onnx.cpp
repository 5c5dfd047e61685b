// Tests of the ONNX exporter (export/onnx.h) and its protobuf writer
// (export/protobuf.h): the writer's bytes against the wire format's known
// encodings; an exported model read back by a small wire-format reader here
// (field numbers from onnx/onnx.proto) — nodes in order, initializers'
// types, shapes and bytes (HWIO → OIHW), scales equal to the model's; and
// the errors for what ONNX export cannot express.
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <stdexcept>

#include "export/onnx.h"
#include "export/protobuf.h"
#include "tests/export/float_net.h"

using namespace bonsai;
using namespace bonsai::exporters;

namespace {

using Bytes = std::vector<uint8_t>;

// ---- a minimal wire-format reader -------------------------------------------------

struct Field {
  int number = 0;
  int wire_type = 0;
  uint64_t varint = 0;  // wire types 0 (and 5: the 4 bytes)
  Bytes bytes;          // wire type 2
};

uint64_t read_varint(const Bytes& b, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    REQUIRE(pos < b.size());
    REQUIRE(shift < 64);
    const uint8_t byte = b[pos++];
    v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return v;
  }
}

std::vector<Field> parse(const Bytes& b) {
  std::vector<Field> fields;
  size_t pos = 0;
  while (pos < b.size()) {
    const uint64_t key = read_varint(b, pos);
    Field f;
    f.number = static_cast<int>(key >> 3);
    f.wire_type = static_cast<int>(key & 7);
    if (f.wire_type == 0) {
      f.varint = read_varint(b, pos);
    } else if (f.wire_type == 2) {
      const uint64_t n = read_varint(b, pos);
      REQUIRE(pos + n <= b.size());
      f.bytes.assign(b.begin() + static_cast<std::ptrdiff_t>(pos), b.begin() + static_cast<std::ptrdiff_t>(pos + n));
      pos += n;
    } else if (f.wire_type == 5) {
      REQUIRE(pos + 4 <= b.size());
      for (int i = 0; i < 4; ++i) f.varint |= static_cast<uint64_t>(b[pos + i]) << (8 * i);
      pos += 4;
    } else {
      FAIL("unexpected wire type " << f.wire_type);
    }
    fields.push_back(std::move(f));
  }
  return fields;
}

// A parsed message: its fields by number, in order.
struct Msg {
  std::multimap<int, Field> f;
  explicit Msg(const Bytes& b) {
    for (Field& x : parse(b)) f.emplace(x.number, std::move(x));
  }
  std::vector<Msg> all(int n) const {
    std::vector<Msg> out;
    for (auto [it, end] = f.equal_range(n); it != end; ++it) out.emplace_back(it->second.bytes);
    return out;
  }
  std::vector<std::string> strings(int n) const {
    std::vector<std::string> out;
    for (auto [it, end] = f.equal_range(n); it != end; ++it) out.emplace_back(it->second.bytes.begin(), it->second.bytes.end());
    return out;
  }
  bool has(int n) const { return f.count(n) > 0; }
  Msg one(int n) const {
    REQUIRE(f.count(n) == 1);
    return Msg(f.find(n)->second.bytes);
  }
  std::string str(int n) const {
    REQUIRE(f.count(n) == 1);
    const Bytes& b = f.find(n)->second.bytes;
    return {b.begin(), b.end()};
  }
  int64_t i(int n) const {
    REQUIRE(f.count(n) == 1);
    return static_cast<int64_t>(f.find(n)->second.varint);
  }
  float fl(int n) const {
    REQUIRE(f.count(n) == 1);
    const auto u = static_cast<uint32_t>(f.find(n)->second.varint);
    float v;
    std::memcpy(&v, &u, 4);
    return v;
  }
  // Repeated int64: packed (one length-delimited field) or not.
  std::vector<int64_t> ints(int n) const {
    std::vector<int64_t> out;
    for (auto [it, end] = f.equal_range(n); it != end; ++it) {
      if (it->second.wire_type == 0) {
        out.push_back(static_cast<int64_t>(it->second.varint));
      } else {
        size_t pos = 0;
        while (pos < it->second.bytes.size()) out.push_back(static_cast<int64_t>(read_varint(it->second.bytes, pos)));
      }
    }
    return out;
  }
};

// onnx.proto field numbers (an independent copy of the exporter's).
constexpr int kModelIrVersion = 1, kModelProducer = 2, kModelGraph = 7, kModelOpset = 8;
constexpr int kOpsetVersion = 2;
constexpr int kGraphNode = 1, kGraphInitializer = 5, kGraphInput = 11, kGraphOutput = 12;
constexpr int kNodeInput = 1, kNodeOutput = 2, kNodeOpType = 4, kNodeAttribute = 5;
constexpr int kAttrName = 1, kAttrF = 2, kAttrI = 3, kAttrInts = 8;
constexpr int kTensorDims = 1, kTensorDataType = 2, kTensorName = 8, kTensorRaw = 9;
constexpr int kFloat = 1, kUint8 = 2, kInt8 = 3, kInt32 = 6;

template <typename T> std::vector<T> raw_as(const Msg& tensor) {
  const Bytes& b = tensor.f.find(kTensorRaw)->second.bytes;
  REQUIRE(b.size() % sizeof(T) == 0);
  std::vector<T> out(b.size() / sizeof(T));
  std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// ---- a small integer model built directly ------------------------------------------

quant::AffineQuant grid(float scale, int32_t zp) {
  return {.scale = scale, .zero_point = zp, .qmin = -128, .qmax = 127,
          .nudged_min = (-128 - zp) * scale, .nudged_max = (127 - zp) * scale};
}

// quantize [4, 4, 3] → conv 3x3 stride 2 (3 → 2, relu clamp) [2, 2, 2] →
// lookup hard_swish → mean [1, 1, 2] → fully_connected [3].
struct Small {
  std::vector<quant::Int8Value> values;
  std::vector<quant::Int8Op> ops;
  quant::Int8Value input{"input", {4, 4, 3}, {}};
};

Small small_model() {
  Small s;
  s.values = {{"in_q", {4, 4, 3}, grid(0.02f, -5)},
              {"conv_q", {2, 2, 2}, grid(0.05f, -20)},
              {"act_q", {2, 2, 2}, grid(0.04f, -100)},
              {"mean_q", {1, 1, 2}, grid(0.03f, -90)},
              {"fc_q", {3}, grid(0.1f, 3)}};
  quant::Int8Op q;
  q.type = quant::Int8OpType::quantize;
  q.source = "in";
  q.output = 0;

  quant::Int8Op conv;
  conv.type = quant::Int8OpType::conv;
  conv.source = "conv";
  conv.inputs = {0};
  conv.output = 1;
  conv.geometry = {.kh = 3, .kw = 3, .stride_h = 2, .stride_w = 2};
  conv.act_min = -20;  // relu: the output's zero point
  conv.weights = Tensor::empty({3, 3, 3, 2}, DType::s8);
  for (int64_t i = 0; i < 54; ++i) conv.weights.data<int8_t>()[i] = static_cast<int8_t>(i * 5 - 127);
  conv.weight_scales = Tensor::from({2}, {0.01f, 0.003f});
  conv.bias = Tensor::empty({2}, DType::s32);
  conv.bias.data<int32_t>()[0] = -300;
  conv.bias.data<int32_t>()[1] = 70000;

  quant::Int8Op act;
  act.type = quant::Int8OpType::lookup;
  act.source = "act";
  act.inputs = {1};
  act.output = 2;
  act.function = "hard_swish";
  act.table = Tensor::zeros({256}, DType::s8);

  quant::Int8Op mean;
  mean.type = quant::Int8OpType::mean;
  mean.source = "gap";
  mean.inputs = {2};
  mean.output = 3;

  quant::Int8Op fc;
  fc.type = quant::Int8OpType::fully_connected;
  fc.source = "dense";
  fc.inputs = {3};
  fc.output = 4;
  fc.weights = Tensor::empty({2, 3}, DType::s8);
  for (int64_t i = 0; i < 6; ++i) fc.weights.data<int8_t>()[i] = static_cast<int8_t>(10 * i - 20);
  fc.weight_scales = Tensor::from({1}, {0.02f});
  fc.bias = Tensor::empty({3}, DType::s32);
  for (int64_t i = 0; i < 3; ++i) fc.bias.data<int32_t>()[i] = static_cast<int32_t>(100 * i - 7);

  s.ops = {q, conv, act, mean, fc};
  return s;
}

quant::Int8Model build(const Small& s) { return quant::Int8Model(s.values, s.ops, s.input, 4); }

std::string attr_names(const Msg& node) {
  std::string out;
  for (const Msg& a : node.all(kNodeAttribute)) out += a.str(kAttrName) + " ";
  return out;
}

Msg attribute(const Msg& node, const std::string& name) {
  for (const Msg& a : node.all(kNodeAttribute))
    if (a.str(kAttrName) == name) return a;
  FAIL("no attribute " << name);
  return Msg({});
}

}  // namespace

TEST_CASE("onnx protobuf writer: varints: edge cases and known encodings") {
  auto varint = [](uint64_t v) {
    Bytes b;
    protobuf::append_varint(b, v);
    return b;
  };
  CHECK(varint(0) == Bytes{0x00});
  CHECK(varint(1) == Bytes{0x01});
  CHECK(varint(127) == Bytes{0x7f});
  CHECK(varint(128) == Bytes{0x80, 0x01});
  CHECK(varint(150) == Bytes{0x96, 0x01});  // the protobuf documentation's example
  CHECK(varint(300) == Bytes{0xac, 0x02});
  CHECK(varint(16383) == Bytes{0xff, 0x7f});
  CHECK(varint(16384) == Bytes{0x80, 0x80, 0x01});
  CHECK(varint(0xffffffffu) == Bytes{0xff, 0xff, 0xff, 0xff, 0x0f});
  CHECK(varint(~uint64_t{0}) == Bytes{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01});
  // Every value round-trips through the reader, at each length boundary.
  for (int bits = 0; bits < 64; ++bits) {
    for (uint64_t v : {(uint64_t{1} << bits) - 1, uint64_t{1} << bits}) {
      const Bytes b = varint(v);
      size_t pos = 0;
      CHECK(read_varint(b, pos) == v);
      CHECK(pos == b.size());
      CHECK(b.size() == static_cast<size_t>(v == 0 ? 1 : (64 - __builtin_clzll(v) + 6) / 7));
    }
  }
}

TEST_CASE("onnx protobuf writer: fields: keys, negatives, strings, floats, nesting, packed") {
  protobuf::Message a;
  a.add_int(1, 150);
  CHECK(a.bytes() == Bytes{0x08, 0x96, 0x01});

  protobuf::Message neg;  // int64 -1: sign-extended to ten bytes
  neg.add_int(3, -1);
  CHECK(neg.bytes() == Bytes{0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01});

  protobuf::Message s;
  s.add_string(2, "testing");
  CHECK(s.bytes() == Bytes{0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g'});

  protobuf::Message f;
  f.add_float(2, 1.0f);
  CHECK(f.bytes() == Bytes{0x15, 0x00, 0x00, 0x80, 0x3f});

  protobuf::Message nested;
  nested.add_message(3, a);
  CHECK(nested.bytes() == Bytes{0x1a, 0x03, 0x08, 0x96, 0x01});

  protobuf::Message packed;
  packed.add_packed_ints(4, {3, 270, 86942});
  CHECK(packed.bytes() == Bytes{0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05});

  protobuf::Message floats;
  floats.add_packed_floats(7, {1.0f, -2.0f});
  CHECK(floats.bytes() == Bytes{0x3a, 0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0});

  protobuf::Message empty;
  empty.add_bytes(9, nullptr, 0);
  CHECK(empty.bytes() == Bytes{0x4a, 0x00});

  protobuf::Message big;  // field numbers past 15 take a two-byte key
  big.add_int(20, 7);
  CHECK(big.bytes() == Bytes{0xa0, 0x01, 0x07});

  protobuf::Message bad;
  CHECK_THROWS_WITH_AS(bad.add_int(0, 1), doctest::Contains("field number"), std::exception);
}

TEST_CASE("onnx export: a small model reads back as the expected QDQ graph") {
  const Small s = small_model();
  const quant::Int8Model m = build(s);
  const Msg model(to_onnx(m));
  CHECK(model.i(kModelIrVersion) == 8);
  CHECK(model.str(kModelProducer) == "bonsai");
  const Msg opset = model.one(kModelOpset);
  CHECK(opset.i(kOpsetVersion) == 17);
  const Msg graph = model.one(kModelGraph);

  // Nodes in order.
  std::vector<std::string> types;
  std::map<std::string, Msg> node_by_output;
  for (const Msg& n : graph.all(kGraphNode)) {
    types.push_back(n.str(kNodeOpType));
    for (const std::string& o : n.strings(kNodeOutput)) node_by_output.emplace(o, n);
  }
  const std::vector<std::string> expected{
      "QuantizeLinear",                                                                        // op0
      "DequantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv", "Relu", "QuantizeLinear",  // op1
      "DequantizeLinear", "HardSwish", "QuantizeLinear",                                       // op2
      "DequantizeLinear", "GlobalAveragePool", "QuantizeLinear",                               // op3
      "Flatten", "DequantizeLinear", "DequantizeLinear", "DequantizeLinear", "Gemm", "QuantizeLinear",  // op4
      "DequantizeLinear"};                                                                     // output
  std::string got;
  for (const std::string& t : types) got += t + " ";
  CAPTURE(got);
  CHECK(types == expected);

  // Input and output: float, symbolic batch, NCHW / [N, K].
  const Msg in = graph.one(kGraphInput);
  CHECK(in.str(1) == "input");
  const std::vector<Msg> in_dims = in.one(2).one(1).one(2).all(1);
  REQUIRE(in_dims.size() == 4);
  CHECK(in_dims[0].str(2) == "batch");
  CHECK(in_dims[1].i(1) == 3);
  CHECK(in_dims[2].i(1) == 4);
  CHECK(in.one(2).one(1).i(1) == kFloat);
  const Msg out = graph.one(kGraphOutput);
  CHECK(out.str(1) == "output");
  const std::vector<Msg> out_dims = out.one(2).one(1).one(2).all(1);
  REQUIRE(out_dims.size() == 2);
  CHECK(out_dims[1].i(1) == 3);

  std::map<std::string, Msg> init;
  for (const Msg& t : graph.all(kGraphInitializer)) init.emplace(t.str(kTensorName), t);

  // Conv weights: int8 OIHW, transposed from HWIO.
  const Msg& w = init.at("op1.weights");
  CHECK(w.i(kTensorDataType) == kInt8);
  CHECK(w.ints(kTensorDims) == std::vector<int64_t>{2, 3, 3, 3});
  const std::vector<int8_t> oihw = raw_as<int8_t>(w);
  const int8_t* hwio = s.ops[1].weights.data<int8_t>();
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 3; ++i)
      for (int y = 0; y < 3; ++y)
        for (int x = 0; x < 3; ++x) CHECK(oihw[((o * 3 + i) * 3 + y) * 3 + x] == hwio[((y * 3 + x) * 3 + i) * 2 + o]);
  // Per-channel scales equal the model's; zero points int8 zeros, axis 0.
  CHECK(init.at("op1.weights.scale").ints(kTensorDims) == std::vector<int64_t>{2});
  CHECK(raw_as<float>(init.at("op1.weights.scale")) == std::vector<float>{0.01f, 0.003f});
  CHECK(init.at("op1.weights.zero_point").i(kTensorDataType) == kInt8);
  CHECK(raw_as<int8_t>(init.at("op1.weights.zero_point")) == std::vector<int8_t>{0, 0});
  CHECK(attribute(node_by_output.at("op1.weights.dq"), "axis").i(kAttrI) == 0);
  // Bias: int32 at s_in · s_w[c], zero points int32.
  CHECK(init.at("op1.bias").i(kTensorDataType) == kInt32);
  CHECK(raw_as<int32_t>(init.at("op1.bias")) == std::vector<int32_t>{-300, 70000});
  CHECK(raw_as<float>(init.at("op1.bias.scale")) == std::vector<float>{0.02f * 0.01f, 0.02f * 0.003f});
  CHECK(init.at("op1.bias.zero_point").i(kTensorDataType) == kInt32);
  // Geometry: TF SAME for 4 → 2 with a 3-window and stride 2 pads one row
  // and column after.
  const Msg& conv = node_by_output.at("op1.Conv");
  CHECK(attr_names(conv) == "kernel_shape strides dilations pads group ");
  CHECK(attribute(conv, "pads").ints(kAttrInts) == std::vector<int64_t>{0, 0, 1, 1});
  CHECK(attribute(conv, "strides").ints(kAttrInts) == std::vector<int64_t>{2, 2});
  CHECK(attribute(conv, "group").i(kAttrI) == 1);

  // Activation grids: uint8, zero point + 128, the model's scales.
  for (const auto& [name_, v] : std::vector<std::pair<std::string, int>>{{"in_q", 0}, {"conv_q", 1}, {"fc_q", 4}}) {
    const std::string name = name_;  // clang: no structured bindings in CAPTURE's lambda
    CAPTURE(name);
    CHECK(init.at(name + ".zero_point").i(kTensorDataType) == kUint8);
    CHECK(raw_as<uint8_t>(init.at(name + ".zero_point"))[0] == s.values[v].quant.zero_point + 128);
    CHECK(raw_as<float>(init.at(name + ".scale"))[0] == s.values[v].quant.scale);
  }
  CHECK(node_by_output.at("in_q").strings(kNodeInput)[0] == "input");

  // Hard sigmoid's form is checked by the lookup test; the dense layer:
  // per-tensor int8 [in, out], no axis; bias at s_in · s_w.
  CHECK(init.at("op4.weights").ints(kTensorDims) == std::vector<int64_t>{2, 3});
  CHECK(raw_as<int8_t>(init.at("op4.weights")) == std::vector<int8_t>{-20, -10, 0, 10, 20, 30});
  CHECK(init.at("op4.weights.scale").ints(kTensorDims).empty());
  CHECK(attr_names(node_by_output.at("op4.weights.dq")).empty());
  CHECK(raw_as<float>(init.at("op4.bias.scale")) == std::vector<float>{0.03f * 0.02f});
  CHECK(node_by_output.at("op4.flat").strings(kNodeInput)[0] == "mean_q");
}

TEST_CASE("onnx export: table functions map to ONNX ops") {
  for (const auto& [function_, op] : std::vector<std::pair<std::string, std::string>>{
           {"relu", "Relu"}, {"relu6", "Clip"}, {"sigmoid", "Sigmoid"}, {"hard_sigmoid", "HardSigmoid"}}) {
    const std::string function = function_;  // clang: no structured bindings in CAPTURE's lambda
    CAPTURE(function);
    Small s = small_model();
    s.ops[2].function = function;
    const Msg graph = Msg(to_onnx(build(s))).one(kModelGraph);
    bool found = false;
    for (const Msg& n : graph.all(kGraphNode)) {
      if (n.str(kNodeOpType) != op || n.strings(kNodeOutput)[0] != "op2." + op) continue;
      found = true;
      if (op == "HardSigmoid") {
        CHECK(attribute(n, "alpha").fl(kAttrF) == doctest::Approx(1.0 / 6.0));
        CHECK(attribute(n, "beta").fl(kAttrF) == 0.5f);
      }
    }
    CHECK(found);
  }
}

TEST_CASE("onnx export: errors name the op") {
  Small s = small_model();
  s.ops[2].function = "";  // converted before the function was recorded
  CHECK_THROWS_WITH_AS(to_onnx(build(s)), doctest::Contains("op 2 (lookup from act)"), std::exception);
  CHECK_THROWS_WITH_AS(to_onnx(build(s)), doctest::Contains("re-convert"), std::exception);
  s.ops[2].function = "tanh";
  CHECK_THROWS_WITH_AS(to_onnx(build(s)), doctest::Contains("no ONNX op for table function 'tanh'"), std::exception);
}

TEST_CASE("onnx float export: the float graph reads back as float NCHW ops with no quantization") {
  auto net = testing::small_float_net();
  const FloatGraph fg = convert_float(*net, Tensor::zeros({1, 16, 16, 3}));
  const Msg model(to_onnx(fg));
  CHECK(model.i(kModelIrVersion) == 8);
  CHECK(model.one(kModelOpset).i(kOpsetVersion) == 17);
  const Msg graph = model.one(kModelGraph);
  std::vector<std::string> types;
  std::vector<Msg> nodes = graph.all(kGraphNode);
  for (const Msg& n : nodes) types.push_back(n.str(kNodeOpType));
  const std::vector<std::string> expected{
      "Conv", "Clip", "Conv", "Clip", "Conv", "HardSwish",                    // stem, expand, depthwise
      "GlobalAveragePool", "Conv", "Relu", "Conv", "HardSigmoid", "Mul",       // SE
      "Conv", "Add", "Relu",                                                   // project, residual
      "AveragePool", "Shape", "Concat", "Resize", "Concat", "Sigmoid",         // pyramid
      "MaxPool", "Transpose", "Reshape", "Gemm"};                              // pool, flatten (NHWC order), dense
  std::string got;
  for (const std::string& s : types) got += s + " ";
  CAPTURE(got);
  REQUIRE(types == expected);
  CHECK(nodes.back().strings(kNodeOutput) == std::vector<std::string>{"output"});
  CHECK(nodes.front().strings(kNodeInput).at(0) == "input");

  std::map<std::string, Msg> init;
  for (const Msg& t : graph.all(kGraphInitializer)) {
    const int64_t type = t.i(kTensorDataType);
    CHECK((type == kFloat || type == 7));  // float, or int64 shapes
    init.emplace(t.str(kTensorName), t);
  }
  SUBCASE("stem conv: folded float OIHW weights, float bias, symmetric pads, Clip(0, 6)") {
    const Msg& conv = nodes[0];
    const std::vector<std::string> ins = conv.strings(kNodeInput);
    REQUIRE(ins.size() == 3);
    const Msg& w = init.at(ins[1]);
    CHECK(w.ints(kTensorDims) == std::vector<int64_t>{8, 3, 3, 3});
    const std::vector<float> data = raw_as<float>(w);
    const float* hwio = fg.ops[0].weights.data<float>();  // [3, 3, 3, 8]
    int mismatches = 0;
    for (int o = 0; o < 8; ++o)
      for (int i = 0; i < 3; ++i)
        for (int y = 0; y < 3; ++y)
          for (int x = 0; x < 3; ++x) mismatches += data[((o * 3 + i) * 3 + y) * 3 + x] != hwio[((y * 3 + x) * 3 + i) * 8 + o];
    CHECK(mismatches == 0);
    CHECK(raw_as<float>(init.at(ins[2])) == std::vector<float>(fg.ops[0].bias.data<float>(), fg.ops[0].bias.data<float>() + 8));
    CHECK(attribute(conv, "pads").ints(kAttrInts) == std::vector<int64_t>{1, 1, 1, 1});
    CHECK(attribute(conv, "strides").ints(kAttrInts) == std::vector<int64_t>{2, 2});
    const std::vector<std::string> clip = nodes[1].strings(kNodeInput);
    CHECK(raw_as<float>(init.at(clip.at(1))) == std::vector<float>{0.0f});
    CHECK(raw_as<float>(init.at(clip.at(2))) == std::vector<float>{6.0f});
  }
  SUBCASE("depthwise: group = channels; the SE gate as HardSigmoid(1/6, 0.5)") {
    CHECK(attribute(nodes[4], "group").i(kAttrI) == 16);
    CHECK(attribute(nodes[10], "alpha").fl(kAttrF) == doctest::Approx(1.0 / 6));
    CHECK(attribute(nodes[10], "beta").fl(kAttrF) == 0.5f);
    CHECK(attribute(nodes[15], "count_include_pad").i(kAttrI) == 0);
  }
  SUBCASE("flatten: to NHWC, then Reshape [0, 256] (batch kept); Gemm with [in, out] weights") {
    CHECK(attribute(nodes[22], "perm").ints(kAttrInts) == std::vector<int64_t>{0, 2, 3, 1});
    CHECK(raw_as<int64_t>(init.at(nodes[23].strings(kNodeInput).at(1))) == std::vector<int64_t>{0, 256});
    const Msg& w = init.at(nodes[24].strings(kNodeInput).at(1));
    CHECK(w.ints(kTensorDims) == std::vector<int64_t>{256, 5});
    CHECK(raw_as<float>(w) == std::vector<float>(fg.ops.back().weights.data<float>(),
                                                 fg.ops.back().weights.data<float>() + 1280));
  }
}
