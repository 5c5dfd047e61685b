// Shape ops (reshape, flatten, concat), bilinear resize and dropout.
#include <cmath>
#include <cstring>

#include "core/autograd.h"
#include "core/ops.h"

namespace bonsai::ops {

Tensor reshape(const Tensor& x, const Shape& shape) {
  BONSAI_CHECK(shape.numel() == x.numel(),
               "reshape: cannot view " + x.shape_str() + " as " + shape.str());
  return record(x.view(shape), "reshape", {x},
                [from = x.shape()](const Tensor& gy) { return Grads{gy.view(from)}; });
}

Tensor flatten(const Tensor& x) {
  BONSAI_CHECK(x.rank() >= 1, "flatten: needs at least one dimension");
  return reshape(x, {x.dim(0), x.numel() / std::max<int64_t>(x.dim(0), 1)});
}

Tensor concat(const std::vector<Tensor>& xs, int axis) {
  BONSAI_CHECK(!xs.empty(), "concat of no tensors");
  const Shape& s0 = xs[0].shape();
  int ax = axis < 0 ? s0.rank() + axis : axis;
  BONSAI_CHECK(ax >= 0 && ax < s0.rank(), "concat: axis " + std::to_string(axis) +
                                              " out of range for " + s0.str());
  Shape out_shape = s0;
  out_shape[ax] = 0;
  for (const Tensor& x : xs) {
    bool ok = x.rank() == s0.rank();
    for (int i = 0; ok && i < s0.rank(); ++i) ok = i == ax || x.shape()[i] == s0[i];
    BONSAI_CHECK(ok, "concat along axis " + std::to_string(ax) + ": shapes " + s0.str() + " and " +
                         x.shape_str() + " differ elsewhere");
    out_shape[ax] += x.shape()[ax];
  }
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < ax; ++i) outer *= s0[i];
  for (int i = ax + 1; i < s0.rank(); ++i) inner *= s0[i];
  Tensor y = Tensor::empty(out_shape);
  float* py = y.data<float>();
  int64_t out_row = out_shape[ax] * inner;
  std::vector<int64_t> widths;
  int64_t col = 0;
  for (const Tensor& x : xs) {
    int64_t w = x.shape()[ax] * inner;
    const float* px = x.data<float>();
#pragma omp parallel for if (outer * w > 65536)
    for (int64_t o = 0; o < outer; ++o) std::memcpy(py + o * out_row + col, px + o * w, w * 4);
    widths.push_back(w);
    col += w;
  }
  std::vector<Shape> shapes;
  for (const Tensor& x : xs) shapes.push_back(x.shape());
  return record(y, "concat", xs, [shapes, widths, outer, out_row](const Tensor& gy) {
    Grads g;
    int64_t col = 0;
    const float* pg = gy.data<float>();
    for (size_t k = 0; k < shapes.size(); ++k) {
      Tensor gx = Tensor::empty(shapes[k]);
      float* pd = gx.data<float>();
      int64_t w = widths[k];
      for (int64_t o = 0; o < outer; ++o) std::memcpy(pd + o * w, pg + o * out_row + col, w * 4);
      col += w;
      g.push_back(gx);
    }
    return g;
  });
}

