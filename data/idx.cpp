#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

namespace bonsai::data {

namespace {

namespace fs = std::filesystem;

// The largest (decompressed) file we agree to hold in memory. Real IDX files
// are tens of MB; the cap only exists so that a gzip bomb or a wrong path
// (a disk image, /dev/zero) fails fast instead of eating the machine. It also
// keeps every size below 2^32, so zlib's 32-bit counters never overflow.
constexpr size_t kMaxBytes = size_t{1} << 31;
constexpr size_t kChunk = size_t{1} << 20;

std::string where(const std::string& path) { return "IDX file '" + path + "': "; }

std::string hex(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
  return buf;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// The file's bytes as stored on disk (possibly gzip), at most kMaxBytes.
std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  // fopen() happily opens a directory and only fails on read, with a less
  // obvious message; say what is wrong up front.
  BONSAI_CHECK(!fs::is_directory(path, ec), where(path) + "is a directory, not a file");
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  BONSAI_CHECK(f != nullptr, where(path) + "cannot open: " + std::strerror(errno));

  std::vector<uint8_t> bytes;
  auto size = fs::file_size(path, ec);
  if (!ec && size <= kMaxBytes) bytes.reserve(size);
  for (;;) {
    size_t old = bytes.size();
    bytes.resize(old + kChunk);
    size_t n = std::fread(bytes.data() + old, 1, kChunk, f.get());
    bytes.resize(old + n);
    // Read rather than trust file_size(): pipes and /proc files report 0.
    BONSAI_CHECK(bytes.size() <= kMaxBytes, where(path) + "file is larger than the " +
                                                std::to_string(kMaxBytes >> 30) + " GiB limit");
    if (n < kChunk) {
      BONSAI_CHECK(!std::ferror(f.get()), where(path) + "read failed: " + std::strerror(errno));
      break;
    }
  }
  return bytes;
}

bool is_gzip(const std::vector<uint8_t>& b) { return b.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b; }

struct InflateEnd {
  void operator()(z_stream* zs) const { inflateEnd(zs); }
};

// Decompresses a whole gzip file, growing the output as it goes (the gzip
// trailer's size field is only mod 2^32 and is untrusted anyway). Accepts
// several concatenated gzip members as gzip(1) does; anything else after the
// last member is corruption.
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  z_stream zs{};
  // 16 + MAX_WBITS: expect a gzip header and trailer (checked CRC and length).
  BONSAI_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK,
               where(path) + "cannot initialise zlib: " + (zs.msg ? zs.msg : "out of memory"));
  std::unique_ptr<z_stream, InflateEnd> guard(&zs);

  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());  // in.size() <= kMaxBytes < 2^32

  std::vector<uint8_t> out(std::clamp(in.size() * 4, kChunk, kMaxBytes + 1));
  size_t produced = 0;
  for (;;) {
    if (produced == out.size()) {
      // One byte over the cap is how we learn the data is too large.
      BONSAI_CHECK(out.size() <= kMaxBytes, where(path) + "decompressed data exceeds the " +
                                                std::to_string(kMaxBytes >> 30) + " GiB limit");
      out.resize(std::min(out.size() * 2, kMaxBytes + 1));
    }
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(out.size() - produced);
    int rc = inflate(&zs, Z_NO_FLUSH);
    produced = out.size() - zs.avail_out;

    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        BONSAI_CHECK(inflateReset(&zs) == Z_OK, where(path) + "zlib error: inflateReset failed");
        continue;
      }
      BONSAI_CHECK(false, where(path) + std::to_string(zs.avail_in) +
                              " bytes of trailing garbage after the gzip stream");
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR) {
      if (zs.avail_out == 0) continue;  // output full: grow and go on
      // No progress possible with output space left: the input ran out.
      BONSAI_CHECK(false, where(path) + "gzip stream is truncated (unexpected end of file after " +
                              std::to_string(in.size()) + " compressed bytes)");
    }
    BONSAI_CHECK(false, where(path) + "corrupt gzip stream (zlib error " + std::to_string(rc) +
                            ": " + (zs.msg ? zs.msg : "no message") + ")");
  }
  out.resize(produced);
  out.shrink_to_fit();
  return out;
}

// How an IDX type code is held in memory.
struct ElemType {
  DType dtype;
  size_t size;
};

std::optional<ElemType> elem_type(uint8_t code) {
  switch (code) {
    case 0x08: return ElemType{DType::u8, 1};
    case 0x09: return ElemType{DType::s8, 1};
    case 0x0C: return ElemType{DType::s32, 4};
    case 0x0D: return ElemType{DType::f32, 4};
    default: return std::nullopt;
  }
}

