// ImageNet (ILSVRC2012) classification data as it comes on disk.
//
//   root/train/<wnid>/<name>.JPEG          one folder per class
//   root/val/<wnid>/<name>.JPEG            class folders (e.g. after valprep.sh), or
//   root/val/ILSVRC2012_val_00000001.JPEG  flat, labelled by one of:
//     root/LOC_val_solution.csv                  Kaggle's: "ImageId,PredictionString",
//                                                the wnid is the first token of the prediction
//     root/ILSVRC2012_validation_ground_truth.txt  the devkit's: one 1-based ILSVRC2012_ID per
//                                                line, for the val files in sorted name order,
//                                                with `devkit_synsets` (see below)
//   root/LOC_synset_mapping.txt            optional: "n01440764 tench, Tinca tinca" per line,
//                                          human-readable class names for printing
//
//   data::ImageNetDataset train({.root = "/data/imagenet", .split = "train"});
//   data::ImageNetDataset val({.root = "/data/imagenet", .split = "val"});
//   Example e = val.get(0);  // e.image u8 [H, W, 3], e.label in 0..999
//
// Classes are the wnids sorted (the order torchvision's ImageFolder and the
// Model Garden's TFDS records use), taken from the train/ folder names when
// train/ exists — so a val split always agrees with the train split — else
// from the synset list (LOC_synset_mapping.txt or class_names_file), else
// from val/'s class folders. Images are files ending .jpeg/.jpg/.png in any
// case; examples are sorted by class, then file name: the order never
// depends on the filesystem.
//
// The devkit's ground-truth indices are ILSVRC2012_IDs, the order of
// meta.mat in the devkit, which is NOT sorted wnid order (ID 1 is n02119789,
// kit fox). They are supported only with `devkit_synsets`: a text file whose
// line k starts with the wnid of ILSVRC2012_ID k+1 (export it from meta.mat;
// LOC_synset_mapping.txt is in sorted order and would give wrong labels).
//
// Construction scans folders and label files and decodes nothing. Problems
// found then — an empty class folder, a labelled image with no file, an image
// with no label, an unknown wnid — obey `on_error`: `fail` throws an error
// naming the file or folder; `skip` leaves the entry out and records it in
// skipped() (an empty class keeps its index, so labels never shift). Problems
// found by get() (a corrupt, truncated or empty image file) always throw; the
// Loader applies on_error to those.
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image.h"
// OnError and SkippedExample live with the Loader, which applies the same
// policy to errors found while decoding.
#include "data/loader.h"

namespace bonsai::data {

struct ImageNetOptions {
  std::string root;              // the folder holding train/ and/or val/
  std::string split = "train";   // train | val
  std::string val_labels;        // flat val: a LOC_val_solution.csv or a devkit ground-truth
                                 // file; default: whichever of the two is in root
  std::string devkit_synsets;    // devkit ground truth: line k = wnid of ILSVRC2012_ID k+1
  std::string class_names_file;  // "wnid name, name..." lines; default root/LOC_synset_mapping.txt
  OnError on_error = OnError::fail;
};

class ImageNetDataset : public Dataset {
 public:
  explicit ImageNetDataset(ImageNetOptions options);

  int64_t size() const override { return static_cast<int64_t>(items_.size()); }
  Example get(int64_t index) const override;  // decodes the image; thread-safe
  int64_t num_classes() const override { return static_cast<int64_t>(wnids_.size()); }
  // Human-readable names (the first name of each synset line) when a class
  // name file was found, else the wnids.
  std::vector<std::string> class_names() const override;
  std::string describe() const override;

  const std::vector<std::string>& wnids() const { return wnids_; }  // sorted; index = label
  const std::string& path(int64_t index) const;
  int64_t label(int64_t index) const;
  // Entries left out at construction (on_error = skip); index is -1, message
  // names the file and says what is wrong.
  const std::vector<SkippedExample>& skipped() const { return skipped_; }

 private:
  struct Item {
    std::string path;
    int64_t label;
  };
  void problem(const std::string& path, const std::string& message);
  void scan_class_folders(const std::string& dir);
  void scan_flat_val(const std::string& dir);

  ImageNetOptions options_;
  std::vector<std::string> wnids_;
  std::vector<std::string> names_;  // parallel to wnids_, empty if unknown
  std::vector<Item> items_;
  std::vector<SkippedExample> skipped_;
};

// Reads a synset list: the first token of each non-empty line is a wnid, the
// rest of the line (up to the first comma) its name. Errors name the file
// and line.
struct Synset {
  std::string wnid, name;
};
std::vector<Synset> read_synset_list(const std::string& path);

}  // namespace bonsai::data
