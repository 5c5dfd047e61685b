// Fuzzes the image decode path (data/image.h): bonsai's PNG chunk walk (CRCs,
// IHDR, IEND), the size limits checked from the header, and stb_image's JPEG
// and PNG decoders behind them, for both decode_image_memory (RGB images) and
// decode_mask_memory (VOC palette/RGB and gray masks). The first byte picks
// which; the rest is the file.
#include <stb/stb_image.h>

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
  // (Asked only of JPEG and PNG bytes: bonsai refuses every other format
  // before stb_image sees it.)
  const bool jpeg_or_png = size > 4 && ((data[1] == 0xFF && data[2] == 0xD8) || (data[1] == 0x89 && data[2] == 'P'));
  int w = 0, h = 0, c = 0;
  if (jpeg_or_png && stbi_info_from_memory(data + 1, static_cast<int>(size - 1), &w, &h, &c) &&
      int64_t{w} * h > (int64_t{1} << 20) && int64_t{w} * h <= data::kMaxImagePixels)
    return 0;
  fuzz::refusal_ok([&] {
    Tensor t = mask ? data::decode_mask_memory(data + 1, size - 1, "fuzz")
                    : data::decode_image_memory(data + 1, size - 1, "fuzz");
    BONSAI_CHECK(t.rank() == (mask ? 2 : 3), "impossible");
  });
  return 0;
}
