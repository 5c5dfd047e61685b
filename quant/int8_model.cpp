#include "quant/int8_model.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_map>

#include "core/autograd.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "layers/layers.h"
#include "quant/fake_quant.h"
#include "quant/int8_kernels.h"
#include "quant/quantize.h"
#include "quant/trace.h"

namespace bonsai::quant {

namespace {

const char* kGraphKey = "bonsai.int8_graph";

const std::vector<std::pair<Int8OpType, const char*>>& op_names() {
  static const std::vector<std::pair<Int8OpType, const char*>> names{
      {Int8OpType::quantize, "quantize"}, {Int8OpType::conv, "conv"},
      {Int8OpType::fully_connected, "fully_connected"}, {Int8OpType::add, "add"},
      {Int8OpType::mul, "mul"}, {Int8OpType::lookup, "lookup"},
      {Int8OpType::mean, "mean"}, {Int8OpType::avg_pool, "avg_pool"},
      {Int8OpType::max_pool, "max_pool"}, {Int8OpType::resize, "resize"},
      {Int8OpType::concat, "concat"}, {Int8OpType::requantize, "requantize"}};
  return names;
}

const char* activation_function(ActivationKind k) {
  switch (k) {
    case ActivationKind::relu: return "relu";
    case ActivationKind::relu6: return "relu6";
    case ActivationKind::hard_swish: return "hard_swish";
    case ActivationKind::hard_sigmoid: return "hard_sigmoid";
    case ActivationKind::sigmoid: return "sigmoid";
  }
  return "";
}

Int8OpType op_type_from(const std::string& s) {
  for (const auto& [t, n] : op_names())
    if (s == n) return t;
  BONSAI_CHECK(false, "unknown int8 op type '" + s + "'");
  return Int8OpType::quantize;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Real value of code q (for tables and clamps).
float real_of(int32_t q, const AffineQuant& g) { return static_cast<float>(q - g.zero_point) * g.scale; }

}  // namespace

const char* op_type_name(Int8OpType t) {
  for (const auto& [type, n] : op_names())
    if (type == t) return n;
  return "?";
}

namespace {

// The code of v on g's grid, inv = 1 / g.scale. The multiply-add is one
// fused rounding (std::fma), written out so that quantize_input's vector
// form rounds alike whatever the compiler contracts.
int32_t code_on_grid(float v, float inv, const AffineQuant& g) {
  const float c = std::min(std::max(v, g.nudged_min), g.nudged_max);
  return g.qmin + static_cast<int32_t>(std::floor(std::fma(c - g.nudged_min, inv, 0.5f)));
}

}  // namespace

int32_t simulation_code(float v, const AffineQuant& g) { return code_on_grid(v, 1.0f / g.scale, g); }

namespace {

// simulation_code on every element, dividing by the scale once: 16 lanes
// at a time where the CPU has AVX-512. vmaxps / vminps with the bound first are std::max / std::min's
// selects (a NaN passes through both alike); the runtime test compares the
// two element by element.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on its own _mm512_undefined_* in the intrinsics
__attribute__((target("avx512f,avx512bw"))) void quantize_input_avx512(const float* x, const AffineQuant& g,
                                                                        int8_t* y, int64_t count) {
  const __m512 inv = _mm512_set1_ps(1.0f / g.scale), lo = _mm512_set1_ps(g.nudged_min),
               hi = _mm512_set1_ps(g.nudged_max), half = _mm512_set1_ps(0.5f);
  const __m512i qmin = _mm512_set1_epi32(g.qmin);
  int64_t e = 0;
  for (; e + 16 <= count; e += 16) {
    const __m512 c = _mm512_min_ps(hi, _mm512_max_ps(lo, _mm512_loadu_ps(x + e)));
    const __m512 r = _mm512_roundscale_ps(_mm512_fmadd_ps(_mm512_sub_ps(c, lo), inv, half),
                                          _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + e), _mm512_cvtepi32_epi8(_mm512_add_epi32(qmin, _mm512_cvttps_epi32(r))));
  }
  for (; e < count; ++e) y[e] = static_cast<int8_t>(code_on_grid(x[e], 1.0f / g.scale, g));
}
#pragma GCC diagnostic pop

void quantize_input(const float* x, const AffineQuant& g, int8_t* y, int64_t count) {
  if (int8::use_avx512()) return quantize_input_avx512(x, g, y, count);
  const float inv = 1.0f / g.scale;
  for (int64_t e = 0; e < count; ++e) y[e] = static_cast<int8_t>(code_on_grid(x[e], inv, g));
}

}  // namespace

// ---- conversion ---------------------------------------------------------------

namespace {

enum class Clamp { none, relu, relu6 };

// What a traced tensor is in the integer graph under construction: the float
// input, a quantized value, or an op still waiting for the quantizer that
// gives its output a grid ("pending").
struct Sym {
  enum class Kind { input, quantized, pending } kind = Kind::input;
  int value = -1;  // quantized
  // pending:
  Int8OpType type = Int8OpType::conv;
  const Module* layer = nullptr;  // the traced module (its name goes in errors and op.source)
  std::vector<int> inputs;
  std::vector<int64_t> shape;  // output, per image
  // conv / fully_connected: the weight layer, BN folding, fused clamp
  const Module* weight_layer = nullptr;
  bool has_bn = false;
  std::vector<double> bn_scale, bn_shift;
  std::vector<double> pre_scale;  // BN folded in training: σ/γ applied to the conv before its bias
  Clamp clamp = Clamp::none;
  // lookup: the float layer whose op the table reproduces
  const Module* unary = nullptr;
  Int8Geometry geometry;
};

std::vector<int64_t> per_image(const Shape& s) {
  std::vector<int64_t> out;
  for (int i = 1; i < s.rank(); ++i) out.push_back(s.dim(i));
  return out;
}

class Converter {
 public:
  Converter(Module& model, const Tensor& input) : input_(input) {
    model.visit([&](const std::string& name, Module& m) { names_[&m] = name; });
  }

  Int8Model run(const Trace& trace, const Tensor& output) {
    for (const TracedOp& op : trace.ops) step(op);
    Sym& out = lookup(output, "the model output");
    BONSAI_CHECK(out.kind == Sym::Kind::quantized,
                 "convert: the model output (from " + name_of(out.layer) +
                     ") has no quantizer; the integer graph must end on a quantized value");
    Int8Value in{"input", per_image(input_.shape()), {}};
    return Int8Model(std::move(values_), std::move(ops_), std::move(in), out.value);
  }

 private:
  std::string name_of(const Module* m) const {
    auto it = names_.find(m);
    return it == names_.end() ? std::string("<unnamed>") : (it->second.empty() ? "<model>" : it->second);
  }

