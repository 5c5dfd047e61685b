// IDX reading: round trips of every element type, raw and gzip; every kind of
// broken or hostile file (each must throw bonsai::Error naming the file, and
// never allocate what the header merely claims); the Fashion-MNIST loader on
// synthetic files and on the real dataset from dataset-fashion-mnist.
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "data/idx.h"

namespace fs = std::filesystem;
using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace data = bonsai::data;

namespace {

using Bytes = std::vector<uint8_t>;

// A fresh directory under the system temp dir, removed with everything in it
// at scope exit. The name mixes pid, a counter and randomness so parallel
// test runs and repeated cases never share files.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    std::random_device rd;
    path = fs::temp_directory_path() / ("bonsai_idx_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter++) + "_" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void put_be32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<uint8_t>(v >> shift));
}

// An IDX file: magic {0, 0, type, rank}, big-endian extents, then `payload`
// verbatim (callers encode multi-byte elements big-endian themselves).
Bytes idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const Bytes& payload) {
  Bytes b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb9");
  REQUIRE(f != nullptr);
  if (!b.empty()) REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

Bytes read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

// The gzip encoding of `b`, as gzwrite produces it.
Bytes gzip_bytes(const TempDir& dir, const Bytes& b) {
  std::string p = dir.file("gzip_scratch");
  write_gz(p, b);
  return read_raw(p);
}

// The bonsai::Error message read_idx throws, or "" if it does not throw.
// Any other exception type escapes and fails the test case.
std::string idx_error(const std::string& path) {
  try {
    data::read_idx(path);
  } catch (const bonsai::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// read_idx(path) must throw bonsai::Error whose message names the file and
// contains `what`.
void check_idx_error(const std::string& path, const std::string& what) {
  std::string msg = idx_error(path);
  INFO("file: ", path);
  INFO("message: ", msg);
  CHECK_MESSAGE(!msg.empty(), "read_idx did not throw");
  CHECK(contains(msg, path));
  CHECK(contains(msg, what));
}

void check_error_names(const std::function<void()>& fn, const std::string& path,
                       const std::string& what) {
  std::string msg;
  try {
    fn();
  } catch (const bonsai::Error& e) {
    msg = e.what();
  }
  INFO("message: ", msg);
  CHECK_MESSAGE(!msg.empty(), "no bonsai::Error thrown");
  CHECK(contains(msg, path));
  CHECK(contains(msg, what));
}

Bytes be32_payload(const std::vector<uint32_t>& words) {
  Bytes b;
  for (uint32_t w : words) put_be32(b, w);
  return b;
}

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Writes a synthetic Fashion-MNIST directory: n_train/n_test images with the
// given extents and labels i % 10 (optionally overridden).
void write_fashion(const TempDir& dir, uint32_t n_train, uint32_t n_test,
                   std::array<uint32_t, 2> hw = {28, 28}, int bad_label_at = -1) {
  auto images = [&](uint32_t n) {
    Bytes px(static_cast<size_t>(n) * hw[0] * hw[1]);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
    return idx_bytes(0x08, {n, hw[0], hw[1]}, px);
  };
  auto labels = [&](uint32_t n, bool train) {
    Bytes y(n);
    for (uint32_t i = 0; i < n; ++i) y[i] = static_cast<uint8_t>(i % 10);
    if (train && bad_label_at >= 0) y[bad_label_at] = 10;
    return idx_bytes(0x08, {n}, y);
  };
  write_gz(dir.file("train-images-idx3-ubyte.gz"), images(n_train));
  write_gz(dir.file("train-labels-idx1-ubyte.gz"), labels(n_train, true));
  write_gz(dir.file("t10k-images-idx3-ubyte.gz"), images(n_test));
  write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), labels(n_test, false));
}

}  // namespace

