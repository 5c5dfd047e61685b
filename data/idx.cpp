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

// The most tensor data we agree to hold in memory. Real IDX files are tens of
// MB; the cap only exists so that a corrupt header or a gzip bomb fails with a
// message instead of eating the machine.
constexpr size_t kMaxBytes = size_t{1} << 31;
// Unit of file reads and inflate calls; also keeps every count handed to
// zlib far below its 32-bit uInt.
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

// The file's content as a byte stream, transparently gunzipped. Reading is
// incremental in both directions (compressed input in kChunk pieces, output
// only as far as the caller asks), so neither a 26 MB .gz nor /dev/zero nor a
// gzip bomb is ever held in memory whole: the caller decides, from the header,
// how much it is willing to keep.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    std::error_code ec;
    // fopen() happily opens a directory and only fails on read, with a less
    // obvious message; say what is wrong up front.
    BONSAI_CHECK(!fs::is_directory(path, ec), where(path) + "is a directory, not a file");
    file_.reset(std::fopen(path.c_str(), "rb"));
    BONSAI_CHECK(file_ != nullptr, where(path) + "cannot open: " + std::strerror(errno));

    // Sniff the gzip magic; the sniffed bytes are then replayed as the start
    // of whichever stream this turns out to be.
    in_.resize(kChunk);
    in_len_ = read_file(in_.data(), 2);
    gzip_ = in_len_ == 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_) {
      // 16 + MAX_WBITS: expect a gzip header and trailer (CRC and length checked).
      BONSAI_CHECK(inflateInit2(&zs_, 16 + MAX_WBITS) == Z_OK,
                   where(path) + "cannot initialise zlib: " + (zs_.msg ? zs_.msg : "out of memory"));
      zs_live_ = true;
      zs_.next_in = in_.data();
      zs_.avail_in = static_cast<uInt>(in_len_);
    }
  }
  ~ByteStream() {
    if (zs_live_) inflateEnd(&zs_);
  }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  bool gzip() const { return gzip_; }

  // Fills dst with up to n (<= kChunk) bytes; fewer only at the end of the data.
  size_t read(uint8_t* dst, size_t n) {
    if (!gzip_) {
      size_t replay = std::min(n, in_len_ - in_pos_);
      std::memcpy(dst, in_.data() + in_pos_, replay);
      in_pos_ += replay;
      return replay + read_file(dst + replay, n - replay);
    }
    return inflate_into(dst, n);
  }

  // Reads and discards the rest of the data, stopping once more than `limit`
  // bytes have been seen; returns how many were seen. For error messages that
  // report the real size of a file.
  uint64_t skip(uint64_t limit) {
    std::vector<uint8_t> sink(kChunk);
    uint64_t total = 0;
    while (total <= limit) {
      size_t n = read(sink.data(), kChunk);
      total += n;
      if (n < kChunk) break;
    }
    return total;
  }

 private:
  size_t read_file(uint8_t* dst, size_t n) {
    size_t got = n ? std::fread(dst, 1, n, file_.get()) : 0;
    BONSAI_CHECK(!std::ferror(file_.get()), where(path_) + "read failed: " + std::strerror(errno));
    return got;
  }

  size_t inflate_into(uint8_t* dst, size_t n) {
    zs_.next_out = dst;
    zs_.avail_out = static_cast<uInt>(n);
    while (zs_.avail_out > 0 && !done_) {
      if (zs_.avail_in == 0 && !eof_) {
        in_len_ = read_file(in_.data(), in_.size());
        eof_ = in_len_ == 0;
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(in_len_);
      }
      int rc = inflate(&zs_, Z_NO_FLUSH);
      if (rc == Z_OK) continue;
      if (rc == Z_STREAM_END) {
        if (zs_.avail_in == 0 && !eof_) {
          in_len_ = read_file(in_.data(), in_.size());
          eof_ = in_len_ == 0;
          zs_.next_in = in_.data();
          zs_.avail_in = static_cast<uInt>(in_len_);
        }
        if (zs_.avail_in == 0) {
          done_ = true;
        } else {
          // gzip(1) reads concatenated members as one stream; so do we. Any
          // other byte after a member is corruption.
          BONSAI_CHECK(zs_.next_in[0] == 0x1f,
                       where(path_) + "trailing garbage after the gzip stream");
          BONSAI_CHECK(inflateReset(&zs_) == Z_OK, where(path_) + "zlib error: inflateReset failed");
        }
        continue;
      }
      // Z_BUF_ERROR means no progress was possible; with output space left
      // and the input refilled above, only the end of the file explains it.
      BONSAI_CHECK(!(rc == Z_BUF_ERROR && eof_),
                   where(path_) + "gzip stream is truncated (unexpected end of file)");
      BONSAI_CHECK(false, where(path_) + "corrupt gzip stream (zlib error " + std::to_string(rc) +
                              ": " + (zs_.msg ? zs_.msg : "no message") + ")");
    }
    return n - zs_.avail_out;
  }

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::vector<uint8_t> in_;  // compressed input (gzip) or the sniffed bytes (raw)
  size_t in_len_ = 0, in_pos_ = 0;
  bool gzip_ = false;
  z_stream zs_{};
  bool zs_live_ = false;  // inflateInit2 succeeded, inflateEnd owed
  bool eof_ = false;      // the file has no more compressed bytes
  bool done_ = false;     // the last gzip member ended cleanly
};

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

