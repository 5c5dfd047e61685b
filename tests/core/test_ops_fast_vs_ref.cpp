// Fast paths (oneDNN, OpenBLAS, vectorised loops) against the naive
// reference kernels in core/ops_ref.h, forward and backward, in every
// configuration the models use. Tolerance: 1e-5 relative to the largest
// reference magnitude (float accumulation order differs, nothing else may).
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/dnnl_util.h"
#include "core/ops.h"
#include "core/ops_ref.h"
#include "tests/grad_check.h"

using namespace bonsai;
using bonsai::testing::rel_error;

namespace {
constexpr double kTol = 1e-5;

Tensor rnd(const Shape& s, std::mt19937& rng, float stddev = 1.f) {
  return Tensor::randn(s, rng, stddev).requires_grad_();
}
}  // namespace

TEST_CASE("conv2d: oneDNN matches the reference, forward and backward") {
  struct Case {
    const char* name;
    int k, cin, cout, groups, stride, dilation;
    ops::Padding pad;
    bool bias;
  };
  const Case cases[] = {
      {"1x1", 1, 16, 24, 1, 1, 1, {0, 0, 0, 0}, false},
      {"1x1 s2", 1, 16, 8, 1, 2, 1, {0, 0, 0, 0}, true},
      {"3x3 s1", 3, 8, 16, 1, 1, 1, {1, 1, 1, 1}, true},
      {"3x3 s2 tf-same (asymmetric)", 3, 8, 16, 1, 2, 1, {0, 0, 1, 1}, false},
      {"3x3 asymmetric top/left", 3, 5, 7, 1, 1, 1, {2, 0, 0, 2}, false},
      {"5x5 s1", 5, 6, 8, 1, 1, 1, {2, 2, 2, 2}, false},
      {"5x5 s2", 5, 6, 8, 1, 2, 1, {1, 1, 2, 2}, true},
      {"7x7 s2 stem", 7, 3, 16, 1, 2, 1, {3, 3, 3, 3}, false},
      {"3x3 dilation 2", 3, 8, 8, 1, 1, 2, {2, 2, 2, 2}, false},
      {"depthwise 3x3 s1", 3, 16, 16, 16, 1, 1, {1, 1, 1, 1}, false},
      {"depthwise 3x3 s2", 3, 16, 16, 16, 2, 1, {0, 0, 1, 1}, false},
      {"depthwise 5x5 s2", 5, 16, 16, 16, 2, 1, {1, 1, 2, 2}, true},
      {"depthwise 3x3 dilation 2", 3, 16, 16, 16, 1, 2, {2, 2, 2, 2}, false},
      {"grouped 3x3", 3, 8, 12, 4, 1, 1, {1, 1, 1, 1}, false},
  };
  std::mt19937 rng(1);
  for (const Case& c : cases) {
    CAPTURE(c.name);
    ops::Conv2dParams p{.stride_h = c.stride, .stride_w = c.stride, .dilation_h = c.dilation,
                        .dilation_w = c.dilation, .pad = c.pad, .groups = c.groups};
    Tensor x = rnd({2, 11, 10, c.cin}, rng);
    Tensor w = rnd({c.k, c.k, c.cin / c.groups, c.cout}, rng, 0.2f);
    Tensor b = c.bias ? rnd({c.cout}, rng) : Tensor();
    Tensor y = ops::conv2d(x, w, b, p);
    CHECK(rel_error(y, ops::ref::conv2d_forward(x, w, b, p)) < kTol);
    Tensor gy = Tensor::randn(y.shape(), rng);
    run_backward(y, gy);
    CHECK(rel_error(x.grad(), ops::ref::conv2d_backward_data(gy, w, x.shape(), p)) < kTol);
    CHECK(rel_error(w.grad(), ops::ref::conv2d_backward_weights(gy, x, w.shape(), p)) < kTol);
    if (c.bias) CHECK(rel_error(b.grad(), ops::ref::conv2d_backward_bias(gy)) < kTol);
  }
}

TEST_CASE("conv2d primitives are built once per shape and reused") {
  std::mt19937 rng(2);
  Tensor x = rnd({1, 9, 9, 4}, rng), w = rnd({3, 3, 4, 4}, rng);
  ops::Conv2dParams p{.pad = {1, 1, 1, 1}};
  ops::sum(ops::conv2d(x, w, Tensor(), p)).backward();
  size_t before = dnnl_util::cached_primitive_count();
  for (int i = 0; i < 3; ++i) ops::sum(ops::conv2d(x, w, Tensor(), p)).backward();
  CHECK(dnnl_util::cached_primitive_count() == before);
}

