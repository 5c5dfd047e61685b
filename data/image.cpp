#include "data/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <csetjmp>
#include <cstdio>  // before jpeglib.h, which uses FILE
#include <cstring>
#include <memory>

#include <jerror.h>
#include <jpeglib.h>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

namespace bonsai::data {

namespace {

std::string errno_str(int err) { return std::strerror(err); }

// How messages open: "image 'JPEGImages/x.jpg': ".
std::string where(const char* what, const std::string& name) {
  return std::string(what) + " '" + name + "': ";
}

enum class Format { jpeg, png, other };

Format sniff(const uint8_t* b, size_t n) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (n >= 8 && std::memcmp(b, kPng, 8) == 0) return Format::png;
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return Format::jpeg;
  return Format::other;
}

const char* format_name(Format f) {
  switch (f) {
    case Format::jpeg: return "JPEG";
    case Format::png: return "PNG";
    default: return "image";
  }
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string chunk_name(const uint8_t* p) {
  std::string s;
  for (int i = 0; i < 4; ++i) s += std::isprint(p[i]) ? static_cast<char>(p[i]) : '?';
  return s;
}

struct PngHeader {
  uint32_t width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
};

// Walks the chunk list of a PNG: IHDR first, every CRC-32 right, IEND
// present. Bytes after IEND are tolerated (some writers pad files).
PngHeader validate_png(const uint8_t* b, size_t n, const std::string& prefix) {
  size_t pos = 8;
  PngHeader h;
  bool first = true;
  for (;;) {
    BONSAI_CHECK(n - pos >= 12, prefix + "truncated PNG: " +
                                    (first ? std::string("no IHDR chunk")
                                           : "no IEND chunk (file ends at byte " +
                                                 std::to_string(n) + ")"));
    uint32_t len = be32(b + pos);
    const uint8_t* type = b + pos + 4;
    std::string name = chunk_name(type);
    BONSAI_CHECK(len <= 0x7FFFFFFFu, prefix + "corrupt PNG: chunk '" + name + "' at byte " +
                                         std::to_string(pos) + " claims " + std::to_string(len) +
                                         " bytes");
    BONSAI_CHECK(n - pos - 12 >= len, prefix + "truncated PNG: chunk '" + name + "' at byte " +
                                          std::to_string(pos) + " needs " +
                                          std::to_string(len + 12) + " bytes, file has " +
                                          std::to_string(n - pos) + " left");
    uint32_t stored = be32(type + 4 + len);
    uint32_t crc = static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), type, len + 4));
    BONSAI_CHECK(crc == stored, prefix + "corrupt PNG: CRC mismatch in chunk '" + name +
                                    "' at byte " + std::to_string(pos));
    if (first) {
      BONSAI_CHECK(name == "IHDR" && len == 13,
                   prefix + "corrupt PNG: the first chunk is '" + name + "', not a 13-byte IHDR");
      h.width = be32(type + 4);
      h.height = be32(type + 8);
      h.bit_depth = type[12];
      h.color_type = type[13];
      first = false;
    }
    pos += 12 + len;
    if (name == "IEND") return h;
  }
}

std::string stb_reason() {
  const char* r = stbi_failure_reason();
  return r ? r : "unknown error";
}

void check_pixels(int64_t w, int64_t h, const std::string& prefix) {
  BONSAI_CHECK(w > 0 && h > 0 && w * h <= kMaxImagePixels,
               prefix + "refusing a " + std::to_string(w) + "x" + std::to_string(h) +
                   " image (more than 2^28 pixels, or empty)");
}

// Checks common to images and masks, before any pixel is decoded. Returns
// the format; for PNGs, fills `png` and checks the size from the header
// (JPEG headers are read by JpegDecoder, which the caller makes).
Format check_file(const uint8_t* bytes, size_t size, const std::string& prefix, PngHeader* png) {
  BONSAI_CHECK(size > 0, prefix + "empty file (0 bytes)");
  BONSAI_CHECK(size <= static_cast<size_t>(INT_MAX),
               prefix + "file of " + std::to_string(size) + " bytes is too large to decode (> 2 GiB)");
  Format f = sniff(bytes, size);
  // Only JPEG (to libjpeg) and PNG (to stb_image) are decoded: stb_image's
  // other loaders (PNM, TGA, BMP, PSD, GIF, HDR, PIC) are not needed for any
  // dataset bonsai reads, and fuzzing found a PNM header that crashes
  // Debian's libstb (reading past the buffer), so they are not exposed to
  // outside files.
  BONSAI_CHECK(f != Format::other, prefix + "cannot read the image header: not a JPEG or PNG file");
  if (f == Format::png) {
    // From our own IHDR parse: stb_image refuses some huge sizes itself,
    // with a less telling message.
    *png = validate_png(bytes, size, prefix);
    check_pixels(png->width, png->height, prefix);
    int w = 0, h = 0, c = 0;
    BONSAI_CHECK(stbi_info_from_memory(bytes, static_cast<int>(size), &w, &h, &c),
                 prefix + "cannot read the PNG header: " + stb_reason() + " (corrupt file?)");
    check_pixels(w, h, prefix);
  }
  return f;
}

