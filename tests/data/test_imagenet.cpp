// ImageNetDataset on hand-made folders in the official layouts: class
// folders, flat val with Kaggle's LOC_val_solution.csv, flat val with the
// devkit's ground truth, no train/ at all; and every bad input (empty class
// folder, listed image with no file, image with no label, corrupt / truncated
// / empty image files) under on_error fail and skip.
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <thread>

#include "data/imagenet.h"
#include "tests/data/image_test_util.h"

namespace fs = std::filesystem;
using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace data = bonsai::data;
using namespace bonsai::testing;

namespace {

// A small image whose pixels say which one it is (PNG: exact round trip);
// tag 0..24.
Tensor tagged_image(int tag) {
  Tensor t = Tensor::empty({5, 6, 3}, DType::u8);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<uint8_t>()[i] = static_cast<uint8_t>(tag * 10 + i % 7);
  return t;
}

int tag_of(const Tensor& img) { return img.data<uint8_t>()[0] / 10; }

void put_png(const fs::path& p, int tag) {
  fs::create_directories(p.parent_path());
  data::write_png(p.string(), tagged_image(tag));
}

void put_jpeg(const fs::path& p, int tag) {
  fs::create_directories(p.parent_path());
  data::write_jpeg(p.string(), gradient_image(12, 16, tag));
}

const std::string kSynsets =
    "n01440764 tench, Tinca tinca\n"
    "n01443537 goldfish, Carassius auratus\n"
    "n01484850 great white shark, white shark, man-eater\n";

}  // namespace

TEST_CASE("imagenet: class folders, sorted classes and files, any image extension") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  // Created out of order; names with every accepted extension spelling.
  put_png(root / "train/n01484850/b.png", 20);
  put_png(root / "train/n01440764/z.PNG", 1);
  put_jpeg(root / "train/n01440764/n01440764_10026.JPEG", 2);
  put_jpeg(root / "train/n01440764/a.jpg", 3);
  put_jpeg(root / "train/n01443537/c.Jpeg", 10);
  write_text((root / "train/n01443537/notes.txt").string(), "not an image");  // ignored
  write_text((root / "train/n01443537/.hidden.jpg").string(), "");            // ignored
  put_png(root / "val/n01443537/v1.png", 11);
  put_png(root / "val/n01484850/v2.png", 21);

  data::ImageNetDataset train({.root = root.string(), .split = "train"});
  CHECK(train.size() == 5);
  CHECK(train.num_classes() == 3);
  REQUIRE(train.wnids() == std::vector<std::string>{"n01440764", "n01443537", "n01484850"});
  // No synset list: class names are the wnids.
  CHECK(train.class_names() == train.wnids());
  std::vector<std::string> names;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < train.size(); ++i) {
    names.push_back(fs::path(train.path(i)).filename().string());
    labels.push_back(train.label(i));
  }
  CHECK(names == std::vector<std::string>{"a.jpg", "n01440764_10026.JPEG", "z.PNG", "c.Jpeg", "b.png"});
  CHECK(labels == std::vector<int64_t>{0, 0, 0, 1, 2});
  data::Example e = train.get(4);
  CHECK(e.label == 2);
  CHECK(e.image.shape() == Shape{5, 6, 3});
  CHECK(e.image.dtype() == DType::u8);
  CHECK(tag_of(e.image) == 20);
  CHECK(e.path == train.path(4));
  CHECK(train.get(3).image.shape() == Shape{12, 16, 3});
  CHECK(contains(train.describe(), "5 images, 3 classes"));

  // val in class folders uses train's class list (n01440764 has no val folder).
  data::ImageNetDataset val({.root = root.string(), .split = "val"});
  CHECK(val.num_classes() == 3);
  REQUIRE(val.size() == 2);
  CHECK(val.label(0) == 1);
  CHECK(val.label(1) == 2);
  CHECK(tag_of(val.get(1).image) == 21);

  CHECK_THROWS_AS(train.get(5), bonsai::Error);
  CHECK_THROWS_AS(data::ImageNetDataset({.root = root.string(), .split = "test"}), bonsai::Error);
}

