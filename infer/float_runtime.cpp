#include "infer/float_runtime.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/check.h"
#include "core/dnnl_util.h"

namespace bonsai::infer {

using exporters::FloatActivation;
using exporters::FloatGraph;
using exporters::FloatOp;
using exporters::FloatOpType;
using dnnl::memory;
namespace du = dnnl_util;

namespace {

int64_t numel_of(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// The activation as oneDNN post-ops (hard_sigmoid: x/6 + 1/2, clipped to [0, 1]).
void append_activation(dnnl::post_ops& po, FloatActivation a) {
  using alg = dnnl::algorithm;
  switch (a) {
    case FloatActivation::none: return;
    case FloatActivation::relu: po.append_eltwise(1.0f, alg::eltwise_relu, 0.0f, 0.0f); return;
    case FloatActivation::relu6: po.append_eltwise(1.0f, alg::eltwise_clip, 0.0f, 6.0f); return;
    case FloatActivation::hard_swish: po.append_eltwise(1.0f, alg::eltwise_hardswish, 0.0f, 0.0f); return;
    case FloatActivation::hard_sigmoid:
      po.append_eltwise(1.0f, alg::eltwise_linear, 1.0f / 6, 0.5f);
      po.append_eltwise(1.0f, alg::eltwise_clip, 0.0f, 1.0f);
      return;
    case FloatActivation::sigmoid: po.append_eltwise(1.0f, alg::eltwise_logistic, 0.0f, 0.0f); return;
  }
}

// The same functions on a float, for the loop kernels.
inline float activate(float v, FloatActivation a) {
  switch (a) {
    case FloatActivation::none: return v;
    case FloatActivation::relu: return std::max(v, 0.0f);
    case FloatActivation::relu6: return std::min(std::max(v, 0.0f), 6.0f);
    case FloatActivation::hard_swish: return v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    case FloatActivation::hard_sigmoid: return std::min(std::max(v / 6.0f + 0.5f, 0.0f), 1.0f);
    case FloatActivation::sigmoid: return 1.0f / (1.0f + std::exp(-v));
  }
  return v;
}

void activate_all(const float* x, float* y, int64_t n, FloatActivation a) {
  switch (a) {  // one loop per function, so each vectorises
    case FloatActivation::none: if (x != y) std::memcpy(y, x, n * sizeof(float)); return;
    case FloatActivation::relu: for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], 0.0f); return;
    case FloatActivation::relu6:
      for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i], 0.0f), 6.0f);
      return;
    case FloatActivation::hard_swish:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * std::min(std::max(x[i] + 3.0f, 0.0f), 6.0f) / 6.0f;
      return;
    case FloatActivation::hard_sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i] / 6.0f + 0.5f, 0.0f), 1.0f);
      return;
    case FloatActivation::sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
      return;
  }
}

// A weighted op's weights, reordered once into the layout its primitive
// wants, and its bias as it is (the step that runs the primitive holds both).
struct WeightsAndBias {
  memory weights, bias;
};
WeightsAndBias weights_and_bias(const memory::desc& wanted, const memory::desc& user_md, const memory::desc& bias_md,
                                const FloatOp& o) {
  auto& eng = du::engine();
  memory weights(wanted, eng);
  memory user(user_md, eng, const_cast<float*>(o.weights.data<float>()));
  dnnl::reorder(user, weights).execute(du::stream(), user, weights);
  return {weights, memory(bias_md, eng, const_cast<float*>(o.bias.data<float>()))};
}

// A step running `prim` on src, weights and bias into dst, after `before`.
std::function<void()> weighted_step(std::shared_ptr<dnnl::primitive> prim, const memory& src, const WeightsAndBias& wb,
                                    const memory& dst, std::function<void()> before = [] {}) {
  return [prim, src, wb, dst, before] {
    before();
    prim->execute(du::stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wb.weights}, {DNNL_ARG_BIAS, wb.bias},
                                 {DNNL_ARG_DST, dst}});
  };
}

}  // namespace

// One executed step: a graph op and the ops fused into it.
struct FloatRuntime::Step {
  int op = -1;                                   // the graph op it runs
  FloatActivation post = FloatActivation::none;  // conv: a fused activation op
  int activation_op = -1;                        //   ... and its index
  int add_op = -1;                               // conv: a fused add (sum post-op)
  int residual = -1;                             //   ... the add's other operand
  bool in_place = false;                         //   ... accumulated in its buffer
  int output = -1;                               // the value the step leaves
};

