#include "data/loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace bonsai::data {

namespace {

uint32_t lo32(uint64_t v) { return static_cast<uint32_t>(v & 0xffffffffu); }
uint32_t hi32(uint64_t v) { return static_cast<uint32_t>(v >> 32); }

// No transform: the decoded example as f32 0..255.
Sample raw_sample(const Example& e) {
  BONSAI_CHECK(e.image.defined(), "loader: " + e.path + ": no image");
  return {.image = e.image.dtype() == DType::f32 ? e.image : e.image.to(DType::f32),
          .label = e.label, .mask = e.mask, .path = e.path};
}

// Samples -> one Batch. All images must share one shape (the transform's
// job); masks, when present, must match their image.
Batch assemble(std::vector<Sample>& samples, std::vector<int64_t> indices) {
  const Sample& first = samples.front();
  const int64_t N = static_cast<int64_t>(samples.size());
  BONSAI_CHECK(first.image.dtype() == DType::f32 && first.image.rank() == 3,
               "loader: " + first.path + ": the transform must return an f32 [H, W, C] image, got " +
                   dtype_name(first.image.dtype()) + " " + first.image.shape_str());
  const int64_t H = first.image.dim(0), W = first.image.dim(1), C = first.image.dim(2);
  const bool segmentation = first.mask.defined();
  Batch batch;
  batch.images = Tensor::empty({N, H, W, C}, DType::f32);  // [N, H, W, C]
  batch.labels = segmentation ? Tensor::empty({N, H, W}, DType::s64)  // [N, H, W]
                              : Tensor::empty({N}, DType::s64);       // [N]
  float* images = batch.images.data<float>();
  int64_t* labels = batch.labels.data<int64_t>();
  for (int64_t i = 0; i < N; ++i) {
    Sample& s = samples[i];
    BONSAI_CHECK(s.image.dtype() == DType::f32 && s.image.shape() == first.image.shape(),
                 "loader: " + s.path + ": image " + dtype_name(s.image.dtype()) + " " +
                     s.image.shape_str() + " differs from " + first.path + " " +
                     first.image.shape_str() +
                     " in the same batch; the transform must produce one f32 size");
    std::memcpy(images + i * H * W * C, s.image.data<float>(), sizeof(float) * H * W * C);
    BONSAI_CHECK(s.mask.defined() == segmentation,
                 "loader: " + s.path + (segmentation ? ": no mask" : ": unexpected mask") +
                     " (batch mixes segmentation and classification examples)");
    if (segmentation) {
      BONSAI_CHECK(s.mask.dtype() == DType::u8 && s.mask.rank() == 2 && s.mask.dim(0) == H &&
                       s.mask.dim(1) == W,
                   "loader: " + s.path + ": mask " + s.mask.shape_str() +
                       " must be u8 [H, W] matching image " + s.image.shape_str());
      const uint8_t* m = s.mask.data<uint8_t>();
      for (int64_t p = 0; p < H * W; ++p) labels[i * H * W + p] = m[p];
    } else {
      labels[i] = s.label;
    }
    batch.paths.push_back(std::move(s.path));
  }
  batch.indices = std::move(indices);
  return batch;
}

}  // namespace

std::vector<int64_t> shard_order(int64_t dataset_size, uint64_t seed, int64_t epoch, bool shuffle,
                                 int rank, int world_size, ShardRemainder remainder) {
  BONSAI_CHECK(world_size >= 1 && rank >= 0 && rank < world_size,
               "loader: rank " + std::to_string(rank) + " must be in 0.." +
                   std::to_string(world_size - 1) + " (world_size " + std::to_string(world_size) +
                   ")");
  BONSAI_CHECK(dataset_size >= 0, "loader: negative dataset size");
  std::vector<int64_t> perm(static_cast<size_t>(dataset_size));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (shuffle) {
    std::seed_seq seq{lo32(seed), hi32(seed), lo32(static_cast<uint64_t>(epoch)),
                      hi32(static_cast<uint64_t>(epoch))};
    std::mt19937 rng(seq);
    for (int64_t i = dataset_size - 1; i > 0; --i) std::swap(perm[i], perm[uniform_int(rng, i + 1)]);
  }
  const int64_t limit =
      remainder == ShardRemainder::drop ? dataset_size / world_size * world_size : dataset_size;
  std::vector<int64_t> shard;
  shard.reserve(static_cast<size_t>(limit / world_size + 1));
  for (int64_t p = rank; p < limit; p += world_size) shard.push_back(perm[p]);
  return shard;
}

std::mt19937 example_rng(uint64_t seed, int64_t epoch, int64_t index) {
  std::seed_seq seq{lo32(seed),
                    hi32(seed),
                    lo32(static_cast<uint64_t>(epoch)),
                    hi32(static_cast<uint64_t>(epoch)),
                    lo32(static_cast<uint64_t>(index)),
                    hi32(static_cast<uint64_t>(index))};
  return std::mt19937(seq);
}

