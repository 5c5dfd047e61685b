// Kernel benchmarks: `bonsai bench op conv|batchnorm|sgemm ...`, each printing
// one JSON line with median forward/backward milliseconds and GFLOP/s, so
// kernel speed is visible beside the BLAS ceiling on the same machine.
#pragma once

#include <string>

#include "apps/lib/args.h"

namespace bonsai::apps {

struct OpBenchSpec {
  std::string op = "conv";  // conv | batchnorm | sgemm
  int n = 8, h = 56, w = 56, c = 64, k = 64, kernel = 3, stride = 1, groups = 1;
  int m = 2048;  // sgemm size (m = n = k)
  int threads = 0;
  int iters = 20, warmup = 3;
};

// Runs the benchmark and returns the JSON line it prints.
std::string bench_op(const OpBenchSpec& s);

}  // namespace bonsai::apps
