// How many threads the kernels use, and the per-thread scratch they pack operands into.
#pragma once

#include <cstddef>

namespace fusedmlp {

// The most threads a kernel uses: OMP_NUM_THREADS (or all cores) until set_max_threads.
int max_threads();
// Throws std::invalid_argument for n < 1.
void set_max_threads(int n);

// Threads for a product of `multiply_adds` multiply-adds that splits into `parts` independent
// pieces: 1 below the size where forking costs more than it saves, never more than parts.
int threads_for(std::size_t multiply_adds, std::size_t parts);

// A 64-byte aligned buffer of at least `bytes`, owned by the calling thread and reused by its
// next call: grown (never shrunk) so that steady-state calls allocate nothing.
void* thread_scratch(std::size_t bytes);

}  // namespace fusedmlp