Loader::Loader(LoaderOptions options) : options_(std::move(options)) {
  BONSAI_CHECK(options_.dataset != nullptr, "Loader: no dataset");
  BONSAI_CHECK(options_.batch_size >= 1,
               "Loader: batch_size " + std::to_string(options_.batch_size) + " must be positive");
  BONSAI_CHECK(options_.threads >= 0 && options_.prefetch >= 0,
               "Loader: threads and prefetch must be >= 0");
  BONSAI_CHECK(options_.world_size >= 1 && options_.rank >= 0 &&
                   options_.rank < options_.world_size,
               "Loader: rank " + std::to_string(options_.rank) + " must be in 0.." +
                   std::to_string(options_.world_size - 1));
  prefetch_ = options_.prefetch > 0 ? options_.prefetch : 2 * std::max(options_.threads, 1);
}

Loader::~Loader() { stop_workers(); }

int64_t Loader::shard_size() const {
  const int64_t n = options_.dataset->size(), w = options_.world_size;
  if (options_.shard_remainder == ShardRemainder::drop) return n / w;
  return n / w + (options_.rank < n % w ? 1 : 0);
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = shard_size(), b = options_.batch_size;
  return options_.drop_remainder ? n / b : (n + b - 1) / b;
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  space_cv_.notify_all();
  ready_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  ready_.clear();
  stop_ = false;
}

void Loader::start_epoch(int64_t epoch, int64_t first_batch) {
  stop_workers();
  order_ = shard_order(options_.dataset->size(), options_.seed, epoch, options_.shuffle,
                       options_.rank, options_.world_size, options_.shard_remainder);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    epoch_ = epoch;
    num_batches_ = batches_per_epoch();
    BONSAI_CHECK(first_batch >= 0 && first_batch <= num_batches_,
                 "Loader::start_epoch: first batch " + std::to_string(first_batch) + " outside [0, " +
                     std::to_string(num_batches_) + "]");
    next_claim_ = first_batch;  // resume mid-epoch without decoding the batches before
    next_consume_ = first_batch;
    skipped_.clear();
  }
  for (int i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void Loader::worker_loop() {
  for (;;) {
    int64_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_cv_.wait(lock, [&] {
        return stop_ || next_claim_ >= num_batches_ || next_claim_ < next_consume_ + prefetch_;
      });
      if (stop_ || next_claim_ >= num_batches_) return;
      b = next_claim_++;
    }
    Result r = build_batch(b);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;  // the batch may be partial; nobody will read it
      ready_[b] = std::move(r);
    }
    ready_cv_.notify_all();
  }
}

Loader::Result Loader::build_batch(int64_t b) {
  const int64_t begin = b * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, order_.size());
  std::vector<Sample> samples;
  std::vector<int64_t> indices;
  samples.reserve(static_cast<size_t>(end - begin));
  for (int64_t pos = begin; pos < end; ++pos) {
    if (stop_) return {};
    const int64_t index = order_[pos];
    std::string path;
    std::string what;
    try {
      Example e = options_.dataset->get(index);
      path = e.path;
      std::mt19937 rng = example_rng(options_.seed, epoch_, index);
      samples.push_back(options_.transform ? options_.transform(e, rng) : raw_sample(e));
      indices.push_back(index);
      continue;
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
      what = "unknown error";
    }
    // Dataset errors already name the file; a transform's may not, so add it.
    std::string message = "loader: example " + std::to_string(index) +
                          (path.empty() ? std::string() : " (" + path + ")") + ": " + what;
    if (options_.on_error == OnError::fail)
      return {.batch = std::nullopt, .error = std::make_exception_ptr(Error(message))};
    std::lock_guard<std::mutex> lock(mutex_);
    skipped_.push_back({.index = index, .path = path, .message = std::move(message)});
  }
  if (samples.empty()) return {};
  try {
    return {.batch = assemble(samples, std::move(indices)), .error = nullptr};
  } catch (...) {
    return {.batch = std::nullopt, .error = std::current_exception()};
  }
}

std::optional<Batch> Loader::next() {
  BONSAI_CHECK(epoch_ >= 0, "Loader::next: call start_epoch(epoch) first");
  for (;;) {
    Result r;
    if (options_.threads == 0) {
      int64_t b = 0;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (next_consume_ >= num_batches_) return std::nullopt;
        b = next_consume_++;
      }
      r = build_batch(b);
    } else {
      std::unique_lock<std::mutex> lock(mutex_);
      if (next_consume_ >= num_batches_) return std::nullopt;
      ready_cv_.wait(lock, [&] { return ready_.count(next_consume_) > 0; });
      auto it = ready_.find(next_consume_);
      r = std::move(it->second);
      ready_.erase(it);
      ++next_consume_;
      lock.unlock();
      space_cv_.notify_all();
    }
    if (r.error) {
      // The epoch ends here: stop building batches nobody will read.
      stop_workers();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        next_consume_ = num_batches_;
      }
      std::rethrow_exception(r.error);
    }
    if (r.batch) return std::move(r.batch);
    // Every example of that batch was skipped: go on to the next one.
  }
}

std::vector<SkippedExample> Loader::skipped() const {
  std::vector<SkippedExample> out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out = skipped_;
  }
  std::sort(out.begin(), out.end(),
            [](const SkippedExample& a, const SkippedExample& b) { return a.index < b.index; });
  return out;
}

}  // namespace bonsai::data
