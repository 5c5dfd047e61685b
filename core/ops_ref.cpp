// Naive reference kernels (see core/ops_ref.h): nested loops straight from the
// definitions. Sums are accumulated in double; scatter-style backward passes
// accumulate into a double buffer and round to f32 once at the end.
#include "core/ops_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace bonsai::ops::ref {

namespace {

// Copies a double accumulator buffer into a new f32 tensor of `shape`.
Tensor to_tensor(const std::vector<double>& acc, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  float* p = t.data<float>();
  for (size_t i = 0; i < acc.size(); ++i) p[i] = static_cast<float>(acc[i]);
  return t;
}

// Sizes of a grouped convolution, validated once and shared by all passes.
struct ConvGeom {
  int64_t N, H, W, Cin, OH, OW, Cout, KH, KW, G, Cig, Cog;  // Cig/Cog: channels per group
};

ConvGeom conv_geom(const char* op, const Shape& xs, const Shape& ws, const Conv2dParams& p) {
  const std::string name = op;
  BONSAI_CHECK(xs.rank() == 4 && ws.rank() == 4, name + ": input " + xs.str() +
                                                     " must be [N,H,W,Cin] and weight " + ws.str() +
                                                     " [KH,KW,Cin/groups,Cout]");
  BONSAI_CHECK(
      p.groups >= 1 && p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1,
      name + ": groups, strides and dilations must be >= 1");
  ConvGeom g{};
  g.N = xs[0], g.H = xs[1], g.W = xs[2], g.Cin = xs[3];
  g.KH = ws[0], g.KW = ws[1], g.Cout = ws[3], g.G = p.groups;
  BONSAI_CHECK(g.Cin % g.G == 0 && g.Cout % g.G == 0 && ws[2] * g.G == g.Cin,
               name + ": input " + xs.str() + " and weight " + ws.str() +
                   " do not fit groups=" + std::to_string(p.groups));
  g.Cig = g.Cin / g.G;
  g.Cog = g.Cout / g.G;
  g.OH =
      conv_out_size(g.H, static_cast<int>(g.KH), p.stride_h, p.dilation_h, p.pad.top, p.pad.bottom);
  g.OW =
      conv_out_size(g.W, static_cast<int>(g.KW), p.stride_w, p.dilation_w, p.pad.left, p.pad.right);
  BONSAI_CHECK(g.OH > 0 && g.OW > 0,
               name + ": input " + xs.str() + " and weight " + ws.str() + " give an empty output");
  return g;
}

void check_gy(const char* op, const Tensor& gy, const Shape& expected) {
  BONSAI_CHECK(gy.shape() == expected, std::string(op) + ": output gradient " + gy.shape_str() +
                                           ", expected " + expected.str());
}

// Pooling window geometry on [N,H,W,C].
struct PoolGeom {
  int64_t N, H, W, C, OH, OW;
};

PoolGeom pool_geom(const char* op, const Shape& xs, const PoolParams& p) {
  BONSAI_CHECK(xs.rank() == 4, std::string(op) + ": input " + xs.str() + " must be [N,H,W,C]");
  BONSAI_CHECK(p.kernel_h >= 1 && p.kernel_w >= 1 && p.stride_h >= 1 && p.stride_w >= 1,
               std::string(op) + ": kernel and stride must be >= 1");
  PoolGeom g{xs[0], xs[1], xs[2], xs[3], 0, 0};
  g.OH = conv_out_size(g.H, p.kernel_h, p.stride_h, 1, p.pad.top, p.pad.bottom);
  g.OW = conv_out_size(g.W, p.kernel_w, p.stride_w, 1, p.pad.left, p.pad.right);
  BONSAI_CHECK(g.OH > 0 && g.OW > 0,
               std::string(op) + ": input " + xs.str() + " gives an empty output with this window");
  return g;
}

// Index of the first maximal in-range element of one max-pool window, or -1
// if the window holds only padding.
int64_t max_pool_argmax(const float* x, const PoolGeom& g, const PoolParams& p, int64_t n,
                        int64_t oh, int64_t ow, int64_t c) {
  int64_t best = -1;
  for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
    const int64_t ih = oh * p.stride_h - p.pad.top + kh;
    if (ih < 0 || ih >= g.H) continue;
    for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
      const int64_t iw = ow * p.stride_w - p.pad.left + kw;
      if (iw < 0 || iw >= g.W) continue;
      const int64_t i = ((n * g.H + ih) * g.W + iw) * g.C + c;
      if (best < 0 || x[i] > x[best]) best = i;  // strict '>': the first maximum wins
    }
  }
  return best;
}

