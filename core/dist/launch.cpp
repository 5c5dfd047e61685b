#include "core/dist/launch.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>

#ifdef BONSAI_WITH_MPI
#include <mpi.h>
#endif

namespace bonsai::dist {

namespace {

bool g_initialised = false;  // init() has chosen the world
#ifdef BONSAI_WITH_MPI
bool g_mpi_started = false;  // ... and it started MPI
#endif

int env_int(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : 0;
}

#ifdef BONSAI_WITH_MPI

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  BONSAI_CHECK(false, std::string(what) + " failed: " + std::string(text, static_cast<size_t>(len)));
}

template <typename T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <> MPI_Datatype mpi_type<int64_t>() { return MPI_INT64_T; }

// MPI counts are int: larger buffers go in pieces.
constexpr int64_t kMaxCount = int64_t{1} << 30;

class Mpi : public Communicator {
 public:
  Mpi() {
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm node;
    check_mpi(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
    MPI_Comm_size(node, &local_size_);
    MPI_Comm_free(&node);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    library_ = v.substr(0, v.find_first_of(",\n"));
  }
  ~Mpi() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_size() const override { return local_size_; }
  std::string describe() const override { return "MPI (" + library_ + ")"; }
  void allreduce_sum(float* d, int64_t n) override { sum(d, n); }
  void allreduce_sum(double* d, int64_t n) override { sum(d, n); }
  void allreduce_sum(int64_t* d, int64_t n) override { sum(d, n); }
  Request start_allreduce_sum(float* d, int64_t n) override {
    BONSAI_CHECK(n <= kMaxCount, "start_allreduce_sum: " + std::to_string(n) + " values in one bucket is too many");
    MPI_Request r;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, d, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_, &r), "MPI_Iallreduce");
    requests_[next_] = r;
    return next_++;
  }
  bool test(Request id) override {
    auto it = requests_.find(id);
    if (it == requests_.end()) return true;
    int done = 0;
    check_mpi(MPI_Test(&it->second, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) requests_.erase(it);
    return done != 0;
  }
  void wait(Request id) override {
    auto it = requests_.find(id);
    if (it == requests_.end()) return;
    check_mpi(MPI_Wait(&it->second, MPI_STATUS_IGNORE), "MPI_Wait");
    requests_.erase(it);
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    for (int64_t off = 0; off < bytes; off += kMaxCount)
      check_mpi(MPI_Bcast(p + off, static_cast<int>(std::min(kMaxCount, bytes - off)), MPI_BYTE, root, comm_),
                "MPI_Bcast");
  }
  void barrier() override { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }
  [[noreturn]] void abort(int code) override {
    std::fflush(nullptr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  template <typename T>
  void sum(T* d, int64_t n) {
    for (int64_t off = 0; off < n; off += kMaxCount)
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, d + off, static_cast<int>(std::min(kMaxCount, n - off)), mpi_type<T>(),
                              MPI_SUM, comm_),
                "MPI_Allreduce");
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, local_size_ = 1;
  std::string library_;
  std::map<Request, MPI_Request> requests_;
  Request next_ = 0;
};

std::shared_ptr<Communicator> start_mpi() {
  int already = 0;
  MPI_Initialized(&already);
  if (!already) {
    // Only the training thread calls MPI (loader workers and OpenMP never do).
    int provided = 0;
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_mpi_started = true;
  }
  return std::make_shared<Mpi>();
}

#else

std::shared_ptr<Communicator> start_mpi() {
  BONSAI_CHECK(false,
               "this bonsai was built without MPI; install libopenmpi-dev and rebuild (meson setup --reconfigure build) "
               "to train with several ranks");
  return nullptr;
}

#endif

}  // namespace

bool mpi_available() {
#ifdef BONSAI_WITH_MPI
  return true;
#else
  return false;
#endif
}

int launcher_world_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"})
    if (int n = env_int(v); n > 0) return n;
  return 0;
}

Communicator& init(const std::string& mode) {
  BONSAI_CHECK(mode == "auto" || mode == "mpi" || mode == "none",
               "--distributed must be auto, mpi or none, got '" + mode + "'");
  if (g_initialised) return world();
  const int launched = launcher_world_size();
  if (mode == "mpi" || (mode == "auto" && launched > 0)) {
    if (!mpi_available() && mode == "auto" && launched == 1) {
      set_world(local());
    } else {
      BONSAI_CHECK(mpi_available() || mode == "mpi",
                   "started by an MPI launcher with " + std::to_string(launched) +
                       " ranks, but this bonsai was built without MPI: each rank would train alone. Install "
                       "libopenmpi-dev and rebuild, or run without mpirun");
      set_world(start_mpi());
    }
  } else {
    set_world(local());
  }
  g_initialised = true;
  return world();
}

void finalize() {
#ifdef BONSAI_WITH_MPI
  if (g_mpi_started) {
    set_world(local());  // frees the duplicated communicator before MPI ends
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    g_mpi_started = false;
  }
#endif
}

}  // namespace bonsai::dist