// Per batch size: the buffers (by storage value) and each step's kernel.
struct FloatRuntime::Prepared {
  int64_t batch = 0;
  std::vector<Tensor> buffers;             // by value id (only storage roots)
  std::vector<std::function<void()>> run;  // by step
};

FloatRuntime::FloatRuntime(FloatGraph graph) : graph_(std::move(graph)) {
  graph_.validate();
  make_plan();
}
FloatRuntime::~FloatRuntime() = default;
FloatRuntime::FloatRuntime(FloatRuntime&&) noexcept = default;
FloatRuntime& FloatRuntime::operator=(FloatRuntime&&) noexcept = default;

void FloatRuntime::make_plan() {
  const size_t nv = graph_.values.size(), no = graph_.ops.size();
  std::vector<std::vector<int>> readers(nv);  // op indices reading each value
  std::vector<int> producer(nv, -1);
  for (size_t i = 0; i < no; ++i) {
    for (int v : graph_.ops[i].inputs) readers[v].push_back(static_cast<int>(i));
    producer[graph_.ops[i].output] = static_cast<int>(i);
  }
  storage_of_.assign(nv, -1);
  storage_of_[0] = 0;
  std::vector<bool> fused(no, false);
  auto only_reader = [&](int v) { return readers[v].size() == 1 ? readers[v][0] : -1; };
  // Whether every reader of any value stored in `root` comes before op `before`,
  // apart from op `except`.
  auto root_free_after = [&](int root, int before, int except) {
    for (size_t v = 0; v < nv; ++v) {
      if (storage_of_[v] != root) continue;
      for (int r : readers[v])
        if (r != except && r >= before) return false;
    }
    return true;
  };
  for (size_t i = 0; i < no; ++i) {
    if (fused[i]) continue;
    const FloatOp& o = graph_.ops[i];
    Step s{.op = static_cast<int>(i), .output = o.output};
    if (o.type == FloatOpType::reshape) {
      storage_of_[o.output] = storage_of_[o.inputs[0]];
      steps_.push_back(s);
      continue;
    }
    if (o.type == FloatOpType::conv) {
      int out = o.output;
      const int next = only_reader(out);
      if (next >= 0 && o.activation == FloatActivation::none) {
        const FloatOp& n = graph_.ops[next];
        if (n.type == FloatOpType::activation) {
          s.post = n.activation;
          s.activation_op = next;
          fused[next] = true;
          out = n.output;
        } else if (n.type == FloatOpType::add && n.inputs.size() == 2 && n.inputs[0] != n.inputs[1]) {
          const int other = n.inputs[0] == out ? n.inputs[1] : n.inputs[0];
          const bool ready = other == 0 || producer[other] < static_cast<int>(i);
          if (ready && storage_of_[other] >= 0) {
            s.add_op = next;
            s.residual = other;
            fused[next] = true;
            const int root = storage_of_[other];
            s.in_place = root != storage_of_[o.inputs[0]] && root_free_after(root, static_cast<int>(i), next);
            out = n.output;
          }
        }
      }
      s.output = out;
      storage_of_[out] = s.in_place ? storage_of_[s.residual] : out;
      steps_.push_back(s);
      continue;
    }
    storage_of_[o.output] = o.output;
    steps_.push_back(s);
  }
}

std::vector<std::string> FloatRuntime::plan() const {
  std::vector<std::string> lines;
  for (const Step& s : steps_) {
    const FloatOp& o = graph_.ops[s.op];
    std::string name = exporters::float_op_name(o.type);
    if (o.type == FloatOpType::conv && o.activation != FloatActivation::none)
      name += std::string("+") + exporters::float_activation_name(o.activation);
    if (s.activation_op >= 0) name += std::string("+") + exporters::float_activation_name(s.post);
    if (s.add_op >= 0) {
      name += s.in_place ? "+add(in-place)" : "+add";
      const FloatActivation a = graph_.ops[s.add_op].activation;
      if (a != FloatActivation::none) name += std::string("+") + exporters::float_activation_name(a);
    }
    lines.push_back(name + " " + o.source);
  }
  return lines;
}

