// A minimal protobuf wire-format writer: enough to encode ONNX's ModelProto
// (export/onnx.cpp) without the protobuf library.
//
//   protobuf::Message tensor;
//   tensor.add_packed_int64s(1, {4, 3});          // dims
//   tensor.add_int(2, 3);                          // data_type INT8
//   tensor.add_bytes(9, raw.data(), raw.size());   // raw_data
//   protobuf::Message graph;
//   graph.add_message(5, tensor);                  // initializer
//   const std::vector<uint8_t>& bytes = graph.bytes();
//
// The wire format: a message is a sequence of fields, each a key — the
// varint (field_number << 3) | wire_type — followed by its payload:
//   wire type 0 (varint):   integers, 7 bits per byte, low bits first, the
//                           top bit set on every byte but the last; negative
//                           int32/int64 are sign-extended to 64 bits (10 bytes);
//   wire type 2 (length-delimited): a varint byte count, then the bytes —
//                           strings, bytes, nested messages and packed
//                           repeated scalars (their payloads concatenated);
//   wire type 5 (fixed32):  4 bytes little-endian (float).
// Fields are written in the order the add_* calls make; readers accept any
// order. Nested messages are built bottom-up and copied into their parent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bonsai::exporters::protobuf {

enum class WireType : uint32_t { varint = 0, fixed64 = 1, length_delimited = 2, fixed32 = 5 };

// Appends `v` as a base-128 varint (1 to 10 bytes).
void append_varint(std::vector<uint8_t>& out, uint64_t v);
// Appends a field key: (field << 3) | wire type.
void append_key(std::vector<uint8_t>& out, int field, WireType type);

class Message {
 public:
  // int32/int64/enum/bool fields (wire type 0); negative values take 10 bytes.
  void add_int(int field, int64_t v);
  // float fields (wire type 5).
  void add_float(int field, float v);
  // string and bytes fields (wire type 2).
  void add_string(int field, const std::string& s);
  void add_bytes(int field, const void* data, size_t size);
  // A nested message (wire type 2).
  void add_message(int field, const Message& m);
  // Packed repeated scalars: one length-delimited field holding all values
  // (repeated int32/int64 as varints, repeated float as fixed32).
  void add_packed_ints(int field, const std::vector<int64_t>& values);
  void add_packed_floats(int field, const std::vector<float>& values);

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  std::vector<uint8_t> release() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace bonsai::exporters::protobuf
