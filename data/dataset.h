// Dataset: random access to decoded examples, the interface between the
// on-disk layouts (ImageNet folders, Pascal VOC) and the threaded Loader.
//
//   ImageNetDataset ds({.root = "/data/imagenet", .split = "train"});
//   Example e = ds.get(17);      // e.image u8 [H, W, 3], e.label = class index
//
// get() must be safe to call from several threads at once, and throws
// bonsai::Error naming the file when an image or mask cannot be used; the
// Loader applies the on_error policy (fail | skip).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace bonsai::data {

struct Example {
  Tensor image;        // u8 [H, W, 3], RGB
  int64_t label = -1;  // classification: class index; segmentation: -1
  Tensor mask;         // segmentation: u8 [H, W], class index per pixel, 255 = ignore; else undefined
  std::string path;    // the image file, for messages
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;
  virtual int64_t num_classes() const = 0;
  // Class names for printing (wnids or human-readable names), if known.
  virtual std::vector<std::string> class_names() const { return {}; }
  virtual std::string describe() const = 0;  // "ImageNet train at /data/imagenet: 1281167 images, 1000 classes"
};

}  // namespace bonsai::data
