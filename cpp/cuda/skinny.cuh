// The input gradient of a layer with few outputs, dZ_prev = (dZ W^T) * f'(Z_prev) with a sum of
// K <= kSkinnyMaxK terms (the output layer's, in mnist and wide: K = 10), with a thread per run
// of kSkinnyRun adjacent outputs instead of gemm_kernel's tiles. The sum is too short for
// tiles to pay: gemm_kernel gives each thread 16 outputs behind a global load, a shared-memory
// stage and a barrier, on few blocks (wide: 64 blocks of 64 x 64 for 256 x 1024 outputs), while
// here every load is issued at once by four times as many threads. Each output is summed over
// k = 0, 1, ... as gemm_kernel sums it (which then adds its tile's zero padding: the results
// differ at most in the sign of a zero sum).
#pragma once

#include <cuda_runtime.h>

#include "gemm.cuh"

namespace fusedmlp::cuda {

constexpr int kSkinnyMaxK = 16;
constexpr int kSkinnyRun = 4;
constexpr int kSkinnyThreads = 256;

// g as for gemm_kernel<kInputGrad> (A = dZ, M x K; B = W, N x K; no split) with K <= kSkinnyMaxK;
// launched with ceil(M N / (kSkinnyThreads kSkinnyRun)) blocks of kSkinnyThreads threads.
template <class T>
__global__ void __launch_bounds__(kSkinnyThreads) skinny_input_grad_kernel(const GemmArgs<T> g) {
    if (step_kernel_skipped(g.control)) return;
    const int N = g.N, K = g.K;
    const long long count = static_cast<long long>(g.M) * N;
    const long long first = (static_cast<long long>(blockIdx.x) * kSkinnyThreads + threadIdx.x) * kSkinnyRun;
    if (first >= count) return;
    int m = static_cast<int>(first / N), n = static_cast<int>(first - static_cast<long long>(m) * N);
    T a[kSkinnyMaxK];
    auto load_row = [&] {
        const T* row = g.a + static_cast<long long>(m) * g.lda;
#pragma unroll
        for (int k = 0; k < kSkinnyMaxK; ++k) a[k] = k < K ? row[k] : T(0);
    };
    load_row();
#pragma unroll
    for (int q = 0; q < kSkinnyRun; ++q) {
        if (first + q >= count) break;
        if (n == N) {
            n = 0;
            ++m;
            load_row();
        }
        const T* w = g.b + static_cast<long long>(n) * K;
        T sum = T(0);
#pragma unroll
        for (int k = 0; k < kSkinnyMaxK; ++k)
            if (k < K) sum += a[k] * w[k];
        finish_element<kInputGrad>(g, m, n, static_cast<long long>(m) * N + n, sum);
        ++n;
    }
}

}  // namespace fusedmlp::cuda
