// Batch normalisation on oneDNN. Training uses batch statistics (biased
// variance for normalising) and updates the running statistics in place with
// Keras momentum and the unbiased variance; inference uses the running
// statistics. Normalises over every axis but the last (channels).
#include <cmath>

#include "core/autograd.h"
#include "core/dnnl_util.h"
#include "core/ops.h"

namespace bonsai::ops {

using dnnl::memory;
namespace du = dnnl_util;

namespace {

struct BnPrims {
  dnnl::batch_normalization_forward::primitive_desc fwd_pd;
  dnnl::batch_normalization_forward fwd;
  dnnl::batch_normalization_backward bwd;  // training only
};

du::PrimitiveCache<BnPrims>& bn_cache() {
  static du::PrimitiveCache<BnPrims> cache;
  return cache;
}

memory::desc data_desc(const Shape& s) {
  if (s.rank() == 4) return du::nhwc_desc(s);
  return memory::desc({s[0], s[1]}, memory::data_type::f32, memory::format_tag::nc);
}

std::shared_ptr<BnPrims> get_prims(const Shape& s, bool training, float eps, bool fuse_relu = false) {
  std::string key = s.str() + (training ? "T" : "I") + (fuse_relu ? "R" : "") + std::to_string(eps);
  return bn_cache().get(key, [&] {
    du::count_cached_primitive();
    auto b = std::make_shared<BnPrims>();
    auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    if (!training) flags = flags | dnnl::normalization_flags::use_global_stats;
    if (fuse_relu) flags = flags | dnnl::normalization_flags::fuse_norm_relu;
    memory::desc md = data_desc(s);
    auto prop = training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    b->fwd_pd = dnnl::batch_normalization_forward::primitive_desc(
        dnnl::batch_normalization_forward::desc(prop, md, eps, flags), du::engine());
    b->fwd = dnnl::batch_normalization_forward(b->fwd_pd);
    if (training) {
      dnnl::batch_normalization_backward::desc bd(dnnl::prop_kind::backward, md, md, eps, flags);
      b->bwd = dnnl::batch_normalization_backward(
          dnnl::batch_normalization_backward::primitive_desc(bd, du::engine(), b->fwd_pd));
    }
    return b;
  });
}

// Keras momentum on the moving statistics, the unbiased batch variance.
void update_running_stats(const Tensor& running_mean, const Tensor& running_var, const Tensor& mean,
                          const Tensor& var, int64_t M, float momentum) {
  float* rm = running_mean.data<float>();
  float* rv = running_var.data<float>();
  const float* bm = mean.data<float>();
  const float* bv = var.data<float>();
  const float m = momentum, unbias = static_cast<float>(M) / static_cast<float>(M - 1);
  for (int64_t c = 0; c < mean.numel(); ++c) {
    rm[c] = rm[c] * m + bm[c] * (1.f - m);
    rv[c] = rv[c] * m + bv[c] * unbias * (1.f - m);
  }
}

}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                  const Tensor& running_var, const BatchNormParams& p) {
  BONSAI_CHECK(x.rank() == 4 || x.rank() == 2,
               "batch_norm: expected [N, H, W, C] or [N, C], got " + x.shape_str());
  const int64_t C = x.dim(-1);
  for (const Tensor* t : {&gamma, &beta, &running_mean, &running_var})
    BONSAI_CHECK(t->rank() == 1 && t->dim(0) == C,
                 "batch_norm: per-channel tensor " + t->shape_str() + " for input " + x.shape_str());
  const int64_t M = x.numel() / C;
  BONSAI_CHECK(!p.training || M > 1,
               "batch_norm: training needs more than one value per channel, input " + x.shape_str());
  auto prims = get_prims(x.shape(), p.training, p.epsilon);
  memory::desc md = data_desc(x.shape());
  Tensor y = Tensor::empty(x.shape());
  Tensor mean = p.training ? Tensor::empty({C}) : running_mean;
  Tensor var = p.training ? Tensor::empty({C}) : running_var;
  prims->fwd.execute(du::stream(), {{DNNL_ARG_SRC, du::wrap(md, x)},
                                    {DNNL_ARG_DST, du::wrap(md, y)},
                                    {DNNL_ARG_SCALE, du::wrap(du::vec_desc(C), gamma)},
                                    {DNNL_ARG_SHIFT, du::wrap(du::vec_desc(C), beta)},
                                    {DNNL_ARG_MEAN, du::wrap(du::vec_desc(C), mean)},
                                    {DNNL_ARG_VARIANCE, du::wrap(du::vec_desc(C), var)}});
  du::stream().wait();

  if (p.training) {
    update_running_stats(running_mean, running_var, mean, var, M, p.momentum);
    return record(y, "batch_norm", {x, gamma, beta},
                  [prims, xs = x.detach(), gs = gamma.detach(), bs = beta.detach(), mean, var](const Tensor& gy) {
                    const int64_t C = xs.dim(-1);
                    memory::desc md = data_desc(xs.shape());
                    Tensor gx = Tensor::empty(xs.shape());
                    Tensor gg = Tensor::empty({C}), gb = Tensor::empty({C});
                    prims->bwd.execute(du::stream(),
                                       {{DNNL_ARG_SRC, du::wrap(md, xs)},
                                        {DNNL_ARG_DIFF_DST, du::wrap(md, gy)},
                                        {DNNL_ARG_MEAN, du::wrap(du::vec_desc(C), mean)},
                                        {DNNL_ARG_VARIANCE, du::wrap(du::vec_desc(C), var)},
                                        {DNNL_ARG_SCALE, du::wrap(du::vec_desc(C), gs)},
                                        // oneDNN 2.6 lists the shift as an input here too
                                        {DNNL_ARG_SHIFT, du::wrap(du::vec_desc(C), bs)},
                                        {DNNL_ARG_DIFF_SRC, du::wrap(md, gx)},
                                        {DNNL_ARG_DIFF_SCALE, du::wrap(du::vec_desc(C), gg)},
                                        {DNNL_ARG_DIFF_SHIFT, du::wrap(du::vec_desc(C), gb)}});
                    du::stream().wait();
                    return Grads{gx, gg, gb};
                  });
  }

  // Inference: an affine map per channel with fixed statistics, so
  //   dx = gy * gamma * inv_std,  dgamma = Σ gy * xhat,  dbeta = Σ gy.
  return record(y, "batch_norm_inference", {x, gamma, beta},
                [xs = x.detach(), gs = gamma.detach(), mean = mean.clone(), var = var.clone(),
                 eps = p.epsilon](const Tensor& gy) {
                  const int64_t C = xs.dim(-1), M = xs.numel() / C;
                  Tensor gx = Tensor::empty(xs.shape());
                  Tensor gg = Tensor::zeros({C}), gb = Tensor::zeros({C});
                  const float *px = xs.data<float>(), *pg = gy.data<float>();
                  const float *g = gs.data<float>(), *mu = mean.data<float>(), *v = var.data<float>();
                  float *dx = gx.data<float>(), *dg = gg.data<float>(), *db = gb.data<float>();
                  std::vector<float> inv(C);
                  for (int64_t c = 0; c < C; ++c) inv[c] = 1.f / std::sqrt(v[c] + eps);
                  for (int64_t r = 0; r < M; ++r)
                    for (int64_t c = 0; c < C; ++c) {
                      float gyv = pg[r * C + c];
                      dx[r * C + c] = gyv * g[c] * inv[c];
                      dg[c] += gyv * (px[r * C + c] - mu[c]) * inv[c];
                      db[c] += gyv;
                    }
                  return Grads{gx, gg, gb};
                });
}

Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, const BatchNormParams& p) {
  BONSAI_CHECK(p.training, "batch_norm_relu: training only (inference folds into the conv)");
  BONSAI_CHECK(x.rank() == 4 || x.rank() == 2,
               "batch_norm_relu: expected [N, H, W, C] or [N, C], got " + x.shape_str());
  const int64_t C = x.dim(-1);
  for (const Tensor* t : {&gamma, &beta, &running_mean, &running_var})
    BONSAI_CHECK(t->rank() == 1 && t->dim(0) == C,
                 "batch_norm_relu: per-channel tensor " + t->shape_str() + " for input " + x.shape_str());
  const int64_t M = x.numel() / C;
  BONSAI_CHECK(M > 1, "batch_norm_relu: training needs more than one value per channel, input " + x.shape_str());
  auto prims = get_prims(x.shape(), true, p.epsilon, /*fuse_relu=*/true);
  memory::desc md = data_desc(x.shape());
  Tensor y = Tensor::empty(x.shape());
  Tensor mean = Tensor::empty({C}), var = Tensor::empty({C});
  // The ReLU's mask, which the backward reads.
  auto workspace = std::make_shared<memory>(prims->fwd_pd.workspace_desc(), du::engine());
  prims->fwd.execute(du::stream(), {{DNNL_ARG_SRC, du::wrap(md, x)},
                                    {DNNL_ARG_DST, du::wrap(md, y)},
                                    {DNNL_ARG_SCALE, du::wrap(du::vec_desc(C), gamma)},
                                    {DNNL_ARG_SHIFT, du::wrap(du::vec_desc(C), beta)},
                                    {DNNL_ARG_MEAN, du::wrap(du::vec_desc(C), mean)},
                                    {DNNL_ARG_VARIANCE, du::wrap(du::vec_desc(C), var)},
                                    {DNNL_ARG_WORKSPACE, *workspace}});
  du::stream().wait();
  update_running_stats(running_mean, running_var, mean, var, M, p.momentum);
  return record(y, "batch_norm_relu", {x, gamma, beta},
                [prims, workspace, xs = x.detach(), gs = gamma.detach(), bs = beta.detach(), mean,
                 var](const Tensor& gy) {
                  const int64_t C = xs.dim(-1);
                  memory::desc md = data_desc(xs.shape());
                  Tensor gx = Tensor::empty(xs.shape());
                  Tensor gg = Tensor::empty({C}), gb = Tensor::empty({C});
                  prims->bwd.execute(du::stream(), {{DNNL_ARG_SRC, du::wrap(md, xs)},
                                                    {DNNL_ARG_DIFF_DST, du::wrap(md, gy)},
                                                    {DNNL_ARG_MEAN, du::wrap(du::vec_desc(C), mean)},
                                                    {DNNL_ARG_VARIANCE, du::wrap(du::vec_desc(C), var)},
                                                    {DNNL_ARG_SCALE, du::wrap(du::vec_desc(C), gs)},
                                                    {DNNL_ARG_SHIFT, du::wrap(du::vec_desc(C), bs)},
                                                    {DNNL_ARG_WORKSPACE, *workspace},
                                                    {DNNL_ARG_DIFF_SRC, du::wrap(md, gx)},
                                                    {DNNL_ARG_DIFF_SCALE, du::wrap(du::vec_desc(C), gg)},
                                                    {DNNL_ARG_DIFF_SHIFT, du::wrap(du::vec_desc(C), gb)}});
                  du::stream().wait();
                  return Grads{gx, gg, gb};
                });
}

}  // namespace bonsai::ops