  Sym& lookup(const Tensor& t, const std::string& user) {
    auto it = syms_.find(t.raw());
    if (it != syms_.end()) return it->second;
    BONSAI_CHECK(t.raw() == input_.raw(),
                 "convert: the value entering " + user + " (" + t.shape_str() +
                     ") was computed outside the quantized layers — an op inline in a block's forward? "
                     "Make it a layer (e.g. a merge layer) so it is quantized and traced");
    return input_sym_;
  }

  int quantized_input(const Tensor& t, const Module* user) {
    Sym& s = lookup(t, name_of(user));
    BONSAI_CHECK(s.kind == Sym::Kind::quantized,
                 "convert: " + name_of(user) + " reads " +
                     (s.kind == Sym::Kind::input ? std::string("the float model input")
                                                 : "the output of " + name_of(s.layer)) +
                     ", which has no quantizer; the integer graph needs it quantized");
    return s.value;
  }

  void bind(const Tensor& t, Sym s) { syms_[t.raw()] = std::move(s); }

  int new_value(const std::string& name, const Tensor& t, const AffineQuant& q) {
    values_.push_back({name, per_image(t.shape()), q});
    return static_cast<int>(values_.size()) - 1;
  }

  Sym pending(Int8OpType type, const Module* layer, std::vector<int> inputs, const Tensor& out) {
    Sym s;
    s.kind = Sym::Kind::pending;
    s.type = type;
    s.layer = layer;
    s.inputs = std::move(inputs);
    s.shape = per_image(out.shape());
    return s;
  }

  void step(const TracedOp& op) {
    const Module* m = op.module;
    if (auto* aq = dynamic_cast<const ActivationQuantizer*>(m)) return quantizer(*aq, op);
    if (auto* conv = dynamic_cast<const QuantConv2d*>(m)) {
      Sym s = pending(Int8OpType::conv, m, {quantized_input(op.inputs[0], m)}, op.output);
      s.weight_layer = conv;
      if (conv->folds_batch_norm()) {
        NoGrad ng;
        const Tensor u = conv->unfold_scale();
        s.pre_scale.assign(u.data<float>(), u.data<float>() + u.numel());
      }
      const Conv2dOptions& o = conv->conv_options();
      const Tensor& x = op.inputs[0];
      const ops::Padding pad = window_padding(o.padding, x.dim(1), x.dim(2), o.kernel, o.stride, o.dilation);
      s.geometry = {.kh = o.kernel, .kw = o.kernel, .stride_h = o.stride, .stride_w = o.stride,
                    .dilation_h = o.dilation, .dilation_w = o.dilation, .pad_top = pad.top,
                    .pad_left = pad.left, .groups = o.groups};
      return bind(op.output, std::move(s));
    }
    if (auto* dense = dynamic_cast<const QuantDense*>(m)) {
      Sym s = pending(Int8OpType::fully_connected, m, {quantized_input(op.inputs[0], m)}, op.output);
      s.weight_layer = dense;
      return bind(op.output, std::move(s));
    }
    if (auto* ql = dynamic_cast<const QuantLayer*>(m)) return layer(*ql, op);
    if (auto* qm = dynamic_cast<const QuantMerge*>(m)) return merge(*qm, op);
    BONSAI_CHECK(false, "convert: no integer form for traced layer " + name_of(m) + " (" + m->type_name() + ")");
  }

  void quantizer(const ActivationQuantizer& aq, const TracedOp& op) {
    BONSAI_CHECK(aq.num_bits() == 8, "convert: " + name_of(&aq) + " is " + std::to_string(aq.num_bits()) +
                                         "-bit; only 8-bit models run as integers");
    const AffineQuant grid = aq.grid();
    Sym& s = lookup(op.inputs[0], name_of(&aq));
    const int v = new_value(name_of(&aq), op.output, grid);
    if (s.kind == Sym::Kind::input) {
      emit(Int8OpType::quantize, name_of(&aq), {}, v);
    } else if (s.kind == Sym::Kind::quantized) {
      emit(Int8OpType::requantize, name_of(&aq), {s.value}, v);
    } else {
      materialize(s, v);
    }
    Sym q;
    q.kind = Sym::Kind::quantized;
    q.value = v;
    q.layer = &aq;
    bind(op.output, std::move(q));
  }

  void layer(const QuantLayer& ql, const TracedOp& op) {
    const Module& inner = ql.layer();
    const std::string name = name_of(&ql);
    if (auto* bn = dynamic_cast<const BatchNorm2d*>(&inner)) {
      Sym s = lookup(op.inputs[0], name);
      BONSAI_CHECK(s.kind == Sym::Kind::pending && s.type == Int8OpType::conv && !s.has_bn &&
                       s.clamp == Clamp::none,
                   "convert: batch norm " + name + " must follow a convolution directly to fold into it");
      const int64_t c = bn->gamma.numel();
      s.has_bn = true;
      s.bn_scale.resize(c);
      s.bn_shift.resize(c);
      for (int64_t i = 0; i < c; ++i) std::tie(s.bn_scale[i], s.bn_shift[i]) = batch_norm_affine(*bn, i);
      s.layer = &ql;
      return bind(op.output, std::move(s));
    }
    if (auto* act = dynamic_cast<const Activation*>(&inner)) {
      Sym s = lookup(op.inputs[0], name);
      const bool relu_like = act->kind() == ActivationKind::relu || act->kind() == ActivationKind::relu6;
      if (relu_like && s.kind == Sym::Kind::pending && s.clamp == Clamp::none &&
          (s.type == Int8OpType::conv || s.type == Int8OpType::fully_connected || s.type == Int8OpType::add ||
           s.type == Int8OpType::mul)) {
        s.clamp = act->kind() == ActivationKind::relu ? Clamp::relu : Clamp::relu6;
        s.layer = &ql;
        return bind(op.output, std::move(s));
      }
      Sym t = pending(Int8OpType::lookup, &ql, {quantized_input(op.inputs[0], &ql)}, op.output);
      t.unary = &inner;
      return bind(op.output, std::move(t));
    }
    const int in = quantized_input(op.inputs[0], &ql);
    const Tensor& x = op.inputs[0];
    auto pool_geometry = [&](const PoolOptions& o) {
      const ops::Padding pad = window_padding(o.padding, x.dim(1), x.dim(2), o.kernel, o.stride, 1);
      return Int8Geometry{.kh = o.kernel, .kw = o.kernel, .stride_h = o.stride, .stride_w = o.stride,
                          .pad_top = pad.top, .pad_left = pad.left};
    };
    if (auto* mp = dynamic_cast<const MaxPool2d*>(&inner)) {
      // Max pooling keeps its input's grid: a value of its own, same parameters.
      const int v = new_value(name, op.output, values_[in].quant);
      Int8Op& o = emit(Int8OpType::max_pool, name, {in}, v);
      o.geometry = pool_geometry(mp->options());
      Sym q;
      q.kind = Sym::Kind::quantized;
      q.value = v;
      q.layer = &ql;
      return bind(op.output, std::move(q));
    }
    if (auto* ap = dynamic_cast<const AvgPool2d*>(&inner)) {
      Sym s = pending(Int8OpType::avg_pool, &ql, {in}, op.output);
      s.geometry = pool_geometry(ap->options());
      return bind(op.output, std::move(s));
    }
    if (dynamic_cast<const GlobalAvgPool*>(&inner)) return bind(op.output, pending(Int8OpType::mean, &ql, {in}, op.output));
    if (dynamic_cast<const Resize*>(&inner)) return bind(op.output, pending(Int8OpType::resize, &ql, {in}, op.output));
    BONSAI_CHECK(false, "convert: layer " + name + " (" + inner.type_name() + ") has no integer form");
  }