// Divisor of one average-pool window.
int64_t avg_pool_divisor(const PoolGeom& g, const PoolParams& p, int64_t oh, int64_t ow) {
  if (!p.exclude_padding) return static_cast<int64_t>(p.kernel_h) * p.kernel_w;
  const int64_t h0 = oh * p.stride_h - p.pad.top, w0 = ow * p.stride_w - p.pad.left;
  const int64_t rows = std::min<int64_t>(h0 + p.kernel_h, g.H) - std::max<int64_t>(h0, 0);
  const int64_t cols = std::min<int64_t>(w0 + p.kernel_w, g.W) - std::max<int64_t>(w0, 0);
  return std::max<int64_t>(rows, 0) * std::max<int64_t>(cols, 0);
}

// Bilinear source taps for one output coordinate, half-pixel centres:
// src = (dst + 0.5) * in/out - 0.5, clamped below at 0.
struct Taps {
  int64_t i0, i1;
  double lambda;  // weight of i1; i0 gets 1 - lambda
};

Taps bilinear_taps(int64_t dst, int64_t in, int64_t out) {
  const double src =
      std::max(0.0, (static_cast<double>(dst) + 0.5) * static_cast<double>(in) / out - 0.5);
  const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
  return {i0, std::min(i0 + 1, in - 1), src - static_cast<double>(i0)};
}

}  // namespace

// ---------------------------------------------------------------- conv2d

// y[n,oh,ow,co] = b[co] + sum_{kh,kw,ci} x[n, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw, g*Cig + ci]
//                                        * w[kh,kw,ci,co],   g = co / Cog.
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p) {
  const ConvGeom g = conv_geom("conv2d_forward", x.shape(), w.shape(), p);
  BONSAI_CHECK(!bias.defined() || (bias.rank() == 1 && bias.dim(0) == g.Cout),
               "conv2d_forward: bias " + (bias.defined() ? bias.shape_str() : std::string()) +
                   " must be [" + std::to_string(g.Cout) + "]");
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  const float* bp = bias.defined() ? bias.data<float>() : nullptr;
  Tensor y = Tensor::empty({g.N, g.OH, g.OW, g.Cout});
  float* yp = y.data<float>();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow)
        for (int64_t co = 0; co < g.Cout; ++co) {
          const int64_t grp = co / g.Cog;
          double acc = bp ? bp[co] : 0.0;
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad.top + kh * p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const int64_t iw = ow * p.stride_w - p.pad.left + kw * p.dilation_w;
              if (iw < 0 || iw >= g.W) continue;
              for (int64_t ci = 0; ci < g.Cig; ++ci)
                acc += static_cast<double>(
                           xp[((n * g.H + ih) * g.W + iw) * g.Cin + grp * g.Cig + ci]) *
                       wp[((kh * g.KW + kw) * g.Cig + ci) * g.Cout + co];
            }
          }
          yp[((n * g.OH + oh) * g.OW + ow) * g.Cout + co] = static_cast<float>(acc);
        }
  return y;
}

