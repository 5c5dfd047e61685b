#include "data/prepare.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "data/image.h"

namespace bonsai::data {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kSide = 28;  // Fashion-MNIST images are 28x28

// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and the same numbers on
// every platform, unlike std::uniform_*_distribution.
struct Rng {
  uint64_t state;
  explicit Rng(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) by multiply-shift (Lemire); the bias, below 2^-32 for
  // any n here, does not matter for choosing images.
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

// A stream per (seed, purpose, split, index): streams never overlap in a way
// that matters, and any one can be recreated alone.
uint64_t stream_seed(uint64_t seed, uint64_t purpose, bool train, int64_t index) {
  Rng r(seed);
  uint64_t s = r.next() ^ (purpose * 0xD6E8FEB86659FD93ull);
  s = Rng(s).next() ^ (train ? 0x5851F42D4C957F2Dull : 0x14057B7EF767814Full);
  return Rng(s).next() ^ static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull;
}

enum Purpose : uint64_t { kSubset = 1, kCanvas = 2 };

// Bilinear resize of one 28x28 u8 image to side x side, sampling at pixel
// centres (align_corners = false, the Model Garden's and PyTorch's default),
// edges clamped.
void resize_item(const uint8_t* src, int64_t side, uint8_t* dst) {
  const double scale = static_cast<double>(kSide) / static_cast<double>(side);
  for (int64_t y = 0; y < side; ++y) {
    double sy = std::clamp((y + 0.5) * scale - 0.5, 0.0, double(kSide - 1));
    int64_t y0 = static_cast<int64_t>(sy), y1 = std::min(y0 + 1, kSide - 1);
    double fy = sy - y0;
    for (int64_t x = 0; x < side; ++x) {
      double sx = std::clamp((x + 0.5) * scale - 0.5, 0.0, double(kSide - 1));
      int64_t x0 = static_cast<int64_t>(sx), x1 = std::min(x0 + 1, kSide - 1);
      double fx = sx - x0;
      double top = src[y0 * kSide + x0] * (1 - fx) + src[y0 * kSide + x1] * fx;
      double bottom = src[y1 * kSide + x0] * (1 - fx) + src[y1 * kSide + x1] * fx;
      dst[y * side + x] = static_cast<uint8_t>(std::lround(top * (1 - fy) + bottom * fy));
    }
  }
}

Tensor gray_to_rgb(const uint8_t* src, int64_t h, int64_t w) {
  Tensor out = Tensor::empty({h, w, 3}, DType::u8);  // [H, W, 3]
  uint8_t* dst = out.data<uint8_t>();
  for (int64_t i = 0; i < h * w; ++i) dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = src[i];
  return out;
}

void check_fashion(const Tensor& images, const Tensor& labels, const char* what) {
  BONSAI_CHECK(images.defined() && images.dtype() == DType::u8 && images.rank() == 3 &&
                   images.dim(1) == kSide && images.dim(2) == kSide,
               std::string("prepare: ") + what + " images must be u8 [N, 28, 28]" +
                   (images.defined() ? ", got " + images.shape_str() : std::string()));
  BONSAI_CHECK(labels.defined() && labels.dtype() == DType::s64 && labels.rank() == 1 &&
                   labels.dim(0) == images.dim(0),
               std::string("prepare: ") + what + " labels must be s64 [N] matching the images");
  BONSAI_CHECK(images.dim(0) > 0, std::string("prepare: no ") + what + " images");
}

// Which images a limit keeps: a seeded permutation, dealt round-robin over
// the classes so every class is represented, returned in IDX order.
std::vector<int64_t> choose_subset(const Tensor& labels, int64_t limit, uint64_t seed, bool train) {
  const int64_t n = labels.dim(0);
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  if (limit <= 0 || limit >= n) return all;
  Rng rng(stream_seed(seed, kSubset, train, 0));
  for (int64_t i = n - 1; i > 0; --i)  // Fisher-Yates
    std::swap(all[static_cast<size_t>(i)], all[rng.below(static_cast<uint64_t>(i + 1))]);
  std::vector<std::vector<int64_t>> by_class(10);
  const int64_t* y = labels.data<int64_t>();
  for (int64_t i : all) by_class[static_cast<size_t>(y[i])].push_back(i);
  std::vector<int64_t> chosen;
  for (size_t round = 0; static_cast<int64_t>(chosen.size()) < limit; ++round)
    for (auto& c : by_class)
      if (round < c.size() && static_cast<int64_t>(chosen.size()) < limit) chosen.push_back(c[round]);
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

std::string wnid_of(int64_t label) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "n%08lld", static_cast<long long>(label));
  return buf;
}

void write_text(const std::string& path, const std::string& text) {
  write_file_atomic(path, std::vector<uint8_t>(text.begin(), text.end()));
}

// Builds a dataset in "<out>.partial-<pid>" and renames it to `out` when
// `fill` returns; on any error the partial folder is removed.
template <typename Fill>
void build_atomically(const std::string& out, Fill&& fill) {
  BONSAI_CHECK(!out.empty(), "prepare: no output folder given");
  fs::path target = fs::path(out).lexically_normal();
  if (!target.has_filename()) target = target.parent_path();  // "dir/" -> "dir"
  std::error_code ec;
  if (fs::exists(target, ec)) {
    BONSAI_CHECK(fs::is_directory(target, ec) && fs::is_empty(target, ec),
                 "prepare: output '" + out + "' already exists and is not an empty folder; "
                 "remove it or choose another --out");
  }
  if (!target.parent_path().empty()) {
    fs::create_directories(target.parent_path(), ec);
    BONSAI_CHECK(!ec, "prepare: cannot create '" + target.parent_path().string() + "': " + ec.message());
  }
  const fs::path partial = target.string() + ".partial-" + std::to_string(::getpid());
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  BONSAI_CHECK(!ec, "prepare: cannot create '" + partial.string() + "': " + ec.message());
  try {
    fill(partial.string());
    if (fs::exists(target, ec)) fs::remove(target, ec);  // checked empty above
    fs::rename(partial, target, ec);
    BONSAI_CHECK(!ec, "prepare: cannot rename '" + partial.string() + "' to '" + target.string() +
                          "': " + ec.message());
  } catch (...) {
    fs::remove_all(partial, ec);
    throw;
  }
}

void make_dir(const fs::path& p) {
  std::error_code ec;
  fs::create_directories(p, ec);
  BONSAI_CHECK(!ec, "prepare: cannot create '" + p.string() + "': " + ec.message());
}

// Reports about every 1% (and at the end) so a full run prints ~100 lines.
void report(const PrepareProgress& progress, const std::string& stage, int64_t done, int64_t total) {
  if (!progress) return;
  int64_t step = std::max<int64_t>(1, total / 100);
  if (done % step == 0 || done == total) progress(stage, done, total);
}

}  // namespace

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                 "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

