#include "quant/fake_quant.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/autograd.h"
#include "quant/scheme.h"

namespace bonsai::quant {

namespace {

// The nudged grid of each channel, in arrays the loops read.
struct Grid {
  std::vector<float> nmin, nmax, scale, inv_scale;
  std::vector<float> zp_steps, top;  // z - qmin and qmax - qmin: the code's steps above qmin
  int64_t channels() const { return static_cast<int64_t>(scale.size()); }
};

void check_range_tensor(const Tensor& t, int64_t channels, const char* what, const Tensor& x) {
  BONSAI_CHECK(t.defined() && t.dtype() == DType::f32 && t.numel() == channels,
               std::string("fake_quant: ") + what + " must be f32 with " + std::to_string(channels) +
                   " element(s) for input " + x.shape_str() + ", got " +
                   (t.defined() ? t.shape_str() : std::string("undefined")));
}

Grid make_grid(const Tensor& x, const Tensor& min, const Tensor& max, int64_t channels,
               const FakeQuantOptions& o) {
  BONSAI_CHECK(x.dtype() == DType::f32 && x.numel() > 0, "fake_quant: input must be non-empty f32, got " +
                                                             x.shape_str());
  check_range_tensor(min, channels, "min", x);
  check_range_tensor(max, channels, "max", x);
  Grid g;
  const float* lo = min.data<float>();
  const float* hi = max.data<float>();
  for (int64_t c = 0; c < channels; ++c) {
    AffineQuant a = nudge_range(lo[c], hi[c], {.num_bits = o.num_bits, .narrow_range = o.narrow_range});
    g.nmin.push_back(a.nudged_min);
    g.nmax.push_back(a.nudged_max);
    g.scale.push_back(a.scale);
    g.inv_scale.push_back(1.0f / a.scale);
    g.zp_steps.push_back(static_cast<float>(a.zero_point - a.qmin));
    g.top.push_back(static_cast<float>(a.qmax - a.qmin));
  }
  return g;
}

// TF's functor picks the code: k = floor((clamp(x) - nmin) * (1/s) + 0.5)
// steps above qmin. The value is that code dequantized as TFLite does,
// (k - (z - qmin)) * s, one rounding, so the zero point is exactly 0; TF's
// functor returns k * s + nmin, which can land an ulp off the grid point —
// off zero for the zero point, where a lookup then rounds a tie the other
// way (hard_sigmoid(0) = 0.5 is 127.5 steps of the gate's [0, 1] grid).
inline float fq(float v, float nmin, float nmax, float scale, float inv_scale, float zp_steps, float top) {
  const float shifted = std::min(nmax, std::max(nmin, v)) - nmin;
  return (std::min(std::floor(shifted * inv_scale + 0.5f), top) - zp_steps) * scale;
}

Tensor fake_quant_impl(const Tensor& x, const Tensor& min, const Tensor& max, const FakeQuantOptions& o,
                       bool per_channel) {
  const int64_t channels = per_channel ? x.dim(-1) : 1;
  Grid grid = make_grid(x, min, max, channels, o);
  const int64_t n = x.numel(), rows = n / channels;
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  float* py = y.data<float>();
  if (!per_channel) {
    const float nmin = grid.nmin[0], nmax = grid.nmax[0], s = grid.scale[0], inv = grid.inv_scale[0],
                zp = grid.zp_steps[0], top = grid.top[0];
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; ++i) py[i] = fq(px[i], nmin, nmax, s, inv, zp, top);
  } else {
    const float *nmin = grid.nmin.data(), *nmax = grid.nmax.data(), *s = grid.scale.data(),
                *inv = grid.inv_scale.data(), *zp = grid.zp_steps.data(), *top = grid.top.data();
#pragma omp parallel for if (n > 65536)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t i = r * channels + c;
        py[i] = fq(px[i], nmin[c], nmax[c], s[c], inv[c], zp[c], top[c]);
      }
  }

