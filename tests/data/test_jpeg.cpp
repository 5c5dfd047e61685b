// JPEG decoding through libjpeg-turbo (data/image.cpp): the pixels agree with
// stb_image's, which decoded JPEGs before (issue 12: stb_image's JPEG decoder
// crashed under fuzzing); the kinds of JPEG stb_image_write cannot make
// (true grayscale, CMYK, progressive) come out as RGB; and damaged files --
// cut short, or with corrupt entropy-coded data, which libjpeg only warns
// about and would decode into partly made-up pixels -- are refused with an
// error naming the file. The special files are written here with libjpeg's
// encoder.
#include <cstdio>  // before jpeglib.h
#include <cstring>
#include <doctest/doctest.h>
#include <jpeglib.h>
#include <stb/stb_image.h>

#include <vector>

#include "data/image.h"
#include "tests/data/image_test_util.h"
#include "tests/data/libjpeg_encode.h"

using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace data = bonsai::data;
using namespace bonsai::testing;

namespace {

using Encode = LibjpegEncode;

// stb_image's decode of `jpg` as RGB, the decoder bonsai used before.
Tensor stb_decode(const Bytes& jpg) {
  int w = 0, h = 0, c = 0;
  stbi_uc* px = stbi_load_from_memory(jpg.data(), static_cast<int>(jpg.size()), &w, &h, &c, 3);
  REQUIRE(px != nullptr);
  Tensor t = Tensor::empty({h, w, 3}, DType::u8);
  std::memcpy(t.raw(), px, t.nbytes());
  stbi_image_free(px);
  return t;
}

// A smooth RGB test picture with some texture, h x w.
Tensor textured_image(int64_t h, int64_t w) {
  Tensor t = gradient_image(h, w);
  uint8_t* p = t.data<uint8_t>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<uint8_t>(p[i] + ((i * 7) % 23));
  return t;
}

size_t marker_at(const Bytes& jpg, uint8_t code) {
  for (size_t i = 2; i + 1 < jpg.size(); ++i)
    if (jpg[i] == 0xFF && jpg[i + 1] == code) return i;
  FAIL("marker not found");
  return 0;
}

}  // namespace

TEST_CASE("image: JPEG decodes to stb_image's pixels within JPEG rounding (4:4:4 and 4:2:0)") {
  // stb_image_write writes 4:4:4 at quality > 90 and 4:2:0 below.
  for (int quality : {95, 75}) {
    CAPTURE(quality);
    Tensor img = textured_image(37, 53);  // not a multiple of the 8/16-pixel blocks
    Bytes jpg = data::encode_jpeg(img, {.quality = quality});
    Tensor ours = data::decode_image_memory(jpg.data(), jpg.size(), "q.jpg");
    REQUIRE(ours.shape() == Shape{37, 53, 3});
    Tensor stb = stb_decode(jpg);
    AbsError vs_stb = abs_error(ours.data<uint8_t>(), stb.data<uint8_t>(), ours.numel());
    AbsError vs_src = abs_error(ours.data<uint8_t>(), img.data<uint8_t>(), ours.numel());
    CAPTURE(vs_stb.mean);
    CAPTURE(vs_stb.max);
    CAPTURE(vs_src.mean);
    // Measured (libjpeg-turbo 2.1.5 vs stb_image 2.27): 4:4:4 mean 0.016,
    // 4:2:0 mean 0.11, max 2 for both (IDCT and chroma-upsampling rounding).
    // The loss against the source is the encoder's (the texture is hard).
    CHECK(vs_stb.mean < 0.25);
    CHECK(vs_stb.max <= 3);
    CHECK(vs_src.mean < (quality > 90 ? 4.0 : 8.0));
  }
}