// dx[n,ih,iw,g*Cig+ci] += gy[n,oh,ow,co] * w[kh,kw,ci,co] for every tap that
// read (ih,iw) in the forward pass.
Tensor conv2d_backward_data(const Tensor& gy, const Tensor& w, const Shape& x_shape,
                            const Conv2dParams& p) {
  const ConvGeom g = conv_geom("conv2d_backward_data", x_shape, w.shape(), p);
  check_gy("conv2d_backward_data", gy, {g.N, g.OH, g.OW, g.Cout});
  const float* gp = gy.data<float>();
  const float* wp = w.data<float>();
  std::vector<double> dx(static_cast<size_t>(x_shape.numel()), 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow)
        for (int64_t co = 0; co < g.Cout; ++co) {
          const int64_t grp = co / g.Cog;
          const double gv = gp[((n * g.OH + oh) * g.OW + ow) * g.Cout + co];
          for (int64_t kh = 0; kh < g.KH; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad.top + kh * p.dilation_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < g.KW; ++kw) {
              const int64_t iw = ow * p.stride_w - p.pad.left + kw * p.dilation_w;
              if (iw < 0 || iw >= g.W) continue;
              for (int64_t ci = 0; ci < g.Cig; ++ci)
                dx[((n * g.H + ih) * g.W + iw) * g.Cin + grp * g.Cig + ci] +=
                    gv * wp[((kh * g.KW + kw) * g.Cig + ci) * g.Cout + co];
            }
          }
        }
  return to_tensor(dx, x_shape);
}

// dw[kh,kw,ci,co] = sum_{n,oh,ow} gy[n,oh,ow,co] * x[n,ih,iw,g*Cig+ci].
Tensor conv2d_backward_weights(const Tensor& gy, const Tensor& x, const Shape& w_shape,
                               const Conv2dParams& p) {
  const ConvGeom g = conv_geom("conv2d_backward_weights", x.shape(), w_shape, p);
  check_gy("conv2d_backward_weights", gy, {g.N, g.OH, g.OW, g.Cout});
  const float* gp = gy.data<float>();
  const float* xp = x.data<float>();
  Tensor dw = Tensor::empty(w_shape);
  float* dwp = dw.data<float>();
  for (int64_t kh = 0; kh < g.KH; ++kh)
    for (int64_t kw = 0; kw < g.KW; ++kw)
      for (int64_t ci = 0; ci < g.Cig; ++ci)
        for (int64_t co = 0; co < g.Cout; ++co) {
          const int64_t c_in = (co / g.Cog) * g.Cig + ci;
          double acc = 0.0;
          for (int64_t n = 0; n < g.N; ++n)
            for (int64_t oh = 0; oh < g.OH; ++oh) {
              const int64_t ih = oh * p.stride_h - p.pad.top + kh * p.dilation_h;
              if (ih < 0 || ih >= g.H) continue;
              for (int64_t ow = 0; ow < g.OW; ++ow) {
                const int64_t iw = ow * p.stride_w - p.pad.left + kw * p.dilation_w;
                if (iw < 0 || iw >= g.W) continue;
                acc += static_cast<double>(gp[((n * g.OH + oh) * g.OW + ow) * g.Cout + co]) *
                       xp[((n * g.H + ih) * g.W + iw) * g.Cin + c_in];
              }
            }
          dwp[((kh * g.KW + kw) * g.Cig + ci) * g.Cout + co] = static_cast<float>(acc);
        }
  return dw;
}

// db[co] = sum_{n,oh,ow} gy[n,oh,ow,co].
Tensor conv2d_backward_bias(const Tensor& gy) {
  BONSAI_CHECK(gy.rank() == 4, "conv2d_backward_bias: output gradient " + gy.shape_str() +
                                   " must be [N,OH,OW,Cout]");
  const int64_t C = gy.dim(3), M = gy.numel() / std::max<int64_t>(C, 1);
  const float* gp = gy.data<float>();
  std::vector<double> db(static_cast<size_t>(C), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < C; ++c) db[c] += gp[m * C + c];
  return to_tensor(db, {C});
}