TEST_CASE("idx: round trip of u8, s8, s32 and f32, raw and gzip") {
  TempDir dir;
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    auto write = [&](const std::string& name, const Bytes& b) {
      std::string p = dir.file(name + (gz ? ".gz" : ""));
      gz ? write_gz(p, b) : write_raw(p, b);
      return p;
    };

    // u8 [2, 3, 4]
    Bytes px(24);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 11);
    Tensor u8 = data::read_idx(write("u8", idx_bytes(0x08, {2, 3, 4}, px)));
    CHECK(u8.dtype() == DType::u8);
    CHECK(u8.shape() == Shape{2, 3, 4});
    CHECK(std::memcmp(u8.data<uint8_t>(), px.data(), px.size()) == 0);

    // s8 [5], negative values survive
    Bytes sb = {0x80, 0xFF, 0x00, 0x01, 0x7F};
    Tensor s8 = data::read_idx(write("s8", idx_bytes(0x09, {5}, sb)));
    CHECK(s8.dtype() == DType::s8);
    CHECK(s8.shape() == Shape{5});
    const int8_t* s8p = s8.data<int8_t>();
    CHECK(s8p[0] == -128);
    CHECK(s8p[1] == -1);
    CHECK(s8p[4] == 127);

    // s32 [3, 2], big-endian on disk
    std::vector<int32_t> ints = {0, 1, -1, 0x12345678, INT32_MIN, INT32_MAX};
    std::vector<uint32_t> words(ints.begin(), ints.end());
    Tensor s32 = data::read_idx(write("s32", idx_bytes(0x0C, {3, 2}, be32_payload(words))));
    CHECK(s32.dtype() == DType::s32);
    CHECK(s32.shape() == Shape{3, 2});
    for (size_t i = 0; i < ints.size(); ++i) CHECK(s32.data<int32_t>()[i] == ints[i]);

    // f32 [1, 2, 1, 2, 2] (rank 5, the maximum), bit-exact including -0 and NaN
    std::vector<float> fl = {0.0f, -0.0f, 1.5f, -2.25f, 3.4e38f, 1e-45f, INFINITY, NAN};
    std::vector<uint32_t> fbits;
    for (float f : fl) fbits.push_back(f32_bits(f));
    Tensor f32 = data::read_idx(write("f32", idx_bytes(0x0D, {1, 2, 1, 2, 2}, be32_payload(fbits))));
    CHECK(f32.dtype() == DType::f32);
    CHECK(f32.shape() == Shape{1, 2, 1, 2, 2});
    for (size_t i = 0; i < fl.size(); ++i) CHECK(f32_bits(f32.data<float>()[i]) == fbits[i]);

    // a zero extent is a valid, empty tensor
    Tensor none = data::read_idx(write("empty", idx_bytes(0x08, {0, 28, 28}, {})));
    CHECK(none.shape() == Shape{0, 28, 28});
    CHECK(none.numel() == 0);
  }
}

TEST_CASE("idx: files larger than the reader's 1 MiB chunks round-trip, raw and gzip") {
  // Random bytes barely compress, so the .gz is also several chunks long and
  // both the input refill and the output growth cross chunk boundaries.
  TempDir dir;
  std::mt19937 rng(3);
  Bytes px(3 * 1000 * 1001);
  for (auto& v : px) v = static_cast<uint8_t>(rng());
  std::vector<uint32_t> words(700001);
  for (auto& w : words) w = static_cast<uint32_t>(rng());
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    std::string pu = dir.file(gz ? "big_u8.gz" : "big_u8");
    std::string ps = dir.file(gz ? "big_s32.gz" : "big_s32");
    Bytes bu = idx_bytes(0x08, {3, 1000, 1001}, px);
    Bytes bs = idx_bytes(0x0C, {700001}, be32_payload(words));
    gz ? write_gz(pu, bu) : write_raw(pu, bu);
    gz ? write_gz(ps, bs) : write_raw(ps, bs);
    if (gz) CHECK(fs::file_size(pu) > 2'000'000);
    Tensor u = data::read_idx(pu);
    CHECK(u.shape() == Shape{3, 1000, 1001});
    CHECK(std::memcmp(u.data<uint8_t>(), px.data(), px.size()) == 0);
    Tensor t = data::read_idx(ps);
    CHECK(t.shape() == Shape{700001});
    bool same = true;
    for (size_t i = 0; i < words.size(); ++i) same &= static_cast<uint32_t>(t.data<int32_t>()[i]) == words[i];
    CHECK(same);
  }
}

TEST_CASE("idx: gzip is detected by content, not by the file name") {
  TempDir dir;
  Bytes b = idx_bytes(0x08, {3}, {7, 8, 9});
  std::string gz_named_plain = dir.file("labels.idx");
  std::string raw_named_gz = dir.file("labels.idx.gz");
  write_gz(gz_named_plain, b);
  write_raw(raw_named_gz, b);
  for (const auto& p : {gz_named_plain, raw_named_gz}) {
    Tensor t = data::read_idx(p);
    CHECK(t.shape() == Shape{3});
    CHECK(t.data<uint8_t>()[2] == 9);
  }
}

