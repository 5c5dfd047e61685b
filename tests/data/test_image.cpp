// Image files: JPEG/PNG round trips, the VOC colormap, masks in every form
// the loaders meet (hand-built palette PNGs as VOC ships them, gray index
// PNGs as SBD ships them, our RGB colormap PNGs), and every kind of broken
// file — each must throw bonsai::Error naming the file, never crash.
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cmath>
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "data/image.h"
#include "tests/data/image_test_util.h"

namespace fs = std::filesystem;
using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace data = bonsai::data;

using namespace bonsai::testing;

namespace {

// Byte offset of the first JPEG marker 0xFF `code` (SOF0 = 0xC0, SOS = 0xDA).
size_t find_marker(const Bytes& jpg, uint8_t code) {
  for (size_t i = 2; i + 1 < jpg.size(); ++i)
    if (jpg[i] == 0xFF && jpg[i + 1] == code) return i;
  FAIL("marker not found");
  return 0;
}

}  // namespace

TEST_CASE("image: the VOC colormap and its inverse") {
  auto eq = [](std::array<uint8_t, 3> c, int r, int g, int b) { return c[0] == r && c[1] == g && c[2] == b; };
  CHECK(eq(data::voc_color(0), 0, 0, 0));           // background
  CHECK(eq(data::voc_color(1), 128, 0, 0));         // aeroplane
  CHECK(eq(data::voc_color(2), 0, 128, 0));         // bicycle
  CHECK(eq(data::voc_color(15), 192, 128, 128));    // person
  CHECK(eq(data::voc_color(20), 0, 64, 128));       // tvmonitor
  CHECK(eq(data::voc_color(255), 224, 224, 192));   // void / boundary
  std::set<int> colours;
  for (int i = 0; i < 256; ++i) {
    auto c = data::voc_color(i);
    colours.insert((c[0] << 16) | (c[1] << 8) | c[2]);
    CHECK(data::voc_index(c[0], c[1], c[2]) == i);
  }
  CHECK(colours.size() == 256);  // a bijection
  CHECK(data::voc_index(1, 2, 3) == -1);
  CHECK(data::voc_index(255, 255, 255) == -1);
  CHECK(data::voc_index(128, 0, 1) == -1);  // a low bit set
  CHECK_THROWS_AS(data::voc_color(256), bonsai::Error);
}

TEST_CASE("image: JPEG round trips within JPEG error, gray becomes RGB") {
  TempDir dir;
  Tensor img = gradient_image(30, 40);
  data::write_jpeg(dir.file("a.jpg"), img, {.quality = 95});
  Tensor back = data::decode_image(dir.file("a.jpg"));
  REQUIRE(back.shape() == Shape{30, 40, 3});
  REQUIRE(back.dtype() == DType::u8);
  double sum = 0;
  int worst = 0;
  for (int64_t i = 0; i < img.numel(); ++i) {
    int d = std::abs(int(img.data<uint8_t>()[i]) - int(back.data<uint8_t>()[i]));
    sum += d;
    worst = std::max(worst, d);
  }
  // A smooth image at quality 95 without chroma subsampling: errors of a few
  // levels (measured with this stb: mean 0.53, max 2).
  CHECK(sum / img.numel() < 1.0);
  CHECK(worst <= 4);

  // A gray [H, W] source: stb_image_write stores YCbCr with neutral chroma,
  // which decodes to R = G = B exactly.
  Tensor gray = Tensor::empty({16, 24}, DType::u8);
  for (int64_t i = 0; i < gray.numel(); ++i) gray.data<uint8_t>()[i] = static_cast<uint8_t>(10 * (i % 24));
  data::write_jpeg(dir.file("g.jpg"), gray);
  Tensor g = data::decode_image(dir.file("g.jpg"));
  REQUIRE(g.shape() == Shape{16, 24, 3});
  for (int64_t i = 0; i < 16 * 24; ++i) {
    const uint8_t* p = g.data<uint8_t>() + 3 * i;
    CHECK(p[0] == p[1]);
    CHECK(p[1] == p[2]);
  }
  CHECK(data::read_image_info(dir.file("a.jpg")).width == 40);

  CHECK_THROWS_AS(data::encode_jpeg(img, {.quality = 0}), bonsai::Error);
  CHECK_THROWS_AS(data::encode_jpeg(Tensor::zeros({4, 4, 3}), {}), bonsai::Error);  // f32
  CHECK_THROWS_AS(data::encode_jpeg(Tensor::empty({4, 4, 2}, DType::u8), {}), bonsai::Error);
}

