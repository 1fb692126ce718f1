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

// Runs task(context, id, count) for id = 0 .. count - 1 on `count` threads (the caller runs
// id 0) and returns when all have finished. The worker threads are created once and wait for
// work spinning briefly, yielding the CPU, then sleeping: cheap to start when they are warm,
// and no pathological stalls when the machine has more runnable threads than cores. When
// another run is in progress (a second calling thread), task runs as (context, 0, 1) here:
// callers must give identical results for any count.
void parallel_run(int count, void (*task)(void* context, int id, int count), void* context);

// A 64-byte aligned buffer of at least `bytes`, owned by the calling thread and reused by its
// next call: grown (never shrunk) so that steady-state calls allocate nothing.
void* thread_scratch(std::size_t bytes);

}  // namespace fusedmlp