TEST_CASE("imagenet: flat val with LOC_val_solution.csv and LOC_synset_mapping.txt") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  put_png(root / "train/n01440764/t0.JPEG", 1);
  put_png(root / "train/n01443537/t1.JPEG", 2);
  put_png(root / "train/n01484850/t2.JPEG", 3);
  write_text((root / "LOC_synset_mapping.txt").string(), kSynsets);
  // Kaggle's format: several boxes per row, the wnid repeated; CRLF endings.
  for (int k = 1; k <= 4; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "val/ILSVRC2012_val_%08d.JPEG", k);
    put_png(root / name, 20 + k);
  }
  write_text((root / "LOC_val_solution.csv").string(),
             "ImageId,PredictionString\r\n"
             "ILSVRC2012_val_00000003,n01484850 10 20 100 200 n01484850 5 5 50 50\r\n"
             "ILSVRC2012_val_00000001,n01443537 0 0 10 10\r\n"
             "ILSVRC2012_val_00000004,n01440764 1 2 3 4\r\n"
             "ILSVRC2012_val_00000002,n01443537 1 1 9 9 \r\n");
  data::ImageNetDataset val({.root = root.string(), .split = "val"});
  REQUIRE(val.size() == 4);
  // Sorted by file name; labels by wnid in sorted order.
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < 4; ++i) {
    labels.push_back(val.label(i));
    CHECK(tag_of(val.get(i).image) == 21 + i);
  }
  CHECK(labels == std::vector<int64_t>{1, 1, 2, 0});
  CHECK(val.class_names() == std::vector<std::string>{"tench", "goldfish", "great white shark"});
  CHECK(val.wnids()[2] == "n01484850");

  SUBCASE("a listed image with no file: fail names it, skip records it") {
    std::string csv = "ImageId,PredictionString\n"
                      "ILSVRC2012_val_00000001,n01443537 0 0 1 1\n"
                      "ILSVRC2012_val_00000002,n01443537 0 0 1 1\n"
                      "ILSVRC2012_val_00000003,n01484850 0 0 1 1\n"
                      "ILSVRC2012_val_00000004,n01440764 0 0 1 1\n"
                      "ILSVRC2012_val_00000099,n01440764 0 0 1 1\n";
    write_text((root / "LOC_val_solution.csv").string(), csv);
    const std::string missing = (root / "val/ILSVRC2012_val_00000099").string();
    check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "val"}); }, missing,
                "line 6 but no image file");
    data::ImageNetDataset skip({.root = root.string(), .split = "val", .on_error = data::OnError::skip});
    CHECK(skip.size() == 4);
    REQUIRE(skip.skipped().size() == 1);
    CHECK(skip.skipped()[0].path == missing);
    CHECK(skip.skipped()[0].index == -1);
    CHECK(contains(skip.skipped()[0].message, missing));
    CHECK(contains(skip.describe(), "1 skipped"));
  }
  SUBCASE("an image with no label, and a label that is not a class") {
    write_text((root / "LOC_val_solution.csv").string(),
               "ImageId,PredictionString\n"
               "ILSVRC2012_val_00000001,n01443537 0 0 1 1\n"
               "ILSVRC2012_val_00000002,n09999999 0 0 1 1\n"
               "ILSVRC2012_val_00000003,n01484850 0 0 1 1\n");
    const std::string unknown = (root / "val/ILSVRC2012_val_00000002.JPEG").string();
    check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "val"}); }, unknown,
                "'n09999999'");
    data::ImageNetDataset skip({.root = root.string(), .split = "val", .on_error = data::OnError::skip});
    CHECK(skip.size() == 2);
    REQUIRE(skip.skipped().size() == 2);
    CHECK(skip.skipped()[0].path == unknown);
    CHECK(skip.skipped()[1].path == (root / "val/ILSVRC2012_val_00000004.JPEG").string());
    CHECK(contains(skip.skipped()[1].message, "has no label"));
  }
  SUBCASE("no labels file at all") {
    fs::remove(root / "LOC_val_solution.csv");
    check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "val"}); },
                (root / "val").string(), "no labels were found");
  }
}