// --- JPEG: libjpeg(-turbo)'s classic API ---------------------------------
//
// libjpeg reports a fatal error by calling err->error_exit, which must not
// return. Ours longjmps back into the function that called libjpeg. longjmp
// skips C++ destructors, so the functions that setjmp (jpeg_open,
// jpeg_start, jpeg_read_rows) hold only plain C data, call only libjpeg, and
// report failure by returning false with the message in the session; the C++ side
// (JpegDecoder below) turns that into a bonsai::Error and owns the cleanup.
//
// Warnings are refused too. libjpeg warns (emit_message, level -1) where it
// can carry on over damaged data: a file cut short (it inserts a fake EOI
// and fills the rest of the image with gray), a scan that ends early, a bad
// Huffman code, bytes between markers, a restart marker out of place. Each
// of those would give a tensor of partly made-up pixels without complaint,
// so each is an error here (turbojpeg's TJFLAG_STOPONWARNING does the same),
// except stray bytes just before the end marker (jpeg_message).

// A progressive JPEG may hold any number of scans, each a pass over the
// whole image, so a small file can cost minutes of decoding. libjpeg-turbo's
// own fuzzers and tools stop at 500 (turbojpeg's TJFLAG_LIMITSCANS); real
// encoders write about 10.
constexpr int kMaxJpegScans = 500;
// libjpeg's working memory beyond the output rows: mostly a progressive or
// multi-scan JPEG's whole-image coefficient buffer, 2 bytes per sample,
// allocated when decoding starts. 1 GiB covers every image under
// kMaxImagePixels in gray or 4:2:0 (2^28 pixels -> 768 MiB); only a
// progressive or multi-scan JPEG in 4:4:4 above ~179 megapixels (6 bytes a
// pixel) or CMYK above ~134 (8) needs more, and is refused: above the limit
// libjpeg-turbo's memory manager (jmemnobs.c) stops with
// JERR_NO_BACKING_STORE instead of allocating. A header that lies costs
// nothing then, since this runs before bonsai allocates the output.
constexpr long kMaxJpegMemory = long{1} << 30;

struct JpegSession {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr err;
  jpeg_progress_mgr progress;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo) {
  auto* s = static_cast<JpegSession*>(cinfo->client_data);
  if (cinfo->err->msg_code == JERR_NO_BACKING_STORE)
    std::snprintf(s->message, sizeof s->message,
                  "decoding needs more than %ld MiB of working memory (a progressive or "
                  "multi-scan JPEG this large is refused)",
                  kMaxJpegMemory >> 20);
  else
    (*cinfo->err->format_message)(cinfo, s->message);
  std::longjmp(s->jump, 1);
}

void jpeg_message(j_common_ptr cinfo, int level) {
  // level >= 0: trace messages, off by default; dropped.
  if (level >= 0) return;
  // Stray bytes right before the EOI marker, after the last scan: every
  // scan was read in full, so the image is whole. Encoders leave such bytes
  // in real photos (ImageNet has some: "Corrupt JPEG data: N extraneous
  // bytes before marker 0xd9"), and TensorFlow, PIL and libjpeg's own tools
  // decode them; refusing would stop a run over a complete image. The price:
  // damaged scan data that happens to decode and leave bytes over is not
  // caught either (nothing catches damage that decodes without a trace).
  if (cinfo->err->msg_code == JWRN_EXTRANEOUS_DATA && cinfo->err->msg_parm.i[1] == 0xD9) return;
  jpeg_fail(cinfo);  // any other warning: corrupt data (see above)
}

