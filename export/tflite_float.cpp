// The float graph (export/float_graph.h) as a TFLite flatbuffer: float32
// tensors throughout, no quantization, the same flatbuffer writer as the
// int8 export (export/tflite_builder.h).
#include <cfloat>

#include "core/check.h"
#include "core/io/atomic_file.h"
#include "export/tflite.h"
#include "export/tflite_builder.h"

namespace bonsai::exporters {

namespace {

using tflite::add_conv;
using tflite::Axis;
using tflite::conv_weights;
using tflite::GraphBuilder;
namespace s = tflite_schema;

// Operator versions of the float kernels (TFLite's op_version tables):
// version 1 everywhere but dilated depthwise (2) and half-pixel resize (3).
constexpr int kV1 = 1;
constexpr int kDilatedDepthwiseVersion = 2;
constexpr int kHalfPixelResizeVersion = 3;

std::vector<int32_t> batch1(const std::vector<int64_t>& per_image) {
  std::vector<int32_t> out{1};
  for (int64_t d : per_image) out.push_back(static_cast<int32_t>(d));
  return out;
}

s::Activation fused(FloatActivation a, const std::string& where) {
  switch (a) {
    case FloatActivation::none: return s::kActNone;
    case FloatActivation::relu: return s::kActRelu;
    case FloatActivation::relu6: return s::kActRelu6;
    default: break;
  }
  BONSAI_CHECK(false, where + ": " + float_activation_name(a) + " cannot be a fused activation");
  return s::kActNone;
}

class FloatTfliteExporter {
 public:
  explicit FloatTfliteExporter(const FloatGraph& g) : g_(g), tensor_(g.values.size(), -1) {}

  std::vector<uint8_t> run() {
    g_.validate();
    for (size_t i = 0; i < g_.ops.size(); ++i) {
      where_ = "TFLite float export: op " + std::to_string(i) + " (" + float_op_name(g_.ops[i].type) + " from '" +
               g_.ops[i].source + "')";
      lower(g_.ops[i]);
    }
    return b_.finish(value(0), value(g_.output), "bonsai float model");
  }

 private:
  // The float tensor of value v ("input", "output", else the value's name).
  int value(int v) {
    if (tensor_[v] < 0) {
      const std::string name = v == 0 ? "input" : v == g_.output ? "output" : g_.values[v].name + "#" + std::to_string(v);
      tensor_[v] = b_.add_tensor({.shape = batch1(g_.values[v].shape), .type = s::kFloat32, .name = name});
    }
    return tensor_[v];
  }
  int intermediate(const std::string& name, std::vector<int32_t> shape) {
    return b_.add_tensor({.shape = std::move(shape), .type = s::kFloat32, .name = name});
  }
  int constant(const std::string& name, std::vector<int32_t> shape, const std::vector<float>& v) {
    return b_.add_constant(name, std::move(shape), s::kFloat32, v.data(), v.size());
  }

  // Window input and padding: SAME or VALID when TFLite's formulas give our
  // pads, else PADV2 with `pad_value` and VALID.
  std::pair<int, s::Padding> window_input(const FloatOp& op, std::optional<float> pad_value) {
    const auto& xs = g_.values[op.inputs[0]].shape;
    const auto& ys = g_.values[op.output].shape;
    const FloatGeometry& g = op.geometry;
    const Axis h{xs[0], ys[0], g.kh, g.stride_h, g.dilation_h, g.pad_top};
    const Axis w{xs[1], ys[1], g.kw, g.stride_w, g.dilation_w, g.pad_left};
    const int in = value(op.inputs[0]);
    if (h.valid() && w.valid()) return {in, s::kValid};
    if (h.same() && w.same()) return {in, s::kSame};
    BONSAI_CHECK(pad_value.has_value(), where_ + ": its padding (top " + std::to_string(g.pad_top) + ", left " +
                                            std::to_string(g.pad_left) +
                                            ") is neither SAME nor VALID, and explicit padding would change it");
    const int64_t ph = h.in + h.pad_before + h.pad_after(), pw = w.in + w.pad_before + w.pad_after();
    BONSAI_CHECK((ph - h.extent()) / h.stride + 1 == h.out && (pw - w.extent()) / w.stride + 1 == w.out,
                 where_ + ": its padding gives no consistent output size");
    const int padded = intermediate(op.source + ".pad", {1, static_cast<int32_t>(ph), static_cast<int32_t>(pw),
                                                         static_cast<int32_t>(xs[2])});
    const int paddings = b_.add_int32_constant(op.source + ".paddings",
                                               {0, 0, h.pad_before, static_cast<int32_t>(h.pad_after()), w.pad_before,
                                                static_cast<int32_t>(w.pad_after()), 0, 0},
                                               {4, 2});
    const int fill = constant(op.source + ".pad_value", {1}, {*pad_value});
    b_.add_op(s::kPadV2, kV1, {in, paddings, fill}, {padded});
    return {padded, s::kValid};
  }