TEST_CASE("idx: concatenated gzip members are read as one stream, like gzip(1)") {
  TempDir dir;
  Bytes b = idx_bytes(0x08, {4}, {1, 2, 3, 4});
  Bytes first(b.begin(), b.begin() + 6), second(b.begin() + 6, b.end());
  Bytes cat = gzip_bytes(dir, first);
  Bytes tail = gzip_bytes(dir, second);
  cat.insert(cat.end(), tail.begin(), tail.end());
  std::string p = dir.file("two_members.gz");
  write_raw(p, cat);
  Tensor t = data::read_idx(p);
  CHECK(t.shape() == Shape{4});
  CHECK(t.data<uint8_t>()[3] == 4);
}

TEST_CASE("idx: broken headers throw errors naming the file") {
  TempDir dir;
  auto raw = [&](const std::string& name, const Bytes& b) {
    std::string p = dir.file(name);
    write_raw(p, b);
    return p;
  };

  check_idx_error(dir.file("does_not_exist.idx"), "cannot open");
  check_idx_error(dir.path.string(), "is a directory");

  check_idx_error(raw("empty", {}), "truncated header");
  check_idx_error(raw("three_bytes", {0, 0, 8}), "truncated header");

  check_idx_error(raw("magic_first", {1, 0, 8, 1, 0, 0, 0, 1, 5}), "bad magic");
  check_idx_error(raw("magic_second", {0, 1, 8, 1, 0, 0, 0, 1, 5}), "bad magic");
  check_idx_error(raw("png", {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}), "bad magic");

  check_idx_error(raw("s16", idx_bytes(0x0B, {1}, {0, 1})), "unsupported element type 0x0B");
  check_idx_error(raw("f64", idx_bytes(0x0E, {1}, Bytes(8))), "unsupported element type 0x0E");
  check_idx_error(raw("type07", idx_bytes(0x07, {1}, {0})), "unsupported element type 0x07");

  check_idx_error(raw("rank0", {0, 0, 8, 0}), "rank 0");
  check_idx_error(raw("rank6", idx_bytes(0x08, {1, 1, 1, 1, 1, 1}, {0})), "rank 6");
  check_idx_error(raw("rank255", {0, 0, 8, 255}), "rank 255");

  // rank 3 announces 12 bytes of extents; only 8 follow (and half of a third)
  Bytes cut = idx_bytes(0x08, {60000, 28, 28}, {});
  cut.resize(4 + 8 + 2);
  check_idx_error(raw("short_dims", cut), "truncated header");
}

TEST_CASE("idx: data shorter or longer than the header says throws, raw and gzip") {
  TempDir dir;
  for (bool gz : {false, true}) {
    CAPTURE(gz);
    auto write = [&](const std::string& name, const Bytes& b) {
      std::string p = dir.file(name + (gz ? ".gz" : ""));
      gz ? write_gz(p, b) : write_raw(p, b);
      return p;
    };
    check_idx_error(write("short_u8", idx_bytes(0x08, {10}, Bytes(9))),
                    "expected 10 bytes of data, " + std::string(gz ? "decompressed " : "") +
                        "file has 9");
    check_idx_error(write("short_s32", idx_bytes(0x0C, {3}, Bytes(11))), "expected 12 bytes of data");
    check_idx_error(write("no_data", idx_bytes(0x0D, {2, 2}, {})), "expected 16 bytes of data");
    std::string trailing = write("trailing", idx_bytes(0x08, {10}, Bytes(11)));
    check_idx_error(trailing, "trailing garbage");
    check_idx_error(trailing, "expected 10 bytes of data");
    check_idx_error(write("trailing_f32", idx_bytes(0x0D, {1}, Bytes(5))), "trailing garbage");
  }
}