  const bool want_min = min.requires_grad(), want_max = max.requires_grad();
  return record(y, per_channel ? "fake_quant_per_channel" : "fake_quant", {x, min, max},
                [xs = x.detach(), grid = std::move(grid), want_min, want_max](const Tensor& gy) {
                  const int64_t n = xs.numel(), channels = grid.channels(), rows = n / channels;
                  const float* px = xs.data<float>();
                  const float* pg = gy.data<float>();
                  Tensor gx = Tensor::empty(xs.shape());
                  float* pgx = gx.data<float>();
                  // Per-channel sums of the gradient that fell below / above the range.
                  std::vector<double> below(channels, 0.0), above(channels, 0.0);
                  if (channels == 1) {  // per tensor: parallel, with scalar reductions
                    const float nmin = grid.nmin[0], nmax = grid.nmax[0];
                    double b = 0.0, a = 0.0;
#pragma omp parallel for reduction(+ : b, a) if (n > 65536)
                    for (int64_t i = 0; i < n; ++i) {
                      const bool lo = px[i] < nmin, hi = px[i] > nmax;
                      pgx[i] = lo || hi ? 0.0f : pg[i];
                      b += lo ? pg[i] : 0.0f;
                      a += hi ? pg[i] : 0.0f;
                    }
                    below[0] = b;
                    above[0] = a;
                  } else {
                    for (int64_t r = 0; r < rows; ++r)
                      for (int64_t c = 0; c < channels; ++c) {
                        const int64_t i = r * channels + c;
                        const float v = px[i];
                        const bool lo = v < grid.nmin[c], hi = v > grid.nmax[c];
                        pgx[i] = lo || hi ? 0.0f : pg[i];
                        if (lo) below[c] += pg[i];
                        if (hi) above[c] += pg[i];
                      }
                  }
                  Tensor gmin, gmax;
                  if (want_min) {
                    gmin = Tensor::empty({channels});
                    for (int64_t c = 0; c < channels; ++c) gmin.data<float>()[c] = static_cast<float>(below[c]);
                  }
                  if (want_max) {
                    gmax = Tensor::empty({channels});
                    for (int64_t c = 0; c < channels; ++c) gmax.data<float>()[c] = static_cast<float>(above[c]);
                  }
                  return Grads{gx, gmin, gmax};
                });
}

void check_lsq(const Tensor& x, const Tensor& scale, const LsqOptions& o) {
  BONSAI_CHECK(x.dtype() == DType::f32 && x.numel() > 0 && x.rank() >= 1,
               "fake_quant_lsq: input must be non-empty f32, got " + x.shape_str());
  BONSAI_CHECK(scale.defined() && scale.dtype() == DType::f32 &&
                   (scale.numel() == 1 || scale.numel() == x.dim(-1)),
               "fake_quant_lsq: scale must have 1 or " + std::to_string(x.dim(-1)) +
                   " (channels) elements for input " + x.shape_str() + ", got " + scale.shape_str());
  BONSAI_CHECK(o.qmin < o.qmax && o.zero_point >= o.qmin && o.zero_point < o.qmax,
               "fake_quant_lsq: need qmin < qmax and qmin <= zero_point < qmax, got [" +
                   std::to_string(o.qmin) + ", " + std::to_string(o.qmax) + "], zero_point " +
                   std::to_string(o.zero_point));
  const float* ps = scale.data<float>();
  for (int64_t c = 0; c < scale.numel(); ++c)
    BONSAI_CHECK(ps[c] > 0.0f && std::isfinite(ps[c]),
                 "fake_quant_lsq: scale[" + std::to_string(c) + "] = " + std::to_string(ps[c]) +
                     " must be positive");
}

}  // namespace

Tensor fake_quant(const Tensor& x, const Tensor& min, const Tensor& max, const FakeQuantOptions& o) {
  return fake_quant_impl(x, min, max, o, false);
}

Tensor fake_quant_per_channel(const Tensor& x, const Tensor& min, const Tensor& max,
                              const FakeQuantOptions& o) {
  BONSAI_CHECK(x.rank() >= 1, "fake_quant_per_channel: input must have a channel axis");
  return fake_quant_impl(x, min, max, o, true);
}