TEST_CASE("image: JPEG a true grayscale JPEG decodes to RGB with R = G = B") {
  const int w = 24, h = 16;
  std::vector<uint8_t> gray(w * h);
  for (int i = 0; i < w * h; ++i) gray[i] = static_cast<uint8_t>(10 * (i % w) + i / w);
  Bytes jpg = libjpeg_encode(gray.data(), w, h, {.in = JCS_GRAYSCALE, .quality = 100});
  Tensor t = data::decode_image_memory(jpg.data(), jpg.size(), "gray.jpg");
  REQUIRE(t.shape() == Shape{h, w, 3});
  int worst = 0;
  for (int i = 0; i < w * h; ++i) {
    const uint8_t* p = t.data<uint8_t>() + 3 * i;
    CHECK(p[0] == p[1]);
    CHECK(p[1] == p[2]);
    worst = std::max(worst, std::abs(int{p[0]} - int{gray[i]}));
  }
  CHECK(worst <= 2);
  CHECK(data::read_image_info_memory(jpg.data(), jpg.size(), "gray.jpg").channels == 1);
}

TEST_CASE("image: JPEG CMYK (Adobe, stored inverted) decodes to R = C * K / 255, as stb_image did") {
  // Four flat quadrants, so JPEG's loss is small and the colour is known.
  const int w = 32, h = 32;
  const uint8_t quadrant[4][4] = {{255, 255, 255, 255},   // white
                                  {255, 128, 255, 200},   // -> (200, 100, 200)
                                  {0, 255, 255, 255},     // -> (0, 255, 255)
                                  {255, 255, 255, 0}};    // -> black
  std::vector<uint8_t> cmyk(w * h * 4);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) std::memcpy(&cmyk[(y * w + x) * 4], quadrant[(y / 16) * 2 + x / 16], 4);
  Bytes jpg = libjpeg_encode(cmyk.data(), w, h, {.in = JCS_CMYK, .quality = 100});
  Tensor t = data::decode_image_memory(jpg.data(), jpg.size(), "cmyk.jpg");
  REQUIRE(t.shape() == Shape{h, w, 3});
  const int want[4][3] = {{255, 255, 255}, {200, 100, 200}, {0, 255, 255}, {0, 0, 0}};
  for (int q = 0; q < 4; ++q) {
    const int y = (q / 2) * 16 + 8, x = (q % 2) * 16 + 8;  // a quadrant's centre
    const uint8_t* p = t.data<uint8_t>() + (y * w + x) * 3;
    CAPTURE(q);
    for (int k = 0; k < 3; ++k) CHECK(std::abs(int{p[k]} - want[q][k]) <= 3);
  }
  // stb_image converted CMYK the same way.
  AbsError vs_stb = abs_error(t.data<uint8_t>(), stb_decode(jpg).data<uint8_t>(), t.numel());
  CHECK(vs_stb.max <= 3);
  CHECK(data::read_image_info_memory(jpg.data(), jpg.size(), "cmyk.jpg").channels == 3);
}

TEST_CASE("image: JPEG progressive decodes like baseline; more than 500 scans are refused") {
  Tensor img = textured_image(20, 28);
  Encode base{.quality = 90};
  Bytes seq = libjpeg_encode(img.data<uint8_t>(), 28, 20, base);
  Encode prog = base;
  prog.progressive = true;
  Bytes pro = libjpeg_encode(img.data<uint8_t>(), 28, 20, prog);
  REQUIRE(pro[marker_at(pro, 0xC2) + 1] == 0xC2);  // SOF2: progressive
  Tensor a = data::decode_image_memory(seq.data(), seq.size(), "seq.jpg");
  Tensor b = data::decode_image_memory(pro.data(), pro.size(), "prog.jpg");
  // The same coefficients, scanned in a different order.
  CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);

  // A valid progressive script: DC, then every AC coefficient of every
  // component on its own, first at point transform `al`, then refined bit
  // by bit: 1 + 3 * 63 * (al + 1) scans (379 for al 1, 568 for al 2).
  auto script = [](int al) {
    std::vector<jpeg_scan_info> s;
    s.push_back({3, {0, 1, 2, 0}, 0, 0, 0, 0});
    for (int comp = 0; comp < 3; ++comp)
      for (int k = 1; k <= 63; ++k) {
        s.push_back({1, {comp, 0, 0, 0}, k, k, 0, al});
        for (int bit = al; bit > 0; --bit) s.push_back({1, {comp, 0, 0, 0}, k, k, bit, bit - 1});
      }
    return s;
  };
  Encode many = base;
  many.scans = script(1);
  Bytes ok = libjpeg_encode(img.data<uint8_t>(), 28, 20, many);
  Tensor c = data::decode_image_memory(ok.data(), ok.size(), "379-scans.jpg");
  CHECK(abs_error(c.data<uint8_t>(), a.data<uint8_t>(), c.numel()).max <= 1);
  many.scans = script(2);
  Bytes bomb = libjpeg_encode(img.data<uint8_t>(), 28, 20, many);
  check_error([&] { data::decode_image_memory(bomb.data(), bomb.size(), "568-scans.jpg"); },
              "568-scans.jpg", "progressive JPEG with more than 500 scans");
}

