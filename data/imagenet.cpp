#include "data/imagenet.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "data/text.h"

namespace bonsai::data {

namespace {

namespace fs = std::filesystem;

struct Listing {
  std::vector<std::string> dirs;   // names, sorted
  std::vector<std::string> files;  // names, sorted
};

// One directory level, sorted by name; hidden entries (".DS_Store",
// ".ipynb_checkpoints") are not data.
Listing list_dir(const std::string& dir) {
  Listing l;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  BONSAI_CHECK(!ec, "folder '" + dir + "': cannot list: " + ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    BONSAI_CHECK(!ec, "folder '" + dir + "': cannot list: " + ec.message());
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code ec2;
    if (it->is_directory(ec2)) {
      l.dirs.push_back(name);
    } else if (it->is_regular_file(ec2)) {
      l.files.push_back(name);
    }
  }
  std::sort(l.dirs.begin(), l.dirs.end());
  std::sort(l.files.begin(), l.files.end());
  return l;
}

std::string join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

std::string stem_of(const std::string& name) {
  auto dot = name.find_last_of('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

}  // namespace

std::vector<Synset> read_synset_list(const std::string& path) {
  std::vector<std::string> lines = read_lines(path, "synset list");
  std::vector<Synset> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string line = trim(lines[i]);
    if (line.empty()) continue;
    size_t sp = line.find_first_of(" \t");
    Synset s;
    s.wnid = line.substr(0, sp);
    if (sp != std::string::npos) {
      std::string rest = trim(line.substr(sp));
      s.name = trim(rest.substr(0, rest.find(',')));
    }
    BONSAI_CHECK(seen.insert(s.wnid).second, "synset list '" + path + "' line " +
                                                 std::to_string(i + 1) + ": wnid '" + s.wnid +
                                                 "' appears twice");
    out.push_back(std::move(s));
  }
  BONSAI_CHECK(!out.empty(), "synset list '" + path + "': no entries");
  return out;
}

ImageNetDataset::ImageNetDataset(ImageNetOptions options) : options_(std::move(options)) {
  const std::string& root = options_.root;
  std::error_code ec;
  BONSAI_CHECK(fs::is_directory(root, ec), "ImageNet root '" + root + "': not found or not a folder");
  BONSAI_CHECK(options_.split == "train" || options_.split == "val",
               "ImageNet: split must be 'train' or 'val', got '" + options_.split + "'");
  const std::string split_dir = join(root, options_.split);
  BONSAI_CHECK(fs::is_directory(split_dir, ec),
               "ImageNet " + options_.split + ": folder '" + split_dir + "' not found");

  // The synset list gives names for printing, and the classes when there is
  // no train/ folder to take them from.
  std::string names_file = options_.class_names_file;
  if (names_file.empty() && fs::is_regular_file(join(root, "LOC_synset_mapping.txt"), ec))
    names_file = join(root, "LOC_synset_mapping.txt");
  std::vector<Synset> synsets;
  if (!names_file.empty()) synsets = read_synset_list(names_file);

  const std::string train_dir = join(root, "train");
  if (fs::is_directory(train_dir, ec)) {
    wnids_ = list_dir(train_dir).dirs;
    BONSAI_CHECK(!wnids_.empty(), "ImageNet: folder '" + train_dir + "' has no class folders");
  } else if (!synsets.empty()) {
    for (const Synset& s : synsets) wnids_.push_back(s.wnid);
    std::sort(wnids_.begin(), wnids_.end());
  } else {
    wnids_ = list_dir(split_dir).dirs;
    BONSAI_CHECK(!wnids_.empty(), "ImageNet " + options_.split + " at '" + root +
                                      "': cannot tell the classes: no train/ folder, no synset "
                                      "list (LOC_synset_mapping.txt or class_names_file) and no "
                                      "class folders in '" + split_dir + "'");
  }
  if (!synsets.empty()) {
    std::map<std::string, std::string> by_wnid;
    for (const Synset& s : synsets) by_wnid[s.wnid] = s.name.empty() ? s.wnid : s.name;
    for (const std::string& w : wnids_) {
      auto it = by_wnid.find(w);
      names_.push_back(it == by_wnid.end() ? w : it->second);
    }
  }

  if (options_.split == "train" || !list_dir(split_dir).dirs.empty()) {
    scan_class_folders(split_dir);
  } else {
    scan_flat_val(split_dir);
  }
  BONSAI_CHECK(!items_.empty(), "ImageNet " + options_.split + " at '" + root + "': no images" +
                                    (skipped_.empty() ? std::string()
                                                      : " (" + std::to_string(skipped_.size()) +
                                                            " problems skipped, first: " +
                                                            skipped_[0].message + ")"));
}

void ImageNetDataset::problem(const std::string& path, const std::string& message) {
  BONSAI_CHECK(options_.on_error == OnError::skip,
               "ImageNet " + options_.split + ": '" + path + "': " + message);
  skipped_.push_back({.index = -1, .path = path, .message = "'" + path + "': " + message});
}

void ImageNetDataset::scan_class_folders(const std::string& dir) {
  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < wnids_.size(); ++i) index[wnids_[i]] = static_cast<int64_t>(i);
  Listing top = list_dir(dir);
  for (const std::string& f : top.files)
    if (has_image_extension(f)) problem(join(dir, f), "image outside any class folder");
  for (const std::string& wnid : top.dirs) {
    const std::string class_dir = join(dir, wnid);
    auto it = index.find(wnid);
    if (it == index.end()) {
      problem(class_dir, "class folder '" + wnid + "' is not one of the " +
                             std::to_string(wnids_.size()) + " classes" +
                             (options_.split == "val" ? " of train/ or the synset list" : ""));
      continue;
    }
    size_t before = items_.size();
    for (const std::string& f : list_dir(class_dir).files)
      if (has_image_extension(f)) items_.push_back({join(class_dir, f), it->second});
    if (items_.size() == before) problem(class_dir, "empty class folder (no .jpeg/.jpg/.png files)");
  }
}

void ImageNetDataset::scan_flat_val(const std::string& dir) {
  const std::string& root = options_.root;
  std::error_code ec;
  std::string labels = options_.val_labels;
  if (labels.empty()) {
    for (const char* name : {"LOC_val_solution.csv", "ILSVRC2012_validation_ground_truth.txt"}) {
      if (fs::is_regular_file(join(root, name), ec)) {
        labels = join(root, name);
        break;
      }
    }
  }
  BONSAI_CHECK(!labels.empty(), "ImageNet val: '" + dir + "' is flat (no class folders) and no "
                                    "labels were found: put LOC_val_solution.csv or "
                                    "ILSVRC2012_validation_ground_truth.txt in '" + root +
                                    "' or set val_labels");

  // Image files by id (the name without extension), sorted by file name.
  std::vector<std::string> files;
  std::map<std::string, std::string> by_id;
  for (const std::string& f : list_dir(dir).files) {
    if (!has_image_extension(f)) continue;
    auto [it, fresh] = by_id.emplace(stem_of(f), join(dir, f));
    BONSAI_CHECK(fresh, "ImageNet val: '" + join(dir, f) + "' and '" + it->second +
                            "' have the same id '" + stem_of(f) + "'");
    files.push_back(f);
  }

  std::map<std::string, int64_t> index;
  for (size_t i = 0; i < wnids_.size(); ++i) index[wnids_[i]] = static_cast<int64_t>(i);
  std::vector<std::string> lines = read_lines(labels, "val labels");
  std::map<std::string, int64_t> label_of;  // file path -> class
  std::set<std::string> reported;           // files already skipped for a bad label
  const bool csv = labels.size() >= 4 && labels.substr(labels.size() - 4) == ".csv";
  if (csv) {
    BONSAI_CHECK(!lines.empty() && trim(lines[0]).rfind("ImageId", 0) == 0,
                 "val labels '" + labels + "': expected the header 'ImageId,PredictionString'");
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string line = trim(lines[i]);
      if (line.empty()) continue;
      const std::string at = "val labels '" + labels + "' line " + std::to_string(i + 1);
      size_t comma = line.find(',');
      BONSAI_CHECK(comma != std::string::npos && comma > 0, at + ": expected 'ImageId,PredictionString'");
      std::string id = trim(line.substr(0, comma));
      std::string pred = trim(line.substr(comma + 1));
      std::string wnid = pred.substr(0, pred.find_first_of(" \t"));
      BONSAI_CHECK(!wnid.empty(), at + ": no wnid for '" + id + "'");
      auto file = by_id.find(id);
      if (file == by_id.end()) {
        problem(join(dir, id), "listed in '" + labels + "' line " + std::to_string(i + 1) +
                                  " but no image file with this id (.JPEG/.jpg/.png) exists");
        continue;
      }
      auto cls = index.find(wnid);
      if (cls == index.end()) {
        problem(file->second, "label '" + wnid + "' (in '" + labels + "' line " +
                                  std::to_string(i + 1) + ") is not one of the " +
                                  std::to_string(wnids_.size()) + " classes");
        reported.insert(file->second);
        continue;
      }
      BONSAI_CHECK(label_of.emplace(file->second, cls->second).second,
                   at + ": '" + id + "' is listed twice");
    }
  } else {
    // The devkit: line k labels the k-th file in sorted order, by ILSVRC2012_ID.
    BONSAI_CHECK(!options_.devkit_synsets.empty(),
                 "val labels '" + labels + "': devkit ground truth needs devkit_synsets, a file "
                 "whose line k holds the wnid of ILSVRC2012_ID k+1 (meta.mat order, not sorted)");
    std::vector<Synset> devkit = read_synset_list(options_.devkit_synsets);
    std::vector<int64_t> ids;
    for (size_t i = 0; i < lines.size(); ++i) {
      std::string line = trim(lines[i]);
      if (line.empty()) continue;
      size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(line, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      BONSAI_CHECK(used == line.size() && v >= 1 && v <= static_cast<long long>(devkit.size()),
                   "val labels '" + labels + "' line " + std::to_string(i + 1) + ": '" + line +
                       "' is not an ILSVRC2012_ID in 1.." + std::to_string(devkit.size()));
      ids.push_back(v);
    }
    // Which file a line belongs to is only known by position, so a count
    // mismatch cannot be skipped around.
    BONSAI_CHECK(ids.size() == files.size(),
                 "val labels '" + labels + "' has " + std::to_string(ids.size()) +
                     " labels but '" + dir + "' has " + std::to_string(files.size()) + " images");
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string& wnid = devkit[static_cast<size_t>(ids[i] - 1)].wnid;
      auto cls = index.find(wnid);
      if (cls == index.end()) {
        problem(join(dir, files[i]), "ILSVRC2012_ID " + std::to_string(ids[i]) + " is '" + wnid +
                                         "', not one of the " + std::to_string(wnids_.size()) +
                                         " classes");
        reported.insert(join(dir, files[i]));
        continue;
      }
      label_of.emplace(join(dir, files[i]), cls->second);
    }
  }
  for (const std::string& f : files) {
    const std::string path = join(dir, f);
    auto it = label_of.find(path);
    if (it == label_of.end()) {
      if (!reported.count(path)) problem(path, "has no label in '" + labels + "'");
      continue;
    }
    items_.push_back({path, it->second});
  }
}

Example ImageNetDataset::get(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "ImageNet " + options_.split + ": index " +
                                                 std::to_string(index) + " outside 0.." +
                                                 std::to_string(size() - 1));
  const Item& item = items_[static_cast<size_t>(index)];
  Example e;
  e.image = decode_image(item.path);
  e.label = item.label;
  e.path = item.path;
  return e;
}

const std::string& ImageNetDataset::path(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "ImageNet: index " + std::to_string(index) + " out of range");
  return items_[static_cast<size_t>(index)].path;
}

int64_t ImageNetDataset::label(int64_t index) const {
  BONSAI_CHECK(index >= 0 && index < size(), "ImageNet: index " + std::to_string(index) + " out of range");
  return items_[static_cast<size_t>(index)].label;
}

std::vector<std::string> ImageNetDataset::class_names() const {
  return names_.empty() ? wnids_ : names_;
}

std::string ImageNetDataset::describe() const {
  std::string s = "ImageNet " + options_.split + " at " + options_.root + ": " +
                  std::to_string(size()) + " images, " + std::to_string(num_classes()) + " classes";
  if (!skipped_.empty()) s += ", " + std::to_string(skipped_.size()) + " skipped";
  return s;
}

}  // namespace bonsai::data