PreparedImageNet prepare_fashion_mnist_imagenet(const FashionMnist& fm,
                                                const PrepareImageNetOptions& options) {
  check_fashion(fm.train_images, fm.train_labels, "train");
  check_fashion(fm.test_images, fm.test_labels, "test");
  BONSAI_CHECK(options.limit == 0 || options.limit >= 10,
               "prepare imagenet: limit " + std::to_string(options.limit) +
                   " must be 0 (all) or >= 10, so that every class folder gets an image");
  BONSAI_CHECK(options.quality >= 1 && options.quality <= 100, "prepare: JPEG quality outside 1..100");
  const auto& names = fashion_mnist_class_names();
  PreparedImageNet result;
  build_atomically(options.out_dir, [&](const std::string& dir) {
    const fs::path root(dir);
    std::string synsets;
    for (int64_t c = 0; c < 10; ++c) {
      make_dir(root / "train" / wnid_of(c));
      synsets += wnid_of(c) + " " + names[static_cast<size_t>(c)] + "\n";
    }
    make_dir(root / "val");
    write_text((root / "LOC_synset_mapping.txt").string(), synsets);

    // train/<wnid>/<wnid>_<i>.JPEG. The dataset lists by class, then name;
    // record in that order so result.images lines up with the loader.
    std::vector<int64_t> train = choose_subset(fm.train_labels, options.limit, options.seed, true);
    const int64_t* ytr = fm.train_labels.data<int64_t>();
    std::vector<PreparedImage> rows;
    for (size_t k = 0; k < train.size(); ++k) {
      int64_t i = train[k];
      std::string rel = "train/" + wnid_of(ytr[i]) + "/" + wnid_of(ytr[i]) + "_" + std::to_string(i) + ".JPEG";
      Tensor rgb = gray_to_rgb(fm.train_images.data<uint8_t>() + i * kSide * kSide, kSide, kSide);
      write_jpeg((root / rel).string(), rgb, {.quality = options.quality});
      rows.push_back({rel, true, i, ytr[i]});
      report(options.progress, "train", static_cast<int64_t>(k + 1), static_cast<int64_t>(train.size()));
    }
    std::sort(rows.begin(), rows.end(), [](const PreparedImage& a, const PreparedImage& b) {
      return a.label != b.label ? a.label < b.label : a.path < b.path;
    });
    result.images = std::move(rows);
    result.train_count = static_cast<int64_t>(train.size());

    // val/ILSVRC2012_val_<k>.JPEG, flat, labelled by LOC_val_solution.csv.
    std::vector<int64_t> val = choose_subset(fm.test_labels, options.limit, options.seed, false);
    const int64_t* yte = fm.test_labels.data<int64_t>();
    std::string csv = "ImageId,PredictionString\n";
    for (size_t k = 0; k < val.size(); ++k) {
      int64_t i = val[k];
      char id[48];
      std::snprintf(id, sizeof id, "ILSVRC2012_val_%08zu", k + 1);
      std::string rel = std::string("val/") + id + ".JPEG";
      Tensor rgb = gray_to_rgb(fm.test_images.data<uint8_t>() + i * kSide * kSide, kSide, kSide);
      write_jpeg((root / rel).string(), rgb, {.quality = options.quality});
      // Kaggle's rows are "wnid x_min y_min x_max y_max ..." per box; one box
      // covering the whole image.
      csv += std::string(id) + "," + wnid_of(yte[i]) + " 0 0 " + std::to_string(kSide - 1) + " " +
             std::to_string(kSide - 1) + "\n";
      result.images.push_back({rel, false, i, yte[i]});
      report(options.progress, "val", static_cast<int64_t>(k + 1), static_cast<int64_t>(val.size()));
    }
    write_text((root / "LOC_val_solution.csv").string(), csv);
    result.val_count = static_cast<int64_t>(val.size());
  });
  return result;
}