std::string type_code_name(uint8_t code) {
  switch (code) {
    case 0x0B: return hex(code) + " (s16)";
    case 0x0E: return hex(code) + " (f64)";
    default: return hex(code) + " (not an IDX type)";
  }
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

Tensor parse_idx(const std::vector<uint8_t>& b, const std::string& path, bool gz) {
  const std::string size_of = gz ? "decompressed file has " : "file has ";
  BONSAI_CHECK(b.size() >= 4, where(path) + "truncated header: " + size_of +
                                  std::to_string(b.size()) + " bytes, the magic alone needs 4");
  BONSAI_CHECK(b[0] == 0 && b[1] == 0, where(path) + "bad magic: the first two bytes must be 0, got " +
                                           hex(b[0]) + " " + hex(b[1]) + " (not an IDX file?)");
  auto type = elem_type(b[2]);
  BONSAI_CHECK(type.has_value(), where(path) + "unsupported element type " + type_code_name(b[2]) +
                                     "; supported: 0x08 u8, 0x09 s8, 0x0C s32, 0x0D f32");
  const int rank = b[3];
  BONSAI_CHECK(rank >= 1 && rank <= kMaxDims, where(path) + "bad magic: rank " + std::to_string(rank) +
                                                  " is not in 1.." + std::to_string(kMaxDims));
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  BONSAI_CHECK(b.size() >= header, where(path) + "truncated header: rank " + std::to_string(rank) +
                                       " needs " + std::to_string(header) + " header bytes, " +
                                       size_of + std::to_string(b.size()));

  std::vector<int64_t> dims(rank);
  for (int i = 0; i < rank; ++i) dims[i] = be32(&b[4 + 4 * i]);

  // Size the data with an overflow guard: five u32 extents can multiply past
  // 2^64, and a wrapped product could look small enough to pass.
  const size_t available = b.size() - header;
  bool empty = std::find(dims.begin(), dims.end(), 0) != dims.end();
  uint64_t expected = empty ? 0 : type->size;
  for (int i = 0; i < rank && !empty; ++i) {
    auto d = static_cast<uint64_t>(dims[i]);
    BONSAI_CHECK(expected <= std::numeric_limits<uint64_t>::max() / d,
                 where(path) + "header shape " + dims_str(dims) +
                     " describes more than 2^64 bytes of data; " + size_of + std::to_string(available));
    expected *= d;
  }
  BONSAI_CHECK(expected <= available, where(path) + "truncated data: shape " + dims_str(dims) +
                                          " expected " + std::to_string(expected) +
                                          " bytes of data, " + size_of + std::to_string(available));
  BONSAI_CHECK(expected == available, where(path) + "trailing garbage: shape " + dims_str(dims) +
                                          " expected " + std::to_string(expected) +
                                          " bytes of data, " + size_of + std::to_string(available) +
                                          " (" + std::to_string(available - expected) + " extra)");

  // Only now, with the size proven to be backed by real bytes, allocate.
  Tensor t = Tensor::empty(Shape(dims), type->dtype);
  const uint8_t* src = b.data() + header;
  if (type->size == 1) {
    std::memcpy(t.raw(), src, expected);
  } else {
    auto* dst = static_cast<uint32_t*>(t.raw());  // s32 and f32 are both 4 bytes
    for (uint64_t i = 0; i < expected / 4; ++i) dst[i] = be32(src + 4 * i);
  }
  return t;
}

// Loads one (images, labels) pair and checks it is MNIST-shaped.
std::pair<Tensor, Tensor> load_split(const fs::path& dir, const char* images_name,
                                     const char* labels_name) {
  const std::string ip = (dir / images_name).string();
  const std::string lp = (dir / labels_name).string();
  for (const auto& p : {ip, lp}) {
    std::error_code ec;
    BONSAI_CHECK(fs::exists(p, ec), where(p) + "not found (part of the Debian package "
                                               "dataset-fashion-mnist; is it installed?)");
  }

  Tensor images = read_idx(ip);
  BONSAI_CHECK(images.dtype() == DType::u8 && images.rank() == 3 && images.dim(1) == 28 &&
                   images.dim(2) == 28,
               where(ip) + "expected u8 images of shape [N, 28, 28], got " +
                   dtype_name(images.dtype()) + " " + images.shape_str());

  Tensor labels = read_idx(lp);
  BONSAI_CHECK(labels.dtype() == DType::u8 && labels.rank() == 1,
               where(lp) + "expected u8 labels of shape [N], got " + dtype_name(labels.dtype()) +
                   " " + labels.shape_str());
  BONSAI_CHECK(labels.dim(0) == images.dim(0),
               where(lp) + "has " + std::to_string(labels.dim(0)) + " labels but '" + ip +
                   "' has " + std::to_string(images.dim(0)) + " images");

  Tensor wide = Tensor::empty({labels.dim(0)}, DType::s64);
  const uint8_t* src = labels.data<uint8_t>();
  int64_t* dst = wide.data<int64_t>();
  for (int64_t i = 0; i < labels.dim(0); ++i) {
    BONSAI_CHECK(src[i] <= 9, where(lp) + "label " + std::to_string(src[i]) + " at index " +
                                  std::to_string(i) + " is outside 0..9");
    dst[i] = src[i];
  }
  return {images, wide};
}

}  // namespace

Tensor read_idx(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  const bool gz = is_gzip(bytes);
  if (gz) bytes = gunzip(bytes, path);
  return parse_idx(bytes, path, gz);
}

FashionMnist load_fashion_mnist(const std::string& dir) {
  std::error_code ec;
  BONSAI_CHECK(fs::is_directory(dir, ec),
               "Fashion-MNIST directory '" + dir +
                   "' does not exist; install the Debian package dataset-fashion-mnist "
                   "(apt-get install dataset-fashion-mnist) or pass the directory holding "
                   "the four *-idx?-ubyte.gz files");
  FashionMnist ds;
  std::tie(ds.train_images, ds.train_labels) =
      load_split(dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz");
  std::tie(ds.test_images, ds.test_labels) =
      load_split(dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz");
  return ds;
}

}  // namespace bonsai::data
