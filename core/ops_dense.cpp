// Dense (fully connected) layer on OpenBLAS sgemm.
//   y[N,out] = x[N,in] · w[in,out] + b
//   dx = dy · wᵀ,  dw = xᵀ · dy,  db = Σ_N dy
#include <cblas.h>

#include "core/autograd.h"
#include "core/ops.h"

namespace bonsai::ops {

namespace {

// c[m,n] (+)= op(a) · op(b), all row-major.
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
          float beta) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k,
              1.f, a, ta ? m : k, b, tb ? k : n, beta, c, n);
}

}  // namespace

Tensor dense(const Tensor& x, const Tensor& w, const Tensor& bias) {
  BONSAI_CHECK(x.rank() == 2 && w.rank() == 2 && x.dim(1) == w.dim(0),
               "dense: input " + x.shape_str() + " does not match weight " + w.shape_str() +
                   " ([in, out])");
  const int64_t N = x.dim(0), I = x.dim(1), O = w.dim(1);
  if (bias.defined())
    BONSAI_CHECK(bias.rank() == 1 && bias.dim(0) == O,
                 "dense: bias " + bias.shape_str() + " for weight " + w.shape_str());
  Tensor y = Tensor::empty({N, O});
  float* py = y.data<float>();
  if (bias.defined()) {
    const float* pb = bias.data<float>();
    for (int64_t r = 0; r < N; ++r)
      for (int64_t o = 0; o < O; ++o) py[r * O + o] = pb[o];
  }
  gemm(false, false, N, O, I, x.data<float>(), w.data<float>(), py, bias.defined() ? 1.f : 0.f);
  bool need_x = x.requires_grad(), need_w = w.requires_grad(), has_b = bias.defined();
  return record(y, "dense", {x, w, bias},
                [xs = x.detach(), ws = w.detach(), need_x, need_w, has_b](const Tensor& gy) {
                  const int64_t N = xs.dim(0), I = xs.dim(1), O = ws.dim(1);
                  Grads g(3);
                  if (need_x) {
                    g[0] = Tensor::empty({N, I});
                    gemm(false, true, N, I, O, gy.data<float>(), ws.data<float>(),
                         g[0].data<float>(), 0.f);
                  }
                  if (need_w) {
                    g[1] = Tensor::empty({I, O});
                    gemm(true, false, I, O, N, xs.data<float>(), gy.data<float>(),
                         g[1].data<float>(), 0.f);
                  }
                  if (has_b) {
                    g[2] = Tensor::zeros({O});
                    float* pb = g[2].data<float>();
                    const float* pg = gy.data<float>();
                    for (int64_t r = 0; r < N; ++r)
                      for (int64_t o = 0; o < O; ++o) pb[o] += pg[r * O + o];
                  }
                  return g;
                });
}

}  // namespace bonsai::ops
