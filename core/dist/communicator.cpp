#include "core/dist/communicator.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include <omp.h>

#include <nlohmann/json.hpp>

namespace bonsai::dist {

namespace {

class Local : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "single process"; }
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  void allreduce_sum(int64_t*, int64_t) override {}
  Request start_allreduce_sum(float*, int64_t) override { return 0; }
  bool test(Request) override { return true; }
  void wait(Request) override {}
  void broadcast(void*, int64_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    std::_Exit(code);
  }
};

// What the members of a thread group share: a generation-counting barrier,
// one slot per rank for the buffer it contributes, and the turn that lets
// one member compute at a time (released while waiting in the barrier).
struct Group {
  explicit Group(int n) : n(n), slots(static_cast<size_t>(n), nullptr), counts(static_cast<size_t>(n), 0) {}
  void barrier(int rank) {
    std::unique_lock<std::mutex> lock(mutex);
    turn.unlock();
    const int64_t gen = generation;
    if (++arrived == n) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != gen || left >= 0; });
    }
    const bool broken = generation == gen;
    const int who = left;
    lock.unlock();
    turn.lock();
    if (broken)
      throw Error("thread group: rank " + std::to_string(rank) + " waits in a collective that rank " +
                  std::to_string(who) + " left");
  }
  void leave(int rank) {
    std::lock_guard<std::mutex> lock(mutex);
    if (left < 0) left = rank;
    cv.notify_all();
  }
  const int n;
  std::mutex mutex, turn;
  std::condition_variable cv;
  int arrived = 0;
  int64_t generation = 0;
  int left = -1;  // the first rank that returned or threw
  std::vector<const void*> slots;
  std::vector<int64_t> counts;  // bytes each member passed: a mismatch means collectives out of order
};

class ThreadMember : public Communicator {
 public:
  ThreadMember(std::shared_ptr<Group> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->n; }
  int local_size() const override { return g_->n; }
  std::string describe() const override { return "thread group of " + std::to_string(g_->n); }
  void allreduce_sum(float* d, int64_t n) override { sum(d, n); }
  void allreduce_sum(double* d, int64_t n) override { sum(d, n); }
  void allreduce_sum(int64_t* d, int64_t n) override { sum(d, n); }
  Request start_allreduce_sum(float* d, int64_t n) override {
    sum(d, n);  // completes at once; overlap is MPI's business
    return next_++;
  }
  bool test(Request) override { return true; }
  void wait(Request) override {}
  void broadcast(void* data, int64_t bytes, int root) override {
    deposit(data, bytes);
    if (rank_ != root) std::memcpy(data, g_->slots[root], static_cast<size_t>(bytes));
    g_->barrier(rank_);
  }
  void barrier() override { g_->barrier(rank_); }
  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    std::_Exit(code);
  }

 private:
  // Puts this member's buffer in its slot and waits for the others; all
  // must pass the same byte count.
  void deposit(const void* data, int64_t bytes) {
    g_->slots[rank_] = data;
    g_->counts[rank_] = bytes;
    g_->barrier(rank_);
    for (int r = 0; r < g_->n; ++r)
      BONSAI_CHECK(g_->counts[r] == bytes, "thread group: rank " + std::to_string(rank_) + " passes " +
                                               std::to_string(bytes) + " bytes to a collective, rank " +
                                               std::to_string(r) + " " + std::to_string(g_->counts[r]) +
                                               ": collectives called in different orders");
  }
  // Every member sums the contributions in rank order into its own result,
  // so all get the same bits; the second barrier keeps the slots alive until
  // everyone has read them.
  template <typename T>
  void sum(T* data, int64_t n) {
    deposit(data, n * static_cast<int64_t>(sizeof(T)));
    std::vector<T> out(static_cast<const T*>(g_->slots[0]), static_cast<const T*>(g_->slots[0]) + n);
    for (int r = 1; r < g_->n; ++r) {
      const T* in = static_cast<const T*>(g_->slots[r]);
      for (int64_t i = 0; i < n; ++i) out[i] += in[i];
    }
    g_->barrier(rank_);
    std::copy(out.begin(), out.end(), data);
  }

  std::shared_ptr<Group> g_;
  int rank_;
  Request next_ = 0;
};

std::shared_ptr<Communicator>& world_slot() {
  static std::shared_ptr<Communicator> w = local();
  return w;
}

