// The one check every 16-byte (vector) access of the CUDA kernels goes through: a GPU faults on
// a misaligned 128-bit access, while the emulator's host CPU would not notice, so under the
// emulator (cpp/cuda/emulation) the check aborts instead.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>

namespace fusedmlp::cuda {

template <class T>
__device__ __forceinline__ void check_aligned16(const T* p) {
#ifdef FUSEDMLP_CUDA_EMULATED
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) std::abort();
#else
    (void)p;
#endif
}

// Elements of T in one 16-byte vector: the unit of the kernels' vector loads and stores.
template <class T>
constexpr int kVecWidth = 16 / static_cast<int>(sizeof(T));

template <class T>
struct alignas(16) Vec16 {
    T v[kVecWidth<T>];
};

template <class T>
__device__ __forceinline__ Vec16<T> load_vec(const T* p) {
    check_aligned16(p);
    return *reinterpret_cast<const Vec16<T>*>(p);
}

template <class T>
__device__ __forceinline__ void store_vec(T* p, const Vec16<T>& x) {
    check_aligned16(p);
    *reinterpret_cast<Vec16<T>*>(p) = x;
}

// 16 bytes from src to dst (both 16-byte aligned) as one 128-bit load and store.
__device__ __forceinline__ void copy_16(void* dst, const void* src) {
    check_aligned16(dst);
    check_aligned16(src);
    *static_cast<float4*>(dst) = *static_cast<const float4*>(src);
}

}  // namespace fusedmlp::cuda
