// `bonsai bench data`: images per second through the whole input pipeline —
// decode (stb_image) + augmentation + batching on the Loader's worker
// threads — on a dataset in the ImageNet or Pascal VOC layout, printed as one
// JSON line.
//
//   bonsai bench data --dataset /tmp/fm-imagenet --layout imagenet --res 224 --threads 2
//   {"bench":"data","layout":"imagenet","res":224,"threads":2,"batch":32,"batches":20,
//    "images":640,"seconds":2.1,"images_per_s":304.8,...}
//
// ImageNet uses the training transform (random resized crop to res x res,
// flip, normalisation); VOC the segmentation training transform (scale
// 0.5-2.0, crop res x res, flip). The clock runs from start_epoch() to the
// last batch, so thread start-up and the prefetch fill are included (a
// slightly pessimistic number). Batches are full (drop_remainder); a dataset
// smaller than batch x batches is cycled through further epochs.
#pragma once

#include <cstdint>
#include <string>

namespace bonsai::apps {

struct DataBenchSpec {
  std::string dataset;             // the dataset root
  std::string layout = "imagenet"; // imagenet | voc
  std::string split = "train";
  int res = 224;
  int threads = 2;
  int batch = 32;
  int batches = 20;
  int prefetch = 0;  // Loader default (2 x threads)
  uint64_t seed = 0;
};

// Runs the benchmark and returns the JSON line it prints.
std::string bench_data(const DataBenchSpec& s);

inline constexpr const char* kBenchDataUsage =
    "  bonsai bench data --dataset DIR --layout imagenet|voc [--res 224] [--threads 2]\n"
    "                    [--batch 32] [--batches 20] [--split train] [--prefetch 0] [--seed 0]\n"
    "      Decode + augment + batch throughput of the data loader; one JSON line (images/s).\n";

// `bonsai bench data ...`: parses argv[3..] and prints bench_data's line.
int bench_data_command(int argc, char** argv);

}  // namespace bonsai::apps
