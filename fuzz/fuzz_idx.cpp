// Fuzzes data::read_idx (data/idx.h): the IDX magic, rank and extents, the
// data size check, and the gzip path (zlib inflate, concatenated members,
// trailing garbage).
#include "data/idx.h"
#include "fuzz/fuzz_util.h"

using namespace bonsai;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size, "input.idx");
  fuzz::refusal_ok([&] {
    Tensor t = data::read_idx(path);
    volatile uint8_t sink = 0;
    const auto* p = static_cast<const uint8_t*>(t.raw());
    for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
  });
  return 0;
}
