#include "data/voc.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "data/text.h"

namespace bonsai::data {

namespace {

namespace fs = std::filesystem;

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::string stem_of(const std::string& path) { return fs::path(path).stem().string(); }

}  // namespace

const std::vector<std::string>& voc_class_names() {
  static const std::vector<std::string> names = {
      "background", "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",
      "car",        "cat",       "chair",   "cow",   "diningtable", "dog",    "horse",
      "motorbike",  "person",    "pottedplant", "sheep", "sofa",    "train",  "tvmonitor"};
  return names;
}

VocDataset::VocDataset(VocOptions options) : options_(std::move(options)) {
  const std::string& root = options_.root;
  std::error_code ec;
  BONSAI_CHECK(fs::is_directory(root, ec), "Pascal VOC root '" + root + "': not found or not a folder");
  BONSAI_CHECK(!options_.split.empty() && options_.split.find('/') == std::string::npos,
               "Pascal VOC: bad split name '" + options_.split + "'");

  std::string names_file = options_.class_names_file;
  if (names_file.empty() && fs::is_regular_file(join(root, "class_names.txt"), ec))
    names_file = join(root, "class_names.txt");
  if (names_file.empty()) {
    names_ = voc_class_names();
  } else {
    for (const std::string& line : read_lines(names_file, "class names"))
      if (!trim(line).empty()) names_.push_back(trim(line));
    BONSAI_CHECK(names_.size() >= 2 && names_.size() <= 255,
                 "class names '" + names_file + "': expected 2..255 classes (background first), got " +
                     std::to_string(names_.size()));
  }

  read_list(join(root, "ImageSets/Segmentation/" + options_.split + ".txt"),
            join(root, "SegmentationClass"), false);
  if (!options_.extra_list.empty()) {
    std::string label_dir = options_.extra_label_dir.empty() ? join(root, "SegmentationClassAug")
                                                             : options_.extra_label_dir;
    read_list(options_.extra_list, label_dir, true);
  }
  BONSAI_CHECK(!items_.empty(), "Pascal VOC " + options_.split + " at '" + root + "': no images" +
                                    (skipped_.empty() ? std::string()
                                                      : " (" + std::to_string(skipped_.size()) +
                                                            " problems skipped, first: " +
                                                            skipped_[0].message + ")"));
}

void VocDataset::problem(const std::string& path, const std::string& message) {
  BONSAI_CHECK(options_.on_error == OnError::skip,
               "Pascal VOC " + options_.split + ": '" + path + "': " + message);
  skipped_.push_back({.index = -1, .path = path, .message = "'" + path + "': " + message});
}

void VocDataset::read_list(const std::string& list, const std::string& label_dir, bool extra) {
  const std::string& root = options_.root;
  std::set<std::string> ids;
  for (const Item& it : items_) ids.insert(it.id);
  std::vector<std::string> lines = read_lines(list, "image list");
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string line = trim(lines[i]);
    if (line.empty()) continue;
    const std::string at = "'" + list + "' line " + std::to_string(i + 1);
    std::istringstream tokens(line);
    std::string a, b, rest;
    tokens >> a >> b >> rest;
    BONSAI_CHECK(rest.empty(), "image list " + at + ": expected an id or 'image mask', got '" + line + "'");
    Item item;
    if (b.empty()) {
      item.id = a;
      item.image = join(join(root, "JPEGImages"), a + ".jpg");
      item.mask = join(label_dir, a + ".png");
    } else {
      // "/JPEGImages/x.jpg /SegmentationClassAug/x.png": relative to root
      // despite the leading slash.
      auto relative = [&](const std::string& p) { return join(root, p.substr(p.find_first_not_of('/'))); };
      BONSAI_CHECK(a.find_first_not_of('/') != std::string::npos &&
                       b.find_first_not_of('/') != std::string::npos,
                   "image list " + at + ": bad paths '" + line + "'");
      item.image = relative(a);
      item.mask = relative(b);
      item.id = stem_of(item.image);
    }
    if (!ids.insert(item.id).second) {
      // A repeat within the split list is a broken list; a repeat from the
      // extra list is the documented overlap (the split's mask wins).
      BONSAI_CHECK(extra, "image list " + at + ": id '" + item.id + "' appears twice");
      continue;
    }
    std::error_code ec;
    bool image_ok = fs::is_regular_file(item.image, ec);
    bool mask_ok = fs::is_regular_file(item.mask, ec);
    if (!image_ok) {
      problem(item.image, "listed in " + at + " but the image file does not exist");
      continue;
    }
    if (!mask_ok) {
      problem(item.mask, "listed in " + at + " but the mask file does not exist");
      continue;
    }
    items_.push_back(std::move(item));
    if (extra) ++extra_count_;
  }
}

Example VocDataset::get(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "Pascal VOC " + options_.split + ": index " +
                                                 std::to_string(index) + " outside 0.." +
                                                 std::to_string(size() - 1));
  const Item& item = items_[static_cast<size_t>(index)];
  Example e;
  e.image = decode_image(item.image);  // [H, W, 3]
  e.mask = decode_mask(item.mask);     // [H, W]
  e.path = item.image;
  BONSAI_CHECK(e.mask.dim(0) == e.image.dim(0) && e.mask.dim(1) == e.image.dim(1),
               "Pascal VOC: mask '" + item.mask + "' is " + std::to_string(e.mask.dim(1)) + "x" +
                   std::to_string(e.mask.dim(0)) + " (WxH) but image '" + item.image + "' is " +
                   std::to_string(e.image.dim(1)) + "x" + std::to_string(e.image.dim(0)));
  const uint8_t* m = e.mask.data<uint8_t>();
  const int64_t classes = num_classes();
  for (int64_t i = 0; i < e.mask.numel(); ++i) {
    if (m[i] < classes || m[i] == kVocIgnore) continue;
    BONSAI_CHECK(false, "Pascal VOC: mask '" + item.mask + "' pixel (row " +
                            std::to_string(i / e.mask.dim(1)) + ", column " +
                            std::to_string(i % e.mask.dim(1)) + ") has value " +
                            std::to_string(m[i]) + ", not a class (0.." +
                            std::to_string(classes - 1) + ") nor 255");
  }
  return e;
}

const std::string& VocDataset::image_path(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "Pascal VOC: index " + std::to_string(index) + " out of range");
  return items_[static_cast<size_t>(index)].image;
}

const std::string& VocDataset::mask_path(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "Pascal VOC: index " + std::to_string(index) + " out of range");
  return items_[static_cast<size_t>(index)].mask;
}

const std::string& VocDataset::id(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "Pascal VOC: index " + std::to_string(index) + " out of range");
  return items_[static_cast<size_t>(index)].id;
}

std::string VocDataset::describe() const {
  std::string s = "Pascal VOC " + options_.split + " at " + options_.root + ": " +
                  std::to_string(size()) + " images";
  if (extra_count_ > 0) s += " (" + std::to_string(extra_count_) + " from " + options_.extra_list + ")";
  s += ", " + std::to_string(num_classes()) + " classes";
  if (!skipped_.empty()) s += ", " + std::to_string(skipped_.size()) + " skipped";
  return s;
}

}  // namespace bonsai::data