TEST_CASE("image: JPEG progressive needing more than 1 GiB of decoder memory is refused before allocating") {
  // A small progressive 4:4:4 file whose frame header is patched to claim
  // 16000 x 16000 (2^27.9 pixels, under kMaxImagePixels): libjpeg would need
  // 16000^2 * 3 components * 2 bytes = 1.4 GiB of coefficients.
  Tensor img = textured_image(16, 16);
  Bytes jpg = libjpeg_encode(img.data<uint8_t>(), 16, 16, {.progressive = true});
  const size_t sof = marker_at(jpg, 0xC2);
  for (size_t at : {sof + 5, sof + 7}) {
    jpg[at] = 16000 >> 8;
    jpg[at + 1] = 16000 & 0xFF;
  }
  check_error([&] { data::decode_image_memory(jpg.data(), jpg.size(), "big-progressive.jpg"); },
              "big-progressive.jpg", "more than 1024 MiB of working memory");
  // The header alone is fine.
  CHECK(data::read_image_info_memory(jpg.data(), jpg.size(), "big-progressive.jpg").width == 16000);
}

TEST_CASE("image: JPEG cut short anywhere is refused, naming the file and libjpeg's reason") {
  TempDir dir;
  Bytes jpg = data::encode_jpeg(textured_image(40, 48), {.quality = 90});
  const size_t sos = marker_at(jpg, 0xDA);
  // Inside the scan (libjpeg: "premature end of data segment" or "Premature
  // end of JPEG file", and it would fill the rest with gray), and just
  // before the EOI marker (every pixel decoded, the end missing).
  for (size_t cut : {sos + 20, (sos + jpg.size()) / 2, jpg.size() - 10, jpg.size() - 2, jpg.size() - 1}) {
    CAPTURE(cut);
    const std::string p = dir.file("cut_" + std::to_string(cut) + ".jpg");
    write_raw(p, Bytes(jpg.begin(), jpg.begin() + static_cast<long>(cut)));
    std::string msg = error_of([&] { data::decode_image(p); });
    CAPTURE(msg);
    CHECK(contains(msg, p));
    CHECK(contains(msg, "cannot decode JPEG: "));
    CHECK((contains(msg, "Premature end of JPEG file") || contains(msg, "premature end of data segment")));
  }
  // Cut inside the headers: the header cannot be read.
  const std::string head = dir.file("head.jpg");
  write_raw(head, Bytes(jpg.begin(), jpg.begin() + static_cast<long>(sos)));
  check_error([&] { data::decode_image(head); }, head, "cannot read the JPEG header");
  check_error([&] { data::read_image_info(head); }, head, "cannot read the JPEG header");
}

