#include <doctest/doctest.h>

#include <cstdint>

#include "core/tensor.h"

using namespace bonsai;

TEST_CASE("tensor: dtypes, sizes and 64-byte alignment") {
  for (DType t : {DType::f32, DType::s8, DType::u8, DType::s32, DType::s64}) {
    Tensor x = Tensor::zeros({3, 5, 7}, t);
    CHECK(x.dtype() == t);
    CHECK(x.nbytes() == 105 * dtype_size(t));
    CHECK(reinterpret_cast<uintptr_t>(x.raw()) % 64 == 0);
  }
  CHECK(dtype_size(DType::s64) == 8);
  CHECK(std::string(dtype_name(DType::u8)) == "u8");
}

TEST_CASE("tensor: up to five dimensions, and a clear error beyond") {
  Tensor x = Tensor::zeros({1, 2, 3, 4, 5});
  CHECK(x.rank() == 5);
  CHECK(x.numel() == 120);
  CHECK(x.dim(-1) == 5);
  CHECK_THROWS_AS(Shape({1, 2, 3, 4, 5, 6}), Error);
}

TEST_CASE("tensor: reshape views share storage; errors name both shapes") {
  Tensor x = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor v = x.view({3, 2});
  CHECK(v.raw() == x.raw());
  v.data<float>()[5] = 60.f;
  CHECK(x.data<float>()[5] == 60.f);
  try {
    x.view({4, 2});
    FAIL("view to a different size must throw");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find("[2, 3]") != std::string::npos);
    CHECK(m.find("[4, 2]") != std::string::npos);
  }
}

TEST_CASE("tensor: typed access is checked, conversions and clone") {
  Tensor x = Tensor::from({3}, {1.5f, -2.f, 3.f});
  CHECK_THROWS_AS(x.data<int64_t>(), Error);
  Tensor i = x.to(DType::s32);
  CHECK(i.data<int32_t>()[1] == -2);
  Tensor c = x.clone();
  c.data<float>()[0] = 9.f;
  CHECK(x.data<float>()[0] == 1.5f);
  CHECK_THROWS_AS(Tensor::zeros({2}).copy_from(Tensor::zeros({3})), Error);
}

#include "core/layout.h"

TEST_CASE("layout: NCHW <-> NHWC") {
  Tensor x = Tensor::empty({2, 3, 4, 5});  // NCHW, value = flat index
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i);
  Tensor y = nchw_to_nhwc(x);
  CHECK(y.shape() == Shape{2, 4, 5, 3});
  // y[n][h][w][c] == x[n][c][h][w]
  for (int64_t n : {0, 1})
    for (int64_t h : {0, 3})
      for (int64_t w : {0, 2, 4})
        for (int64_t c : {0, 2})
          CHECK(y.data<float>()[((n * 4 + h) * 5 + w) * 3 + c] == static_cast<float>(((n * 3 + c) * 4 + h) * 5 + w));
  Tensor z = nhwc_to_nchw(y);
  CHECK(z.shape() == x.shape());
  CHECK(std::equal(z.data<float>(), z.data<float>() + z.numel(), x.data<float>()));
}