uint64_t fnv1a(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string signature(const std::string& name, const Tensor& t) {
  return name + " " + dtype_name(t.dtype()) + " " + t.shape_str();
}

DType dtype_from_name(const std::string& s) {
  for (DType d : {DType::f32, DType::s8, DType::u8, DType::s32, DType::s64})
    if (s == dtype_name(d)) return d;
  BONSAI_CHECK(false, "broadcast: unknown dtype '" + s + "'");
  return DType::f32;
}

// Broadcasts the bytes of `tensors` (same layout on every rank) in packs of
// at most 64 MB, so a model costs a few collectives, not one per tensor.
void broadcast_bytes(Communicator& c, const std::vector<Tensor>& tensors, int root) {
  constexpr size_t kPack = size_t{64} << 20;
  std::vector<char> pack;
  size_t first = 0;
  auto flush = [&](size_t end) {
    size_t bytes = 0;
    for (size_t i = first; i < end; ++i) bytes += tensors[i].nbytes();
    if (bytes == 0) return;
    pack.resize(bytes);
    if (c.rank() == root)
      for (size_t i = first, off = 0; i < end; off += tensors[i].nbytes(), ++i)
        std::memcpy(pack.data() + off, tensors[i].raw(), tensors[i].nbytes());
    c.broadcast(pack.data(), static_cast<int64_t>(bytes), root);
    if (c.rank() != root)
      for (size_t i = first, off = 0; i < end; off += tensors[i].nbytes(), ++i)
        std::memcpy(tensors[i].raw(), pack.data() + off, tensors[i].nbytes());
  };
  size_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (bytes > 0 && bytes + tensors[i].nbytes() > kPack) {
      flush(i);
      first = i;
      bytes = 0;
    }
    bytes += tensors[i].nbytes();
  }
  flush(tensors.size());
}

}  // namespace

std::shared_ptr<Communicator> local() {
  static std::shared_ptr<Communicator> l = std::make_shared<Local>();
  return l;
}

Communicator& world() { return *world_slot(); }
std::shared_ptr<Communicator> world_ptr() { return world_slot(); }
void set_world(std::shared_ptr<Communicator> c) { world_slot() = c ? std::move(c) : local(); }

int threads_per_rank(const Communicator& c, int configured) {
  if (configured > 0 || c.size() == 1) return configured;
  if (const char* e = std::getenv("OMP_NUM_THREADS"); e && std::atoi(e) > 0) return std::atoi(e);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int mine = omp_get_num_procs();  // the CPU set this process may run on
  if (mine > 0 && mine < cores) return mine;
  return std::max(1, cores / std::max(1, c.local_size()));
}

void run_thread_group(int n, const std::function<void(int rank, Communicator& comm)>& fn) {
  BONSAI_CHECK(n >= 1, "run_thread_group: size must be positive, got " + std::to_string(n));
  auto g = std::make_shared<Group>(n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      ThreadMember comm(g, r);
      g->turn.lock();
      try {
        fn(r, comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
      g->leave(r);
      g->turn.unlock();
    });
  for (auto& t : threads) t.join();
  // The first failure is the cause; the others' are its consequence.
  for (auto& e : errors)
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const Error& err) {
        if (std::string(err.what()).rfind("thread group: rank", 0) == 0) continue;
        throw;
      }
    }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

std::vector<double> allgather(Communicator& c, double value) {
  std::vector<double> v(static_cast<size_t>(c.size()), 0.0);
  v[c.rank()] = value;  // x + 0 == x exactly, NaN included
  c.allreduce_sum(v.data(), c.size());
  return v;
}

void broadcast_string(Communicator& c, std::string& s, int root) {
  if (c.size() == 1) return;
  int64_t n = static_cast<int64_t>(s.size());
  c.broadcast(&n, sizeof n, root);
  s.resize(static_cast<size_t>(n));
  if (n > 0) c.broadcast(s.data(), n, root);
}

void agree(Communicator& c, const std::string& local_failure) {
  if (c.size() == 1) {
    if (!local_failure.empty()) throw Error(local_failure);
    return;
  }
  std::vector<double> failed = allgather(c, local_failure.empty() ? 0.0 : 1.0);
  int first = -1, count = 0;
  for (int r = 0; r < c.size(); ++r)
    if (failed[r] != 0.0) {
      if (first < 0) first = r;
      ++count;
    }
  if (first < 0) return;
  std::string message = local_failure;
  broadcast_string(c, message, first);
  message = "rank " + std::to_string(first) + ": " + message;
  if (count > 1) message += " (" + std::to_string(count - 1) + " other rank(s) failed too)";
  throw CollectiveError(message);
}

