// Safetensors I/O: round trips of every dtype, hostile or broken files (each
// must throw bonsai::Error naming the file), and the atomic-write guarantees.
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>

#include "core/io/safetensors.h"

namespace fs = std::filesystem;
using bonsai::DType;
using bonsai::Shape;
using bonsai::Tensor;
namespace io = bonsai::io;

namespace {

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/bonsai_st_XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::set<std::string> names() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.insert(e.path().filename().string());
    return out;
  }
};

// Writes a file from a JSON header and data bytes; `declared_len` overrides the
// header length field (for lying files).
void write_raw(const std::string& path, std::string header, const std::string& data,
               int64_t declared_len = -1) {
  header.append((8 - header.size() % 8) % 8, ' ');
  uint64_t n = declared_len >= 0 ? static_cast<uint64_t>(declared_len) : header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(len), 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(f.good());
}

std::string bytes_of(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// The message of the bonsai::Error `f` throws, or "" (and a failed check) if
// it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const bonsai::Error& e) {
    return e.what();
  }
  FAIL_CHECK("expected bonsai::Error, nothing was thrown");
  return "";
}

// Loading `path` throws a bonsai::Error that names the file and contains
// each of `parts` (the tensor key, the nature of the problem).
void check_load_fails(const std::string& path, std::initializer_list<const char*> parts) {
  std::string msg = error_of([&] { io::load_safetensors(path); });
  INFO("message: " << msg);
  CHECK(msg.find(path) != std::string::npos);
  for (const char* p : parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, "missing: " << p);
}