  void conv(const FloatOp& op) {
    const auto& xs = g_.values[op.inputs[0]].shape;
    const auto& ys = g_.values[op.output].shape;
    const FloatGeometry& g = op.geometry;
    const int64_t cin = xs[2], cout = ys[2];
    const bool depthwise = g.groups > 1;
    BONSAI_CHECK(g.groups == 1 || (g.groups == cin && cin == cout),
                 where_ + ": grouped convolution (groups " + std::to_string(g.groups) + ") has no TFLite op");
    const auto [in, padding] = window_input(op, 0.0f);
    std::vector<int32_t> shape;
    const std::vector<float> packed = conv_weights(op.weights.data<float>(), g.kh, g.kw, cin, cout, depthwise, shape);
    const int weights = constant(op.source + ".weights", shape, packed);
    const int bias = constant(op.source + ".bias", {static_cast<int32_t>(cout)},
                              std::vector<float>(op.bias.data<float>(), op.bias.data<float>() + cout));
    const bool dilated = g.dilation_h > 1 || g.dilation_w > 1;
    add_conv(b_, depthwise, depthwise && dilated ? kDilatedDepthwiseVersion : kV1, {in, weights, bias},
             value(op.output), padding, g, fused(op.activation, where_));
  }

  void fully_connected(const FloatOp& op) {
    const int64_t n_in = op.weights.dim(0), n_out = op.weights.dim(1);
    BONSAI_CHECK(g_.values[op.inputs[0]].shape.size() == 1 && g_.values[op.output].shape.size() == 1,
                 where_ + ": fully connected needs [in] → [out] values");
    const float* w = op.weights.data<float>();  // [in, out] → TFLite's [out, in]
    std::vector<float> packed(op.weights.numel());
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t k = 0; k < n_in; ++k) packed[o * n_in + k] = w[k * n_out + o];
    const int weights = constant(op.source + ".weights", {static_cast<int32_t>(n_out), static_cast<int32_t>(n_in)}, packed);
    const int bias = constant(op.source + ".bias", {static_cast<int32_t>(n_out)},
                              std::vector<float>(op.bias.data<float>(), op.bias.data<float>() + n_out));
    namespace f = s::fully_connected_options;
    b_.add_op(s::kFullyConnected, kV1, {value(op.inputs[0]), weights, bias}, {value(op.output)},
              s::kFullyConnectedOptions,
              {{f::fused_activation, fused(op.activation, where_), 1}, {f::weights_format, 0, 1}, {f::keep_num_dims, 0, 1}});
  }

  void binary(const FloatOp& op, s::BuiltinOperator code, uint8_t options) {
    BONSAI_CHECK(op.inputs.size() == 2, where_ + ": expected two inputs");
    b_.add_op(code, kV1, {value(op.inputs[0]), value(op.inputs[1])}, {value(op.output)}, options,
              {{s::add_options::fused_activation, fused(op.activation, where_), 1}});
  }

  void activation(const FloatOp& op) {
    const int in = value(op.inputs[0]), out = value(op.output);
    switch (op.activation) {
      case FloatActivation::relu: return b_.add_op(s::kRelu, kV1, {in}, {out});
      case FloatActivation::relu6: return b_.add_op(s::kRelu6, kV1, {in}, {out});
      case FloatActivation::hard_swish: return b_.add_op(s::kHardSwish, kV1, {in}, {out});
      case FloatActivation::sigmoid: return b_.add_op(s::kLogistic, kV1, {in}, {out});
      case FloatActivation::hard_sigmoid: {
        // relu6(x + 3) · 1/6: ADD with a fused RELU6, then MUL (TFLite has
        // no HARD_SIGMOID builtin; Keras models convert to the same pair).
        const int mid = intermediate(op.source + ".plus3", batch1(g_.values[op.output].shape));
        b_.add_op(s::kAdd, kV1, {in, constant(op.source + ".three", {1}, {3.0f})}, {mid}, s::kAddOptions,
                  {{s::add_options::fused_activation, s::kActRelu6, 1}});
        b_.add_op(s::kMul, kV1, {mid, constant(op.source + ".sixth", {1}, {1.0f / 6.0f})}, {out}, s::kMulOptions,
                  {{s::add_options::fused_activation, s::kActNone, 1}});
        return;
      }
      case FloatActivation::none: break;
    }
    BONSAI_CHECK(false, where_ + ": no TFLite op for activation " + float_activation_name(op.activation));
  }

