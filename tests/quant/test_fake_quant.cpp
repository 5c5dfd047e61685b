// Fake-quant ops (quant/fake_quant.h) and observers (quant/observer.h).
// The straight-through gradients are not derivatives of the rounding
// function, so they are checked against their definitions (TF's
// FakeQuantWithMinMaxVarsGradient, Esser et al.'s LSQ) on hand-made inputs
// rather than by finite differences.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "core/ops.h"
#include "quant/fake_quant.h"
#include "quant/observer.h"
#include "quant/scheme.h"
#include "tests/grad_check.h"

using namespace bonsai;
using namespace bonsai::quant;
using bonsai::testing::rel_error;

namespace {

Tensor rnd(const Shape& s, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  return Tensor::uniform(s, rng, lo, hi);
}

Tensor vec(std::vector<float> v) { return Tensor::from({static_cast<int64_t>(v.size())}, v); }

// Backward of L = Σ y·r with a fixed cotangent r.
void backward_with(const Tensor& y, const Tensor& r) { ops::sum(ops::mul(y, r)).backward(); }

}  // namespace

TEST_CASE("fake_quant: forward matches TF's formula, the reference, and the int grid") {
  SUBCASE("hand values, 8 bit, range [-0.1, 63.65] nudged to [0, 63.75], step 0.25") {
    Tensor x = vec({-1.0f, -0.1f, 0.0f, 0.1f, 0.12f, 0.13f, 31.9f, 63.7f, 63.8f, 100.0f});
    Tensor y = fake_quant(x, vec({-0.1f}), vec({63.65f}));
    std::vector<float> want{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.25f, 32.0f, 63.75f, 63.75f, 63.75f};
    for (int i = 0; i < 10; ++i) CHECK(y.data<float>()[i] == want[i]);
  }
  SUBCASE("random data: fast path == reference; outputs sit on the TFLite grid") {
    for (int bits : {8, 6, 4})
      for (bool narrow : {false, true}) {
        CAPTURE(bits);
        CAPTURE(narrow);
        Tensor x = rnd({4, 5, 6, 7}, 1 + bits, -4.f, 9.f);
        Tensor lo = vec({-2.3f}), hi = vec({6.1f});
        FakeQuantOptions o{.num_bits = bits, .narrow_range = narrow};
        Tensor y = fake_quant(x, lo, hi, o);
        // Bit for bit: the fast path dequantizes as TFLite, (q - z) * s.
        const Tensor want = ref::fake_quant(x, lo, hi, o);
        for (int64_t i = 0; i < x.numel(); ++i) REQUIRE(y.data<float>()[i] == want.data<float>()[i]);
        AffineQuant a = nudge_range(-2.3f, 6.1f, {.num_bits = bits, .narrow_range = narrow});
        for (int64_t i = 0; i < x.numel(); ++i) {
          const float v = y.data<float>()[i];
          const float steps = (v - a.nudged_min) / a.scale;
          CHECK(std::abs(steps - std::round(steps)) < 1e-3f);
          CHECK(v >= a.nudged_min);
          CHECK(v <= a.nudged_max * (1.0f + 1e-6f));
          // Sim/deploy: TFLite's Quantize of x dequantizes to the same value.
          CHECK(std::abs(dequantize_value(quantize_value(x.data<float>()[i], a), a) - v) <= 1e-5f * a.scale * 256);
        }
      }
  }
  SUBCASE("per channel: each channel uses its own range") {
    Tensor x = rnd({3, 3, 4, 5}, 9, -3.f, 3.f);
    Tensor lo = vec({-1.f, -2.f, -0.5f, -3.f, 0.f}), hi = vec({1.f, 2.f, 0.5f, 3.f, 1.f});
    FakeQuantOptions o{.narrow_range = true};
    Tensor y = fake_quant_per_channel(x, lo, hi, o);
    CHECK(rel_error(y, ref::fake_quant_per_channel(x, lo, hi, o)) == 0.0);
    // Channel c alone, per tensor, gives the same numbers.
    for (int64_t c = 0; c < 5; ++c) {
      Tensor yc = fake_quant(x, vec({lo.data<float>()[c]}), vec({hi.data<float>()[c]}), o);
      for (int64_t i = c; i < x.numel(); i += 5) CHECK(yc.data<float>()[i] == y.data<float>()[i]);
    }
    CHECK_THROWS(fake_quant_per_channel(x, vec({-1.f}), vec({1.f})));
  }
}