void jpeg_progress(j_common_ptr cinfo) {
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxJpegScans) {
    auto* s = static_cast<JpegSession*>(cinfo->client_data);
    std::snprintf(s->message, sizeof s->message, "progressive JPEG with more than %d scans",
                  kMaxJpegScans);
    std::longjmp(s->jump, 1);
  }
}

// Creates the decompressor on `s` (zero-initialised by the caller) and reads
// the header. false: s->message says why. jpeg_destroy_decompress(&s->cinfo)
// is the caller's, whatever this returns.
bool jpeg_open(JpegSession* s, const uint8_t* bytes, size_t size) {
  s->cinfo.err = jpeg_std_error(&s->err);
  s->err.error_exit = jpeg_fail;
  s->err.emit_message = jpeg_message;
  s->cinfo.client_data = s;  // jpeg_create_decompress keeps err and client_data
  s->progress.progress_monitor = jpeg_progress;
  if (setjmp(s->jump)) return false;
  jpeg_create_decompress(&s->cinfo);
  s->cinfo.mem->max_memory_to_use = kMaxJpegMemory;
  s->cinfo.progress = &s->progress;
  jpeg_mem_src(&s->cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&s->cinfo, TRUE);  // TRUE: a tables-only file is an error
  return true;
}

// Starts decoding the image whose header jpeg_open read: RGB out, gray
// replicated by libjpeg, CMYK and YCCK (Adobe's 4-channel JPEGs) as CMYK, which
// jpeg_read_rows converts. For progressive and multi-scan JPEGs this reads
// every scan into libjpeg's coefficient buffer, so most damage and the memory
// limit are met here, before the caller allocates the output.
// false: s->message says why.
bool jpeg_start(JpegSession* s) {
  if (setjmp(s->jump)) return false;
  j_decompress_ptr c = &s->cinfo;
  const bool cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
  c->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // any other: libjpeg refuses the conversion
  jpeg_start_decompress(c);
  if (c->output_width != c->image_width || c->output_height != c->image_height ||
      c->output_components != (cmyk ? 4 : 3)) {
    std::snprintf(s->message, sizeof s->message, "unexpected output format from libjpeg");
    return false;
  }
  return true;
}

// Reads every row into `out`, u8 [H, W, 3] (image_height x image_width x 3
// bytes), then on to the EOI marker. CMYK is stored inverted (Adobe), and
// converted as stb_image and PIL do: R = C * K / 255.
// false: s->message says why; `out` may then hold part of an image.
bool jpeg_read_rows(JpegSession* s, uint8_t* out) {
  if (setjmp(s->jump)) return false;
  j_decompress_ptr c = &s->cinfo;
  const bool cmyk = c->out_color_space == JCS_CMYK;
  const JDIMENSION w = c->output_width;
  JSAMPARRAY row = cmyk ? (*c->mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(c), JPOOL_IMAGE,
                                                  w * 4, 1)
                        : nullptr;
  while (c->output_scanline < c->output_height) {
    uint8_t* dst = out + size_t{c->output_scanline} * w * 3;
    JSAMPROW target = cmyk ? row[0] : dst;
    if (jpeg_read_scanlines(c, &target, 1) != 1) {
      // Only a suspending data source returns 0; the memory source never does.
      std::snprintf(s->message, sizeof s->message, "libjpeg returned no scanline");
      return false;
    }
    if (cmyk) {
      const uint8_t* p = row[0];
      for (JDIMENSION x = 0; x < w; ++x, p += 4, dst += 3) {
        for (int k = 0; k < 3; ++k) {
          const unsigned t = unsigned{p[k]} * p[3] + 128;  // p[k] * p[3] / 255, rounded
          dst[k] = static_cast<uint8_t>((t + (t >> 8)) >> 8);
        }
      }
    }
  }
  jpeg_finish_decompress(c);  // reads to EOI: a file cut after the last row still fails here
  return true;
}

// The C++ side of the three functions above: errors become bonsai::Errors
// naming the file, and the decompressor is destroyed on every path.
class JpegDecoder {
 public:
  JpegDecoder(const uint8_t* bytes, size_t size, const std::string& prefix) : prefix_(prefix) {
    BONSAI_CHECK(jpeg_open(&s_, bytes, size),
                 prefix_ + "cannot read the JPEG header: " + s_.message + " (corrupt file?)");
    check_pixels(width(), height(), prefix_);
  }