  void merge(const QuantMerge& qm, const TracedOp& op) {
    const Merge& inner = qm.layer();
    if (dynamic_cast<const ResizeLike*>(&inner))  // the second input is only a size
      return bind(op.output, pending(Int8OpType::resize, &qm, {quantized_input(op.inputs[0], &qm)}, op.output));
    std::vector<int> ins;
    for (const Tensor& t : op.inputs) ins.push_back(quantized_input(t, &qm));
    Int8OpType type;
    if (dynamic_cast<const Add*>(&inner)) {
      BONSAI_CHECK(ins.size() == 2, "convert: " + name_of(&qm) + " adds " + std::to_string(ins.size()) +
                                        " tensors; the integer ADD takes two");
      type = Int8OpType::add;
    } else if (dynamic_cast<const Multiply*>(&inner)) {
      type = Int8OpType::mul;
    } else if (dynamic_cast<const Concat*>(&inner)) {
      type = Int8OpType::concat;
    } else {
      BONSAI_CHECK(false, "convert: merge " + name_of(&qm) + " (" + inner.type_name() + ") has no integer form");
    }
    bind(op.output, pending(type, &qm, std::move(ins), op.output));
  }

  Int8Op& emit(Int8OpType type, const std::string& source, std::vector<int> inputs, int output) {
    Int8Op o;
    o.type = type;
    o.source = source;
    o.inputs = std::move(inputs);
    o.output = output;
    ops_.push_back(std::move(o));
    return ops_.back();
  }

  // The pending op `s`, its output quantized to value v.
  void materialize(const Sym& s, int v) {
    const AffineQuant& out = values_[v].quant;
    Int8Op& o = emit(s.type, name_of(s.layer), s.inputs, v);
    o.geometry = s.geometry;
    if (s.clamp != Clamp::none) {
      o.act_min = std::max(out.qmin, simulation_code(0.0f, out));
      if (s.clamp == Clamp::relu6) o.act_max = std::min(out.qmax, simulation_code(6.0f, out));
    }
    if (s.type == Int8OpType::conv || s.type == Int8OpType::fully_connected) return weights(s, o);
    if (s.type == Int8OpType::lookup) {
      o.function = activation_function(static_cast<const Activation&>(*s.unary).kind());
      return table(s, o);
    }
  }

  // Integer weights with BN folded: codes of the fake-quantized kernel,
  // sign-flipped where γ/σ < 0, channel scale s_w·|γ/σ|; bias at s_in·s_w.
  void weights(const Sym& s, Int8Op& o) {
    Tensor wq, kernel_bias;
    // Convolutions are per channel in the integer model even when trained
    // per tensor: the channel scale then absorbs the folded BN factor.
    bool per_channel = true, grid_per_channel = true;
    {
      NoGrad ng;
      if (auto* conv = dynamic_cast<const QuantConv2d*>(s.weight_layer)) {
        wq = conv->quantized_kernel();
        kernel_bias = conv->bias;
        grid_per_channel = conv->per_channel();
      } else {
        auto* dense = dynamic_cast<const QuantDense*>(s.weight_layer);
        wq = dense->quantized_kernel();
        kernel_bias = dense->bias;
        per_channel = grid_per_channel = false;
      }
    }
    const int64_t cout = wq.dim(-1), n = wq.numel();
    // The simulation's grid per channel (or per tensor): symmetric around
    // the largest |w|, which the fake-quantized kernel keeps exactly.
    const std::vector<float> absmax = weight_absmax(wq, grid_per_channel);
    const float* pw = wq.data<float>();
    const double s_in = values_[s.inputs[0]].quant.scale;
    o.weights = Tensor::empty(wq.shape(), DType::s8);
    o.weight_scales = Tensor::empty({per_channel ? cout : 1});
    o.bias = Tensor::zeros({cout}, DType::s32);
    std::vector<float> grid_scale(absmax.size());
    for (size_t c = 0; c < absmax.size(); ++c) grid_scale[c] = weight_quant(absmax[c]).scale;
    std::vector<FoldedChannel> folded(cout);
    for (int64_t c = 0; c < cout; ++c) {
      folded[c] = fold_channel(grid_scale[grid_per_channel ? c : 0], s.has_bn ? s.bn_scale[c] : 1.0,
                               s.has_bn ? s.bn_shift[c] : 0.0, s.pre_scale.empty() ? 1.0 : s.pre_scale[c],
                               kernel_bias.defined() ? kernel_bias.data<float>()[c] : 0.0);
      if (per_channel) o.weight_scales.data<float>()[c] = static_cast<float>(folded[c].weight_scale);
      o.bias.data<int32_t>()[c] = quantize_bias(folded[c].bias, s_in, folded[c].weight_scale);
    }
    BONSAI_CHECK(per_channel || !s.has_bn, "convert: batch norm cannot fold into dense layer " + name_of(s.layer));
    if (!per_channel) o.weight_scales.data<float>()[0] = static_cast<float>(folded[0].weight_scale);
    int8_t* q = o.weights.data<int8_t>();
    for (int64_t i = 0; i < n; ++i) {
      const float s_w = grid_scale[grid_per_channel ? i % cout : 0];
      const double k = folded[i % cout].k;
      const long code = k == 0 ? 0 : std::lround(pw[i] / s_w) * (k < 0 ? -1L : 1L);
      q[i] = static_cast<int8_t>(std::clamp<long>(code, -127, 127));
    }
  }

