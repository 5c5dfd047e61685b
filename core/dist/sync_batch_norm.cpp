#include "core/dist/sync_batch_norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "core/autograd.h"

namespace bonsai::dist {

namespace {

// Per-channel sums of f(row, channel) over the M rows of an [M, C] array, in
// double: `out` [2C] gets Σ a and Σ b for (a, b) = f(r, c). Rows are split
// into one contiguous block per thread and the blocks summed in order, so
// the result depends on the thread count but not on timing.
template <typename F>
void channel_sums(int64_t M, int64_t C, std::vector<double>& out, F f) {
  const int T = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(M / 64) + 1));
  std::vector<double> part(static_cast<size_t>(T * 2 * C), 0.0);
#pragma omp parallel num_threads(T)
  {
    const int t = omp_get_thread_num();
    double* s = part.data() + t * 2 * C;
    for (int64_t r = M * t / T; r < M * (t + 1) / T; ++r)
      for (int64_t c = 0; c < C; ++c) {
        auto [a, b] = f(r, c);
        s[c] += a;
        s[C + c] += b;
      }
  }
  out.assign(static_cast<size_t>(2 * C), 0.0);
  for (int t = 0; t < T; ++t)
    for (int64_t i = 0; i < 2 * C; ++i) out[i] += part[t * 2 * C + i];
}

}  // namespace

Tensor sync_batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& moving_mean,
                       const Tensor& moving_var, const ops::BatchNormParams& p, Communicator& comm) {
  BONSAI_CHECK(p.training, "sync_batch_norm is the training form; use ops::batch_norm for inference");
  BONSAI_CHECK(x.rank() == 4 || x.rank() == 2,
               "sync_batch_norm: expected [N, H, W, C] or [N, C], got " + x.shape_str());
  const int64_t C = x.dim(-1), M = x.numel() / C;
  for (const Tensor* t : {&gamma, &beta, &moving_mean, &moving_var})
    BONSAI_CHECK(t->rank() == 1 && t->dim(0) == C,
                 "sync_batch_norm: per-channel tensor " + t->shape_str() + " for input " + x.shape_str());
  const float* px = x.data<float>();

  // Global count, Σx and Σx² per channel: one allreduce.
  std::vector<double> sums;
  channel_sums(M, C, sums, [&](int64_t r, int64_t c) {
    const double v = px[r * C + c];
    return std::pair<double, double>(v, v * v);
  });
  sums.push_back(static_cast<double>(M));
  comm.allreduce_sum(sums.data(), static_cast<int64_t>(sums.size()));
  const double N = sums[2 * C];
  BONSAI_CHECK(N > 1, "sync_batch_norm: training needs more than one value per channel over all ranks, input " +
                          x.shape_str());

  Tensor mean = Tensor::empty({C}), inv = Tensor::empty({C});
  float* mu = mean.data<float>();
  float* is = inv.data<float>();
  float* rm = moving_mean.data<float>();
  float* rv = moving_var.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double m = sums[c] / N;
    const double var = std::max(0.0, sums[C + c] / N - m * m);
    mu[c] = static_cast<float>(m);
    is[c] = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(p.epsilon)));
    rm[c] = rm[c] * p.momentum + static_cast<float>(m) * (1.f - p.momentum);
    rv[c] = rv[c] * p.momentum + static_cast<float>(var * N / (N - 1)) * (1.f - p.momentum);
  }

  Tensor y = Tensor::empty(x.shape());
  float* py = y.data<float>();
  const float* g = gamma.data<float>();
  const float* b = beta.data<float>();
#pragma omp parallel for if (M * C > 65536)
  for (int64_t r = 0; r < M; ++r)
    for (int64_t c = 0; c < C; ++c) py[r * C + c] = (px[r * C + c] - mu[c]) * is[c] * g[c] + b[c];

  return record(y, "sync_batch_norm", {x, gamma, beta},
                [xs = x.detach(), gs = gamma.detach(), mean, inv, N, &comm](const Tensor& gy) {
                  const int64_t C = xs.dim(-1), M = xs.numel() / C;
                  const float *px = xs.data<float>(), *pg = gy.data<float>();
                  const float *mu = mean.data<float>(), *is = inv.data<float>(), *g = gs.data<float>();
                  // This rank's Σg and Σg·x̂, then the global ones for ∂x.
                  std::vector<double> local;
                  channel_sums(M, C, local, [&](int64_t r, int64_t c) {
                    const double gv = pg[r * C + c];
                    return std::pair<double, double>(gv, gv * (px[r * C + c] - mu[c]) * is[c]);
                  });
                  Tensor gx = Tensor::empty(xs.shape()), gg = Tensor::empty({C}), gb = Tensor::empty({C});
                  float *dg = gg.data<float>(), *db = gb.data<float>();
                  for (int64_t c = 0; c < C; ++c) {
                    db[c] = static_cast<float>(local[c]);
                    dg[c] = static_cast<float>(local[C + c]);
                  }
                  std::vector<double> total = local;
                  comm.allreduce_sum(total.data(), 2 * C);
                  std::vector<float> mean_g(C), mean_gx(C), scale(C);
                  for (int64_t c = 0; c < C; ++c) {
                    mean_g[c] = static_cast<float>(total[c] / N);
                    mean_gx[c] = static_cast<float>(total[C + c] / N);
                    scale[c] = g[c] * is[c];
                  }
                  float* dx = gx.data<float>();
#pragma omp parallel for if (M * C > 65536)
                  for (int64_t r = 0; r < M; ++r)
                    for (int64_t c = 0; c < C; ++c) {
                      const float xhat = (px[r * C + c] - mu[c]) * is[c];
                      dx[r * C + c] = scale[c] * (pg[r * C + c] - mean_g[c] - xhat * mean_gx[c]);
                    }
                  return Grads{gx, gg, gb};
                });
}

}  // namespace bonsai::dist