TEST_CASE("image: PNG round trips exactly, RGB and gray") {
  TempDir dir;
  std::mt19937 rng(3);
  Tensor img = Tensor::empty({13, 17, 3}, DType::u8);
  for (int64_t i = 0; i < img.numel(); ++i) img.data<uint8_t>()[i] = static_cast<uint8_t>(rng());
  data::write_png(dir.file("rgb.png"), img);
  Tensor back = data::decode_image(dir.file("rgb.png"));
  REQUIRE(back.shape() == img.shape());
  CHECK(std::memcmp(back.raw(), img.raw(), img.nbytes()) == 0);

  Tensor gray = Tensor::empty({5, 7, 1}, DType::u8);
  for (int64_t i = 0; i < gray.numel(); ++i) gray.data<uint8_t>()[i] = static_cast<uint8_t>(rng());
  data::write_png(dir.file("gray.png"), gray);
  Tensor g = data::decode_image(dir.file("gray.png"));
  REQUIRE(g.shape() == Shape{5, 7, 3});
  for (int64_t i = 0; i < 35; ++i)
    for (int c = 0; c < 3; ++c) CHECK(g.data<uint8_t>()[3 * i + c] == gray.data<uint8_t>()[i]);
  // A gray PNG read as a mask: the values are the indices.
  Tensor m = data::decode_mask(dir.file("gray.png"));
  REQUIRE(m.shape() == Shape{5, 7});
  CHECK(std::memcmp(m.raw(), gray.raw(), 35) == 0);
}

TEST_CASE("image: writes are atomic and leave no temporary files") {
  TempDir dir;
  const std::string p = dir.file("x.png");
  data::write_png(p, Tensor::empty({2, 2, 3}, DType::u8));
  Tensor big = gradient_image(8, 9);
  data::write_png(p, big);  // over an existing file
  CHECK(data::decode_image(p).shape() == Shape{8, 9, 3});
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
  // Into a folder that does not exist: an error naming the file, nothing left.
  const std::string bad = dir.file("no_such_dir/y.jpg");
  check_error([&] { data::write_jpeg(bad, big); }, bad, "cannot create temporary file");
  CHECK_FALSE(fs::exists(dir.path / "no_such_dir"));
}

