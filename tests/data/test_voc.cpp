// VocDataset on a hand-made folder in the official Pascal VOC 2012 layout:
// palette PNG masks in the VOC colours with 255 boundaries (written by hand,
// as stb cannot write palettes), JPEG images, ImageSets lists, an SBD-style
// extra list with gray index masks; and every bad input (mask size differs
// from its image, list entry with no file, corrupt / truncated / zero-byte
// image or mask, a mask value that is no class).
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>

#include "data/voc.h"
#include "tests/data/image_test_util.h"

namespace fs = std::filesystem;
using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace data = bonsai::data;
using namespace bonsai::testing;

namespace {

// A mask like VOC's: background, a rectangle of class `cls`, a 255 band
// around the rectangle's edge.
Tensor rect_mask(int64_t h, int64_t w, uint8_t cls) {
  Tensor m = Tensor::zeros({h, w}, DType::u8);
  uint8_t* p = m.data<uint8_t>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      bool in = y >= 2 && y < h - 2 && x >= 3 && x < w - 3;
      bool edge = in && (y == 2 || y == h - 3 || x == 3 || x == w - 4);
      p[y * w + x] = edge ? data::kVocIgnore : in ? cls : 0;
    }
  return m;
}

struct VocTree {
  TempDir dir{"voc"};
  fs::path root = dir.path / "VOC2012";
  // id -> (image, mask)
  void add(const std::string& id, int64_t h, int64_t w, uint8_t cls, int shift = 0) {
    fs::create_directories(root / "JPEGImages");
    fs::create_directories(root / "SegmentationClass");
    data::write_jpeg((root / "JPEGImages" / (id + ".jpg")).string(), gradient_image(h, w, shift));
    write_raw((root / "SegmentationClass" / (id + ".png")).string(), palette_mask_png(rect_mask(h, w, cls)));
  }
  void list(const std::string& split, const std::string& text) {
    write_text((root / "ImageSets/Segmentation" / (split + ".txt")).string(), text);
  }
  std::string image(const std::string& id) const { return (root / "JPEGImages" / (id + ".jpg")).string(); }
  std::string mask(const std::string& id) const { return (root / "SegmentationClass" / (id + ".png")).string(); }
};

}  // namespace

TEST_CASE("voc: the official layout with hand-made palette masks") {
  VocTree t;
  t.add("2007_000032", 20, 24, 1);    // aeroplane
  t.add("2007_000039", 18, 26, 20);   // tvmonitor
  t.add("2007_000063", 22, 22, 15);   // person
  t.list("train", "2007_000032\n2007_000039\n");
  t.list("val", "2007_000063\n");
  t.list("trainval", "2007_000032\n2007_000039\n2007_000063\n");

  data::VocDataset train({.root = t.root.string(), .split = "train"});
  CHECK(train.size() == 2);
  CHECK(train.num_classes() == 21);
  CHECK(train.class_names() == data::voc_class_names());
  CHECK(train.class_names()[15] == "person");
  data::Example e = train.get(1);
  CHECK(e.label == -1);
  REQUIRE(e.image.shape() == Shape{18, 26, 3});
  REQUIRE(e.mask.shape() == Shape{18, 26});
  CHECK(e.mask.dtype() == DType::u8);
  Tensor want = rect_mask(18, 26, 20);
  CHECK(std::memcmp(e.mask.raw(), want.raw(), want.nbytes()) == 0);  // exact, 255s included
  AbsError err = abs_error(e.image.data<uint8_t>(), gradient_image(18, 26).data<uint8_t>(), e.image.numel());
  CHECK(err.mean < 1.0);  // quality 95 on a smooth image: see test_image.cpp
  CHECK(err.max <= 4);
  CHECK(e.path == t.image("2007_000039"));
  CHECK(train.id(0) == "2007_000032");

  data::VocDataset val({.root = t.root.string(), .split = "val"});
  REQUIRE(val.size() == 1);
  Tensor vm = val.get(0).mask;
  Tensor vw = rect_mask(22, 22, 15);
  CHECK(std::memcmp(vm.raw(), vw.raw(), vw.nbytes()) == 0);
  CHECK(data::VocDataset({.root = t.root.string(), .split = "trainval"}).size() == 3);
  CHECK(contains(val.describe(), "1 images, 21 classes"));
}

TEST_CASE("voc: an SBD-style extra list with gray index masks") {
  VocTree t;
  t.add("2007_000032", 20, 24, 1);
  t.add("2007_000039", 18, 26, 20);
  t.list("train", "2007_000032\n");
  // SBD images: in JPEGImages; masks only in SegmentationClassAug, as gray PNGs.
  fs::create_directories(t.root / "SegmentationClassAug");
  for (const char* id : {"2008_000002", "2008_000003"}) {
    data::write_jpeg(t.image(id), gradient_image(16, 20));
    Tensor m = rect_mask(16, 20, 7);
    write_raw((t.root / "SegmentationClassAug" / (std::string(id) + ".png")).string(),
              make_png(20, 16, 8, 0, Bytes(m.data<uint8_t>(), m.data<uint8_t>() + m.numel())));
  }
  // The shared train_aug.txt style: "/image /mask" relative to root. The
  // first line repeats a train id, whose SegmentationClass mask wins.
  write_text((t.dir.path / "train_aug.txt").string(),
             "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
             "/JPEGImages/2008_000002.jpg /SegmentationClassAug/2008_000002.png\n"
             "2008_000003\n");
  data::VocDataset ds({.root = t.root.string(), .split = "train",
                       .extra_list = (t.dir.path / "train_aug.txt").string()});
  REQUIRE(ds.size() == 3);
  CHECK(ds.mask_path(0) == t.mask("2007_000032"));
  CHECK(ds.id(1) == "2008_000002");
  CHECK(ds.id(2) == "2008_000003");
  Tensor m = ds.get(2).mask;
  Tensor want = rect_mask(16, 20, 7);
  CHECK(std::memcmp(m.raw(), want.raw(), want.nbytes()) == 0);
  CHECK(contains(ds.describe(), "(2 from"));
}

