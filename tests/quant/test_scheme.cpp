// The int8 scheme (quant/scheme.h): TF's range nudging, weight quantizers,
// TFLite's fixed-point requantization — against hand-computed values.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "quant/scheme.h"

using namespace bonsai;
using namespace bonsai::quant;

TEST_CASE("quant scheme: integer ranges for 8, 6 and 4 bits") {
  CHECK(activation_range(8).qmin == -128);
  CHECK(activation_range(8).qmax == 127);
  CHECK(weight_range(8).qmin == -127);
  CHECK(weight_range(8).qmax == 127);
  CHECK(activation_range(6).qmin == -32);
  CHECK(weight_range(6).qmin == -31);
  CHECK(activation_range(4).qmax == 7);
  CHECK(weight_range(4).qmin == -7);
  CHECK_THROWS(activation_range(7));
  CHECK_THROWS(nudge_range(0.f, 1.f, {.num_bits = 16}));
}

TEST_CASE("quant scheme: nudge_range matches TF FakeQuantWithMinMaxVars") {
  SUBCASE("zero point rounds down onto the grid") {
    // scale = 63.75/255 = 0.25; zero_point_from_min = 0.4 -> 0.
    AffineQuant a = nudge_range(-0.1f, 63.65f);
    CHECK(a.scale == 0.25f);
    CHECK(a.zero_point == -128);  // unsigned 0
    CHECK(a.nudged_min == 0.0f);
    CHECK(a.nudged_max == 63.75f);
  }
  SUBCASE("zero point at the top of the grid") {
    AffineQuant a = nudge_range(-63.65f, 0.1f);
    CHECK(a.scale == 0.25f);
    CHECK(a.zero_point == 127);  // unsigned 255
    CHECK(a.nudged_min == -63.75f);
    CHECK(a.nudged_max == 0.0f);
  }
  SUBCASE("an exact .5 zero point rounds up on TF's unsigned grid") {
    // zero_point_from_min = 0.125/0.25 = 0.5 -> 1 (unsigned) -> -127 signed;
    // rounding on the signed grid (-127.5) would have given -128.
    AffineQuant a = nudge_range(-0.125f, 63.625f);
    CHECK(a.scale == 0.25f);
    CHECK(a.zero_point == -127);
    CHECK(a.nudged_min == -0.25f);
    CHECK(a.nudged_max == 63.5f);
  }
  SUBCASE("narrow range drops the lowest code") {
    // scale = 63.5/254 = 0.25; zero_point_from_min = 1 + 0.4 -> 1.
    AffineQuant a = nudge_range(-0.1f, 63.4f, {.narrow_range = true});
    CHECK(a.scale == 0.25f);
    CHECK(a.qmin == -127);
    CHECK(a.qmax == 127);
    CHECK(a.zero_point == -127);
    CHECK(a.nudged_min == 0.0f);
    CHECK(a.nudged_max == 63.5f);
  }
  SUBCASE("a range above zero slides down to contain zero, keeping its width") {
    AffineQuant a = nudge_range(0.5f, 1.5f);
    CHECK(a.zero_point == -128);
    CHECK(a.nudged_min == 0.0f);
    CHECK(a.nudged_max == doctest::Approx(1.0f).epsilon(1e-6));
  }
  SUBCASE("4 bits") {
    AffineQuant a = nudge_range(-1.0f, 14.0f, {.num_bits = 4});
    CHECK(a.scale == 1.0f);
    CHECK(a.qmin == -8);
    CHECK(a.qmax == 7);
    CHECK(a.zero_point == -7);
    CHECK(a.nudged_min == -1.0f);
    CHECK(a.nudged_max == 14.0f);
  }
  SUBCASE("zero is always exactly representable") {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> lo(-10.f, 0.f), hi(0.f, 10.f);
    for (int i = 0; i < 200; ++i) {
      AffineQuant a = nudge_range(lo(rng), hi(rng));
      CHECK(a.zero_point >= a.qmin);
      CHECK(a.zero_point <= a.qmax);
      CHECK(dequantize_value(a.zero_point, a) == 0.0f);
      CHECK(quantize_value(0.0f, a) == a.zero_point);
    }
  }
  CHECK_THROWS(nudge_range(1.0f, -1.0f));
}