TEST_CASE("image: masks — hand-made palette PNG with VOC colours and 255 boundaries") {
  TempDir dir;
  // 12 x 9: classes 0..20 in a pattern, a 255 band between them, as in VOC.
  const int w = 12, h = 9;
  Bytes idx(w * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) idx[static_cast<size_t>(y * w + x)] = (x % 4 == 3) ? 255 : static_cast<uint8_t>((x / 4 * 9 + y) % 21);
  const std::string p8 = dir.file("2007_000032.png");
  write_raw(p8, make_png(w, h, 8, 3, idx, voc_palette()));
  Tensor m = data::decode_mask(p8);
  REQUIRE(m.shape() == Shape{h, w});
  CHECK(std::memcmp(m.raw(), idx.data(), idx.size()) == 0);

  // A 4-bit palette (a re-saved mask with few colours): only the first 16
  // palette entries are addressable, which is all a 0..15 mask needs.
  Bytes small(w * h);
  for (size_t i = 0; i < small.size(); ++i) small[i] = static_cast<uint8_t>(i % 16);
  std::vector<std::array<uint8_t, 3>> pal16 = voc_palette();
  pal16.resize(16);
  const std::string p4 = dir.file("four_bit.png");
  write_raw(p4, make_png(w, h, 4, 3, small, pal16));
  Tensor m4 = data::decode_mask(p4);
  CHECK(std::memcmp(m4.raw(), small.data(), small.size()) == 0);

  // Gray index PNGs (SBD's SegmentationClassAug): 8-bit, and 4-bit, which
  // stb_image scales up by 17 and decode_mask must scale back.
  const std::string g8 = dir.file("gray8.png");
  write_raw(g8, make_png(w, h, 8, 0, idx));
  Tensor mg = data::decode_mask(g8);
  CHECK(std::memcmp(mg.raw(), idx.data(), idx.size()) == 0);
  const std::string g4 = dir.file("gray4.png");
  write_raw(g4, make_png(w, h, 4, 0, small));
  Tensor mg4 = data::decode_mask(g4);
  CHECK(std::memcmp(mg4.raw(), small.data(), small.size()) == 0);

  // Our own RGB colormap PNGs, every index 0..255.
  Tensor all = Tensor::empty({16, 16}, DType::u8);
  for (int i = 0; i < 256; ++i) all.data<uint8_t>()[i] = static_cast<uint8_t>(i);
  const std::string rgb = dir.file("rgb_mask.png");
  data::write_mask_png(rgb, all);
  CHECK(data::read_image_info(rgb).channels == 3);
  Tensor back = data::decode_mask(rgb);
  CHECK(std::memcmp(back.raw(), all.raw(), 256) == 0);
  // And the image decoder sees the colours.
  Tensor colours = data::decode_image(rgb);
  CHECK(colours.data<uint8_t>()[255 * 3 + 0] == 224);
  CHECK(colours.data<uint8_t>()[255 * 3 + 2] == 192);
}

TEST_CASE("image: masks that are not VOC colours, JPEG masks and 16-bit masks are refused") {
  TempDir dir;
  Tensor rgb = Tensor::zeros({4, 5, 3}, DType::u8);
  rgb.data<uint8_t>()[(2 * 5 + 3) * 3 + 0] = 7;  // row 2, column 3: (7, 0, 0)
  const std::string odd = dir.file("odd_colour.png");
  data::write_png(odd, rgb);
  check_error([&] { data::decode_mask(odd); }, odd, "(row 2, column 3) has colour (7, 0, 0)");

  const std::string jpg = dir.file("mask.jpg");
  data::write_jpeg(jpg, gradient_image(8, 8));
  check_error([&] { data::decode_mask(jpg); }, jpg, "masks must be PNG");

  const std::string p16 = dir.file("sixteen.png");
  write_raw(p16, make_png(4, 3, 16, 0, Bytes(12, 1)));
  check_error([&] { data::decode_mask(p16); }, p16, "16-bit");
}

