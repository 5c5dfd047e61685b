// Naive reference kernels: the slow twins of the fast paths in core/ops.h.
// Plain loops written straight from the definitions, no autograd, no
// blocking; tests compare every fast forward and backward against these.
#pragma once

#include "core/ops.h"

namespace bonsai::ops::ref {

// Convolution: x [N,H,W,Cin], w [KH,KW,Cin/g,Cout], gy [N,OH,OW,Cout].
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p);
Tensor conv2d_backward_data(const Tensor& gy, const Tensor& w, const Shape& x_shape,
                            const Conv2dParams& p);
Tensor conv2d_backward_weights(const Tensor& gy, const Tensor& x, const Shape& w_shape,
                               const Conv2dParams& p);
Tensor conv2d_backward_bias(const Tensor& gy);

// Batch norm over all axes but the last. Training forward also returns the
// batch mean and biased variance; backward gives dx, dgamma, dbeta.
struct BatchNormForward {
  Tensor y, mean, var;
};
BatchNormForward batch_norm_train_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                          float epsilon);
Tensor batch_norm_infer_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                const Tensor& mean, const Tensor& var, float epsilon);
struct BatchNormBackward {
  Tensor dx, dgamma, dbeta;
};
BatchNormBackward batch_norm_train_backward(const Tensor& gy, const Tensor& x, const Tensor& gamma,
                                            const Tensor& mean, const Tensor& var, float epsilon);

// Pooling on [N,H,W,C].
Tensor max_pool2d_forward(const Tensor& x, const PoolParams& p);
Tensor max_pool2d_backward(const Tensor& gy, const Tensor& x, const PoolParams& p);
Tensor avg_pool2d_forward(const Tensor& x, const PoolParams& p);
Tensor avg_pool2d_backward(const Tensor& gy, const Shape& x_shape, const PoolParams& p);

// Dense: x [N,in], w [in,out].
Tensor dense_forward(const Tensor& x, const Tensor& w, const Tensor& bias);
Tensor dense_backward_data(const Tensor& gy, const Tensor& w);
Tensor dense_backward_weights(const Tensor& gy, const Tensor& x);

// Bilinear resize, half-pixel centres, computed pixel by pixel.
Tensor resize_bilinear_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor resize_bilinear_backward(const Tensor& gy, const Shape& x_shape);

}  // namespace bonsai::ops::ref
