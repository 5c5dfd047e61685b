// Loader: on small in-memory datasets (pixels encode the index, some indices
// fail, some are slow) — determinism by seed across thread counts, shuffling
// per epoch, disjoint and covering shards, drop_remainder, the prefetch
// bound, on_error fail/skip, segmentation batches, and shutdown mid-epoch
// without hanging.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <doctest/doctest.h>
#include <numeric>
#include <set>
#include <thread>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/lib/data_bench.h"
#include "data/image.h"
#include "data/imagenet.h"
#include "data/loader.h"
#include "data/voc.h"

using bonsai::DType;
using bonsai::Tensor;
namespace data = bonsai::data;

namespace {

// Example i: u8 [h, w, 3] with every byte (i * 7 + y + x) % 256, label i % 10,
// path /fake/img_<i>.jpg. Indices in `bad` throw the way a decoder would.
class FakeDataset : public data::Dataset {
 public:
  FakeDataset(int64_t n, int64_t h = 12, int64_t w = 10) : n_(n), h_(h), w_(w) {}
  std::set<int64_t> bad;
  std::chrono::milliseconds delay{0};
  bool segmentation = false;
  bool ragged = false;  // odd indices one row taller
  mutable std::atomic<int64_t> calls{0};

  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return 10; }
  std::string describe() const override { return "fake: " + std::to_string(n_) + " images"; }
  static std::string path_of(int64_t i) { return "/fake/img_" + std::to_string(i) + ".jpg"; }

  data::Example get(int64_t i) const override {
    ++calls;
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    BONSAI_CHECK(!bad.count(i), "cannot decode " + path_of(i) + ": corrupt JPEG data");
    const int64_t h = h_ + (ragged && i % 2 ? 1 : 0);
    data::Example e;
    e.image = Tensor::empty({h, w_, 3}, DType::u8);
    uint8_t* p = e.image.data<uint8_t>();
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w_; ++x)
        for (int c = 0; c < 3; ++c) p[(y * w_ + x) * 3 + c] = static_cast<uint8_t>((i * 7 + y + x) % 256);
    e.label = i % 10;
    if (segmentation) {
      e.mask = Tensor::empty({h, w_}, DType::u8);
      uint8_t* m = e.mask.data<uint8_t>();
      for (int64_t k = 0; k < h * w_; ++k) m[k] = static_cast<uint8_t>(k % 3 == 2 ? 255 : (i + k) % 5);
    }
    e.path = path_of(i);
    return e;
  }

 private:
  int64_t n_, h_, w_;
};

std::vector<data::Batch> drain(data::Loader& l, int64_t epoch) {
  l.start_epoch(epoch);
  std::vector<data::Batch> out;
  while (auto b = l.next()) out.push_back(std::move(*b));
  return out;
}

bool same_batches(const std::vector<data::Batch>& a, const std::vector<data::Batch>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].indices != b[i].indices || a[i].paths != b[i].paths) return false;
    if (a[i].images.shape() != b[i].images.shape() || a[i].labels.shape() != b[i].labels.shape())
      return false;
    if (std::memcmp(a[i].images.raw(), b[i].images.raw(), a[i].images.nbytes()) != 0) return false;
    if (std::memcmp(a[i].labels.raw(), b[i].labels.raw(), a[i].labels.nbytes()) != 0) return false;
  }
  return true;
}

std::vector<int64_t> all_indices(const std::vector<data::Batch>& bs) {
  std::vector<int64_t> out;
  for (const auto& b : bs) out.insert(out.end(), b.indices.begin(), b.indices.end());
  return out;
}

}  // namespace