void collectively(Communicator& c, const std::function<void()>& fn) {
  if (c.size() == 1) {
    fn();
    return;
  }
  std::string failure;
  try {
    fn();
  } catch (const std::exception& e) {
    failure = e.what();
    if (failure.empty()) failure = "unknown error";
  } catch (...) {
    failure = "unknown error";
  }
  agree(c, failure);
}

void broadcast_tensors(Communicator& c, const std::vector<std::pair<std::string, Tensor>>& tensors, int root) {
  if (c.size() == 1) return;
  // The root's list of names, dtypes and shapes, checked on every rank.
  std::string mine, theirs;
  for (const auto& [name, t] : tensors) mine += signature(name, t) + "\n";
  theirs = mine;
  broadcast_string(c, theirs, root);
  std::string failure;
  if (mine != theirs) {
    size_t i = 0;
    while (i < mine.size() && i < theirs.size() && mine[i] == theirs[i]) ++i;
    auto line = [&](const std::string& s) {
      size_t b = s.rfind('\n', i == 0 ? 0 : i - 1);
      b = b == std::string::npos || i == 0 ? 0 : b + 1;
      size_t e = s.find('\n', b);
      return b >= s.size() ? std::string("(nothing)") : s.substr(b, e - b);
    };
    failure = "the model differs from rank " + std::to_string(root) + "'s: here '" + line(mine) + "', there '" +
              line(theirs) + "' (same config on every rank?)";
  }
  agree(c, failure);
  std::vector<Tensor> ts;
  for (const auto& [name, t] : tensors) ts.push_back(t);
  broadcast_bytes(c, ts, root);
}

void broadcast_map(Communicator& c, std::map<std::string, Tensor>& tensors, int root) {
  if (c.size() == 1) return;
  std::string header;
  if (c.rank() == root) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, t] : tensors) j[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape().vec()}};
    header = j.dump();
  }
  broadcast_string(c, header, root);
  if (c.rank() != root) {
    tensors.clear();
    const nlohmann::json j = nlohmann::json::parse(header);
    for (auto it = j.begin(); it != j.end(); ++it)
      tensors[it.key()] = Tensor::empty(Shape(it.value().at("shape").get<std::vector<int64_t>>()),
                                        dtype_from_name(it.value().at("dtype").get<std::string>()));
  }
  std::vector<Tensor> ts;
  for (const auto& [name, t] : tensors) ts.push_back(t);
  broadcast_bytes(c, ts, root);
}

void broadcast_map(Communicator& c, std::map<std::string, std::string>& strings, int root) {
  if (c.size() == 1) return;
  std::string s = c.rank() == root ? nlohmann::json(strings).dump() : std::string();
  broadcast_string(c, s, root);
  if (c.rank() != root) strings = nlohmann::json::parse(s).get<std::map<std::string, std::string>>();
}

void average_tensors(Communicator& c, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  if (c.size() == 1) return;
  std::vector<Tensor> floats, others;
  int64_t n = 0;
  for (const auto& [name, t] : tensors) {
    if (t.dtype() == DType::f32) {
      floats.push_back(t);
      n += t.numel();
    } else {
      others.push_back(t);
    }
  }
  std::vector<float> buf(static_cast<size_t>(n));
  int64_t off = 0;
  for (const Tensor& t : floats) {
    std::memcpy(buf.data() + off, t.raw(), t.nbytes());
    off += t.numel();
  }
  c.allreduce_sum(buf.data(), n);
  const float inv = 1.0f / static_cast<float>(c.size());
  off = 0;
  for (const Tensor& t : floats) {
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = buf[off + i] * inv;
    off += t.numel();
  }
  broadcast_bytes(c, others, 0);
}

void check_identical(Communicator& c, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& what) {
  if (c.size() == 1) return;
  std::vector<int64_t> mine;
  for (const auto& [name, t] : tensors) mine.push_back(static_cast<int64_t>(fnv1a(t.raw(), t.nbytes())));
  std::vector<int64_t> root = mine;
  c.broadcast(root.data(), static_cast<int64_t>(root.size() * sizeof(int64_t)), 0);
  std::string failure;
  for (size_t i = 0; i < mine.size(); ++i)
    if (mine[i] != root[i]) {
      failure = what + ": '" + tensors[i].first + "' differs from rank 0's; the replicas have diverged";
      break;
    }
  agree(c, failure);
}

}  // namespace bonsai::dist
