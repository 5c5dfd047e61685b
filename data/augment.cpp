#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace bonsai::data {

Normalization imagenet_normalization() {
  return {.mean = {0.485f * 255.0f, 0.456f * 255.0f, 0.406f * 255.0f},
          .stddev = {0.229f * 255.0f, 0.224f * 255.0f, 0.225f * 255.0f}};
}

Normalization fashion_mnist_normalization() {
  const float m = 0.286f * 255.0f, s = 0.353f * 255.0f;
  return {.mean = {m, m, m}, .stddev = {s, s, s}};
}

Normalization no_normalization() { return {}; }

float uniform01(std::mt19937& rng) { return static_cast<float>(rng() >> 8) * (1.0f / 16777216.0f); }

int64_t uniform_int(std::mt19937& rng, int64_t n) {
  BONSAI_CHECK(n >= 1 && n <= (int64_t{1} << 32), "uniform_int: n = " + std::to_string(n) +
                                                       " must be in 1..2^32");
  return static_cast<int64_t>((static_cast<uint64_t>(rng()) * static_cast<uint64_t>(n)) >> 32);
}

namespace {

// ---------------------------------------------------------------- resampling

// How one output axis reads the source. Output index o (mirrored when
// `reverse`) is index t = o + window_offset of the source segment
// [src_offset, src_offset + src_len) resized to resized_len; an index t
// outside [0, resized_len) is padding. Source indices stored are absolute.
struct Axis {
  std::vector<int64_t> i0, i1, nearest;
  std::vector<float> lambda;  // weight of i1
  std::vector<uint8_t> inside;
};

struct AxisSpec {
  int64_t src_offset = 0, src_len = 0;  // the source segment
  int64_t resized_len = 0;              // the segment is resized to this length
  int64_t window_offset = 0;            // output 0 reads resized index window_offset
  int64_t out_len = 0;
  bool reverse = false;
};

Axis make_axis(const AxisSpec& s) {
  BONSAI_CHECK(s.src_len >= 1 && s.resized_len >= 1 && s.out_len >= 1,
               "resample: empty axis (source " + std::to_string(s.src_len) + ", resized " +
                   std::to_string(s.resized_len) + ", output " + std::to_string(s.out_len) + ")");
  Axis a;
  a.i0.resize(s.out_len);
  a.i1.resize(s.out_len);
  a.nearest.resize(s.out_len);
  a.lambda.resize(s.out_len);
  a.inside.resize(s.out_len);
  const double scale = static_cast<double>(s.src_len) / static_cast<double>(s.resized_len);
  for (int64_t o = 0; o < s.out_len; ++o) {
    const int64_t t = (s.reverse ? s.out_len - 1 - o : o) + s.window_offset;
    a.inside[o] = t >= 0 && t < s.resized_len;
    if (!a.inside[o]) continue;
    // Bilinear, half-pixel centres (TF2 tf.image.resize, PyTorch align_corners=False).
    const double src = std::max(0.0, (static_cast<double>(t) + 0.5) * scale - 0.5);
    const int64_t i0 = std::min(static_cast<int64_t>(std::floor(src)), s.src_len - 1);
    a.i0[o] = s.src_offset + i0;
    a.i1[o] = s.src_offset + std::min(i0 + 1, s.src_len - 1);
    a.lambda[o] = static_cast<float>(src - static_cast<double>(i0));
    // Nearest, half-pixel centres (TF2 ResizeNearestNeighbor half_pixel_centers=True).
    const int64_t n = static_cast<int64_t>(std::floor((static_cast<double>(t) + 0.5) * scale));
    a.nearest[o] = s.src_offset + std::min(n, s.src_len - 1);
  }
  return a;
}

template <typename T>
void resample_bilinear(const T* src, int64_t W, int64_t C, const Axis& ay, const Axis& ax,
                       const float* fill, float* out) {
  const int64_t OH = static_cast<int64_t>(ay.inside.size());
  const int64_t OW = static_cast<int64_t>(ax.inside.size());
  for (int64_t oy = 0; oy < OH; ++oy) {
    float* row = out + oy * OW * C;
    if (!ay.inside[oy]) {
      for (int64_t ox = 0; ox < OW; ++ox)
        for (int64_t c = 0; c < C; ++c) row[ox * C + c] = fill[c];
      continue;
    }
    const T* r0 = src + ay.i0[oy] * W * C;
    const T* r1 = src + ay.i1[oy] * W * C;
    const float ly = ay.lambda[oy];
    for (int64_t ox = 0; ox < OW; ++ox) {
      float* px = row + ox * C;
      if (!ax.inside[ox]) {
        for (int64_t c = 0; c < C; ++c) px[c] = fill[c];
        continue;
      }
      const int64_t x0 = ax.i0[ox] * C, x1 = ax.i1[ox] * C;
      const float lx = ax.lambda[ox];
      for (int64_t c = 0; c < C; ++c) {
        const float top = static_cast<float>(r0[x0 + c]) +
                          (static_cast<float>(r0[x1 + c]) - static_cast<float>(r0[x0 + c])) * lx;
        const float bottom = static_cast<float>(r1[x0 + c]) +
                             (static_cast<float>(r1[x1 + c]) - static_cast<float>(r1[x0 + c])) * lx;
        px[c] = top + (bottom - top) * ly;
      }
    }
  }
}

// u8 or f32 [H, W, C] -> f32 [OH, OW, C].
Tensor resample_image(const Tensor& image, const Axis& ay, const Axis& ax, const float* fill) {
  const int64_t W = image.dim(1), C = image.dim(2);
  Tensor out = Tensor::empty({static_cast<int64_t>(ay.inside.size()),
                              static_cast<int64_t>(ax.inside.size()), C},
                             DType::f32);
  if (image.dtype() == DType::u8)
    resample_bilinear(image.data<uint8_t>(), W, C, ay, ax, fill, out.data<float>());
  else
    resample_bilinear(image.data<float>(), W, C, ay, ax, fill, out.data<float>());
  return out;
}

// u8 [H, W] -> u8 [OH, OW], nearest, `fill` outside the source.
Tensor resample_mask(const Tensor& mask, const Axis& ay, const Axis& ax, uint8_t fill) {
  const int64_t W = mask.dim(1);
  const int64_t OH = static_cast<int64_t>(ay.inside.size());
  const int64_t OW = static_cast<int64_t>(ax.inside.size());
  Tensor out = Tensor::empty({OH, OW}, DType::u8);
  const uint8_t* src = mask.data<uint8_t>();
  uint8_t* dst = out.data<uint8_t>();
  for (int64_t oy = 0; oy < OH; ++oy) {
    uint8_t* row = dst + oy * OW;
    if (!ay.inside[oy]) {
      std::memset(row, fill, static_cast<size_t>(OW));
      continue;
    }
    const uint8_t* s = src + ay.nearest[oy] * W;
    for (int64_t ox = 0; ox < OW; ++ox) row[ox] = ax.inside[ox] ? s[ax.nearest[ox]] : fill;
  }
  return out;
}

void check_image(const Tensor& image, const std::string& who, const std::string& path) {
  const std::string where = path.empty() ? who : who + ": " + path;
  BONSAI_CHECK(image.defined(), where + ": no image");
  BONSAI_CHECK(image.rank() == 3 && image.dim(2) == 3 && image.dim(0) >= 1 && image.dim(1) >= 1,
               where + ": image must be [H, W, 3], got " + image.shape_str());
  BONSAI_CHECK(image.dtype() == DType::u8 || image.dtype() == DType::f32,
               where + ": image must be u8 or f32, got " + dtype_name(image.dtype()));
}

void check_mask(const Example& e, const std::string& who) {
  check_image(e.image, who, e.path);
  BONSAI_CHECK(e.mask.defined(), who + ": " + e.path + ": no mask (segmentation needs one)");
  BONSAI_CHECK(e.mask.dtype() == DType::u8 && e.mask.rank() == 2,
               who + ": " + e.path + ": mask must be u8 [H, W], got " +
                   dtype_name(e.mask.dtype()) + " " + e.mask.shape_str());
  BONSAI_CHECK(e.mask.dim(0) == e.image.dim(0) && e.mask.dim(1) == e.image.dim(1),
               who + ": " + e.path + ": mask " + e.mask.shape_str() + " does not match image " +
                   e.image.shape_str());
}

Sample with_image(const Example& e, Tensor image) {
  return {.image = std::move(image), .label = e.label, .mask = Tensor(), .path = e.path};
}

}  // namespace