template <typename T>
Tensor make(const Shape& shape, std::initializer_list<T> values) {
  Tensor t = Tensor::empty(shape, bonsai::dtype_of<T>());
  REQUIRE(static_cast<int64_t>(values.size()) == t.numel());
  std::memcpy(t.raw(), std::data(values), t.nbytes());
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("safetensors: round trip of every dtype, odd shapes and metadata") {
  TempDir dir;
  std::map<std::string, Tensor> in;
  in["f32"] = make<float>({2, 3}, {1.5f, -2.0f, 0.0f, 3.25e-20f, 1e30f, -0.0f});
  in["s8"] = make<int8_t>({4}, {-128, -1, 0, 127});
  in["u8"] = make<uint8_t>({2, 1, 2}, {0, 1, 128, 255});
  in["s32"] = make<int32_t>({3}, {INT32_MIN, 0, INT32_MAX});
  in["s64"] = make<int64_t>({2}, {INT64_MIN, int64_t{1} << 40});
  in["scalar"] = make<float>(Shape(std::vector<int64_t>{}), {42.0f});  // rank 0
  in["empty"] = Tensor::empty({0, 4});
  in["rank5"] = Tensor::full({1, 2, 1, 2, 1}, 7.0f);
  in["conv1.weight"] = Tensor::full({3, 3, 1, 2}, -1.0f);  // dotted names, as in checkpoints
  std::map<std::string, std::string> meta = {{"step", "1200"}, {"note", "héllo \"quoted\""}};

  const std::string path = dir.file("all.safetensors");
  io::save_safetensors(path, in, meta);

  // The header is space-padded so the data section starts 8-byte aligned.
  std::ifstream f(path, std::ios::binary);
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  CHECK(n % 8 == 0);

  io::SafetensorsFile out = io::read_safetensors(path);
  CHECK(out.metadata == meta);
  REQUIRE(out.tensors.size() == in.size());
  for (const auto& [name, t] : in) {
    const std::string& key = name;  // clang: no structured bindings in INFO's lambda
    INFO("tensor " << key);
    REQUIRE(out.tensors.count(name) == 1);
    CHECK(same_bytes(out.tensors.at(name), t));
  }
  CHECK(io::load_safetensors(path).size() == in.size());
}

TEST_CASE("safetensors: no metadata, no tensors") {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  io::save_safetensors(path, {});
  io::SafetensorsFile out = io::read_safetensors(path);
  CHECK(out.tensors.empty());
  CHECK(out.metadata.empty());
}

TEST_CASE("safetensors: F64 is read as f32") {
  TempDir dir;
  const std::string path = dir.file("f64.safetensors");
  std::vector<double> v = {1.0, -2.5, 1e-3};
  write_raw(path, R"({"d":{"dtype":"F64","shape":[3],"data_offsets":[0,24]}})",
            std::string(reinterpret_cast<const char*>(v.data()), 24));
  Tensor t = io::load_safetensors(path).at("d");
  REQUIRE(t.dtype() == DType::f32);
  REQUIRE(t.shape() == Shape({3}));
  CHECK(t.data<float>()[0] == 1.0f);
  CHECK(t.data<float>()[1] == -2.5f);
  CHECK(t.data<float>()[2] == 1e-3f);
}

TEST_CASE("safetensors: a file written by PyTorch's conventions loads (unsorted keys, offsets)") {
  TempDir dir;
  const std::string path = dir.file("py.safetensors");
  // Keys not in offset order, compact JSON, metadata first.
  write_raw(path,
            R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
            R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
            bytes_of({1.0f, 2.0f, 3.0f}));
  io::SafetensorsFile f = io::read_safetensors(path);
  CHECK(f.metadata.at("format") == "pt");
  CHECK(f.tensors.at("a").data<float>()[1] == 2.0f);
  CHECK(f.tensors.at("b").data<float>()[0] == 3.0f);
}

TEST_CASE("safetensors: corrupt and hostile files throw errors naming the file") {
  TempDir dir;
  const std::string ok_header = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  const std::string ok_data = bytes_of({1, 2, 3, 4, 5, 6});
  auto entry = [](const std::string& fields) { return R"({"w":{)" + fields + "}}"; };

  SUBCASE("missing file") { check_load_fails(dir.file("nope.safetensors"), {"cannot open"}); }
  SUBCASE("path is a directory") { check_load_fails(dir.path, {"not a regular file"}); }
  SUBCASE("file shorter than the length field") {
    const std::string p = dir.file("short.safetensors");
    std::ofstream(p, std::ios::binary) << "abc";
    check_load_fails(p, {"too short"});
  }
  SUBCASE("empty file") {
    const std::string p = dir.file("zero.safetensors");
    std::ofstream(p, std::ios::binary).flush();
    check_load_fails(p, {"too short"});
  }
  SUBCASE("header length larger than the file (checked before allocating)") {
    const std::string p = dir.file("len.safetensors");
    write_raw(p, ok_header, ok_data, int64_t{1} << 50);
    check_load_fails(p, {"header length", "exceeds the file size"});
    write_raw(p, ok_header, ok_data, INT64_MAX);
    check_load_fails(p, {"header length"});
  }
  SUBCASE("truncated file: data cut short") {
    const std::string p = dir.file("trunc.safetensors");
    io::save_safetensors(p, {{"w", Tensor::full({2, 3}, 1.0f)}});
    fs::resize_file(p, fs::file_size(p) - 3);
    check_load_fails(p, {"tensor 'w'", "outside the data section"});
  }
  SUBCASE("truncated file: header cut short") {
    const std::string p = dir.file("trunc2.safetensors");
    io::save_safetensors(p, {{"w", Tensor::full({2, 3}, 1.0f)}});
    fs::resize_file(p, 20);
    check_load_fails(p, {"header length"});
  }
  SUBCASE("invalid JSON") {
    const std::string p = dir.file("json.safetensors");
    write_raw(p, R"({"w":{"dtype":"F32",)", ok_data);
    check_load_fails(p, {"not valid JSON"});
  }
  SUBCASE("header is not an object") {
    const std::string p = dir.file("arr.safetensors");
    write_raw(p, "[1, 2, 3]", ok_data);
    check_load_fails(p, {"not a JSON object"});
  }
  SUBCASE("entry is not an object") {
    const std::string p = dir.file("entry.safetensors");
    write_raw(p, R"({"w":[1,2]})", ok_data);
    check_load_fails(p, {"tensor 'w'", "not a JSON object"});
  }
  SUBCASE("unknown and unsupported dtypes") {
    const std::string p = dir.file("dtype.safetensors");
    write_raw(p, entry(R"("dtype":"F16","shape":[2,3],"data_offsets":[0,12])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "unsupported dtype \"F16\""});
    write_raw(p, entry(R"("dtype":"Q7","shape":[2,3],"data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "Q7"});
  }
  SUBCASE("missing or ill-typed fields") {
    const std::string p = dir.file("fields.safetensors");
    write_raw(p, entry(R"("shape":[2,3],"data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "dtype"});
    write_raw(p, entry(R"("dtype":7,"shape":[2,3],"data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "dtype"});
    write_raw(p, entry(R"("dtype":"F32","shape":"2x3","data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "shape"});
    write_raw(p, entry(R"("dtype":"F32","shape":[2,-3],"data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "-3"});
    write_raw(p, entry(R"("dtype":"F32","shape":[2,3.0],"data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "non-negative integer"});
    write_raw(p, entry(R"("dtype":"F32","shape":[2,3])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "data_offsets"});
    write_raw(p, entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,12,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "data_offsets"});
    write_raw(p, entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[-4,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "data_offsets"});
  }
  SUBCASE("metadata values must be strings") {
    const std::string p = dir.file("meta.safetensors");
    write_raw(p, R"({"__metadata__":{"step":12}})", "");
    check_load_fails(p, {"metadata", "step"});
    write_raw(p, R"({"__metadata__":"x"})", "");
    check_load_fails(p, {"__metadata__"});
  }
  SUBCASE("rank above 5") {
    const std::string p = dir.file("rank.safetensors");
    write_raw(p, entry(R"("dtype":"U8","shape":[1,1,1,1,1,2],"data_offsets":[0,2])"), "ab");
    check_load_fails(p, {"tensor 'w'", "rank 6"});
  }
  SUBCASE("shape product overflows") {
    const std::string p = dir.file("overflow.safetensors");
    // 2^32 * 2^32 * 16 wraps to 0 in 64 bits, matching empty offsets if unchecked.
    write_raw(p, entry(R"("dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0])"),
              "");
    check_load_fails(p, {"tensor 'w'", "overflows"});
    // numel fits but numel * 8 bytes does not.
    write_raw(p, entry(R"("dtype":"I64","shape":[2305843009213693952,2],"data_offsets":[0,0])"), "");
    check_load_fails(p, {"tensor 'w'", "overflows"});
  }
  SUBCASE("offsets past the end of the data") {
    const std::string p = dir.file("past.safetensors");
    write_raw(p, entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[8,32])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "outside the data section"});
    write_raw(p, entry(R"("dtype":"F32","shape":[0],"data_offsets":[30,30])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "outside the data section"});
    write_raw(p, entry(R"("dtype":"F32","shape":[0],"data_offsets":[8,4])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "outside the data section"});
  }
  SUBCASE("offsets inconsistent with shape and dtype") {
    const std::string p = dir.file("size.safetensors");
    write_raw(p, entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,20])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "needs 24"});
    write_raw(p, entry(R"("dtype":"I64","shape":[2,3],"data_offsets":[0,24])"), ok_data);
    check_load_fails(p, {"tensor 'w'", "needs 48"});
  }
  SUBCASE("the good file really is good") {
    const std::string p = dir.file("good.safetensors");
    write_raw(p, ok_header, ok_data);
    CHECK(io::load_safetensors(p).at("w").data<float>()[5] == 6.0f);
  }
}