// ---------------------------------------------------------------- batch norm
// x is viewed as [M, C] (M = product of all leading axes).

namespace {

void check_bn(const char* op, const Tensor& x, std::initializer_list<const Tensor*> per_channel) {
  BONSAI_CHECK(x.rank() == 2 || x.rank() == 4,
               std::string(op) + ": input " + x.shape_str() + " must be [N,C] or [N,H,W,C]");
  for (const Tensor* t : per_channel)
    BONSAI_CHECK(t->rank() == 1 && t->dim(0) == x.dim(-1),
                 std::string(op) + ": per-channel tensor " + t->shape_str() +
                     " does not match input " + x.shape_str());
}

}  // namespace

BatchNormForward batch_norm_train_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          float epsilon) {
  check_bn("batch_norm_train_forward", x, {&gamma, &beta});
  const int64_t C = x.dim(-1), M = x.numel() / std::max<int64_t>(C, 1);
  BONSAI_CHECK(M > 0, "batch_norm_train_forward: input " + x.shape_str() + " is empty");
  const float* xp = x.data<float>();
  const float* gp = gamma.data<float>();
  const float* bp = beta.data<float>();
  Tensor y = Tensor::empty(x.shape()), mean = Tensor::empty({C}), var = Tensor::empty({C});
  float* yp = y.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    double mu = 0.0;
    for (int64_t m = 0; m < M; ++m) mu += xp[m * C + c];
    mu /= static_cast<double>(M);
    double v = 0.0;  // biased: divide by M
    for (int64_t m = 0; m < M; ++m) v += (xp[m * C + c] - mu) * (xp[m * C + c] - mu);
    v /= static_cast<double>(M);
    const double inv_std = 1.0 / std::sqrt(v + epsilon);
    for (int64_t m = 0; m < M; ++m)
      yp[m * C + c] = static_cast<float>(gp[c] * (xp[m * C + c] - mu) * inv_std + bp[c]);
    mean.data<float>()[c] = static_cast<float>(mu);
    var.data<float>()[c] = static_cast<float>(v);
  }
  return {y, mean, var};
}

Tensor batch_norm_infer_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                const Tensor& mean, const Tensor& var, float epsilon) {
  check_bn("batch_norm_infer_forward", x, {&gamma, &beta, &mean, &var});
  const int64_t C = x.dim(-1), M = x.numel() / std::max<int64_t>(C, 1);
  const float *xp = x.data<float>(), *gp = gamma.data<float>(), *bp = beta.data<float>();
  const float *mp = mean.data<float>(), *vp = var.data<float>();
  Tensor y = Tensor::empty(x.shape());
  float* yp = y.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(vp[c]) + epsilon);
    for (int64_t m = 0; m < M; ++m)
      yp[m * C + c] = static_cast<float>(
          gp[c] * (static_cast<double>(xp[m * C + c]) - mp[c]) * inv_std + bp[c]);
  }
  return y;
}