// ---------------------------------------------------------------- geometry

Box sample_distorted_box(int64_t h, int64_t w, const DistortedBoxOptions& o, std::mt19937& rng) {
  BONSAI_CHECK(h >= 1 && w >= 1, "sample_distorted_box: empty image " + std::to_string(h) + "x" +
                                     std::to_string(w));
  BONSAI_CHECK(o.area_min > 0 && o.area_min <= o.area_max && o.aspect_min > 0 &&
                   o.aspect_min <= o.aspect_max,
               "sample_distorted_box: bad area or aspect range");
  const float min_area = o.area_min * static_cast<float>(w) * static_cast<float>(h);
  const float max_area = o.area_max * static_cast<float>(w) * static_cast<float>(h);
  for (int attempt = 0; attempt < o.max_attempts; ++attempt) {
    const float aspect = o.aspect_min + uniform01(rng) * (o.aspect_max - o.aspect_min);
    // TF's GenerateRandomCrop, step by step (lrintf rounds half to even).
    int64_t height = std::lrint(std::sqrt(min_area / aspect));
    int64_t max_height = std::lrint(std::sqrt(max_area / aspect));
    if (std::lrint(static_cast<float>(max_height) * aspect) > w) {
      // The tallest height whose rounded width still fits.
      max_height = static_cast<int64_t>((static_cast<float>(w) + 0.5f - 1e-7f) / aspect);
      if (std::lrint(static_cast<float>(max_height) * aspect) > w) max_height -= 1;
    }
    max_height = std::min(max_height, h);
    height = std::min(height, max_height);
    if (height < max_height) height += uniform_int(rng, max_height - height + 1);
    int64_t width = std::lrint(static_cast<float>(height) * aspect);
    float area = static_cast<float>(width * height);
    if (area < min_area) {
      height += 1;
      width = std::lrint(static_cast<float>(height) * aspect);
      area = static_cast<float>(width * height);
    }
    if (area < min_area) continue;
    if (area > max_area) {
      height -= 1;
      width = std::lrint(static_cast<float>(height) * aspect);
      area = static_cast<float>(width * height);
    }
    if (area < min_area || area > max_area) continue;
    if (width <= 0 || width > w || height <= 0 || height > h) continue;
    // TF draws the offset from [0, H - height), never the last position; kept as is.
    const int64_t y = height < h ? uniform_int(rng, h - height) : 0;
    const int64_t x = width < w ? uniform_int(rng, w - width) : 0;
    return {.y = y, .x = x, .h = height, .w = width};
  }
  return {.y = 0, .x = 0, .h = h, .w = w};
}

