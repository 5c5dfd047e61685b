#include "apps/lib/bench_op.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/autograd.h"
#include "core/ops.h"
#include "core/runtime.h"

namespace bonsai::apps {

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Median time of `forward` and of `backward` (which may use forward's output).
struct Timing {
  double fwd_ms, bwd_ms;
};

Timing time_loop(int warmup, int iters, const std::function<Tensor()>& forward) {
  std::vector<double> f, b;
  for (int i = 0; i < warmup + iters; ++i) {
    double t0 = now_ms();
    Tensor loss = forward();
    double t1 = now_ms();
    loss.backward();
    double t2 = now_ms();
    if (i >= warmup) {
      f.push_back(t1 - t0);
      b.push_back(t2 - t1);
    }
  }
  return {median(f), median(b)};
}

// The loss whose backward is exactly the op's backward: sum(y * gy) with a
// fixed random gy costs one extra elementwise pass, timed in forward.
Tensor dot_with(const Tensor& y, const Tensor& gy) { return ops::sum(ops::mul(y, gy)); }

}  // namespace

std::string bench_op(const OpBenchSpec& s) {
  set_num_threads(s.threads);
  std::mt19937 rng(0);
  nlohmann::json j;
  j["op"] = s.op;
  j["threads"] = num_threads();
  if (s.op == "conv") {
    Tensor x = Tensor::randn({s.n, s.h, s.w, s.c}, rng).requires_grad_();
    Tensor w = Tensor::randn({s.kernel, s.kernel, s.c / s.groups, s.k}, rng, 0.1f).requires_grad_();
    ops::Padding pad = ops::tf_same_padding(s.h, s.w, s.kernel, s.kernel, s.stride, s.stride);
    ops::Conv2dParams p{.stride_h = s.stride, .stride_w = s.stride, .pad = pad, .groups = s.groups};
    int64_t oh = ops::conv_out_size(s.h, s.kernel, s.stride, 1, pad.top, pad.bottom);
    int64_t ow = ops::conv_out_size(s.w, s.kernel, s.stride, 1, pad.left, pad.right);
    Tensor gy = Tensor::randn({s.n, oh, ow, s.k}, rng);
    // Time the conv alone for forward; the backward includes data + weights.
    std::vector<double> f, b;
    for (int i = 0; i < s.warmup + s.iters; ++i) {
      double t0 = now_ms();
      Tensor y = ops::conv2d(x, w, Tensor(), p);
      double t1 = now_ms();
      run_backward(y, gy);
      double t2 = now_ms();
      x.zero_grad();
      w.zero_grad();
      if (i >= s.warmup) {
        f.push_back(t1 - t0);
        b.push_back(t2 - t1);
      }
    }
    double flop = 2.0 * s.n * oh * ow * s.k * (s.c / s.groups) * s.kernel * s.kernel;
    double fm = median(f), bm = median(b);
    j.update({{"n", s.n}, {"h", s.h}, {"w", s.w}, {"c", s.c}, {"k", s.k}, {"kernel", s.kernel},
              {"stride", s.stride}, {"groups", s.groups}, {"forward_ms", fm}, {"backward_ms", bm},
              {"forward_gflops", flop / fm / 1e6}, {"backward_gflops", 2 * flop / bm / 1e6},
              {"total_gflops", 3 * flop / (fm + bm) / 1e6}});
  } else if (s.op == "batchnorm") {
    Tensor x = Tensor::randn({s.n, s.h, s.w, s.c}, rng).requires_grad_();
    Tensor g = Tensor::full({s.c}, 1.f).requires_grad_(), be = Tensor::zeros({s.c}).requires_grad_();
    Tensor rm = Tensor::zeros({s.c}), rv = Tensor::full({s.c}, 1.f);
    Tensor gy = Tensor::randn({s.n, s.h, s.w, s.c}, rng);
    Timing t = time_loop(s.warmup, s.iters, [&] {
      x.zero_grad();
      return dot_with(ops::batch_norm(x, g, be, rm, rv, {.training = true}), gy);
    });
    double bytes = 4.0 * s.n * s.h * s.w * s.c;
    j.update({{"n", s.n}, {"h", s.h}, {"w", s.w}, {"c", s.c}, {"forward_ms", t.fwd_ms},
              {"backward_ms", t.bwd_ms}, {"tensor_mib", bytes / (1 << 20)},
              {"note", "forward_ms includes the sum(y*gy) loss used to drive backward"}});
  } else if (s.op == "sgemm") {
    std::vector<float> a(static_cast<size_t>(s.m) * s.m, 1.f), b(a.size(), 0.5f), c(a.size());
    std::vector<double> t;
    for (int i = 0; i < s.warmup + s.iters; ++i) {
      double t0 = now_ms();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.m, s.m, s.m, 1.f, a.data(), s.m, b.data(),
                  s.m, 0.f, c.data(), s.m);
      if (i >= s.warmup) t.push_back(now_ms() - t0);
    }
    double ms = median(t);
    j.update({{"m", s.m}, {"ms", ms}, {"gflops", 2.0 * s.m * s.m * s.m / ms / 1e6}});
  } else {
    BONSAI_CHECK(false, "bench op: unknown op '" + s.op + "' (conv, batchnorm, sgemm)");
  }
  return j.dump();
}

}  // namespace bonsai::apps
