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

// An elementwise activation is its value and its derivative, both as
// functions of the input.
template <typename F, typename DF>
Tensor unary(const char* name, const Tensor& x, F f, DF df) {
  BONSAI_CHECK(x.dtype() == DType::f32, std::string(name) + ": input must be f32");
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  float* py = y.data<float>();
  int64_t n = x.numel();
#pragma omp parallel for simd if (n > 65536)
  for (int64_t i = 0; i < n; ++i) py[i] = f(px[i]);
  return record(y, name, {x}, [xs = x.detach(), df](const Tensor& gy) {
    Tensor gx = Tensor::empty(xs.shape());
    const float* px = xs.data<float>();
    const float* pg = gy.data<float>();
    float* pd = gx.data<float>();
    int64_t n = xs.numel();
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pd[i] = pg[i] * df(px[i]);
    return Grads{gx};
  });
}

}  // namespace

// Derivatives at the kinks follow PyTorch: relu'(0) = 0, relu6'(6) = 0,
// hard_sigmoid'(±3) = 0, hard_swish'(-3) = 0 and hard_swish'(3) = 1.5 (the
// formula's value from the left of the upper kink).
// The derivatives are written without branches (comparisons as 0/1
// factors, selects) so the loops vectorise: a data-dependent branch per
// element mispredicts about half the time on activations.
Tensor relu(const Tensor& x) {
  return unary("relu", x, [](float v) { return std::max(v, 0.f); },
               [](float v) { return static_cast<float>(v > 0.f); });
}

Tensor relu6(const Tensor& x) {
  return unary("relu6", x, [](float v) { return std::min(std::max(v, 0.f), 6.f); },
               [](float v) { return static_cast<float>(v > 0.f) * static_cast<float>(v < 6.f); });
}

Tensor hard_sigmoid(const Tensor& x) {
  return unary("hard_sigmoid", x,
               [](float v) { return std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f); },
               [](float v) { return static_cast<float>(v > -3.f) * static_cast<float>(v < 3.f) * (1.f / 6.f); });
}

Tensor hard_swish(const Tensor& x) {
  return unary("hard_swish", x,
               [](float v) { return v * std::min(std::max(v + 3.f, 0.f), 6.f) * (1.f / 6.f); },
               [](float v) {
                 float mid = (2.f * v + 3.f) * (1.f / 6.f);
                 float hi = v > 3.f ? 1.f : mid;
                 return v < -3.f ? 0.f : hi;
               });
}

Tensor sigmoid(const Tensor& x) {
  auto sig = [](float v) { return 1.f / (1.f + std::exp(-v)); };
  return unary("sigmoid", x, sig, [sig](float v) {
    float s = sig(v);
    return s * (1.f - s);
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