TEST_CASE("imagenet: flat val with the devkit ground truth and an ILSVRC2012_ID synset list") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  for (const char* w : {"n01440764", "n01443537", "n01484850"}) put_png(root / "train" / w / "x.png", 1);
  // The devkit's ID order is not sorted: here ID 1 = n01484850, 2 = n01440764, 3 = n01443537.
  write_text((root / "devkit_synsets.txt").string(), "n01484850\nn01440764 tench\nn01443537\n");
  for (int k = 1; k <= 3; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "val/ILSVRC2012_val_%08d.JPEG", k);
    put_png(root / name, k);
  }
  write_text((root / "ILSVRC2012_validation_ground_truth.txt").string(), "2\n1\n3\n");
  data::ImageNetDataset val({.root = root.string(), .split = "val",
                             .devkit_synsets = (root / "devkit_synsets.txt").string()});
  REQUIRE(val.size() == 3);
  // ID 2 -> n01440764 -> class 0; ID 1 -> n01484850 -> 2; ID 3 -> n01443537 -> 1.
  CHECK(val.label(0) == 0);
  CHECK(val.label(1) == 2);
  CHECK(val.label(2) == 1);

  // Without the ID list the indices cannot be interpreted.
  check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "val"}); },
              (root / "ILSVRC2012_validation_ground_truth.txt").string(), "devkit_synsets");
  // A count mismatch names both sides.
  write_text((root / "ILSVRC2012_validation_ground_truth.txt").string(), "2\n1\n");
  check_error(
      [&] {
        data::ImageNetDataset({.root = root.string(), .split = "val",
                               .devkit_synsets = (root / "devkit_synsets.txt").string()});
      },
      (root / "ILSVRC2012_validation_ground_truth.txt").string(), "has 2 labels but");
  // An ID outside the list.
  write_text((root / "ILSVRC2012_validation_ground_truth.txt").string(), "2\n1\n4\n");
  check_error(
      [&] {
        data::ImageNetDataset({.root = root.string(), .split = "val",
                               .devkit_synsets = (root / "devkit_synsets.txt").string()});
      },
      (root / "ILSVRC2012_validation_ground_truth.txt").string(), "line 3: '4' is not an ILSVRC2012_ID");
}

TEST_CASE("imagenet: without train/, the classes come from the synset list") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  // Synsets given out of order: classes are still sorted by wnid.
  write_text((root / "synsets.txt").string(),
             "n01484850 great white shark\nn01440764 tench\nn01443537 goldfish\n");
  put_png(root / "val/a.png", 1);
  put_png(root / "val/b.png", 2);
  write_text((root / "LOC_val_solution.csv").string(),
             "ImageId,PredictionString\na,n01484850 0 0 1 1\nb,n01440764 0 0 1 1\n");
  data::ImageNetDataset val({.root = root.string(), .split = "val",
                             .class_names_file = (root / "synsets.txt").string()});
  CHECK(val.wnids() == std::vector<std::string>{"n01440764", "n01443537", "n01484850"});
  CHECK(val.class_names() == std::vector<std::string>{"tench", "goldfish", "great white shark"});
  CHECK(val.label(0) == 2);
  CHECK(val.label(1) == 0);
  // With neither train/ nor a synset list, a flat val cannot name its classes.
  check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "val"}); }, root.string(),
              "cannot tell the classes");
}

TEST_CASE("imagenet: an empty class folder fails naming it, or is skipped keeping its index") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  put_png(root / "train/n01440764/a.png", 1);
  fs::create_directories(root / "train/n01443537");  // empty
  write_text((root / "train/n01443537/readme.txt").string(), "no images here");
  put_png(root / "train/n01484850/c.png", 3);
  const std::string empty = (root / "train/n01443537").string();
  check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "train"}); }, empty,
              "empty class folder");
  data::ImageNetDataset skip({.root = root.string(), .split = "train", .on_error = data::OnError::skip});
  CHECK(skip.num_classes() == 3);  // labels do not shift
  REQUIRE(skip.size() == 2);
  CHECK(skip.label(1) == 2);
  REQUIRE(skip.skipped().size() == 1);
  CHECK(skip.skipped()[0].path == empty);
  CHECK(contains(skip.skipped()[0].message, "empty class folder"));

  // An image outside any class folder is a broken layout too.
  put_png(root / "train/stray.png", 9);
  check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "train"}); },
              (root / "train/stray.png").string(), "outside any class folder");
  // A val class folder train does not know.
  put_png(root / "val/n09999999/v.png", 9);
  check_error([&] { data::ImageNetDataset({.root = root.string(), .split = "val"}); },
              (root / "val/n09999999").string(), "is not one of the 3 classes");
}