TEST_CASE("batch norm: oneDNN matches the reference") {
  std::mt19937 rng(3);
  for (Shape s : {Shape{4, 5, 6, 8}, Shape{16, 8}}) {
    CAPTURE(s.str());
    const int64_t C = s.dim(-1);
    Tensor x = rnd(s, rng, 2.f), g = rnd({C}, rng), b = rnd({C}, rng);
    Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
    Tensor y = ops::batch_norm(x, g, b, rm, rv, {.training = true, .momentum = 0.9f, .epsilon = 1e-3f});
    auto ref = ops::ref::batch_norm_train_forward(x, g, b, 1e-3f);
    CHECK(rel_error(y, ref.y) < kTol);
    // Running stats: Keras momentum with the unbiased batch variance.
    const double M = static_cast<double>(x.numel() / C);
    for (int64_t c = 0; c < C; ++c) {
      CHECK(rm.data<float>()[c] == doctest::Approx(0.1 * ref.mean.data<float>()[c]).epsilon(1e-5));
      CHECK(rv.data<float>()[c] ==
            doctest::Approx(0.9 + 0.1 * ref.var.data<float>()[c] * M / (M - 1)).epsilon(1e-5));
    }
    Tensor gy = Tensor::randn(s, rng);
    run_backward(y, gy);
    auto bw = ops::ref::batch_norm_train_backward(gy, x, g, ref.mean, ref.var, 1e-3f);
    CHECK(rel_error(x.grad(), bw.dx) < 1e-4);  // a difference of sums: 1e-4
    CHECK(rel_error(g.grad(), bw.dgamma) < kTol);
    CHECK(rel_error(b.grad(), bw.dbeta) < kTol);
    Tensor yi = ops::batch_norm(x, g, b, rm, rv, {.training = false, .epsilon = 1e-3f});
    CHECK(rel_error(yi, ops::ref::batch_norm_infer_forward(x, g, b, rm, rv, 1e-3f)) < kTol);
  }
}

TEST_CASE("pooling: oneDNN matches the reference") {
  std::mt19937 rng(4);
  struct Case {
    int k, s;
    ops::Padding pad;
  };
  for (Case c : {Case{2, 2, {}}, Case{3, 2, {1, 1, 1, 1}}, Case{3, 1, {1, 1, 1, 1}},
                 Case{3, 2, {0, 0, 1, 1}}, Case{5, 1, {2, 2, 2, 2}}}) {
    for (bool exclude : {true, false}) {
      CAPTURE(c.k);
      CAPTURE(c.s);
      CAPTURE(exclude);
      ops::PoolParams p{.kernel_h = c.k, .kernel_w = c.k, .stride_h = c.s, .stride_w = c.s,
                        .pad = c.pad, .exclude_padding = exclude};
      Tensor x = rnd({2, 9, 10, 5}, rng);
      Tensor y = ops::max_pool2d(x, p);
      CHECK(rel_error(y, ops::ref::max_pool2d_forward(x, p)) < kTol);
      Tensor gy = Tensor::randn(y.shape(), rng);
      run_backward(y, gy);
      CHECK(rel_error(x.grad(), ops::ref::max_pool2d_backward(gy, x, p)) < kTol);
      x.zero_grad();
      Tensor ya = ops::avg_pool2d(x, p);
      CHECK(rel_error(ya, ops::ref::avg_pool2d_forward(x, p)) < kTol);
      run_backward(ya, gy);
      CHECK(rel_error(x.grad(), ops::ref::avg_pool2d_backward(gy, x.shape(), p)) < kTol);
    }
  }
}

TEST_CASE("max pool treats padding as -inf") {
  Tensor x = Tensor::full({1, 2, 2, 1}, -5.f);
  Tensor y = ops::max_pool2d(x, {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1,
                                 .pad = {1, 1, 1, 1}});
  for (int64_t i = 0; i < y.numel(); ++i) CHECK(y.data<float>()[i] == -5.f);
}

TEST_CASE("dense: OpenBLAS matches the reference") {
  std::mt19937 rng(5);
  Tensor x = rnd({7, 33}, rng), w = rnd({33, 10}, rng), b = rnd({10}, rng);
  Tensor y = ops::dense(x, w, b);
  CHECK(rel_error(y, ops::ref::dense_forward(x, w, b)) < kTol);
  Tensor gy = Tensor::randn(y.shape(), rng);
  run_backward(y, gy);
  CHECK(rel_error(x.grad(), ops::ref::dense_backward_data(gy, w)) < kTol);
  CHECK(rel_error(w.grad(), ops::ref::dense_backward_weights(gy, x)) < kTol);
}

TEST_CASE("resize: tabulated fast path matches the per-pixel reference") {
  std::mt19937 rng(6);
  for (const auto& size : {std::array<int, 4>{5, 7, 11, 13}, {12, 10, 5, 4}, {4, 4, 4, 4}, {3, 5, 33, 17}}) {
    // Plain variables, not a structured binding: clang cannot capture those
    // in the lambdas CAPTURE expands to (clang 14; 16 with OpenMP on).
    const int ih = size[0], iw = size[1], oh = size[2], ow = size[3];
    CAPTURE(ih);
    CAPTURE(oh);
    Tensor x = rnd({2, ih, iw, 3}, rng);
    Tensor y = ops::resize_bilinear(x, oh, ow);
    CHECK(rel_error(y, ops::ref::resize_bilinear_forward(x, oh, ow)) < kTol);
    Tensor gy = Tensor::randn(y.shape(), rng);
    run_backward(y, gy);
    CHECK(rel_error(x.grad(), ops::ref::resize_bilinear_backward(gy, x.shape())) < kTol);
  }
}