TEST_CASE("image: missing, empty, directory and non-image files name the file") {
  TempDir dir;
  const std::string missing = dir.file("missing.jpg");
  check_error([&] { data::decode_image(missing); }, missing, "No such file");
  check_error([&] { data::decode_mask(missing); }, missing, "No such file");
  const std::string empty = dir.file("empty.jpg");
  write_raw(empty, {});
  check_error([&] { data::decode_image(empty); }, empty, "empty file (0 bytes)");
  check_error([&] { data::decode_mask(empty); }, empty, "empty file (0 bytes)");
  check_error([&] { data::decode_image(dir.path.string()); }, dir.path.string(), "is a directory");
  const std::string text = dir.file("notes.png");
  write_raw(text, Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  check_error([&] { data::decode_image(text); }, text, "cannot read the image header");
}

// Found by fuzz/fuzz_image (the CI smoke run, docs/reliability.md): a PGM
// ("P5") header with 16-bit samples and too little data crashed Debian's
// libstb (SEGV inside stbi_load_from_memory). Only JPEG and PNG reach
// stb_image now; a valid PPM, which used to decode, is refused the same way.
TEST_CASE("image: formats other than JPEG and PNG never reach stb_image") {
  TempDir dir;
  const std::string crash = dir.file("crash.jpg");
  const std::string bytes = "P552\r\r552\r\r\r\r\r\r\r\r\r19849Q";
  write_raw(crash, Bytes(bytes.begin(), bytes.end()));
  check_error([&] { data::decode_image(crash); }, crash, "not a JPEG or PNG file");
  check_error([&] { data::decode_mask(crash); }, crash, "not a JPEG or PNG file");
  const std::string ppm = dir.file("one.ppm");
  write_raw(ppm, Bytes{'P', '6', ' ', '1', ' ', '1', ' ', '2', '5', '5', '\n', 10, 20, 30});
  check_error([&] { data::decode_image(ppm); }, ppm, "not a JPEG or PNG file");
  check_error([&] { data::read_image_info(ppm); }, ppm, "not a JPEG or PNG file");
}

TEST_CASE("image: truncated and corrupt JPEGs name the file") {
  TempDir dir;
  Bytes jpg = data::encode_jpeg(gradient_image(24, 32), {.quality = 90});
  REQUIRE(jpg.size() > 200);
  const size_t sos = find_marker(jpg, 0xDA);
  // Cut in the header, in the middle of the scan, and just before EOI.
  for (size_t cut : {size_t{2}, size_t{20}, sos + 2, (sos + jpg.size()) / 2, jpg.size() - 2}) {
    CAPTURE(cut);
    const std::string p = dir.file("cut_" + std::to_string(cut) + ".jpg");
    write_raw(p, Bytes(jpg.begin(), jpg.begin() + static_cast<long>(cut)));
    check_error([&] { data::decode_image(p); }, p, "JPEG");
  }
  // Garbage after the SOI marker.
  Bytes garbage = {0xFF, 0xD8, 0xFF};
  for (int i = 0; i < 200; ++i) garbage.push_back(static_cast<uint8_t>(i * 37));
  const std::string g = dir.file("garbage.jpg");
  write_raw(g, garbage);
  check_error([&] { data::decode_image(g); }, g, "JPEG");
  // A frame header announcing 7 components.
  Bytes bad_sof = jpg;
  bad_sof[find_marker(jpg, 0xC0) + 9] = 7;
  const std::string s = dir.file("bad_sof.jpg");
  write_raw(s, bad_sof);
  check_error([&] { data::decode_image(s); }, s, "JPEG");
}

TEST_CASE("image: truncated and corrupt PNGs name the file (CRCs are checked)") {
  TempDir dir;
  std::mt19937 rng(5);
  Tensor img = Tensor::empty({10, 12, 3}, DType::u8);
  for (int64_t i = 0; i < img.numel(); ++i) img.data<uint8_t>()[i] = static_cast<uint8_t>(rng() % 64);
  Bytes png = data::encode_png(img);
  REQUIRE(png.size() > 60);
  // Missing only IEND, cut inside IDAT, cut inside IHDR, only the signature.
  for (size_t cut : {png.size() - 12, png.size() - 1, png.size() / 2, size_t{20}, size_t{8}}) {
    CAPTURE(cut);
    const std::string p = dir.file("cut_" + std::to_string(cut) + ".png");
    write_raw(p, Bytes(png.begin(), png.begin() + static_cast<long>(cut)));
    check_error([&] { data::decode_image(p); }, p, "truncated PNG");
    check_error([&] { data::decode_mask(p); }, p, "truncated PNG");
  }
  // A flipped bit inside the compressed pixels: stb_image alone would often
  // decode it to wrong pixels; the CRC catches it.
  Bytes flipped = png;
  flipped[png.size() / 2] ^= 0x10;
  const std::string f = dir.file("flipped.png");
  write_raw(f, flipped);
  check_error([&] { data::decode_image(f); }, f, "CRC mismatch in chunk 'IDAT'");
  // A bad CRC in the header chunk.
  Bytes bad_ihdr = png;
  bad_ihdr[29] ^= 0x01;
  const std::string h = dir.file("bad_ihdr.png");
  write_raw(h, bad_ihdr);
  check_error([&] { data::decode_image(h); }, h, "CRC mismatch in chunk 'IHDR'");
}

TEST_CASE("image: absurd dimensions are refused before decoding") {
  TempDir dir;
  // A valid PNG structure claiming 100000 x 100000 pixels with one tiny IDAT.
  Bytes png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  Bytes ihdr;
  put_be32(ihdr, 100000);
  put_be32(ihdr, 100000);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", {0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01});
  put_chunk(png, "IEND", {});
  const std::string p = dir.file("huge.png");
  write_raw(p, png);
  check_error([&] { data::decode_image(p); }, p, "refusing a 100000x100000 image");
  // A JPEG whose frame header claims 20000 x 20000 (4 * 10^8 pixels: above
  // our 2^28, below what stb_image refuses by itself).
  Bytes jpg = data::encode_jpeg(gradient_image(8, 8));
  size_t sof = find_marker(jpg, 0xC0);
  for (size_t at : {sof + 5, sof + 7}) {
    jpg[at] = 20000 >> 8;
    jpg[at + 1] = 20000 & 0xFF;
  }
  const std::string j = dir.file("huge.jpg");
  write_raw(j, jpg);
  check_error([&] { data::decode_image(j); }, j, "refusing a 20000x20000 image");
}

TEST_CASE("image: every single-byte mutation and truncation decodes or throws bonsai::Error") {
  // Nothing may crash or throw anything else, whatever the damage; errors
  // name the file. Decoded from memory so the loop stays fast.
  Bytes jpg = data::encode_jpeg(gradient_image(16, 16), {.quality = 80});
  Tensor mask = Tensor::empty({8, 8}, DType::u8);
  for (int i = 0; i < 64; ++i) mask.data<uint8_t>()[i] = static_cast<uint8_t>(i % 3 == 0 ? 255 : i % 21);
  TempDir dir;
  data::write_mask_png(dir.file("m.png"), mask);
  Bytes png = data::read_file_bytes(dir.file("m.png"));
  const std::string name = "mutant-file";
  int decoded = 0, errors = 0;
  auto attempt = [&](const Bytes& b, bool as_mask) {
    try {
      Tensor t = as_mask ? data::decode_mask_memory(b.data(), b.size(), name)
                         : data::decode_image_memory(b.data(), b.size(), name);
      CHECK(t.numel() > 0);
      ++decoded;
    } catch (const bonsai::Error& e) {
      CHECK(contains(e.what(), name));
      ++errors;
    }
  };
  for (const Bytes* file : {&jpg, &png}) {
    for (size_t i = 0; i < file->size(); ++i) {
      for (uint8_t v : {uint8_t{0x00}, uint8_t{0xFF}, uint8_t{0x01}}) {
        Bytes m = *file;
        m[i] = v == 0 ? 0 : static_cast<uint8_t>(m[i] ^ v);
        attempt(m, false);
        if (file == &png) attempt(m, true);
      }
      attempt(Bytes(file->begin(), file->begin() + static_cast<long>(i)), file == &png);
    }
  }
  CHECK(decoded > 0);  // JPEG has no checksum: some mutations still decode
  CHECK(errors > 0);
  // Every PNG mutation outside nothing-checked bytes is caught: a PNG decode
  // of a mutated file succeeds only if the mutation left the bytes unchanged.
  int png_decoded = 0;
  for (size_t i = 0; i < png.size(); ++i) {
    Bytes m = png;
    m[i] ^= 0x01;
    try {
      data::decode_mask_memory(m.data(), m.size(), name);
      ++png_decoded;
    } catch (const bonsai::Error&) {
    }
  }
  CHECK(png_decoded == 0);
}

TEST_CASE("image: has_image_extension") {
  CHECK(data::has_image_extension("n01440764_10026.JPEG"));
  CHECK(data::has_image_extension("a.jpg"));
  CHECK(data::has_image_extension("a.Jpeg"));
  CHECK(data::has_image_extension("a.PNG"));
  CHECK_FALSE(data::has_image_extension("LOC_val_solution.csv"));
  CHECK_FALSE(data::has_image_extension("jpg"));
  CHECK_FALSE(data::has_image_extension("a.jpg.txt"));
}
