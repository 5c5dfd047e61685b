// IDX reading: the format MNIST and Fashion-MNIST ship in, gzip-compressed or
// raw, and a loader for Debian's Fashion-MNIST (package dataset-fashion-mnist).
//
// Layout: a 4-byte magic {0, 0, type, rank}, `rank` big-endian u32 extents,
// then the elements row-major, multi-byte types big-endian.
//
//   Tensor labels = data::read_idx("train-labels-idx1-ubyte.gz");  // u8 [60000]
//
//   data::FashionMnist ds = data::load_fashion_mnist();
//   const uint8_t* px = ds.train_images.data<uint8_t>();  // u8 [60000, 28, 28]
//   const int64_t* y = ds.train_labels.data<int64_t>();   // s64 [60000], 0..9
//
// Files come from outside (a download, a package, a disk that filled up), so
// everything is validated before it is trusted: every error is a bonsai::Error
// that names the file and says what is wrong, and a header claiming more data
// than the file holds is rejected before anything that size is allocated.
#pragma once

#include <string>

#include "core/tensor.h"

namespace bonsai::data {

// Reads one IDX file. Gzip is detected by its magic bytes (1f 8b), not by the
// name. Element types: 0x08 u8 -> u8, 0x09 s8 -> s8, 0x0C s32 -> s32,
// 0x0D f32 -> f32 (converted from big-endian); 0x0B (s16) and 0x0E (f64) and
// anything else are refused. Rank must be 1..5 and the data must be exactly
// what the header describes (no more, no less). Decompressed files above
// 2 GiB are refused. Throws bonsai::Error on any problem.
Tensor read_idx(const std::string& path);

struct FashionMnist {
  Tensor train_images, train_labels;  // u8 [60000, 28, 28], s64 [60000]
  Tensor test_images, test_labels;    // u8 [10000, 28, 28], s64 [10000]
};

// Loads the four gzip files train-images-idx3-ubyte.gz,
// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
// t10k-labels-idx1-ubyte.gz from `dir`. Checks that images are u8 [N, 28, 28],
// labels u8 [N] with the same N and every label in 0..9; labels are widened to
// s64 (what the losses take as class indices).
FashionMnist load_fashion_mnist(const std::string& dir = "/usr/share/datasets/fashion-mnist");

}  // namespace bonsai::data