Box center_crop_box(int64_t h, int64_t w, float fraction) {
  BONSAI_CHECK(fraction > 0 && fraction <= 1, "center_crop_box: fraction " +
                                                  std::to_string(fraction) + " must be in (0, 1]");
  // As center_crop_image computes it in float32: the offset uses the
  // unrounded side, then both are truncated.
  const float side = fraction * static_cast<float>(std::min(h, w));
  const int64_t y = static_cast<int64_t>((static_cast<float>(h) - side) / 2.0f);
  const int64_t x = static_cast<int64_t>((static_cast<float>(w) - side) / 2.0f);
  const int64_t s = std::max<int64_t>(1, static_cast<int64_t>(side));
  return {.y = y, .x = x, .h = s, .w = s};
}

Tensor crop_resize_bilinear(const Tensor& image, const Box& box, int64_t out_h, int64_t out_w,
                            bool flip) {
  check_image(image, "crop_resize_bilinear", "");
  BONSAI_CHECK(box.y >= 0 && box.x >= 0 && box.h >= 1 && box.w >= 1 &&
                   box.y + box.h <= image.dim(0) && box.x + box.w <= image.dim(1),
               "crop_resize_bilinear: box (y " + std::to_string(box.y) + ", x " +
                   std::to_string(box.x) + ", h " + std::to_string(box.h) + ", w " +
                   std::to_string(box.w) + ") outside image " + image.shape_str());
  const Axis ay = make_axis({.src_offset = box.y, .src_len = box.h, .resized_len = out_h,
                             .window_offset = 0, .out_len = out_h, .reverse = false});
  const Axis ax = make_axis({.src_offset = box.x, .src_len = box.w, .resized_len = out_w,
                             .window_offset = 0, .out_len = out_w, .reverse = flip});
  const float fill[3] = {0, 0, 0};  // never read: the window is the whole resized crop
  return resample_image(image, ay, ax, fill);
}

Tensor resize_bilinear(const Tensor& image, int64_t out_h, int64_t out_w) {
  check_image(image, "resize_bilinear", "");
  return crop_resize_bilinear(image, {.y = 0, .x = 0, .h = image.dim(0), .w = image.dim(1)},
                              out_h, out_w);
}