  // table[q + 128] = the simulation's code for f(real(q)): real(q) = (q − z)·s
  // is the float the simulation's quantizer gives code q (quant/fake_quant.h),
  // so the table is f as the simulation computes it, ties included.
  void table(const Sym& s, Int8Op& o) {
    const AffineQuant& in = values_[s.inputs[0]].quant;
    const AffineQuant& out = values_[o.output].quant;
    Tensor x = Tensor::empty({256});
    for (int q = -128; q < 128; ++q) x.data<float>()[q + 128] = real_of(q, in);
    Tensor y;
    {
      NoGrad ng;
      y = const_cast<Module*>(s.unary)->forward(x);
    }
    o.table = Tensor::empty({256}, DType::s8);
    for (int i = 0; i < 256; ++i) {
      // Codes below the input's range never occur; the table still maps them.
      o.table.data<int8_t>()[i] = static_cast<int8_t>(simulation_code(y.data<float>()[i], out));
    }
  }

  Tensor input_;
  Sym input_sym_;  // what the model input is: the float input (never bound, never changed)
  std::unordered_map<const Module*, std::string> names_;
  std::unordered_map<const void*, Sym> syms_;
  std::vector<Int8Value> values_;
  std::vector<Int8Op> ops_;
};

}  // namespace

Int8Model convert(Module& qat_model, const Tensor& sample) {
  BONSAI_CHECK(sample.rank() == 4 && sample.dtype() == DType::f32,
               "convert: the sample input must be float [N, H, W, C], got " + sample.shape_str());
  bool quantized = false;
  qat_model.visit([&](const std::string&, Module& m) { quantized = quantized || dynamic_cast<ActivationQuantizer*>(&m); });
  BONSAI_CHECK(quantized, "convert: the model (" + qat_model.type_name() +
                              ") has no quantizers; apply quant::quantize and train (or calibrate) first");
  const bool was_training = qat_model.is_training();
  qat_model.eval();
  Trace trace;
  Tensor out;
  {
    NoGrad ng;
    TraceScope scope(trace);
    out = qat_model.forward(sample);
  }
  qat_model.train(was_training);
  Converter c(qat_model, sample);
  return c.run(trace, out);
}

// ---- runtime ----------------------------------------------------------------------
//
// prepared(batch) builds, once per batch size, everything run() needs:
// a kernel or parameters per op (convolutions and fully connected layers as
// Conv2dKernels with their weights reordered for oneDNN; ADD and MUL as
// 64 KiB pair tables; requantization as a 256-entry table), one scratch
// buffer the convolutions share for their int32 accumulators, and the value
// buffers: values whose lifetimes do not overlap share one (a value dies
// after its last reader), so a run allocates nothing but its float output
// and touches little memory.

namespace {

// The profile's name for an op: its type, with convolutions split by kind.
std::string profile_key(const Int8Op& o) {
  if (o.type != Int8OpType::conv) return op_type_name(o.type);
  if (o.geometry.groups > 1) return "conv_depthwise";
  return o.geometry.kh == 1 && o.geometry.kw == 1 ? "conv_1x1" : "conv";
}

}  // namespace

struct Int8Model::Prepared {
  int64_t batch = 1;
  // By op index; each op uses the one its type needs.
  std::vector<std::unique_ptr<int8::Conv2dKernel>> convs;  // conv, fully_connected
  std::vector<std::unique_ptr<int8::PairTable>> pairs;     // add, mul
  std::vector<std::vector<int8_t>> tables;                 // requantize
  std::vector<int8::MeanParams> mean;
  std::vector<int8::PoolParams> pool;
  std::vector<int8::ResizeParams> resize;
  std::vector<std::string> profile_keys;
  Tensor scratch;  // s8 [bytes]: the convolutions' accumulators, one at a time
  // Value buffers: value v lives in slots[slot_of[v]].
  std::vector<int> slot_of;
  std::vector<Tensor> slots;  // s8
};

Int8Model::Int8Model() = default;
Int8Model::~Int8Model() = default;
Int8Model::Int8Model(Int8Model&&) noexcept = default;
Int8Model& Int8Model::operator=(Int8Model&&) noexcept = default;

Int8Model::Int8Model(std::vector<Int8Value> values, std::vector<Int8Op> ops, Int8Value input, int output)
    : values_(std::move(values)), ops_(std::move(ops)), input_(std::move(input)), output_(output) {
  validate();
}

int64_t Int8Model::parameter_bytes() const {
  int64_t bytes = 0;
  for (const Int8Op& o : ops_)
    for (const Tensor* t : {&o.weights, &o.bias, &o.table, &o.weight_scales})
      if (t->defined()) bytes += static_cast<int64_t>(t->nbytes());
  return bytes;
}

void Int8Model::validate() const {
  BONSAI_CHECK(input_.shape.size() == 3, "int8 model: the input must be [H, W, C] per image");
  BONSAI_CHECK(output_ >= 0 && output_ < static_cast<int>(values_.size()), "int8 model: bad output value id");
  // Every per-image shape has positive extents and a size that int64 (and
  // memory) can hold, checked before any product of extents is formed: the
  // shapes come from the file, and numel_of does not guard overflow.
  auto check_shape = [](const std::vector<int64_t>& shape, const std::string& what) {
    BONSAI_CHECK(!shape.empty() && shape.size() <= 3, "int8 model: " + what + " must have 1 to 3 dims per image");
    int64_t n = 1;
    for (int64_t d : shape) {
      BONSAI_CHECK(d >= 1 && d <= (int64_t{1} << 31) && n <= (int64_t{1} << 31) / d,
                   "int8 model: " + what + " has a non-positive or too large extent " + std::to_string(d));
      n *= d;
    }
  };
  check_shape(input_.shape, "the input");
  for (const Int8Value& v : values_) check_shape(v.shape, "value '" + v.name + "'");
  std::vector<bool> defined(values_.size(), false);
  for (size_t i = 0; i < ops_.size(); ++i) {
    const Int8Op& o = ops_[i];
    const std::string where = "int8 model op " + std::to_string(i) + " (" + op_type_name(o.type) + " from " +
                              o.source + ")";
    BONSAI_CHECK(o.output >= 0 && o.output < static_cast<int>(values_.size()) && !defined[o.output],
                 where + ": bad or repeated output value id");
    for (int in : o.inputs)
      BONSAI_CHECK(in >= 0 && in < static_cast<int>(values_.size()) && defined[in],
                   where + ": input value " + std::to_string(in) + " is not defined before it");
    const auto& out = values_[o.output].shape;
    auto in_shape = [&](size_t k) -> const std::vector<int64_t>& { return values_[o.inputs.at(k)].shape; };
    auto need_inputs = [&](size_t n) {
      BONSAI_CHECK(o.inputs.size() == n, where + ": needs " + std::to_string(n) + " inputs, has " +
                                             std::to_string(o.inputs.size()));
    };
    switch (o.type) {
      case Int8OpType::quantize:
        need_inputs(0);
        BONSAI_CHECK(out == input_.shape, where + ": must have the input's shape");
        break;
      case Int8OpType::conv: {
        need_inputs(1);
        const Int8Geometry& g = o.geometry;
        BONSAI_CHECK(in_shape(0).size() == 3 && out.size() == 3, where + ": needs [H, W, C] values");
        const int64_t cin = in_shape(0)[2], cout = out[2];
        // groups first: it divides cin below.
        BONSAI_CHECK(g.groups >= 1 && (g.groups == 1 || (g.groups == cin && cin == cout)),
                     where + ": groups must be 1 or the channels");
        BONSAI_CHECK(o.weights.defined() && o.weights.dtype() == DType::s8 &&
                         o.weights.shape() == (Shape{g.kh, g.kw, cin / g.groups, cout}),
                     where + ": weights must be s8 [kh, kw, cin/groups, cout]");
        BONSAI_CHECK(o.bias.defined() && o.bias.dtype() == DType::s32 && o.bias.numel() == cout,
                     where + ": bias must be s32 [cout]");
        BONSAI_CHECK(o.weight_scales.defined() && o.weight_scales.numel() == cout, where + ": weight_scales must be [cout]");
        BONSAI_CHECK(g.kh >= 1 && g.kw >= 1 && g.stride_h >= 1 && g.stride_w >= 1 && g.dilation_h >= 1 &&
                         g.dilation_w >= 1 && g.pad_top >= 0 && g.pad_left >= 0,
                     where + ": bad window geometry");
        break;
      }
      case Int8OpType::fully_connected: {
        need_inputs(1);
        const int64_t in = numel_of(in_shape(0)), n_out = numel_of(out);
        BONSAI_CHECK(o.weights.defined() && o.weights.dtype() == DType::s8 && o.weights.shape() == (Shape{in, n_out}),
                     where + ": weights must be s8 [in, out]");
        BONSAI_CHECK(o.bias.defined() && o.bias.dtype() == DType::s32 && o.bias.numel() == n_out,
                     where + ": bias must be s32 [out]");
        BONSAI_CHECK(o.weight_scales.defined() && o.weight_scales.numel() == 1, where + ": one weight scale");
        break;
      }
      case Int8OpType::add:
        need_inputs(2);
        BONSAI_CHECK(in_shape(0) == out && in_shape(1) == out, where + ": inputs and output must have one shape");
        break;
      case Int8OpType::mul:
        need_inputs(2);
        BONSAI_CHECK(in_shape(0) == out && (in_shape(1) == out || (out.size() == 3 && in_shape(1).size() == 3 &&
                                                                   in_shape(1)[0] == 1 && in_shape(1)[1] == 1 &&
                                                                   in_shape(1)[2] == out[2])),
                     where + ": the second input must match the first or be [1, 1, C]");
        break;
      case Int8OpType::lookup:
      case Int8OpType::requantize:
        need_inputs(1);
        BONSAI_CHECK(numel_of(in_shape(0)) == numel_of(out), where + ": input and output sizes differ");
        if (o.type == Int8OpType::lookup)
          BONSAI_CHECK(o.table.defined() && o.table.dtype() == DType::s8 && o.table.numel() == 256,
                       where + ": the table must be s8 [256]");
        break;
      case Int8OpType::mean:
      case Int8OpType::avg_pool:
      case Int8OpType::max_pool:
      case Int8OpType::resize:
        need_inputs(1);
        BONSAI_CHECK(in_shape(0).size() == 3 && out.size() == 3 && in_shape(0)[2] == out[2],
                     where + ": needs [H, W, C] values with equal channels");
        break;
      case Int8OpType::concat: {
        BONSAI_CHECK(!o.inputs.empty() && out.size() == 3, where + ": needs inputs and an [H, W, C] output");
        int64_t c = 0;
        for (size_t k = 0; k < o.inputs.size(); ++k) {
          BONSAI_CHECK(in_shape(k).size() == 3 && in_shape(k)[0] == out[0] && in_shape(k)[1] == out[1],
                       where + ": inputs must share H and W with the output");
          c += in_shape(k)[2];
        }
        BONSAI_CHECK(c == out[2], where + ": input channels do not add up to the output's");
        break;
      }
    }
    defined[o.output] = true;
  }
  BONSAI_CHECK(defined[output_], "int8 model: no op computes the output value");
}

void Int8Model::set_rescaling(int8::Rescaling r) {
  if (r == rescaling_) return;
  rescaling_ = r;
  prepared_.clear();  // kernels are prepared for one rescaling
}

Int8Model::Prepared& Int8Model::prepared(int64_t batch) {
  auto it = prepared_.find(batch);
  if (it != prepared_.end()) return *it->second;
  auto p = std::make_unique<Prepared>();
  p->batch = batch;
  const size_t n = ops_.size();
  p->convs.resize(n);
  p->pairs.resize(n);
  p->tables.resize(n);
  p->mean.resize(n);
  p->pool.resize(n);
  p->resize.resize(n);
  const int nb = static_cast<int>(batch);
  size_t scratch_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    const Int8Op& o = ops_[i];
    const Int8Value& out = values_[o.output];
    const AffineQuant& oq = out.quant;
    p->profile_keys.push_back(profile_key(o));
    switch (o.type) {
      case Int8OpType::conv: {
        const Int8Value& in = values_[o.inputs[0]];
        const Int8Geometry& g = o.geometry;
        int8::ConvParams cp{.n = nb, .h = static_cast<int>(in.shape[0]), .w = static_cast<int>(in.shape[1]),
                            .c_in = static_cast<int>(in.shape[2]), .oh = static_cast<int>(out.shape[0]),
                            .ow = static_cast<int>(out.shape[1]), .c_out = static_cast<int>(out.shape[2]),
                            .kh = g.kh, .kw = g.kw, .stride_h = g.stride_h, .stride_w = g.stride_w,
                            .dilation_h = g.dilation_h, .dilation_w = g.dilation_w, .pad_top = g.pad_top,
                            .pad_left = g.pad_left, .groups = g.groups,
                            .input_zero_point = in.quant.zero_point, .output_zero_point = oq.zero_point,
                            .act_min = o.act_min, .act_max = o.act_max};
        std::vector<QuantizedMultiplier> m(cp.c_out);
        std::vector<float> f;
        for (int c = 0; c < cp.c_out; ++c) {
          const float ws = o.weight_scales.data<float>()[c];
          m[c] = quantize_multiplier(static_cast<double>(in.quant.scale) * ws / oq.scale);
          if (int8::uses_float32_scales(rescaling_)) f.push_back(int8::float32_scale(in.quant.scale, ws, oq.scale));
        }
        p->convs[i] = std::make_unique<int8::Conv2dKernel>(cp, o.weights.data<int8_t>(), o.bias.data<int32_t>(), m, f);
        break;
      }
      case Int8OpType::fully_connected: {
        // A 1x1 convolution of [n, 1, 1, in]: the same sum, bias and
        // requantization (weights [in, out] are HWIO [1, 1, in, out]), on oneDNN.
        const Int8Value& in = values_[o.inputs[0]];
        const int n_in = static_cast<int>(numel_of(in.shape)), n_out = static_cast<int>(numel_of(out.shape));
        int8::ConvParams cp{.n = nb, .h = 1, .w = 1, .c_in = n_in, .oh = 1, .ow = 1, .c_out = n_out,
                            .input_zero_point = in.quant.zero_point, .output_zero_point = oq.zero_point,
                            .act_min = o.act_min, .act_max = o.act_max};
        const float ws = o.weight_scales.data<float>()[0];
        const std::vector<QuantizedMultiplier> m(n_out,
                                                 quantize_multiplier(static_cast<double>(in.quant.scale) * ws / oq.scale));
        std::vector<float> f;
        if (int8::uses_float32_scales(rescaling_)) f.assign(n_out, int8::float32_scale(in.quant.scale, ws, oq.scale));
        p->convs[i] = std::make_unique<int8::Conv2dKernel>(cp, o.weights.data<int8_t>(), o.bias.data<int32_t>(), m, f);
        break;
      }
      case Int8OpType::add: {
        const AffineQuant &a = values_[o.inputs[0]].quant, &b = values_[o.inputs[1]].quant;
        p->pairs[i] = std::make_unique<int8::PairTable>(
            int8::uses_float32_scales(rescaling_)
                ? int8::PairTable::add(int8::make_add_float32_params(
                      a, b, oq, o.act_min, o.act_max, int8::add_code_offset(rescaling_)))
                : int8::PairTable::add(int8::make_add_params(a, b, oq, o.act_min, o.act_max)));
        break;
      }
      case Int8OpType::mul:
        p->pairs[i] = std::make_unique<int8::PairTable>(int8::PairTable::mul(
            int8::make_mul_params(values_[o.inputs[0]].quant, values_[o.inputs[1]].quant, oq, o.act_min, o.act_max)));
        break;
      case Int8OpType::mean: {
        const auto& s = values_[o.inputs[0]].shape;
        p->mean[i] = int8::make_mean_params(nb, static_cast<int>(s[0]), static_cast<int>(s[1]),
                                            static_cast<int>(s[2]), values_[o.inputs[0]].quant, oq);
        break;
      }
      case Int8OpType::avg_pool:
      case Int8OpType::max_pool: {
        const Int8Value& in = values_[o.inputs[0]];
        const Int8Geometry& g = o.geometry;
        p->pool[i] = {.n = nb, .h = static_cast<int>(in.shape[0]), .w = static_cast<int>(in.shape[1]),
                      .c = static_cast<int>(in.shape[2]), .oh = static_cast<int>(out.shape[0]),
                      .ow = static_cast<int>(out.shape[1]), .kh = g.kh, .kw = g.kw, .stride_h = g.stride_h,
                      .stride_w = g.stride_w, .pad_top = g.pad_top, .pad_left = g.pad_left,
                      .input_zero_point = in.quant.zero_point, .output_zero_point = oq.zero_point,
                      .input_scale = in.quant.scale, .output_scale = oq.scale};
        break;
      }
      case Int8OpType::resize: {
        const auto& s = values_[o.inputs[0]].shape;
        p->resize[i] = int8::make_resize_params(nb, static_cast<int>(s[0]), static_cast<int>(s[1]),
                                                static_cast<int>(s[2]), static_cast<int>(out.shape[0]),
                                                static_cast<int>(out.shape[1]), values_[o.inputs[0]].quant, oq);
        break;
      }
      case Int8OpType::requantize:
        p->tables[i] = int8::make_requantize_table(int8::make_requantize_params(values_[o.inputs[0]].quant, oq));
        break;
      default:
        break;
    }
    if (p->convs[i]) scratch_bytes = std::max(scratch_bytes, p->convs[i]->scratch_bytes());
  }
  if (scratch_bytes > 0) p->scratch = Tensor::empty(Shape{static_cast<int64_t>(scratch_bytes)}, DType::s8);

