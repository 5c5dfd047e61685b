// Differentiable ops. Each one computes its forward on the fast path (oneDNN,
// OpenBLAS or a vectorised loop), records its backward in the autograd graph,
// and has a naive reference kernel in namespace `ref` (core/ops_ref.h) that
// the tests compare the fast path against.
//
// Layouts: activations NHWC; conv weights HWIO [KH, KW, Cin/groups, Cout];
// dense weights [in, out]; per-channel vectors [C].
//
//   Tensor y = ops::conv2d(x, w, b, {.stride_h = 2, .stride_w = 2,
//                                    .pad = {0, 0, 1, 1}});   // TF SAME, stride 2
//   y = ops::relu6(ops::batch_norm(y, gamma, beta, mean, var, {.training = true}));
//   Tensor loss = ops::softmax_cross_entropy(logits, labels, {.label_smoothing = 0.1f});
//   loss.backward();
#pragma once

#include <random>
#include <vector>

#include "core/tensor.h"

namespace bonsai::ops {

// Explicit four-sided padding, in the order (top, left, bottom, right).
struct Padding {
  int top = 0, left = 0, bottom = 0, right = 0;
};

struct Conv2dParams {
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;  // 1 = no dilation (PyTorch convention)
  Padding pad;
  int groups = 1;  // groups == Cin == Cout/multiplier: depthwise
};

// Output extent of a convolution or pooling window along one axis.
int64_t conv_out_size(int64_t in, int kernel, int stride, int dilation, int pad_begin, int pad_end);

// TensorFlow 'SAME' padding (asymmetric: the extra pixel goes bottom/right).
Padding tf_same_padding(int64_t in_h, int64_t in_w, int kh, int kw, int stride_h, int stride_w,
                        int dilation_h = 1, int dilation_w = 1);

// x [N, H, W, Cin], w [KH, KW, Cin/groups, Cout], bias [Cout] or undefined.
// Returns [N, OH, OW, Cout].
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);

struct BatchNormParams {
  bool training = false;   // batch statistics + running-stat update, or running stats
  float momentum = 0.99f;  // Keras: moving = moving*momentum + batch*(1-momentum)
  float epsilon = 1e-3f;   // Keras default; torchvision uses 1e-5
};

// x [N, H, W, C] (or [N, C]); gamma, beta, running_mean, running_var [C].
// In training the running statistics are updated in place (no gradient),
// with the unbiased batch variance, as TF's fused batch norm and PyTorch do.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                  const Tensor& running_mean, const Tensor& running_var,
                  const BatchNormParams& p);
// relu(batch_norm(x, ...)) in training (p.training must be set) as one
// oneDNN primitive (fuse_norm_relu): the ReLU costs no pass of its own
// forward or backward (the backward reads a bit mask oneDNN keeps).
// Values and gradients equal the two ops'.
Tensor batch_norm_relu(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                       const Tensor& running_var, const BatchNormParams& p);

// Activations (elementwise).
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
Tensor hard_sigmoid(const Tensor& x);  // relu6(x + 3) / 6
Tensor hard_swish(const Tensor& x);    // x * relu6(x + 3) / 6
Tensor sigmoid(const Tensor& x);

// Binary ops with numpy broadcasting (e.g. [N,H,W,C] * [N,1,1,C] for SE).
Tensor add(const Tensor& a, const Tensor& b);
// relu(a + b) for same-shape a and b in one pass (a residual connection
// and its activation); values and gradients equal the two ops'.
Tensor add_relu(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);  // x * s

struct PoolParams {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  Padding pad;
  // Average pooling: divide by the number of real (non-padding) pixels, as
  // TF does; false divides by the full window (PyTorch's default).
  bool exclude_padding = true;
};

Tensor max_pool2d(const Tensor& x, const PoolParams& p);  // padding acts as -inf
Tensor avg_pool2d(const Tensor& x, const PoolParams& p);
Tensor global_avg_pool(const Tensor& x);                  // [N,H,W,C] -> [N,1,1,C]

// x [N, in], w [in, out], bias [out] or undefined -> [N, out].
Tensor dense(const Tensor& x, const Tensor& w, const Tensor& bias);

// Concatenate along `axis` (default: the last, i.e. channels in NHWC).
Tensor concat(const std::vector<Tensor>& xs, int axis = -1);

// Bilinear resize of [N, H, W, C] to [N, out_h, out_w, C] with half-pixel
// centres and no corner alignment (TF2 and PyTorch align_corners=False).
Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w);

// Inverted dropout: in training zero each element with probability `rate`
// and scale the rest by 1/(1-rate); identity otherwise.
Tensor dropout(const Tensor& x, float rate, bool training, std::mt19937& rng);

struct CrossEntropyParams {
  float label_smoothing = 0.0f;  // target = (1-s)*onehot + s/C
  int64_t ignore_label = -1;     // labels equal to this contribute nothing (VOC: 255)
};

// logits [..., C] f32, labels [...] s64 (same leading shape). Mean over the
// non-ignored elements; a scalar.
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels,
                             const CrossEntropyParams& p = {});

Tensor sum(const Tensor& x);   // all elements -> scalar [1]
Tensor mean(const Tensor& x);  // all elements -> scalar [1]

Tensor reshape(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x);  // [N, ...] -> [N, rest]

}  // namespace bonsai::ops
