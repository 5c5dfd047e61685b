// Elementwise activations, broadcasting arithmetic and full reductions.
// These loops are their own reference: each is a direct transcription of the
// scalar definition, and the gradient checker verifies the derivatives.
#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "core/kernels.h"
#include "core/ops.h"

namespace bonsai {

namespace kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  int r = std::max(a.rank(), b.rank());
  std::vector<int64_t> out(r);
  for (int i = 0; i < r; ++i) {
    int ia = a.rank() - r + i, ib = b.rank() - r + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    BONSAI_CHECK(da == db || da == 1 || db == 1,
                 "shapes " + a.str() + " and " + b.str() + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return Shape(out);
}

namespace {

// Shape padded on the left to 5 dims, and element strides with 0 on the
// broadcast axes, so every broadcast loop is the same 5-deep nest.
struct Bcast {
  int64_t dims[kMaxDims];
  int64_t strides[kMaxDims];
};

Bcast bcast_view(const Shape& s, const Shape& out) {
  Bcast v{};
  int off = kMaxDims - out.rank();
  int soff = kMaxDims - s.rank();
  int64_t stride = 1;
  for (int i = kMaxDims - 1; i >= 0; --i) {
    int64_t d = i >= soff ? s[i - soff] : 1;
    int64_t od = i >= off ? out[i - off] : 1;
    v.dims[i] = od;
    v.strides[i] = d == 1 && od != 1 ? 0 : stride;
    stride *= d;
  }
  return v;
}

template <typename F>
void for_each_broadcast(const Shape& out, const Shape& sa, const Shape& sb, F body) {
  Bcast a = bcast_view(sa, out), b = bcast_view(sb, out);
  const int64_t* d = a.dims;
  int64_t outer = d[0] * d[1] * d[2] * d[3];
#pragma omp parallel for if (outer * d[4] > 32768)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t i3 = o % d[3], i2 = (o / d[3]) % d[2], i1 = (o / (d[3] * d[2])) % d[1],
            i0 = o / (d[3] * d[2] * d[1]);
    int64_t ao = i0 * a.strides[0] + i1 * a.strides[1] + i2 * a.strides[2] + i3 * a.strides[3];
    int64_t bo = i0 * b.strides[0] + i1 * b.strides[1] + i2 * b.strides[2] + i3 * b.strides[3];
    body(o * d[4], ao, a.strides[4], bo, b.strides[4], d[4]);
  }
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  Shape os = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(os);
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  for_each_broadcast(os, a.shape(), b.shape(),
                     [&](int64_t oo, int64_t ao, int64_t as, int64_t bo, int64_t bs, int64_t n) {
                       float* y = po + oo;
                       const float* x1 = pa + ao;
                       const float* x2 = pb + bo;
                       switch (op) {
                         case BinaryOp::add:
                           for (int64_t i = 0; i < n; ++i) y[i] = x1[i * as] + x2[i * bs];
                           break;
                         case BinaryOp::sub:
                           for (int64_t i = 0; i < n; ++i) y[i] = x1[i * as] - x2[i * bs];
                           break;
                         case BinaryOp::mul:
                           for (int64_t i = 0; i < n; ++i) y[i] = x1[i * as] * x2[i * bs];
                           break;
                       }
                     });
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  BONSAI_CHECK(broadcast_shapes(shape, t.shape()) == t.shape(),
               "cannot sum " + t.shape_str() + " down to " + shape.str());
  Tensor out = Tensor::zeros(shape);
  Bcast v = bcast_view(shape, t.shape());
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  const int64_t* d = v.dims;
  int64_t idx = 0;
  // Serial: several source elements land on one destination element.
  for (int64_t i0 = 0; i0 < d[0]; ++i0)
    for (int64_t i1 = 0; i1 < d[1]; ++i1)
      for (int64_t i2 = 0; i2 < d[2]; ++i2)
        for (int64_t i3 = 0; i3 < d[3]; ++i3) {
          float* row = dst + i0 * v.strides[0] + i1 * v.strides[1] + i2 * v.strides[2] +
                       i3 * v.strides[3];
          for (int64_t i4 = 0; i4 < d[4]; ++i4) row[i4 * v.strides[4]] += src[idx++];
        }
  return out;
}

Tensor scaled(const Tensor& x, float s) {
  Tensor out = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  float* po = out.data<float>();
  int64_t n = x.numel();
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) po[i] = px[i] * s;
  return out;
}

}  // namespace kernels

namespace ops {

namespace {

// y[i] = f(x[i]) in blocks over the threads, each block's loop an
// `omp simd` loop of its own (an `omp parallel for simd` over the whole
// range came out scalar, with a branch per element: GCC 12 did not
// vectorise the combined construct here).
template <typename F>
void map_unary(const float* __restrict x, float* __restrict y, int64_t n, F f) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * kBlock, end = std::min(n, begin + kBlock);
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  }
}

// y[i] = f(a[i], b[i]), the same way (gradients: f(x, g); add_relu).
template <typename F>
void map_binary(const float* __restrict a, const float* __restrict b, float* __restrict y, int64_t n, F f) {
  constexpr int64_t kBlock = 16384;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t begin = k * kBlock, end = std::min(n, begin + kBlock);
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = f(a[i], b[i]);
  }
}

