#include "export/tflite.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "core/check.h"
#include "core/io/atomic_file.h"
#include "export/tflite_builder.h"
#include "export/tflite_schema.h"
#include "quant/int8_kernels.h"

namespace bonsai::exporters {

namespace {

namespace fb = flatbuffers;
namespace s = tflite_schema;
using tflite::add_conv;
using tflite::Axis;
using tflite::conv_weights;
using tflite::GraphBuilder;
using tflite::OptionField;
using tflite::TensorDef;
using tflite::TensorQuant;
using tflite::TensorSparsity;
using quant::AffineQuant;
using quant::Int8Model;
using quant::Int8Op;
using quant::Int8OpType;
using quant::Int8Value;

// ---- Int8Model → graph ------------------------------------------------------

// Operator versions: the lowest each builtin kernel registers for int8
// (TFLite's op_version / runtime_version tables).
constexpr int kConvVersion = 3;           // per-channel int8
constexpr int kDepthwiseVersion = 3;      // per-channel int8
constexpr int kFullyConnectedVersion = 4; // int8
constexpr int kInt8Version = 2;           // ADD, MUL, pools, MEAN, CONCATENATION, RELU, RELU6, LOGISTIC, PADV2, QUANTIZE, DEQUANTIZE
constexpr int kResizeVersion = 3;         // half_pixel_centers
constexpr int kV1 = 1;                    // RESHAPE, HARD_SWISH, DENSIFY, CAST, int32 ADD
constexpr int kGatherVersion = 2;         // int8 params

std::vector<int32_t> tensor_shape(const std::vector<int64_t>& per_image) {
  std::vector<int32_t> s{1};
  for (int64_t d : per_image) s.push_back(static_cast<int32_t>(d));
  return s;
}

TensorQuant per_tensor(const AffineQuant& q) { return {{q.scale}, {q.zero_point}, 0}; }

bool same_grid(const AffineQuant& a, const AffineQuant& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point;
}

class Exporter {
 public:
  Exporter(const Int8Model& m, const TfliteOptions& o) : m_(m), options_(o), value_tensor_(m.values().size(), -1) {}

  std::vector<uint8_t> run() {
    const Int8Value& in = m_.input();
    input_ = g_.add_tensor({.shape = tensor_shape(in.shape), .type = s::kFloat32, .name = "input"});
    for (size_t i = 0; i < m_.ops().size(); ++i) lower(i, m_.ops()[i]);
    const Int8Value& out = m_.values()[m_.output()];
    const int output = g_.add_tensor({.shape = tensor_shape(out.shape), .type = s::kFloat32, .name = "output"});
    g_.add_op(s::kDequantize, kInt8Version, {value(m_.output())}, {output});
    return g_.finish(input_, output, "bonsai int8 model");
  }

 private:
  static std::string where(size_t i, const Int8Op& op) {
    return std::string("TFLite export: op ") + std::to_string(i) + " (" + quant::op_type_name(op.type) + " from '" +
           op.source + "')";
  }

  // The int8 tensor of value v, created on first use.
  int value(int v) {
    if (value_tensor_[v] < 0) {
      const Int8Value& val = m_.values()[v];
      value_tensor_[v] = g_.add_tensor(
          {.shape = tensor_shape(val.shape), .type = s::kInt8, .name = val.name, .quant = per_tensor(val.quant)});
    }
    return value_tensor_[v];
  }
  // An intermediate int8 activation of our own (not a value of the model).
  int activation(const std::string& name, std::vector<int32_t> shape, const AffineQuant& q) {
    return g_.add_tensor({.shape = std::move(shape), .type = s::kInt8, .name = name, .quant = per_tensor(q)});
  }
  // Requantizes `from` (on grid `q_from`) into the tensor `to`.
  void requantize(int from, int to) { g_.add_op(s::kQuantize, kInt8Version, {from}, {to}); }