  // Buffers by liveness: walking the ops in order, each output takes the
  // smallest free buffer that holds it (else grows the largest free one, else
  // a new one), and a value's buffer is freed after its last reader ran. The
  // output is chosen before the op's inputs are freed, so it never shares
  // with them. The model output is never freed.
  std::vector<int> last_read(values_.size(), -1);
  for (size_t i = 0; i < n; ++i)
    for (int v : ops_[i].inputs) last_read[v] = static_cast<int>(i);
  std::vector<int64_t> capacity;  // by slot
  std::vector<int> free_slots;
  p->slot_of.assign(values_.size(), -1);
  auto release = [&](int v) {
    if (v != output_) free_slots.push_back(p->slot_of[v]);
  };
  for (size_t i = 0; i < n; ++i) {
    const int v = ops_[i].output;
    const int64_t need = batch * numel_of(values_[v].shape);
    auto best = free_slots.end();
    for (auto s = free_slots.begin(); s != free_slots.end(); ++s) {
      const bool fits = capacity[*s] >= need, best_fits = best != free_slots.end() && capacity[*best] >= need;
      if (best == free_slots.end() || (fits && (!best_fits || capacity[*s] < capacity[*best])) ||
          (!fits && !best_fits && capacity[*s] > capacity[*best]))
        best = s;
    }
    if (best == free_slots.end()) {
      p->slot_of[v] = static_cast<int>(capacity.size());
      capacity.push_back(need);
    } else {
      p->slot_of[v] = *best;
      capacity[*best] = std::max(capacity[*best], need);
      free_slots.erase(best);
    }
    std::vector<int> inputs = ops_[i].inputs;
    std::sort(inputs.begin(), inputs.end());
    inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
    for (int u : inputs)
      if (last_read[u] == static_cast<int>(i)) release(u);
    if (last_read[v] < 0) release(v);  // nothing reads it
  }
  for (int64_t c : capacity) p->slots.push_back(Tensor::empty(Shape{c}, DType::s8));
  return *prepared_.emplace(batch, std::move(p)).first->second;
}

