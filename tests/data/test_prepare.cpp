// Preparation round trips on the real Fashion-MNIST (Debian's
// dataset-fashion-mnist): write both layouts, load them back with the
// ImageNet and VOC datasets, and compare with the IDX source — labels exactly,
// pixels within JPEG error, VOC masks exactly. Also: the canvas composition
// against the IDX pixels, determinism by seed, and the command line.
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <map>
#include <set>

#include "apps/lib/data_prepare.h"
#include "data/imagenet.h"
#include "data/prepare.h"
#include "data/voc.h"
#include "tests/data/image_test_util.h"

namespace fs = std::filesystem;
using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace data = bonsai::data;
using namespace bonsai::testing;

namespace {

const std::string kFashionDir = "/usr/share/datasets/fashion-mnist";

// Loaded once: gunzipping 30 MB for every case would dominate the run time.
const data::FashionMnist& fashion() {
  static const data::FashionMnist fm = [] {
    if (!fs::is_directory(kFashionDir)) {
      FAIL("Fashion-MNIST not found at " << kFashionDir
                                         << "; install the Debian package dataset-fashion-mnist");
    }
    return data::load_fashion_mnist(kFashionDir);
  }();
  return fm;
}

// JPEG error bounds for Fashion-MNIST at quality 95 (gray, so only luma is
// quantised; no chroma subsampling above quality 90). Measured with this
// stb_image_write / stb_image over ALL 70000 images: per-image mean absolute
// error <= 1.51, max absolute error 11. The bounds sit just above.
constexpr double kJpegMeanBound = 1.6;
constexpr int kJpegMaxBound = 12;

bool files_equal(const fs::path& a, const fs::path& b) {
  return data::read_file_bytes(a.string()) == data::read_file_bytes(b.string());
}

}  // namespace

