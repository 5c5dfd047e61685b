#include "apps/lib/data_bench.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "apps/lib/args.h"
#include "data/augment.h"
#include "data/imagenet.h"
#include "data/loader.h"
#include "data/voc.h"

namespace bonsai::apps {

std::string bench_data(const DataBenchSpec& s) {
  BONSAI_CHECK(!s.dataset.empty(), "bench data: --dataset DIR is required");
  BONSAI_CHECK(s.res > 0 && s.batch > 0 && s.batches > 0 && s.threads >= 0,
               "bench data: --res, --batch and --batches must be positive, --threads >= 0");
  std::unique_ptr<data::Dataset> ds;
  data::Transform transform;
  if (s.layout == "imagenet") {
    ds = std::make_unique<data::ImageNetDataset>(
        data::ImageNetOptions{.root = s.dataset, .split = s.split});
    transform = data::classify_train_transform({.size = s.res});
  } else if (s.layout == "voc") {
    ds = std::make_unique<data::VocDataset>(data::VocOptions{.root = s.dataset, .split = s.split});
    transform = data::segment_train_transform({.crop = s.res});
  } else {
    BONSAI_CHECK(false, "bench data: --layout must be imagenet or voc, got '" + s.layout + "'");
  }
  BONSAI_CHECK(ds->size() > 0, "bench data: " + ds->describe() + " has no images");

  data::Loader loader({.dataset = ds.get(), .batch_size = s.batch, .shuffle = true,
                       .seed = s.seed, .threads = s.threads, .prefetch = s.prefetch,
                       .drop_remainder = true, .transform = transform});
  BONSAI_CHECK(loader.batches_per_epoch() > 0, "bench data: " + ds->describe() +
                                                   " holds fewer images than one batch of " +
                                                   std::to_string(s.batch));
  const auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0, batches = 0, epoch = 0;
  loader.start_epoch(epoch);
  while (batches < s.batches) {
    std::optional<data::Batch> b = loader.next();
    if (!b) {
      loader.start_epoch(++epoch);  // a small dataset: keep going
      continue;
    }
    images += b->size();
    ++batches;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::json j;
  j["bench"] = "data";
  j["layout"] = s.layout;
  j["dataset"] = ds->describe();
  j["res"] = s.res;
  j["threads"] = s.threads;
  j["batch"] = s.batch;
  j["batches"] = batches;
  j["images"] = images;
  j["seconds"] = seconds;
  j["images_per_s"] = seconds > 0 ? static_cast<double>(images) / seconds : 0.0;
  return j.dump();
}

int bench_data_command(int argc, char** argv) {
  Args a(argc, argv, 3,
         {{"dataset", ""}, {"layout", "imagenet"}, {"split", "train"}, {"res", "224"},
          {"threads", "2"}, {"batch", "32"}, {"batches", "20"}, {"prefetch", "0"}, {"seed", "0"}});
  DataBenchSpec s;
  s.dataset = a.get("dataset");
  s.layout = a.get("layout");
  s.split = a.get("split");
  s.res = a.get_int("res");
  s.threads = a.get_int("threads");
  s.batch = a.get_int("batch");
  s.batches = a.get_int("batches");
  s.prefetch = a.get_int("prefetch");
  s.seed = static_cast<uint64_t>(a.get_int("seed"));
  std::printf("%s\n", bench_data(s).c_str());
  return 0;
}

}  // namespace bonsai::apps