TEST_CASE("quant scheme: symmetric narrow-range weights, per channel and per tensor") {
  AffineQuant w = weight_quant(1.27f);
  CHECK(w.zero_point == 0);
  CHECK(w.qmin == -127);
  CHECK(w.qmax == 127);
  CHECK(w.scale == doctest::Approx(0.01f).epsilon(1e-6));
  CHECK(w.nudged_max == doctest::Approx(1.27f).epsilon(1e-6));
  CHECK(w.nudged_min == -w.nudged_max);
  CHECK(quantize_value(1.27f, w) == 127);
  CHECK(quantize_value(-5.0f, w) == -127);  // narrow: -128 is never used

  // HWIO [1, 1, 2, 3]: channel = last axis; channel 2 is all zero.
  Tensor k = Tensor::from({1, 1, 2, 3}, {0.5f, -2.0f, 0.0f, -1.0f, 1.0f, 0.0f});
  auto pc = weight_quant_per_channel(k);
  REQUIRE(pc.size() == 3);
  CHECK(pc[0].scale == doctest::Approx(1.0f / 127).epsilon(1e-6));
  CHECK(pc[1].scale == doctest::Approx(2.0f / 127).epsilon(1e-6));
  CHECK(std::isfinite(pc[2].scale));
  CHECK(pc[2].scale > 0.0f);
  for (const AffineQuant& q : pc) CHECK(q.zero_point == 0);
  AffineQuant pt = weight_quant_per_tensor(k);
  CHECK(pt.scale == doctest::Approx(2.0f / 127).epsilon(1e-6));

  AffineQuant w4 = weight_quant(7.0f, 4);
  CHECK(w4.scale == doctest::Approx(1.0f).epsilon(1e-6));
  CHECK(w4.qmin == -7);
}

TEST_CASE("quant scheme: quantize rounds half away from zero and clamps; bias is int32 s_in*s_w") {
  AffineQuant a{.scale = 0.25f, .zero_point = 3, .qmin = -128, .qmax = 127};
  CHECK(quantize_value(0.125f, a) == 4);    // 0.5 -> 1
  CHECK(quantize_value(-0.125f, a) == 2);   // -0.5 -> -1
  CHECK(quantize_value(0.374f, a) == 4);
  CHECK(quantize_value(1e9f, a) == 127);
  CHECK(quantize_value(-1e9f, a) == -128);
  CHECK(dequantize_value(7, a) == 1.0f);
  CHECK(bias_scale(0.1, 0.02) == doctest::Approx(0.002));
  CHECK(quantize_bias(0.3f, 0.1, 0.02) == 150);
  CHECK(quantize_bias(0.25f, 0.5, 1.0) == 1);    // 0.5 -> 1
  CHECK(quantize_bias(-0.25f, 0.5, 1.0) == -1);  // -0.5 -> -1
  CHECK(quantize_bias(1e9f, 1e-3, 1e-3) == std::numeric_limits<int32_t>::max());
}

TEST_CASE("quant scheme: quantize_multiplier as TFLite's QuantizeMultiplier") {
  auto qm = [](double m) { return quantize_multiplier(m); };
  CHECK(qm(0.0).multiplier == 0);
  CHECK(qm(0.0).shift == 0);
  CHECK(qm(0.5).multiplier == (1 << 30));
  CHECK(qm(0.5).shift == 0);
  CHECK(qm(0.75).multiplier == 1610612736);
  CHECK(qm(0.75).shift == 0);
  CHECK(qm(1.0 / 3).multiplier == 1431655765);  // round(2/3 * 2^31)
  CHECK(qm(1.0 / 3).shift == -1);
  CHECK(qm(1.0).multiplier == (1 << 30));  // > = 1: left shifts
  CHECK(qm(1.0).shift == 1);
  CHECK(qm(3.0).multiplier == 1610612736);
  CHECK(qm(3.0).shift == 2);
  // A mantissa that rounds up to 2^31 becomes 2^30 with one more shift.
  CHECK(qm(1.0 - std::ldexp(1.0, -40)).multiplier == (1 << 30));
  CHECK(qm(1.0 - std::ldexp(1.0, -40)).shift == 1);
  // 2^-31 is the smallest kept (shift -30); anything below flushes to zero.
  CHECK(qm(std::ldexp(1.0, -31)).multiplier == (1 << 30));
  CHECK(qm(std::ldexp(1.0, -31)).shift == -30);
  CHECK(qm(std::ldexp(1.0, -32)).multiplier == 0);
  CHECK(qm(std::ldexp(1.0, -32)).shift == 0);
  CHECK(qm(std::ldexp(1.0, -33)).multiplier == 0);
}

