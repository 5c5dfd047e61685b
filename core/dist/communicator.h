// Communicator: how the replicas (ranks) of a data-parallel run talk to each
// other. Training code is written once against this interface; the process
// is either alone (local(): rank 0 of 1, every operation a no-op), one rank
// of an MPI job (core/dist/launch.h), or one thread of an in-process group
// (thread_group(): the same semantics without MPI, for tests).
//
//   dist::Communicator& comm = dist::world();      // local() unless dist::init() chose MPI
//   comm.allreduce_sum(grad.data<float>(), grad.numel());   // now Σ over ranks, on every rank
//   dist::broadcast_tensors(comm, weights, /*root=*/0);      // every rank holds rank 0's values
//   dist::collectively(comm, [&] { if (comm.rank() == 0) save_checkpoint(); });
//
// Every collective must be called by every rank, in the same order; that is
// what keeps ranks in step. A rank that fails between collectives would leave
// the others waiting forever, so code that may fail on one rank (reading a
// file, a NaN loss) runs inside collectively() or reports through agree():
// all ranks then throw the same CollectiveError together and exit cleanly.
// Anything else that fails on one rank alone must end the job (abort()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/tensor.h"

namespace bonsai::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Ranks on this machine (threads per rank default to cores / local_size()).
  virtual int local_size() const { return 1; }
  // "single process", "MPI (Open MPI v4.1.4)", ...
  virtual std::string describe() const = 0;

  // In place: data[i] becomes Σ over ranks of data[i], the same bits on
  // every rank.
  virtual void allreduce_sum(float* data, int64_t n) = 0;
  virtual void allreduce_sum(double* data, int64_t n) = 0;
  virtual void allreduce_sum(int64_t* data, int64_t n) = 0;

  // Non-blocking float allreduce_sum: starts now; the buffer must not be
  // touched until wait() returns. test() lets it progress and says whether
  // it is done. Requests are started in the same order on every rank.
  using Request = int64_t;
  virtual Request start_allreduce_sum(float* data, int64_t n) = 0;
  virtual bool test(Request r) = 0;
  virtual void wait(Request r) = 0;

  // In place: every rank receives root's `bytes` bytes.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // Ends the whole job (every rank) with exit code `code`. The caller prints
  // the reason first.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The single-process communicator (rank 0 of 1).
std::shared_ptr<Communicator> local();

// The process-wide communicator training uses: local() until set_world()
// (dist::init() sets it to MPI's).
Communicator& world();
std::shared_ptr<Communicator> world_ptr();
void set_world(std::shared_ptr<Communicator> c);

// Threads for this rank when the config asks for "all cores" (0): alone,
// 0 (all cores); with several ranks, OMP_NUM_THREADS if set, else the cores
// the launcher bound this rank to, else the machine's cores / local_size().
int threads_per_rank(const Communicator& c, int configured);

// Runs fn(rank, comm) on n threads that form an in-process group: the
// same collectives as MPI ranks, for tests. The threads take turns: only
// one computes at a time, the others wait inside a collective, because the
// process-wide state under the ops (oneDNN's stream and scratchpad) is not
// built for concurrent use. Sums run in rank order, so every member gets
// the same bits. A rank that throws or returns early makes the others'
// pending collectives throw instead of waiting forever; the first
// exception is rethrown here.
void run_thread_group(int n, const std::function<void(int rank, Communicator& comm)>& fn);

// Thrown on every rank at once by agree() / collectively(): the ranks are
// still in step, so each can unwind and exit normally.
struct CollectiveError : Error {
  using Error::Error;
};

// Each rank says whether it failed (empty: it did not). If any did, every
// rank throws CollectiveError "rank R: <R's message>" for the lowest failing
// rank R (with the count of others that failed too).
void agree(Communicator& c, const std::string& local_failure);
// Runs fn on this rank, catching what it throws, then agree().
void collectively(Communicator& c, const std::function<void()>& fn);

// One value per rank, in rank order, on every rank.
std::vector<double> allgather(Communicator& c, double value);

// Every rank receives root's string.
void broadcast_string(Communicator& c, std::string& s, int root);

// In place, every rank receives root's values. The tensors must have the
// same names, shapes and dtypes on every rank: a mismatch (different
// configs on different machines) is an error naming it, on every rank.
void broadcast_tensors(Communicator& c, const std::vector<std::pair<std::string, Tensor>>& tensors, int root);
// Every rank receives root's whole map (names, shapes, dtypes, values): what
// lets all ranks resume from a checkpoint only rank 0 can read.
void broadcast_map(Communicator& c, std::map<std::string, Tensor>& tensors, int root);
void broadcast_map(Communicator& c, std::map<std::string, std::string>& strings, int root);

// In place, f32 tensors become their mean over ranks; other dtypes take
// rank 0's values. Used for buffers each replica updates on its own data
// (BatchNorm moving statistics): the mean of the replicas' moving averages
// is the moving average of the mean statistics.
void average_tensors(Communicator& c, const std::vector<std::pair<std::string, Tensor>>& tensors);

// Throws (on every rank) naming the first tensor whose bits differ from
// rank 0's: data-parallel replicas must hold identical weights.
void check_identical(Communicator& c, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& what);

}  // namespace bonsai::dist