TEST_CASE("voc: a mask whose size differs from its image names both files and sizes") {
  VocTree t;
  t.add("a", 20, 24, 1);
  write_raw(t.mask("a"), palette_mask_png(rect_mask(20, 23, 1)));
  t.list("train", "a\n");
  data::VocDataset ds({.root = t.root.string(), .split = "train"});
  std::string msg = error_of([&] { ds.get(0); });
  INFO(msg);
  CHECK(contains(msg, t.mask("a")));
  CHECK(contains(msg, t.image("a")));
  CHECK(contains(msg, "23x20"));
  CHECK(contains(msg, "24x20"));
}

TEST_CASE("voc: a list entry with no file fails naming it, or is skipped") {
  VocTree t;
  t.add("a", 20, 24, 1);
  t.add("b", 20, 24, 2);
  fs::remove(t.image("b"));
  t.add("c", 20, 24, 3);
  fs::remove(t.mask("c"));
  t.list("train", "a\nb\nc\n");
  const std::string list = (t.root / "ImageSets/Segmentation/train.txt").string();
  std::string msg = error_of([&] { data::VocDataset({.root = t.root.string(), .split = "train"}); });
  INFO(msg);
  CHECK(contains(msg, t.image("b")));
  CHECK(contains(msg, list + "' line 2"));
  CHECK(contains(msg, "image file does not exist"));

  data::VocDataset skip({.root = t.root.string(), .split = "train", .on_error = data::OnError::skip});
  CHECK(skip.size() == 1);
  REQUIRE(skip.skipped().size() == 2);
  CHECK(skip.skipped()[0].path == t.image("b"));
  CHECK(skip.skipped()[1].path == t.mask("c"));
  CHECK(contains(skip.skipped()[1].message, "mask file does not exist"));

  // A missing list, and a list naming an id twice.
  check_error([&] { data::VocDataset({.root = t.root.string(), .split = "val"}); },
              (t.root / "ImageSets/Segmentation/val.txt").string(), "not found");
  t.list("dup", "a\na\n");
  check_error([&] { data::VocDataset({.root = t.root.string(), .split = "dup"}); },
              (t.root / "ImageSets/Segmentation/dup.txt").string(), "appears twice");
}

TEST_CASE("voc: corrupt, truncated, zero-byte files and bad mask values throw naming the file") {
  VocTree t;
  for (const char* id : {"jpg_cut", "jpg_zero", "png_cut", "png_zero", "png_flip", "bad_value", "bad_colour"})
    t.add(id, 20, 24, 4);
  Bytes jpg = data::read_file_bytes(t.image("jpg_cut"));
  write_raw(t.image("jpg_cut"), Bytes(jpg.begin(), jpg.begin() + jpg.size() - 30));
  write_raw(t.image("jpg_zero"), {});
  Bytes png = data::read_file_bytes(t.mask("png_cut"));
  write_raw(t.mask("png_cut"), Bytes(png.begin(), png.end() - 12));  // no IEND
  write_raw(t.mask("png_zero"), {});
  Bytes flipped = png;
  flipped[png.size() - 20] ^= 0x04;  // inside IDAT
  write_raw(t.mask("png_flip"), flipped);
  write_raw(t.mask("bad_value"), palette_mask_png(rect_mask(20, 24, 21)));  // 21: no VOC class
  Tensor odd = Tensor::zeros({20, 24, 3}, DType::u8);
  odd.data<uint8_t>()[0] = 1;
  data::write_png(t.mask("bad_colour"), odd);
  t.list("train", "jpg_cut\njpg_zero\npng_cut\npng_zero\npng_flip\nbad_value\nbad_colour\n");

  data::VocDataset ds({.root = t.root.string(), .split = "train"});
  REQUIRE(ds.size() == 7);
  check_error([&] { ds.get(0); }, t.image("jpg_cut"), "JPEG");
  check_error([&] { ds.get(1); }, t.image("jpg_zero"), "empty file (0 bytes)");
  check_error([&] { ds.get(2); }, t.mask("png_cut"), "truncated PNG");
  check_error([&] { ds.get(3); }, t.mask("png_zero"), "empty file (0 bytes)");
  check_error([&] { ds.get(4); }, t.mask("png_flip"), "CRC mismatch");
  check_error([&] { ds.get(5); }, t.mask("bad_value"), "has value 21, not a class (0..20) nor 255");
  check_error([&] { ds.get(6); }, t.mask("bad_colour"), "not in the VOC colormap");
}

TEST_CASE("voc: class_names.txt sets the classes") {
  VocTree t;
  t.add("a", 20, 24, 2);
  t.list("train", "a\n");
  write_text((t.root / "class_names.txt").string(), "background\ncat\ndog\n");
  data::VocDataset ds({.root = t.root.string(), .split = "train"});
  CHECK(ds.num_classes() == 3);
  CHECK(ds.class_names()[2] == "dog");
  CHECK(ds.get(0).mask.data<uint8_t>()[3 * 24 + 5] == 2);
  write_raw(t.mask("a"), palette_mask_png(rect_mask(20, 24, 3)));
  check_error([&] { ds.get(0); }, t.mask("a"), "has value 3, not a class (0..2)");
}
