// Pascal VOC 2012 semantic segmentation data as it comes on disk.
//
//   root/JPEGImages/<id>.jpg
//   root/SegmentationClass/<id>.png              palette PNGs in the VOC colormap
//                                                (or gray PNGs holding the indices)
//   root/ImageSets/Segmentation/<split>.txt      one id per line: train | val | trainval
//   root/class_names.txt                         optional, not part of VOC: line k names
//                                                class k (a prepared dataset with other
//                                                classes); default: the 21 VOC classes
//
//   data::VocDataset train({.root = "/data/VOCdevkit/VOC2012", .split = "train",
//                           .extra_list = "/data/VOCdevkit/VOC2012/train_aug.txt"});
//   Example e = train.get(0);  // e.image u8 [H, W, 3], e.mask u8 [H, W]
//
// Mask values are class indices 0..num_classes-1 (0 = background) and 255,
// the "void" band VOC draws around objects, which losses and metrics ignore.
// decode_mask (data/image.h) maps palette colours back to indices.
//
// The extra list adds more training images, such as the SBD-augmented set
// (10582 images with masks in SegmentationClassAug/). Its lines are either an
// id — image root/JPEGImages/<id>.jpg, mask <extra_label_dir>/<id>.png — or
// two paths relative to root, "/JPEGImages/x.jpg /SegmentationClassAug/x.png",
// as the widely shared train_aug.txt has them. An id already in the split
// keeps the split's mask (the extra entry is dropped). Keeping val images out
// of the extra list is the list's job: this class does not second-guess it.
//
// Construction reads the lists and checks that every listed file exists;
// a list entry with no image or mask obeys `on_error` (`fail` throws naming
// the missing file and the list line; `skip` records it in skipped()). get()
// decodes and throws, naming the files, for a corrupt or truncated image or
// mask, a mask whose size differs from its image's, or a mask value that is
// neither a class nor 255; the Loader applies on_error to those.
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
// OnError and SkippedExample live with the Loader, which applies the same
// policy to errors found while decoding.
#include "data/loader.h"

namespace bonsai::data {

// The 21 Pascal VOC classes, index = mask value.
const std::vector<std::string>& voc_class_names();

// Mask value for pixels to ignore (VOC's object boundaries and "void").
inline constexpr uint8_t kVocIgnore = 255;

struct VocOptions {
  std::string root;             // the VOC2012 folder
  std::string split = "train";  // names root/ImageSets/Segmentation/<split>.txt
  std::string extra_list;       // optional, e.g. SBD's train_aug.txt
  std::string extra_label_dir;  // masks of bare ids in extra_list; default root/SegmentationClassAug
  std::string class_names_file; // default root/class_names.txt if present, else the VOC classes
  OnError on_error = OnError::fail;
};

class VocDataset : public Dataset {
 public:
  explicit VocDataset(VocOptions options);

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  Example get(int64_t index) const override;  // decodes image and mask; thread-safe
  int64_t num_classes() const override { return static_cast<int64_t>(names_.size()); }
  std::vector<std::string> class_names() const override { return names_; }
  std::string describe() const override;

  const std::string& image_path(int64_t index) const;
  const std::string& mask_path(int64_t index) const;
  const std::string& id(int64_t index) const;
  // Entries left out at construction (on_error = skip); index is -1, message
  // names the file and says what is wrong.
  const std::vector<SkippedExample>& skipped() const { return skipped_; }

 private:
  struct Item {
    std::string id, image, mask;
  };
  void read_list(const std::string& list, const std::string& label_dir, bool extra);
  void problem(const std::string& path, const std::string& message);

  VocOptions options_;
  std::vector<std::string> names_;
  std::vector<Item> items_;
  int64_t extra_count_ = 0;
  std::vector<SkippedExample> skipped_;
};

}  // namespace bonsai::data
