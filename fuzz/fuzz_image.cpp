// Fuzzes the image decode path (data/image.h): bonsai's PNG chunk walk (CRCs,
// IHDR, IEND), the size limits checked from the header, libjpeg-turbo's JPEG
// decoder behind bonsai's error and warning handling (Debian's prebuilt
// library: not instrumented, so guided only by bonsai's own code; it is
// fuzzed upstream by OSS-Fuzz) and stb_image's PNG decoder (instrumented,
// fuzz/stb_image_instrumented.cpp), for both decode_image_memory (RGB
// images) and decode_mask_memory (VOC palette/RGB and gray masks). The
// first byte picks which; the rest is the file.
#include "data/image.h"
#include "fuzz/fuzz_util.h"

using namespace bonsai;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool mask = data[0] & 1;
  // A few KB of JPEG can legitimately claim (and decode to) up to the 2^28
  // pixels bonsai accepts; decoding those takes seconds under ASan and
  // tells nothing new. Claims above the limit still go through (refused
  // from the header), as do all images up to 2^20 pixels.
  int64_t pixels = 0;
  fuzz::refusal_ok([&] {
    data::ImageInfo info = data::read_image_info_memory(data + 1, size - 1, "fuzz");
    pixels = info.height * info.width;
  });
  if (pixels > (int64_t{1} << 20)) return 0;
  fuzz::refusal_ok([&] {
    Tensor t = mask ? data::decode_mask_memory(data + 1, size - 1, "fuzz")
                    : data::decode_image_memory(data + 1, size - 1, "fuzz");
    BONSAI_CHECK(t.rank() == (mask ? 2 : 3), "impossible");
  });
  return 0;
}
