// Every differentiable op's gradient, checked by the shared finite-difference
// checker (tests/grad_check.h).
#include <doctest/doctest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/grad_check.h"

using namespace bonsai;
using bonsai::testing::check_gradients;
using V = std::vector<Tensor>;

namespace {

Tensor rnd(const Shape& s, uint32_t seed, float stddev = 1.f) {
  std::mt19937 rng(seed);
  return Tensor::randn(s, rng, stddev).requires_grad_();
}

// Values kept at least `gap` away from every kink in `kinks`, so a central
// difference of step 1e-2 never straddles one.
Tensor away_from(const Shape& s, uint32_t seed, std::vector<float> kinks, float gap = 0.05f) {
  std::mt19937 rng(seed);
  Tensor t = Tensor::uniform(s, rng, -8.f, 8.f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    for (float k : kinks)
      if (std::abs(p[i] - k) < gap) p[i] = k + (p[i] < k ? -gap : gap);
  return t.requires_grad_();
}

}  // namespace

TEST_CASE("grad: activations") {
  Shape s{2, 3, 4, 5};
  check_gradients("relu", [](const V& in) { return ops::relu(in[0]); }, {away_from(s, 1, {0})});
  check_gradients("relu6", [](const V& in) { return ops::relu6(in[0]); }, {away_from(s, 2, {0, 6})});
  check_gradients("hard_sigmoid", [](const V& in) { return ops::hard_sigmoid(in[0]); },
                  {away_from(s, 3, {-3, 3})});
  check_gradients("hard_swish", [](const V& in) { return ops::hard_swish(in[0]); },
                  {away_from(s, 4, {-3, 3})});
  check_gradients("sigmoid", [](const V& in) { return ops::sigmoid(in[0]); }, {rnd(s, 5, 2.f)});
}

TEST_CASE("grad: broadcasting add, sub, mul, scale") {
  // Same shapes, per-channel [C] and SE-style [N,1,1,C] broadcasting.
  for (Shape bs : {Shape{2, 3, 4, 5}, Shape{5}, Shape{2, 1, 1, 5}}) {
    CAPTURE(bs.str());
    Tensor a = rnd({2, 3, 4, 5}, 10), b = rnd(bs, 11);
    check_gradients("add", [](const V& in) { return ops::add(in[0], in[1]); }, {a, b});
    check_gradients("sub", [](const V& in) { return ops::sub(in[0], in[1]); }, {a, b});
    check_gradients("mul", [](const V& in) { return ops::mul(in[0], in[1]); }, {a, b});
    check_gradients("mul (broadcast first)", [](const V& in) { return ops::mul(in[1], in[0]); }, {a, b});
  }
  check_gradients("scale", [](const V& in) { return ops::scale(in[0], -2.5f); }, {rnd({3, 4}, 12)});
}

TEST_CASE("grad: sum, mean, reshape, flatten, concat") {
  check_gradients("sum", [](const V& in) { return ops::sum(in[0]); }, {rnd({3, 4}, 20)});
  check_gradients("mean", [](const V& in) { return ops::mean(in[0]); }, {rnd({3, 4}, 21)});
  check_gradients("reshape", [](const V& in) { return ops::reshape(in[0], {4, 3}); }, {rnd({3, 4}, 22)});
  check_gradients("flatten", [](const V& in) { return ops::flatten(in[0]); }, {rnd({2, 3, 2, 2}, 23)});
  check_gradients("concat", [](const V& in) { return ops::concat({in[0], in[1], in[2]}); },
                  {rnd({2, 3, 3, 2}, 24), rnd({2, 3, 3, 5}, 25), rnd({2, 3, 3, 1}, 26)});
  check_gradients("concat axis 1", [](const V& in) { return ops::concat({in[0], in[1]}, 1); },
                  {rnd({2, 3, 3, 2}, 27), rnd({2, 1, 3, 2}, 28)});
}

TEST_CASE("grad: conv2d in the configurations the models use") {
  struct Case {
    const char* name;
    int kh, cin, cout, groups, stride, dilation;
    ops::Padding pad;
    bool bias;
  };
  const Case cases[] = {
      {"1x1", 1, 4, 6, 1, 1, 1, {0, 0, 0, 0}, true},
      {"3x3 s1 same", 3, 3, 4, 1, 1, 1, {1, 1, 1, 1}, false},
      {"3x3 s2 tf-same asym", 3, 3, 4, 1, 2, 1, {0, 0, 1, 1}, true},
      {"5x5 s2", 5, 2, 3, 1, 2, 1, {1, 1, 2, 2}, false},
      {"7x7 s2", 7, 3, 2, 1, 2, 1, {3, 3, 3, 3}, false},
      {"3x3 dilation 2", 3, 3, 3, 1, 1, 2, {2, 2, 2, 2}, true},
      {"depthwise 3x3", 3, 4, 4, 4, 1, 1, {1, 1, 1, 1}, false},
      {"depthwise 3x3 s2", 3, 4, 4, 4, 2, 1, {0, 0, 1, 1}, true},
      {"depthwise 5x5 mult 2", 5, 3, 6, 3, 1, 1, {2, 2, 2, 2}, false},
      {"grouped", 3, 4, 6, 2, 1, 1, {1, 1, 1, 1}, false},
  };
  uint32_t seed = 30;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    ops::Conv2dParams p{.stride_h = c.stride, .stride_w = c.stride, .dilation_h = c.dilation,
                        .dilation_w = c.dilation, .pad = c.pad, .groups = c.groups};
    V in{rnd({2, 7, 8, c.cin}, seed++), rnd({c.kh, c.kh, c.cin / c.groups, c.cout}, seed++, 0.3f),
         c.bias ? rnd({c.cout}, seed++) : Tensor()};
    check_gradients(std::string("conv2d ") + c.name,
                    [p](const V& in) { return ops::conv2d(in[0], in[1], in[2], p); }, in);
  }
}

