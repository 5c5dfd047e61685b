// Loader: turns a Dataset into a stream of batches for one epoch at a time.
// Worker threads decode and augment whole batches ahead of the consumer into a
// bounded prefetch window; the consumer receives them in order.
//
//   data::ImageNetDataset train({.root = dir, .split = "train"});
//   data::Loader loader({.dataset = &train, .batch_size = 128, .seed = 7, .threads = 2,
//                        .transform = data::classify_train_transform({.size = 224})});
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     while (std::optional<data::Batch> b = loader.next()) {
//       // b->images f32 [N, 224, 224, 3], b->labels s64 [N]
//     }
//     for (const auto& s : loader.skipped()) std::printf("skipped %s\n", s.message.c_str());
//   }
//
// Determinism. Epoch e's order is a Fisher-Yates permutation of the dataset
// drawn from mt19937(seed_seq{seed, e}) (identity when shuffle is off); each
// example's augmentation draws from mt19937(seed_seq{seed, e, index}). Batch
// b holds positions [b*N, (b+1)*N) of this rank's shard. So batch contents and
// order depend only on (seed, epoch, rank, world_size), never on the thread
// count or on timing.
//
// Sharding. Every rank draws the same permutation and keeps positions
// p with p % world_size == rank. With ShardRemainder::spread (the default)
// the shards are disjoint and together cover the epoch; the first
// size % world_size ranks hold one more example. With ShardRemainder::drop
// the last size % world_size positions of the permutation are left out so
// every rank holds exactly floor(size / world_size) examples (equal step
// counts for data-parallel training; shuffled, a different few are left out
// each epoch).
//
// Bad examples. Dataset::get or the transform may throw. on_error = fail: the
// error (naming the file) is rethrown from next() when the consumer reaches
// that batch, and the epoch ends. on_error = skip: the example is left out of
// its batch (the batch is one shorter; a batch with nothing left is not
// delivered) and recorded in skipped(), which the caller reports at the end
// of the epoch.
//
// Threads. One consumer thread calls start_epoch() and next(); the dataset's
// get() and the transform run on the workers, several at once.
//
// Shutdown. start_epoch() and the destructor stop any running epoch: workers
// finish the example in hand, see the stop flag and exit; nothing waits on
// the consumer, so abandoning an epoch half way never deadlocks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "data/augment.h"
#include "data/dataset.h"

namespace bonsai::data {

enum class OnError { fail, skip };
enum class ShardRemainder { spread, drop };

struct LoaderOptions {
  const Dataset* dataset = nullptr;  // not owned; must outlive the loader
  int64_t batch_size = 32;
  bool shuffle = true;
  uint64_t seed = 0;
  int threads = 2;   // worker threads; 0 = build batches in the consumer thread
  int prefetch = 0;  // batches decoded ahead (in progress + ready); 0 = 2 * threads
  bool drop_remainder = false;  // leave out the shard's last, short batch
  int rank = 0, world_size = 1;
  ShardRemainder shard_remainder = ShardRemainder::spread;
  OnError on_error = OnError::fail;
  // Example -> Sample. Empty: the u8 image is converted to f32 0..255 as is
  // (all images must then have one size), label and mask passed through.
  Transform transform;
};

struct Batch {
  Tensor images;  // f32 [N, H, W, 3]
  Tensor labels;  // s64 [N] (classification) or [N, H, W] (segmentation; 255 = ignore)
  std::vector<std::string> paths;
  std::vector<int64_t> indices;  // dataset indices
  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

struct SkippedExample {
  int64_t index = 0;
  std::string path;     // when known (the dataset threw before returning an Example: empty)
  std::string message;  // the error, which names the file
};

// The dataset indices rank `rank` visits in epoch `epoch`, in order (see the
// header comment).
std::vector<int64_t> shard_order(int64_t dataset_size, uint64_t seed, int64_t epoch, bool shuffle,
                                 int rank, int world_size, ShardRemainder remainder);

// The generator an example's transform receives.
std::mt19937 example_rng(uint64_t seed, int64_t epoch, int64_t index);

class Loader {
 public:
  explicit Loader(LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t shard_size() const;         // examples this rank visits per epoch
  int64_t batches_per_epoch() const;  // before any skipping
  const LoaderOptions& options() const { return options_; }

  // Stops the running epoch, if any, and starts `epoch`.
  // first_batch > 0 resumes inside the epoch: batches before it are not built
  // (the order and each batch's contents do not depend on where one starts).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the epoch, or nullopt at its end. Rethrows a failed
  // example's error (on_error = fail); the epoch then ends.
  std::optional<Batch> next();
  // Examples skipped so far this epoch, by dataset index.
  std::vector<SkippedExample> skipped() const;

 private:
  struct Result {
    std::optional<Batch> batch;  // nullopt: every example was skipped
    std::exception_ptr error;
  };

  void stop_workers();
  void worker_loop();
  Result build_batch(int64_t b);

  LoaderOptions options_;
  int prefetch_ = 1;

  // The current epoch; order_ and num_batches_ are fixed while workers run.
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
  int64_t num_batches_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable space_cv_;  // workers wait for room in the prefetch window
  std::condition_variable ready_cv_;  // the consumer waits for its next batch
  std::atomic<bool> stop_ = false;
  int64_t next_claim_ = 0;    // next batch a worker will build
  int64_t next_consume_ = 0;  // next batch next() returns
  std::map<int64_t, Result> ready_;
  std::vector<SkippedExample> skipped_;
  std::vector<std::thread> workers_;
};

}  // namespace bonsai::data
