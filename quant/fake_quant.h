// Fake quantization: the differentiable float ops QAT trains through. Each
// rounds its input onto the int grid the deployed model will use and back to
// float, and records a straight-through gradient in autograd.
//
//   // Activations (range from an observer, quant/observer.h):
//   Tensor y = quant::fake_quant(x, obs.min(), obs.max());            // 8 bit, asymmetric
//   // Conv kernel [KH, KW, Cin, Cout], symmetric narrow range per output channel:
//   Tensor wq = quant::fake_quant_per_channel(w, wmin, wmax, {.narrow_range = true});
//   // Learned step size (LSQ), e.g. weights with scale [Cout] as a parameter:
//   Tensor wl = quant::fake_quant_lsq(w, scale, {.qmin = -127, .qmax = 127});
//
// fake_quant / fake_quant_per_channel are TensorFlow's
// FakeQuantWithMinMaxVars(PerChannel) and their Gradient ops:
//   forward: the range [min, max] is nudged (quant/scheme.h nudge_range) to
//     [nmin, nmax] with step s, then
//       y = floor((clamp(x, nmin, nmax) - nmin) / s + 0.5) * s + nmin
//     (TF multiplies by the float 1/s; so do we, to round identically);
//   backward (clipped straight-through estimator):
//       dL/dx   = dL/dy            where nmin <= x <= nmax, else 0
//       dL/dmin = Σ dL/dy over elements with x < nmin
//       dL/dmax = Σ dL/dy over elements with x > nmax
//     (per channel: the sums run per channel). min and max receive gradients
//     only if they require grad (observer ranges do not; trainable ranges do).
// Per channel means along the last axis: HWIO kernels' output channels, dense
// kernels' outputs, NHWC activations' channels.
//
// fake_quant_lsq is Learned Step Size Quantization (Esser et al., 2019,
// arXiv 1902.08153), with an integer zero point z held fixed:
//   v = x / s,  q = clamp(round(v) + z, qmin, qmax),  y = (q - z) * s
//   dL/dx = dL/dy where qmin <= round(v) + z <= qmax, else 0   (STE)
//   dL/ds = g * Σ dL/dy * { round(v) - v      inside,
//                           qmin - z          below,
//                           qmax - z          above }
//   g = 1 / sqrt(numel(x) * (qmax - z))   (the paper's gradient scale; numel of
//   the whole tensor also for per-channel scales, as PyTorch's
//   _LearnableFakeQuantize does).
// round() is half away from zero, as TFLite's Quantize; scale [1] or [C].
//
// Each op has a plain scalar twin in quant::ref that the tests compare with.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace bonsai::quant {

struct FakeQuantOptions {
  int num_bits = 8;           // 8; 6 and 4 in simulation only
  bool narrow_range = false;  // true for weights (symmetric [-127, 127])
};

// x any shape (f32); min, max [1].
Tensor fake_quant(const Tensor& x, const Tensor& min, const Tensor& max, const FakeQuantOptions& o = {});
// x [..., C]; min, max [C].
Tensor fake_quant_per_channel(const Tensor& x, const Tensor& min, const Tensor& max,
                              const FakeQuantOptions& o = {});

struct LsqOptions {
  int32_t qmin = -128, qmax = 127;  // signed grid (weights: -127..127)
  int32_t zero_point = 0;           // fixed; activations after ReLU may use qmin
};

// x [..., C]; scale [1] (per tensor) or [C] (per channel), positive.
Tensor fake_quant_lsq(const Tensor& x, const Tensor& scale, const LsqOptions& o = {});

namespace ref {
// Naive scalar references (forward only) of the ops above: each element is
// mapped to its integer code and dequantized as (q - zero_point) * scale.
Tensor fake_quant(const Tensor& x, const Tensor& min, const Tensor& max, const FakeQuantOptions& o = {});
Tensor fake_quant_per_channel(const Tensor& x, const Tensor& min, const Tensor& max,
                              const FakeQuantOptions& o = {});
Tensor fake_quant_lsq(const Tensor& x, const Tensor& scale, const LsqOptions& o = {});
}  // namespace ref

}  // namespace bonsai::quant
