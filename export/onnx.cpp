#include "export/onnx.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "core/check.h"
#include "core/io/atomic_file.h"
#include "export/protobuf.h"

namespace bonsai::exporters {

namespace {

static_assert(std::endian::native == std::endian::little,
              "raw_data is little-endian: the exporter copies tensors byte for byte");

// Field numbers and enums of onnx/onnx.proto (proto2, package onnx).
namespace field {
namespace model {
constexpr int ir_version = 1, producer_name = 2, graph = 7, opset_import = 8;
}
namespace opset {
constexpr int domain = 1, version = 2;
}
namespace graph {
constexpr int node = 1, name = 2, initializer = 5, input = 11, output = 12;
}
namespace node {
constexpr int input = 1, output = 2, name = 3, op_type = 4, attribute = 5, doc_string = 6;
}
namespace attribute {
constexpr int name = 1, f = 2, i = 3, s = 4, ints = 8, type = 20;
}
namespace tensor {
constexpr int dims = 1, data_type = 2, name = 8, raw_data = 9;
}
namespace value_info {
constexpr int name = 1, type = 2;
}
namespace type_proto {
constexpr int tensor_type = 1;        // TypeProto
constexpr int elem_type = 1, shape = 2;  // TypeProto.Tensor
constexpr int dim = 1;                // TensorShapeProto
constexpr int dim_value = 1, dim_param = 2;  // TensorShapeProto.Dimension
}  // namespace type_proto
}  // namespace field

// AttributeProto.AttributeType
enum class AttributeType : int64_t { float_ = 1, int_ = 2, string = 3, ints = 7 };
// TensorProto.DataType
enum class DataType : int64_t { float32 = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7 };

// IR 8 / opset 17: the newest python3-onnx 1.12's checker knows (HardSwish
// needs 14, Shape's start/end 15).
constexpr int64_t kIrVersion = 8;
constexpr int64_t kOpsetVersion = 17;

// Activations are exported as uint8, code + 128 with zero point + 128: the
// same reals. ORT's x86 integer kernels take uint8 activations (with int8
// weights); it rewrites an int8 Q→DQ pair to uint8 itself only where the
// QuantizeLinear has a single reader, and a value read twice (a residual's
// skip) would leave int8 and uint8 meeting at a Conv or Add, which then stay
// float.
constexpr int32_t kActivationOffset = 128;

using protobuf::Message;
using quant::Int8Model;
using quant::Int8Op;
using quant::Int8OpType;
using quant::Int8Value;

Message attr_int(const std::string& name, int64_t v) {
  Message a;
  a.add_string(field::attribute::name, name);
  a.add_int(field::attribute::type, static_cast<int64_t>(AttributeType::int_));
  a.add_int(field::attribute::i, v);
  return a;
}

Message attr_float(const std::string& name, float v) {
  Message a;
  a.add_string(field::attribute::name, name);
  a.add_int(field::attribute::type, static_cast<int64_t>(AttributeType::float_));
  a.add_float(field::attribute::f, v);
  return a;
}

Message attr_string(const std::string& name, const std::string& v) {
  Message a;
  a.add_string(field::attribute::name, name);
  a.add_int(field::attribute::type, static_cast<int64_t>(AttributeType::string));
  a.add_string(field::attribute::s, v);
  return a;
}

Message attr_ints(const std::string& name, const std::vector<int64_t>& v) {
  Message a;
  a.add_string(field::attribute::name, name);
  a.add_int(field::attribute::type, static_cast<int64_t>(AttributeType::ints));
  a.add_packed_ints(field::attribute::ints, v);
  return a;
}

// A float tensor of shape [batch, dims...] ("batch" symbolic).
Message value_info(const std::string& name, const std::vector<int64_t>& dims) {
  Message shape;
  Message batch;
  batch.add_string(field::type_proto::dim_param, "batch");
  shape.add_message(field::type_proto::dim, batch);
  for (int64_t d : dims) {
    Message dim;
    dim.add_int(field::type_proto::dim_value, d);
    shape.add_message(field::type_proto::dim, dim);
  }
  Message tensor_type;
  tensor_type.add_int(field::type_proto::elem_type, static_cast<int64_t>(DataType::float32));
  tensor_type.add_message(field::type_proto::shape, shape);
  Message type;
  type.add_message(field::type_proto::tensor_type, tensor_type);
  Message v;
  v.add_string(field::value_info::name, name);
  v.add_message(field::value_info::type, type);
  return v;
}

// A value's per-image shape in ONNX's layout: [H, W, C] → [C, H, W]; other
// ranks ([C], the fully connected outputs) unchanged.
std::vector<int64_t> onnx_dims(const std::vector<int64_t>& shape) {
  if (shape.size() == 3) return {shape[2], shape[0], shape[1]};
  return shape;
}

int64_t numel_of(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

// HWIO [kh, kw, cin/g, cout] → ONNX's OIHW [cout, cin/g, kh, kw].
template <typename T>
std::vector<T> hwio_to_oihw(const T* src, int64_t kh, int64_t kw, int64_t cin_g, int64_t cout) {
  std::vector<T> w(static_cast<size_t>(kh * kw * cin_g * cout));
  for (int64_t y = 0; y < kh; ++y)
    for (int64_t x = 0; x < kw; ++x)
      for (int64_t i = 0; i < cin_g; ++i)
        for (int64_t c = 0; c < cout; ++c) w[((c * cin_g + i) * kh + y) * kw + x] = src[((y * kw + x) * cin_g + i) * cout + c];
  return w;
}

// What both exporters write a graph with: nodes, initializers, and the
// model around the graph. where_ names the op being exported (for errors),
// doc_ becomes the nodes' doc strings and prefix_ starts its tensor names.
class GraphBuilder {
 protected:
  // The graph's name and its float input [batch, ...dims].
  void begin(const std::vector<int64_t>& input_dims) {
    graph_.add_string(field::graph::name, "bonsai");
    graph_.add_message(field::graph::input, value_info("input", input_dims));
  }

  // The model: the graph with its float output [batch, ...dims], at opset kOpsetVersion.
  std::vector<uint8_t> finish(const std::vector<int64_t>& output_dims) {
    graph_.add_message(field::graph::output, value_info("output", output_dims));
    Message opset;
    opset.add_string(field::opset::domain, "");
    opset.add_int(field::opset::version, kOpsetVersion);
    Message model;
    model.add_int(field::model::ir_version, kIrVersion);
    model.add_string(field::model::producer_name, "bonsai");
    model.add_message(field::model::graph, graph_);
    model.add_message(field::model::opset_import, opset);
    return model.release();
  }

  std::string node(const std::string& op_type, const std::vector<std::string>& inputs,
                   const std::vector<std::string>& outputs, const std::vector<Message>& attrs = {},
                   const std::string& name = "") {
    Message n;
    for (const std::string& s : inputs) n.add_string(field::node::input, s);
    for (const std::string& s : outputs) n.add_string(field::node::output, s);
    n.add_string(field::node::name, name.empty() ? outputs.at(0) : name);
    n.add_string(field::node::op_type, op_type);
    for (const Message& a : attrs) n.add_message(field::node::attribute, a);
    if (!doc_.empty()) n.add_string(field::node::doc_string, doc_);
    graph_.add_message(field::graph::node, n);
    return outputs.at(0);
  }

  void initializer(const std::string& name, DataType type, const std::vector<int64_t>& dims, const void* data,
                   size_t bytes) {
    Message t;
    for (int64_t d : dims) t.add_int(field::tensor::dims, d);
    t.add_int(field::tensor::data_type, static_cast<int64_t>(type));
    t.add_string(field::tensor::name, name);
    t.add_bytes(field::tensor::raw_data, data, bytes);
    graph_.add_message(field::graph::initializer, t);
  }

  // A float32 initializer of the given dims, or a scalar one.
  std::string constant(const std::string& name, const std::vector<int64_t>& dims, const float* data) {
    initializer(name, DataType::float32, dims, data, static_cast<size_t>(numel_of(dims)) * sizeof(float));
    return name;
  }
  std::string scalar(const std::string& name, float v) { return constant(name, {}, &v); }

  Message graph_;
  std::string where_, doc_, prefix_;
};

// Builds the QDQ graph op by op. Every Int8Value v becomes a uint8 tensor
// (the output of a QuantizeLinear on v's grid, named after v); an op reads
// its inputs through DequantizeLinear nodes of their own (one per reader,
// the form ORT's QDQ fusion matches), computes in float and quantizes to
// its output's grid.
class Exporter : GraphBuilder {
 public:
  explicit Exporter(const Int8Model& m) : m_(m) {
    // Tensor names: the value names where unique (they name the quantizers,
    // so ONNX tensors and bonsai's layer-by-layer comparison line up).
    std::set<std::string> used{"input", "output"};
    for (size_t v = 0; v < m.values().size(); ++v) {
      std::string name = m.values()[v].name;
      if (name.empty() || used.count(name)) name.append("#").append(std::to_string(v));
      used.insert(name);
      names_.push_back(name);
    }
    dq_count_.assign(m.values().size(), 0);
    grid_ready_.assign(m.values().size(), false);
  }

  std::vector<uint8_t> run() {
    begin(onnx_dims(m_.input().shape));
    for (size_t i = 0; i < m_.ops().size(); ++i) {
      const Int8Op& o = m_.ops()[i];
      doc_ = "op " + std::to_string(i) + " (" + quant::op_type_name(o.type) + " from " + o.source + ")";
      where_ = "ONNX export: " + doc_;
      prefix_ = "op" + std::to_string(i);
      op(o);
    }
    const int out = m_.output();
    doc_ = "the model output, dequantized";
    node("DequantizeLinear", {names_[out], scale_of(out), zero_point_of(out)}, {"output"}, {}, "output");
    return finish(onnx_dims(m_.values()[out].shape));
  }

 private:
  void op(const Int8Op& o) {
    switch (o.type) {
      case Int8OpType::quantize:
        BONSAI_CHECK(o.inputs.empty(), where_ + ": quantize reads the float input only");
        return quantize_to(o.output, "input");
      case Int8OpType::conv: return conv(o);
      case Int8OpType::fully_connected: return fully_connected(o);
      case Int8OpType::add:
      case Int8OpType::mul: {
        const std::string y = float_op(o.type == Int8OpType::add ? "Add" : "Mul",
                                       {dequantized(o.inputs.at(0)), dequantized(o.inputs.at(1))});
        return quantize_to(o.output, clamped(o, y));
      }
      case Int8OpType::lookup: return lookup(o);
      case Int8OpType::mean: return quantize_to(o.output, float_op("GlobalAveragePool", {dequantized(o.inputs.at(0))}));
      case Int8OpType::avg_pool:
      case Int8OpType::max_pool: return pool(o);
      case Int8OpType::resize: return resize(o);
      case Int8OpType::concat: {
        std::vector<std::string> ins;
        for (int v : o.inputs) ins.push_back(dequantized(v));
        return quantize_to(o.output, float_op("Concat", ins, {attr_int("axis", 1)}));
      }
      case Int8OpType::requantize: return quantize_to(o.output, dequantized(o.inputs.at(0)));
    }
    BONSAI_CHECK(false, where_ + ": no ONNX form for this op type");
  }

  // Conv on the dequantized input, int8 OIHW weights with per-channel
  // scales (axis 0), int32 bias at s_in·s_w[c]; explicit pads.
  void conv(const Int8Op& o) {
    const quant::Int8Geometry& g = o.geometry;
    const int in = o.inputs.at(0);
    const auto& xs = m_.values()[in].shape;    // [H, W, Cin]
    const auto& ys = m_.values()[o.output].shape;  // [OH, OW, Cout]
    BONSAI_CHECK(xs.size() == 3 && ys.size() == 3, where_ + ": needs [H, W, C] values");
    const int64_t cout = ys[2], cin_g = xs[2] / g.groups, kh = g.kh, kw = g.kw;
    BONSAI_CHECK(o.weights.shape() == (Shape{kh, kw, cin_g, cout}) && o.weight_scales.numel() == cout &&
                     o.bias.numel() == cout,
                 where_ + ": weights must be [kh, kw, cin/groups, cout] with cout scales and biases");
    const std::vector<int8_t> w = hwio_to_oihw(o.weights.data<int8_t>(), kh, kw, cin_g, cout);
    const std::vector<float> w_scale(o.weight_scales.data<float>(), o.weight_scales.data<float>() + cout);
    const std::string weights = dequantized_constant(prefix_ + ".weights", DataType::int8, {cout, cin_g, kh, kw},
                                                     w.data(), w_scale, true);
    const std::string bias = dequantized_bias(o, in, cout, w_scale);
    const std::vector<int64_t> pads = padding(g.kh, g.kw, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w,
                                              g.pad_top, g.pad_left, xs, ys);
    const std::string y = float_op("Conv", {dequantized(in), weights, bias},
                                   {attr_ints("kernel_shape", {kh, kw}), attr_ints("strides", {g.stride_h, g.stride_w}),
                                    attr_ints("dilations", {g.dilation_h, g.dilation_w}), attr_ints("pads", pads),
                                    attr_int("group", g.groups)});
    quantize_to(o.output, clamped(o, y));
  }

  // Flatten (in bonsai's [H, W, C] order) → Gemm with int8 weights [in,
  // out] (per tensor) and an int32 bias.
  void fully_connected(const Int8Op& o) {
    const int in = o.inputs.at(0);
    const auto& xs = m_.values()[in].shape;
    const int64_t n_in = numel_of(xs), n_out = numel_of(m_.values()[o.output].shape);
    BONSAI_CHECK(o.weights.shape() == (Shape{n_in, n_out}) && o.weight_scales.numel() == 1 && o.bias.numel() == n_out,
                 where_ + ": weights must be [in, out] with one scale and out biases");
    BONSAI_CHECK(m_.values()[o.output].shape.size() == 1,
                 where_ + ": the output must be a vector [out] per image, got rank " +
                     std::to_string(m_.values()[o.output].shape.size()));
    std::string flat;
    if (xs.size() == 1) {
      flat = dequantized(in);
    } else {
      // On the codes, so DequantizeLinear stays next to Gemm for ORT's fusion.
      std::string codes = names_[in];
      if (xs.size() == 3 && xs[0] * xs[1] > 1)  // NCHW → NHWC, bonsai's flattening order
        codes = node("Transpose", {codes}, {prefix_ + ".nhwc"}, {attr_ints("perm", {0, 2, 3, 1})});
      codes = node("Flatten", {codes}, {prefix_ + ".flat"}, {attr_int("axis", 1)});
      flat = node("DequantizeLinear", {codes, scale_of(in), zero_point_of(in)}, {prefix_ + ".flat.dq"});
    }
    const std::vector<float> w_scale{o.weight_scales.data<float>()[0]};
    const std::string weights =
        dequantized_constant(prefix_ + ".weights", DataType::int8, {n_in, n_out}, o.weights.data<int8_t>(), w_scale, false);
    const std::string bias = dequantized_bias(o, in, n_out, w_scale);
    quantize_to(o.output, clamped(o, float_op("Gemm", {flat, weights, bias})));
  }

  void lookup(const Int8Op& o) {
    BONSAI_CHECK(!o.function.empty(),
                 where_ + ": the table's function is not recorded (a file converted before it was); "
                          "re-convert the QAT checkpoint (bonsai convert) and export again");
    const std::string x = dequantized(o.inputs.at(0));
    std::string y;
    if (o.function == "relu") {
      y = float_op("Relu", {x});
    } else if (o.function == "relu6") {
      y = float_op("Clip", {x, scalar(prefix_ + ".min", 0.0f), scalar(prefix_ + ".max", 6.0f)});
    } else if (o.function == "hard_swish") {
      y = float_op("HardSwish", {x});
    } else if (o.function == "sigmoid") {
      y = float_op("Sigmoid", {x});
    } else if (o.function == "hard_sigmoid") {  // relu6(x + 3) / 6
      y = float_op("HardSigmoid", {x}, {attr_float("alpha", 1.0f / 6.0f), attr_float("beta", 0.5f)});
    } else {
      BONSAI_CHECK(false, where_ + ": no ONNX op for table function '" + o.function + "'");
    }
    quantize_to(o.output, y);
  }

  void pool(const Int8Op& o) {
    const quant::Int8Geometry& g = o.geometry;
    const int in = o.inputs.at(0);
    const std::vector<int64_t> pads =
        padding(g.kh, g.kw, g.stride_h, g.stride_w, 1, 1, g.pad_top, g.pad_left, m_.values()[in].shape,
                m_.values()[o.output].shape);
    std::vector<Message> attrs{attr_ints("kernel_shape", {g.kh, g.kw}), attr_ints("strides", {g.stride_h, g.stride_w}),
                               attr_ints("pads", pads)};
    // bonsai averages over the positions inside the image (TF's semantics).
    if (o.type == Int8OpType::avg_pool) attrs.push_back(attr_int("count_include_pad", 0));
    const std::string y = float_op(o.type == Int8OpType::avg_pool ? "AveragePool" : "MaxPool", {dequantized(in)}, attrs);
    quantize_to(o.output, y);
  }

  // Bilinear, half-pixel centres, to the output's H and W; the sizes input
  // is [N, C] of the input (Shape) followed by [OH, OW], so any batch runs.
  void resize(const Int8Op& o) {
    const int in = o.inputs.at(0);
    const auto& ys = m_.values()[o.output].shape;
    BONSAI_CHECK(ys.size() == 3, where_ + ": needs an [H, W, C] output");
    const std::string x = dequantized(in);
    const std::string batch_channels =
        node("Shape", {x}, {prefix_ + ".batch_channels"}, {attr_int("start", 0), attr_int("end", 2)});
    const std::vector<int64_t> hw{ys[0], ys[1]};
    initializer(prefix_ + ".size", DataType::int64, {2}, hw.data(), hw.size() * sizeof(int64_t));
    const std::string sizes =
        node("Concat", {batch_channels, prefix_ + ".size"}, {prefix_ + ".sizes"}, {attr_int("axis", 0)});
    const std::string y = float_op("Resize", {x, "", "", sizes},
                                   {attr_string("mode", "linear"),
                                    attr_string("coordinate_transformation_mode", "half_pixel")});
    quantize_to(o.output, y);
  }

  // The op's fused clamp [act_min, act_max] (output codes) as a float
  // Relu / Clip before the output's QuantizeLinear. A clamp to the full
  // int8 range is what QuantizeLinear's saturation does already: none.
  std::string clamped(const Int8Op& o, const std::string& y) {
    if (o.act_min <= -128 && o.act_max >= 127) return y;
    const quant::AffineQuant& q = m_.values()[o.output].quant;
    const float lo = static_cast<float>(o.act_min - q.zero_point) * q.scale;
    const float hi = static_cast<float>(o.act_max - q.zero_point) * q.scale;
    if (o.act_min == q.zero_point && o.act_max >= 127) return float_op("Relu", {y});
    return float_op("Clip", {y, scalar(prefix_ + ".clip_min", lo), scalar(prefix_ + ".clip_max", hi)});
  }

  // Explicit pads [top, left, bottom, right]: bottom and right are the least
  // that give the output's size (TF SAME: total = max((out − 1)·stride +
  // (k − 1)·dilation + 1 − in, 0), bottom = total − top).
  std::vector<int64_t> padding(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t top,
                               int64_t left, const std::vector<int64_t>& xs, const std::vector<int64_t>& ys) const {
    BONSAI_CHECK(xs.size() == 3 && ys.size() == 3, where_ + ": needs [H, W, C] values");
    auto after = [&](int64_t in, int64_t out, int64_t k, int64_t s, int64_t d, int64_t before, const char* axis) {
      const int64_t extent = (k - 1) * d + 1;
      const int64_t p = std::max<int64_t>((out - 1) * s + extent - in - before, 0);
      BONSAI_CHECK((in + before + p - extent) / s + 1 == out,
                   where_ + ": " + axis + " padding " + std::to_string(before) + " of input " + std::to_string(in) +
                       " cannot give output " + std::to_string(out) + " with window " + std::to_string(k) +
                       ", stride " + std::to_string(s) + ", dilation " + std::to_string(d));
      return p;
    };
    const int64_t bottom = after(xs[0], ys[0], kh, sh, dh, top, "top");
    const int64_t right = after(xs[1], ys[1], kw, sw, dw, left, "left");
    return {top, left, bottom, right};
  }

  // ---- graph pieces ------------------------------------------------------

  // The op's float computation: output "opI.<OpType>".
  std::string float_op(const std::string& op_type, const std::vector<std::string>& inputs,
                       const std::vector<Message>& attrs = {}) {
    return node(op_type, inputs, {prefix_ + "." + op_type}, attrs);
  }

  // Scalar scale and uint8 zero point (bonsai's + 128) of value v's grid (made once).
  void make_grid(int v) {
    if (grid_ready_[v]) return;
    const quant::AffineQuant& q = m_.values()[v].quant;
    BONSAI_CHECK(q.qmin == -128 && q.qmax == 127 && q.zero_point >= -128 && q.zero_point <= 127,
                 where_ + ": value " + m_.values()[v].name + " is not on an int8 grid");
    const float scale = q.scale;
    const uint8_t zp = static_cast<uint8_t>(q.zero_point + kActivationOffset);
    initializer(scale_of(v), DataType::float32, {}, &scale, sizeof scale);
    initializer(zero_point_of(v), DataType::uint8, {}, &zp, 1);
    grid_ready_[v] = true;
  }
  std::string scale_of(int v) const { return names_[v] + ".scale"; }
  std::string zero_point_of(int v) const { return names_[v] + ".zero_point"; }

  // QuantizeLinear of float tensor x onto value v's grid → v's uint8 tensor.
  void quantize_to(int v, const std::string& x) {
    make_grid(v);
    node("QuantizeLinear", {x, scale_of(v), zero_point_of(v)}, {names_[v]});
  }

  // A DequantizeLinear of value v for one reader → its float tensor.
  std::string dequantized(int v) {
    BONSAI_CHECK(v >= 0 && v < static_cast<int>(names_.size()) && grid_ready_[v],
                 where_ + ": reads value " + std::to_string(v) + " before it is computed");
    const std::string out = names_[v] + ".dq" + std::to_string(dq_count_[v]++);
    return node("DequantizeLinear", {names_[v], scale_of(v), zero_point_of(v)}, {out});
  }

  // An int8 constant with symmetric scales (one, or one per index of axis 0)
  // and its DequantizeLinear.
  std::string dequantized_constant(const std::string& name, DataType type, const std::vector<int64_t>& dims,
                                   const void* data, const std::vector<float>& scales, bool per_channel) {
    const size_t element = type == DataType::int8 ? 1 : 4;
    initializer(name, type, dims, data, static_cast<size_t>(numel_of(dims)) * element);
    const std::vector<int64_t> grid_dims = per_channel ? std::vector<int64_t>{static_cast<int64_t>(scales.size())}
                                                       : std::vector<int64_t>{};
    initializer(name + ".scale", DataType::float32, grid_dims, scales.data(), scales.size() * sizeof(float));
    const std::vector<uint8_t> zeros(scales.size() * element, 0);
    initializer(name + ".zero_point", type, grid_dims, zeros.data(), zeros.size());
    std::vector<Message> attrs;
    if (per_channel) attrs.push_back(attr_int("axis", 0));
    return node("DequantizeLinear", {name, name + ".scale", name + ".zero_point"}, {name + ".dq"}, attrs);
  }

  // The int32 bias at scale s_in·s_w (per channel when the weights are).
  std::string dequantized_bias(const Int8Op& o, int in, int64_t n, const std::vector<float>& w_scale) {
    const float s_in = m_.values()[in].quant.scale;
    std::vector<float> scales;
    for (float s : w_scale) scales.push_back(s_in * s);
    BONSAI_CHECK(o.bias.dtype() == DType::s32 && o.bias.numel() == n, where_ + ": bias must be s32 [" +
                                                                          std::to_string(n) + "]");
    return dequantized_constant(prefix_ + ".bias", DataType::int32, {n}, o.bias.data<int32_t>(), scales,
                                o.type == Int8OpType::conv);
  }

  const Int8Model& m_;
  std::vector<std::string> names_;  // by value id: its uint8 codes
  std::vector<int> dq_count_;
  std::vector<bool> grid_ready_;
};

// The float graph (export/float_graph.h) in ONNX's NCHW layout: float
// initializers, one node (or two, with a fused clamp) per op.
class FloatExporter : GraphBuilder {
 public:
  explicit FloatExporter(const FloatGraph& g) : g_(g) {
    names_.push_back("input");
    for (size_t v = 1; v < g.values.size(); ++v)
      names_.push_back(static_cast<int>(v) == g.output ? std::string("output")
                                                        : g.values[v].name + "#" + std::to_string(v));
  }

  std::vector<uint8_t> run() {
    g_.validate();
    begin(onnx_dims(g_.input().shape));
    for (size_t i = 0; i < g_.ops.size(); ++i) {
      const FloatOp& o = g_.ops[i];
      doc_ = "op " + std::to_string(i) + " (" + float_op_name(o.type) + " from " + o.source + ")";
      where_ = "ONNX float export: " + doc_;
      prefix_ = "op" + std::to_string(i);
      op(o);
    }
    return finish(onnx_dims(g_.values[g_.output].shape));
  }

 private:
  void op(const FloatOp& o) {
    const std::string& y = names_[o.output];
    const std::string x = names_[o.inputs.at(0)];
    switch (o.type) {
      case FloatOpType::conv: return conv(o);
      case FloatOpType::fully_connected: {
        const int64_t n_in = o.weights.dim(0), n_out = o.weights.dim(1);
        BONSAI_CHECK(g_.values[o.inputs[0]].shape.size() == 1, where_ + ": Gemm reads an [in] vector per image");
        const std::string w = constant(prefix_ + ".weights", {n_in, n_out}, o.weights.data<float>());
        const std::string b = constant(prefix_ + ".bias", {n_out}, o.bias.data<float>());
        return activated(o, "Gemm", {x, w, b}, {});
      }
      case FloatOpType::add: return activated(o, "Add", {x, names_[o.inputs.at(1)]}, {});
      case FloatOpType::mul: return activated(o, "Mul", {x, names_[o.inputs.at(1)]}, {});
      case FloatOpType::activation:
        BONSAI_CHECK(o.activation != FloatActivation::none, where_ + ": an activation op without a function");
        activation(o.activation, x, y);
        return;
      case FloatOpType::mean: node("GlobalAveragePool", {x}, {y}); return;
      case FloatOpType::avg_pool:
      case FloatOpType::max_pool: {
        const FloatGeometry& g = o.geometry;
        std::vector<Message> attrs{attr_ints("kernel_shape", {g.kh, g.kw}),
                                   attr_ints("strides", {g.stride_h, g.stride_w}),
                                   attr_ints("pads", {g.pad_top, g.pad_left, g.pad_bottom, g.pad_right})};
        if (o.type == FloatOpType::avg_pool) attrs.push_back(attr_int("count_include_pad", 0));  // TF's average
        return activated(o, o.type == FloatOpType::avg_pool ? "AveragePool" : "MaxPool", {x}, attrs);
      }
      case FloatOpType::resize: {
        const auto& ys = g_.values[o.output].shape;
        const std::string batch_channels =
            node("Shape", {x}, {prefix_ + ".batch_channels"}, {attr_int("start", 0), attr_int("end", 2)});
        const std::vector<int64_t> hw{ys.at(0), ys.at(1)};
        initializer(prefix_ + ".size", DataType::int64, {2}, hw.data(), hw.size() * sizeof(int64_t));
        const std::string sizes =
            node("Concat", {batch_channels, prefix_ + ".size"}, {prefix_ + ".sizes"}, {attr_int("axis", 0)});
        node("Resize", {x, "", "", sizes}, {y},
             {attr_string("mode", "linear"), attr_string("coordinate_transformation_mode", "half_pixel")});
        return;
      }
      case FloatOpType::concat: {
        std::vector<std::string> ins;
        for (int v : o.inputs) ins.push_back(names_[v]);
        return activated(o, "Concat", ins, {attr_int("axis", 1)});
      }
      case FloatOpType::reshape: return reshape(o);
    }
    BONSAI_CHECK(false, where_ + ": no ONNX form for this op type");
  }

  void conv(const FloatOp& o) {
    const FloatGeometry& g = o.geometry;
    const auto& xs = g_.values[o.inputs[0]].shape;
    const auto& ys = g_.values[o.output].shape;
    BONSAI_CHECK(xs.size() == 3 && ys.size() == 3, where_ + ": needs [H, W, C] values");
    const int64_t cout = ys[2], cin_g = xs[2] / g.groups, kh = g.kh, kw = g.kw;
    const std::vector<float> w = hwio_to_oihw(o.weights.data<float>(), kh, kw, cin_g, cout);
    const std::string weights = constant(prefix_ + ".weights", {cout, cin_g, kh, kw}, w.data());
    const std::string bias = constant(prefix_ + ".bias", {cout}, o.bias.data<float>());
    activated(o, "Conv", {names_[o.inputs[0]], weights, bias},
              {attr_ints("kernel_shape", {kh, kw}), attr_ints("strides", {g.stride_h, g.stride_w}),
               attr_ints("dilations", {g.dilation_h, g.dilation_w}),
               attr_ints("pads", {g.pad_top, g.pad_left, g.pad_bottom, g.pad_right}), attr_int("group", g.groups)});
  }

  // The op, then its fused activation (Relu / Clip) when it has one.
  void activated(const FloatOp& o, const std::string& op_type, const std::vector<std::string>& inputs,
                 const std::vector<Message>& attrs) {
    if (o.activation == FloatActivation::none) {
      node(op_type, inputs, {names_[o.output]}, attrs);
      return;
    }
    const std::string raw = node(op_type, inputs, {prefix_ + "." + op_type}, attrs);
    activation(o.activation, raw, names_[o.output]);
  }

  void activation(FloatActivation a, const std::string& x, const std::string& y) {
    switch (a) {
      case FloatActivation::relu: node("Relu", {x}, {y}); return;
      case FloatActivation::relu6:
        node("Clip", {x, scalar(prefix_ + ".min", 0.0f), scalar(prefix_ + ".max", 6.0f)}, {y});
        return;
      case FloatActivation::hard_swish: node("HardSwish", {x}, {y}); return;
      case FloatActivation::hard_sigmoid:  // relu6(x + 3) / 6
        node("HardSigmoid", {x}, {y}, {attr_float("alpha", 1.0f / 6.0f), attr_float("beta", 0.5f)});
        return;
      case FloatActivation::sigmoid: node("Sigmoid", {x}, {y}); return;
      case FloatActivation::none: break;
    }
    BONSAI_CHECK(false, where_ + ": no ONNX op for activation " + float_activation_name(a));
  }

  // bonsai reshapes in NHWC order: an [H, W, C] value with H·W > 1 is
  // transposed to NHWC first (and a result back to NCHW); with H·W = 1 the
  // two orders agree. Reshape's 0 keeps the (symbolic) batch.
  void reshape(const FloatOp& o) {
    const auto& xs = g_.values[o.inputs[0]].shape;
    const auto& ys = g_.values[o.output].shape;
    auto spatial = [](const std::vector<int64_t>& s) { return s.size() == 3 && s[0] * s[1] > 1; };
    std::string x = names_[o.inputs[0]];
    if (spatial(xs)) x = node("Transpose", {x}, {prefix_ + ".nhwc"}, {attr_ints("perm", {0, 2, 3, 1})});
    std::vector<int64_t> target{0};
    const std::vector<int64_t> dims = spatial(ys) ? ys : onnx_dims(ys);
    target.insert(target.end(), dims.begin(), dims.end());
    initializer(prefix_ + ".shape", DataType::int64, {static_cast<int64_t>(target.size())}, target.data(),
                target.size() * sizeof(int64_t));
    if (!spatial(ys)) {
      node("Reshape", {x, prefix_ + ".shape"}, {names_[o.output]});
      return;
    }
    const std::string r = node("Reshape", {x, prefix_ + ".shape"}, {prefix_ + ".reshaped"});
    node("Transpose", {r}, {names_[o.output]}, {attr_ints("perm", {0, 3, 1, 2})});
  }

  const FloatGraph& g_;
  std::vector<std::string> names_;  // by value id
};

}  // namespace

std::vector<uint8_t> to_onnx(const quant::Int8Model& model) { return Exporter(model).run(); }

void write_onnx(const quant::Int8Model& model, const std::string& path) {
  const std::vector<uint8_t> bytes = to_onnx(model);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

std::vector<uint8_t> to_onnx(const FloatGraph& graph) { return FloatExporter(graph).run(); }

void write_onnx(const FloatGraph& graph, const std::string& path) {
  const std::vector<uint8_t> bytes = to_onnx(graph);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace bonsai::exporters