  // The fused activation whose clamp TFLite derives from the output grid
  // (CalculateActivationRangeQuantized: zp + round(f / scale), clamped to
  // int8) equal to the op's [act_min, act_max].
  s::Activation fused_activation(size_t i, const Int8Op& op) {
    const AffineQuant& q = m_.values()[op.output].quant;
    auto code = [&](float f) { return q.zero_point + static_cast<int32_t>(std::round(f / q.scale)); };
    const int32_t relu_min = std::max(-128, code(0.0f));
    const struct {
      s::Activation act;
      int32_t lo, hi;
    } choices[] = {{s::kActNone, -128, 127}, {s::kActRelu, relu_min, 127},
                   {s::kActRelu6, relu_min, std::min(127, code(6.0f))}};
    for (const auto& c : choices)
      if (c.lo == op.act_min && c.hi == op.act_max) return c.act;
    BONSAI_CHECK(false, where(i, op) + ": its clamp [" + std::to_string(op.act_min) + ", " +
                            std::to_string(op.act_max) + "] is none of NONE/RELU/RELU6 on the output grid");
    return s::kActNone;
  }

  // The int8 weights of a conv or fully connected op as a constant the op
  // reads: dense, or (options.sparse, where smaller) sparse + DENSIFY, the
  // last dimension CSR over single elements or over blocks of kBlock (a
  // block pays one index for kBlock values: what makes block-pruned weights
  // smaller already at 50%). The smallest of the three is written.
  static constexpr int kBlock = 4;
  int weights(const std::string& name, std::vector<int32_t> shape, const std::vector<int8_t>& w, TensorQuant q) {
    if (options_.sparse) {
      const int64_t last = shape.back(), rows = static_cast<int64_t>(w.size()) / last;
      struct Encoding {
        TensorSparsity sparsity;
        std::vector<int8_t> values;
        int64_t bytes = 0;
      };
      auto width = [](int64_t top) { return top < 256 ? 1 : top < 65536 ? 2 : 4; };
      auto encode = [&](int32_t block) {
        Encoding e{.sparsity = {.dense_shape = shape, .block = block}};
        e.sparsity.segments.push_back(0);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < last; c += block) {
            const int8_t* v = &w[r * last + c];
            if (std::all_of(v, v + block, [](int8_t x) { return x == 0; })) continue;
            e.values.insert(e.values.end(), v, v + block);
            e.sparsity.indices.push_back(static_cast<int32_t>(c / block));
          }
          e.sparsity.segments.push_back(static_cast<int32_t>(e.sparsity.indices.size()));
        }
        const auto stored = static_cast<int64_t>(e.sparsity.indices.size());
        // Bytes of the encoding plus what the second tensor repeats: the
        // flatbuffer tables (about 200) and the quantization parameters.
        e.bytes = static_cast<int64_t>(e.values.size()) + (rows + 1) * width(stored) +
                  stored * width(last / block - 1) + 200 + static_cast<int64_t>(q.scales.size()) * 12;
        return e;
      };
      Encoding best = encode(1);
      if (last % kBlock == 0) {
        Encoding blocked = encode(kBlock);
        if (blocked.bytes < best.bytes) best = std::move(blocked);
      }
      if (best.bytes < static_cast<int64_t>(w.size())) {
        TensorDef t{.shape = shape, .type = s::kInt8, .name = name + ".sparse", .quant = q, .sparsity = best.sparsity};
        t.buffer = g_.add_buffer(std::vector<uint8_t>(best.values.begin(), best.values.end()));
        const int stored = g_.add_tensor(std::move(t));
        const int dense = g_.add_tensor({.shape = shape, .type = s::kInt8, .name = name, .quant = q});
        g_.add_op(s::kDensify, kV1, {stored}, {dense});
        return dense;
      }
    }
    return g_.add_constant(name, shape, s::kInt8, w.data(), w.size(), q);
  }

