#include "core/io/safetensors.h"

#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace bonsai::io {

// The data is copied byte for byte into tensors, which is only correct on a
// little-endian host (every machine bonsai targets).
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

namespace {

using json = nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, so a
// corrupt length on a large file cannot make us allocate gigabytes of JSON.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string where(const std::string& path, const std::string& key = {}) {
  std::string s = "safetensors '" + path + "'";
  if (!key.empty()) s += ", tensor '" + key + "'";
  return s + ": ";
}

std::string errno_str(int err) { return std::strerror(err); }

// A stored dtype: how wide one element is on disk and what bonsai holds it as.
struct StoredType {
  DType dtype;
  size_t disk_size;
  bool f64_to_f32 = false;
};

std::optional<StoredType> parse_dtype(const std::string& s) {
  if (s == "F32") return StoredType{DType::f32, 4};
  if (s == "I8") return StoredType{DType::s8, 1};
  if (s == "U8") return StoredType{DType::u8, 1};
  if (s == "I32") return StoredType{DType::s32, 4};
  if (s == "I64") return StoredType{DType::s64, 8};
  if (s == "F64") return StoredType{DType::f32, 8, true};
  return std::nullopt;
}

const char* stored_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::s8: return "I8";
    case DType::u8: return "U8";
    case DType::s32: return "I32";
    case DType::s64: return "I64";
  }
  return nullptr;
}

// Owns a file descriptor so every early throw closes it.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Reads exactly `n` bytes at `offset`; short reads mean the file changed or
// lied about its size, which is an error like any other.
void pread_all(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& path,
               const std::string& key) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    int err = errno;
    BONSAI_CHECK(got >= 0, where(path, key) + "read failed: " + errno_str(err));
    BONSAI_CHECK(got > 0, where(path, key) + "unexpected end of file");
    p += got;
    n -= static_cast<uint64_t>(got);
    offset += static_cast<uint64_t>(got);
  }
}

// One validated header entry.
struct Entry {
  std::string key;
  StoredType type;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& path, const std::string& key, const json& v,
                  uint64_t data_bytes) {
  const std::string at = where(path, key);
  BONSAI_CHECK(v.is_object(), at + "header entry is not a JSON object");

  auto dt = v.find("dtype");
  BONSAI_CHECK(dt != v.end() && dt->is_string(), at + "missing or non-string \"dtype\"");
  auto type = parse_dtype(dt->get<std::string>());
  BONSAI_CHECK(type.has_value(), at + "unsupported dtype \"" + dt->get<std::string>() +
                                     "\" (supported: F32, F64, I8, U8, I32, I64)");

  auto sh = v.find("shape");
  BONSAI_CHECK(sh != v.end() && sh->is_array(), at + "missing or non-array \"shape\"");
  BONSAI_CHECK(sh->size() <= static_cast<size_t>(kMaxDims),
               at + "rank " + std::to_string(sh->size()) + " exceeds the maximum of " +
                   std::to_string(kMaxDims));
  // Multiply in u64 with overflow checks: a hostile shape like [2^40, 2^40]
  // must not wrap around to a small, plausible size.
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (const json& d : *sh) {
    // nlohmann parses every non-negative integer literal as unsigned, so this
    // rejects negatives, fractions and non-numbers in one test.
    BONSAI_CHECK(d.is_number_unsigned(), at + "shape extent " + d.dump() +
                                             " is not a non-negative integer");
    uint64_t e = d.get<uint64_t>();
    BONSAI_CHECK(e <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                     !__builtin_mul_overflow(numel, e, &numel) &&
                     numel <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                 at + "shape " + sh->dump() + " overflows");
    dims.push_back(static_cast<int64_t>(e));
  }
  uint64_t nbytes = 0;
  BONSAI_CHECK(!__builtin_mul_overflow(numel, type->disk_size, &nbytes),
               at + "shape " + sh->dump() + " overflows");

  auto off = v.find("data_offsets");
  BONSAI_CHECK(off != v.end() && off->is_array() && off->size() == 2 &&
                   (*off)[0].is_number_unsigned() && (*off)[1].is_number_unsigned(),
               at + "\"data_offsets\" must be two non-negative integers");
  uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  BONSAI_CHECK(begin <= end && end <= data_bytes,
               at + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] lie outside the data section of " + std::to_string(data_bytes) + " bytes");
  BONSAI_CHECK(end - begin == nbytes,
               at + "data_offsets span " + std::to_string(end - begin) + " bytes but shape " +
                   sh->dump() + " of " + dt->get<std::string>() + " needs " +
                   std::to_string(nbytes));
  return Entry{key, *type, Shape(dims), begin, end};
}

}  // namespace