PreparedImageNet prepare_fashion_mnist_imagenet(const PrepareImageNetOptions& options) {
  return prepare_fashion_mnist_imagenet(load_fashion_mnist(options.fashion_dir), options);
}

VocCanvas compose_voc_canvas(const Tensor& images, const Tensor& labels, uint64_t seed, bool train,
                             int64_t index, const VocCanvasOptions& o) {
  check_fashion(images, labels, train ? "train" : "test");
  BONSAI_CHECK(o.canvas >= kSide && o.canvas <= 4096,
               "compose_voc_canvas: canvas " + std::to_string(o.canvas) + " outside 28..4096");
  BONSAI_CHECK(o.min_items >= 1 && o.max_items >= o.min_items,
               "compose_voc_canvas: need 1 <= min_items <= max_items");
  BONSAI_CHECK(o.min_scale > 0 && o.max_scale >= o.min_scale,
               "compose_voc_canvas: need 0 < min_scale <= max_scale");
  BONSAI_CHECK(o.threshold >= 0 && o.threshold < 255 && o.boundary >= 0,
               "compose_voc_canvas: threshold must be in 0..254 and boundary >= 0");
  const int64_t C = o.canvas;
  Rng rng(stream_seed(seed, kCanvas, train, index));
  const int64_t count = o.min_items + static_cast<int64_t>(rng.below(o.max_items - o.min_items + 1));

  std::vector<uint8_t> gray(static_cast<size_t>(C * C), 0);   // [C, C]
  std::vector<uint8_t> label(static_cast<size_t>(C * C), 0);  // [C, C], before the band
  std::vector<uint8_t> scaled;
  VocCanvas out;
  const int64_t* y = labels.data<int64_t>();
  for (int64_t k = 0; k < count; ++k) {
    PlacedItem item;
    item.source_index = static_cast<int64_t>(rng.below(static_cast<uint64_t>(images.dim(0))));
    item.label = y[item.source_index];
    BONSAI_CHECK(item.label >= 0 && item.label <= 253,
                 "compose_voc_canvas: label " + std::to_string(item.label) + " out of range");
    double scale = o.min_scale + rng.unit() * (o.max_scale - o.min_scale);
    item.side = std::clamp<int64_t>(std::lround(kSide * scale), 1, C);
    item.top = static_cast<int64_t>(rng.below(static_cast<uint64_t>(C - item.side + 1)));
    item.left = static_cast<int64_t>(rng.below(static_cast<uint64_t>(C - item.side + 1)));
    scaled.resize(static_cast<size_t>(item.side * item.side));
    resize_item(images.data<uint8_t>() + item.source_index * kSide * kSide, item.side, scaled.data());
    // Only the object is drawn: an item's dark surround does not erase what
    // lies under it, so occlusion follows object shapes.
    for (int64_t r = 0; r < item.side; ++r)
      for (int64_t c = 0; c < item.side; ++c) {
        uint8_t v = scaled[static_cast<size_t>(r * item.side + c)];
        if (v <= o.threshold) continue;
        size_t at = static_cast<size_t>((item.top + r) * C + item.left + c);
        gray[at] = v;
        label[at] = static_cast<uint8_t>(item.label + 1);
      }
    out.items.push_back(item);
  }

  out.image = gray_to_rgb(gray.data(), C, C);
  out.mask = Tensor::empty({C, C}, DType::u8);  // [C, C]
  uint8_t* m = out.mask.data<uint8_t>();
  const int64_t b = o.boundary;
  for (int64_t r = 0; r < C; ++r)
    for (int64_t c = 0; c < C; ++c) {
      uint8_t v = label[static_cast<size_t>(r * C + c)];
      bool edge = false;
      for (int64_t rr = std::max<int64_t>(0, r - b); rr <= std::min(C - 1, r + b) && !edge; ++rr)
        for (int64_t cc = std::max<int64_t>(0, c - b); cc <= std::min(C - 1, c + b); ++cc)
          if (label[static_cast<size_t>(rr * C + cc)] != v) {
            edge = true;
            break;
          }
      m[r * C + c] = edge ? 255 : v;
    }
  return out;
}

