// 2-D convolution on oneDNN: forward, backward-data and backward-weights
// primitives built once per shape and cached. Activations stay NHWC; weights
// are HWIO in the tensor and reordered into the primitive's preferred layout
// at each call (they change every step).
#include <algorithm>

#include "core/autograd.h"
#include "core/dnnl_util.h"
#include "core/ops.h"

namespace bonsai::ops {

using dnnl::memory;
namespace du = dnnl_util;

int64_t conv_out_size(int64_t in, int kernel, int stride, int dilation, int pad_begin, int pad_end) {
  return (in + pad_begin + pad_end - static_cast<int64_t>(dilation) * (kernel - 1) - 1) / stride + 1;
}

Padding tf_same_padding(int64_t in_h, int64_t in_w, int kh, int kw, int stride_h, int stride_w,
                        int dilation_h, int dilation_w) {
  auto total = [](int64_t in, int k, int s, int d) {
    int64_t eff = static_cast<int64_t>(d) * (k - 1) + 1;
    int64_t out = (in + s - 1) / s;
    return static_cast<int>(std::max<int64_t>((out - 1) * s + eff - in, 0));
  };
  int th = total(in_h, kh, stride_h, dilation_h), tw = total(in_w, kw, stride_w, dilation_w);
  return {th / 2, tw / 2, th - th / 2, tw - tw / 2};
}

namespace {

struct ConvPrims {
  memory::desc user_w;  // HWIO as oneDNN sees it
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_w_pd;
  dnnl::convolution_backward_weights bwd_w;
};

du::PrimitiveCache<ConvPrims>& conv_cache() {
  static du::PrimitiveCache<ConvPrims> cache;
  return cache;
}

// HWIO weights [KH, KW, I/G, O] described with oneDNN's logical dims:
// {O, I, KH, KW} or, grouped, {G, O/G, I/G, KH, KW}.
memory::desc hwio_desc(int64_t KH, int64_t KW, int64_t Ig, int64_t O, int64_t G) {
  if (G == 1) return memory::desc({O, Ig, KH, KW}, memory::data_type::f32, memory::format_tag::hwio);
  int64_t Og = O / G;
  return memory::desc({G, Og, Ig, KH, KW}, memory::data_type::f32,
                      memory::dims{Og, 1, O, KW * Ig * O, Ig * O});
}

std::shared_ptr<ConvPrims> get_prims(const Shape& xs, const Shape& ws, bool has_bias,
                                     const Conv2dParams& p, const Shape& ys) {
  std::string key = xs.str() + ws.str() + (has_bias ? "b" : "") + std::to_string(p.stride_h) + "," +
                    std::to_string(p.stride_w) + "," + std::to_string(p.dilation_h) + "," +
                    std::to_string(p.dilation_w) + "," + std::to_string(p.pad.top) + "," +
                    std::to_string(p.pad.left) + "," + std::to_string(p.pad.bottom) + "," +
                    std::to_string(p.pad.right) + "," + std::to_string(p.groups);
  return conv_cache().get(key, [&] {
    du::count_cached_primitive();
    auto c = std::make_shared<ConvPrims>();
    const int64_t O = ws[3];
    c->user_w = hwio_desc(ws[0], ws[1], ws[2], O, p.groups);
    memory::desc src = du::nhwc_desc(xs), dst = du::nhwc_desc(ys);
    memory::desc w_any = p.groups == 1
        ? memory::desc({O, ws[2], ws[0], ws[1]}, memory::data_type::f32, memory::format_tag::any)
        : memory::desc({p.groups, O / p.groups, ws[2], ws[0], ws[1]}, memory::data_type::f32,
                       memory::format_tag::any);
    memory::desc bias = has_bias ? du::vec_desc(O) : memory::desc();
    memory::dims strides{p.stride_h, p.stride_w}, dil{p.dilation_h - 1, p.dilation_w - 1};
    memory::dims pl{p.pad.top, p.pad.left}, pr{p.pad.bottom, p.pad.right};
    auto alg = dnnl::algorithm::convolution_direct;
    auto& eng = du::engine();
    dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, alg, src, w_any, bias, dst,
                                       strides, dil, pl, pr);
    c->fwd_pd = dnnl::convolution_forward::primitive_desc(fd, eng);
    c->fwd = dnnl::convolution_forward(c->fwd_pd);
    dnnl::convolution_backward_data::desc bd(alg, src, w_any, dst, strides, dil, pl, pr);
    c->bwd_data_pd = dnnl::convolution_backward_data::primitive_desc(bd, eng, c->fwd_pd);
    c->bwd_data = dnnl::convolution_backward_data(c->bwd_data_pd);
    auto bw = has_bias
        ? dnnl::convolution_backward_weights::desc(alg, src, w_any, bias, dst, strides, dil, pl, pr)
        : dnnl::convolution_backward_weights::desc(alg, src, w_any, dst, strides, dil, pl, pr);
    c->bwd_w_pd = dnnl::convolution_backward_weights::primitive_desc(bw, eng, c->fwd_pd);
    c->bwd_w = dnnl::convolution_backward_weights(c->bwd_w_pd);
    return c;
  });
}

// The weights in `want` layout: the user memory itself if it already is,
// otherwise a reordered copy.
memory weights_as(const memory::desc& want, memory user) {
  if (want == user.get_desc()) return user;
  memory m(want, du::engine());
  dnnl::reorder(user, m).execute(du::stream(), user, m);
  return m;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  BONSAI_CHECK(x.rank() == 4 && w.rank() == 4,
               "conv2d: input " + x.shape_str() + " must be [N, H, W, C] and weight " + w.shape_str() +
                   " [KH, KW, Cin/groups, Cout]");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const int64_t KH = w.dim(0), KW = w.dim(1), O = w.dim(3);
  BONSAI_CHECK(p.groups >= 1 && C % p.groups == 0 && O % p.groups == 0 && w.dim(2) * p.groups == C,
               "conv2d: input " + x.shape_str() + " and weight " + w.shape_str() +
                   " do not agree for groups=" + std::to_string(p.groups));
  if (bias.defined())
    BONSAI_CHECK(bias.rank() == 1 && bias.dim(0) == O,
                 "conv2d: bias " + bias.shape_str() + " for weight " + w.shape_str());
  BONSAI_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1,
               "conv2d: stride and dilation must be >= 1");
  const int64_t OH = conv_out_size(H, KH, p.stride_h, p.dilation_h, p.pad.top, p.pad.bottom);
  const int64_t OW = conv_out_size(W, KW, p.stride_w, p.dilation_w, p.pad.left, p.pad.right);
  BONSAI_CHECK(OH > 0 && OW > 0, "conv2d: input " + x.shape_str() + " too small for weight " +
                                     w.shape_str() + " with this stride/padding");
  Shape ys{N, OH, OW, O};
  auto prims = get_prims(x.shape(), w.shape(), bias.defined(), p, ys);
  Tensor y = Tensor::empty(ys);
  {
    memory user_w = du::wrap(prims->user_w, w);
    memory wm = weights_as(prims->fwd_pd.weights_desc(), user_w);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, du::wrap(du::nhwc_desc(x.shape()), x)},
                                         {DNNL_ARG_WEIGHTS, wm},
                                         {DNNL_ARG_DST, du::wrap(du::nhwc_desc(ys), y)}};
    if (bias.defined()) args.emplace(DNNL_ARG_BIAS, du::wrap(du::vec_desc(O), bias));
    prims->fwd.execute(du::stream(), args);
    du::stream().wait();
  }
  bool need_x = x.requires_grad(), need_w = w.requires_grad(), has_b = bias.defined();
  // The node's name tells the kinds apart in profiles (core/op_profile.h).
  const char* name = p.groups == 1 ? (KH == 1 && KW == 1 ? "conv2d_1x1" : "conv2d")
                     : p.groups == C && O == C ? "conv2d_depthwise"
                                               : "conv2d_grouped";
  return record(y, name, {x, w, bias},
                [prims, xs = x.detach(), ws = w.detach(), need_x, need_w, has_b, O](const Tensor& gy) {
                  Grads g(3);
                  memory gym = du::wrap(du::nhwc_desc(gy.shape()), gy);
                  if (need_x) {
                    g[0] = Tensor::empty(xs.shape());
                    memory wm = weights_as(prims->bwd_data_pd.weights_desc(),
                                           du::wrap(prims->user_w, ws));
                    prims->bwd_data.execute(
                        du::stream(), {{DNNL_ARG_DIFF_DST, gym},
                                       {DNNL_ARG_WEIGHTS, wm},
                                       {DNNL_ARG_DIFF_SRC, du::wrap(du::nhwc_desc(xs.shape()), g[0])}});
                  }
                  if (need_w || has_b) {
                    g[1] = Tensor::empty(ws.shape());
                    memory user_gw = du::wrap(prims->user_w, g[1]);
                    bool direct = prims->bwd_w_pd.diff_weights_desc() == prims->user_w;
                    memory gw = direct ? user_gw
                                       : memory(prims->bwd_w_pd.diff_weights_desc(), du::engine());
                    std::unordered_map<int, memory> args{
                        {DNNL_ARG_SRC, du::wrap(du::nhwc_desc(xs.shape()), xs)},
                        {DNNL_ARG_DIFF_DST, gym},
                        {DNNL_ARG_DIFF_WEIGHTS, gw}};
                    if (has_b) {
                      g[2] = Tensor::empty({O});
                      args.emplace(DNNL_ARG_DIFF_BIAS, du::wrap(du::vec_desc(O), g[2]));
                    }
                    prims->bwd_w.execute(du::stream(), args);
                    if (!direct) dnnl::reorder(gw, user_gw).execute(du::stream(), gw, user_gw);
                    if (!need_w) g[1] = Tensor();
                  }
                  du::stream().wait();
                  return g;
                });
}

}  // namespace bonsai::ops