  int bias(const std::string& name, const Int8Op& op, int64_t count, double input_scale) {
    std::vector<int32_t> b(count, 0);
    if (op.bias.numel() > 0) std::memcpy(b.data(), op.bias.data<int32_t>(), count * sizeof(int32_t));
    TensorQuant q;
    const float* ws = op.weight_scales.data<float>();
    const bool per_channel = op.weight_scales.numel() == count;
    for (int64_t c = 0; c < count; ++c) {
      q.scales.push_back(static_cast<float>(input_scale * static_cast<double>(per_channel ? ws[c] : ws[0])));
      q.zero_points.push_back(0);
      if (!per_channel) break;
    }
    return g_.add_constant(name, {static_cast<int32_t>(count)}, s::kInt32, b.data(), b.size(), q);
  }

  // Pads x (a value tensor) explicitly with `code` so that a VALID window
  // op reproduces the op's padding; returns the padded tensor.
  int pad(size_t i, const Int8Op& op, int x, const Axis& h, const Axis& w, int32_t code) {
    const int64_t ph = h.in + h.pad_before + h.pad_after(), pw = w.in + w.pad_before + w.pad_after();
    BONSAI_CHECK((ph - h.extent()) / h.stride + 1 == h.out && (pw - w.extent()) / w.stride + 1 == w.out,
                 where(i, op) + ": its padding gives no consistent output size");
    const TensorDef& xt = g_.tensor(x);
    const std::vector<int32_t> shape{1, static_cast<int32_t>(ph), static_cast<int32_t>(pw), xt.shape[3]};
    const AffineQuant q{.scale = xt.quant->scales[0], .zero_point = static_cast<int32_t>(xt.quant->zero_points[0])};
    const int padded = activation(op.source + ".pad", shape, q);
    const int paddings = g_.add_int32_constant(op.source + ".paddings",
                                               {0, 0, h.pad_before, static_cast<int32_t>(h.pad_after()), w.pad_before,
                                                static_cast<int32_t>(w.pad_after()), 0, 0},
                                               {4, 2});  // [[before, after]] per axis of NHWC
    const int8_t c = static_cast<int8_t>(code);
    const int value = g_.add_constant(op.source + ".pad_value", {1}, s::kInt8, &c, 1, per_tensor(q));
    g_.add_op(s::kPadV2, kInt8Version, {x, paddings, value}, {padded});
    return padded;
  }

  // Window geometry → (input tensor, TFLite padding), padding explicitly
  // with `pad_code` when neither SAME nor VALID matches.
  std::pair<int, s::Padding> window_input(size_t i, const Int8Op& op, std::optional<int32_t> pad_code) {
    const Int8Value& x = m_.values()[op.inputs[0]];
    const Int8Value& y = m_.values()[op.output];
    const quant::Int8Geometry& g = op.geometry;
    const Axis h{x.shape[0], y.shape[0], g.kh, g.stride_h, g.dilation_h, g.pad_top};
    const Axis w{x.shape[1], y.shape[1], g.kw, g.stride_w, g.dilation_w, g.pad_left};
    const int in = value(op.inputs[0]);
    if (h.valid() && w.valid()) return {in, s::kValid};
    if (h.same() && w.same()) return {in, s::kSame};
    BONSAI_CHECK(pad_code.has_value(), where(i, op) + ": its padding (top " + std::to_string(g.pad_top) +
                                           ", left " + std::to_string(g.pad_left) +
                                           ") is neither SAME nor VALID, and explicit padding would change it");
    return {pad(i, op, in, h, w, *pad_code), s::kValid};
  }

