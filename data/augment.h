// Augmentation: turns a decoded Example (u8 [H, W, 3], label or mask) into a
// Sample the Loader can batch (f32 [H, W, 3], normalised), for training and
// for evaluation, the way the TF Model Garden preprocesses ImageNet and
// Pascal VOC, plus the small-image "pad and shift" recipe used for
// Fashion-MNIST.
//
//   std::mt19937 rng(seed);
//   data::Sample s = data::classify_train(example, {.size = 224}, rng);   // s.image f32 [224, 224, 3]
//   data::Sample e = data::classify_eval(example, {.size = 224});         // centre crop 0.875, resize
//   Tensor x = data::preprocess_for_eval(image_u8_hwc, 224);              // the same, for `bonsai predict`
//   data::Sample v = data::segment_train(voc_example, {.crop = 512}, rng);// v.mask u8 [512, 512], 255 = ignore
//
// Every transform is a pure function of (example, options, rng): the Loader
// hands each example its own generator seeded from (seed, epoch, index), so
// results do not depend on thread count or scheduling. Random numbers are
// drawn with our own helpers (uniform01, uniform_int), not std::*_distribution,
// whose outputs differ between standard libraries.
//
// Geometry follows TF2's tf.image.resize: half-pixel centres, no antialiasing,
// bilinear for images (src = (dst + 0.5) * in/out - 0.5, clamped to the edge),
// nearest for label masks (src = floor((dst + 0.5) * in/out)), so label values
// are never blended. Crop, resize, flip and padding are fused into one pass:
// the output is sampled directly from the source image.
//
// Classification (official/vision/dataloaders/classification_input.py,
// ops/preprocess_ops.py):
//   train: sample_distorted_box (TF's sample_distorted_bounding_box over the
//          whole image: area 0.08-1.0, aspect w/h 3/4-4/3, 10 attempts; when
//          it returns the whole image, the Model Garden falls back to the
//          eval centre crop) -> random horizontal flip -> bilinear resize to
//          size x size -> (x - MEAN_RGB) / STDDEV_RGB.
//   eval:  centre crop: a square of side int(0.875 * min(H, W)) at offset
//          int((H - 0.875*min) / 2), int((W - 0.875*min) / 2) (Model Garden's
//          center_crop_image, not torchvision's resize-256-then-crop-224) ->
//          bilinear resize to size x size -> normalise.
// Segmentation (DeepLab's recipe as the brief and issue 4 state it; the
// reference §3.3 values: scale 0.5-2.0, crop 512, flip, eval padded to 512):
//   train: scale the image by s ~ U(scale_min, scale_max) (bilinear; mask
//          nearest) -> pad bottom/right to at least crop x crop with the mean
//          colour (0 after normalisation) and 255 in the mask -> random crop ->
//          random horizontal flip (image and mask together) -> normalise.
//          (The Model Garden's resize_and_crop_image scales relative to the
//          output size instead of the image; for VOC's ~500x375 images and a
//          512 crop the two nearly coincide.)
//   eval:  full size, padded bottom/right to pad x pad (mean colour / 255).
//          An image larger than pad x pad is first scaled down to fit
//          (aspect kept; mask nearest), since a batch needs one size.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <random>
#include <string>

#include "core/tensor.h"
#include "data/dataset.h"

