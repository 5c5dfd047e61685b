// Augmentation: the resampler against ops::resize_bilinear, TF's distorted
// box sampler's constraints, exact centre crops and pad-shift placements on
// synthetic images whose pixels encode their coordinates, flips that really
// mirror, segmentation padding (255 in the mask, the mean colour in the
// image) with nearest-neighbour labels, and determinism by seed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <doctest/doctest.h>
#include <random>
#include <set>

#include "core/ops.h"
#include "data/augment.h"

using bonsai::DType;
using bonsai::Tensor;
namespace data = bonsai::data;

namespace {

// u8 [H, W, 3] with R = y, G = x, B = 7 (so a crop or shift is visible in the values).
Tensor coord_image(int64_t H, int64_t W) {
  Tensor t = Tensor::empty({H, W, 3}, DType::u8);
  uint8_t* p = t.data<uint8_t>();
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      p[(y * W + x) * 3 + 0] = static_cast<uint8_t>(y);
      p[(y * W + x) * 3 + 1] = static_cast<uint8_t>(x);
      p[(y * W + x) * 3 + 2] = 7;
    }
  return t;
}

Tensor random_u8_image(int64_t H, int64_t W, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor t = Tensor::empty({H, W, 3}, DType::u8);
  uint8_t* p = t.data<uint8_t>();
  for (int64_t i = 0; i < H * W * 3; ++i) p[i] = static_cast<uint8_t>(rng() & 0xff);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// A segmentation example: random image, mask of blocks with classes from `classes`.
data::Example seg_example(int64_t H, int64_t W, const std::vector<uint8_t>& classes) {
  data::Example e;
  e.image = random_u8_image(H, W, 3);
  e.mask = Tensor::empty({H, W}, DType::u8);
  uint8_t* m = e.mask.data<uint8_t>();
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) m[y * W + x] = classes[((y / 5) + (x / 7)) % classes.size()];
  e.path = "/tmp/voc/img_0001.jpg";
  return e;
}

}  // namespace

TEST_CASE("augment: bilinear resize matches ops::resize_bilinear (half-pixel centres)") {
  std::mt19937 rng(1);
  Tensor x = Tensor::randn({1, 13, 17, 3}, rng);
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{29, 8}, {13, 17}, {5, 40}, {1, 1}}) {
    Tensor want = bonsai::ops::resize_bilinear(x, oh, ow);
    Tensor got = data::resize_bilinear(x.view({13, 17, 3}), oh, ow);
    REQUIRE(got.shape() == bonsai::Shape({oh, ow, 3}));
    const float* a = want.data<float>();
    const float* b = got.data<float>();
    for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(b[i] == doctest::Approx(a[i]).epsilon(1e-5));
  }
}

TEST_CASE("augment: distorted box respects TF's area and aspect constraints") {
  std::mt19937 rng(5);
  const data::DistortedBoxOptions o;
  int whole = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t H = 50 + i % 400, W = 60 + (i * 7) % 500;
    const data::Box b = data::sample_distorted_box(H, W, o, rng);
    REQUIRE(b.y >= 0);
    REQUIRE(b.x >= 0);
    REQUIRE(b.y + b.h <= H);
    REQUIRE(b.x + b.w <= W);
    if (b == data::Box{0, 0, H, W}) {
      ++whole;
      continue;
    }
    const double area = static_cast<double>(b.h * b.w) / static_cast<double>(H * W);
    CHECK(area >= 0.08 - 1e-6);
    CHECK(area <= 1.0);
    // width = round(height * aspect): the aspect is within the range up to rounding of the width.
    const double aspect = static_cast<double>(b.w) / static_cast<double>(b.h);
    CHECK(aspect >= 0.75 - 0.5 / b.h - 1e-6);
    CHECK(aspect <= 4.0 / 3.0 + 0.5 / b.h + 1e-6);
  }
  CHECK(whole < 200);  // attempts rarely all fail on ordinary images
  // A 1x50 strip admits no box of area >= 4 with aspect <= 4/3: the whole image comes back.
  CHECK(data::sample_distorted_box(1, 50, o, rng) == data::Box{0, 0, 1, 50});
}