TEST_CASE("imagenet: corrupt, truncated and zero-byte images throw from get() naming the file") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  put_jpeg(root / "train/n01440764/good.JPEG", 1);
  Bytes jpg = data::read_file_bytes((root / "train/n01440764/good.JPEG").string());
  write_raw((root / "train/n01440764/truncated.JPEG").string(), Bytes(jpg.begin(), jpg.begin() + jpg.size() / 2));
  write_raw((root / "train/n01440764/zero.JPEG").string(), {});
  Bytes junk = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 2, 3};
  write_raw((root / "train/n01440764/corrupt.JPEG").string(), junk);
  Bytes png = data::encode_png(tagged_image(2));
  png[png.size() / 2] ^= 0x40;
  write_raw((root / "train/n01443537/corrupt.png").string(), png);

  data::ImageNetDataset ds({.root = root.string(), .split = "train"});
  REQUIRE(ds.size() == 5);  // construction does not decode
  int good = 0;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const std::string& p = ds.path(i);
    CAPTURE(p);
    if (contains(p, "good")) {
      CHECK(ds.get(i).image.shape() == Shape{12, 16, 3});
      ++good;
    } else if (contains(p, "zero")) {
      check_error([&] { ds.get(i); }, p, "empty file (0 bytes)");
    } else if (contains(p, "corrupt.png")) {
      check_error([&] { ds.get(i); }, p, "CRC mismatch");
    } else {
      check_error([&] { ds.get(i); }, p, "JPEG");
    }
  }
  CHECK(good == 1);
}

TEST_CASE("imagenet: get() from several threads at once gives what one thread gives") {
  TempDir dir("imagenet");
  const fs::path root = dir.path;
  for (int k = 0; k < 24; ++k) {
    const fs::path p = root / "train" / (k % 2 ? "n01443537" : "n01440764") / (std::to_string(k) + ".jpg");
    put_jpeg(p, k);
    if (k % 5 == 4) {  // every fifth file truncated: errors must stay per thread
      Bytes b = data::read_file_bytes(p.string());
      write_raw(p.string(), Bytes(b.begin(), b.begin() + b.size() / 3));
    }
  }
  data::ImageNetDataset ds({.root = root.string(), .split = "train"});
  REQUIRE(ds.size() == 24);
  auto outcome = [&](int64_t i) -> std::string {
    try {
      data::Example e = ds.get(i);
      Bytes px(e.image.data<uint8_t>(), e.image.data<uint8_t>() + e.image.numel());
      return "ok " + std::to_string(e.label) + " " + std::to_string(crc32(0L, px.data(), static_cast<uInt>(px.size())));
    } catch (const bonsai::Error& err) {
      return err.what();
    }
  };
  std::vector<std::string> serial;
  for (int64_t i = 0; i < ds.size(); ++i) serial.push_back(outcome(i));
  std::vector<std::vector<std::string>> parallel(4, std::vector<std::string>(24));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        for (int64_t i = 0; i < 24; ++i) {
          int64_t j = (i + 7 * t) % 24;  // threads work on different files at once
          parallel[static_cast<size_t>(t)][static_cast<size_t>(j)] = outcome(j);
        }
    });
  for (auto& th : threads) th.join();
  int errors = 0;
  for (const std::string& s : serial) errors += s.rfind("ok ", 0) != 0;
  CHECK(errors == 4);  // files 4, 9, 14, 19
  for (int t = 0; t < 4; ++t) CHECK(parallel[static_cast<size_t>(t)] == serial);
}
