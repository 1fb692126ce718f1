// Copies from global to shared memory that do not stall the issuing thread (cp.async, sm_80+):
// the fused epoch kernel gathers the next batch's inputs while it computes the current one.
// The emulator (and any older architecture) copies at once, which is the same up to timing.
#pragma once

#include <cuda_runtime.h>

#include "vector_memory.cuh"

namespace fusedmlp::cuda {

template <class T>
__device__ __forceinline__ void async_copy_element(T* shared_dst, const T* global_src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "cp.async copies 4, 8 or 16 bytes");
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
    if constexpr (sizeof(T) == 4) {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(global_src) : "memory");
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(global_src) : "memory");
    }
#else
    *shared_dst = *global_src;
#endif
}

// 16 bytes (both addresses 16-byte aligned): a quarter of the instructions of four floats'
// element copies. cp.async.cg: bypasses L1, which the copied data never revisits.
__device__ __forceinline__ void async_copy_16(void* shared_dst, const void* global_src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    check_aligned16(shared_dst);
    check_aligned16(global_src);
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(global_src) : "memory");
#else
    copy_16(shared_dst, global_src);
#endif
}

// Marks the copies issued so far as one group.
__device__ __forceinline__ void async_copy_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits for this thread's copies; a __syncthreads after it makes every thread's visible.
__device__ __forceinline__ void async_copy_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

}  // namespace fusedmlp::cuda