  int64_t width() const { return s_.cinfo.image_width; }
  int64_t height() const { return s_.cinfo.image_height; }
  // As stb_image counted them: 1 for gray, 3 for colour (YCbCr, RGB, CMYK).
  int channels() const { return s_.cinfo.num_components >= 3 ? 3 : 1; }

  Tensor decode() {
    const std::string fail = prefix_ + "cannot decode JPEG: ";
    BONSAI_CHECK(jpeg_start(&s_), fail + s_.message + " (corrupt or truncated file)");
    Tensor out = Tensor::empty({height(), width(), 3}, DType::u8);  // [H, W, 3]
    BONSAI_CHECK(jpeg_read_rows(&s_, out.data<uint8_t>()),
                 fail + s_.message + " (corrupt or truncated file)");
    return out;
  }

 private:
  // A member, so the decompressor is destroyed also when the constructor
  // throws (a class's own destructor would not run then).
  struct Owner {
    JpegSession s{};  // zeroed: jpeg_destroy_decompress is safe before creation
    Owner() = default;
    Owner(const Owner&) = delete;
    Owner& operator=(const Owner&) = delete;
    ~Owner() { jpeg_destroy_decompress(&s.cinfo); }
  } owner_;
  JpegSession& s_ = owner_.s;
  std::string prefix_;
};

struct StbFree {
  void operator()(void* p) const { stbi_image_free(p); }
};
using StbPixels = std::unique_ptr<stbi_uc, StbFree>;