void Int8Model::execute(size_t i, Prepared& p, const std::vector<int8_t*>& codes, const Tensor& images) {
  const Int8Op& o = ops_[i];
  int8_t* y = codes[o.output];
  auto in = [&](size_t k) -> const int8_t* { return codes[o.inputs[k]]; };
  const int64_t count = p.batch * numel_of(values_[o.output].shape);
  switch (o.type) {
    case Int8OpType::quantize: quantize_input(images.data<float>(), values_[o.output].quant, y, count); break;
    case Int8OpType::conv:
    case Int8OpType::fully_connected: p.convs[i]->run(in(0), y, p.scratch.raw()); break;
    case Int8OpType::add: p.pairs[i]->run(in(0), in(1), y, count); break;
    case Int8OpType::mul: {
      const auto& a = values_[o.inputs[0]].shape;
      const bool broadcast = values_[o.inputs[1]].shape != a;
      const int64_t inner = a.back(), outer = count / inner;
      p.pairs[i]->run(in(0), in(1), y, outer, inner, broadcast ? a[0] * a[1] : 1);
      break;
    }
    case Int8OpType::lookup: int8::lookup(o.table.data<int8_t>(), in(0), y, count); break;
    case Int8OpType::requantize: int8::lookup(p.tables[i].data(), in(0), y, count); break;
    case Int8OpType::mean: int8::mean_hw(p.mean[i], in(0), y); break;
    case Int8OpType::avg_pool: int8::avg_pool(p.pool[i], in(0), y); break;
    case Int8OpType::max_pool: int8::max_pool(p.pool[i], in(0), y); break;
    case Int8OpType::resize: int8::resize_bilinear(p.resize[i], in(0), y); break;
    case Int8OpType::concat: {
      std::vector<int8::ConcatInput> parts;
      for (size_t k = 0; k < o.inputs.size(); ++k)
        parts.push_back({in(k), static_cast<int>(values_[o.inputs[k]].shape.back()), values_[o.inputs[k]].quant});
      int8::concat(parts, values_[o.output].quant, count / values_[o.output].shape.back(), y);
      break;
    }
  }
}