TEST_CASE("fake_quant: clipped STE for x, TF's gradients for min and max") {
  // Range [-1, 3] (8 bit) nudges to [-1.0039, 2.9961] with step 4/255
  // (zero_point_from_min = 63.75 -> 64); values placed clearly in or out.
  Tensor x = Tensor::from({2, 4}, {-3.f, -1.5f, -0.5f, 0.f, 1.f, 2.9f, 3.5f, 10.f}).requires_grad_();
  Tensor lo = vec({-1.f}).requires_grad_(), hi = vec({3.f}).requires_grad_();
  Tensor r = Tensor::from({2, 4}, {1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f});
  backward_with(fake_quant(x, lo, hi), r);
  std::vector<float> gx{0.f, 0.f, 3.f, 4.f, 5.f, 6.f, 0.f, 0.f};
  for (int i = 0; i < 8; ++i) CHECK(x.grad().data<float>()[i] == gx[i]);
  CHECK(lo.grad().item() == 1.f + 2.f);  // x = -3, -1.5 below
  CHECK(hi.grad().item() == 7.f + 8.f);  // x = 3.5, 10 above

  SUBCASE("the boundary is the nudged range, inclusive") {
    AffineQuant a = nudge_range(-1.f, 3.f);
    Tensor xb = vec({a.nudged_min, a.nudged_max, std::nextafter(a.nudged_max, 10.f)}).requires_grad_();
    Tensor lb = vec({-1.f}).requires_grad_(), hb = vec({3.f}).requires_grad_();
    backward_with(fake_quant(xb, lb, hb), vec({1.f, 1.f, 1.f}));
    CHECK(xb.grad().data<float>()[0] == 1.f);
    CHECK(xb.grad().data<float>()[1] == 1.f);
    CHECK(xb.grad().data<float>()[2] == 0.f);
    CHECK(lb.grad().item() == 0.f);
    CHECK(hb.grad().item() == 1.f);
  }
  SUBCASE("per channel sums per channel; ranges without requires_grad get none") {
    Tensor xc = Tensor::from({3, 2}, {-5.f, 0.5f, 0.2f, 9.f, 7.f, -9.f}).requires_grad_();
    Tensor lc = vec({-1.f, -2.f}).requires_grad_(), hc = vec({1.f, 2.f}).requires_grad_();
    Tensor rc = Tensor::from({3, 2}, {1.f, 10.f, 100.f, 1000.f, 10000.f, 100000.f});
    backward_with(fake_quant_per_channel(xc, lc, hc), rc);
    std::vector<float> g{0.f, 10.f, 100.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < 6; ++i) CHECK(xc.grad().data<float>()[i] == g[i]);
    CHECK(lc.grad().data<float>()[0] == 1.f);
    CHECK(lc.grad().data<float>()[1] == 100000.f);
    CHECK(hc.grad().data<float>()[0] == 10000.f);
    CHECK(hc.grad().data<float>()[1] == 1000.f);

    Tensor xn = vec({-5.f, 0.5f}).requires_grad_();
    Tensor ln = vec({-1.f}), hn = vec({1.f});
    backward_with(fake_quant(xn, ln, hn), vec({1.f, 1.f}));
    CHECK(!ln.grad().defined());
    CHECK(xn.grad().data<float>()[1] == 1.f);
  }
}

