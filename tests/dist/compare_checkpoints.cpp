// compare_checkpoints A.safetensors B.safetensors [--tol 1e-5] [--prefix model/] [--top N]
//
// Compares two checkpoints tensor by tensor, as scripts/test's MPI check
// needs (N ranks × batch B against one process with batch N·B). The error of
// a tensor is max|a − b| / max(1, max|b|), the suite's rel_error. Prints
// "same within TOL (K tensors; largest difference E in NAME)" or
// "differ: NAME by E (tolerance TOL)" and exits 0 only when within TOL.
// Reads files with bonsai's own reader, so every encoding it writes
// (sparse tensors included) compares by value.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"

using namespace bonsai;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: compare_checkpoints A B [--tol 1e-5] [--prefix P] [--top N]\n");
    return 2;
  }
  double tol = 1e-5;
  std::string prefix;
  int top = 0;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tol")) tol = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--prefix")) prefix = argv[i + 1];
    else if (!std::strcmp(argv[i], "--top")) top = std::atoi(argv[i + 1]);
  }
  try {
    auto a = io::load_safetensors(argv[1]), b = io::load_safetensors(argv[2]);
    std::vector<std::pair<double, std::string>> errors;
    for (const auto& [name, ta] : a) {
      if (name.rfind(prefix, 0) != 0) continue;
      auto it = b.find(name);
      if (it == b.end()) {
        std::printf("differ: '%s' is only in %s\n", name.c_str(), argv[1]);
        return 1;
      }
      const Tensor& tb = it->second;
      if (ta.shape() != tb.shape() || ta.dtype() != tb.dtype()) {
        std::printf("differ: '%s' is %s %s and %s %s\n", name.c_str(), dtype_name(ta.dtype()), ta.shape_str().c_str(),
                    dtype_name(tb.dtype()), tb.shape_str().c_str());
        return 1;
      }
      const Tensor fa = ta.to(DType::f32), fb = tb.to(DType::f32);
      double diff = 0, scale = 1;
      for (int64_t i = 0; i < fa.numel(); ++i) {
        diff = std::max(diff, static_cast<double>(std::fabs(fa.data<float>()[i] - fb.data<float>()[i])));
        scale = std::max(scale, static_cast<double>(std::fabs(fb.data<float>()[i])));
      }
      errors.emplace_back(diff / scale, name);
    }
    for (const auto& [name, tb] : b)
      if (name.rfind(prefix, 0) == 0 && !a.count(name)) {
        std::printf("differ: '%s' is only in %s\n", name.c_str(), argv[2]);
        return 1;
      }
    if (errors.empty()) {
      std::printf("differ: no tensors named %s*\n", prefix.c_str());
      return 1;
    }
    std::sort(errors.rbegin(), errors.rend());
    for (int i = 0; i < top && i < static_cast<int>(errors.size()); ++i)
      std::printf("  %.3g %s\n", errors[i].first, errors[i].second.c_str());
    if (errors[0].first <= tol) {
      std::printf("same within %g (%zu tensors; largest difference %.3g in %s)\n", tol, errors.size(), errors[0].first,
                  errors[0].second.c_str());
      return 0;
    }
    std::printf("differ: %s by %.3g (tolerance %g)\n", errors[0].second.c_str(), errors[0].first, tol);
    return 1;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 2;
  }
}