Tensor Int8Model::execute(size_t i, const std::vector<Tensor>& buf, const Tensor& images) {
  const int64_t batch = images.dim(0);
  Prepared& p = prepared(batch);
  const Int8Op& o = ops_[i];
  std::vector<int64_t> dims{batch};
  for (int64_t d : values_[o.output].shape) dims.push_back(d);
  Tensor y = Tensor::empty(Shape(dims), DType::s8);
  std::vector<int8_t*> codes(values_.size(), nullptr);
  for (int v : o.inputs) codes[v] = buf[v].data<int8_t>();
  codes[o.output] = y.data<int8_t>();
  execute(i, p, codes, images);
  return y;
}

Tensor Int8Model::run(const Tensor& images) { return run(images, nullptr); }

Tensor Int8Model::run(const Tensor& images, std::vector<Tensor>* codes) {
  BONSAI_CHECK(images.rank() == 4 && images.dtype() == DType::f32 && images.dim(1) == input_.shape[0] &&
                   images.dim(2) == input_.shape[1] && images.dim(3) == input_.shape[2],
               "int8 model expects float images [N, " + std::to_string(input_.shape[0]) + ", " +
                   std::to_string(input_.shape[1]) + ", " + std::to_string(input_.shape[2]) + "], got " +
                   images.shape_str());
  const int64_t batch = images.dim(0);
  Prepared& p = prepared(batch);
  auto shape_of = [&](int v) {
    std::vector<int64_t> dims{batch};
    for (int64_t d : values_[v].shape) dims.push_back(d);
    return Shape(dims);
  };
  // Where each value's codes go: the shared buffers, or (when the caller
  // wants them all) a tensor per value.
  std::vector<int8_t*> ptrs(values_.size(), nullptr);
  if (codes) {
    codes->assign(values_.size(), Tensor());
    for (size_t v = 0; v < values_.size(); ++v) {
      (*codes)[v] = Tensor::empty(shape_of(static_cast<int>(v)), DType::s8);
      ptrs[v] = (*codes)[v].data<int8_t>();
    }
  } else {
    for (size_t v = 0; v < values_.size(); ++v)
      if (p.slot_of[v] >= 0) ptrs[v] = p.slots[p.slot_of[v]].data<int8_t>();
  }
  using clock = std::chrono::steady_clock;
  for (size_t i = 0; i < ops_.size(); ++i) {
    const auto t0 = profiling_ ? clock::now() : clock::time_point{};
    execute(i, p, ptrs, images);
    if (profiling_) profile_[p.profile_keys[i]] += std::chrono::duration<double>(clock::now() - t0).count();
  }
  const auto t0 = profiling_ ? clock::now() : clock::time_point{};
  Tensor result = Tensor::empty(shape_of(output_));
  int8::dequantize(ptrs[output_], values_[output_].quant, result.data<float>(), result.numel());
  if (profiling_) {
    profile_["dequantize"] += std::chrono::duration<double>(clock::now() - t0).count();
    ++profiled_runs_;
  }
  return result;
}

void Int8Model::set_profiling(bool on) {
  profiling_ = on;
  if (on) {
    profile_.clear();
    profiled_runs_ = 0;
  }
}

// ---- file ------------------------------------------------------------------------

namespace {

nlohmann::json quant_json(const AffineQuant& q) {
  return {{"scale", q.scale}, {"zero_point", q.zero_point}, {"qmin", q.qmin}, {"qmax", q.qmax},
          {"nudged_min", q.nudged_min}, {"nudged_max", q.nudged_max}};
}

AffineQuant quant_from(const nlohmann::json& j) {
  AffineQuant q;
  q.scale = j.at("scale").get<float>();
  q.zero_point = j.at("zero_point").get<int32_t>();
  q.qmin = j.at("qmin").get<int32_t>();
  q.qmax = j.at("qmax").get<int32_t>();
  q.nudged_min = j.at("nudged_min").get<float>();
  q.nudged_max = j.at("nudged_max").get<float>();
  BONSAI_CHECK(q.scale > 0 && std::isfinite(q.scale) && q.qmin == -128 && q.qmax == 127 && q.zero_point >= -128 &&
                   q.zero_point <= 127,
               "bad quantization parameters (int8 grid with a positive scale expected)");
  return q;
}

}  // namespace

void Int8Model::save(const std::string& path) const {
  nlohmann::json values = nlohmann::json::array(), ops = nlohmann::json::array();
  for (const Int8Value& v : values_) values.push_back({{"name", v.name}, {"shape", v.shape}, {"quant", quant_json(v.quant)}});
  std::map<std::string, Tensor> tensors;
  for (size_t i = 0; i < ops_.size(); ++i) {
    const Int8Op& o = ops_[i];
    const Int8Geometry& g = o.geometry;
    ops.push_back({{"type", op_type_name(o.type)}, {"source", o.source}, {"inputs", o.inputs}, {"output", o.output},
                   {"geometry", {g.kh, g.kw, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top,
                                 g.pad_left, g.groups}},
                   {"act", {o.act_min, o.act_max}}});
    if (!o.function.empty()) ops.back()["function"] = o.function;
    const std::string prefix = "op" + std::to_string(i) + ".";
    if (o.weights.defined()) tensors[prefix + "weights"] = o.weights;
    if (o.weight_scales.defined()) tensors[prefix + "weight_scales"] = o.weight_scales;
    if (o.bias.defined()) tensors[prefix + "bias"] = o.bias;
    if (o.table.defined()) tensors[prefix + "table"] = o.table;
  }
  nlohmann::json graph{{"format", 1}, {"input", {{"shape", input_.shape}}}, {"output", output_},
                       {"values", values}, {"ops", ops}};
  io::save_safetensors(path, tensors, {{kGraphKey, graph.dump()}}, {.sparse = true});
}