  void conv(size_t i, const Int8Op& op) {
    const Int8Value& x = m_.values()[op.inputs[0]];
    const Int8Value& y = m_.values()[op.output];
    const quant::Int8Geometry& g = op.geometry;
    const int64_t cin = x.shape[2], cout = y.shape[2];
    const bool depthwise = g.groups > 1;
    BONSAI_CHECK(g.groups == 1 || (g.groups == cin && cin == cout),
                 where(i, op) + ": grouped convolution (groups " + std::to_string(g.groups) + ") has no TFLite op");
    const auto [in, padding] = window_input(i, op, x.quant.zero_point);
    std::vector<int32_t> shape;
    const std::vector<int8_t> packed = conv_weights(op.weights.data<int8_t>(), g.kh, g.kw, cin, cout, depthwise, shape);
    TensorQuant wq{.dimension = depthwise ? 3 : 0};
    for (int64_t c = 0; c < cout; ++c) {
      wq.scales.push_back(op.weight_scales.data<float>()[c]);
      wq.zero_points.push_back(0);
    }
    const int weights_t = weights(op.source + ".weights", shape, packed, wq);
    const int bias_t = bias(op.source + ".bias", op, cout, x.quant.scale);
    add_conv(g_, depthwise, depthwise ? kDepthwiseVersion : kConvVersion, {in, weights_t, bias_t}, value(op.output),
             padding, g, fused_activation(i, op));
  }

  // A tensor holding value v with shape `shape` (RESHAPE when it differs).
  int reshaped(int v, const std::vector<int32_t>& shape, const std::string& name) {
    const int t = value(v);
    if (g_.tensor(t).shape == shape) return t;
    const int out = activation(name, shape, m_.values()[v].quant);
    const int shape_t = g_.add_int32_constant(name + ".shape", shape);
    g_.add_op(s::kReshape, kV1, {t, shape_t}, {out});
    return out;
  }