namespace bonsai::data {

// What a transform produces and the Loader batches.
struct Sample {
  Tensor image;        // f32 [H, W, 3]
  int64_t label = -1;  // classification class index; segmentation: -1
  Tensor mask;         // segmentation: u8 [H, W], 255 = ignore; else undefined
  std::string path;
};

// Example + its own generator -> Sample. Must be callable from several threads.
using Transform = std::function<Sample(const Example&, std::mt19937&)>;

// Per-channel (x - mean) / stddev, in the 0..255 pixel scale.
struct Normalization {
  std::array<float, 3> mean = {0.0f, 0.0f, 0.0f};
  std::array<float, 3> stddev = {1.0f, 1.0f, 1.0f};
};
// Model Garden MEAN_RGB = 255 * (0.485, 0.456, 0.406), STDDEV_RGB = 255 * (0.229, 0.224, 0.225).
Normalization imagenet_normalization();
// The Fashion-MNIST recipe (../shared/peer/torch_fashion_train.py): 255 * 0.286, 255 * 0.353.
Normalization fashion_mnist_normalization();
// Identity: keeps raw 0..255 values.
Normalization no_normalization();

// ---------------------------------------------------------------- random numbers

// Uniform in [0, 1) from the top 24 bits of one draw.
float uniform01(std::mt19937& rng);
// Uniform integer in [0, n), n >= 1 (multiply-shift; bias below 2^-32 * n).
int64_t uniform_int(std::mt19937& rng, int64_t n);

// ---------------------------------------------------------------- geometry

// A rectangle of an image, in pixels.
struct Box {
  int64_t y = 0, x = 0, h = 0, w = 0;
  bool operator==(const Box&) const = default;
};

struct DistortedBoxOptions {
  float area_min = 0.08f, area_max = 1.0f;                // fraction of the image area
  float aspect_min = 3.0f / 4.0f, aspect_max = 4.0f / 3.0f;  // width / height
  int max_attempts = 10;
};

// TF's sample_distorted_bounding_box with the whole image as the only box
// (its GenerateRandomCrop): per attempt an aspect ratio uniform in the range,
// a height uniform between the heights of the smallest and largest allowed
// areas, width = round(height * aspect), a uniform position. Returns the
// whole image if every attempt fails.
Box sample_distorted_box(int64_t h, int64_t w, const DistortedBoxOptions& o, std::mt19937& rng);

// Model Garden's center_crop_image (see the header comment).
Box center_crop_box(int64_t h, int64_t w, float fraction = 0.875f);

// Bilinear resize of a u8 or f32 image [H, W, C] (or a region of it) to
// f32 [out_h, out_w, C], optionally mirrored left-right. Values stay in the
// input's scale (no normalisation).
Tensor resize_bilinear(const Tensor& image, int64_t out_h, int64_t out_w);
Tensor crop_resize_bilinear(const Tensor& image, const Box& box, int64_t out_h, int64_t out_w,
                            bool flip = false);
// Nearest-neighbour resize of a u8 mask [H, W] to u8 [out_h, out_w].
Tensor resize_nearest(const Tensor& mask, int64_t out_h, int64_t out_w);
// Left-right mirror of [H, W] or [H, W, C] (any dtype) into a new tensor.
Tensor flip_horizontal(const Tensor& t);
// In place on f32 [H, W, 3].
void normalize(Tensor& image, const Normalization& n);

// ---------------------------------------------------------------- classification

struct ClassifyTrainOptions {
  int64_t size = 224;  // output is size x size
  DistortedBoxOptions box = {};
  float fallback_crop_fraction = 0.875f;  // centre crop when the box sampler returns the whole image
  bool flip = true;
  Normalization norm = imagenet_normalization();
};

struct ClassifyEvalOptions {
  int64_t size = 224;
  float crop_fraction = 0.875f;  // side of the centred square / the short side
  Normalization norm = imagenet_normalization();
};

Sample classify_train(const Example& e, const ClassifyTrainOptions& o, std::mt19937& rng);
Sample classify_eval(const Example& e, const ClassifyEvalOptions& o);

// The eval transform on a bare image, for `bonsai predict`: u8 [H, W, 3] ->
// f32 [res, res, 3] (centre crop, bilinear resize, normalisation).
Tensor preprocess_for_eval(const Tensor& image_u8_hwc, int64_t res,
                           const ClassifyEvalOptions& o = {});

// Small images (Fashion-MNIST 28x28): centre the image on a pad_to x pad_to
// canvas (pad_to = 0 keeps the size), then in training shift it by a random
// -shift..+shift pixels on each axis (pad by `shift`, random crop back) and
// flip with probability 0.5. Padding is the mean colour, i.e. 0 after
// normalisation, as the PyTorch peer pads the normalised tensor with zeros.
struct PadShiftOptions {
  int64_t pad_to = 32;
  int64_t shift = 2;  // 0 for eval
  bool flip = true;   // false for eval
  Normalization norm = fashion_mnist_normalization();
};
Sample pad_shift(const Example& e, const PadShiftOptions& o, std::mt19937& rng);

// ---------------------------------------------------------------- segmentation

struct SegmentTrainOptions {
  int64_t crop = 512;  // output is crop x crop
  float scale_min = 0.5f, scale_max = 2.0f;
  bool flip = true;
  uint8_t ignore_label = 255;
  Normalization norm = imagenet_normalization();
};

struct SegmentEvalOptions {
  int64_t pad = 512;  // output is pad x pad
  uint8_t ignore_label = 255;
  Normalization norm = imagenet_normalization();
};

Sample segment_train(const Example& e, const SegmentTrainOptions& o, std::mt19937& rng);
Sample segment_eval(const Example& e, const SegmentEvalOptions& o);

// ---------------------------------------------------------------- as Loader transforms

Transform classify_train_transform(ClassifyTrainOptions o);
Transform classify_eval_transform(ClassifyEvalOptions o);
Transform pad_shift_transform(PadShiftOptions o);
Transform segment_train_transform(SegmentTrainOptions o);
Transform segment_eval_transform(SegmentEvalOptions o);

}  // namespace bonsai::data