TEST_CASE("idx: huge claimed sizes are rejected before allocating") {
  TempDir dir;
  auto raw = [&](const std::string& name, const Bytes& b) {
    std::string p = dir.file(name);
    write_raw(p, b);
    return p;
  };
  // 10^10 bytes claimed, 100 present: plain "too short", no 10 GB allocation.
  check_idx_error(raw("1e10", idx_bytes(0x08, {100000, 100000}, Bytes(100))),
                  "expected 10000000000 bytes of data, file has 100");
  // (2^32-1)^5 overflows 64 bits.
  check_idx_error(raw("max5", idx_bytes(0x08, {~0u, ~0u, ~0u, ~0u, ~0u}, Bytes(16))),
                  "more than 2^64 bytes");
  // 4 * (2^32-1)^2 overflows too, through the element size.
  check_idx_error(raw("max2f", idx_bytes(0x0D, {~0u, ~0u}, Bytes(16))), "more than 2^64 bytes");
  // 2^16^4 = 2^64 wraps to exactly 0, which is what the file holds: a naive
  // product would accept this file as an "empty" tensor of absurd shape.
  check_idx_error(raw("wrap_to_zero", idx_bytes(0x08, {65536, 65536, 65536, 65536}, {})),
                  "more than 2^64 bytes");
  // s32: 2^30 * 2^30 * 4 * 4 = 2^64 wraps to 0 as well.
  check_idx_error(raw("wrap_s32", idx_bytes(0x0C, {1u << 30, 1u << 30, 4}, {})),
                  "more than 2^64 bytes");
  // Found by fuzz/fuzz_idx (docs/reliability.md): a zero extent skipped the
  // overflow guard, and the tensor's element count overflowed int64 (UBSan:
  // signed overflow in Shape::numel) before reaching the zero.
  check_idx_error(raw("empty_fuzz", idx_bytes(0x09, {0x250100u, 1u << 30, 1u << 12, 0, 0x11a27}, {})),
                  "more than 2^64 bytes");
  check_idx_error(raw("empty_huge", idx_bytes(0x08, {1u << 20, 1u << 20, 0}, {})),
                  "is empty, but its other extents describe more than the 2 GiB limit");
  // An empty tensor of sane shape still reads.
  {
    Tensor t = data::read_idx(raw("empty_ok", idx_bytes(0x08, {1000, 0, 28}, {})));
    CHECK(t.shape() == Shape{1000, 0, 28});
  }
  // Same claims through gzip.
  std::string gz = dir.file("1e10.gz");
  write_gz(gz, idx_bytes(0x08, {100000, 100000}, Bytes(100)));
  check_idx_error(gz, "expected 10000000000 bytes of data, decompressed file has 100");
}

TEST_CASE("idx: a header claiming up to the 2 GiB limit costs only what the file holds") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizers reserve terabytes of address space; RLIMIT_AS cannot work.
  return;