TEST_CASE("prepare: Fashion-MNIST in the ImageNet layout loads back with IDX labels and pixels") {
  const data::FashionMnist& fm = fashion();
  TempDir dir("prepare");
  const std::string out = (dir.path / "fm-imagenet").string();
  std::vector<int64_t> progress_calls;
  data::PreparedImageNet r = data::prepare_fashion_mnist_imagenet(
      fm, {.out_dir = out, .seed = 3, .limit = 50,
           .progress = [&](const std::string&, int64_t done, int64_t) { progress_calls.push_back(done); }});
  CHECK(r.train_count == 50);
  CHECK(r.val_count == 50);
  REQUIRE(r.images.size() == 100);
  CHECK(progress_calls.size() == 100);
  // val is flat and labelled by LOC_val_solution.csv.
  CHECK(fs::is_regular_file(fs::path(out) / "LOC_val_solution.csv"));
  for (const auto& e : fs::directory_iterator(fs::path(out) / "val")) CHECK(e.is_regular_file());
  CHECK_FALSE(fs::exists(out + ".partial-" + std::to_string(::getpid())));

  data::ImageNetDataset train({.root = out, .split = "train"});
  data::ImageNetDataset val({.root = out, .split = "val"});
  REQUIRE(train.size() == 50);
  REQUIRE(val.size() == 50);
  CHECK(train.num_classes() == 10);
  CHECK(train.wnids()[0] == "n00000000");
  CHECK(train.wnids()[9] == "n00000009");
  CHECK(train.class_names() == data::fashion_mnist_class_names());
  CHECK(val.class_names()[9] == "Ankle boot");

  std::map<int64_t, int> per_class;
  std::set<int64_t> sources;
  for (int split = 0; split < 2; ++split) {
    const data::ImageNetDataset& ds = split == 0 ? train : val;
    const Tensor& images = split == 0 ? fm.train_images : fm.test_images;
    const Tensor& labels = split == 0 ? fm.train_labels : fm.test_labels;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const data::PreparedImage& rec = r.images[static_cast<size_t>(split * 50 + i)];
      CAPTURE(rec.path);
      CHECK(rec.train == (split == 0));
      CHECK(ds.path(i) == (fs::path(out) / rec.path).string());
      data::Example e = ds.get(i);
      // Labels exactly: the loader's label is the IDX label of the source.
      CHECK(e.label == labels.data<int64_t>()[rec.source_index]);
      CHECK(e.label == rec.label);
      if (split == 0) {
        ++per_class[e.label];
        sources.insert(rec.source_index);
      }
      // Pixels within JPEG error, and exactly gray (neutral chroma decodes to R = G = B).
      REQUIRE(e.image.shape() == Shape{28, 28, 3});
      const uint8_t* src = images.data<uint8_t>() + rec.source_index * 784;
      const uint8_t* px = e.image.data<uint8_t>();
      std::vector<uint8_t> red(784);
      bool gray = true;
      for (int k = 0; k < 784; ++k) {
        red[static_cast<size_t>(k)] = px[3 * k];
        gray = gray && px[3 * k] == px[3 * k + 1] && px[3 * k] == px[3 * k + 2];
      }
      CHECK(gray);
      AbsError err = abs_error(red.data(), src, 784);
      CHECK(err.mean <= kJpegMeanBound);
      CHECK(err.max <= kJpegMaxBound);
    }
  }
  // A limit keeps a class-balanced subset: 5 of each class, all distinct.
  CHECK(per_class.size() == 10);
  for (const auto& [c, n] : per_class) CHECK(n == 5);
  CHECK(sources.size() == 50);

  // Same seed: byte-identical files. Another seed: another subset.
  const std::string again = (dir.path / "again").string();
  data::PreparedImageNet r2 = data::prepare_fashion_mnist_imagenet(fm, {.out_dir = again, .seed = 3, .limit = 50});
  REQUIRE(r2.images.size() == r.images.size());
  for (size_t i = 0; i < r.images.size(); ++i) {
    CHECK(r2.images[i].path == r.images[i].path);
    CHECK(files_equal(fs::path(out) / r.images[i].path, fs::path(again) / r2.images[i].path));
  }
  CHECK(files_equal(fs::path(out) / "LOC_val_solution.csv", fs::path(again) / "LOC_val_solution.csv"));
  data::PreparedImageNet r3 = data::prepare_fashion_mnist_imagenet(
      fm, {.out_dir = (dir.path / "other").string(), .seed = 4, .limit = 50});
  int same = 0;
  for (size_t i = 0; i < 50; ++i) same += r3.images[i].source_index == r.images[i].source_index;
  CHECK(same < 50);

  // An existing, non-empty output folder is refused and left alone.
  check_error([&] { data::prepare_fashion_mnist_imagenet(fm, {.out_dir = out, .limit = 10}); }, out,
              "already exists");
  CHECK(data::ImageNetDataset({.root = out, .split = "train"}).size() == 50);
  check_error([&] { data::prepare_fashion_mnist_imagenet(fm, {.out_dir = dir.file("x"), .limit = 5}); },
              "limit 5", ">= 10");
}

