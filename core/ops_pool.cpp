// Max and average pooling on oneDNN (NHWC), and global average pooling.
#include "core/autograd.h"
#include "core/dnnl_util.h"
#include "core/ops.h"

namespace bonsai::ops {

using dnnl::memory;
namespace du = dnnl_util;

namespace {

struct PoolPrims {
  dnnl::pooling_forward::primitive_desc fwd_pd;
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward bwd;
};

du::PrimitiveCache<PoolPrims>& pool_cache() {
  static du::PrimitiveCache<PoolPrims> cache;
  return cache;
}

Tensor pool(const char* name, dnnl::algorithm alg, const Tensor& x, const PoolParams& p) {
  BONSAI_CHECK(x.rank() == 4, std::string(name) + ": expected [N, H, W, C], got " + x.shape_str());
  BONSAI_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1,
               std::string(name) + ": kernel and stride must be >= 1");
  BONSAI_CHECK(p.pad.top < p.kernel_h && p.pad.bottom < p.kernel_h && p.pad.left < p.kernel_w &&
                   p.pad.right < p.kernel_w,
               std::string(name) + ": padding must be smaller than the window");
  const int64_t OH = conv_out_size(x.dim(1), p.kernel_h, p.stride_h, 1, p.pad.top, p.pad.bottom);
  const int64_t OW = conv_out_size(x.dim(2), p.kernel_w, p.stride_w, 1, p.pad.left, p.pad.right);
  BONSAI_CHECK(OH > 0 && OW > 0, std::string(name) + ": input " + x.shape_str() + " smaller than the window");
  Shape ys{x.dim(0), OH, OW, x.dim(3)};
  std::string key = std::to_string(static_cast<int>(alg)) + x.shape_str() +
                    std::to_string(p.kernel_h) + "," + std::to_string(p.kernel_w) + "," +
                    std::to_string(p.stride_h) + "," + std::to_string(p.stride_w) + "," +
                    std::to_string(p.pad.top) + "," + std::to_string(p.pad.left) + "," +
                    std::to_string(p.pad.bottom) + "," + std::to_string(p.pad.right);
  auto prims = pool_cache().get(key, [&] {
    du::count_cached_primitive();
    auto c = std::make_shared<PoolPrims>();
    memory::dims strides{p.stride_h, p.stride_w}, kernel{p.kernel_h, p.kernel_w};
    memory::dims pl{p.pad.top, p.pad.left}, pr{p.pad.bottom, p.pad.right};
    memory::desc src = du::nhwc_desc(x.shape()), dst = du::nhwc_desc(ys);
    c->fwd_pd = dnnl::pooling_forward::primitive_desc(
        dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training, alg, src, dst, strides, kernel,
                                    pl, pr),
        du::engine());
    c->fwd = dnnl::pooling_forward(c->fwd_pd);
    c->bwd = dnnl::pooling_backward(dnnl::pooling_backward::primitive_desc(
        dnnl::pooling_backward::desc(alg, src, dst, strides, kernel, pl, pr), du::engine(), c->fwd_pd));
    return c;
  });
  Tensor y = Tensor::empty(ys);
  // Max pooling records which input won each window; backward reads it.
  auto ws = std::make_shared<memory>();
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, du::wrap(du::nhwc_desc(x.shape()), x)},
                                       {DNNL_ARG_DST, du::wrap(du::nhwc_desc(ys), y)}};
  if (prims->fwd_pd.workspace_desc().get_size() > 0) {
    *ws = memory(prims->fwd_pd.workspace_desc(), du::engine());
    args.emplace(DNNL_ARG_WORKSPACE, *ws);
  }
  prims->fwd.execute(du::stream(), args);
  du::stream().wait();
  return record(y, name, {x}, [prims, ws, xs = x.shape()](const Tensor& gy) {
    Tensor gx = Tensor::empty(xs);
    std::unordered_map<int, memory> args{{DNNL_ARG_DIFF_DST, du::wrap(du::nhwc_desc(gy.shape()), gy)},
                                         {DNNL_ARG_DIFF_SRC, du::wrap(du::nhwc_desc(xs), gx)}};
    if (*ws) args.emplace(DNNL_ARG_WORKSPACE, *ws);
    prims->bwd.execute(du::stream(), args);
    du::stream().wait();
    return Grads{gx};
  });
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const PoolParams& p) {
  return pool("max_pool2d", dnnl::algorithm::pooling_max, x, p);
}

Tensor avg_pool2d(const Tensor& x, const PoolParams& p) {
  return pool("avg_pool2d",
              p.exclude_padding ? dnnl::algorithm::pooling_avg_exclude_padding
                                : dnnl::algorithm::pooling_avg_include_padding,
              x, p);
}

Tensor global_avg_pool(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4, "global_avg_pool: expected [N, H, W, C], got " + x.shape_str());
  const int64_t N = x.dim(0), HW = x.dim(1) * x.dim(2), C = x.dim(3);
  Tensor y = Tensor::zeros({N, 1, 1, C});
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const float inv = 1.f / static_cast<float>(HW);
#pragma omp parallel for if (N > 1)
  for (int64_t n = 0; n < N; ++n) {
    float* out = py + n * C;
    for (int64_t i = 0; i < HW; ++i) {
      const float* row = px + (n * HW + i) * C;
      for (int64_t c = 0; c < C; ++c) out[c] += row[c];
    }
    for (int64_t c = 0; c < C; ++c) out[c] *= inv;
  }
  return record(y, "global_avg_pool", {x}, [xs = x.shape(), inv](const Tensor& gy) {
    const int64_t N = xs[0], HW = xs[1] * xs[2], C = xs[3];
    Tensor gx = Tensor::empty(xs);
    const float* pg = gy.data<float>();
    float* pd = gx.data<float>();
#pragma omp parallel for if (N * HW * C > 65536)
    for (int64_t r = 0; r < N * HW; ++r)
      for (int64_t c = 0; c < C; ++c) pd[r * C + c] = pg[(r / HW) * C + c] * inv;
    return Grads{gx};
  });
}

}  // namespace bonsai::ops