TEST_CASE("grad: batch norm, training and inference") {
  Tensor x = rnd({4, 3, 3, 5}, 50), g = rnd({5}, 51), b = rnd({5}, 52);
  Tensor rm = Tensor::zeros({5}), rv = Tensor::full({5}, 1.5f);
  check_gradients("batch_norm train",
                  [rm, rv](const V& in) {
                    return ops::batch_norm(in[0], in[1], in[2], rm, rv, {.training = true});
                  },
                  {x, g, b}, {.eps = 1e-2, .rtol = 2e-2, .atol = 2e-3});
  check_gradients("batch_norm inference",
                  [rm, rv](const V& in) {
                    return ops::batch_norm(in[0], in[1], in[2], rm, rv, {.training = false});
                  },
                  {x, g, b});
  check_gradients("batch_norm train [N,C]",
                  [rm, rv](const V& in) {
                    return ops::batch_norm(in[0], in[1], in[2], rm, rv, {.training = true});
                  },
                  {rnd({6, 5}, 53), g, b}, {.eps = 1e-2, .rtol = 2e-2, .atol = 2e-3});
}

TEST_CASE("grad: fused batch_norm_relu equals relu(batch_norm), values, gradients, running statistics") {
  Tensor x = rnd({4, 5, 5, 6}, 70), g = rnd({6}, 71), b = rnd({6}, 72);
  Tensor w = rnd({4, 5, 5, 6}, 73);  // the loss sum(y * w) weights every output differently
  auto run = [&](bool fused, Tensor& rm, Tensor& rv) {
    V in{x.detach(), g.detach(), b.detach()};
    for (Tensor& t : in) t.requires_grad_();
    const ops::BatchNormParams p{.training = true, .momentum = 0.9f, .epsilon = 1e-3f};
    Tensor y = fused ? ops::batch_norm_relu(in[0], in[1], in[2], rm, rv, p)
                     : ops::relu(ops::batch_norm(in[0], in[1], in[2], rm, rv, p));
    ops::sum(ops::mul(y, w)).backward();
    return V{y.detach(), in[0].grad(), in[1].grad(), in[2].grad()};
  };
  Tensor rm1 = Tensor::zeros({6}), rv1 = Tensor::full({6}, 1.5f), rm2 = rm1.clone(), rv2 = rv1.clone();
  const V fused = run(true, rm1, rv1), plain = run(false, rm2, rv2);
  int negative = 0;  // the ReLU must cut something for the test to mean anything
  for (int64_t i = 0; i < plain[0].numel(); ++i) negative += plain[0].data<float>()[i] == 0.f;
  CHECK(negative > plain[0].numel() / 4);
  const char* names[] = {"y", "dx", "dgamma", "dbeta"};
  for (size_t k = 0; k < fused.size(); ++k) {
    CAPTURE(names[k]);
    REQUIRE(fused[k].shape() == plain[k].shape());
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < fused[k].numel(); ++i) {
      diff = std::max(diff, std::abs(double(fused[k].data<float>()[i]) - plain[k].data<float>()[i]));
      scale = std::max(scale, std::abs(double(plain[k].data<float>()[i])));
    }
    CHECK(diff <= 1e-5 * scale + 1e-6);
  }
  for (int64_t c = 0; c < 6; ++c) {
    CHECK(rm1.data<float>()[c] == doctest::Approx(rm2.data<float>()[c]).epsilon(1e-6));
    CHECK(rv1.data<float>()[c] == doctest::Approx(rv2.data<float>()[c]).epsilon(1e-6));
  }
  CHECK_THROWS(ops::batch_norm_relu(x, g, b, rm1, rv1, {.training = false}));
}