TEST_CASE("quant scheme: multiply_by_quantized_multiplier rounds once, ties toward +infinity") {
  QuantizedMultiplier quarter = quantize_multiplier(0.25);
  REQUIRE(quarter.shift == -1);
  CHECK(multiply_by_quantized_multiplier(6, quarter) == 2);    // 1.5 -> 2
  CHECK(multiply_by_quantized_multiplier(-6, quarter) == -1);  // -1.5 -> -1
  CHECK(multiply_by_quantized_multiplier(-10, quarter) == -2);  // -2.5 -> -2
  // 1.25 -> 1 (the double-rounding form gives 2: 2.5 -> 3, then 1.5 -> 2).
  CHECK(multiply_by_quantized_multiplier(5, quarter) == 1);
  CHECK(multiply_by_quantized_multiplier(-5, quarter) == -1);
  CHECK(multiply_by_quantized_multiplier(7, quarter) == 2);  // 1.75
  CHECK(multiply_by_quantized_multiplier(-7, quarter) == -2);
  CHECK(multiply_by_quantized_multiplier(100, quarter) == 25);
  // 0.5 (shift 0) and >= 1 (left shifts).
  CHECK(multiply_by_quantized_multiplier(3, quantize_multiplier(0.5)) == 2);    // 1.5
  CHECK(multiply_by_quantized_multiplier(-3, quantize_multiplier(0.5)) == -1);  // -1.5
  CHECK(multiply_by_quantized_multiplier(7, quantize_multiplier(3.0)) == 21);
  CHECK(multiply_by_quantized_multiplier(-7, quantize_multiplier(1.5)) == -10);  // -10.5 -> -10
  // The largest right shift: 2^-31 * 2^30 = 1/2 rounds up, -1/2 to 0.
  const QuantizedMultiplier tiny = quantize_multiplier(std::ldexp(1.0, -31));
  REQUIRE(tiny.shift == -30);
  CHECK(multiply_by_quantized_multiplier(1 << 30, tiny) == 1);
  CHECK(multiply_by_quantized_multiplier((1 << 30) - 1, tiny) == 0);
  CHECK(multiply_by_quantized_multiplier(-(1 << 30), tiny) == 0);
  CHECK(multiply_by_quantized_multiplier(-(1 << 30) - 1, tiny) == -1);

  // Against exact arithmetic with the quantized multiplier's own value
  // m_q = multiplier * 2^(shift - 31): always floor(x * m_q + 1/2), which
  // long double (64-bit mantissa) computes exactly for these operands.
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> acc(-(1 << 24), 1 << 24);
  std::uniform_real_distribution<double> mult(1e-6, 4.0);
  for (int i = 0; i < 5000; ++i) {
    const int32_t x = acc(rng);
    const QuantizedMultiplier m = quantize_multiplier(mult(rng));
    const long double mq = std::ldexp(static_cast<long double>(m.multiplier), m.shift - 31);
    const auto want = static_cast<int64_t>(std::floor(static_cast<long double>(x) * mq + 0.5L));
    CAPTURE(x);
    CAPTURE(m.multiplier);
    CAPTURE(m.shift);
    REQUIRE(multiply_by_quantized_multiplier(x, m) == want);
  }
}
