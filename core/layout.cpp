#include "core/layout.h"

namespace bonsai {

namespace {
// out[n][a][b][c] = in[n][c][a][b] read with the given source strides: one
// loop nest serves both directions.
Tensor permute4(const Tensor& x, const Shape& out_shape, int64_t s1, int64_t s2, int64_t s3) {
  Tensor y = Tensor::empty(out_shape);
  const float* s = x.data<float>();
  float* d = y.data<float>();
  const int64_t N = out_shape[0], A = out_shape[1], B = out_shape[2], C = out_shape[3];
  const int64_t sn = x.numel() / std::max<int64_t>(N, 1);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t a = 0; a < A; ++a)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) *d++ = s[n * sn + a * s1 + b * s2 + c * s3];
  return y;
}
}  // namespace

Tensor nchw_to_nhwc(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4, "nchw_to_nhwc: expected [N, C, H, W], got " + x.shape_str());
  const int64_t C = x.dim(1), H = x.dim(2), W = x.dim(3);
  return permute4(x, {x.dim(0), H, W, C}, W, 1, H * W);
}

Tensor nhwc_to_nchw(const Tensor& x) {
  BONSAI_CHECK(x.rank() == 4, "nhwc_to_nchw: expected [N, H, W, C], got " + x.shape_str());
  const int64_t H = x.dim(1), W = x.dim(2), C = x.dim(3);
  return permute4(x, {x.dim(0), C, H, W}, 1, W * C, C);
}

}  // namespace bonsai