Int8Model Int8Model::load(const std::string& path) {
  io::SafetensorsFile f = io::read_safetensors(path);
  auto it = f.metadata.find(kGraphKey);
  BONSAI_CHECK(it != f.metadata.end(), path + ": not a bonsai int8 model (no '" + kGraphKey + "' metadata)");
  try {
    const nlohmann::json g = nlohmann::json::parse(it->second);
    BONSAI_CHECK(g.at("format").get<int>() == 1, "unsupported int8 graph format " + g.at("format").dump());
    std::vector<Int8Value> values;
    for (const auto& v : g.at("values"))
      values.push_back({v.at("name").get<std::string>(), v.at("shape").get<std::vector<int64_t>>(),
                        quant_from(v.at("quant"))});
    std::vector<Int8Op> ops;
    for (size_t i = 0; i < g.at("ops").size(); ++i) {
      const auto& j = g.at("ops")[i];
      Int8Op o;
      o.type = op_type_from(j.at("type").get<std::string>());
      o.source = j.at("source").get<std::string>();
      o.inputs = j.at("inputs").get<std::vector<int>>();
      o.output = j.at("output").get<int>();
      const auto geo = j.at("geometry").get<std::vector<int>>();
      BONSAI_CHECK(geo.size() == 9, "op " + std::to_string(i) + ": geometry needs 9 numbers");
      o.geometry = {geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]};
      const auto act = j.at("act").get<std::vector<int32_t>>();
      BONSAI_CHECK(act.size() == 2 && act[0] >= -128 && act[0] <= act[1] && act[1] <= 127,
                   "op " + std::to_string(i) + ": bad clamp");
      o.act_min = act[0];
      o.act_max = act[1];
      o.function = j.value("function", std::string());
      const std::string prefix = "op" + std::to_string(i) + ".";
      auto take = [&](const char* name, Tensor& t) {
        auto ti = f.tensors.find(prefix + name);
        if (ti != f.tensors.end()) t = ti->second;
      };
      take("weights", o.weights);
      take("weight_scales", o.weight_scales);
      take("bias", o.bias);
      take("table", o.table);
      if (o.weight_scales.defined()) {
        BONSAI_CHECK(o.weight_scales.dtype() == DType::f32, "op " + std::to_string(i) + ": weight_scales must be F32");
        for (int64_t c = 0; c < o.weight_scales.numel(); ++c) {
          const float s = o.weight_scales.data<float>()[c];
          BONSAI_CHECK(s > 0 && std::isfinite(s), "op " + std::to_string(i) + ": weight scales must be positive");
        }
      }
      ops.push_back(std::move(o));
    }
    Int8Value input{"input", g.at("input").at("shape").get<std::vector<int64_t>>(), {}};
    return Int8Model(std::move(values), std::move(ops), std::move(input), g.at("output").get<int>());
  } catch (const nlohmann::json::exception& e) {
    BONSAI_CHECK(false, path + ": malformed int8 graph: " + e.what());
  } catch (const Error& e) {
    BONSAI_CHECK(false, path + ": " + e.what());
  }
  return {};
}

// ---- simulation vs integer ------------------------------------------------------

std::vector<LayerAgreement> compare_with_simulation(Module& qat_model, Int8Model& int8, const Tensor& images,
                                                    OutputCodes* output) {
  const bool was_training = qat_model.is_training();
  qat_model.eval();
  Trace trace;
  {
    NoGrad ng;
    TraceScope scope(trace);
    qat_model.forward(images);
  }
  qat_model.train(was_training);
  std::unordered_map<const Module*, std::string> names;
  qat_model.visit([&](const std::string& name, Module& m) { names[&m] = name; });
  // The simulation's tensor for each value name: quantizer outputs, and the
  // (unquantized, on-grid) outputs of max pooling, named by their layer.
  std::map<std::string, Tensor> sim;
  for (const TracedOp& op : trace.ops) {
    if (dynamic_cast<const ActivationQuantizer*>(op.module)) sim[names.at(op.module)] = op.output;
    if (auto* ql = dynamic_cast<const QuantLayer*>(op.module); ql && dynamic_cast<const MaxPool2d*>(&ql->layer()))
      sim[names.at(op.module)] = op.output;
  }
  const auto& values = int8.values();
  std::vector<Tensor> sim_codes(values.size());
  for (size_t v = 0; v < values.size(); ++v) {
    auto it = sim.find(values[v].name);
    BONSAI_CHECK(it != sim.end(), "compare: the simulation has no value '" + values[v].name +
                                      "' (was the int8 model converted from another model?)");
    const Tensor& t = it->second;
    BONSAI_CHECK(t.numel() == images.dim(0) * numel_of(values[v].shape),
                 "compare: value '" + values[v].name + "' has " + std::to_string(t.numel()) +
                     " elements in the simulation, the int8 model expects " +
                     std::to_string(images.dim(0) * numel_of(values[v].shape)));
    Tensor c = Tensor::empty(t.shape(), DType::s8);
    for (int64_t e = 0; e < t.numel(); ++e)
      c.data<int8_t>()[e] = static_cast<int8_t>(simulation_code(t.data<float>()[e], values[v].quant));
    sim_codes[v] = c;
  }
  std::vector<Tensor> end_to_end;
  int8.run(images, &end_to_end);

  std::vector<LayerAgreement> out;
  for (size_t i = 0; i < int8.ops().size(); ++i) {
    const Int8Op& o = int8.ops()[i];
    const Tensor local = int8.execute(i, sim_codes, images);
    const Tensor& want = sim_codes[o.output];
    LayerAgreement a{values[o.output].name, op_type_name(o.type), want.numel()};
    const int8_t *pl = local.data<int8_t>(), *pe = end_to_end[o.output].data<int8_t>(), *pw = want.data<int8_t>();
    for (int64_t e = 0; e < want.numel(); ++e) {
      const int32_t d = std::abs(static_cast<int32_t>(pl[e]) - pw[e]);
      const int32_t de = std::abs(static_cast<int32_t>(pe[e]) - pw[e]);
      a.max_steps = std::max(a.max_steps, d);
      a.differing += d != 0;
      a.end_to_end_max_steps = std::max(a.end_to_end_max_steps, de);
      a.end_to_end_differing += de != 0;
    }
    out.push_back(a);
  }
  if (output) *output = {sim_codes[int8.output()], end_to_end[int8.output()]};
  return out;
}

}  // namespace bonsai::quant
