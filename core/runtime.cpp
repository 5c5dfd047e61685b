#include "core/runtime.h"

#include <malloc.h>
#include <omp.h>

#include "core/dnnl_util.h"

extern "C" void openblas_set_num_threads(int);

namespace bonsai {

namespace {
int g_threads = 0;
}

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  g_threads = n;
  omp_set_num_threads(n);  // oneDNN here is built on the OpenMP runtime
  openblas_set_num_threads(n);
}

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

namespace dnnl_util {

namespace {
size_t g_cached = 0;
}

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

dnnl::memory::desc nhwc_desc(const Shape& s) {
  BONSAI_CHECK(s.rank() == 4, "expected an [N, H, W, C] tensor, got " + s.str());
  return dnnl::memory::desc({s[0], s[3], s[1], s[2]}, dnnl::memory::data_type::f32,
                            dnnl::memory::format_tag::nhwc);
}

dnnl::memory::desc vec_desc(int64_t n) {
  return dnnl::memory::desc({n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a);
}

dnnl::memory wrap(const dnnl::memory::desc& md, const Tensor& t) {
  return dnnl::memory(md, engine(), t.raw());
}

size_t cached_primitive_count() { return g_cached; }
void count_cached_primitive() { ++g_cached; }

}  // namespace dnnl_util
}  // namespace bonsai