namespace {

const char* kSparseKey = "bonsai.sparse";
const char* kMaskSuffix = ".__mask";
const char* kValuesSuffix = ".__nz";

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// The sparse form of `t` if it is smaller than the dense one.
std::optional<std::pair<Tensor, Tensor>> sparse_form(const Tensor& t) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::s8 && t.dtype() != DType::s32) return std::nullopt;
  const int64_t n = t.numel();
  const size_t elem = dtype_size(t.dtype());
  const auto* bytes = static_cast<const unsigned char*>(t.raw());
  auto nonzero = [&](int64_t i) {
    for (size_t b = 0; b < elem; ++b)
      if (bytes[i * elem + b]) return true;
    return false;
  };
  int64_t nnz = 0;
  for (int64_t i = 0; i < n; ++i) nnz += nonzero(i);
  const int64_t mask_bytes = (n + 7) / 8;
  if (mask_bytes + nnz * static_cast<int64_t>(elem) >= n * static_cast<int64_t>(elem)) return std::nullopt;
  Tensor mask = Tensor::zeros({mask_bytes}, DType::u8);
  Tensor values = Tensor::empty({nnz}, t.dtype());
  auto* m = mask.data<uint8_t>();
  auto* v = static_cast<unsigned char*>(values.raw());
  int64_t k = 0;
  for (int64_t i = 0; i < n; ++i)
    if (nonzero(i)) {
      m[i / 8] = static_cast<uint8_t>(m[i / 8] | (1u << (i % 8)));
      std::memcpy(v + k++ * elem, bytes + i * elem, elem);
    }
  return std::make_pair(mask, values);
}

