// Fuzzes the Pascal VOC reader (data/voc.h): the split list (ids, or
// "image mask" path pairs), the optional class_names.txt, and get(), which
// decodes an image and its mask and checks sizes and every mask value.
// Input: list text, "\n--\n", class names text (empty: no file), "\n--\n",
// then the bytes of SegmentationClass/a.png. JPEGImages/a.jpg and b.jpg are
// valid 4x4 images written once; SegmentationClass/b.png is a valid mask.
// The first byte of the list also picks on_error (skip or fail).
#include <filesystem>

#include "data/image.h"
#include "data/voc.h"
#include "fuzz/fuzz_util.h"

using namespace bonsai;
namespace fs = std::filesystem;

namespace {

const std::string& voc_root() {
  static const std::string root = [] {
    std::string r = fuzz::scratch_dir() + "/voc";
    fs::create_directories(r + "/JPEGImages");
    fs::create_directories(r + "/SegmentationClass");
    fs::create_directories(r + "/ImageSets/Segmentation");
    Tensor img = Tensor::zeros({4, 4, 3}, DType::u8);
    data::write_jpeg(r + "/JPEGImages/a.jpg", img);
    data::write_jpeg(r + "/JPEGImages/b.jpg", img);
    Tensor mask = Tensor::zeros({4, 4}, DType::u8);
    mask.data<uint8_t>()[5] = 1;
    mask.data<uint8_t>()[6] = 255;
    data::write_mask_png(r + "/SegmentationClass/b.png", mask);
    return r;
  }();
  return root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& root = voc_root();
  auto [list, rest] = fuzz::split(data, size, "\n--\n");
  auto [names, mask] = fuzz::split(reinterpret_cast<const uint8_t*>(rest.data()), rest.size(), "\n--\n");
  fuzz::write_bytes(root + "/ImageSets/Segmentation/train.txt", list.data(), list.size());
  const std::string names_path = root + "/class_names.txt";
  if (names.empty()) ::unlink(names_path.c_str());
  else fuzz::write_bytes(names_path, names.data(), names.size());
  fuzz::write_bytes(root + "/SegmentationClass/a.png", mask.data(), mask.size());
  const data::OnError on_error = !list.empty() && (list[0] & 1) ? data::OnError::skip : data::OnError::fail;
  fuzz::refusal_ok([&] {
    data::VocDataset ds({.root = root, .split = "train", .on_error = on_error});
    (void)ds.describe();
    // Each get decodes files; a list may repeat lines, so only a few.
    for (int64_t i = 0; i < std::min<int64_t>(ds.size(), 4); ++i) {
      fuzz::refusal_ok([&] { (void)ds.get(i); });
    }
  });
  return 0;
}