TEST_CASE("grad: fused add_relu equals relu(add), also with one input reaching both operands") {
  Tensor x0 = rnd({3, 4, 4, 5}, 80), w0 = rnd({3, 4, 4, 5}, 81), r = rnd({3, 4, 4, 5}, 82);
  // y = relu(x * w + x): x reaches the add directly and through the product,
  // as a residual block's input does (the gradients of both paths accumulate).
  auto run = [&](bool fused) {
    Tensor x = x0.detach(), w = w0.detach();
    x.requires_grad_();
    w.requires_grad_();
    Tensor branch = ops::mul(x, w);
    Tensor y = fused ? ops::add_relu(branch, x) : ops::relu(ops::add(branch, x));
    ops::sum(ops::mul(y, r)).backward();
    return V{y.detach(), x.grad(), w.grad()};
  };
  const V fused = run(true), plain = run(false);
  int zero = 0;
  for (int64_t i = 0; i < plain[0].numel(); ++i) zero += plain[0].data<float>()[i] == 0.f;
  CHECK(zero > plain[0].numel() / 4);
  for (size_t k = 0; k < fused.size(); ++k) {
    CAPTURE(k);
    REQUIRE(fused[k].shape() == plain[k].shape());
    for (int64_t i = 0; i < fused[k].numel(); ++i)
      REQUIRE(fused[k].data<float>()[i] == doctest::Approx(plain[k].data<float>()[i]).epsilon(1e-6));
  }
  // Finite differences away from the kink: every a + b at least 0.2 from 0.
  Tensor a = rnd({2, 3, 3, 4}, 83), b = rnd({2, 3, 3, 4}, 84);
  for (int64_t i = 0; i < a.numel(); ++i)
    if (std::abs(a.data<float>()[i] + b.data<float>()[i]) < 0.2f) b.data<float>()[i] += 0.5f;
  check_gradients("add_relu", [](const V& in) { return ops::add_relu(in[0], in[1]); }, {a, b});
  CHECK_THROWS(ops::add_relu(x0, rnd({3, 4, 4, 1}, 85)));
}