  void pool(const FloatOp& op, s::BuiltinOperator code) {
    const FloatGeometry& g = op.geometry;
    // Max pooling ignores padding: explicit padding with the lowest float is
    // the same; average pooling counts only real positions: no explicit pad.
    const auto [in, padding] =
        window_input(op, code == s::kMaxPool2d ? std::optional<float>(-FLT_MAX) : std::nullopt);
    namespace f = s::pool2d_options;
    b_.add_op(code, kV1, {in}, {value(op.output)}, s::kPool2DOptions,
              {{f::padding, padding, 1}, {f::stride_w, g.stride_w, 4}, {f::stride_h, g.stride_h, 4},
               {f::filter_width, g.kw, 4}, {f::filter_height, g.kh, 4},
               {f::fused_activation, fused(op.activation, where_), 1}});
  }

  void lower(const FloatOp& op) {
    switch (op.type) {
      case FloatOpType::conv: return conv(op);
      case FloatOpType::fully_connected: return fully_connected(op);
      case FloatOpType::add: return binary(op, s::kAdd, s::kAddOptions);
      case FloatOpType::mul: return binary(op, s::kMul, s::kMulOptions);
      case FloatOpType::activation: return activation(op);
      case FloatOpType::mean: {
        BONSAI_CHECK(g_.values[op.inputs[0]].shape.size() == 3, where_ + ": MEAN expects an [H, W, C] input");
        const int axes = b_.add_int32_constant(op.source + ".axes", {1, 2});
        b_.add_op(s::kMean, kV1, {value(op.inputs[0]), axes}, {value(op.output)}, s::kReducerOptions,
                  {{s::reducer_options::keep_dims, g_.values[op.output].shape.size() == 3 ? 1 : 0, 1}});
        return;
      }
      case FloatOpType::avg_pool: return pool(op, s::kAveragePool2d);
      case FloatOpType::max_pool: return pool(op, s::kMaxPool2d);
      case FloatOpType::resize: {
        const auto& ys = g_.values[op.output].shape;
        const int size = b_.add_int32_constant(op.source + ".size",
                                               {static_cast<int32_t>(ys[0]), static_cast<int32_t>(ys[1])});
        namespace f = s::resize_bilinear_options;
        b_.add_op(s::kResizeBilinear, kHalfPixelResizeVersion, {value(op.inputs[0]), size}, {value(op.output)},
                  s::kResizeBilinearOptions, {{f::align_corners, 0, 1}, {f::half_pixel_centers, 1, 1}});
        return;
      }
      case FloatOpType::concat: {
        std::vector<int32_t> ins;
        for (int v : op.inputs) ins.push_back(value(v));
        namespace f = s::concatenation_options;
        b_.add_op(s::kConcatenation, kV1, ins, {value(op.output)}, s::kConcatenationOptions,
                  {{f::axis, static_cast<int64_t>(g_.values[op.output].shape.size()), 4},
                   {f::fused_activation, fused(op.activation, where_), 1}});
        return;
      }
      case FloatOpType::reshape: {
        const std::vector<int32_t> shape = batch1(g_.values[op.output].shape);
        b_.add_op(s::kReshape, kV1, {value(op.inputs[0]), b_.add_int32_constant(op.source + ".shape", shape)},
                  {value(op.output)});
        return;
      }
    }
    BONSAI_CHECK(false, where_ + ": no TFLite mapping");
  }

  const FloatGraph& g_;
  GraphBuilder b_;
  std::vector<int> tensor_;  // by value id; -1 until used
  std::string where_;
};

}  // namespace

std::vector<uint8_t> to_tflite(const FloatGraph& graph) { return FloatTfliteExporter(graph).run(); }

void write_tflite(const FloatGraph& graph, const std::string& path) {
  const std::vector<uint8_t> bytes = to_tflite(graph);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace bonsai::exporters
