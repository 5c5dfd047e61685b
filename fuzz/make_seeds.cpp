// Writes the seed corpora in fuzz/corpus/<harness>/ with bonsai's own
// writers, so the seeds are exactly what bonsai produces (and what the
// fuzzers mutate from). Run from the build dir:
//   ./fuzz/make_seeds <source root>/fuzz/corpus
// The config seeds are the files in configs/ (scripts/test_reliability
// copies a few); everything else is made here.
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/io/safetensors.h"
#include "core/io/tensorboard.h"
#include "data/image.h"
#include "fuzz/fuzz_util.h"
#include "quant/int8_model.h"
#include "tests/data/libjpeg_encode.h"

using namespace bonsai;
namespace fs = std::filesystem;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

void put(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  fuzz::write_bytes(path.string(), bytes.data(), bytes.size());
}

std::string str(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }

// JPEG kinds stb_image_write cannot make, written by libjpeg (which bonsai
// decodes with): `components` 1 (gray), 3 (RGB) or 4 (CMYK, stored as Adobe
// does), optionally progressive, with restart markers every `restart` MCUs.
// The pixels are a ramp.
std::string libjpeg_seed(int w, int h, int components, bool progressive, int restart) {
  std::vector<uint8_t> pixels(static_cast<size_t>(w) * h * components);
  const size_t row = static_cast<size_t>(w) * components;
  for (size_t y = 0; y < static_cast<size_t>(h); ++y)
    for (size_t i = 0; i < row; ++i) pixels[y * row + i] = static_cast<uint8_t>(i * 37 + y * 11);
  const std::vector<uint8_t> jpg = bonsai::testing::libjpeg_encode(
      pixels.data(), w, h,
      {.in = components == 1 ? JCS_GRAYSCALE : components == 4 ? JCS_CMYK : JCS_RGB, .quality = 80,
       .subsample = true, .progressive = progressive, .restart_interval = static_cast<unsigned>(restart)});
  return str(jpg);
}

Tensor ramp(const Shape& shape, DType dtype) {
  Tensor t = Tensor::zeros(shape, dtype);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(i * 37 + 11);
  return t;
}

// IDX: magic {0, 0, type, rank}, big-endian u32 extents, data.
std::string idx(uint8_t type, const std::vector<uint32_t>& dims, size_t elem) {
  std::string s = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    for (int k = 3; k >= 0; --k) s.push_back(static_cast<char>(d >> (8 * k)));
    n *= d;
  }
  for (size_t i = 0; i < n * elem; ++i) s.push_back(static_cast<char>(i * 13));
  return s;
}