// Restores the tensors the writer stored sparsely (see the header).
void restore_sparse(const std::string& path, SafetensorsFile& f) {
  auto it = f.metadata.find(kSparseKey);
  if (it == f.metadata.end()) return;
  json index;
  try {
    index = json::parse(it->second);
  } catch (const json::exception& e) {
    BONSAI_CHECK(false, where(path) + "\"" + kSparseKey + "\" metadata is not valid JSON: " + e.what());
  }
  BONSAI_CHECK(index.is_object(), where(path) + "\"" + kSparseKey + "\" metadata is not a JSON object");
  for (auto e = index.begin(); e != index.end(); ++e) {
    const std::string name = e.key();
    auto mi = f.tensors.find(name + kMaskSuffix);
    auto vi = f.tensors.find(name + kValuesSuffix);
    BONSAI_CHECK(mi != f.tensors.end() && vi != f.tensors.end(),
                 where(path, name) + "sparse tensor without its mask and values");
    BONSAI_CHECK(!f.tensors.count(name), where(path, name) + "stored both dense and sparse");
    BONSAI_CHECK(e->is_array() && e->size() <= 5, where(path, name) + "sparse shape must be a list of at most 5 dims");
    std::vector<int64_t> dims;
    uint64_t n = 1;
    for (const auto& d : *e) {
      BONSAI_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= (1ull << 40),
                   where(path, name) + "bad sparse dimension " + d.dump());
      dims.push_back(d.get<int64_t>());
      n *= d.get<uint64_t>();
      BONSAI_CHECK(n <= (1ull << 40), where(path, name) + "sparse shape too large");
    }
    const Tensor& mask = mi->second;
    const Tensor& values = vi->second;
    BONSAI_CHECK(mask.dtype() == DType::u8 && mask.rank() == 1 && static_cast<uint64_t>(mask.numel()) == (n + 7) / 8,
                 where(path, name) + "sparse mask must be U8 [" + std::to_string((n + 7) / 8) + "]");
    BONSAI_CHECK(values.rank() == 1 && (values.dtype() == DType::f32 || values.dtype() == DType::s8 ||
                                        values.dtype() == DType::s32),
                 where(path, name) + "sparse values must be a 1-D F32, I8 or I32 tensor");
    const uint8_t* m = mask.data<uint8_t>();
    int64_t set = 0;
    for (uint64_t i = 0; i < n; ++i) set += (m[i / 8] >> (i % 8)) & 1;
    BONSAI_CHECK(set == values.numel(), where(path, name) + "sparse mask has " + std::to_string(set) +
                                            " set bits for " + std::to_string(values.numel()) + " values");
    Tensor t = Tensor::zeros(Shape(dims), values.dtype());
    const size_t elem = dtype_size(values.dtype());
    auto* dst = static_cast<unsigned char*>(t.raw());
    const auto* src = static_cast<const unsigned char*>(values.raw());
    int64_t k = 0;
    for (uint64_t i = 0; i < n; ++i)
      if ((m[i / 8] >> (i % 8)) & 1) std::memcpy(dst + i * elem, src + k++ * elem, elem);
    f.tensors.erase(mi);
    f.tensors.erase(vi);
    f.tensors.emplace(name, std::move(t));
  }
  f.metadata.erase(it);
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  int err = errno;
  BONSAI_CHECK(f.fd >= 0, where(path) + "cannot open: " + errno_str(err));
  struct stat st {};
  int rc = ::fstat(f.fd, &st);
  err = errno;
  BONSAI_CHECK(rc == 0, where(path) + "cannot stat: " + errno_str(err));
  BONSAI_CHECK(S_ISREG(st.st_mode), where(path) + "not a regular file");
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  BONSAI_CHECK(file_bytes >= 8, where(path) + "file too short (" + std::to_string(file_bytes) +
                                    " bytes) to hold the 8-byte header length");

  unsigned char len_bytes[8];
  pread_all(f.fd, len_bytes, 8, 0, path, {});
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | len_bytes[i];
  // Checked against the file size before allocating anything.
  BONSAI_CHECK(header_bytes <= file_bytes - 8,
               where(path) + "header length " + std::to_string(header_bytes) +
                   " exceeds the file size of " + std::to_string(file_bytes) + " bytes");
  BONSAI_CHECK(header_bytes <= kMaxHeaderBytes,
               where(path) + "header length " + std::to_string(header_bytes) +
                   " exceeds the 100 MB limit");
  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;

  std::string text(header_bytes, '\0');
  pread_all(f.fd, text.data(), header_bytes, 8, path, {});
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    BONSAI_CHECK(false, where(path) + "header is not valid JSON: " + e.what());
  }
  BONSAI_CHECK(header.is_object(), where(path) + "header is not a JSON object");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      BONSAI_CHECK(it->is_object(), where(path) + "\"__metadata__\" is not a JSON object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        BONSAI_CHECK(m->is_string(), where(path) + "metadata value for \"" + m.key() +
                                         "\" is not a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, it.key(), *it, data_bytes));
  }

  // Validate the whole header before reading any data, so a bad entry fails
  // fast instead of after megabytes of reads.
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.type.dtype);
    if (!e.type.f64_to_f32) {
      pread_all(f.fd, t.raw(), e.end - e.begin, data_start + e.begin, path, e.key);
    } else {
      std::vector<double> tmp(static_cast<size_t>(t.numel()));
      pread_all(f.fd, tmp.data(), e.end - e.begin, data_start + e.begin, path, e.key);
      float* dst = t.data<float>();
      for (size_t i = 0; i < tmp.size(); ++i) dst[i] = static_cast<float>(tmp[i]);
    }
    out.tensors.emplace(e.key, std::move(t));
  }
  restore_sparse(path, out);
  return out;
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  return read_safetensors(path).tensors;
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors_in,
                      const std::map<std::string, std::string>& metadata_in, const SaveOptions& options) {
  // Build and validate the header first: a bad argument throws before any
  // file is touched.
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata = metadata_in;
  json sparse = json::object();
  for (const auto& [name, t] : tensors_in) {
    BONSAI_CHECK(!name.empty(), where(path) + "empty tensor name");
    BONSAI_CHECK(!ends_with(name, kMaskSuffix) && !ends_with(name, kValuesSuffix),
                 where(path, name) + "names ending in " + kMaskSuffix + " or " + kValuesSuffix + " are reserved");
    BONSAI_CHECK(t.defined(), where(path, name) + "tensor is undefined");
    auto parts = options.sparse ? sparse_form(t) : std::nullopt;
    if (!parts) {
      tensors.emplace(name, t);
      continue;
    }
    tensors.emplace(name + kMaskSuffix, parts->first);
    tensors.emplace(name + kValuesSuffix, parts->second);
    sparse[name] = t.shape().vec();
  }
  BONSAI_CHECK(!metadata.count(kSparseKey), where(path) + "metadata key \"" + kSparseKey + "\" is reserved");
  if (!sparse.empty()) metadata[kSparseKey] = sparse.dump();
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    BONSAI_CHECK(name != "__metadata__", where(path) + "\"__metadata__\" is reserved");
    header[name] = {{"dtype", stored_name(t.dtype())},
                    {"shape", t.shape().vec()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::string text;
  try {
    text = header.dump();  // throws on names or values that are not UTF-8
  } catch (const json::exception& e) {
    BONSAI_CHECK(false, where(path) + "cannot encode header: " + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));

  write_atomically(path, [&](const Sink& put) {
    put(len_bytes, 8);
    put(text.data(), text.size());
    for (const auto& [name, t] : tensors)
      if (t.nbytes() > 0) put(t.raw(), t.nbytes());
  });
}

}  // namespace bonsai::io