TEST_CASE("prepare: a VOC canvas is the IDX items, its mask their labels, its band the label edges") {
  const data::FashionMnist& fm = fashion();
  // Scale 1 and no band: the drawn pixels are the IDX pixels themselves.
  data::VocCanvasOptions plain{.canvas = 64, .min_scale = 1.0f, .max_scale = 1.0f, .boundary = 0};
  for (int64_t index = 0; index < 20; ++index) {
    CAPTURE(index);
    data::VocCanvas c = data::compose_voc_canvas(fm.train_images, fm.train_labels, 11, true, index, plain);
    REQUIRE(c.image.shape() == Shape{64, 64, 3});
    REQUIRE(c.mask.shape() == Shape{64, 64});
    REQUIRE(c.items.size() >= 2);
    REQUIRE(c.items.size() <= 4);
    const uint8_t* img = c.image.data<uint8_t>();
    const uint8_t* m = c.mask.data<uint8_t>();
    // The last item is on top: inside its box, every object pixel of its IDX
    // image is in the canvas exactly, with its label + 1.
    const data::PlacedItem& top = c.items.back();
    CHECK(top.side == 28);
    CHECK(top.label == fm.train_labels.data<int64_t>()[top.source_index]);
    const uint8_t* src = fm.train_images.data<uint8_t>() + top.source_index * 784;
    int object_pixels = 0;
    for (int64_t y = 0; y < 28; ++y)
      for (int64_t x = 0; x < 28; ++x) {
        uint8_t v = src[y * 28 + x];
        if (v <= plain.threshold) continue;
        int64_t at = (top.top + y) * 64 + top.left + x;
        CHECK(img[3 * at] == v);
        CHECK(m[at] == top.label + 1);
        ++object_pixels;
      }
    CHECK(object_pixels > 0);
    // Everywhere: background pixels are black, object pixels above threshold,
    // labels only from the items.
    std::set<int> allowed = {0};
    for (const auto& it : c.items) allowed.insert(static_cast<int>(it.label + 1));
    for (int64_t i = 0; i < 64 * 64; ++i) {
      CHECK(allowed.count(m[i]) == 1);
      if (m[i] == 0) CHECK(img[3 * i] == 0);
      if (m[i] != 0) CHECK(img[3 * i] > plain.threshold);
      CHECK(img[3 * i] == img[3 * i + 1]);
    }
  }

  // The band: with boundary 1, a pixel is 255 exactly when a differently
  // labelled pixel is among its 8 neighbours, else it keeps its label.
  data::VocCanvasOptions banded{};  // defaults: 128, scale 1..2.5, boundary 1
  data::VocCanvasOptions unbanded = banded;
  unbanded.boundary = 0;
  for (int64_t index = 0; index < 5; ++index) {
    data::VocCanvas b = data::compose_voc_canvas(fm.test_images, fm.test_labels, 2, false, index, banded);
    data::VocCanvas u = data::compose_voc_canvas(fm.test_images, fm.test_labels, 2, false, index, unbanded);
    CHECK(std::memcmp(b.image.raw(), u.image.raw(), b.image.nbytes()) == 0);
    const uint8_t* L = u.mask.data<uint8_t>();
    const uint8_t* M = b.mask.data<uint8_t>();
    int bad = 0, band = 0;
    for (int64_t y = 0; y < 128; ++y)
      for (int64_t x = 0; x < 128; ++x) {
        bool edge = false;
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            int64_t yy = y + dy, xx = x + dx;
            if (yy >= 0 && yy < 128 && xx >= 0 && xx < 128 && L[yy * 128 + xx] != L[y * 128 + x]) edge = true;
          }
        uint8_t want = edge ? 255 : L[y * 128 + x];
        bad += M[y * 128 + x] != want;
        band += edge;
      }
    CHECK(bad == 0);
    CHECK(band > 0);
    for (const auto& it : b.items) {
      CHECK(it.side >= 28);
      CHECK(it.side <= 70);  // round(28 * 2.5)
      CHECK(it.top + it.side <= 128);
      CHECK(it.left + it.side <= 128);
    }
  }

  // Deterministic by (seed, split, index); different canvases differ.
  data::VocCanvas a = data::compose_voc_canvas(fm.train_images, fm.train_labels, 5, true, 7);
  data::VocCanvas a2 = data::compose_voc_canvas(fm.train_images, fm.train_labels, 5, true, 7);
  data::VocCanvas other = data::compose_voc_canvas(fm.train_images, fm.train_labels, 6, true, 7);
  CHECK(std::memcmp(a.mask.raw(), a2.mask.raw(), a.mask.nbytes()) == 0);
  CHECK(std::memcmp(a.image.raw(), a2.image.raw(), a.image.nbytes()) == 0);
  CHECK(std::memcmp(a.mask.raw(), other.mask.raw(), a.mask.nbytes()) != 0);
}