TEST_CASE("fake_quant_lsq: forward vs reference, LSQ gradients by definition") {
  SUBCASE("forward") {
    Tensor x = rnd({2, 3, 3, 4}, 21, -3.f, 3.f);
    Tensor s1 = vec({0.05f}), s4 = vec({0.01f, 0.02f, 0.03f, 0.04f});
    LsqOptions w{.qmin = -127, .qmax = 127};
    CHECK(rel_error(fake_quant_lsq(x, s1, w), ref::fake_quant_lsq(x, s1, w)) == 0.0);
    CHECK(rel_error(fake_quant_lsq(x, s4, w), ref::fake_quant_lsq(x, s4, w)) == 0.0);
    LsqOptions act{.qmin = -128, .qmax = 127, .zero_point = -128};  // [0, 255 s]: post-ReLU
    Tensor y = fake_quant_lsq(x, s1, act);
    CHECK(rel_error(y, ref::fake_quant_lsq(x, s1, act)) == 0.0);
    for (int64_t i = 0; i < y.numel(); ++i) CHECK(y.data<float>()[i] >= 0.0f);
    CHECK(fake_quant_lsq(vec({0.125f, -0.125f}), vec({0.25f}), w).data<float>()[1] == -0.25f);  // half away
    CHECK_THROWS(fake_quant_lsq(x, vec({0.f}), w));
    CHECK_THROWS(fake_quant_lsq(x, vec({1.f, 1.f}), w));
  }
  SUBCASE("gradients: x by STE, scale by Esser et al. with g = 1/sqrt(N*Qp)") {
    // 4-bit-like grid [-7, 7], s = 0.5: v = x/s = {-10, -3.2, 0.6, 2.5, 6.9, 8}.
    LsqOptions o{.qmin = -7, .qmax = 7};
    Tensor x = vec({-5.f, -1.6f, 0.3f, 1.25f, 3.45f, 4.f}).requires_grad_();
    Tensor s = vec({0.5f}).requires_grad_();
    Tensor r = vec({1.f, 2.f, 3.f, 4.f, 5.f, 6.f});
    backward_with(fake_quant_lsq(x, s, o), r);
    std::vector<float> gx{0.f, 2.f, 3.f, 4.f, 5.f, 0.f};
    for (int i = 0; i < 6; ++i) CHECK(x.grad().data<float>()[i] == gx[i]);
    // Per element: below -> qmin = -7; round(v) - v inside; above -> qmax = 7.
    // round(-3.2) + 3.2 = 0.2; round(0.6) - 0.6 = 0.4; round(2.5) - 2.5 = 0.5;
    // round(6.9) - 6.9 = 0.1.
    const double raw = 1 * -7.0 + 2 * 0.2 + 3 * 0.4 + 4 * 0.5 + 5 * 0.1 + 6 * 7.0;
    const double g = 1.0 / std::sqrt(6.0 * 7.0);
    CHECK(s.grad().item() == doctest::Approx(raw * g).epsilon(1e-5));
  }
  SUBCASE("per-channel scale gradients, with a zero point") {
    LsqOptions o{.qmin = -128, .qmax = 127, .zero_point = -128};  // v clamps to [0, 255]
    Tensor x = Tensor::from({2, 2}, {-1.f, 0.26f, 300.f, 0.74f}).requires_grad_();
    Tensor s = vec({1.f, 0.5f}).requires_grad_();
    backward_with(fake_quant_lsq(x, s, o), Tensor::from({2, 2}, {1.f, 1.f, 1.f, 1.f}));
    const double g = 1.0 / std::sqrt(4.0 * 255.0);
    // channel 0: v = -1 (below: qmin - z = 0), 300 (above: qmax - z = 255)
    CHECK(s.grad().data<float>()[0] == doctest::Approx(255.0 * g).epsilon(1e-5));
    // channel 1: v = 0.52 -> 1 - 0.52 = 0.48; v = 1.48 -> 1 - 1.48 = -0.48
    CHECK(s.grad().data<float>()[1] == doctest::Approx(0.0).epsilon(1e-5));
    CHECK(x.grad().data<float>()[0] == 0.f);
    CHECK(x.grad().data<float>()[2] == 0.f);
    CHECK(x.grad().data<float>()[3] == 1.f);
  }
}

