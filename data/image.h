// Image files: decoding JPEG/PNG into u8 RGB tensors, decoding segmentation
// masks into class indices, and writing JPEG and PNG files atomically.
// JPEG is decoded by libjpeg-turbo, PNG by stb_image; other formats (PNM,
// BMP, GIF, ...) are refused.
//
//   Tensor img = data::decode_image("JPEGImages/2007_000032.jpg");   // u8 [H, W, 3]
//   Tensor mask = data::decode_mask("SegmentationClass/2007_000032.png");  // u8 [H, W]
//   data::write_jpeg("out.jpg", img, {.quality = 95});
//   data::write_mask_png("out.png", mask);  // RGB PNG in the VOC colours
//
// Every file comes from outside, so it is checked before it is trusted, and
// every error is a bonsai::Error that names the file:
//   - missing, a directory, or empty (0 bytes);
//   - PNG: the chunk structure is walked and every chunk's CRC-32 checked, and
//     IEND must be present. stb_image skips CRCs and decodes a PNG cut just
//     before IEND, and a flipped bit inside IDAT often decodes to wrong pixels
//     without complaint; for masks that would mean silently wrong labels.
//   - JPEG: libjpeg's errors, and its warnings too: where libjpeg would carry
//     on over damaged data (a file cut anywhere, including one missing only
//     its EOI marker; a scan that ends early; a bad Huffman code; stray bytes
//     between markers) the file is refused instead of decoded into partly
//     made-up pixels. JPEG has no checksum, so a flipped bit in the
//     entropy-coded data that still decodes cleanly gives wrong pixels; no
//     decoder can tell, and neither can we. Progressive JPEGs with more than
//     500 scans, or needing more than 1 GiB of decoder memory, are refused.
//   - absurd sizes: the header is read before decoding and images over
//     kMaxImagePixels pixels are refused before anything that size is
//     allocated.
// The message carries libjpeg's or stb_image's reason.
//
// The format is told by the bytes, never the name: ImageNet's train set holds
// a PNG named .JPEG and a few CMYK JPEGs; both are read (CMYK/YCCK converted
// to RGB as stb_image and PIL do). EXIF orientation is ignored, as TF's
// decode_jpeg and PIL do by default.
//
// Masks. Pascal VOC stores SegmentationClass as palette PNGs whose palette is
// the standard VOC colormap (index i -> voc_color(i); 0 background = black,
// 255 "ignore"/boundary = (224, 224, 192)). stb_image expands palettes to RGB,
// so decode_mask maps the colours back to indices. Single-channel PNGs whose
// values ARE the indices (SBD's SegmentationClassAug, most re-encodings) are
// read as they are. stb_image_write cannot write palette PNGs, so
// write_mask_png writes RGB PNGs in the VOC colours; decode_mask reads both,
// and so does any tool that knows the VOC colormap.
//
// Thread safety: decoding is reentrant (each JPEG decode has its own libjpeg
// state; stb_image keeps its failure reason per thread); nothing here touches
// stb's global flags.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace bonsai::data {

// 2^28 pixels (16384 x 16384): far beyond any photo in ImageNet or VOC, still
// small enough (768 MiB as RGB) that a lying header cannot take the machine.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

struct ImageInfo {
  int64_t height = 0, width = 0;
  // As stored: 1 gray, 2 gray+alpha, 3 RGB (and palette; JPEG's YCbCr, RGB
  // and CMYK), 4 RGBA.
  int channels = 0;
};

// The header of an image file, without decoding the pixels. Same checks on
// the file as decode_image (the PNG structure, the size limit included).
ImageInfo read_image_info(const std::string& path);
ImageInfo read_image_info_memory(const uint8_t* bytes, size_t size, const std::string& name);

// Decodes an image into u8 [H, W, 3] RGB; gray is replicated, alpha dropped
// (not composited), 16-bit samples reduced to 8.
Tensor decode_image(const std::string& path);
// The same from bytes in memory; `name` is what errors call them.
Tensor decode_image_memory(const uint8_t* bytes, size_t size, const std::string& name);

// The standard Pascal VOC colormap: index bits 0,3,6 go to the top bits of
// red, 1,4,7 to green, 2,5 to blue. It is a bijection on 0..255.
std::array<uint8_t, 3> voc_color(int index);
// The index whose colour is (r, g, b), or -1 if it is not a VOC colour.
int voc_index(uint8_t r, uint8_t g, uint8_t b);

// Decodes a segmentation mask PNG into u8 [H, W] class indices:
//   - palette or RGB(A) PNG: every pixel must be a VOC colormap colour
//     (alpha ignored); the error for one that is not names the pixel and colour;
//   - gray (8-bit, or 1/2/4-bit, whose values stb_image scales up and this
//     scales back) PNG: the values are the indices.
// 16-bit masks and non-PNG files (a JPEG would have smeared the colours) are
// refused. Index values are NOT checked against a class count here; the
// dataset that knows the classes does that.
Tensor decode_mask(const std::string& path);
Tensor decode_mask_memory(const uint8_t* bytes, size_t size, const std::string& name);

struct JpegOptions {
  int quality = 95;  // 1..100. stb_image_write subsamples chroma (4:2:0) only at quality <= 90.
};

// The writers take u8 [H, W, 3] (RGB) or u8 [H, W] / [H, W, 1] (gray; a
// JPEG still stores YCbCr, with neutral chroma that decodes to R = G = B).
// They encode in memory, write to a temporary name beside
// `path` and rename it over `path`, so no reader ever sees half a file and a
// failed or killed writer leaves any old file in place. They do not fsync
// (preparation writes tens of thousands of files): after a power cut a
// just-written file may be empty or lost, as with any unsynced write.
void write_jpeg(const std::string& path, const Tensor& image, const JpegOptions& options = {});
void write_png(const std::string& path, const Tensor& image);
// A mask u8 [H, W] of class indices, as an RGB PNG in the VOC colours.
void write_mask_png(const std::string& path, const Tensor& mask);

// Encoders into memory (what the writers write).
std::vector<uint8_t> encode_jpeg(const Tensor& image, const JpegOptions& options = {});
std::vector<uint8_t> encode_png(const Tensor& image);

// Writes `bytes` to `path` through a temporary file and rename (see above).
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);
// The whole file; errors name it (missing, a directory, unreadable, > 2 GiB).
std::vector<uint8_t> read_file_bytes(const std::string& path);

// True for the extensions image folders hold: .jpg .jpeg .png, any case.
bool has_image_extension(const std::string& filename);

}  // namespace bonsai::data
