#include "export/float_graph.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/autograd.h"
#include "core/check.h"
#include "core/ops_ref.h"
#include "layers/layers.h"
#include "quant/quantize.h"
#include "quant/trace.h"

namespace bonsai::exporters {

const char* float_op_name(FloatOpType t) {
  switch (t) {
    case FloatOpType::conv: return "conv";
    case FloatOpType::fully_connected: return "fully_connected";
    case FloatOpType::add: return "add";
    case FloatOpType::mul: return "mul";
    case FloatOpType::activation: return "activation";
    case FloatOpType::mean: return "mean";
    case FloatOpType::avg_pool: return "avg_pool";
    case FloatOpType::max_pool: return "max_pool";
    case FloatOpType::resize: return "resize";
    case FloatOpType::concat: return "concat";
    case FloatOpType::reshape: return "reshape";
  }
  return "?";
}

const char* float_activation_name(FloatActivation a) {
  switch (a) {
    case FloatActivation::none: return "none";
    case FloatActivation::relu: return "relu";
    case FloatActivation::relu6: return "relu6";
    case FloatActivation::hard_swish: return "hard_swish";
    case FloatActivation::hard_sigmoid: return "hard_sigmoid";
    case FloatActivation::sigmoid: return "sigmoid";
  }
  return "?";
}

namespace {

int64_t numel_of(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::vector<int64_t> per_image(const Shape& s) {
  std::vector<int64_t> out;
  for (int i = 1; i < s.rank(); ++i) out.push_back(s.dim(i));
  return out;
}

FloatActivation activation_of(ActivationKind k) {
  switch (k) {
    case ActivationKind::relu: return FloatActivation::relu;
    case ActivationKind::relu6: return FloatActivation::relu6;
    case ActivationKind::hard_swish: return FloatActivation::hard_swish;
    case ActivationKind::hard_sigmoid: return FloatActivation::hard_sigmoid;
    case ActivationKind::sigmoid: return FloatActivation::sigmoid;
  }
  return FloatActivation::none;
}

// ---- tracing wrappers: run the layer unchanged, record what it saw -----------

class TracedLayer : public Module {
 public:
  explicit TracedLayer(std::shared_ptr<Module> layer) : layer_(std::move(layer)) {}
  Tensor forward(const Tensor& x) override {
    layer_->train(is_training());
    Tensor y = layer_->forward(x);
    quant::record_traced(layer_.get(), x, y);
    return y;
  }
  std::string type_name() const override { return "Traced" + layer_->type_name(); }

 private:
  std::shared_ptr<Module> layer_;
};

class TracedMerge : public Merge {
 public:
  explicit TracedMerge(std::shared_ptr<Merge> merge) : merge_(std::move(merge)) {}
  Tensor merge(const std::vector<Tensor>& inputs) override {
    Tensor y = merge_->merge(inputs);
    quant::record_traced(merge_.get(), inputs, y);
    return y;
  }
  std::string type_name() const override { return "Traced" + merge_->type_name(); }

 private:
  std::shared_ptr<Merge> merge_;
};

// Swaps every leaf and merge layer (but views and no-ops) for its tracing
// wrapper; the destructor puts the originals back.
class TracingSwap {
 public:
  explicit TracingSwap(Module& model) : model_(model) {
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> leaves;
    collect(model, "", leaves);
    for (auto& [path, m] : leaves) {
      std::shared_ptr<Module> wrapper;
      if (auto merge = std::dynamic_pointer_cast<Merge>(m))
        wrapper = std::make_shared<TracedMerge>(merge);
      else
        wrapper = std::make_shared<TracedLayer>(m);
      model.replace_child(path, wrapper);
      swapped_.push_back({path, m});
    }
  }
  ~TracingSwap() {
    for (auto it = swapped_.rbegin(); it != swapped_.rend(); ++it) model_.replace_child(it->first, it->second);
  }
  TracingSwap(const TracingSwap&) = delete;
  TracingSwap& operator=(const TracingSwap&) = delete;

 private:
  static void collect(Module& m, const std::string& prefix,
                      std::vector<std::pair<std::string, std::shared_ptr<Module>>>& out) {
    for (const auto& [name, child] : m.children()) {
      const std::string path = prefix.empty() ? name : prefix + "." + name;
      if (!child->children().empty()) {
        collect(*child, path, out);
        continue;
      }
      if (dynamic_cast<Flatten*>(child.get()) || dynamic_cast<Dropout*>(child.get()) ||
          dynamic_cast<Identity*>(child.get()))
        continue;  // views and no-ops: values keep their storage
      out.push_back({path, child});
    }
  }

  Module& model_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> swapped_;
};

// ---- lowering -------------------------------------------------------------------

class Converter {
 public:
  Converter(Module& model, const Tensor& input) : input_(input) {
    model.visit([&](const std::string& name, Module& m) { names_[&m] = name; });
    g_.values.push_back({"input", per_image(input.shape())});
    bind(input, 0);
  }

  FloatGraph run(const quant::Trace& trace, const Tensor& output) {
    for (const quant::TracedOp& op : trace.ops) step(op);
    g_.output = read(output, "the model output");
    g_.validate();
    return std::move(g_);
  }

 private:
  std::string name_of(const Module* m) const {
    auto it = names_.find(m);
    return it == names_.end() ? std::string("<unnamed>") : (it->second.empty() ? "<model>" : it->second);
  }

  // What a storage holds: a value id and the shape it was produced with.
  struct Binding {
    int value = -1;
    bool stale = false;      // its producer was fused with a later layer
    std::string fused_into;  // that layer
  };

  void bind(const Tensor& t, int value) { syms_[t.raw()] = {value, false, ""}; }

  // The value a layer reads (counted), with a reshape where the tensor is a
  // view of another shape.
  int read(const Tensor& t, const std::string& user) {
    auto it = syms_.find(t.raw());
    BONSAI_CHECK(it != syms_.end(),
                 "convert_float: the value entering " + user + " (" + t.shape_str() +
                     ") was computed outside the model's layers — an op inline in a block's forward? "
                     "Make it a layer (e.g. a merge layer) so it is traced");
    BONSAI_CHECK(!it->second.stale, "convert_float: " + user + " reads the output of a layer that was fused into " +
                                        it->second.fused_into + "; that value does not exist in the float graph");
    int v = it->second.value;
    const std::vector<int64_t> shape = per_image(t.shape());
    if (shape != g_.values[v].shape) {
      BONSAI_CHECK(numel_of(shape) == numel_of(g_.values[v].shape),
                   "convert_float: " + user + " reads " + g_.values[v].name + " as " + t.shape_str());
      const std::string key = std::to_string(v) + ":" + t.shape_str();
      auto r = reshapes_.find(key);
      if (r == reshapes_.end()) {
        const int out = new_value(g_.values[v].name + ".reshape", shape);
        FloatOp& o = emit(FloatOpType::reshape, g_.values[v].name, {v}, out);
        (void)o;
        r = reshapes_.emplace(key, out).first;
      }
      v = r->second;
    }
    ++reads_[v];
    return v;
  }

  int new_value(const std::string& name, std::vector<int64_t> shape) {
    g_.values.push_back({name, std::move(shape)});
    reads_.push_back(0);
    producer_.push_back(-1);
    return static_cast<int>(g_.values.size()) - 1;
  }

  FloatOp& emit(FloatOpType type, const std::string& source, std::vector<int> inputs, int output) {
    FloatOp o;
    o.type = type;
    o.source = source;
    o.inputs = std::move(inputs);
    o.output = output;
    g_.ops.push_back(std::move(o));
    producer_[output] = static_cast<int>(g_.ops.size()) - 1;
    return g_.ops.back();
  }

  // Emits an op reading `inputs`, its output the traced tensor `out`.
  FloatOp& op(FloatOpType type, const Module* layer, std::vector<int> inputs, const Tensor& out) {
    const int v = new_value(name_of(layer), per_image(out.shape()));
    FloatOp& o = emit(type, name_of(layer), std::move(inputs), v);
    bind(out, v);
    return o;
  }

  // The op producing value v if a later layer may fuse into it: nobody has
  // read v but the layer asking (reads_ counts that one read).
  FloatOp* fusable(int v) {
    if (reads_[v] != 1 || producer_[v] < 0) return nullptr;
    return &g_.ops[producer_[v]];
  }

  // `layer`'s output (traced tensor `out`) is now what value v holds.
  void fused(const Tensor& in, const Tensor& out, int v, const Module* layer) {
    --reads_[v];
    FloatOp& o = g_.ops[producer_[v]];
    o.source.append(1, '+').append(name_of(layer));
    g_.values[v].name = name_of(layer);
    if (in.raw() != out.raw()) syms_[in.raw()] = {v, true, name_of(layer)};
    bind(out, v);
  }

  void step(const quant::TracedOp& t) {
    const Module* m = t.module;
    const std::string name = name_of(m);
    if (auto* merge = dynamic_cast<const Merge*>(m)) return merge_op(*merge, t);
    BONSAI_CHECK(t.inputs.size() == 1, "convert_float: " + name + " traced with " + std::to_string(t.inputs.size()) +
                                           " inputs");
    const Tensor& x = t.inputs[0];
    if (auto* conv = dynamic_cast<const Conv2d*>(m)) {
      const Conv2dOptions& c = conv->options();
      const int in = read(x, name);
      FloatOp& o = op(FloatOpType::conv, m, {in}, t.output);
      const ops::Padding pad = window_padding(c.padding, x.dim(1), x.dim(2), c.kernel, c.stride, c.dilation);
      o.geometry = {.kh = c.kernel, .kw = c.kernel, .stride_h = c.stride, .stride_w = c.stride,
                    .dilation_h = c.dilation, .dilation_w = c.dilation, .pad_top = pad.top, .pad_left = pad.left,
                    .pad_bottom = pad.bottom, .pad_right = pad.right, .groups = c.groups};
      o.weights = conv->kernel.detach().clone();
      o.bias = conv->bias.defined() ? conv->bias.detach().clone() : Tensor::zeros({c.out});
      return;
    }
    if (auto* dense = dynamic_cast<const Dense*>(m)) {
      BONSAI_CHECK(x.rank() == 2, "convert_float: dense " + name + " reads " + x.shape_str() + ", expected [N, in]");
      const int in = read(x, name);
      FloatOp& o = op(FloatOpType::fully_connected, m, {in}, t.output);
      o.weights = dense->kernel.detach().clone();
      o.bias = dense->bias.defined() ? dense->bias.detach().clone() : Tensor::zeros({dense->kernel.dim(1)});
      return;
    }
    if (auto* bn = dynamic_cast<const BatchNorm2d*>(m)) {
      const int in = read(x, name);
      FloatOp* conv = fusable(in);
      BONSAI_CHECK(conv && conv->type == FloatOpType::conv && conv->activation == FloatActivation::none &&
                       !folded_.count(producer_[in]),
                   "convert_float: batch norm " + name +
                       " must follow a convolution directly (whose output nothing else reads) to fold into it");
      fold(*conv, *bn);
      folded_.insert(producer_[in]);
      return fused(x, t.output, in, m);
    }
    if (auto* act = dynamic_cast<const Activation*>(m)) {
      const int in = read(x, name);
      const FloatActivation f = activation_of(act->kind());
      FloatOp* prev = fusable(in);
      if ((f == FloatActivation::relu || f == FloatActivation::relu6) && prev &&
          prev->activation == FloatActivation::none &&
          (prev->type == FloatOpType::conv || prev->type == FloatOpType::fully_connected ||
           prev->type == FloatOpType::add || prev->type == FloatOpType::mul)) {
        prev->activation = f;
        return fused(x, t.output, in, m);
      }
      op(FloatOpType::activation, m, {in}, t.output).activation = f;
      return;
    }
    auto pool_geometry = [&](const PoolOptions& p) {
      const ops::Padding pad = window_padding(p.padding, x.dim(1), x.dim(2), p.kernel, p.stride, 1);
      return FloatGeometry{.kh = p.kernel, .kw = p.kernel, .stride_h = p.stride, .stride_w = p.stride,
                           .pad_top = pad.top, .pad_left = pad.left, .pad_bottom = pad.bottom,
                           .pad_right = pad.right};
    };
    if (auto* mp = dynamic_cast<const MaxPool2d*>(m)) {
      const int in = read(x, name);
      op(FloatOpType::max_pool, m, {in}, t.output).geometry = pool_geometry(mp->options());
      return;
    }
    if (auto* ap = dynamic_cast<const AvgPool2d*>(m)) {
      const int in = read(x, name);
      op(FloatOpType::avg_pool, m, {in}, t.output).geometry = pool_geometry(ap->options());
      return;
    }
    if (dynamic_cast<const GlobalAvgPool*>(m)) {
      const int in = read(x, name);
      op(FloatOpType::mean, m, {in}, t.output);
      return;
    }
    if (dynamic_cast<const Resize*>(m)) {
      const int in = read(x, name);
      op(FloatOpType::resize, m, {in}, t.output);
      return;
    }
    BONSAI_CHECK(false, "convert_float: layer " + name + " (" + m->type_name() + ") has no float op in the export graph");
  }

  void merge_op(const Merge& merge, const quant::TracedOp& t) {
    const std::string name = name_of(&merge);
    if (dynamic_cast<const ResizeLike*>(&merge)) {  // the second input is only a size
      const int in = read(t.inputs.at(0), name);
      op(FloatOpType::resize, &merge, {in}, t.output);
      return;
    }
    std::vector<int> ins;
    for (const Tensor& x : t.inputs) ins.push_back(read(x, name));
    if (dynamic_cast<const Add*>(&merge)) {
      BONSAI_CHECK(ins.size() == 2, "convert_float: " + name + " adds " + std::to_string(ins.size()) +
                                        " tensors; the float graph's add takes two");
      op(FloatOpType::add, &merge, ins, t.output);
      return;
    }
    if (dynamic_cast<const Multiply*>(&merge)) {
      op(FloatOpType::mul, &merge, ins, t.output);
      return;
    }
    if (dynamic_cast<const Concat*>(&merge)) {
      op(FloatOpType::concat, &merge, ins, t.output);
      return;
    }
    BONSAI_CHECK(false, "convert_float: merge " + name + " (" + merge.type_name() + ") has no float op");
  }

  // w·γ/σ per output channel, bias (b − μ)·γ/σ + β; σ = sqrt(var + ε), in double.
  static void fold(FloatOp& conv, const BatchNorm2d& bn) {
    const int64_t c = bn.gamma.numel();
    BONSAI_CHECK(conv.weights.dim(-1) == c, "convert_float: batch norm of " + std::to_string(c) +
                                                " channels after a conv of " + std::to_string(conv.weights.dim(-1)));
    std::vector<double> k(c);
    for (int64_t i = 0; i < c; ++i)
      k[i] = bn.gamma.data<float>()[i] /
             std::sqrt(static_cast<double>(bn.moving_variance.data<float>()[i]) + bn.options().epsilon);
    float* w = conv.weights.data<float>();
    for (int64_t i = 0, n = conv.weights.numel(); i < n; ++i) w[i] = static_cast<float>(w[i] * k[i % c]);
    float* b = conv.bias.data<float>();
    for (int64_t i = 0; i < c; ++i)
      b[i] = static_cast<float>((b[i] - bn.moving_mean.data<float>()[i]) * k[i] + bn.beta.data<float>()[i]);
  }

  Tensor input_;
  FloatGraph g_;
  std::unordered_map<const Module*, std::string> names_;
  std::unordered_map<const void*, Binding> syms_;
  std::unordered_map<std::string, int> reshapes_;
  std::vector<int> reads_{0}, producer_{-1};  // by value id
  std::unordered_set<int> folded_;            // conv ops with a batch norm folded in
};

// ---- the reference evaluator --------------------------------------------------------

float apply(FloatActivation a, float v) {
  switch (a) {
    case FloatActivation::none: return v;
    case FloatActivation::relu: return std::max(v, 0.0f);
    case FloatActivation::relu6: return std::min(std::max(v, 0.0f), 6.0f);
    case FloatActivation::hard_swish: return v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    case FloatActivation::hard_sigmoid: return std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
    case FloatActivation::sigmoid: return 1.0f / (1.0f + std::exp(-v));
  }
  return v;
}

void apply_inplace(FloatActivation a, Tensor& t) {
  if (a == FloatActivation::none) return;
  float* p = t.data<float>();
  for (int64_t i = 0, n = t.numel(); i < n; ++i) p[i] = apply(a, p[i]);
}

Shape batch_shape(int64_t n, const std::vector<int64_t>& per) {
  std::vector<int64_t> s{n};
  s.insert(s.end(), per.begin(), per.end());
  return Shape(s);
}

}  // namespace

void FloatGraph::validate() const {
  BONSAI_CHECK(!values.empty() && values[0].shape.size() == 3, "float graph: value 0 must be the [H, W, C] input");
  BONSAI_CHECK(output > 0 && output < static_cast<int>(values.size()), "float graph: bad output value id");
  std::vector<bool> defined(values.size(), false);
  defined[0] = true;
  for (size_t i = 0; i < ops.size(); ++i) {
    const FloatOp& o = ops[i];
    const std::string where = "float graph op " + std::to_string(i) + " (" + float_op_name(o.type) + " from " +
                              o.source + ")";
    BONSAI_CHECK(o.output > 0 && o.output < static_cast<int>(values.size()) && !defined[o.output],
                 where + ": bad or repeated output value id");
    BONSAI_CHECK(!o.inputs.empty(), where + ": no inputs");
    for (int in : o.inputs)
      BONSAI_CHECK(in >= 0 && in < static_cast<int>(values.size()) && defined[in], where + ": reads an undefined value");
    const auto& xs = values[o.inputs[0]].shape;
    const auto& ys = values[o.output].shape;
    if (o.type == FloatOpType::conv) {
      BONSAI_CHECK(xs.size() == 3 && ys.size() == 3 && o.weights.rank() == 4 &&
                       o.weights.shape() == (Shape{o.geometry.kh, o.geometry.kw, xs[2] / o.geometry.groups, ys[2]}) &&
                       o.bias.numel() == ys[2],
                   where + ": weights must be [kh, kw, cin/groups, cout] with cout biases");
    }
    if (o.type == FloatOpType::fully_connected) {
      BONSAI_CHECK(o.weights.shape() == (Shape{numel_of(xs), numel_of(ys)}) && o.bias.numel() == numel_of(ys),
                   where + ": weights must be [in, out] with out biases");
    }
    if (o.type == FloatOpType::reshape)
      BONSAI_CHECK(numel_of(xs) == numel_of(ys), where + ": reshape changes the number of elements");
    defined[o.output] = true;
  }
  BONSAI_CHECK(defined[output], "float graph: the output is never computed");
}

int64_t FloatGraph::parameter_count() const {
  int64_t n = 0;
  for (const FloatOp& o : ops) {
    if (o.weights.defined()) n += o.weights.numel();
    if (o.bias.defined()) n += o.bias.numel();
  }
  return n;
}

Tensor FloatGraph::run(const Tensor& images) const {
  BONSAI_CHECK(images.rank() == 4 && per_image(images.shape()) == input().shape,
               "float graph: images must be [N, " + std::to_string(input().shape[0]) + ", " +
                   std::to_string(input().shape[1]) + ", " + std::to_string(input().shape[2]) + "], got " +
                   images.shape_str());
  const int64_t n = images.dim(0);
  std::vector<Tensor> v(values.size());
  v[0] = images;
  for (const FloatOp& o : ops) {
    const Tensor& x = v[o.inputs[0]];
    const Shape ys = batch_shape(n, values[o.output].shape);
    Tensor y;
    const FloatGeometry& g = o.geometry;
    switch (o.type) {
      case FloatOpType::conv:
        y = ops::ref::conv2d_forward(x, o.weights, o.bias,
                                     {.stride_h = g.stride_h, .stride_w = g.stride_w, .dilation_h = g.dilation_h,
                                      .dilation_w = g.dilation_w,
                                      .pad = {.top = g.pad_top, .left = g.pad_left, .bottom = g.pad_bottom,
                                              .right = g.pad_right},
                                      .groups = g.groups});
        break;
      case FloatOpType::fully_connected:
        y = ops::ref::dense_forward(x.view({n, o.weights.dim(0)}), o.weights, o.bias);
        break;
      case FloatOpType::add:
      case FloatOpType::mul: {
        // Same shapes, or the second [N, 1, 1, C] against [N, H, W, C].
        const Tensor& b = v[o.inputs[1]];
        y = Tensor::empty(ys);
        const int64_t total = y.numel(), c = b.numel() / n, per = total / n;
        BONSAI_CHECK(per % c == 0, "float graph: " + o.source + ": cannot broadcast " + b.shape_str() + " to " +
                                       ys.str());
        const float *pa = x.data<float>(), *pb = b.data<float>();
        float* py = y.data<float>();
        for (int64_t i = 0; i < total; ++i) {
          const float bv = pb[(i / per) * c + (i % per) % c];
          py[i] = o.type == FloatOpType::add ? pa[i] + bv : pa[i] * bv;
        }
        break;
      }
      case FloatOpType::activation:
        y = x.clone();
        break;
      case FloatOpType::mean: {
        const int64_t hw = x.dim(1) * x.dim(2), c = x.dim(3);
        y = Tensor::empty(ys);
        for (int64_t b = 0; b < n; ++b)
          for (int64_t k = 0; k < c; ++k) {
            double s = 0;
            for (int64_t i = 0; i < hw; ++i) s += x.data<float>()[(b * hw + i) * c + k];
            y.data<float>()[b * c + k] = static_cast<float>(s / static_cast<double>(hw));
          }
        break;
      }
      case FloatOpType::avg_pool:
      case FloatOpType::max_pool: {
        const ops::PoolParams p{.kernel_h = g.kh, .kernel_w = g.kw, .stride_h = g.stride_h, .stride_w = g.stride_w,
                                .pad = {.top = g.pad_top, .left = g.pad_left, .bottom = g.pad_bottom,
                                        .right = g.pad_right},
                                .exclude_padding = true};
        y = o.type == FloatOpType::avg_pool ? ops::ref::avg_pool2d_forward(x, p) : ops::ref::max_pool2d_forward(x, p);
        break;
      }
      case FloatOpType::resize:
        y = ops::ref::resize_bilinear_forward(x, ys[1], ys[2]);
        break;
      case FloatOpType::concat: {
        y = Tensor::empty(ys);
        const int64_t rows = y.numel() / ys[ys.rank() - 1], cy = ys[ys.rank() - 1];
        int64_t offset = 0;
        for (int in : o.inputs) {
          const Tensor& t = v[in];
          const int64_t ct = t.dim(-1);
          for (int64_t r = 0; r < rows; ++r)
            std::copy(t.data<float>() + r * ct, t.data<float>() + (r + 1) * ct, y.data<float>() + r * cy + offset);
          offset += ct;
        }
        break;
      }
      case FloatOpType::reshape:
        y = x.view(ys);
        break;
    }
    BONSAI_CHECK(y.shape() == ys, "float graph: " + std::string(float_op_name(o.type)) + " from " + o.source +
                                      " gave " + y.shape_str() + ", expected " + ys.str());
    if (o.type != FloatOpType::reshape) apply_inplace(o.activation, y);
    v[o.output] = y;
  }
  return v[output];
}

FloatGraph convert_float(Module& model, const Tensor& sample) {
  BONSAI_CHECK(sample.rank() == 4 && sample.dtype() == DType::f32 && sample.dim(0) == 1,
               "convert_float: the sample input must be float [1, H, W, C], got " + sample.shape_str());
  bool quantized = false;
  model.visit([&](const std::string&, Module& m) {
    quantized = quantized || dynamic_cast<quant::ActivationQuantizer*>(&m) || dynamic_cast<quant::QuantConv2d*>(&m) ||
                dynamic_cast<quant::QuantDense*>(&m);
  });
  BONSAI_CHECK(!quantized, "convert_float: the model (" + model.type_name() +
                               ") is quantized; export its int8 model (bonsai convert, then export --int8)");
  BONSAI_CHECK(!model.children().empty(), "convert_float: the model must be a container of layers (a " +
                                              model.type_name() + " has no children to trace)");
  const bool was_training = model.is_training();
  quant::Trace trace;
  Tensor out;
  Converter converter(model, sample);  // names of the original layers, before the swap
  {
    TracingSwap swap(model);
    model.eval();
    NoGrad ng;
    quant::TraceScope scope(trace);
    out = model.forward(sample);
  }
  model.train(was_training);
  return converter.run(trace, out);
}

}  // namespace bonsai::exporters
