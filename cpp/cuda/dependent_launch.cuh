// Programmatic dependent launch (compute capability 9.0 and later): a kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization may be scheduled while the kernel before it
// in its stream is still running, once every block of that one has allowed it
// (allow_next_kernel) or exited, instead of after it has completed. The launch and the blocks'
// start then overlap the previous kernel's end: the gap between two short dependent kernels.
// Such a kernel must wait_for_previous_kernels before it reads or writes anything they touch;
// the step's kernels do it first thing (step_kernel_skipped in sgd.cuh), so results cannot
// change. Elsewhere (older devices, the emulator, plain launches) both are no-ops.
#pragma once

#include <cuda_runtime.h>

namespace fusedmlp::cuda {

// Returns once the kernels this one depends on have completed and their writes are visible.
__device__ __forceinline__ void wait_for_previous_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel of the stream be scheduled (it still waits for this one to complete).
__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

}  // namespace fusedmlp::cuda
