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

// Keeps freed memory for reuse instead of handing it back to the kernel:
// glibc serves blocks above its mmap threshold with mmap and unmaps them on
// free, and trims the heap's free top, so a training step that allocates
// its activations and gradients anew page-faults (and the kernel
// zero-fills) all of them again — 15-30% of a MobileNet training step here.
// This sets the mmap threshold to glibc's largest (32 MiB) and the trim
// threshold to 1 GiB, for the whole process; the bonsai command line calls
// it at start. Peak memory grows a little (the heap keeps blocks it could
// have returned). Library users who train may call it too.
void keep_freed_memory();

}  // namespace bonsai