std::string gzip(const std::string& raw) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(raw.size() + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

quant::Int8Model tiny_int8_model() {
  using quant::Int8OpType;
  auto grid = [](float scale, int zp) {
    quant::AffineQuant q;
    q.scale = scale;
    q.zero_point = zp;
    q.nudged_min = (-128 - zp) * scale;
    q.nudged_max = (127 - zp) * scale;
    return q;
  };
  std::vector<quant::Int8Value> values = {
      {"input_quant", {2, 2, 3}, grid(0.05f, 0)},
      {"conv.output_quant", {2, 2, 4}, grid(0.1f, -10)},
      {"act.output_quant", {2, 2, 4}, grid(0.1f, -128)},
      {"pool.output_quant", {1, 1, 4}, grid(0.1f, -128)},
      {"dense.output_quant", {2}, grid(0.2f, 3)},
  };
  std::vector<quant::Int8Op> ops(5);
  ops[0] = {.type = Int8OpType::quantize, .source = "input_quant", .inputs = {}, .output = 0};
  ops[1] = {.type = Int8OpType::conv, .source = "conv", .inputs = {0}, .output = 1};
  ops[1].weights = ramp({1, 1, 3, 4}, DType::s8);
  ops[1].weight_scales = Tensor::full({4}, 0.01f);
  ops[1].bias = ramp({4}, DType::s32);
  for (int i = 0; i < 4; ++i) ops[1].bias.data<int32_t>()[i] = 10 * i - 15;
  ops[2] = {.type = Int8OpType::lookup, .source = "act", .inputs = {1}, .output = 2};
  ops[2].table = ramp({256}, DType::s8);
  ops[2].function = "relu";
  ops[3] = {.type = Int8OpType::mean, .source = "pool", .inputs = {2}, .output = 3};
  ops[4] = {.type = Int8OpType::fully_connected, .source = "dense", .inputs = {3}, .output = 4};
  ops[4].weights = ramp({4, 2}, DType::s8);
  ops[4].weight_scales = Tensor::full({1}, 0.02f);
  ops[4].bias = Tensor::zeros({2}, DType::s32);
  return quant::Int8Model(values, ops, {"input", {2, 2, 3}, {}}, 4);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_seeds <corpus dir>\n";
    return 2;
  }
  const fs::path out = argv[1];
  const std::string tmp = fuzz::scratch_dir();

  // safetensors: every dtype, metadata, a sparse tensor, and no tensors.
  io::save_safetensors(tmp + "/a", {{"conv.kernel", ramp({1, 1, 2, 3}, DType::f32)},
                                    {"q", ramp({5}, DType::s8)}, {"u", ramp({2, 2}, DType::u8)},
                                    {"i", ramp({3}, DType::s32)}, {"step", ramp({1}, DType::s64)}},
                       {{"step", "12"}});
  put(out / "safetensors/dense.safetensors", read_all(tmp + "/a"));
  Tensor sparse = Tensor::zeros({4, 8});
  sparse.data<float>()[3] = 1.5f;
  sparse.data<float>()[17] = -2.f;
  io::save_safetensors(tmp + "/a", {{"pruned.kernel", sparse}, {"bias", ramp({2}, DType::f32)}}, {},
                       {.sparse = true});
  put(out / "safetensors/sparse.safetensors", read_all(tmp + "/a"));
  io::save_safetensors(tmp + "/a", {}, {{"only", "metadata"}});
  put(out / "safetensors/empty.safetensors", read_all(tmp + "/a"));

  // IDX: raw and gzipped, each element type.
  put(out / "idx/images-u8.idx", idx(0x08, {3, 4, 4}, 1));
  put(out / "idx/labels-u8.idx.gz", gzip(idx(0x08, {6}, 1)));
  put(out / "idx/s32.idx", idx(0x0C, {2, 3}, 4));
  put(out / "idx/f32.idx.gz", gzip(idx(0x0D, {2, 2}, 4)));
  put(out / "idx/s8.idx", idx(0x09, {1, 1, 1, 2, 2}, 1));

  // Images (first byte 0: image, 1: mask), bytes from bonsai's encoders,
  // and JPEG kinds only libjpeg writes (true gray, CMYK, progressive with
  // restart markers), so the fuzzer starts from them too.
  Tensor rgb = ramp({8, 6, 3}, DType::u8), gray = ramp({5, 7}, DType::u8);
  // (The mode byte is std::string(1, 0): a "\x00" literal is an empty string.)
  put(out / "image/rgb.jpg", std::string(1, '\0') + str(data::encode_jpeg(rgb, {.quality = 90})));
  put(out / "image/gray.jpg", std::string(1, '\0') + str(data::encode_jpeg(gray)));
  put(out / "image/rgb.png", std::string(1, '\0') + str(data::encode_png(rgb)));
  put(out / "image/gray.png", std::string(1, '\0') + str(data::encode_png(gray)));
  put(out / "image/gray1.jpg", std::string(1, '\0') + libjpeg_seed(7, 5, 1, false, 0));
  put(out / "image/cmyk.jpg", std::string(1, '\0') + libjpeg_seed(9, 6, 4, false, 0));
  put(out / "image/progressive-restart.jpg", std::string(1, '\0') + libjpeg_seed(20, 18, 3, true, 1));
  Tensor mask = Tensor::zeros({6, 5}, DType::u8);
  for (int i = 0; i < 30; ++i) mask.data<uint8_t>()[i] = i % 3 == 0 ? 255 : i % 21;
  data::write_mask_png(tmp + "/m.png", mask);
  const std::string mask_png = read_all(tmp + "/m.png");
  put(out / "image/mask-voc.png", "\x01" + mask_png);
  put(out / "image/mask-gray.png", "\x01" + str(data::encode_png(mask)));

  // VOC: list, class names, mask bytes (see fuzz_voc.cpp).
  put(out / "voc/ids", "a\nb\n\n--\n\n--\n" + mask_png);
  put(out / "voc/pairs", "/JPEGImages/a.jpg /SegmentationClass/a.png\nb\n\n--\n\n--\n" + mask_png);
  put(out / "voc/classes", "a\n\n--\nbackground\nthing\n\n--\n" + str(data::encode_png(mask)));

  // TensorBoard: a real event file (mode byte 0), and its payloads for the
  // framing mode (mode byte 1: 1-byte length, payload).
  const std::string ev_dir = tmp + "/events";
  fs::remove_all(ev_dir);
  std::string ev_path;
  {
    io::EventWriter w(ev_dir);
    w.scalar("loss", 1, 2.5f);
    w.scalar("learning_rate", 1, 0.1f);
    w.scalar("loss", 2, 1.25f);
    ev_path = w.path();
  }
  const std::string events = read_all(ev_path);
  put(out / "tensorboard/events", std::string(1, '\0') + events);
  std::string payloads = "\x01";
  for (size_t pos = 0; pos + 16 <= events.size();) {
    uint64_t n;
    std::memcpy(&n, events.data() + pos, 8);
    payloads.push_back(static_cast<char>(n));
    payloads += events.substr(pos + 12, n);
    pos += 16 + n;
  }
  put(out / "tensorboard/payloads", payloads);

  // The int8 model file.
  tiny_int8_model().save(tmp + "/m.int8");
  put(out / "int8_model/tiny.int8.safetensors", read_all(tmp + "/m.int8"));

  fs::remove_all(tmp);
  std::cout << "seeds written under " << out.string() << "\n";
  return 0;
}