TEST_CASE("image: JPEG stray bytes just before the end marker decode (as in real photos); elsewhere they are refused") {
  TempDir dir;
  for (bool progressive : {false, true}) {
    CAPTURE(progressive);
    const Tensor img = textured_image(40, 48);
    Bytes jpg = libjpeg_encode(img.data<uint8_t>(), 48, 40, {.progressive = progressive});
    const Tensor clean = data::decode_image_memory(jpg.data(), jpg.size(), "clean.jpg");
    // 240 bytes between the last scan and EOI (libjpeg: "Corrupt JPEG data:
    // 240 extraneous bytes before marker 0xd9"): the same pixels.
    Bytes tail = jpg;
    const size_t eoi = tail.size() - 2;
    REQUIRE((tail[eoi] == 0xFF && tail[eoi + 1] == 0xD9));
    tail.insert(tail.begin() + static_cast<long>(eoi), 240, 0x5A);
    const Tensor decoded = data::decode_image_memory(tail.data(), tail.size(), "tail.jpg");
    REQUIRE(decoded.shape() == clean.shape());
    CHECK(std::memcmp(decoded.raw(), clean.raw(), clean.nbytes()) == 0);
    // The same bytes before the first scan's header: refused.
    Bytes head = jpg;
    const size_t sos = marker_at(head, 0xDA);
    head.insert(head.begin() + static_cast<long>(sos), 240, 0x5A);
    const std::string p = dir.file(progressive ? "head_p.jpg" : "head.jpg");
    write_raw(p, head);
    check_error([&] { data::decode_image(p); }, p, "extraneous bytes before marker 0xda");
  }
}

TEST_CASE("image: JPEG with corrupt entropy-coded data is refused, naming the file") {
  TempDir dir;
  Bytes jpg = data::encode_jpeg(textured_image(64, 64), {.quality = 90});
  const size_t sos = marker_at(jpg, 0xDA);
  const size_t data_start = sos + 2 + (size_t{jpg[sos + 2]} << 8 | jpg[sos + 3]);
  const size_t mid = (data_start + jpg.size()) / 2;
  REQUIRE(jpg.size() - 2 - data_start > 64);
  // 1. A run of 1 bits (0xFF stuffed as FF 00) in the middle of the scan:
  //    no Huffman code is all ones, libjpeg warns "bad Huffman code" and
  //    would carry on with zeros.
  Bytes ones = jpg;
  for (size_t i = mid; i < mid + 16; i += 2) {
    ones[i] = 0xFF;
    ones[i + 1] = 0x00;
  }
  const std::string a = dir.file("bad_huffman.jpg");
  write_raw(a, ones);
  check_error([&] { data::decode_image(a); }, a, "cannot decode JPEG: Corrupt JPEG data");
  // 2. An EOI marker in the middle of the scan: the scan ends early
  //    ("premature end of data segment"), the rest would be gray.
  Bytes early = jpg;
  early[mid] = 0xFF;
  early[mid + 1] = 0xD9;
  const std::string b = dir.file("early_eoi.jpg");
  write_raw(b, early);
  check_error([&] { data::decode_image(b); }, b, "cannot decode JPEG: Corrupt JPEG data");
  // 3. Zeros over a stretch of the scan: decodes to fewer or more bits than
  //    the scan holds; either way libjpeg warns (premature end, or bytes
  //    left before the EOI marker).
  Bytes zeros = jpg;
  std::fill(zeros.begin() + static_cast<long>(data_start) + 4, zeros.begin() + static_cast<long>(mid), 0);
  const std::string z = dir.file("zeros.jpg");
  write_raw(z, zeros);
  check_error([&] { data::decode_image(z); }, z, "Corrupt JPEG data");
}

// Finding 8 of docs/reliability.md: fuzz/fuzz_image's input (byte 0 picks
// image or mask, the rest is the file) that made stb_image's JPEG Huffman
// decoder read freed or wild memory. It is a damaged JPEG: libjpeg warns
// about stray bytes before the frame header, which bonsai refuses.
TEST_CASE("image: JPEG the stb_image crash input (fuzz finding 8) is refused cleanly") {
  Bytes in = data::read_file_bytes(std::string(BONSAI_SOURCE_ROOT) +
                                   "/fuzz/findings/image-stb-jpeg-huff-decode-segv");
  REQUIRE(in.size() > 1);
  std::string msg = error_of([&] { data::decode_image_memory(in.data() + 1, in.size() - 1, "finding-8.jpg"); });
  CAPTURE(msg);
  CHECK(contains(msg, "image 'finding-8.jpg': cannot read the JPEG header: Corrupt JPEG data"));
}