// Reads exactly n bytes unless the data ends first; returns how many were read.
size_t read_full(ByteStream& s, uint8_t* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t want = std::min(n - got, kChunk);
    size_t k = s.read(dst + got, want);
    got += k;
    if (k < want) break;
  }
  return got;
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
  ByteStream s(path);
  const std::string size_of = s.gzip() ? "decompressed file has " : "file has ";

  uint8_t head[4 + 4 * kMaxDims];
  size_t got = read_full(s, head, 4);
  BONSAI_CHECK(got == 4, where(path) + "truncated header: " + size_of + std::to_string(got) +
                             " bytes, the magic alone needs 4");
  BONSAI_CHECK(head[0] == 0 && head[1] == 0,
               where(path) + "bad magic: the first two bytes must be 0, got " + hex(head[0]) + " " +
                   hex(head[1]) + " (not an IDX file?)");
  auto type = elem_type(head[2]);
  BONSAI_CHECK(type.has_value(), where(path) + "unsupported element type " + type_code_name(head[2]) +
                                     "; supported: 0x08 u8, 0x09 s8, 0x0C s32, 0x0D f32");
  const int rank = head[3];
  BONSAI_CHECK(rank >= 1 && rank <= kMaxDims, where(path) + "bad magic: rank " + std::to_string(rank) +
                                                  " is not in 1.." + std::to_string(kMaxDims));
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  got += read_full(s, head + 4, header - 4);
  BONSAI_CHECK(got == header, where(path) + "truncated header: rank " + std::to_string(rank) +
                                  " needs " + std::to_string(header) + " header bytes, " + size_of +
                                  std::to_string(got));

  std::vector<int64_t> dims(rank);
  for (int i = 0; i < rank; ++i) dims[i] = be32(&head[4 + 4 * i]);

  // Size the data with an overflow guard: five u32 extents can multiply past
  // 2^64, and a wrapped product could look small enough to pass.
  const std::string shape = "shape " + dims_str(dims);
  // The non-zero extents are checked even when one extent is 0: a tensor
  // [2^30, 2^30, 2^30, 0] holds no data, but its shape still has to be one
  // bonsai can hold (element counts are int64), so it is refused too.
  bool empty = std::find(dims.begin(), dims.end(), 0) != dims.end();
  uint64_t expected = type->size;
  for (int i = 0; i < rank; ++i) {
    auto d = static_cast<uint64_t>(dims[i]);
    if (d == 0) continue;
    BONSAI_CHECK(expected <= std::numeric_limits<uint64_t>::max() / d,
                 where(path) + "header " + shape + " describes more than 2^64 bytes of data");
    expected *= d;
  }
  if (empty) {
    BONSAI_CHECK(expected <= kMaxBytes, where(path) + "header " + shape +
                                            " is empty, but its other extents describe more than the " +
                                            std::to_string(kMaxBytes >> 30) + " GiB limit");
    expected = 0;
  }

  auto count_str = [](uint64_t n) {
    return n > kMaxBytes ? "more than " + std::to_string(kMaxBytes) : std::to_string(n);
  };
  if (expected > kMaxBytes) {
    // Never allocate for such a claim; only measure the file, to say which of
    // "truncated" (the usual case: a corrupt header) or "too large" it is.
    uint64_t have = s.skip(kMaxBytes);
    BONSAI_CHECK(have >= expected, where(path) + "truncated data: " + shape + " expected " +
                                       std::to_string(expected) + " bytes of data, " + size_of +
                                       count_str(have));
    BONSAI_CHECK(false, where(path) + shape + " has " + std::to_string(expected) +
                            " bytes of data, more than the " + std::to_string(kMaxBytes >> 30) +
                            " GiB limit");
  }

  // Grow the buffer only as real data arrives, so a header that lies about
  // the size costs no more memory than the file actually holds.
  std::vector<uint8_t> buf;
  while (buf.size() < expected) {
    size_t old = buf.size();
    size_t step = static_cast<size_t>(std::min<uint64_t>(expected - old, std::max(old, kChunk)));
    buf.resize(old + step);
    size_t k = read_full(s, buf.data() + old, step);
    buf.resize(old + k);
    if (k < step) break;
  }
  BONSAI_CHECK(buf.size() == expected, where(path) + "truncated data: " + shape + " expected " +
                                           std::to_string(expected) + " bytes of data, " + size_of +
                                           std::to_string(buf.size()));
  uint64_t extra = s.skip(kMaxBytes);
  BONSAI_CHECK(extra == 0, where(path) + "trailing garbage: " + shape + " expected " +
                               std::to_string(expected) + " bytes of data, " + size_of +
                               count_str(expected + extra) + " (" + count_str(extra) + " extra)");

  Tensor t = Tensor::empty(Shape(dims), type->dtype);
  if (expected == 0) {
    // a zero extent: nothing to copy (and buf.data() may be null)
  } else if (type->size == 1) {
    std::memcpy(t.raw(), buf.data(), expected);
  } else {
    auto* dst = static_cast<uint32_t*>(t.raw());  // s32 and f32 are both 4 bytes
    for (uint64_t i = 0; i < expected / 4; ++i) dst[i] = be32(buf.data() + 4 * i);
  }
  return t;
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
