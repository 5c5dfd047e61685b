// Internal to core: the oneDNN engine and stream, memory-descriptor helpers
// for bonsai's layouts, and the primitive cache keyed by shapes, so a training
// step does not rebuild primitives.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/tensor.h"

namespace bonsai::dnnl_util {

dnnl::engine& engine();
dnnl::stream& stream();

// [N, H, W, C] activation as oneDNN's logical NCHW with nhwc layout.
dnnl::memory::desc nhwc_desc(const Shape& s);
// A 1-D f32 vector of n elements.
dnnl::memory::desc vec_desc(int64_t n);
// oneDNN memory over a tensor's storage (no copy).
dnnl::memory wrap(const dnnl::memory::desc& md, const Tensor& t);

// A cache of primitive bundles by key. Each bundle type T is built once per
// distinct key (a string of shapes and parameters) and reused.
template <typename T>
class PrimitiveCache {
 public:
  std::shared_ptr<T> get(const std::string& key, const std::function<std::shared_ptr<T>()>& make) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it != map_.end()) return it->second;
    auto v = make();
    map_.emplace(key, v);
    return v;
  }
  size_t size() const { return map_.size(); }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<T>> map_;
};

// Number of primitive bundles currently cached (all op kinds), for tests.
size_t cached_primitive_count();
void count_cached_primitive();

}  // namespace bonsai::dnnl_util