#endif
  // Claims just under the limit are the dangerous ones: above it the reader
  // refuses outright. Cap the address space at what the process uses now plus
  // 256 MiB; trusting any of these headers would need ~2 GB.
  TempDir dir;
  std::string raw = dir.file("claims_2e9");
  std::string gz = dir.file("claims_2e9.gz");
  std::string s32 = dir.file("claims_2e9_s32");
  write_raw(raw, idx_bytes(0x08, {2'000'000'000}, Bytes(100)));
  write_gz(gz, idx_bytes(0x08, {2'000'000'000}, Bytes(100)));
  write_raw(s32, idx_bytes(0x0C, {500'000'000}, Bytes(3'000'000)));  // 3 MB of 2 GB

  std::ifstream statm("/proc/self/statm");
  size_t vm_pages = 0;
  statm >> vm_pages;
  REQUIRE(vm_pages > 0);
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_AS, &old) == 0);
  struct rlimit cap = old;
  cap.rlim_cur = vm_pages * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) + (size_t{256} << 20);
  if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < cap.rlim_cur) cap.rlim_cur = old.rlim_cur;

  // Nothing but the reader runs while the cap is on: doctest's own
  // bookkeeping allocates, so the checks wait until it is lifted.
  std::vector<std::string> messages;
  messages.reserve(3);
  bool bad_alloc = false;
  REQUIRE(::setrlimit(RLIMIT_AS, &cap) == 0);
  for (const std::string* p : {&raw, &gz, &s32}) {
    try {
      messages.push_back(idx_error(*p));
    } catch (const std::bad_alloc&) {
      bad_alloc = true;
      messages.push_back("std::bad_alloc");
    }
  }
  ::setrlimit(RLIMIT_AS, &old);

  CHECK_FALSE(bad_alloc);
  REQUIRE(messages.size() == 3);
  INFO("messages: ", messages[0], " | ", messages[1], " | ", messages[2]);
  CHECK(contains(messages[0], raw));
  CHECK(contains(messages[0], "expected 2000000000 bytes of data, file has 100"));
  CHECK(contains(messages[1], gz));
  CHECK(contains(messages[1], "expected 2000000000 bytes of data, decompressed file has 100"));
  CHECK(contains(messages[2], s32));
  CHECK(contains(messages[2], "expected 2000000000 bytes of data, file has 3000000"));
}

TEST_CASE("idx: corrupt gzip streams throw errors naming the file") {
  TempDir dir;
  Bytes px(2000);
  std::mt19937 rng(7);
  for (auto& v : px) v = static_cast<uint8_t>(rng() % 16);  // compressible, not trivial
  Bytes good = gzip_bytes(dir, idx_bytes(0x08, {2000}, px));
  REQUIRE(good.size() > 40);
  auto raw = [&](const std::string& name, const Bytes& b) {
    std::string p = dir.file(name);
    write_raw(p, b);
    return p;
  };
  REQUIRE(data::read_idx(raw("good.gz", good)).numel() == 2000);

  // Garbage in the deflate data (a reserved block type 11 in the first block).
  Bytes bad_block = good;
  bad_block[10] = 0xFF;
  check_idx_error(raw("bad_block.gz", bad_block), "corrupt gzip stream");

  // Flipped bits in the middle of the deflate data.
  Bytes flipped = good;
  for (size_t i = good.size() / 2; i < good.size() / 2 + 4; ++i) flipped[i] ^= 0x5A;
  check_idx_error(raw("flipped.gz", flipped), "gzip");

  // CRC32 and length in the trailer.
  Bytes bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0x01;
  check_idx_error(raw("bad_crc.gz", bad_crc), "corrupt gzip stream");
  Bytes bad_len = good;
  bad_len[bad_len.size() - 1] ^= 0x01;
  check_idx_error(raw("bad_len.gz", bad_len), "corrupt gzip stream");

  // Bad compression method in the gzip header (must be 8, deflate).
  Bytes bad_method = good;
  bad_method[2] = 7;
  check_idx_error(raw("bad_method.gz", bad_method), "corrupt gzip stream");

  // Cut short: halfway, just the magic, and missing only the trailer.
  check_idx_error(raw("half.gz", Bytes(good.begin(), good.begin() + good.size() / 2)), "truncated");
  check_idx_error(raw("magic_only.gz", {0x1f, 0x8b}), "truncated");
  check_idx_error(raw("no_trailer.gz", Bytes(good.begin(), good.end() - 8)), "truncated");

  // Junk after the gzip stream.
  Bytes junk = good;
  for (char c : std::string("junk")) junk.push_back(static_cast<uint8_t>(c));
  check_idx_error(raw("junk.gz", junk), "trailing garbage after the gzip stream");
}

TEST_CASE("idx: every single-byte mutation and truncation either reads or throws bonsai::Error") {
  // Nothing may crash, hang or throw anything else, whatever the damage.
  TempDir dir;
  Bytes raw_file = idx_bytes(0x0C, {2, 3}, be32_payload({1, 2, 3, 4, 5, 6}));
  Bytes gz_file = gzip_bytes(dir, raw_file);
  std::string p = dir.file("mutant");
  int reads = 0, errors = 0;
  auto attempt = [&](const Bytes& b) {
    write_raw(p, b);
    try {
      Tensor t = data::read_idx(p);
      CHECK(static_cast<int64_t>(t.nbytes()) <= static_cast<int64_t>(raw_file.size()));
      ++reads;
    } catch (const bonsai::Error& e) {
      CHECK(contains(e.what(), p));
      ++errors;
    }
  };
  for (const Bytes* file : {&raw_file, &gz_file}) {
    for (size_t i = 0; i < file->size(); ++i) {
      for (uint8_t v : {uint8_t{0x00}, uint8_t{0xFF}, uint8_t{0x80}}) {
        Bytes m = *file;
        m[i] ^= v == 0 ? m[i] : v;  // 0: clear the byte, else flip bits
        attempt(m);
      }
      attempt(Bytes(file->begin(), file->begin() + i));
    }
  }
  CHECK(reads > 0);
  CHECK(errors > 0);
}

TEST_CASE("idx: load_fashion_mnist on synthetic files") {
  TempDir dir;
  write_fashion(dir, 30, 20);
  data::FashionMnist ds = data::load_fashion_mnist(dir.path.string());
  CHECK(ds.train_images.dtype() == DType::u8);
  CHECK(ds.train_images.shape() == Shape{30, 28, 28});
  CHECK(ds.test_images.shape() == Shape{20, 28, 28});
  CHECK(ds.train_labels.dtype() == DType::s64);
  CHECK(ds.train_labels.shape() == Shape{30});
  CHECK(ds.test_labels.shape() == Shape{20});
  for (int i = 0; i < 30; ++i) CHECK(ds.train_labels.data<int64_t>()[i] == i % 10);
  CHECK(ds.train_images.data<uint8_t>()[5] == 35);
}

TEST_CASE("idx: load_fashion_mnist names the offending file") {
  SUBCASE("missing directory") {
    std::string missing = (fs::temp_directory_path() / "bonsai_idx_no_such_dir").string();
    check_error_names([&] { data::load_fashion_mnist(missing); }, missing, "dataset-fashion-mnist");
  }
  SUBCASE("missing file") {
    TempDir dir;
    write_fashion(dir, 3, 2);
    fs::remove(dir.path / "t10k-labels-idx1-ubyte.gz");
    check_error_names([&] { data::load_fashion_mnist(dir.path.string()); },
                      dir.file("t10k-labels-idx1-ubyte.gz"), "not found");
  }
  SUBCASE("label out of range") {
    TempDir dir;
    write_fashion(dir, 12, 2, {28, 28}, 11);
    check_error_names([&] { data::load_fashion_mnist(dir.path.string()); },
                      dir.file("train-labels-idx1-ubyte.gz"), "label 10 at index 11 is outside 0..9");
  }
  SUBCASE("image and label counts differ") {
    TempDir dir;
    write_fashion(dir, 3, 2);
    write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_bytes(0x08, {3}, {0, 1, 2}));
    check_error_names([&] { data::load_fashion_mnist(dir.path.string()); },
                      dir.file("t10k-labels-idx1-ubyte.gz"), "has 3 labels but");
  }
  SUBCASE("images are not 28x28") {
    TempDir dir;
    write_fashion(dir, 3, 2, {28, 27});
    check_error_names([&] { data::load_fashion_mnist(dir.path.string()); },
                      dir.file("train-images-idx3-ubyte.gz"), "[N, 28, 28]");
  }
  SUBCASE("labels of the wrong type") {
    TempDir dir;
    write_fashion(dir, 3, 2);
    write_gz(dir.file("train-labels-idx1-ubyte.gz"), idx_bytes(0x0C, {3}, Bytes(12)));
    check_error_names([&] { data::load_fashion_mnist(dir.path.string()); },
                      dir.file("train-labels-idx1-ubyte.gz"), "expected u8 labels");
  }
  SUBCASE("a corrupt file") {
    TempDir dir;
    write_fashion(dir, 3, 2);
    write_raw(dir.file("train-images-idx3-ubyte.gz"), {0x1f, 0x8b, 8, 0, 1, 2});
    check_error_names([&] { data::load_fashion_mnist(dir.path.string()); },
                      dir.file("train-images-idx3-ubyte.gz"), "gzip");
  }
}