Tensor resize_nearest(const Tensor& mask, int64_t out_h, int64_t out_w) {
  BONSAI_CHECK(mask.defined() && mask.dtype() == DType::u8 && mask.rank() == 2,
               "resize_nearest: mask must be u8 [H, W]");
  const Axis ay = make_axis({.src_offset = 0, .src_len = mask.dim(0), .resized_len = out_h,
                             .window_offset = 0, .out_len = out_h});
  const Axis ax = make_axis({.src_offset = 0, .src_len = mask.dim(1), .resized_len = out_w,
                             .window_offset = 0, .out_len = out_w});
  return resample_mask(mask, ay, ax, 0);
}

Tensor flip_horizontal(const Tensor& t) {
  BONSAI_CHECK(t.defined() && (t.rank() == 2 || t.rank() == 3),
               "flip_horizontal: expected [H, W] or [H, W, C]");
  const int64_t H = t.dim(0), W = t.dim(1);
  const size_t px = (t.rank() == 3 ? static_cast<size_t>(t.dim(2)) : 1) * dtype_size(t.dtype());
  Tensor out = Tensor::empty(t.shape(), t.dtype());
  const char* src = static_cast<const char*>(t.raw());
  char* dst = static_cast<char*>(out.raw());
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x)
      std::memcpy(dst + (y * W + x) * px, src + (y * W + (W - 1 - x)) * px, px);
  return out;
}

void normalize(Tensor& image, const Normalization& n) {
  BONSAI_CHECK(image.dtype() == DType::f32 && image.rank() == 3 && image.dim(2) == 3,
               "normalize: image must be f32 [H, W, 3], got " + image.shape_str());
  float inv[3];
  for (int c = 0; c < 3; ++c) {
    BONSAI_CHECK(n.stddev[c] > 0, "normalize: stddev must be positive");
    inv[c] = 1.0f / n.stddev[c];
  }
  float* p = image.data<float>();
  const int64_t pixels = image.dim(0) * image.dim(1);
  for (int64_t i = 0; i < pixels; ++i)
    for (int c = 0; c < 3; ++c) p[i * 3 + c] = (p[i * 3 + c] - n.mean[c]) * inv[c];
}

// ---------------------------------------------------------------- classification

Sample classify_train(const Example& e, const ClassifyTrainOptions& o, std::mt19937& rng) {
  check_image(e.image, "classify_train", e.path);
  const int64_t H = e.image.dim(0), W = e.image.dim(1);
  Box box = sample_distorted_box(H, W, o.box, rng);
  // classification_input.py: a crop the size of the whole image means the
  // sampler gave up (or drew the whole image); use the eval centre crop.
  if (box == Box{.y = 0, .x = 0, .h = H, .w = W})
    box = center_crop_box(H, W, o.fallback_crop_fraction);
  const bool flip = o.flip && uniform01(rng) < 0.5f;
  Tensor image = crop_resize_bilinear(e.image, box, o.size, o.size, flip);  // [size, size, 3]
  normalize(image, o.norm);
  return with_image(e, std::move(image));
}

Sample classify_eval(const Example& e, const ClassifyEvalOptions& o) {
  check_image(e.image, "classify_eval", e.path);
  return with_image(e, preprocess_for_eval(e.image, o.size, o));
}

Tensor preprocess_for_eval(const Tensor& image_u8_hwc, int64_t res, const ClassifyEvalOptions& o) {
  check_image(image_u8_hwc, "preprocess_for_eval", "");
  const Box box = center_crop_box(image_u8_hwc.dim(0), image_u8_hwc.dim(1), o.crop_fraction);
  Tensor image = crop_resize_bilinear(image_u8_hwc, box, res, res);  // [res, res, 3]
  normalize(image, o.norm);
  return image;
}

Sample pad_shift(const Example& e, const PadShiftOptions& o, std::mt19937& rng) {
  check_image(e.image, "pad_shift", e.path);
  const int64_t H = e.image.dim(0), W = e.image.dim(1);
  const int64_t PH = o.pad_to > 0 ? o.pad_to : H, PW = o.pad_to > 0 ? o.pad_to : W;
  BONSAI_CHECK(H <= PH && W <= PW, "pad_shift: " + e.path + ": image " + e.image.shape_str() +
                                       " larger than pad_to " + std::to_string(o.pad_to));
  BONSAI_CHECK(o.shift >= 0, "pad_shift: shift must be >= 0");
  const int64_t dy = o.shift > 0 ? uniform_int(rng, 2 * o.shift + 1) - o.shift : 0;
  const int64_t dx = o.shift > 0 ? uniform_int(rng, 2 * o.shift + 1) - o.shift : 0;
  const bool flip = o.flip && uniform01(rng) < 0.5f;
  // The image sits at (top + dy, left + dx) of the canvas; output index o
  // reads image index o - that offset (scale 1: an exact copy).
  const int64_t top = (PH - H) / 2 + dy, left = (PW - W) / 2 + dx;
  const Axis ay = make_axis({.src_offset = 0, .src_len = H, .resized_len = H,
                             .window_offset = -top, .out_len = PH});
  const Axis ax = make_axis({.src_offset = 0, .src_len = W, .resized_len = W,
                             .window_offset = -left, .out_len = PW, .reverse = flip});
  Tensor image = resample_image(e.image, ay, ax, o.norm.mean.data());  // [PH, PW, 3]
  normalize(image, o.norm);
  return with_image(e, std::move(image));
}

