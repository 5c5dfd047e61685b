// Fuzzes io::read_scalar_events (core/io/tensorboard.h): TFRecord framing
// and the hand-written protobuf walk of Event → Summary → Value.
//
// Both CRCs guard every record, so random bytes rarely get past the framing.
// Even inputs are therefore taken as-is (the framing and CRC checks), odd
// ones as a sequence of payloads that the harness frames with correct CRCs
// (the protobuf walk): byte 0 is the mode, then each payload is a 1-byte
// length followed by that many bytes.
#include "core/io/tensorboard.h"
#include "fuzz/fuzz_util.h"

#include <cstring>

using namespace bonsai;

namespace {

std::string frame(const uint8_t* data, size_t size) {
  std::string out;
  size_t pos = 0;
  while (pos < size) {
    size_t n = std::min<size_t>(data[pos++], size - pos);
    uint64_t len = n;
    char len_bytes[8];
    std::memcpy(len_bytes, &len, 8);
    uint32_t lc = io::masked_crc32c(len_bytes, 8), dc = io::masked_crc32c(data + pos, n);
    out.append(len_bytes, 8);
    out.append(reinterpret_cast<const char*>(&lc), 4);
    out.append(reinterpret_cast<const char*>(data + pos), n);
    out.append(reinterpret_cast<const char*>(&dc), 4);
    pos += n;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string path;
  if (data[0] & 1) {
    std::string framed = frame(data + 1, size - 1);
    path = fuzz::as_file(reinterpret_cast<const uint8_t*>(framed.data()), framed.size(), "events");
  } else {
    path = fuzz::as_file(data + 1, size - 1, "events");
  }
  fuzz::refusal_ok([&] { (void)io::read_scalar_events(path); });
  return 0;
}
