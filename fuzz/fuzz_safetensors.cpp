// Fuzzes io::read_safetensors (core/io/safetensors.h): the 8-byte header
// length, the JSON header (dtypes, shapes, data_offsets, __metadata__), the
// data section and bonsai's sparse encoding (".__mask"/".__nz" parts and the
// "bonsai.sparse" metadata key).
#include "core/io/safetensors.h"
#include "fuzz/fuzz_util.h"

using namespace bonsai;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size, "input.safetensors");
  fuzz::refusal_ok([&] {
    io::SafetensorsFile f = io::read_safetensors(path);
    // Touch every byte the reader claims to own, so a tensor whose storage
    // is smaller than its shape shows up under ASan.
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : f.tensors) {
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
    }
  });
  return 0;
}