TEST_CASE("safetensors: saving rejects bad arguments before touching the file") {
  TempDir dir;
  const std::string p = dir.file("x.safetensors");
  std::string msg = error_of([&] { io::save_safetensors(p, {{"w", Tensor()}}); });
  CHECK(msg.find(p) != std::string::npos);
  CHECK(msg.find("'w'") != std::string::npos);
  msg = error_of([&] { io::save_safetensors(p, {{"__metadata__", Tensor::zeros({1})}}); });
  CHECK(msg.find(p) != std::string::npos);
  msg = error_of([&] { io::save_safetensors(p, {{"w", Tensor::zeros({1})}}, {{"k", "\xff\xfe"}}); });
  CHECK(msg.find(p) != std::string::npos);
  CHECK(dir.names().empty());
}

TEST_CASE("safetensors: atomic write") {
  TempDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  const Tensor good = Tensor::full({4, 4}, 3.0f);

  SUBCASE("leaves exactly the target file, and replaces an existing one") {
    io::save_safetensors(path, {{"w", Tensor::full({2}, 1.0f)}});
    io::save_safetensors(path, {{"w", good}});
    CHECK(dir.names() == std::set<std::string>{"ckpt.safetensors"});
    CHECK(same_bytes(io::load_safetensors(path).at("w"), good));
  }
  SUBCASE("target is a directory: throws, removes the temp file, keeps the directory") {
    fs::create_directory(path);
    std::string msg = error_of([&] { io::save_safetensors(path, {{"w", good}}); });
    CHECK(msg.find(path) != std::string::npos);
    CHECK(fs::is_directory(path));
    CHECK(dir.names() == std::set<std::string>{"ckpt.safetensors"});
  }
  SUBCASE("target directory does not exist") {
    const std::string p = dir.file("missing/ckpt.safetensors");
    std::string msg = error_of([&] { io::save_safetensors(p, {{"w", good}}); });
    CHECK(msg.find(p) != std::string::npos);
    CHECK(dir.names().empty());
  }
  SUBCASE("target directory not writable (meaningful only when not root)") {
    if (::geteuid() != 0) {
      io::save_safetensors(path, {{"w", good}});
      fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
      std::string msg = error_of([&] { io::save_safetensors(path, {{"w", Tensor::zeros({1})}}); });
      fs::permissions(dir.path, fs::perms::owner_all);
      CHECK(msg.find(path) != std::string::npos);
      CHECK(same_bytes(io::load_safetensors(path).at("w"), good));
    }
  }
  SUBCASE("a write failing halfway keeps the old file and removes the temp file") {
    io::save_safetensors(path, {{"w", good}});
    // Root ignores permissions, so provoke a real mid-write failure instead:
    // cap the file size (write then fails with EFBIG; SIGXFSZ is ignored so
    // it does not kill the process). Only the save runs under the cap.
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    struct rlimit cap = old;
    cap.rlim_cur = 64 * 1024;
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &cap) == 0);
    std::string msg;
    try {
      io::save_safetensors(path, {{"w", Tensor::zeros({512, 1024})}});  // 2 MB
    } catch (const bonsai::Error& e) {
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    INFO("message: " << msg);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("write") != std::string::npos);
    CHECK(dir.names() == std::set<std::string>{"ckpt.safetensors"});
    CHECK(same_bytes(io::load_safetensors(path).at("w"), good));
  }
}