// xhat = (x - mean) * inv_std;  dbeta = sum gy;  dgamma = sum gy * xhat;
// dx = gamma * inv_std / M * (M * gy - dbeta - xhat * dgamma).
BatchNormBackward batch_norm_train_backward(const Tensor& gy, const Tensor& x, const Tensor& gamma,
                                            const Tensor& mean, const Tensor& var, float epsilon) {
  check_bn("batch_norm_train_backward", x, {&gamma, &mean, &var});
  BONSAI_CHECK(gy.shape() == x.shape(), "batch_norm_train_backward: output gradient " +
                                            gy.shape_str() + " vs input " + x.shape_str());
  const int64_t C = x.dim(-1), M = x.numel() / std::max<int64_t>(C, 1);
  const float *gyp = gy.data<float>(), *xp = x.data<float>(), *gp = gamma.data<float>();
  const float *mp = mean.data<float>(), *vp = var.data<float>();
  Tensor dx = Tensor::empty(x.shape()), dgamma = Tensor::empty({C}), dbeta = Tensor::empty({C});
  float* dxp = dx.data<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double inv_std = 1.0 / std::sqrt(static_cast<double>(vp[c]) + epsilon);
    double db = 0.0, dg = 0.0;
    for (int64_t m = 0; m < M; ++m) {
      const double xhat = (static_cast<double>(xp[m * C + c]) - mp[c]) * inv_std;
      db += gyp[m * C + c];
      dg += gyp[m * C + c] * xhat;
    }
    const double k = gp[c] * inv_std / static_cast<double>(M);
    for (int64_t m = 0; m < M; ++m) {
      const double xhat = (static_cast<double>(xp[m * C + c]) - mp[c]) * inv_std;
      dxp[m * C + c] =
          static_cast<float>(k * (static_cast<double>(M) * gyp[m * C + c] - db - xhat * dg));
    }
    dgamma.data<float>()[c] = static_cast<float>(dg);
    dbeta.data<float>()[c] = static_cast<float>(db);
  }
  return {dx, dgamma, dbeta};
}

// ---------------------------------------------------------------- pooling

Tensor max_pool2d_forward(const Tensor& x, const PoolParams& p) {
  const PoolGeom g = pool_geom("max_pool2d_forward", x.shape(), p);
  const float* xp = x.data<float>();
  Tensor y = Tensor::empty({g.N, g.OH, g.OW, g.C});
  float* yp = y.data<float>();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow)
        for (int64_t c = 0; c < g.C; ++c) {
          const int64_t i = max_pool_argmax(xp, g, p, n, oh, ow, c);
          yp[((n * g.OH + oh) * g.OW + ow) * g.C + c] = i < 0 ? 0.0f : xp[i];
        }
  return y;
}

// The gradient of each window goes to its first maximal input element.
Tensor max_pool2d_backward(const Tensor& gy, const Tensor& x, const PoolParams& p) {
  const PoolGeom g = pool_geom("max_pool2d_backward", x.shape(), p);
  check_gy("max_pool2d_backward", gy, {g.N, g.OH, g.OW, g.C});
  const float *xp = x.data<float>(), *gp = gy.data<float>();
  std::vector<double> dx(static_cast<size_t>(x.numel()), 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow)
        for (int64_t c = 0; c < g.C; ++c) {
          const int64_t i = max_pool_argmax(xp, g, p, n, oh, ow, c);
          if (i >= 0) dx[i] += gp[((n * g.OH + oh) * g.OW + ow) * g.C + c];
        }
  return to_tensor(dx, x.shape());
}

// y = (sum of in-range pixels) / (exclude_padding ? in-range count : KH*KW).
Tensor avg_pool2d_forward(const Tensor& x, const PoolParams& p) {
  const PoolGeom g = pool_geom("avg_pool2d_forward", x.shape(), p);
  const float* xp = x.data<float>();
  Tensor y = Tensor::empty({g.N, g.OH, g.OW, g.C});
  float* yp = y.data<float>();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t div = avg_pool_divisor(g, p, oh, ow);
        for (int64_t c = 0; c < g.C; ++c) {
          double acc = 0.0;
          for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad.top + kh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
              const int64_t iw = ow * p.stride_w - p.pad.left + kw;
              if (iw >= 0 && iw < g.W) acc += xp[((n * g.H + ih) * g.W + iw) * g.C + c];
            }
          }
          yp[((n * g.OH + oh) * g.OW + ow) * g.C + c] =
              div > 0 ? static_cast<float>(acc / static_cast<double>(div)) : 0.0f;
        }
      }
  return y;
}

