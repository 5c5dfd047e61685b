#include "core/dist/grad_reducer.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace bonsai::dist {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

GradientReducer::GradientReducer(Communicator& comm, std::vector<Tensor> params, const GradientReducerOptions& o)
    : comm_(comm), params_(std::move(params)) {
  BONSAI_CHECK(o.bucket_mb > 0, "GradientReducer: bucket_mb must be positive");
  const int64_t cap = static_cast<int64_t>(o.bucket_mb * 1024 * 1024 / sizeof(float));
  // The first bucket (the head's gradients, final first) holds at most 1 MB,
  // as in PyTorch's DDP, so that communication starts early in backward.
  const int64_t first_cap = std::min<int64_t>(cap, (1 << 20) / sizeof(float));
  bucket_of_.assign(params_.size(), -1);
  seen_.assign(params_.size(), 0);
  for (int64_t i = static_cast<int64_t>(params_.size()) - 1; i >= 0; --i) {
    const Tensor& p = params_[i];
    BONSAI_CHECK(p.dtype() == DType::f32, "GradientReducer: parameters must be f32");
    BONSAI_CHECK(!index_.count(p.impl()), "GradientReducer: a parameter is listed twice");
    index_[p.impl()] = i;
    const int64_t limit = buckets_.size() <= 1 ? first_cap : cap;
    if (buckets_.empty() || (buckets_.back().numel > 0 && buckets_.back().numel + p.numel() > limit))
      buckets_.emplace_back();
    Bucket& b = buckets_.back();
    bucket_of_[i] = static_cast<int64_t>(buckets_.size()) - 1;
    b.params.push_back(i);
    b.numel += p.numel();
  }
  for (Bucket& b : buckets_) b.buffer.resize(static_cast<size_t>(b.numel));
}

void GradientReducer::start() {
  std::fill(seen_.begin(), seen_.end(), 0);
  for (Bucket& b : buckets_) {
    BONSAI_CHECK(!b.started, "GradientReducer::start: the last step's finish() was not called");
    b.pending = static_cast<int64_t>(b.params.size());
  }
  next_start_ = next_test_ = 0;
}

BackwardHooks GradientReducer::hooks() {
  return {.leaf_ready = [this](TensorImpl* leaf) { ready(leaf); }};
}

void GradientReducer::ready(TensorImpl* leaf) {
  auto it = index_.find(leaf);
  if (it == index_.end() || seen_[it->second]) return;
  seen_[it->second] = 1;
  --buckets_[bucket_of_[it->second]].pending;
  start_ready_buckets(false);
}

void GradientReducer::start_ready_buckets(bool all) {
  while (next_start_ < buckets_.size() && (all || buckets_[next_start_].pending == 0)) launch(buckets_[next_start_++]);
  // Poll the oldest request in flight: MPI implementations without a
  // progress thread move non-blocking collectives forward only inside MPI
  // calls, so backward lends them a moment at every completed parameter.
  if (!all && next_test_ < next_start_) {
    const double t0 = now_s();
    while (next_test_ < next_start_ && comm_.test(buckets_[next_test_].request)) ++next_test_;
    comm_seconds_ += now_s() - t0;
  }
}

void GradientReducer::launch(Bucket& b) {
  float* out = b.buffer.data();
  for (int64_t i : b.params) {
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (g.defined()) std::memcpy(out, g.raw(), g.nbytes());
    else std::memset(out, 0, p.nbytes());
    out += p.numel();
  }
  const double t0 = now_s();
  b.request = comm_.start_allreduce_sum(b.buffer.data(), b.numel);
  b.started = true;
  comm_seconds_ += now_s() - t0;
}

void GradientReducer::finish() {
  double t0 = now_s();
  start_ready_buckets(true);
  wait_seconds_ += now_s() - t0;
  const float inv = 1.0f / static_cast<float>(comm_.size());
  for (Bucket& b : buckets_) {
    t0 = now_s();
    comm_.wait(b.request);
    const double dt = now_s() - t0;
    comm_seconds_ += dt;
    wait_seconds_ += dt;
    b.started = false;
    const float* in = b.buffer.data();
    for (int64_t i : b.params) {
      Tensor& p = params_[i];
      const int64_t n = p.numel();
      if (!p.grad().defined()) {
        // No gradient here; another rank may have had one (a branch this
        // rank's batch did not reach).
        bool any = false;
        for (int64_t k = 0; k < n && !any; ++k) any = in[k] != 0.f;
        if (any) p.impl()->grad = Tensor::zeros(p.shape()).impl_ptr();
      }
      if (p.grad().defined()) {
        float* g = p.grad().data<float>();
        for (int64_t k = 0; k < n; ++k) g[k] = in[k] * inv;
      }
      in += n;
    }
  }
}

}  // namespace bonsai::dist
