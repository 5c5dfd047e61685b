// Process-wide runtime settings: the thread count that drives OpenMP, oneDNN
// and OpenBLAS alike.
//
//   bonsai::set_num_threads(2);   // what --threads sets
#pragma once

namespace bonsai {

// Set the threads used by OpenMP loops, oneDNN primitives and OpenBLAS.
// n <= 0 means all cores.
void set_num_threads(int n);
int num_threads();

}  // namespace bonsai
