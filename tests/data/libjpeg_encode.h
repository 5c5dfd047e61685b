// A libjpeg encoder for the JPEG kinds bonsai's own writer (stb_image_write)
// cannot make: grayscale and CMYK, progressive scripts, restart markers,
// chosen chroma sampling. Shared by the JPEG tests and the fuzz seed maker;
// header-only, with no test framework.
#pragma once

#include <cstdio>  // before jpeglib.h
#include <cstdint>
#include <cstdlib>
#include <jpeglib.h>

#include <vector>

namespace bonsai::testing {

struct LibjpegEncode {
  J_COLOR_SPACE in = JCS_RGB;  // what `pixels` hold: JCS_RGB, JCS_GRAYSCALE or JCS_CMYK
  int quality = 95;
  bool subsample = false;      // libjpeg's default sampling (4:2:0 for colour); else 4:4:4
  bool progressive = false;    // libjpeg's default progressive script
  std::vector<jpeg_scan_info> scans;  // a custom scan script (progressive)
  unsigned restart_interval = 0;      // MCUs between restart markers; 0: none
};

// `pixels` (h x w x components, as `o.in` says) encoded by libjpeg. Only
// valid parameters may be passed: libjpeg's default error handler exits.
inline std::vector<uint8_t> libjpeg_encode(const uint8_t* pixels, int w, int h, const LibjpegEncode& o) {
  jpeg_compress_struct c{};
  jpeg_error_mgr err{};
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.in_color_space = o.in;
  c.input_components = o.in == JCS_GRAYSCALE ? 1 : o.in == JCS_CMYK ? 4 : 3;
  jpeg_set_defaults(&c);
  if (o.in == JCS_CMYK) jpeg_set_colorspace(&c, JCS_CMYK);  // as Photoshop stores it (not YCCK)
  jpeg_set_quality(&c, o.quality, TRUE);
  if (!o.subsample)
    for (int i = 0; i < c.num_components; ++i) c.comp_info[i].h_samp_factor = c.comp_info[i].v_samp_factor = 1;
  if (o.progressive) jpeg_simple_progression(&c);
  if (!o.scans.empty()) {
    c.scan_info = o.scans.data();
    c.num_scans = static_cast<int>(o.scans.size());
  }
  c.restart_interval = o.restart_interval;
  jpeg_start_compress(&c, TRUE);
  const int stride = w * c.input_components;
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels) + size_t{c.next_scanline} * stride;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  jpeg_destroy_compress(&c);
  std::free(buf);
  return out;
}

}  // namespace bonsai::testing