// An elementwise activation: its value as a function of the input, and its
// input gradient as a function of the input and the output gradient.
template <typename F, typename G>
Tensor unary(const char* name, const Tensor& x, F f, G grad) {
  BONSAI_CHECK(x.dtype() == DType::f32, std::string(name) + ": input must be f32");
  Tensor y = Tensor::empty(x.shape());
  map_unary(x.data<float>(), y.data<float>(), x.numel(), f);
  return record(y, name, {x}, [xs = x.detach(), grad](const Tensor& gy) {
    Tensor gx = Tensor::empty(xs.shape());
    map_binary(xs.data<float>(), gy.data<float>(), gx.data<float>(), xs.numel(), grad);
    return Grads{gx};
  });
}

}  // namespace

// Derivatives at the kinks follow PyTorch: relu'(0) = 0, relu6'(6) = 0,
// hard_sigmoid'(±3) = 0, hard_swish'(-3) = 0 and hard_swish'(3) = 1.5 (the
// formula's value from the left of the upper kink).
// The gradients compute every product unconditionally and then select
// (cond ? value : 0): a product inside a condition (g * (v > 0), say) is
// compiled to a branch per element, because with trapping math GCC may not
// execute a float operation the source makes conditional, and the loop
// stays scalar; a select of computed values vectorises (relu, relu6; GCC 12
// still keeps hard_swish's and hard_sigmoid's scalar). Building core with
// -fno-trapping-math vectorised those too but changed training results
// (the Fashion-MNIST demo's first epoch fell from 81.6% to 73.2%), so it is
// not used.
Tensor relu(const Tensor& x) {
  return unary("relu", x, [](float v) { return std::max(v, 0.f); },
               [](float v, float g) { return v > 0.f ? g : 0.f; });
}

Tensor relu6(const Tensor& x) {
  return unary("relu6", x, [](float v) { return std::min(std::max(v, 0.f), 6.f); },
               [](float v, float g) { return (v > 0.f) & (v < 6.f) ? g : 0.f; });
}

Tensor hard_sigmoid(const Tensor& x) {
  return unary("hard_sigmoid", x,
               [](float v) { return std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f); },
               [](float v, float g) {
                 const float scaled = g * (1.f / 6.f);
                 return (v > -3.f) & (v < 3.f) ? scaled : 0.f;
               });
}

Tensor hard_swish(const Tensor& x) {
  return unary("hard_swish", x,
               [](float v) { return v * std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f); },
               [](float v, float g) {
                 const float mid = g * ((2.f * v + 3.f) * (1.f / 6.f));
                 const float hi = v > 3.f ? g : mid;
                 return v < -3.f ? 0.f : hi;
               });
}

Tensor sigmoid(const Tensor& x) {
  auto sig = [](float v) { return 1.f / (1.f + std::exp(-v)); };
  return unary("sigmoid", x, sig, [sig](float v, float g) {
    const float s = sig(v);
    return g * (s * (1.f - s));
  });
}

Tensor add_relu(const Tensor& a, const Tensor& b) {
  BONSAI_CHECK(a.dtype() == DType::f32 && b.dtype() == DType::f32 && a.shape() == b.shape(),
               "add_relu: two f32 tensors of one shape, got " + a.shape_str() + " and " + b.shape_str());
  Tensor y = Tensor::empty(a.shape());
  map_binary(a.data<float>(), b.data<float>(), y.data<float>(), a.numel(),
             [](float u, float v) { return std::max(u + v, 0.f); });
  // relu'(a + b) is 1 where the output is positive (relu'(0) = 0, as relu's).
  return record(y, "add_relu", {a, b}, [ys = y.detach()](const Tensor& gy) {
    Tensor gx = Tensor::empty(ys.shape());
    map_binary(ys.data<float>(), gy.data<float>(), gx.data<float>(), ys.numel(),
                   [](float v, float g) { return v > 0.f ? g : 0.f; });
    return Grads{gx, gx};
  });
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = kernels::binary(kernels::BinaryOp::add, a, b);
  return record(y, "add", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& gy) {
    return Grads{kernels::sum_to(gy, sa), kernels::sum_to(gy, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = kernels::binary(kernels::BinaryOp::sub, a, b);
  return record(y, "sub", {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& gy) {
    return Grads{kernels::sum_to(gy, sa), kernels::sum_to(kernels::scaled(gy, -1.f), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = kernels::binary(kernels::BinaryOp::mul, a, b);
  bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record(y, "mul", {a, b},
                [as = a.detach(), bs = b.detach(), need_a, need_b](const Tensor& gy) {
                  Grads g(2);
                  if (need_a)
                    g[0] = kernels::sum_to(kernels::binary(kernels::BinaryOp::mul, gy, bs), as.shape());
                  if (need_b)
                    g[1] = kernels::sum_to(kernels::binary(kernels::BinaryOp::mul, gy, as), bs.shape());
                  return g;
                });
}

Tensor scale(const Tensor& x, float s) {
  return record(kernels::scaled(x, s), "scale", {x},
                [s](const Tensor& gy) { return Grads{kernels::scaled(gy, s)}; });
}

Tensor sum(const Tensor& x) {
  const float* p = x.data<float>();
  int64_t n = x.numel();
  double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) acc += p[i];
  Tensor y = Tensor::scalar(static_cast<float>(acc));
  return record(y, "sum", {x}, [shape = x.shape()](const Tensor& gy) {
    return Grads{Tensor::full(shape, gy.item())};
  });
}

Tensor mean(const Tensor& x) {
  BONSAI_CHECK(x.numel() > 0, "mean of an empty tensor " + x.shape_str());
  return scale(sum(x), 1.0f / static_cast<float>(x.numel()));
}

}  // namespace ops
}  // namespace bonsai