TEST_CASE("prepare: Fashion-MNIST in the VOC layout loads back with exactly the masks written") {
  const data::FashionMnist& fm = fashion();
  TempDir dir("prepare");
  const std::string out = (dir.path / "fm-voc").string();
  data::PrepareVocOptions o{.out_dir = out, .seed = 9, .train_count = 12, .val_count = 6};
  data::PreparedVoc r = data::prepare_fashion_mnist_voc(fm, o);
  REQUIRE(r.canvases.size() == 18);

  data::VocDataset train({.root = out, .split = "train"});
  data::VocDataset val({.root = out, .split = "val"});
  CHECK(data::VocDataset({.root = out, .split = "trainval"}).size() == 18);
  REQUIRE(train.size() == 12);
  REQUIRE(val.size() == 6);
  CHECK(train.num_classes() == 11);
  CHECK(train.class_names()[0] == "background");
  CHECK(train.class_names()[10] == "Ankle boot");

  double worst_mean = 0;
  int worst_max = 0;
  for (int split = 0; split < 2; ++split) {
    const data::VocDataset& ds = split == 0 ? train : val;
    const Tensor& images = split == 0 ? fm.train_images : fm.test_images;
    const Tensor& labels = split == 0 ? fm.train_labels : fm.test_labels;
    for (int64_t i = 0; i < ds.size(); ++i) {
      const data::PreparedCanvas& rec = r.canvases[static_cast<size_t>(split * 12 + i)];
      CAPTURE(rec.id);
      CHECK(ds.id(i) == rec.id);
      CHECK(rec.index == i);
      data::VocCanvas want = data::compose_voc_canvas(images, labels, o.seed, split == 0, i, o.canvas);
      REQUIRE(want.items.size() == rec.items.size());
      for (size_t k = 0; k < rec.items.size(); ++k) {
        CHECK(rec.items[k].source_index == want.items[k].source_index);
        CHECK(rec.items[k].label == labels.data<int64_t>()[rec.items[k].source_index]);
      }
      data::Example e = ds.get(i);
      REQUIRE(e.mask.shape() == Shape{128, 128});
      // The colormap PNG maps back to exactly the class indices written.
      CHECK(std::memcmp(e.mask.raw(), want.mask.raw(), want.mask.nbytes()) == 0);
      AbsError err = abs_error(e.image.data<uint8_t>(), want.image.data<uint8_t>(), e.image.numel());
      worst_mean = std::max(worst_mean, err.mean);
      worst_max = std::max(worst_max, err.max);
    }
  }
  // JPEG error of the canvases at quality 95 (4:4:4), measured with this stb
  // over the first 3000 train and all 1449 val canvases of seed 9 (which
  // include these 18): per-canvas mean absolute error <= 0.56, max 12.
  INFO("worst mean ", worst_mean, ", worst max ", worst_max);
  CHECK(worst_mean <= 0.6);
  CHECK(worst_max <= 12);

  // Same seed, same bytes.
  const std::string again = (dir.path / "again").string();
  data::prepare_fashion_mnist_voc(fm, {.out_dir = again, .seed = 9, .train_count = 12, .val_count = 6});
  for (const auto& c : r.canvases) {
    CHECK(files_equal(fs::path(out) / "JPEGImages" / (c.id + ".jpg"), fs::path(again) / "JPEGImages" / (c.id + ".jpg")));
    CHECK(files_equal(fs::path(out) / "SegmentationClass" / (c.id + ".png"),
                      fs::path(again) / "SegmentationClass" / (c.id + ".png")));
  }
}

TEST_CASE("prepare: bonsai data prepare fashion-mnist, both layouts") {
  fashion();  // fail early, with the install hint, if the data is missing
  TempDir dir("prepare");
  const std::string out_in = (dir.path / "in").string();
  const std::string out_voc = (dir.path / "voc").string();
  auto run = [](std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    return bonsai::apps::data_prepare_command(static_cast<int>(argv.size()), argv.data());
  };
  CHECK(run({"bonsai", "data", "prepare", "fashion-mnist", "--layout", "imagenet", "--out", out_in,
             "--limit", "10", "--data", kFashionDir}) == 0);
  CHECK(data::ImageNetDataset({.root = out_in, .split = "val"}).size() == 10);
  CHECK(run({"bonsai", "data", "prepare", "fashion-mnist", "--layout", "voc", "--out", out_voc,
             "--limit", "3", "--seed", "2", "--canvas", "96"}) == 0);
  data::VocDataset v({.root = out_voc, .split = "trainval"});
  CHECK(v.size() == 6);
  CHECK(v.get(0).mask.shape() == Shape{96, 96});
  check_error([&] { run({"bonsai", "data", "prepare", "fashion-mnist", "--layout", "coco", "--out", "x"}); },
              "--layout", "imagenet or voc");
  check_error([&] { run({"bonsai", "data", "prepare", "fashion-mnist", "--layout", "voc"}); }, "--out",
              "required");
  check_error([&] { run({"bonsai", "data", "prepare", "mnist", "--layout", "voc"}); }, "usage",
              "fashion-mnist");
}