Tensor fake_quant_lsq(const Tensor& x, const Tensor& scale, const LsqOptions& o) {
  check_lsq(x, scale, o);
  // Broadcast a per-tensor scale as `channels` = 1 with a flat loop.
  const int64_t channels = scale.numel(), n = x.numel(), rows = n / channels;
  const float lo = static_cast<float>(o.qmin - o.zero_point), hi = static_cast<float>(o.qmax - o.zero_point);
  Tensor y = Tensor::empty(x.shape());
  const float* px = x.data<float>();
  const float* ps = scale.data<float>();
  float* py = y.data<float>();
#pragma omp parallel for if (n > 65536)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = r * channels + c;
      // (clamp(round(v) + z) - z) * s, with the clamp done relative to z.
      py[i] = std::clamp(std::round(px[i] / ps[c]), lo, hi) * ps[c];
    }

  const double grad_factor = 1.0 / std::sqrt(static_cast<double>(n) * (o.qmax - o.zero_point));
  return record(y, "fake_quant_lsq", {x, scale},
                [xs = x.detach(), ss = scale.detach(), lo, hi, grad_factor](const Tensor& gy) {
                  const int64_t channels = ss.numel(), n = xs.numel(), rows = n / channels;
                  const float* px = xs.data<float>();
                  const float* ps = ss.data<float>();
                  const float* pg = gy.data<float>();
                  Tensor gx = Tensor::empty(xs.shape());
                  float* pgx = gx.data<float>();
                  std::vector<double> gs(channels, 0.0);
                  for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < channels; ++c) {
                      const int64_t i = r * channels + c;
                      const float v = px[i] / ps[c];
                      const float rv = std::round(v);
                      double ds;  // d y / d s under the STE
                      if (rv < lo) {
                        pgx[i] = 0.0f;
                        ds = lo;
                      } else if (rv > hi) {
                        pgx[i] = 0.0f;
                        ds = hi;
                      } else {
                        pgx[i] = pg[i];
                        ds = static_cast<double>(rv) - static_cast<double>(v);
                      }
                      gs[c] += pg[i] * ds;
                    }
                  Tensor gscale = Tensor::empty(ss.shape());
                  for (int64_t c = 0; c < channels; ++c)
                    gscale.data<float>()[c] = static_cast<float>(gs[c] * grad_factor);
                  return Grads{gx, gscale};
                });
}

namespace ref {

namespace {
Tensor fake_quant_ref(const Tensor& x, const Tensor& min, const Tensor& max, const FakeQuantOptions& o,
                      int64_t channels) {
  const int64_t n = x.numel();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = i % channels;
    AffineQuant a = nudge_range(min.data<float>()[c], max.data<float>()[c],
                                {.num_bits = o.num_bits, .narrow_range = o.narrow_range});
    // Integer code on the signed grid, rounding as TF does (in the shifted
    // domain, where everything is >= 0), then dequantized.
    const float v = std::min(a.nudged_max, std::max(a.nudged_min, x.data<float>()[i]));
    const auto steps = static_cast<int32_t>(std::floor((v - a.nudged_min) * (1.0f / a.scale) + 0.5f));
    const int32_t q = std::min(a.qmax, a.qmin + steps);
    y.data<float>()[i] = dequantize_value(q, a);
  }
  return y;
}
}  // namespace

Tensor fake_quant(const Tensor& x, const Tensor& min, const Tensor& max, const FakeQuantOptions& o) {
  return fake_quant_ref(x, min, max, o, 1);
}

Tensor fake_quant_per_channel(const Tensor& x, const Tensor& min, const Tensor& max,
                              const FakeQuantOptions& o) {
  return fake_quant_ref(x, min, max, o, x.dim(-1));
}

Tensor fake_quant_lsq(const Tensor& x, const Tensor& scale, const LsqOptions& o) {
  const int64_t n = x.numel(), channels = scale.numel();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t i = 0; i < n; ++i) {
    const float s = scale.data<float>()[i % channels];
    const auto r = static_cast<int64_t>(std::round(x.data<float>()[i] / s));
    const int64_t q = std::clamp<int64_t>(r + o.zero_point, o.qmin, o.qmax);
    y.data<float>()[i] = static_cast<float>(q - o.zero_point) * s;
  }
  return y;
}

}  // namespace ref

}  // namespace bonsai::quant