PreparedVoc prepare_fashion_mnist_voc(const FashionMnist& fm, const PrepareVocOptions& options) {
  check_fashion(fm.train_images, fm.train_labels, "train");
  check_fashion(fm.test_images, fm.test_labels, "test");
  BONSAI_CHECK(options.train_count >= 1 && options.val_count >= 1,
               "prepare voc: train_count and val_count must be >= 1");
  BONSAI_CHECK(options.quality >= 1 && options.quality <= 100, "prepare: JPEG quality outside 1..100");
  // Fail on bad canvas options before creating anything.
  compose_voc_canvas(fm.test_images, fm.test_labels, options.seed, false, 0, options.canvas);
  PreparedVoc result;
  build_atomically(options.out_dir, [&](const std::string& dir) {
    const fs::path root(dir);
    make_dir(root / "JPEGImages");
    make_dir(root / "SegmentationClass");
    make_dir(root / "ImageSets" / "Segmentation");
    std::string names = "background\n";
    for (const std::string& n : fashion_mnist_class_names()) names += n + "\n";
    write_text((root / "class_names.txt").string(), names);

    std::string lists[2];
    for (bool train : {true, false}) {
      const int64_t count = train ? options.train_count : options.val_count;
      const Tensor& images = train ? fm.train_images : fm.test_images;
      const Tensor& labels = train ? fm.train_labels : fm.test_labels;
      const char* split = train ? "train" : "val";
      for (int64_t i = 0; i < count; ++i) {
        char id[48];
        std::snprintf(id, sizeof id, "%s_%06lld", split, static_cast<long long>(i));
        VocCanvas cv = compose_voc_canvas(images, labels, options.seed, train, i, options.canvas);
        write_jpeg((root / "JPEGImages" / (std::string(id) + ".jpg")).string(), cv.image,
                   {.quality = options.quality});
        write_mask_png((root / "SegmentationClass" / (std::string(id) + ".png")).string(), cv.mask);
        lists[train ? 0 : 1] += std::string(id) + "\n";
        result.canvases.push_back({id, train, i, std::move(cv.items)});
        report(options.progress, split, i + 1, count);
      }
    }
    const fs::path sets = root / "ImageSets" / "Segmentation";
    write_text((sets / "train.txt").string(), lists[0]);
    write_text((sets / "val.txt").string(), lists[1]);
    write_text((sets / "trainval.txt").string(), lists[0] + lists[1]);
  });
  return result;
}

PreparedVoc prepare_fashion_mnist_voc(const PrepareVocOptions& options) {
  return prepare_fashion_mnist_voc(load_fashion_mnist(options.fashion_dir), options);
}

}  // namespace bonsai::data