TEST_CASE("augment: random resized crop output shape, range and fallback") {
  data::Example e{.image = random_u8_image(120, 90, 2), .label = 4, .mask = Tensor(), .path = "a.jpg"};
  std::mt19937 rng(3);
  for (int i = 0; i < 20; ++i) {
    data::Sample s = data::classify_train(e, {.size = 32, .norm = data::no_normalization()}, rng);
    REQUIRE(s.image.shape() == bonsai::Shape({32, 32, 3}));
    REQUIRE(s.image.dtype() == DType::f32);
    CHECK(s.label == 4);
    CHECK(s.path == "a.jpg");
    const float* p = s.image.data<float>();
    for (int64_t k = 0; k < s.image.numel(); ++k) REQUIRE((p[k] >= 0.0f && p[k] <= 255.0f));
  }
  // Normalised with MEAN_RGB / STDDEV_RGB: within [(0 - mean) / std, (255 - mean) / std].
  data::Sample s = data::classify_train(e, {.size = 32}, rng);
  const data::Normalization n = data::imagenet_normalization();
  const float* p = s.image.data<float>();
  for (int64_t k = 0; k < s.image.numel(); ++k) {
    const int c = static_cast<int>(k % 3);
    REQUIRE(p[k] >= (0.0f - n.mean[c]) / n.stddev[c] - 1e-5f);
    REQUIRE(p[k] <= (255.0f - n.mean[c]) / n.stddev[c] + 1e-5f);
  }
  // A strip the box sampler cannot serve falls back to the eval centre crop:
  // 1x50 -> a 0 x 0 crop is impossible, so side max(1, int(0.875)) = 1 at x = int((50 - 0.875) / 2) = 24.
  data::Example strip{.image = coord_image(1, 50), .label = 0, .mask = Tensor(), .path = "s.jpg"};
  data::Sample f = data::classify_train(
      strip, {.size = 1, .flip = false, .norm = data::no_normalization()}, rng);
  CHECK(f.image.data<float>()[1] == 24.0f);
}

TEST_CASE("augment: eval centre crop is exact (Model Garden center_crop_image)") {
  CHECK(data::center_crop_box(500, 375) == data::Box{85, 23, 328, 328});  // 328.125 side
  CHECK(data::center_crop_box(64, 48) == data::Box{11, 3, 42, 42});
  CHECK(data::center_crop_box(224, 224, 1.0f) == data::Box{0, 0, 224, 224});
  // Resize to the crop size is a copy: output (y, x) = source (11 + y, 3 + x).
  Tensor img = coord_image(64, 48);
  const data::ClassifyEvalOptions raw{.size = 42, .norm = data::no_normalization()};
  Tensor out = data::preprocess_for_eval(img, 42, raw);
  REQUIRE(out.shape() == bonsai::Shape({42, 42, 3}));
  const float* p = out.data<float>();
  for (int64_t y = 0; y < 42; ++y)
    for (int64_t x = 0; x < 42; ++x) {
      REQUIRE(p[(y * 42 + x) * 3 + 0] == static_cast<float>(11 + y));
      REQUIRE(p[(y * 42 + x) * 3 + 1] == static_cast<float>(3 + x));
      REQUIRE(p[(y * 42 + x) * 3 + 2] == 7.0f);
    }
  // Halving samples between two source pixels: src = 2t + 0.5, value 11 + 2t + 0.5.
  Tensor half = data::preprocess_for_eval(img, 21, raw);
  const float* h = half.data<float>();
  for (int64_t y = 0; y < 21; ++y)
    for (int64_t x = 0; x < 21; ++x) {
      REQUIRE(h[(y * 21 + x) * 3 + 0] == static_cast<float>(11 + 2 * y) + 0.5f);
      REQUIRE(h[(y * 21 + x) * 3 + 1] == static_cast<float>(3 + 2 * x) + 0.5f);
    }
  // Normalisation: (v - MEAN_RGB) / STDDEV_RGB, per channel.
  Tensor norm = data::preprocess_for_eval(img, 42);
  const data::Normalization n = data::imagenet_normalization();
  CHECK(norm.data<float>()[0] == doctest::Approx((11.0f - 0.485f * 255) / (0.229f * 255)));
  CHECK(norm.data<float>()[2] == doctest::Approx((7.0f - 0.406f * 255) / (0.225f * 255)));
  CHECK(n.mean[1] == doctest::Approx(116.28f));
  // classify_eval wraps the same and keeps label and path.
  data::Example e{.image = img, .label = 9, .mask = Tensor(), .path = "v.JPEG"};
  data::Sample s = data::classify_eval(e, raw);
  CHECK(same_bytes(s.image, out));
  CHECK(s.label == 9);
}

