#include "export/protobuf.h"

#include <cstring>

#include "core/check.h"

namespace bonsai::exporters::protobuf {

void append_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

void append_key(std::vector<uint8_t>& out, int field, WireType type) {
  BONSAI_CHECK(field >= 1 && field < (1 << 29), "protobuf: bad field number " + std::to_string(field));
  append_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(type));
}

namespace {

void append_fixed32(std::vector<uint8_t>& out, float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(u >> (8 * i)));
}

}  // namespace

void Message::add_int(int field, int64_t v) {
  append_key(bytes_, field, WireType::varint);
  append_varint(bytes_, static_cast<uint64_t>(v));  // two's complement: negatives sign-extend to 64 bits
}

void Message::add_float(int field, float v) {
  append_key(bytes_, field, WireType::fixed32);
  append_fixed32(bytes_, v);
}

void Message::add_string(int field, const std::string& s) { add_bytes(field, s.data(), s.size()); }

void Message::add_bytes(int field, const void* data, size_t size) {
  append_key(bytes_, field, WireType::length_delimited);
  append_varint(bytes_, size);
  const auto* p = static_cast<const uint8_t*>(data);
  bytes_.insert(bytes_.end(), p, p + size);
}

void Message::add_message(int field, const Message& m) { add_bytes(field, m.bytes_.data(), m.bytes_.size()); }

void Message::add_packed_ints(int field, const std::vector<int64_t>& values) {
  std::vector<uint8_t> payload;
  for (int64_t v : values) append_varint(payload, static_cast<uint64_t>(v));
  add_bytes(field, payload.data(), payload.size());
}

void Message::add_packed_floats(int field, const std::vector<float>& values) {
  std::vector<uint8_t> payload;
  payload.reserve(values.size() * 4);
  for (float v : values) append_fixed32(payload, v);
  add_bytes(field, payload.data(), payload.size());
}

}  // namespace bonsai::exporters::protobuf