// Each in-range pixel of a window receives gy / divisor.
Tensor avg_pool2d_backward(const Tensor& gy, const Shape& x_shape, const PoolParams& p) {
  const PoolGeom g = pool_geom("avg_pool2d_backward", x_shape, p);
  check_gy("avg_pool2d_backward", gy, {g.N, g.OH, g.OW, g.C});
  const float* gp = gy.data<float>();
  std::vector<double> dx(static_cast<size_t>(x_shape.numel()), 0.0);
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const int64_t div = avg_pool_divisor(g, p, oh, ow);
        if (div == 0) continue;
        for (int64_t c = 0; c < g.C; ++c) {
          const double share =
              gp[((n * g.OH + oh) * g.OW + ow) * g.C + c] / static_cast<double>(div);
          for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad.top + kh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
              const int64_t iw = ow * p.stride_w - p.pad.left + kw;
              if (iw >= 0 && iw < g.W) dx[((n * g.H + ih) * g.W + iw) * g.C + c] += share;
            }
          }
        }
      }
  return to_tensor(dx, x_shape);
}

// ---------------------------------------------------------------- dense

// y[n,o] = b[o] + sum_i x[n,i] * w[i,o].
Tensor dense_forward(const Tensor& x, const Tensor& w, const Tensor& bias) {
  BONSAI_CHECK(x.rank() == 2 && w.rank() == 2 && x.dim(1) == w.dim(0),
               "dense_forward: input " + x.shape_str() + " and weight " + w.shape_str() +
                   " must be [N,in] and [in,out]");
  const int64_t N = x.dim(0), I = x.dim(1), O = w.dim(1);
  BONSAI_CHECK(!bias.defined() || (bias.rank() == 1 && bias.dim(0) == O),
               "dense_forward: bias " + (bias.defined() ? bias.shape_str() : std::string()) +
                   " must be [" + std::to_string(O) + "]");
  const float *xp = x.data<float>(), *wp = w.data<float>();
  const float* bp = bias.defined() ? bias.data<float>() : nullptr;
  Tensor y = Tensor::empty({N, O});
  float* yp = y.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      double acc = bp ? bp[o] : 0.0;
      for (int64_t i = 0; i < I; ++i) acc += static_cast<double>(xp[n * I + i]) * wp[i * O + o];
      yp[n * O + o] = static_cast<float>(acc);
    }
  return y;
}

// dx[n,i] = sum_o gy[n,o] * w[i,o].
Tensor dense_backward_data(const Tensor& gy, const Tensor& w) {
  BONSAI_CHECK(gy.rank() == 2 && w.rank() == 2 && gy.dim(1) == w.dim(1),
               "dense_backward_data: output gradient " + gy.shape_str() + " and weight " +
                   w.shape_str() + " must be [N,out] and [in,out]");
  const int64_t N = gy.dim(0), I = w.dim(0), O = w.dim(1);
  const float *gp = gy.data<float>(), *wp = w.data<float>();
  Tensor dx = Tensor::empty({N, I});
  float* dxp = dx.data<float>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < I; ++i) {
      double acc = 0.0;
      for (int64_t o = 0; o < O; ++o) acc += static_cast<double>(gp[n * O + o]) * wp[i * O + o];
      dxp[n * I + i] = static_cast<float>(acc);
    }
  return dx;
}

// dw[i,o] = sum_n x[n,i] * gy[n,o].
Tensor dense_backward_weights(const Tensor& gy, const Tensor& x) {
  BONSAI_CHECK(gy.rank() == 2 && x.rank() == 2 && gy.dim(0) == x.dim(0),
               "dense_backward_weights: output gradient " + gy.shape_str() + " and input " +
                   x.shape_str() + " must be [N,out] and [N,in]");
  const int64_t N = x.dim(0), I = x.dim(1), O = gy.dim(1);
  const float *gp = gy.data<float>(), *xp = x.data<float>();
  Tensor dw = Tensor::empty({I, O});
  float* dwp = dw.data<float>();
  for (int64_t i = 0; i < I; ++i)
    for (int64_t o = 0; o < O; ++o) {
      double acc = 0.0;
      for (int64_t n = 0; n < N; ++n) acc += static_cast<double>(xp[n * I + i]) * gp[n * O + o];
      dwp[i * O + o] = static_cast<float>(acc);
    }
  return dw;
}