// stb_image has no size argument beyond int; check_file has bounded `size`.
StbPixels stb_load(const uint8_t* bytes, size_t size, int* w, int* h, int* c, int want,
                   const std::string& prefix, Format f) {
  StbPixels px(stbi_load_from_memory(bytes, static_cast<int>(size), w, h, c, want));
  BONSAI_CHECK(px != nullptr, prefix + "cannot decode " + format_name(f) + ": " + stb_reason() +
                                  " (corrupt or truncated file)");
  return px;
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

// Shape [H, W, C] of an image to encode, C in `allowed`.
void check_encodable(const Tensor& image, const char* what, std::initializer_list<int64_t> allowed,
                     int64_t max_side, int64_t* h, int64_t* w, int64_t* c) {
  BONSAI_CHECK(image.defined(), std::string(what) + ": undefined tensor");
  BONSAI_CHECK(image.dtype() == DType::u8,
               std::string(what) + ": expected u8 pixels, got " + dtype_name(image.dtype()));
  BONSAI_CHECK(image.rank() == 2 || image.rank() == 3,
               std::string(what) + ": expected [H, W] or [H, W, C], got " + image.shape_str());
  *h = image.dim(0);
  *w = image.dim(1);
  *c = image.rank() == 3 ? image.dim(2) : 1;
  BONSAI_CHECK(std::find(allowed.begin(), allowed.end(), *c) != allowed.end(),
               std::string(what) + ": unsupported channel count in " + image.shape_str());
  BONSAI_CHECK(*h > 0 && *w > 0 && *h <= max_side && *w <= max_side,
               std::string(what) + ": unsupported size " + image.shape_str() + " (sides 1.." +
                   std::to_string(max_side) + ")");
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  int err = errno;
  BONSAI_CHECK(fd >= 0, "file '" + path + "': cannot open: " + errno_str(err));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  BONSAI_CHECK(::fstat(fd, &st) == 0, "file '" + path + "': cannot stat: " + errno_str(errno));
  BONSAI_CHECK(!S_ISDIR(st.st_mode), "file '" + path + "': is a directory, not a file");
  BONSAI_CHECK(st.st_size <= INT_MAX,
               "file '" + path + "': " + std::to_string(st.st_size) + " bytes is more than 2 GiB");
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t got = 0;
  for (;;) {
    // One byte past the stat size: a file that grew is read whole or refused.
    if (got == bytes.size()) {
      BONSAI_CHECK(bytes.size() < static_cast<size_t>(INT_MAX), "file '" + path + "': more than 2 GiB");
      bytes.resize(std::max<size_t>(bytes.size() * 2, 4096));
    }
    ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    err = errno;
    BONSAI_CHECK(n >= 0, "file '" + path + "': read failed: " + errno_str(err));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  bytes.resize(got);
  return bytes;
}

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  // pid + a process-wide counter: threads writing beside each other never
  // share a temporary name.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  int err = errno;
  BONSAI_CHECK(fd >= 0, "file '" + path + "': cannot create temporary file '" + tmp + "': " +
                            errno_str(err));
  try {
    size_t put = 0;
    while (put < bytes.size()) {
      ssize_t n = ::write(fd, bytes.data() + put, bytes.size() - put);
      if (n < 0 && errno == EINTR) continue;
      err = errno;
      BONSAI_CHECK(n > 0, "file '" + path + "': write to '" + tmp + "' failed: " +
                              (n < 0 ? errno_str(err) : std::string("no progress")));
      put += static_cast<size_t>(n);
    }
    int rc = ::close(fd);
    err = errno;
    fd = -1;
    BONSAI_CHECK(rc == 0, "file '" + path + "': close of '" + tmp + "' failed: " + errno_str(err));
    rc = ::rename(tmp.c_str(), path.c_str());
    err = errno;
    BONSAI_CHECK(rc == 0, "file '" + path + "': cannot rename '" + tmp + "' over it: " + errno_str(err));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

bool has_image_extension(const std::string& filename) {
  auto dot = filename.find_last_of('.');
  if (dot == std::string::npos) return false;
  std::string ext = filename.substr(dot + 1);
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

ImageInfo read_image_info_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  const std::string prefix = where("image", name);
  PngHeader png;
  if (check_file(bytes, size, prefix, &png) == Format::jpeg) {
    JpegDecoder jpeg(bytes, size, prefix);
    return {.height = jpeg.height(), .width = jpeg.width(), .channels = jpeg.channels()};
  }
  int w = 0, h = 0, c = 0;
  stbi_info_from_memory(bytes, static_cast<int>(size), &w, &h, &c);
  return {.height = h, .width = w, .channels = c};
}

ImageInfo read_image_info(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return read_image_info_memory(bytes.data(), bytes.size(), path);
}

Tensor decode_image_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  const std::string prefix = where("image", name);
  PngHeader png;
  Format f = check_file(bytes, size, prefix, &png);
  if (f == Format::jpeg) return JpegDecoder(bytes, size, prefix).decode();
  int w = 0, h = 0, c = 0;
  StbPixels px = stb_load(bytes, size, &w, &h, &c, 3, prefix, f);
  Tensor out = Tensor::empty({h, w, 3}, DType::u8);  // [H, W, 3]
  std::memcpy(out.raw(), px.get(), out.nbytes());
  return out;
}

Tensor decode_image(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image_memory(bytes.data(), bytes.size(), path);
}

std::array<uint8_t, 3> voc_color(int index) {
  BONSAI_CHECK(index >= 0 && index <= 255, "voc_color: index " + std::to_string(index) +
                                               " outside 0..255");
  uint8_t rgb[3] = {0, 0, 0};
  int c = index;
  for (int j = 0; j < 8; ++j) {
    for (int k = 0; k < 3; ++k) rgb[k] = static_cast<uint8_t>(rgb[k] | (((c >> k) & 1) << (7 - j)));
    c >>= 3;
  }
  return {rgb[0], rgb[1], rgb[2]};
}

int voc_index(uint8_t r, uint8_t g, uint8_t b) {
  // Undo voc_color: bit (7 - j) of channel k is index bit 3j + k. The colour
  // is valid only if every other bit is zero, which the round trip checks.
  const uint8_t rgb[3] = {r, g, b};
  int index = 0;
  for (int j = 0; j < 3; ++j)
    for (int k = 0; k < 3; ++k)
      if (3 * j + k < 8) index |= ((rgb[k] >> (7 - j)) & 1) << (3 * j + k);
  std::array<uint8_t, 3> back = voc_color(index);
  return back[0] == r && back[1] == g && back[2] == b ? index : -1;
}

Tensor decode_mask_memory(const uint8_t* bytes, size_t size, const std::string& name) {
  const std::string prefix = where("mask", name);
  PngHeader png;
  Format f = check_file(bytes, size, prefix, &png);
  BONSAI_CHECK(f == Format::png, prefix + "masks must be PNG files (lossless), this is " +
                                     (f == Format::jpeg ? "a JPEG" : "not a PNG"));
  BONSAI_CHECK(png.bit_depth <= 8, prefix + "16-bit masks are not supported (use 8-bit gray "
                                            "indices or a VOC palette PNG)");
  int w = 0, h = 0, c = 0;
  StbPixels px = stb_load(bytes, size, &w, &h, &c, 0, prefix, f);
  Tensor out = Tensor::empty({h, w}, DType::u8);  // [H, W]
  uint8_t* dst = out.data<uint8_t>();
  const uint8_t* src = px.get();
  const int64_t n = int64_t{h} * w;
  const bool gray = png.color_type == 0 || png.color_type == 4;
  if (gray) {
    // stb_image scales 1/2/4-bit gray up to 0..255 (by 255, 85, 17); indices
    // want the stored values back.
    const int scale = png.bit_depth == 1 ? 255 : png.bit_depth == 2 ? 85 : png.bit_depth == 4 ? 17 : 1;
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<uint8_t>(src[i * c] / scale);
    return out;
  }
  BONSAI_CHECK(c >= 3, prefix + "unexpected channel count " + std::to_string(c));
  // Masks are flat areas: remembering the last colour skips most lookups.
  int last_rgb = -1, last_index = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = src + i * c;
    int rgb = (p[0] << 16) | (p[1] << 8) | p[2];
    if (rgb != last_rgb) {
      int index = voc_index(p[0], p[1], p[2]);
      BONSAI_CHECK(index >= 0, prefix + "pixel (row " + std::to_string(i / w) + ", column " +
                                   std::to_string(i % w) + ") has colour (" +
                                   std::to_string(p[0]) + ", " + std::to_string(p[1]) + ", " +
                                   std::to_string(p[2]) + "), which is not in the VOC colormap");
      last_rgb = rgb;
      last_index = index;
    }
    dst[i] = static_cast<uint8_t>(last_index);
  }
  return out;
}

Tensor decode_mask(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_mask_memory(bytes.data(), bytes.size(), path);
}

std::vector<uint8_t> encode_jpeg(const Tensor& image, const JpegOptions& options) {
  int64_t h, w, c;
  check_encodable(image, "encode_jpeg", {1, 3}, 65535, &h, &w, &c);
  BONSAI_CHECK(options.quality >= 1 && options.quality <= 100,
               "encode_jpeg: quality " + std::to_string(options.quality) + " outside 1..100");
  std::vector<uint8_t> out;
  int ok = stbi_write_jpg_to_func(append_bytes, &out, static_cast<int>(w), static_cast<int>(h),
                                  static_cast<int>(c), image.raw(), options.quality);
  BONSAI_CHECK(ok && !out.empty(), "encode_jpeg: stb_image_write failed for " + image.shape_str());
  return out;
}

std::vector<uint8_t> encode_png(const Tensor& image) {
  int64_t h, w, c;
  check_encodable(image, "encode_png", {1, 3}, 1 << 24, &h, &w, &c);
  BONSAI_CHECK(h * w <= kMaxImagePixels, "encode_png: " + image.shape_str() + " is too large");
  std::vector<uint8_t> out;
  int ok = stbi_write_png_to_func(append_bytes, &out, static_cast<int>(w), static_cast<int>(h),
                                  static_cast<int>(c), image.raw(), static_cast<int>(w * c));
  BONSAI_CHECK(ok && !out.empty(), "encode_png: stb_image_write failed for " + image.shape_str());
  return out;
}

void write_jpeg(const std::string& path, const Tensor& image, const JpegOptions& options) {
  write_file_atomic(path, encode_jpeg(image, options));
}

void write_png(const std::string& path, const Tensor& image) {
  write_file_atomic(path, encode_png(image));
}

void write_mask_png(const std::string& path, const Tensor& mask) {
  BONSAI_CHECK(mask.defined() && mask.dtype() == DType::u8 &&
                   (mask.rank() == 2 || (mask.rank() == 3 && mask.dim(2) == 1)),
               "write_mask_png '" + path + "': expected a u8 [H, W] mask" +
                   (mask.defined() ? ", got " + std::string(dtype_name(mask.dtype())) + " " +
                                         mask.shape_str()
                                   : std::string()));
  const int64_t h = mask.dim(0), w = mask.dim(1);
  Tensor rgb = Tensor::empty({h, w, 3}, DType::u8);  // [H, W, 3]
  const uint8_t* src = mask.data<uint8_t>();
  uint8_t* dst = rgb.data<uint8_t>();
  std::array<std::array<uint8_t, 3>, 256> table;
  for (int i = 0; i < 256; ++i) table[i] = voc_color(i);
  for (int64_t i = 0; i < h * w; ++i) std::memcpy(dst + 3 * i, table[src[i]].data(), 3);
  write_file_atomic(path, encode_png(rgb));
}

}  // namespace bonsai::data