TEST_CASE("augment: flips really mirror, and classify_train flips half the time") {
  Tensor img = coord_image(6, 5);
  Tensor f = data::flip_horizontal(img);
  for (int64_t y = 0; y < 6; ++y)
    for (int64_t x = 0; x < 5; ++x) {
      CHECK(f.data<uint8_t>()[(y * 5 + x) * 3 + 1] == static_cast<uint8_t>(4 - x));
      CHECK(f.data<uint8_t>()[(y * 5 + x) * 3 + 0] == static_cast<uint8_t>(y));
    }
  const data::Box box{1, 1, 4, 3};
  Tensor plain = data::crop_resize_bilinear(img, box, 7, 9, false);
  Tensor mirrored = data::crop_resize_bilinear(img, box, 7, 9, true);
  CHECK(same_bytes(data::flip_horizontal(plain), mirrored));
  CHECK(!same_bytes(plain, mirrored));
  // Same generator state: the box draws match, only the final flip draw differs.
  data::Example e{.image = random_u8_image(80, 60, 9), .label = 1, .mask = Tensor(), .path = "x"};
  int flipped = 0, kept = 0;
  for (uint32_t seed = 0; seed < 40; ++seed) {
    std::mt19937 r1(seed), r2(seed);
    Tensor a = data::classify_train(e, {.size = 16, .flip = false}, r1).image;
    Tensor b = data::classify_train(e, {.size = 16, .flip = true}, r2).image;
    if (same_bytes(a, b)) {
      ++kept;
    } else {
      REQUIRE(same_bytes(data::flip_horizontal(a), b));
      ++flipped;
    }
  }
  CHECK(flipped >= 10);
  CHECK(kept >= 10);
}

TEST_CASE("augment: pad_shift places the image on the canvas, shifted by at most 2") {
  Tensor img = coord_image(28, 28);
  data::Example e{.image = img, .label = 2, .mask = Tensor(), .path = "f.png"};
  std::mt19937 rng(0);
  // Eval: centred at (2, 2); the border is the mean colour, 0 after normalisation.
  const data::PadShiftOptions eval{.pad_to = 32, .shift = 0, .flip = false};
  Tensor out = data::pad_shift(e, eval, rng).image;
  REQUIRE(out.shape() == bonsai::Shape({32, 32, 3}));
  const data::Normalization n = data::fashion_mnist_normalization();
  const float* p = out.data<float>();
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 32; ++x) {
      const bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
      const float want = inside ? (static_cast<float>(y - 2) - n.mean[0]) / n.stddev[0] : 0.0f;
      REQUIRE(p[(y * 32 + x) * 3] == doctest::Approx(want));
    }
  // Train: find the (dy, dx, flip) that explains each output exactly.
  std::set<std::pair<int64_t, int64_t>> shifts;
  for (int i = 0; i < 60; ++i) {
    Tensor t = data::pad_shift(e, {.norm = data::no_normalization()}, rng).image;
    bool found = false;
    for (int64_t dy = -2; dy <= 2 && !found; ++dy)
      for (int64_t dx = -2; dx <= 2 && !found; ++dx)
        for (int flip = 0; flip < 2 && !found; ++flip) {
          bool ok = true;
          for (int64_t y = 0; y < 32 && ok; ++y)
            for (int64_t x = 0; x < 32 && ok; ++x) {
              const int64_t xs = flip ? 31 - x : x;
              const int64_t sy = y - 2 - dy, sx = xs - 2 - dx;
              const bool inside = sy >= 0 && sy < 28 && sx >= 0 && sx < 28;
              const float* q = t.data<float>() + (y * 32 + x) * 3;
              ok = inside ? (q[0] == sy && q[1] == sx && q[2] == 7) : (q[0] == 0 && q[2] == 0);
            }
          if (ok) {
            found = true;
            shifts.insert({dy, dx});
          }
        }
    REQUIRE(found);
  }
  CHECK(shifts.size() >= 10);
}

TEST_CASE("augment: segment_train pads with 255 and keeps label values (nearest)") {
  const std::vector<uint8_t> classes = {0, 3, 7, 12};
  data::Example e = seg_example(40, 30, classes);
  std::mt19937 rng(11);
  int padded = 0;
  for (int i = 0; i < 30; ++i) {
    data::Sample s = data::segment_train(e, {.crop = 64}, rng);
    REQUIRE(s.image.shape() == bonsai::Shape({64, 64, 3}));
    REQUIRE(s.mask.shape() == bonsai::Shape({64, 64}));
    REQUIRE(s.mask.dtype() == DType::u8);
    const uint8_t* m = s.mask.data<uint8_t>();
    const float* p = s.image.data<float>();
    std::set<uint8_t> seen(m, m + 64 * 64);
    for (uint8_t v : seen) REQUIRE((v == 255 || std::count(classes.begin(), classes.end(), v) == 1));
    // 40x30 scaled by at most 2 is 80x60 < 64 wide: every crop has padding,
    // and exactly there the image is the mean colour (0 after normalisation).
    if (seen.count(255)) ++padded;
    for (int64_t k = 0; k < 64 * 64; ++k)
      if (m[k] == 255) REQUIRE((p[k * 3] == 0.0f && p[k * 3 + 1] == 0.0f && p[k * 3 + 2] == 0.0f));
  }
  CHECK(padded == 30);
  // Flip moves image and mask together: same draws with flip off and on.
  int flips = 0;
  for (uint32_t seed = 0; seed < 16; ++seed) {
    std::mt19937 r1(seed), r2(seed);
    data::Sample a = data::segment_train(e, {.crop = 48, .flip = false}, r1);
    data::Sample b = data::segment_train(e, {.crop = 48, .flip = true}, r2);
    if (same_bytes(a.mask, b.mask) && same_bytes(a.image, b.image)) continue;
    REQUIRE(same_bytes(data::flip_horizontal(a.mask), b.mask));
    REQUIRE(same_bytes(data::flip_horizontal(a.image), b.image));
    ++flips;
  }
  CHECK(flips >= 3);
}