TEST_CASE("grad: pooling") {
  // Distinct well-separated values so no max changes under a 1e-2 step.
  std::mt19937 rng(60);
  Tensor x = Tensor::empty({2, 7, 7, 3});
  std::vector<float> vals(x.numel());
  for (size_t i = 0; i < vals.size(); ++i) vals[i] = 0.1f * static_cast<float>(i);
  std::shuffle(vals.begin(), vals.end(), rng);
  std::copy(vals.begin(), vals.end(), x.data<float>());
  x.requires_grad_();
  check_gradients("max_pool2d 3x3 s2 pad 1",
                  [](const V& in) {
                    return ops::max_pool2d(in[0], {.kernel_h = 3, .kernel_w = 3, .stride_h = 2,
                                                   .stride_w = 2, .pad = {1, 1, 1, 1}});
                  },
                  {x});
  check_gradients("max_pool2d 2x2", [](const V& in) { return ops::max_pool2d(in[0], {}); }, {x});
  for (bool exclude : {true, false}) {
    CAPTURE(exclude);
    check_gradients("avg_pool2d 3x3 s1 pad 1",
                    [exclude](const V& in) {
                      return ops::avg_pool2d(in[0], {.kernel_h = 3, .kernel_w = 3, .stride_h = 1,
                                                     .stride_w = 1, .pad = {1, 1, 1, 1},
                                                     .exclude_padding = exclude});
                    },
                    {rnd({2, 5, 6, 3}, 61)});
  }
  check_gradients("global_avg_pool", [](const V& in) { return ops::global_avg_pool(in[0]); },
                  {rnd({2, 4, 5, 3}, 62)});
}

TEST_CASE("grad: dense, resize, dropout") {
  check_gradients("dense", [](const V& in) { return ops::dense(in[0], in[1], in[2]); },
                  {rnd({3, 5}, 70), rnd({5, 4}, 71), rnd({4}, 72)});
  check_gradients("dense no bias", [](const V& in) { return ops::dense(in[0], in[1], Tensor()); },
                  {rnd({3, 5}, 73), rnd({5, 4}, 74)});
  check_gradients("resize up", [](const V& in) { return ops::resize_bilinear(in[0], 7, 9); },
                  {rnd({2, 3, 4, 2}, 75)});
  check_gradients("resize down", [](const V& in) { return ops::resize_bilinear(in[0], 3, 2); },
                  {rnd({1, 8, 5, 2}, 76)});
  check_gradients("dropout",
                  [](const V& in) {
                    std::mt19937 rng(5);  // the same mask at every evaluation
                    return ops::dropout(in[0], 0.3f, true, rng);
                  },
                  {rnd({4, 6}, 77)});
}

TEST_CASE("grad: softmax cross-entropy with label smoothing and ignore label") {
  Tensor labels = Tensor::empty({2, 3}, DType::s64);
  int64_t lab[] = {0, 4, 255, 2, 1, 3};
  std::copy(lab, lab + 6, labels.data<int64_t>());
  for (float smoothing : {0.f, 0.1f}) {
    CAPTURE(smoothing);
    check_gradients("softmax_cross_entropy",
                    [labels, smoothing](const V& in) {
                      return ops::softmax_cross_entropy(
                          in[0], labels, {.label_smoothing = smoothing, .ignore_label = 255});
                    },
                    {rnd({2, 3, 5}, 80, 2.f)}, {.max_elements = 0});
  }
}

TEST_CASE("softmax cross-entropy value against a hand computation") {
  // logits [1, 2, 3], label 2, smoothing 0.1 over 3 classes:
  // lse = log(e + e^2 + e^3); target = [0.0333.., 0.0333.., 0.9333..]
  Tensor z = Tensor::from({1, 3}, {1.f, 2.f, 3.f});
  Tensor y = Tensor::empty({1}, DType::s64);
  y.data<int64_t>()[0] = 2;
  double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  double want = lse - (0.1 / 3 * 1 + 0.1 / 3 * 2 + (0.9 + 0.1 / 3) * 3);
  CHECK(ops::softmax_cross_entropy(z, y, {.label_smoothing = 0.1f}).item() ==
        doctest::Approx(want).epsilon(1e-6));
  // Every label ignored: zero loss, not NaN.
  y.data<int64_t>()[0] = -1;
  CHECK(ops::softmax_cross_entropy(z, y).item() == 0.f);
  y.data<int64_t>()[0] = 3;
  CHECK_THROWS_AS(ops::softmax_cross_entropy(z, y), Error);
}
