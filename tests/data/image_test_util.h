// Test helpers shared by the image, ImageNet, VOC and preparation tests: a
// temporary folder, raw file writing, error checks that the message names the
// file, and a hand-written PNG encoder for what stb_image_write cannot write
// (palette PNGs as VOC ships its masks, low-bit-depth and 16-bit PNGs).
#pragma once

#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cstdint>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "data/image.h"

namespace bonsai::testing {

using Bytes = std::vector<uint8_t>;

// A fresh folder under the system temp dir, removed with everything in it at
// scope exit; pid, counter and randomness keep parallel runs apart.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag = "data") {
    static int counter = 0;
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("bonsai_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) +
            "_" + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

inline void write_raw(const std::string& path, const Bytes& b) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

inline void write_text(const std::string& path, const std::string& s) {
  write_raw(path, Bytes(s.begin(), s.end()));
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The bonsai::Error message fn() throws, or "" if it does not throw.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const bonsai::Error& e) {
    return e.what();
  }
  return "";
}

// fn() must throw bonsai::Error whose message names `name` and contains `what`.
inline void check_error(const std::function<void()>& fn, const std::string& name, const std::string& what) {
  std::string msg = error_of(fn);
  INFO("name: ", name);
  INFO("message: ", msg);
  CHECK_MESSAGE(!msg.empty(), "did not throw");
  CHECK(contains(msg, name));
  CHECK(contains(msg, what));
}

inline void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// One PNG chunk: length, type, payload, CRC-32 of type + payload.
inline void put_chunk(Bytes& png, const char* type, const Bytes& payload) {
  put_be32(png, static_cast<uint32_t>(payload.size()));
  Bytes body(type, type + 4);
  body.insert(body.end(), payload.begin(), payload.end());
  png.insert(png.end(), body.begin(), body.end());
  put_be32(png, static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), body.data(),
                                            static_cast<uInt>(body.size()))));
}

// A PNG of one sample per pixel: colour_type 0 (gray) or 3 (palette, with
// `palette` RGB triples); depth 1/2/4/8 (16 for gray: the value goes in the
// low byte). Filter "none" on every row, one IDAT.
inline Bytes make_png(int w, int h, int depth, int color_type, const Bytes& values,
                      const std::vector<std::array<uint8_t, 3>>& palette = {}) {
  Bytes png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  Bytes ihdr;
  put_be32(ihdr, static_cast<uint32_t>(w));
  put_be32(ihdr, static_cast<uint32_t>(h));
  ihdr.insert(ihdr.end(), {static_cast<uint8_t>(depth), static_cast<uint8_t>(color_type), 0, 0, 0});
  put_chunk(png, "IHDR", ihdr);
  if (color_type == 3) {
    Bytes plte;
    for (const auto& c : palette) plte.insert(plte.end(), c.begin(), c.end());
    put_chunk(png, "PLTE", plte);
  }
  Bytes raw;
  const int row_bytes = (w * depth + 7) / 8;
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter: none
    Bytes row(static_cast<size_t>(row_bytes), 0);
    for (int x = 0; x < w; ++x) {
      int v = values[static_cast<size_t>(y * w + x)];
      if (depth == 16) {  // big-endian samples
        row[static_cast<size_t>(2 * x + 1)] = static_cast<uint8_t>(v);
        continue;
      }
      int bit = x * depth;
      row[static_cast<size_t>(bit / 8)] |= static_cast<uint8_t>(v << (8 - depth - bit % 8));
    }
    raw.insert(raw.end(), row.begin(), row.end());
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  Bytes z(size);
  REQUIRE(compress2(z.data(), &size, raw.data(), static_cast<uLong>(raw.size()), 9) == Z_OK);
  z.resize(size);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", {});
  return png;
}

// The 256 VOC colormap colours, as a PNG palette.
inline std::vector<std::array<uint8_t, 3>> voc_palette() {
  std::vector<std::array<uint8_t, 3>> p;
  for (int i = 0; i < 256; ++i) p.push_back(data::voc_color(i));
  return p;
}

// A VOC-style palette PNG of a u8 [H, W] index mask.
inline Bytes palette_mask_png(const Tensor& mask) {
  Bytes v(mask.data<uint8_t>(), mask.data<uint8_t>() + mask.numel());
  return make_png(static_cast<int>(mask.dim(1)), static_cast<int>(mask.dim(0)), 8, 3, v, voc_palette());
}

// A smooth colour image: JPEG-friendly, so error bounds can be tight.
inline Tensor gradient_image(int64_t h, int64_t w, int shift = 0) {
  Tensor t = Tensor::empty({h, w, 3}, DType::u8);
  uint8_t* p = t.data<uint8_t>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      p[(y * w + x) * 3 + 0] = static_cast<uint8_t>(40 + shift + 150 * x / w);
      p[(y * w + x) * 3 + 1] = static_cast<uint8_t>(200 - 120 * y / h);
      p[(y * w + x) * 3 + 2] = static_cast<uint8_t>(90 + 60 * (x + y) / (w + h));
    }
  return t;
}

// Mean and max absolute difference of two u8 tensors of the same size.
struct AbsError {
  double mean = 0;
  int max = 0;
};
inline AbsError abs_error(const uint8_t* a, const uint8_t* b, int64_t n) {
  AbsError e;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    int d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
    sum += d;
    e.max = d > e.max ? d : e.max;
  }
  e.mean = n ? sum / static_cast<double>(n) : 0.0;
  return e;
}

}  // namespace bonsai::testing