TEST_CASE("loader: same seed gives the same batches whatever the thread count") {
  FakeDataset ds(53, 24, 20);
  auto run = [&](int threads, uint64_t seed) {
    data::Loader l({.dataset = &ds, .batch_size = 8, .seed = seed, .threads = threads,
                    .transform = data::classify_train_transform({.size = 16})});
    auto e0 = drain(l, 0);
    auto e1 = drain(l, 1);
    e0.insert(e0.end(), e1.begin(), e1.end());
    return e0;
  };
  const auto ref = run(0, 7);
  REQUIRE(ref.size() == 14);  // 2 epochs x ceil(53 / 8)
  CHECK(ref[0].images.shape() == bonsai::Shape({8, 16, 16, 3}));
  CHECK(ref[6].images.shape() == bonsai::Shape({5, 16, 16, 3}));
  CHECK(ref[0].labels.shape() == bonsai::Shape({8}));
  for (size_t k = 0; k < ref[0].indices.size(); ++k) {
    CHECK(ref[0].labels.data<int64_t>()[k] == ref[0].indices[k] % 10);
    CHECK(ref[0].paths[k] == FakeDataset::path_of(ref[0].indices[k]));
  }
  CHECK(same_batches(ref, run(1, 7)));
  CHECK(same_batches(ref, run(3, 7)));
  CHECK(same_batches(ref, run(3, 7)));
  CHECK(!same_batches(ref, run(2, 8)));
}

TEST_CASE("loader: each epoch is a new permutation; shuffle off keeps dataset order") {
  FakeDataset ds(40);
  data::Loader l({.dataset = &ds, .batch_size = 6, .seed = 3, .threads = 2});
  std::vector<std::vector<int64_t>> orders;
  for (int64_t e = 0; e < 3; ++e) {
    auto bs = drain(l, e);
    orders.push_back(all_indices(bs));
    std::vector<int64_t> sorted = orders.back();
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> want(40);
    std::iota(want.begin(), want.end(), int64_t{0});
    REQUIRE(sorted == want);
    // No transform: the image is the decoded pixels as f32.
    const float* p = bs[0].images.data<float>();
    CHECK(p[0] == static_cast<float>((bs[0].indices[0] * 7) % 256));
  }
  CHECK(orders[0] != orders[1]);
  CHECK(orders[1] != orders[2]);
  CHECK(all_indices(drain(l, 1)) == orders[1]);  // an epoch replays exactly

  data::Loader plain({.dataset = &ds, .batch_size = 6, .shuffle = false, .threads = 2});
  std::vector<int64_t> want(40);
  std::iota(want.begin(), want.end(), int64_t{0});
  CHECK(all_indices(drain(plain, 0)) == want);
  CHECK(all_indices(drain(plain, 5)) == want);
}

TEST_CASE("loader: shards by rank are disjoint and cover the dataset") {
  for (int world : {1, 2, 3, 7}) {
    for (auto rem : {data::ShardRemainder::spread, data::ShardRemainder::drop}) {
      std::multiset<int64_t> seen;
      std::vector<size_t> sizes;
      for (int rank = 0; rank < world; ++rank) {
        auto s = data::shard_order(100, 9, 2, true, rank, world, rem);
        sizes.push_back(s.size());
        seen.insert(s.begin(), s.end());
      }
      std::set<int64_t> unique(seen.begin(), seen.end());
      CHECK(unique.size() == seen.size());  // disjoint
      if (rem == data::ShardRemainder::spread) {
        CHECK(seen.size() == 100);  // cover
        for (size_t r = 0; r < sizes.size(); ++r)
          CHECK(sizes[r] == static_cast<size_t>(100 / world + (static_cast<int>(r) < 100 % world)));
      } else {
        CHECK(seen.size() == static_cast<size_t>(100 / world * world));
        for (size_t sz : sizes) CHECK(sz == static_cast<size_t>(100 / world));
      }
    }
  }
  // Through the Loader: two ranks' batches together are the whole dataset, once.
  FakeDataset ds(45);
  std::multiset<int64_t> seen;
  for (int rank = 0; rank < 2; ++rank) {
    data::Loader l({.dataset = &ds, .batch_size = 4, .seed = 1, .threads = 2, .rank = rank,
                    .world_size = 2});
    CHECK(l.shard_size() == (rank == 0 ? 23 : 22));
    for (int64_t i : all_indices(drain(l, 4))) seen.insert(i);
  }
  CHECK(seen.size() == 45);
  CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 45);
  CHECK_THROWS_AS(data::Loader({.dataset = &ds, .rank = 2, .world_size = 2}), bonsai::Error);
}