TEST_CASE("observer: TFMOT moving average from +-6, first-batch seeding, freeze step") {
  Tensor batch = vec({-0.5f, 2.0f, 1.0f});  // range [-0.5, 2]
  SUBCASE("fixed init: EMA with decay 0.999 from -6/+6, no debiasing") {
    MovingAverageMinMax obs;
    CHECK(obs.min().item() == -6.f);
    CHECK(obs.max().item() == 6.f);
    obs.observe(batch);
    CHECK(obs.min().item() == doctest::Approx(-6.0 + (-0.5 + 6.0) * 0.001).epsilon(1e-6));
    CHECK(obs.max().item() == doctest::Approx(6.0 - (6.0 - 2.0) * 0.001).epsilon(1e-6));
    for (int i = 1; i < 1000; ++i) obs.observe(batch);
    // After k steps: 2 + 4 * 0.999^k.
    CHECK(obs.max().item() == doctest::Approx(2.0 + 4.0 * std::pow(0.999, 1000)).epsilon(1e-4));
    CHECK(obs.steps() == 1000);
  }
  SUBCASE("the range always contains zero") {
    MovingAverageMinMax obs({.init = RangeInit::first_batch});
    obs.observe(vec({1.f, 3.f}));
    CHECK(obs.min().item() == 0.f);
    CHECK(obs.max().item() == 3.f);
    obs.observe(vec({-4.f, -2.f}));
    CHECK(obs.min().item() == doctest::Approx(-0.004f));
    CHECK(obs.max().item() == doctest::Approx(3.f - 3.f * 0.001f));
  }
  SUBCASE("first-batch seeding, then averaging") {
    MovingAverageMinMax obs({.init = RangeInit::first_batch});
    obs.observe(batch);
    CHECK(obs.min().item() == -0.5f);
    CHECK(obs.max().item() == 2.0f);
    obs.observe(vec({-1.5f, 4.0f}));
    CHECK(obs.min().item() == doctest::Approx(-0.5 - 0.001).epsilon(1e-6));
    CHECK(obs.max().item() == doctest::Approx(2.0 + 0.002).epsilon(1e-6));
  }
  SUBCASE("freeze step: the range stops moving, steps keep counting") {
    MovingAverageMinMax obs({.decay = 0.5f, .freeze_step = 2});
    obs.observe(batch);
    obs.observe(batch);
    CHECK(obs.frozen());
    const float lo = obs.min().item(), hi = obs.max().item();
    CHECK(hi == doctest::Approx(2.0 + 4.0 * 0.25));
    obs.observe(vec({-100.f, 100.f}));
    CHECK(obs.min().item() == lo);
    CHECK(obs.max().item() == hi);
    CHECK(obs.steps() == 3);
  }
  SUBCASE("per channel over the last axis") {
    MovingAverageMinMax obs({.init = RangeInit::first_batch, .channels = 2});
    obs.observe(Tensor::from({2, 2}, {-1.f, 5.f, 3.f, 2.f}));
    CHECK(obs.min().data<float>()[0] == -1.f);
    CHECK(obs.max().data<float>()[0] == 3.f);
    CHECK(obs.min().data<float>()[1] == 0.f);
    CHECK(obs.max().data<float>()[1] == 5.f);
    CHECK_THROWS(obs.observe(Tensor::from({1, 3}, {1.f, 2.f, 3.f})));
  }
}

TEST_CASE("fake_quant and observer: large inputs (parallel paths) agree with serial sums") {
  const int64_t n = 70000;
  Tensor x = rnd({n}, 31, -8.f, 8.f).requires_grad_();
  Tensor r = rnd({n}, 32, -1.f, 1.f);
  Tensor lo = vec({-2.f}).requires_grad_(), hi = vec({3.f}).requires_grad_();
  Tensor y = fake_quant(x, lo, hi);
  CHECK(testing::rel_error(y, ref::fake_quant(x, lo, hi)) == 0.0);
  backward_with(y, r);
  AffineQuant a = nudge_range(-2.f, 3.f);
  double below = 0, above = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x.data<float>()[i], g = r.data<float>()[i];
    const bool inside = v >= a.nudged_min && v <= a.nudged_max;
    CHECK(x.grad().data<float>()[i] == (inside ? g : 0.f));
    if (v < a.nudged_min) below += g;
    if (v > a.nudged_max) above += g;
  }
  CHECK(lo.grad().item() == doctest::Approx(below).epsilon(1e-6));
  CHECK(hi.grad().item() == doctest::Approx(above).epsilon(1e-6));

  MovingAverageMinMax obs({.init = RangeInit::first_batch});
  Tensor shifted = rnd({n}, 33, 0.5f, 7.f);
  shifted.data<float>()[12345] = 9.25f;
  obs.observe(shifted);
  CHECK(obs.min().item() == 0.f);
  CHECK(obs.max().item() == 9.25f);
}