TEST_CASE("augment: segment_eval keeps full size and pads to a fixed size") {
  data::Example e = seg_example(20, 30, {1, 2, 5});
  data::Sample s = data::segment_eval(e, {.pad = 32, .norm = data::no_normalization()});
  REQUIRE(s.image.shape() == bonsai::Shape({32, 32, 3}));
  REQUIRE(s.mask.shape() == bonsai::Shape({32, 32}));
  for (int64_t y = 0; y < 32; ++y)
    for (int64_t x = 0; x < 32; ++x) {
      const uint8_t m = s.mask.data<uint8_t>()[y * 32 + x];
      const float r = s.image.data<float>()[(y * 32 + x) * 3];
      if (y < 20 && x < 30) {
        REQUIRE(m == e.mask.data<uint8_t>()[y * 30 + x]);
        REQUIRE(r == static_cast<float>(e.image.data<uint8_t>()[(y * 30 + x) * 3]));
      } else {
        REQUIRE(m == 255);
        REQUIRE(r == 0.0f);  // the mean colour; no_normalization's mean is 0
      }
    }
  // Larger than the pad size: scaled down to fit (64x40 -> 32x20), labels nearest.
  data::Example big = seg_example(64, 40, {4, 9});
  data::Sample b = data::segment_eval(big, {.pad = 32});
  std::set<uint8_t> seen(b.mask.data<uint8_t>(), b.mask.data<uint8_t>() + 32 * 32);
  CHECK(seen == std::set<uint8_t>{4, 9, 255});
  CHECK(b.mask.data<uint8_t>()[0 * 32 + 19] != 255);
  CHECK(b.mask.data<uint8_t>()[0 * 32 + 20] == 255);
  // Nearest resize of labels replicates, never blends.
  Tensor m = Tensor::empty({2, 2}, DType::u8);
  const uint8_t vals[4] = {1, 2, 3, 4};
  std::memcpy(m.raw(), vals, 4);
  Tensor r = data::resize_nearest(m, 4, 4);
  const uint8_t want[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  CHECK(std::memcmp(r.raw(), want, 16) == 0);
}

TEST_CASE("augment: a mask whose size differs from its image is an error naming the file") {
  data::Example e = seg_example(20, 30, {1});
  e.mask = Tensor::zeros({21, 30}, DType::u8);
  std::mt19937 rng(0);
  try {
    data::segment_train(e, {.crop = 16}, rng);
    FAIL("expected an error");
  } catch (const bonsai::Error& err) {
    CHECK(std::string(err.what()).find("/tmp/voc/img_0001.jpg") != std::string::npos);
    CHECK(std::string(err.what()).find("[21, 30]") != std::string::npos);
  }
  CHECK_THROWS_AS(data::segment_eval(e, {.pad = 32}), bonsai::Error);
}

TEST_CASE("augment: same seed, same output; another seed, another output") {
  data::Example c{.image = random_u8_image(70, 50, 4), .label = 0, .mask = Tensor(), .path = "c"};
  data::Example s = seg_example(40, 30, {0, 1});
  auto cls = [&](uint32_t seed) {
    std::mt19937 r(seed);
    return data::classify_train(c, {.size = 24}, r).image;
  };
  auto seg = [&](uint32_t seed) {
    std::mt19937 r(seed);
    return data::segment_train(s, {.crop = 32}, r);
  };
  CHECK(same_bytes(cls(1), cls(1)));
  CHECK(!same_bytes(cls(1), cls(2)));
  CHECK(same_bytes(seg(5).image, seg(5).image));
  CHECK(same_bytes(seg(5).mask, seg(5).mask));
  CHECK(!same_bytes(seg(5).image, seg(6).image));
  // Our own uniform helpers: fixed values for a fixed mt19937 stream (portable across libraries).
  std::mt19937 r(42);
  const uint32_t first = std::mt19937(42)();
  CHECK(data::uniform01(r) == static_cast<float>(first >> 8) / 16777216.0f);
  std::mt19937 r2(42);
  CHECK(data::uniform_int(r2, 10) == static_cast<int64_t>((uint64_t{first} * 10) >> 32));
}
