#include "core/io/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace bonsai::io {

namespace {

const uint32_t* crc_table() {
  static uint32_t table[256];
  static bool ready = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // reflected Castagnoli
      table[i] = c;
    }
    return true;
  }();
  (void)ready;
  return table;
}

// Protobuf wire encoding, the few pieces events need.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_tag(std::string& out, int field, int wire) { put_varint(out, (static_cast<uint64_t>(field) << 3) | wire); }
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}
template <typename T>
void put_fixed(std::string& out, int field, T v) {
  put_tag(out, field, sizeof(T) == 8 ? 1 : 5);
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian host (x86-64)
  out.append(b, sizeof(T));
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Reading side.
struct Cursor {
  const std::string& s;
  size_t pos;
  size_t end;
  const std::string& path;
  bool done() const { return pos >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      BONSAI_CHECK(pos < end, "event file '" + path + "': truncated varint");
      uint8_t b = static_cast<uint8_t>(s[pos++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    BONSAI_CHECK(false, "event file '" + path + "': varint too long");
    return 0;
  }
  std::string bytes() {
    uint64_t n = varint();
    BONSAI_CHECK(n <= end - pos, "event file '" + path + "': field runs past its message");
    std::string b = s.substr(pos, n);
    pos += n;
    return b;
  }
  template <typename T>
  T fixed() {
    BONSAI_CHECK(sizeof(T) <= end - pos, "event file '" + path + "': truncated fixed field");
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: fixed<uint64_t>(); break;
      case 2: bytes(); break;
      case 5: fixed<uint32_t>(); break;
      default: BONSAI_CHECK(false, "event file '" + path + "': unsupported wire type " + std::to_string(wire));
    }
  }
};

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const uint32_t* t = crc_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::string& dir) {
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  BONSAI_CHECK(!ec, "cannot create TensorBoard directory '" + dir + "': " + ec.message());
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." + host +
          "." + std::to_string(getpid()) + ".bonsai";
  f_ = std::fopen(path_.c_str(), "ab");
  BONSAI_CHECK(f_ != nullptr, "cannot open TensorBoard event file '" + path_ + "'");
  std::string ev;
  put_fixed(ev, 1, now_seconds());
  put_bytes(ev, 3, "brain.Event:2");
  write_record(ev);
  flush();
}

EventWriter::~EventWriter() {
  if (f_) std::fclose(f_);
}

void EventWriter::write_record(const std::string& payload) {
  if (!f_) return;
  char len[8];
  uint64_t n = payload.size();
  std::memcpy(len, &n, 8);
  uint32_t lc = masked_crc32c(len, 8), dc = masked_crc32c(payload.data(), payload.size());
  bool ok = std::fwrite(len, 1, 8, f_) == 8 && std::fwrite(&lc, 1, 4, f_) == 4 &&
            std::fwrite(payload.data(), 1, payload.size(), f_) == payload.size() &&
            std::fwrite(&dc, 1, 4, f_) == 4;
  BONSAI_CHECK(ok, "writing TensorBoard event file '" + path_ + "' failed (disk full?)");
}

void EventWriter::scalar(const std::string& tag, int64_t step, float value) {
  std::string v;
  put_bytes(v, 1, tag);
  put_fixed(v, 2, value);
  std::string summary;
  put_bytes(summary, 1, v);
  std::string ev;
  put_fixed(ev, 1, now_seconds());
  put_tag(ev, 2, 0);
  put_varint(ev, static_cast<uint64_t>(step));
  put_bytes(ev, 5, summary);
  write_record(ev);
}

void EventWriter::flush() {
  if (f_) std::fflush(f_);
}

std::vector<ScalarEvent> read_scalar_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  BONSAI_CHECK(in.good(), "cannot open event file '" + path + "'");
  std::string s((std::istreambuf_iterator<char>(in)), {});
  std::vector<ScalarEvent> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const std::string at = " at byte " + std::to_string(pos);
    BONSAI_CHECK(s.size() - pos >= 12, "event file '" + path + "': truncated record header" + at);
    uint64_t n;
    uint32_t lc, dc;
    std::memcpy(&n, s.data() + pos, 8);
    std::memcpy(&lc, s.data() + pos + 8, 4);
    BONSAI_CHECK(lc == masked_crc32c(s.data() + pos, 8), "event file '" + path + "': length CRC mismatch" + at);
    // 16 bytes of framing first: with 12..15 left, s.size() - pos - 16 would wrap.
    BONSAI_CHECK(s.size() - pos >= 16 && n <= s.size() - pos - 16,
                 "event file '" + path + "': truncated record" + at);
    std::memcpy(&dc, s.data() + pos + 12 + n, 4);
    BONSAI_CHECK(dc == masked_crc32c(s.data() + pos + 12, n), "event file '" + path + "': data CRC mismatch" + at);
    Cursor ev{s, pos + 12, pos + 12 + n, path};
    pos += 16 + n;
    double wall = 0;
    int64_t step = 0;
    std::vector<std::pair<std::string, float>> values;
    while (!ev.done()) {
      uint64_t key = ev.varint();
      int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
      if (field == 1 && wire == 1) wall = ev.fixed<double>();
      else if (field == 2 && wire == 0) step = static_cast<int64_t>(ev.varint());
      else if (field == 5 && wire == 2) {
        std::string summary = ev.bytes();
        Cursor sc{summary, 0, summary.size(), path};
        while (!sc.done()) {
          uint64_t k = sc.varint();
          if ((k >> 3) != 1 || (k & 7) != 2) {
            sc.skip(static_cast<int>(k & 7));
            continue;
          }
          std::string value = sc.bytes();
          Cursor vc{value, 0, value.size(), path};
          std::string tag;
          float v = 0.f;
          bool has = false;
          while (!vc.done()) {
            uint64_t vk = vc.varint();
            if ((vk >> 3) == 1 && (vk & 7) == 2) tag = vc.bytes();
            else if ((vk >> 3) == 2 && (vk & 7) == 5) {
              v = vc.fixed<float>();
              has = true;
            } else vc.skip(static_cast<int>(vk & 7));
          }
          if (has) values.emplace_back(tag, v);
        }
      } else {
        ev.skip(wire);
      }
    }
    for (auto& [tag, v] : values) out.push_back({tag, step, v, wall});
  }
  return out;
}

}  // namespace bonsai::io
