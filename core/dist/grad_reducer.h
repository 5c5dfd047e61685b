// GradientReducer: averages parameter gradients over the ranks of a
// data-parallel run, in buckets, overlapping the communication with backward.
//
//   dist::GradientReducer reducer(comm, params, {.bucket_mb = 25});
//   model.zero_grad();
//   reducer.start();
//   run_backward(loss, Tensor::full(loss.shape(), 1.f), reducer.hooks());
//   reducer.finish();     // every .grad is now the mean over ranks, the same bits everywhere
//   optimizer.step(lr);   // identical on every rank
//
// Buckets. The parameters, in reverse registration order (roughly the order
// backward finishes them: the head first, the stem last), are cut into
// buckets of about bucket_mb megabytes (the first at most 1 MB, as in
// PyTorch's DDP, so communication starts early). When backward reports (through
// BackwardHooks::leaf_ready) that every gradient of the next bucket is final,
// the bucket is packed into one buffer and its non-blocking allreduce starts
// while backward goes on; buckets always start in index order, so every rank
// issues the same collectives in the same order. finish() starts whatever is
// left (parameters no gradient reached), waits, and writes Σ/size back.
//
// The mean over ranks of per-rank mean losses is the mean loss of the global
// batch when every rank's batch has the same size, so N ranks × batch B step
// exactly like one process with batch N·B (up to float summation order).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/autograd.h"
#include "core/dist/communicator.h"

namespace bonsai::dist {

struct GradientReducerOptions {
  double bucket_mb = 25.0;
};

class GradientReducer {
 public:
  GradientReducer(Communicator& comm, std::vector<Tensor> params, const GradientReducerOptions& o = {});

  // Call before backward.
  void start();
  // Hooks for run_backward that start buckets as their gradients complete.
  BackwardHooks hooks();
  // Call after backward: the remaining buckets, then the averaged gradients.
  void finish();

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Seconds spent inside communication calls (starting, polling, waiting)
  // and, of those, waiting in finish() after backward had ended: the part
  // of the allreduce that did not overlap with compute. Since construction.
  double comm_seconds() const { return comm_seconds_; }
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket {
    std::vector<int64_t> params;  // indices into params_
    int64_t numel = 0;
    std::vector<float> buffer;
    int64_t pending = 0;  // gradients not final yet this step
    bool started = false;
    Communicator::Request request = 0;
  };
  void ready(TensorImpl* leaf);
  void start_ready_buckets(bool all);
  void launch(Bucket& b);

  Communicator& comm_;
  std::vector<Tensor> params_;
  std::vector<int64_t> bucket_of_;                   // per parameter
  std::unordered_map<const TensorImpl*, int64_t> index_;  // parameter by impl
  std::vector<char> seen_;                           // per parameter, this step
  std::vector<Bucket> buckets_;
  size_t next_start_ = 0;  // buckets start in index order
  size_t next_test_ = 0;   // oldest bucket maybe still in flight
  double comm_seconds_ = 0, wait_seconds_ = 0;
};

}  // namespace bonsai::dist