TEST_CASE("safetensors: sparse tensors — smaller files, exact round trip, validated on read") {
  TempDir dir;
  std::mt19937 rng(4);
  Tensor w = Tensor::randn({64, 33}, rng);
  for (int64_t i = 0; i < w.numel(); ++i)
    if (i % 5 != 0) w.data<float>()[i] = 0.0f;  // 80% zeros
  Tensor q = Tensor::zeros({100}, bonsai::DType::s8);
  q.data<int8_t>()[7] = -3;
  Tensor dense = Tensor::randn({50}, rng);  // no zeros: stays dense
  const std::map<std::string, Tensor> ts{{"w", w}, {"q", q}, {"dense", dense}};
  io::save_safetensors(dir.file("plain.safetensors"), ts, {{"k", "v"}});
  io::save_safetensors(dir.file("sparse.safetensors"), ts, {{"k", "v"}}, {.sparse = true});
  const auto plain = fs::file_size(dir.file("plain.safetensors"));
  const auto sparse = fs::file_size(dir.file("sparse.safetensors"));
  CHECK(sparse < plain * 0.45);
  io::SafetensorsFile f = io::read_safetensors(dir.file("sparse.safetensors"));
  CHECK(f.tensors.size() == 3);
  CHECK(f.metadata == std::map<std::string, std::string>{{"k", "v"}});
  CHECK(same_bytes(f.tensors.at("w"), w));
  CHECK(same_bytes(f.tensors.at("q"), q));
  CHECK(same_bytes(f.tensors.at("dense"), dense));

  SUBCASE("a mask whose bits do not match the values is refused, naming the tensor") {
    // Hand-written: one set bit in the mask, two values.
    const std::string header =
        R"({"w.__mask":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
        R"("w.__nz":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},)"
        R"("__metadata__":{"bonsai.sparse":"{\"w\":[4]}"}})";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(header.size() >> (8 * i));
    bytes += header;
    bytes += std::string("\x01", 1) + std::string(8, '\0');
    std::ofstream(dir.file("bad.safetensors"), std::ios::binary) << bytes;
    CHECK_THROWS_WITH_AS(io::read_safetensors(dir.file("bad.safetensors")), doctest::Contains("1 set bits for 2 values"),
                         bonsai::Error);
  }
  CHECK_THROWS_WITH_AS(io::save_safetensors(dir.file("x.safetensors"), {{"a.__mask", q}}), doctest::Contains("reserved"),
                       bonsai::Error);
}
