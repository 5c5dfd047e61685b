#include "apps/lib/data_prepare.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "apps/lib/args.h"
#include "core/check.h"
#include "data/imagenet.h"
#include "data/prepare.h"
#include "data/voc.h"

namespace bonsai::apps {

const char* const kDataPrepareUsage =
    R"(  bonsai data prepare fashion-mnist --layout imagenet|voc --out DIR [--seed 0] [--limit N]
                      [--data /usr/share/datasets/fashion-mnist] [--quality 95] [--canvas 128]
      Write Fashion-MNIST as an ImageNet folder tree (60000 train JPEGs in
      class folders, 10000 val JPEGs flat with LOC_val_solution.csv) or as
      Pascal VOC segmentation data (10000 train + 1449 val canvases of 2-4
      items with colormap PNG masks). --limit N caps both splits at N images
      (canvases); DIR must not exist or be empty. Deterministic by --seed.
)";

namespace {

// One line per percent: redrawn in place on a terminal, appended in logs.
data::PrepareProgress progress_printer() {
  const bool tty = ::isatty(::fileno(stdout));
  auto start = std::chrono::steady_clock::now();
  return [tty, start](const std::string& stage, int64_t done, int64_t total) {
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s%-5s %lld/%lld (%3.0f%%)  %.1fs%s", tty ? "\r" : "", stage.c_str(),
                static_cast<long long>(done), static_cast<long long>(total),
                100.0 * static_cast<double>(done) / static_cast<double>(total), t,
                tty && done < total ? "" : "\n");
    std::fflush(stdout);
  };
}

}  // namespace

int data_prepare_command(int argc, char** argv) {
  BONSAI_CHECK(argc >= 4 && std::string(argv[2]) == "prepare" && std::string(argv[3]) == "fashion-mnist",
               std::string("usage:\n") + kDataPrepareUsage);
  Args a(argc, argv, 4,
         {{"layout", ""}, {"out", ""}, {"seed", "0"}, {"limit", "0"},
          {"data", "/usr/share/datasets/fashion-mnist"}, {"quality", "95"}, {"canvas", "128"}});
  const std::string layout = a.get("layout");
  const std::string out = a.get("out");
  BONSAI_CHECK(layout == "imagenet" || layout == "voc",
               "bonsai data prepare: --layout must be imagenet or voc, got '" + layout + "'");
  BONSAI_CHECK(!out.empty(), "bonsai data prepare: --out DIR is required");
  const int seed = a.get_int("seed");
  const int limit = a.get_int("limit");
  BONSAI_CHECK(seed >= 0, "--seed must be >= 0");
  BONSAI_CHECK(limit >= 0, "--limit must be >= 0 (0 = everything)");

  auto start = std::chrono::steady_clock::now();
  std::printf("loading Fashion-MNIST from %s\n", a.get("data").c_str());
  data::FashionMnist fm = data::load_fashion_mnist(a.get("data"));
  if (layout == "imagenet") {
    data::PreparedImageNet r = data::prepare_fashion_mnist_imagenet(
        fm, {.out_dir = out, .seed = static_cast<uint64_t>(seed), .limit = limit,
             .quality = a.get_int("quality"), .progress = progress_printer()});
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %lld train + %lld val JPEGs to %s in %.1f s\n",
                static_cast<long long>(r.train_count), static_cast<long long>(r.val_count),
                out.c_str(), t);
    for (const char* split : {"train", "val"}) {
      data::ImageNetDataset ds({.root = out, .split = split});
      std::printf("check: %s\n", ds.describe().c_str());
    }
  } else {
    data::PrepareVocOptions o{.out_dir = out, .seed = static_cast<uint64_t>(seed),
                              .quality = a.get_int("quality"), .progress = progress_printer()};
    o.canvas.canvas = a.get_int("canvas");
    if (limit > 0) {
      o.train_count = std::min<int64_t>(o.train_count, limit);
      o.val_count = std::min<int64_t>(o.val_count, limit);
    }
    data::PreparedVoc r = data::prepare_fashion_mnist_voc(fm, o);
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("wrote %lld canvases (%lld train, %lld val; JPEG + colormap PNG) to %s in %.1f s\n",
                static_cast<long long>(r.canvases.size()), static_cast<long long>(o.train_count),
                static_cast<long long>(o.val_count), out.c_str(), t);
    for (const char* split : {"train", "val", "trainval"}) {
      data::VocDataset ds({.root = out, .split = split});
      std::printf("check: %s\n", ds.describe().c_str());
    }
  }
  return 0;
}

}  // namespace bonsai::apps