FloatRuntime::Prepared& FloatRuntime::prepared(int64_t batch) {
  if (prepared_ && prepared_->batch == batch) return *prepared_;
  auto p = std::make_unique<Prepared>();
  p->batch = batch;
  const auto& values = graph_.values;
  p->buffers.resize(values.size());
  for (size_t v = 0; v < values.size(); ++v)
    if (storage_of_[v] == static_cast<int>(v)) {
      std::vector<int64_t> dims{batch};
      dims.insert(dims.end(), values[v].shape.begin(), values[v].shape.end());
      p->buffers[v] = Tensor::zeros(Shape(dims));
    }
  auto data = [&p, this](int v) { return p->buffers[storage_of_[v]].template data<float>(); };
  // [H, W, C] of value v. (Plain variables at the call sites, not structured
  // bindings: the lambdas capture them, which clang 14 does not allow.)
  auto hwc = [&values](int v) {
    const auto& s = values[v].shape;
    BONSAI_CHECK(s.size() == 3, "float runtime: value '" + values[v].name + "' is not [H, W, C]");
    return std::array<int64_t, 3>{s[0], s[1], s[2]};
  };
  dnnl::engine& eng = du::engine();
  p->run.resize(steps_.size());
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& s = steps_[k];
    const FloatOp& o = graph_.ops[s.op];
    const exporters::FloatGeometry& g = o.geometry;
    switch (o.type) {
      case FloatOpType::reshape:
        p->run[k] = [] {};
        break;
      case FloatOpType::conv: {
        const std::array<int64_t, 3> h_w_cin = hwc(o.inputs[0]);
        const int64_t h = h_w_cin[0], w = h_w_cin[1], cin = h_w_cin[2];
        const std::array<int64_t, 3> oh_ow_cout = hwc(o.output);
        const int64_t oh = oh_ow_cout[0], ow = oh_ow_cout[1], cout = oh_ow_cout[2];
        const memory::desc src_md({batch, cin, h, w}, memory::data_type::f32, memory::format_tag::nhwc);
        const memory::desc dst_md({batch, cout, oh, ow}, memory::data_type::f32, memory::format_tag::nhwc);
        const bool grouped = g.groups > 1;
        const memory::dims wdims = grouped ? memory::dims{g.groups, cout / g.groups, cin / g.groups, g.kh, g.kw}
                                           : memory::dims{cout, cin, g.kh, g.kw};
        const memory::desc w_user(wdims, memory::data_type::f32,
                                  grouped ? memory::format_tag::hwigo : memory::format_tag::hwio);
        const memory::desc w_any(wdims, memory::data_type::f32, memory::format_tag::any);
        const memory::desc b_md({cout}, memory::data_type::f32, memory::format_tag::a);
        const dnnl::convolution_forward::desc d(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, w_any, b_md, dst_md,
            {g.stride_h, g.stride_w}, {g.dilation_h - 1, g.dilation_w - 1}, {g.pad_top, g.pad_left},
            {g.pad_bottom, g.pad_right});
        dnnl::post_ops po;
        append_activation(po, o.activation);
        append_activation(po, s.post);
        if (s.add_op >= 0) {
          po.append_sum(1.0f);
          append_activation(po, graph_.ops[s.add_op].activation);
        }
        dnnl::primitive_attr attr;
        attr.set_post_ops(po);
        const dnnl::convolution_forward::primitive_desc pd(d, attr, eng);
        const WeightsAndBias wb = weights_and_bias(pd.weights_desc(), w_user, b_md, o);
        memory src(src_md, eng, data(o.inputs[0]));
        memory dst(dst_md, eng, data(s.output));
        std::function<void()> copy_residual = [] {};
        if (s.add_op >= 0 && !s.in_place) {
          const float* r = data(s.residual);
          float* y = data(s.output);
          const int64_t n = batch * oh * ow * cout;
          copy_residual = [r, y, n] { std::memcpy(y, r, n * sizeof(float)); };
        }
        p->run[k] = weighted_step(std::make_shared<dnnl::convolution_forward>(pd), src, wb, dst, copy_residual);
        break;
      }
      case FloatOpType::fully_connected: {
        const int64_t in = o.weights.dim(0), out = o.weights.dim(1);
        const memory::desc src_md({batch, in}, memory::data_type::f32, memory::format_tag::nc);
        const memory::desc dst_md({batch, out}, memory::data_type::f32, memory::format_tag::nc);
        const memory::desc w_user({out, in}, memory::data_type::f32, memory::format_tag::io);
        const memory::desc w_any({out, in}, memory::data_type::f32, memory::format_tag::any);
        const memory::desc b_md({out}, memory::data_type::f32, memory::format_tag::a);
        const dnnl::inner_product_forward::desc d(dnnl::prop_kind::forward_inference, src_md, w_any, b_md, dst_md);
        dnnl::post_ops po;
        append_activation(po, o.activation);
        dnnl::primitive_attr attr;
        attr.set_post_ops(po);
        const dnnl::inner_product_forward::primitive_desc pd(d, attr, eng);
        const WeightsAndBias wb = weights_and_bias(pd.weights_desc(), w_user, b_md, o);
        memory src(src_md, eng, data(o.inputs[0]));
        memory dst(dst_md, eng, data(s.output));
        p->run[k] = weighted_step(std::make_shared<dnnl::inner_product_forward>(pd), src, wb, dst);
        break;
      }
      case FloatOpType::max_pool:
      case FloatOpType::avg_pool: {
        const std::array<int64_t, 3> h_w_c = hwc(o.inputs[0]);
        const int64_t h = h_w_c[0], w = h_w_c[1], c = h_w_c[2];
        const std::array<int64_t, 3> oh_ow = hwc(o.output);
        const int64_t oh = oh_ow[0], ow = oh_ow[1];
        const memory::desc src_md({batch, c, h, w}, memory::data_type::f32, memory::format_tag::nhwc);
        const memory::desc dst_md({batch, c, oh, ow}, memory::data_type::f32, memory::format_tag::nhwc);
        const dnnl::pooling_forward::desc d(
            dnnl::prop_kind::forward_inference,
            o.type == FloatOpType::max_pool ? dnnl::algorithm::pooling_max
                                            : dnnl::algorithm::pooling_avg_exclude_padding,
            src_md, dst_md, {g.stride_h, g.stride_w}, {g.kh, g.kw}, {g.pad_top, g.pad_left},
            {g.pad_bottom, g.pad_right});
        const dnnl::pooling_forward::primitive_desc pd(d, eng);
        memory src(src_md, eng, data(o.inputs[0]));
        memory dst(dst_md, eng, data(s.output));
        auto prim = std::make_shared<dnnl::pooling_forward>(pd);
        p->run[k] = [prim, src, dst] { prim->execute(du::stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}); };
        break;
      }
      case FloatOpType::add:
      case FloatOpType::mul: {
        const float* a = data(o.inputs[0]);
        const float* b = data(o.inputs[1]);
        float* y = data(s.output);
        const int64_t per = numel_of(values[o.output].shape), total = batch * per;
        const int64_t c = numel_of(values[o.inputs[1]].shape);  // b: the same, or [1, 1, C]
        const FloatActivation act = o.activation;
        if (o.type == FloatOpType::add) {
          BONSAI_CHECK(c == per, "float runtime: add from '" + o.source + "' needs equal shapes");
          p->run[k] = [a, b, y, total, act] {
            for (int64_t i = 0; i < total; ++i) y[i] = a[i] + b[i];
            if (act != FloatActivation::none) activate_all(y, y, total, act);
          };
        } else {
          p->run[k] = [a, b, y, total, per, c, batch, act] {
            if (c == per) {
              for (int64_t i = 0; i < total; ++i) y[i] = a[i] * b[i];
            } else {
              for (int64_t n = 0; n < batch; ++n)
                for (int64_t r = 0; r < per / c; ++r) {
                  const float* ar = a + n * per + r * c;
                  const float* br = b + n * c;
                  float* yr = y + n * per + r * c;
                  for (int64_t j = 0; j < c; ++j) yr[j] = ar[j] * br[j];
                }
            }
            if (act != FloatActivation::none) activate_all(y, y, total, act);
          };
        }
        break;
      }
      case FloatOpType::activation: {
        const float* x = data(o.inputs[0]);
        float* y = data(s.output);
        const int64_t total = batch * numel_of(values[o.output].shape);
        const FloatActivation act = o.activation;
        p->run[k] = [x, y, total, act] { activate_all(x, y, total, act); };
        break;
      }
      case FloatOpType::mean: {
        const std::array<int64_t, 3> h_w_c = hwc(o.inputs[0]);
        const int64_t h = h_w_c[0], w = h_w_c[1], c = h_w_c[2];
        const float* x = data(o.inputs[0]);
        float* y = data(s.output);
        p->run[k] = [x, y, h, w, c, batch] {
          const float inv = 1.0f / static_cast<float>(h * w);
          for (int64_t n = 0; n < batch; ++n) {
            float* yn = y + n * c;
            std::fill(yn, yn + c, 0.0f);
            const float* xn = x + n * h * w * c;
            for (int64_t i = 0; i < h * w; ++i)
              for (int64_t j = 0; j < c; ++j) yn[j] += xn[i * c + j];
            for (int64_t j = 0; j < c; ++j) yn[j] *= inv;
          }
        };
        break;
      }
      case FloatOpType::resize: {
        const std::array<int64_t, 3> h_w_c = hwc(o.inputs[0]);
        const int64_t h = h_w_c[0], w = h_w_c[1], c = h_w_c[2];
        const std::array<int64_t, 3> oh_ow = hwc(o.output);
        const int64_t oh = oh_ow[0], ow = oh_ow[1];
        const float* x = data(o.inputs[0]);
        float* y = data(s.output);
        // Bilinear, half-pixel centres (ops::resize_bilinear's geometry).
        struct Tap {
          int64_t i0, i1;
          float w1;
        };
        auto taps = [](int64_t in, int64_t out) {
          std::vector<Tap> t(out);
          for (int64_t o = 0; o < out; ++o) {
            const float src = std::max(0.0f, (static_cast<float>(o) + 0.5f) * static_cast<float>(in) /
                                                     static_cast<float>(out) - 0.5f);
            const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1);
            t[o] = {i0, std::min(i0 + 1, in - 1), src - static_cast<float>(i0)};
          }
          return t;
        };
        const std::vector<Tap> ty = taps(h, oh), tx = taps(w, ow);
        p->run[k] = [x, y, h, w, c, oh, ow, ty, tx, batch] {
          for (int64_t n = 0; n < batch; ++n)
            for (int64_t i = 0; i < oh; ++i)
              for (int64_t j = 0; j < ow; ++j) {
                const Tap &a = ty[i], &b = tx[j];
                const float* p00 = x + ((n * h + a.i0) * w + b.i0) * c;
                const float* p01 = x + ((n * h + a.i0) * w + b.i1) * c;
                const float* p10 = x + ((n * h + a.i1) * w + b.i0) * c;
                const float* p11 = x + ((n * h + a.i1) * w + b.i1) * c;
                float* q = y + ((n * oh + i) * ow + j) * c;
                for (int64_t k2 = 0; k2 < c; ++k2) {
                  const float top = p00[k2] + (p01[k2] - p00[k2]) * b.w1;
                  const float bottom = p10[k2] + (p11[k2] - p10[k2]) * b.w1;
                  q[k2] = top + (bottom - top) * a.w1;
                }
              }
        };
        break;
      }
      case FloatOpType::concat: {
        std::vector<std::pair<const float*, int64_t>> parts;  // data, channels
        for (int v : o.inputs) parts.emplace_back(data(v), values[v].shape.back());
        float* y = data(s.output);
        const int64_t c = values[o.output].shape.back();
        const int64_t rows = batch * numel_of(values[o.output].shape) / c;
        p->run[k] = [parts, y, c, rows] {
          for (int64_t r = 0; r < rows; ++r) {
            float* yr = y + r * c;
            for (const auto& [src, ci] : parts) {
              std::memcpy(yr, src + r * ci, ci * sizeof(float));
              yr += ci;
            }
          }
        };
        break;
      }
    }
  }
  du::stream().wait();
  prepared_ = std::move(p);
  return *prepared_;
}

Tensor FloatRuntime::run(const Tensor& images) {
  const std::vector<int64_t>& in = graph_.input().shape;
  BONSAI_CHECK(images.rank() == 4 && images.dim(1) == in[0] && images.dim(2) == in[1] && images.dim(3) == in[2],
               "float runtime: images must be [N, " + std::to_string(in[0]) + ", " + std::to_string(in[1]) + ", " +
                   std::to_string(in[2]) + "], got " + images.shape_str());
  Prepared& p = prepared(images.dim(0));
  std::memcpy(p.buffers[0].data<float>(), images.data<float>(), images.numel() * sizeof(float));
  for (auto& step : p.run) step();
  du::stream().wait();
  const int out = graph_.output;
  std::vector<int64_t> dims{images.dim(0)};
  dims.insert(dims.end(), graph_.values[out].shape.begin(), graph_.values[out].shape.end());
  Tensor y = Tensor::empty(Shape(dims));
  std::memcpy(y.data<float>(), p.buffers[storage_of_[out]].data<float>(), y.numel() * sizeof(float));
  return y;
}

}  // namespace bonsai::infer