  void fully_connected(size_t i, const Int8Op& op) {
    const Int8Value& x = m_.values()[op.inputs[0]];
    const Int8Value& y = m_.values()[op.output];
    const int64_t n_in = op.weights.shape()[0], n_out = op.weights.shape()[1];
    BONSAI_CHECK(op.weight_scales.numel() == 1, where(i, op) + ": per-channel fully connected weights are not supported");
    const int in = reshaped(op.inputs[0], {1, static_cast<int32_t>(n_in)}, x.name + ".flat");
    const int8_t* w = op.weights.data<int8_t>();  // [in, out]
    std::vector<int8_t> packed(op.weights.numel());  // [out, in]
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t k = 0; k < n_in; ++k) packed[o * n_in + k] = w[k * n_out + o];
    const int weights_t = weights(op.source + ".weights", {static_cast<int32_t>(n_out), static_cast<int32_t>(n_in)},
                                  packed, {{op.weight_scales.data<float>()[0]}, {0}, 0});
    const int bias_t = bias(op.source + ".bias", op, n_out, x.quant.scale);
    const std::vector<int32_t> flat{1, static_cast<int32_t>(n_out)};
    const bool direct = g_.tensor(value(op.output)).shape == flat;
    const int out = direct ? value(op.output) : activation(y.name + ".flat", flat, y.quant);
    namespace f = s::fully_connected_options;
    g_.add_op(s::kFullyConnected, kFullyConnectedVersion, {in, weights_t, bias_t}, {out}, s::kFullyConnectedOptions,
              {{f::fused_activation, fused_activation(i, op), 1}, {f::weights_format, 0, 1}, {f::keep_num_dims, 0, 1}});
    if (!direct) {
      const int shape_t = g_.add_int32_constant(y.name + ".shape", g_.tensor(value(op.output)).shape);
      g_.add_op(s::kReshape, kV1, {out, shape_t}, {value(op.output)});
    }
  }

  void binary(size_t i, const Int8Op& op, s::BuiltinOperator code, uint8_t options_type) {
    BONSAI_CHECK(op.inputs.size() == 2, where(i, op) + ": expected two inputs");
    g_.add_op(code, kInt8Version, {value(op.inputs[0]), value(op.inputs[1])}, {value(op.output)}, options_type,
              {{s::add_options::fused_activation, fused_activation(i, op), 1}});
  }

  // An int8 scalar constant shaped to broadcast against a rank-`rank` tensor.
  int scalar(const std::string& name, int rank, float value, const AffineQuant& q) {
    const int8_t code = static_cast<int8_t>(quant::quantize_value(value, q));
    return g_.add_constant(name, std::vector<int32_t>(rank, 1), s::kInt8, &code, 1, per_tensor(q));
  }

  // hard_sigmoid as TFLite graphs of Keras models compute it:
  // relu6(x + 3) · 1/6, an ADD with fused RELU6 into an intermediate grid
  // and a MUL. The intermediate grid is chosen so that TFLite's integer
  // arithmetic (bonsai's kernels are TFLite's) reproduces the op's table
  // within one step for every input code.
  void hard_sigmoid(size_t i, const Int8Op& op) {
    const AffineQuant& qx = m_.values()[op.inputs[0]].quant;
    const AffineQuant& qy = m_.values()[op.output].quant;
    const AffineQuant q3{.scale = 3.0f / 127, .zero_point = 0};
    const AffineQuant q6{.scale = (1.0f / 6) / 127, .zero_point = 0};
    const int8_t* table = op.table.data<int8_t>();
    std::vector<int8_t> x(256), three(256, 127), sixth(256, 127), mid(256), y(256);
    for (int c = 0; c < 256; ++c) x[c] = static_cast<int8_t>(c - 128);
    std::optional<AffineQuant> best;
    int best_steps = 1 << 30;
    for (const float scale : {6.0f / 255, 6.0f * qy.scale, 3.0f / 255}) {
      const AffineQuant qm{.scale = scale, .zero_point = -128};
      const int32_t hi = std::min(127, qm.zero_point + static_cast<int32_t>(std::round(6.0f / scale)));
      quant::int8::add(quant::int8::make_add_params(qx, q3, qm, -128, hi), x.data(), three.data(), mid.data(), 256);
      quant::int8::mul(quant::int8::make_mul_params(qm, q6, qy), mid.data(), sixth.data(), y.data(), 256, 1, 1);
      int steps = 0;
      for (int c = 0; c < 256; ++c) steps = std::max(steps, std::abs(int(y[c]) - int(table[c])));
      if (steps < best_steps) best_steps = steps, best = qm;
    }
    BONSAI_CHECK(best_steps <= 1, where(i, op) + ": hard_sigmoid as ADD+RELU6, MUL differs from its table by " +
                                      std::to_string(best_steps) + " steps");
    const std::vector<int32_t>& shape = g_.tensor(value(op.inputs[0])).shape;
    const int rank = static_cast<int>(shape.size());
    const int mid_t = activation(op.source + ".plus3", shape, *best);
    g_.add_op(s::kAdd, kInt8Version, {value(op.inputs[0]), scalar(op.source + ".three", rank, 3.0f, q3)}, {mid_t},
              s::kAddOptions, {{s::add_options::fused_activation, s::kActRelu6, 1}});
    g_.add_op(s::kMul, kInt8Version, {mid_t, scalar(op.source + ".sixth", rank, 1.0f / 6, q6)}, {value(op.output)},
              s::kMulOptions, {{s::add_options::fused_activation, s::kActNone, 1}});
  }

  // Runs a unary op whose int8 kernel needs output grid `need` (LOGISTIC),
  // requantizing to the value's grid when it differs.
  void unary(const Int8Op& op, s::BuiltinOperator code, int version, std::optional<AffineQuant> need = {}) {
    const Int8Value& y = m_.values()[op.output];
    if (!need || same_grid(*need, y.quant)) {
      g_.add_op(code, version, {value(op.inputs[0])}, {value(op.output)});
      return;
    }
    const int mid = activation(y.name + ".raw", g_.tensor(value(op.output)).shape, *need);
    g_.add_op(code, version, {value(op.inputs[0])}, {mid});
    requantize(mid, value(op.output));
  }

  // The op's own 256-entry table, looked up by TFLite: CAST the codes to
  // int32, ADD 128, GATHER from the table (int8, on the output's grid), so
  // the runtime computes exactly bonsai's codes.
  void gather_table(const Int8Op& op) {
    BONSAI_CHECK(op.table.numel() == 256, "TFLite export: lookup from '" + op.source + "' has no 256-entry table");
    const std::vector<int32_t> shape = g_.tensor(value(op.inputs[0])).shape;
    const int wide = g_.add_tensor({.shape = shape, .type = s::kInt32, .name = op.source + ".codes"});
    g_.add_op(s::kCast, kV1, {value(op.inputs[0])}, {wide});
    const int index = g_.add_tensor({.shape = shape, .type = s::kInt32, .name = op.source + ".index"});
    g_.add_op(s::kAdd, kV1, {wide, g_.add_int32_constant(op.source + ".offset", {128})}, {index}, s::kAddOptions,
              {{s::add_options::fused_activation, s::kActNone, 1}});
    const int table = g_.add_constant(op.source + ".table", {256}, s::kInt8, op.table.data<int8_t>(), 256,
                                      per_tensor(m_.values()[op.output].quant));
    g_.add_op(s::kGather, kGatherVersion, {table, index}, {value(op.output)}, s::kGatherOptions,
              {{s::gather_options::axis, 0, 4}, {s::gather_options::batch_dims, 0, 4}});
  }

  void lookup(size_t i, const Int8Op& op) {
    if (!options_.native_activations) return gather_table(op);
    BONSAI_CHECK(!op.function.empty(), where(i, op) + ": the file does not record which function the table computes "
                                                      "(converted before it was recorded); re-convert the model");
    if (op.function == "relu") return unary(op, s::kRelu, kInt8Version);
    if (op.function == "relu6") return unary(op, s::kRelu6, kInt8Version);
    if (op.function == "hard_swish") return unary(op, s::kHardSwish, kV1);
    // TFLite's int8 LOGISTIC writes the grid [0, 1) with scale 1/256.
    if (op.function == "sigmoid") return unary(op, s::kLogistic, kInt8Version, AffineQuant{.scale = 1.0f / 256, .zero_point = -128});
    if (op.function == "hard_sigmoid") return hard_sigmoid(i, op);
    BONSAI_CHECK(false, where(i, op) + ": no TFLite op for the table of '" + op.function + "'");
  }

  // An op whose TFLite kernel keeps the input's grid (MAX_POOL_2D,
  // AVERAGE_POOL_2D, RESIZE_BILINEAR): its output tensor, followed by a
  // requantization when the value's grid differs.
  int same_grid_output(const Int8Op& op) {
    const Int8Value& x = m_.values()[op.inputs[0]];
    const Int8Value& y = m_.values()[op.output];
    if (same_grid(x.quant, y.quant)) return value(op.output);
    return activation(y.name + ".input_grid", g_.tensor(value(op.output)).shape, x.quant);
  }
  void finish_same_grid(const Int8Op& op, int out) {
    if (out != value(op.output)) requantize(out, value(op.output));
  }

  void pool(size_t i, const Int8Op& op, s::BuiltinOperator code) {
    // Max pooling ignores padding: explicit padding with the lowest code is
    // the same; average pooling counts only real positions: no explicit pad.
    const std::optional<int32_t> pad_code = code == s::kMaxPool2d ? std::optional<int32_t>(-128) : std::nullopt;
    const auto [in, padding] = window_input(i, op, pad_code);
    const int out = same_grid_output(op);
    const quant::Int8Geometry& g = op.geometry;
    BONSAI_CHECK(g.dilation_h == 1 && g.dilation_w == 1, where(i, op) + ": dilated pooling has no TFLite op");
    BONSAI_CHECK(op.act_min == -128 && op.act_max == 127, where(i, op) + ": pooling with a clamp is not supported");
    namespace f = s::pool2d_options;
    g_.add_op(code, kInt8Version, {in}, {out}, s::kPool2DOptions,
              {{f::padding, padding, 1}, {f::stride_w, g.stride_w, 4}, {f::stride_h, g.stride_h, 4},
               {f::filter_width, g.kw, 4}, {f::filter_height, g.kh, 4}, {f::fused_activation, s::kActNone, 1}});
    finish_same_grid(op, out);
  }

  void mean(size_t i, const Int8Op& op) {
    const Int8Value& x = m_.values()[op.inputs[0]];
    const Int8Value& y = m_.values()[op.output];
    BONSAI_CHECK(x.shape.size() == 3, where(i, op) + ": MEAN expects an [H, W, C] input");
    const int axes = g_.add_int32_constant(op.source + ".axes", {1, 2});
    g_.add_op(s::kMean, kInt8Version, {value(op.inputs[0]), axes}, {value(op.output)}, s::kReducerOptions,
              {{s::reducer_options::keep_dims, y.shape.size() == 3 ? 1 : 0, 1}});
  }

  void resize(size_t, const Int8Op& op) {
    const Int8Value& y = m_.values()[op.output];
    const int size = g_.add_int32_constant(op.source + ".size",
                                           {static_cast<int32_t>(y.shape[0]), static_cast<int32_t>(y.shape[1])});
    const int out = same_grid_output(op);
    namespace f = s::resize_bilinear_options;
    g_.add_op(s::kResizeBilinear, kResizeVersion, {value(op.inputs[0]), size}, {out}, s::kResizeBilinearOptions,
              {{f::align_corners, 0, 1}, {f::half_pixel_centers, 1, 1}});
    finish_same_grid(op, out);
  }

  // TFLite's int8 CONCATENATION needs every input on the output's grid:
  // inputs on other grids are requantized first (what bonsai's concat does).
  void concat(size_t, const Int8Op& op) {
    const Int8Value& y = m_.values()[op.output];
    std::vector<int32_t> inputs;
    for (int v : op.inputs) {
      const Int8Value& x = m_.values()[v];
      if (same_grid(x.quant, y.quant)) {
        inputs.push_back(value(v));
        continue;
      }
      const int t = activation(x.name + ".concat_grid", g_.tensor(value(v)).shape, y.quant);
      requantize(value(v), t);
      inputs.push_back(t);
    }
    namespace f = s::concatenation_options;
    const int axis = static_cast<int>(y.shape.size());  // the channel axis of [1, ..., C]
    g_.add_op(s::kConcatenation, kInt8Version, inputs, {value(op.output)}, s::kConcatenationOptions,
              {{f::axis, axis, 4}, {f::fused_activation, s::kActNone, 1}});
  }

  void lower(size_t i, const Int8Op& op) {
    switch (op.type) {
      case Int8OpType::quantize:
        g_.add_op(s::kQuantize, kInt8Version, {input_}, {value(op.output)});
        return;
      case Int8OpType::conv: return conv(i, op);
      case Int8OpType::fully_connected: return fully_connected(i, op);
      case Int8OpType::add: return binary(i, op, s::kAdd, s::kAddOptions);
      case Int8OpType::mul: return binary(i, op, s::kMul, s::kMulOptions);
      case Int8OpType::lookup: return lookup(i, op);
      case Int8OpType::mean: return mean(i, op);
      case Int8OpType::avg_pool: return pool(i, op, s::kAveragePool2d);
      case Int8OpType::max_pool: return pool(i, op, s::kMaxPool2d);
      case Int8OpType::resize: return resize(i, op);
      case Int8OpType::concat: return concat(i, op);
      case Int8OpType::requantize: return requantize(value(op.inputs[0]), value(op.output));
    }
    BONSAI_CHECK(false, where(i, op) + ": no TFLite mapping");
  }

  const Int8Model& m_;
  TfliteOptions options_;
  GraphBuilder g_;
  std::vector<int> value_tensor_;  // by value id; -1 until used
  int input_ = -1;
};

}  // namespace

std::vector<uint8_t> to_tflite(const quant::Int8Model& model, const TfliteOptions& options) {
  return Exporter(model, options).run();
}

void write_tflite(const quant::Int8Model& model, const std::string& path, const TfliteOptions& options) {
  const std::vector<uint8_t> bytes = to_tflite(model, options);
  io::write_file_atomically(path, bytes.data(), bytes.size());
}

}  // namespace bonsai::exporters