TEST_CASE("loader: drop_remainder and batch counts") {
  FakeDataset ds(10);
  data::Loader keep({.dataset = &ds, .batch_size = 4, .threads = 1});
  data::Loader drop({.dataset = &ds, .batch_size = 4, .threads = 1, .drop_remainder = true});
  CHECK(keep.batches_per_epoch() == 3);
  CHECK(drop.batches_per_epoch() == 2);
  auto k = drain(keep, 0);
  auto d = drain(drop, 0);
  REQUIRE(k.size() == 3);
  CHECK(k[2].size() == 2);
  REQUIRE(d.size() == 2);
  CHECK(d[1].size() == 4);
  CHECK_THROWS_AS(data::Loader({.dataset = &ds, .batch_size = 0}), bonsai::Error);
  data::Loader unstarted({.dataset = &ds});
  CHECK_THROWS_AS(unstarted.next(), bonsai::Error);
}

TEST_CASE("loader: workers stay within the prefetch window") {
  FakeDataset ds(100);
  data::Loader l({.dataset = &ds, .batch_size = 1, .threads = 2, .prefetch = 2});
  l.start_epoch(0);
  REQUIRE(l.next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Batch 0 consumed; the window then holds batches 1 and 2 only.
  CHECK(ds.calls.load() <= 3);
  CHECK(ds.calls.load() >= 2);
}

TEST_CASE("loader: destroying or restarting mid-epoch does not hang") {
  FakeDataset ds(400);
  ds.delay = std::chrono::milliseconds(10);
  const auto t0 = std::chrono::steady_clock::now();
  {
    data::Loader l({.dataset = &ds, .batch_size = 4, .threads = 3, .prefetch = 6});
    l.start_epoch(0);
    REQUIRE(l.next().has_value());
  }  // 99 batches left undelivered, workers mid-example
  {
    data::Loader l({.dataset = &ds, .batch_size = 4, .threads = 2});
    l.start_epoch(0);
    REQUIRE(l.next().has_value());
    l.start_epoch(1);  // abandons epoch 0
    auto b = l.next();
    REQUIRE(b.has_value());
    CHECK(b->size() == 4);
  }
  {
    data::Loader l({.dataset = &ds, .batch_size = 4, .threads = 2});
    l.start_epoch(0);  // never consumed
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(s < 2.0);  // a full epoch would take 400 * 10 ms / 3 threads = 1.3 s or more per loader
}

TEST_CASE("loader: on_error fail rethrows in the consumer, naming the file") {
  FakeDataset ds(20);
  ds.bad = {5};
  for (int threads : {0, 2}) {
    data::Loader l({.dataset = &ds, .batch_size = 4, .shuffle = false, .threads = threads});
    l.start_epoch(0);
    auto b0 = l.next();
    REQUIRE(b0.has_value());
    CHECK(b0->size() == 4);
    try {
      l.next();
      FAIL("expected an error for /fake/img_5.jpg");
    } catch (const bonsai::Error& e) {
      CHECK(std::string(e.what()).find("/fake/img_5.jpg") != std::string::npos);
      CHECK(std::string(e.what()).find("corrupt JPEG") != std::string::npos);
    }
    CHECK(!l.next().has_value());  // the epoch has ended
    l.start_epoch(1);              // and the loader can go on
    CHECK(l.next().has_value());
  }
  // A transform error names the file too, even if the transform's message does not.
  FakeDataset ok(8);
  data::Loader l({.dataset = &ok, .batch_size = 4, .shuffle = false, .threads = 1,
                  .transform = [](const data::Example& e, std::mt19937&) -> data::Sample {
                    BONSAI_CHECK(e.label != 6, "bad label");
                    return {.image = e.image.to(DType::f32), .label = e.label, .path = e.path};
                  }});
  l.start_epoch(0);
  CHECK(l.next().has_value());
  CHECK_THROWS_WITH_AS(l.next(), doctest::Contains("/fake/img_6.jpg"), bonsai::Error);
}

TEST_CASE("loader: on_error skip drops the example, counts it, and goes on") {
  FakeDataset ds(20);
  ds.bad = {5, 17, 8, 9, 10, 11};  // batch 2 (8..11) fails entirely
  data::Loader l({.dataset = &ds, .batch_size = 4, .shuffle = false, .threads = 2,
                  .on_error = data::OnError::skip});
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    auto bs = drain(l, epoch);
    REQUIRE(bs.size() == 4);  // the all-bad batch is not delivered
    CHECK(bs[1].indices == std::vector<int64_t>{4, 6, 7});
    CHECK(bs[1].images.shape() == bonsai::Shape({3, 12, 10, 3}));
    CHECK(bs[1].labels.data<int64_t>()[1] == 6);
    CHECK(bs[2].indices == std::vector<int64_t>{12, 13, 14, 15});
    CHECK(all_indices(bs).size() == 14);
    auto sk = l.skipped();
    REQUIRE(sk.size() == 6);  // reset each epoch, not accumulated
    CHECK(sk[0].index == 5);
    CHECK(sk[5].index == 17);
    CHECK(sk[5].message.find("/fake/img_17.jpg") != std::string::npos);
  }
}

TEST_CASE("loader: segmentation batches carry s64 masks; mixed sizes are an error") {
  FakeDataset ds(9, 12, 10);
  ds.segmentation = true;
  data::Loader l({.dataset = &ds, .batch_size = 4, .shuffle = false, .threads = 2,
                  .transform = data::segment_eval_transform({.pad = 16})});
  auto bs = drain(l, 0);
  REQUIRE(bs.size() == 3);
  CHECK(bs[0].images.shape() == bonsai::Shape({4, 16, 16, 3}));
  REQUIRE(bs[0].labels.shape() == bonsai::Shape({4, 16, 16}));
  const int64_t* m = bs[0].labels.data<int64_t>();
  // Example 1, pixel (0, 1) = k 1: (1 + 1) % 5 = 2; pixel (0, 2) = k 2: 255; (0, 12): padding.
  CHECK(m[1 * 256 + 1] == 2);
  CHECK(m[1 * 256 + 2] == 255);
  CHECK(m[1 * 256 + 12] == 255);
  CHECK(m[1 * 256 + 15 * 16 + 15] == 255);

  FakeDataset ragged(4);
  ragged.ragged = true;
  data::Loader r({.dataset = &ragged, .batch_size = 4, .shuffle = false, .threads = 1});
  r.start_epoch(0);
  CHECK_THROWS_WITH_AS(r.next(), doctest::Contains("/fake/img_1.jpg"), bonsai::Error);
}

// ---------------------------------------------------------------- with the real layouts

namespace {

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("bonsai_loader_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

Tensor gradient_image(int64_t H, int64_t W, int seed) {
  Tensor t = Tensor::empty({H, W, 3}, DType::u8);
  uint8_t* p = t.data<uint8_t>();
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c) p[(y * W + x) * 3 + c] = static_cast<uint8_t>((y * 3 + x * 2 + seed * 40 + c * 60) % 256);
  return t;
}

}  // namespace

TEST_CASE("loader: ImageNet and VOC layouts on disk, a corrupt JPEG skipped, bench_data runs") {
  TempDir dir;
  namespace fs = std::filesystem;
  // ImageNet: 2 classes x 5 images of varied sizes, one of them truncated.
  const fs::path in = dir.path / "imagenet";
  for (int c = 0; c < 2; ++c) {
    const fs::path cls = in / "train" / ("n0000000" + std::to_string(c));
    fs::create_directories(cls);
    for (int i = 0; i < 5; ++i)
      data::write_jpeg((cls / ("img_" + std::to_string(i) + ".JPEG")).string(),
                       gradient_image(30 + 7 * i, 40 + 3 * i, c * 5 + i));
  }
  const fs::path broken = in / "train" / "n00000001" / "img_3.JPEG";
  fs::resize_file(broken, fs::file_size(broken) / 3);

  data::ImageNetDataset inet({.root = in.string(), .split = "train"});
  REQUIRE(inet.size() == 10);
  data::Loader l({.dataset = &inet, .batch_size = 4, .seed = 2, .threads = 2,
                  .on_error = data::OnError::skip,
                  .transform = data::classify_train_transform({.size = 24})});
  auto bs = drain(l, 0);
  int64_t n = 0;
  for (const auto& b : bs) {
    CHECK(b.images.shape().dim(1) == 24);
    for (int64_t k = 0; k < b.size(); ++k)
      CHECK(b.labels.data<int64_t>()[k] == (b.paths[k].find("n00000001") != std::string::npos));
    n += b.size();
  }
  CHECK(n == 9);
  REQUIRE(l.skipped().size() == 1);
  CHECK(l.skipped()[0].message.find("img_3.JPEG") != std::string::npos);
  // The same with on_error = fail names the file.
  data::Loader f({.dataset = &inet, .batch_size = 10, .threads = 1,
                  .transform = data::classify_eval_transform({.size = 16})});
  f.start_epoch(0);
  CHECK_THROWS_WITH_AS(f.next(), doctest::Contains("img_3.JPEG"), bonsai::Error);

  // VOC: 3 images with palette-colour masks, a train list.
  const fs::path voc = dir.path / "voc";
  fs::create_directories(voc / "JPEGImages");
  fs::create_directories(voc / "SegmentationClass");
  fs::create_directories(voc / "ImageSets" / "Segmentation");
  std::string list;
  for (int i = 0; i < 3; ++i) {
    const std::string id = "2007_00000" + std::to_string(i);
    const int64_t H = 20 + i, W = 26;
    data::write_jpeg((voc / "JPEGImages" / (id + ".jpg")).string(), gradient_image(H, W, i));
    Tensor mask = Tensor::empty({H, W}, DType::u8);
    for (int64_t k = 0; k < H * W; ++k)
      mask.data<uint8_t>()[k] = static_cast<uint8_t>(k % 7 == 0 ? 255 : (k / W < 10 ? 0 : 15));
    data::write_mask_png((voc / "SegmentationClass" / (id + ".png")).string(), mask);
    list += id + "\n";
  }
  std::ofstream(voc / "ImageSets" / "Segmentation" / "train.txt") << list;
  data::VocDataset vds({.root = voc.string(), .split = "train"});
  data::Loader v({.dataset = &vds, .batch_size = 3, .threads = 2,
                  .transform = data::segment_train_transform({.crop = 32})});
  auto vb = drain(v, 0);
  REQUIRE(vb.size() == 1);
  REQUIRE(vb[0].labels.shape() == bonsai::Shape({3, 32, 32}));
  std::set<int64_t> values(vb[0].labels.data<int64_t>(), vb[0].labels.data<int64_t>() + 3 * 32 * 32);
  for (int64_t value : values) CHECK((value == 0 || value == 15 || value == 255));

  // bench_data over both layouts (ImageNet without the broken file).
  fs::remove(broken);
  for (const char* layout : {"imagenet", "voc"}) {
    const std::string line = bonsai::apps::bench_data(
        {.dataset = (std::string(layout) == "voc" ? voc : in).string(), .layout = layout,
         .res = 16, .threads = 2, .batch = 3, .batches = 5});
    auto j = nlohmann::json::parse(line);
    CHECK(j["images"].get<int64_t>() == 15);  // full batches, cycling the small datasets
    CHECK(j["images_per_s"].get<double>() > 0);
    CHECK(j["layout"] == layout);
  }
  CHECK_THROWS_AS(bonsai::apps::bench_data({.dataset = in.string(), .layout = "coco"}),
                  bonsai::Error);
  CHECK_THROWS_WITH_AS(bonsai::apps::bench_data({.dataset = voc.string(), .layout = "voc", .batch = 4}),
                       doctest::Contains("fewer images than one batch"), bonsai::Error);
}
