// Dataset preparation: Fashion-MNIST written into the ImageNet and Pascal VOC
// layouts, so the real-layout loaders (data/imagenet.h, data/voc.h) can be
// trained and tested on real images on a machine that has neither dataset.
//
//   data::prepare_fashion_mnist_imagenet({.out_dir = "/tmp/fm-imagenet"});
//   data::ImageNetDataset train({.root = "/tmp/fm-imagenet", .split = "train"});
//
//   data::prepare_fashion_mnist_voc({.out_dir = "/tmp/fm-voc", .seed = 1});
//   data::VocDataset val({.root = "/tmp/fm-voc", .split = "val"});
//
// ImageNet layout (what `bonsai data prepare fashion-mnist --layout imagenet`
// writes):
//   train/n0000000<c>/n0000000<c>_<i>.JPEG   the 60000 training images, i = IDX index
//   val/ILSVRC2012_val_<k>.JPEG              the 10000 test images, FLAT, k = 1..10000
//   LOC_val_solution.csv                     their labels, Kaggle format (full-image box)
//   LOC_synset_mapping.txt                   "n00000000 T-shirt/top" ... "n00000009 Ankle boot"
// The synthetic wnids n00000000..n00000009 are class 0..9 and sort in that
// order, so loaded labels equal the IDX labels. Images stay 28x28 (the loader's
// augmentation resizes); gray is replicated to RGB; JPEG quality 95, which
// stb_image_write encodes without chroma subsampling. Writing val flat
// exercises the flat-val path the real Kaggle download needs.
//
// VOC layout (`--layout voc`): `train_count` canvases (default 10000) made
// from Fashion-MNIST train images and `val_count` (default 1449, VOC 2012's
// val size) from the test images, each `canvas` x `canvas` (128) pixels with
// 2..4 items, each scaled by a random factor in [1, 2.5] (bilinear) and placed
// at a random position; later items occlude earlier ones. An item's pixels
// above `threshold` are its object: drawn into the image (gray replicated to
// RGB) and labelled item label + 1 in the mask (0 = background, 11 classes).
// Then, as in VOC, a band of 255 ("ignore") is drawn where labels change: every
// pixel with a differently labelled pixel within `boundary` (Chebyshev
// distance) becomes 255. Files:
//   JPEGImages/{train,val}_<n>.jpg, SegmentationClass/{train,val}_<n>.png (RGB
//   PNGs in the VOC colours), ImageSets/Segmentation/{train,val,trainval}.txt,
//   class_names.txt (background + the 10 Fashion-MNIST names).
//
// Determinism: the output depends only on the seed, the options and the IDX
// files. Every canvas has its own random stream (a SplitMix64 hash of seed,
// split and canvas number, not std:: distributions, whose results differ
// between standard libraries), so compose_voc_canvas recomputes any canvas
// without writing anything. In the ImageNet layout the seed only chooses
// which images a `limit` keeps.
//
// Both functions build the dataset in a sibling folder "<out_dir>.partial-<pid>"
// and rename it to out_dir at the end: a crash or error never leaves a
// half-written dataset under out_dir. out_dir must not exist or be empty.
// Individual files are not fsynced.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/idx.h"

namespace bonsai::data {

// The Fashion-MNIST class names, index = label.
const std::vector<std::string>& fashion_mnist_class_names();

// Called as work proceeds: stage ("train", "val"), done, total.
using PrepareProgress = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

struct PrepareImageNetOptions {
  std::string out_dir;
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";  // used by the overload that loads
  uint64_t seed = 0;
  // At most this many train and this many val images (0 = all). A limit keeps
  // a seeded, class-balanced subset (round-robin over the classes), so every
  // class folder has an image: it must be >= 10.
  int64_t limit = 0;
  int quality = 95;
  PrepareProgress progress;
};

struct PreparedImage {
  std::string path;      // relative to out_dir
  bool train = true;     // from the IDX train set (else test)
  int64_t source_index;  // index in that IDX file
  int64_t label;         // 0..9
};

struct PreparedImageNet {
  std::vector<PreparedImage> images;  // train in folder order, then val in file order
  int64_t train_count = 0, val_count = 0;
};

PreparedImageNet prepare_fashion_mnist_imagenet(const FashionMnist& fm, const PrepareImageNetOptions& options);
PreparedImageNet prepare_fashion_mnist_imagenet(const PrepareImageNetOptions& options);

struct VocCanvasOptions {
  int64_t canvas = 128;              // side, pixels
  int min_items = 2, max_items = 4;  // per canvas, inclusive
  float min_scale = 1.0f, max_scale = 2.5f;  // item side = round(28 * scale), at most `canvas`
  int threshold = 32;                // item pixels > threshold are object
  int boundary = 1;                  // ignore band radius; 0 = no band
};

struct PlacedItem {
  int64_t source_index;  // index in the IDX images
  int64_t label;         // 0..9; the mask holds label + 1
  int64_t top, left, side;
};

struct VocCanvas {
  Tensor image;  // u8 [canvas, canvas, 3]
  Tensor mask;   // u8 [canvas, canvas]: 0 background, 1..10 items, 255 band
  std::vector<PlacedItem> items;  // in drawing order
};

// Canvas number `index` of a split (train: `images` are the IDX train
// images, else the test images), exactly as prepare_fashion_mnist_voc draws it.
// images u8 [N, 28, 28], labels s64 [N].
VocCanvas compose_voc_canvas(const Tensor& images, const Tensor& labels, uint64_t seed, bool train,
                             int64_t index, const VocCanvasOptions& options = {});

struct PrepareVocOptions {
  std::string out_dir;
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";
  uint64_t seed = 0;
  int64_t train_count = 10000;
  int64_t val_count = 1449;
  VocCanvasOptions canvas;
  int quality = 95;
  PrepareProgress progress;
};

struct PreparedCanvas {
  std::string id;  // JPEGImages/<id>.jpg, SegmentationClass/<id>.png
  bool train = true;
  int64_t index;   // canvas number within its split (compose_voc_canvas's `index`)
  std::vector<PlacedItem> items;
};

struct PreparedVoc {
  std::vector<PreparedCanvas> canvases;  // train, then val
};

PreparedVoc prepare_fashion_mnist_voc(const FashionMnist& fm, const PrepareVocOptions& options);
PreparedVoc prepare_fashion_mnist_voc(const PrepareVocOptions& options);

}  // namespace bonsai::data