TEST_CASE("idx: the real Fashion-MNIST from dataset-fashion-mnist") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::is_directory(dir)) {
    FAIL("Fashion-MNIST not found at " << dir
                                       << "; install the Debian package dataset-fashion-mnist "
                                          "(apt-get install dataset-fashion-mnist)");
  }
  data::FashionMnist ds = data::load_fashion_mnist(dir);
  CHECK(ds.train_images.shape() == Shape{60000, 28, 28});
  CHECK(ds.train_labels.shape() == Shape{60000});
  CHECK(ds.test_images.shape() == Shape{10000, 28, 28});
  CHECK(ds.test_labels.shape() == Shape{10000});
  CHECK(ds.train_labels.dtype() == DType::s64);

  // Fashion-MNIST is exactly balanced: 6000 training and 1000 test images per class.
  auto counts = [](const Tensor& labels) {
    std::array<int64_t, 10> c{};
    for (int64_t i = 0; i < labels.numel(); ++i) ++c[labels.data<int64_t>()[i]];
    return c;
  };
  for (int64_t c : counts(ds.train_labels)) CHECK(c == 6000);
  for (int64_t c : counts(ds.test_labels)) CHECK(c == 1000);
  // The first image of both splits is an ankle boot (class 9).
  CHECK(ds.train_labels.data<int64_t>()[0] == 9);
  CHECK(ds.test_labels.data<int64_t>()[0] == 9);

  // Pixels use the full 0..255 range and the background is black.
  const uint8_t* px = ds.train_images.data<uint8_t>();
  auto [lo, hi] = std::minmax_element(px, px + ds.train_images.numel());
  CHECK(*lo == 0);
  CHECK(*hi == 255);
  CHECK(px[0] == 0);
}