namespace {

// For one axis: the two source indices and the weight of the second, for
// each output index (half-pixel centres, clamped at the borders).
struct Taps {
  std::vector<int64_t> i0, i1;
  std::vector<float> frac;
};

Taps bilinear_taps(int64_t in, int64_t out) {
  Taps t;
  double ratio = static_cast<double>(in) / static_cast<double>(out);
  for (int64_t o = 0; o < out; ++o) {
    double src = std::max(0.0, (o + 0.5) * ratio - 0.5);
    int64_t a = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    t.i0.push_back(a);
    t.i1.push_back(std::min(a + 1, in - 1));
    t.frac.push_back(static_cast<float>(src - a));
  }
  return t;
}

}  // namespace

Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w) {
  BONSAI_CHECK(x.rank() == 4, "resize_bilinear: expected [N, H, W, C], got " + x.shape_str());
  BONSAI_CHECK(out_h > 0 && out_w > 0, "resize_bilinear: output size must be positive");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  Taps th = bilinear_taps(H, out_h), tw = bilinear_taps(W, out_w);
  Tensor y = Tensor::empty({N, out_h, out_w, C});
  const float* px = x.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for collapse(2) if (N * out_h * out_w * C > 32768)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const float* r0 = px + (n * H + th.i0[oh]) * W * C;
      const float* r1 = px + (n * H + th.i1[oh]) * W * C;
      float fh = th.frac[oh];
      for (int64_t ow = 0; ow < out_w; ++ow) {
        float fw = tw.frac[ow];
        const float *a = r0 + tw.i0[ow] * C, *b = r0 + tw.i1[ow] * C;
        const float *c = r1 + tw.i0[ow] * C, *d = r1 + tw.i1[ow] * C;
        float* o = py + ((n * out_h + oh) * out_w + ow) * C;
        for (int64_t ch = 0; ch < C; ++ch) {
          float top = a[ch] + (b[ch] - a[ch]) * fw;
          float bot = c[ch] + (d[ch] - c[ch]) * fw;
          o[ch] = top + (bot - top) * fh;
        }
      }
    }
  return record(y, "resize_bilinear", {x}, [xs = x.shape(), th, tw](const Tensor& gy) {
    const int64_t N = xs[0], H = xs[1], W = xs[2], C = xs[3];
    const int64_t OH = gy.dim(1), OW = gy.dim(2);
    Tensor gx = Tensor::zeros(xs);
    const float* pg = gy.data<float>();
    float* pd = gx.data<float>();
#pragma omp parallel for if (N > 1)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t oh = 0; oh < OH; ++oh) {
        float* r0 = pd + (n * H + th.i0[oh]) * W * C;
        float* r1 = pd + (n * H + th.i1[oh]) * W * C;
        float fh = th.frac[oh];
        for (int64_t ow = 0; ow < OW; ++ow) {
          float fw = tw.frac[ow];
          const float* g = pg + ((n * OH + oh) * OW + ow) * C;
          float *a = r0 + tw.i0[ow] * C, *b = r0 + tw.i1[ow] * C;
          float *c = r1 + tw.i0[ow] * C, *d = r1 + tw.i1[ow] * C;
          for (int64_t ch = 0; ch < C; ++ch) {
            float top = g[ch] * (1.f - fh), bot = g[ch] * fh;
            a[ch] += top * (1.f - fw);
            b[ch] += top * fw;
            c[ch] += bot * (1.f - fw);
            d[ch] += bot * fw;
          }
        }
      }
    return Grads{gx};
  });
}

Tensor dropout(const Tensor& x, float rate, bool training, std::mt19937& rng) {
  BONSAI_CHECK(rate >= 0.f && rate < 1.f, "dropout rate must be in [0, 1), got " + std::to_string(rate));
  if (!training || rate == 0.f) return x;
  Tensor mask = Tensor::empty(x.shape());
  std::bernoulli_distribution keep(1.0 - rate);
  float* pm = mask.data<float>();
  const float kept = 1.f / (1.f - rate);
  for (int64_t i = 0; i < mask.numel(); ++i) pm[i] = keep(rng) ? kept : 0.f;
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  float* py = y.data<float>();
  for (int64_t i = 0; i < y.numel(); ++i) py[i] = px[i] * pm[i];
  return record(y, "dropout", {x}, [mask](const Tensor& gy) {
    Tensor gx = Tensor::empty(gy.shape());
    const float* pg = gy.data<float>();
    const float* pm = mask.data<float>();
    float* pd = gx.data<float>();
    for (int64_t i = 0; i < gx.numel(); ++i) pd[i] = pg[i] * pm[i];
    return Grads{gx};
  });
}

}  // namespace bonsai::ops