// ---------------------------------------------------------------- resize

// y[n,oy,ox,c] = (1-ly)*((1-lx)*x[y0,x0] + lx*x[y0,x1]) + ly*((1-lx)*x[y1,x0] + lx*x[y1,x1]).
Tensor resize_bilinear_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  BONSAI_CHECK(x.rank() == 4 && x.dim(1) > 0 && x.dim(2) > 0 && out_h > 0 && out_w > 0,
               "resize_bilinear_forward: input " + x.shape_str() + " to " + std::to_string(out_h) +
                   "x" + std::to_string(out_w) +
                   ": need a non-empty [N,H,W,C] and a positive output size");
  const int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2), C = x.dim(3);
  const float* xp = x.data<float>();
  Tensor y = Tensor::empty({N, out_h, out_w, C});
  float* yp = y.data<float>();
  auto at = [&](int64_t n, int64_t h, int64_t w, int64_t c) -> double {
    return xp[((n * H + h) * W + w) * C + c];
  };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oy = 0; oy < out_h; ++oy) {
      const Taps ty = bilinear_taps(oy, H, out_h);
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const Taps tx = bilinear_taps(ox, W, out_w);
        for (int64_t c = 0; c < C; ++c) {
          const double top =
              (1 - tx.lambda) * at(n, ty.i0, tx.i0, c) + tx.lambda * at(n, ty.i0, tx.i1, c);
          const double bot =
              (1 - tx.lambda) * at(n, ty.i1, tx.i0, c) + tx.lambda * at(n, ty.i1, tx.i1, c);
          yp[((n * out_h + oy) * out_w + ox) * C + c] =
              static_cast<float>((1 - ty.lambda) * top + ty.lambda * bot);
        }
      }
    }
  return y;
}

// Scatters each gy element to its four source pixels with the forward weights.
Tensor resize_bilinear_backward(const Tensor& gy, const Shape& x_shape) {
  BONSAI_CHECK(gy.rank() == 4 && x_shape.rank() == 4 && gy.dim(0) == x_shape[0] &&
                   gy.dim(3) == x_shape[3] && x_shape[1] > 0 && x_shape[2] > 0,
               "resize_bilinear_backward: output gradient " + gy.shape_str() +
                   " does not fit input shape " + x_shape.str());
  const int64_t N = x_shape[0], H = x_shape[1], W = x_shape[2], C = x_shape[3];
  const int64_t OH = gy.dim(1), OW = gy.dim(2);
  const float* gp = gy.data<float>();
  std::vector<double> dx(static_cast<size_t>(x_shape.numel()), 0.0);
  auto add = [&](int64_t n, int64_t h, int64_t w, int64_t c, double v) {
    dx[((n * H + h) * W + w) * C + c] += v;
  };
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oy = 0; oy < OH; ++oy) {
      const Taps ty = bilinear_taps(oy, H, OH);
      for (int64_t ox = 0; ox < OW; ++ox) {
        const Taps tx = bilinear_taps(ox, W, OW);
        for (int64_t c = 0; c < C; ++c) {
          const double g = gp[((n * OH + oy) * OW + ox) * C + c];
          add(n, ty.i0, tx.i0, c, g * (1 - ty.lambda) * (1 - tx.lambda));
          add(n, ty.i0, tx.i1, c, g * (1 - ty.lambda) * tx.lambda);
          add(n, ty.i1, tx.i0, c, g * ty.lambda * (1 - tx.lambda));
          add(n, ty.i1, tx.i1, c, g * ty.lambda * tx.lambda);
        }
      }
    }
  return to_tensor(dx, x_shape);
}

}  // namespace bonsai::ops::ref