// ---------------------------------------------------------------- segmentation

Sample segment_train(const Example& e, const SegmentTrainOptions& o, std::mt19937& rng) {
  check_mask(e, "segment_train");
  BONSAI_CHECK(o.crop >= 1 && o.scale_min > 0 && o.scale_min <= o.scale_max,
               "segment_train: bad crop or scale range");
  const int64_t H = e.image.dim(0), W = e.image.dim(1);
  const float s = o.scale_min + uniform01(rng) * (o.scale_max - o.scale_min);
  const int64_t sh = std::max<int64_t>(1, std::lrint(static_cast<float>(H) * s));
  const int64_t sw = std::max<int64_t>(1, std::lrint(static_cast<float>(W) * s));
  // Padded bottom/right to at least crop x crop; the crop window lies in that canvas.
  const int64_t ph = std::max(sh, o.crop), pw = std::max(sw, o.crop);
  const int64_t oy = uniform_int(rng, ph - o.crop + 1);
  const int64_t ox = uniform_int(rng, pw - o.crop + 1);
  const bool flip = o.flip && uniform01(rng) < 0.5f;
  const Axis ay = make_axis({.src_offset = 0, .src_len = H, .resized_len = sh,
                             .window_offset = oy, .out_len = o.crop});
  const Axis ax = make_axis({.src_offset = 0, .src_len = W, .resized_len = sw,
                             .window_offset = ox, .out_len = o.crop, .reverse = flip});
  Tensor image = resample_image(e.image, ay, ax, o.norm.mean.data());  // [crop, crop, 3]
  normalize(image, o.norm);
  return {.image = std::move(image), .label = e.label,
          .mask = resample_mask(e.mask, ay, ax, o.ignore_label), .path = e.path};
}

Sample segment_eval(const Example& e, const SegmentEvalOptions& o) {
  check_mask(e, "segment_eval");
  BONSAI_CHECK(o.pad >= 1, "segment_eval: pad must be positive");
  const int64_t H = e.image.dim(0), W = e.image.dim(1);
  int64_t sh = H, sw = W;
  if (H > o.pad || W > o.pad) {  // scale down to fit, aspect kept
    const double s = std::min(static_cast<double>(o.pad) / H, static_cast<double>(o.pad) / W);
    sh = std::clamp<int64_t>(std::llround(H * s), 1, o.pad);
    sw = std::clamp<int64_t>(std::llround(W * s), 1, o.pad);
  }
  const Axis ay = make_axis({.src_offset = 0, .src_len = H, .resized_len = sh,
                             .window_offset = 0, .out_len = o.pad});
  const Axis ax = make_axis({.src_offset = 0, .src_len = W, .resized_len = sw,
                             .window_offset = 0, .out_len = o.pad});
  Tensor image = resample_image(e.image, ay, ax, o.norm.mean.data());  // [pad, pad, 3]
  normalize(image, o.norm);
  return {.image = std::move(image), .label = e.label,
          .mask = resample_mask(e.mask, ay, ax, o.ignore_label), .path = e.path};
}

// ---------------------------------------------------------------- as Loader transforms

Transform classify_train_transform(ClassifyTrainOptions o) {
  return [o](const Example& e, std::mt19937& rng) { return classify_train(e, o, rng); };
}
Transform classify_eval_transform(ClassifyEvalOptions o) {
  return [o](const Example& e, std::mt19937&) { return classify_eval(e, o); };
}
Transform pad_shift_transform(PadShiftOptions o) {
  return [o](const Example& e, std::mt19937& rng) { return pad_shift(e, o, rng); };
}
Transform segment_train_transform(SegmentTrainOptions o) {
  return [o](const Example& e, std::mt19937& rng) { return segment_train(e, o, rng); };
}
Transform segment_eval_transform(SegmentEvalOptions o) {
  return [o](const Example& e, std::mt19937&) { return segment_eval(e, o); };
}

}  // namespace bonsai::data
