// Tiled GEMM for the three products of a dense layer, each with its fused epilogue:
//   forward      Z = H W + b, H' = f(Z)               (bias + activation on the tile)
//   input grad   dZ_prev = (dZ W^T) * f'(Z_prev)      (derivative fused into the gradient)
//   weight grad  [dW; db] = [H 1]^T dZ, then SGD      (the bias gradient is the product with an
//                                                      extra row of ones; the update is applied
//                                                      as each tile of the gradient completes)
// Every output element is summed by one thread in a fixed order: results are bit-identical
// from run to run. A weight gradient with few output tiles and many batch rows (K) is split
// along K: block z sums its own range of K into a workspace, and splitk_update_kernel adds the
// ranges in order and applies the update (deterministic, no atomics). Tiles are staged through double-buffered shared memory; each thread keeps a
// TM x TN block of the output in registers, its rows and columns strided across the tile so that
// shared-memory reads are broadcasts or conflict-free.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "activation.cuh"
#include "sgd.cuh"

namespace fusedmlp::cuda {

enum GemmKind : int { kForward, kInputGrad, kWeightGrad };

template <class T>
struct GemmArgs {
    int M = 0, N = 0, K = 0;
    // A: kForward H (M x K); kInputGrad dZ (M x K); kWeightGrad the transpose of [H 1] (M - 1
    // features + the row of ones, K batch rows). H rows are a[row(r) * lda + feature], where
    // row(r) = rows[r] when rows is set (the training set indexed by the epoch's order).
    const T* a = nullptr;
    long long lda = 0;
    const int* rows = nullptr;
    // B: kForward and kWeightGrad row-major (K x N); kInputGrad W (N x K) read transposed.
    const T* b = nullptr;
    int act = kIdentity;
    // kForward: z_out = A B + bias; h_out = f(z_out) unless null (the output layer).
    const T* bias = nullptr;
    T* z_out = nullptr;
    T* h_out = nullptr;
    // kInputGrad: c_out = (A B) * f'(z_in, h_in).
    const T* z_in = nullptr;
    const T* h_in = nullptr;
    T* c_out = nullptr;
    // kWeightGrad: row m < M - 1 goes to w_offset + m N + n, the last row to b_offset + n.
    SgdUpdate<T> update;
    long long w_offset = 0, b_offset = 0;
    // Split along K (kWeightGrad only): block z sums K range [z k_chunk, (z + 1) k_chunk) into
    // split_out[z M N + m N + n] instead of applying it. k_chunk 0: no split.
    int k_chunk = 0;
    T* split_out = nullptr;
    StepControl control;
};

template <class T, int BM, int BN, int BK, int TM, int TN, int KIND>
__global__ void __launch_bounds__((BM / TM) * (BN / TN)) gemm_kernel(const GemmArgs<T> g) {
    constexpr int kThreads = (BM / TM) * (BN / TN);
    constexpr int kALoads = BM * BK / kThreads;
    constexpr int kBLoads = BK * BN / kThreads;
    constexpr int kPad = 4;
    static_assert(BM * BK % kThreads == 0 && BK * BN % kThreads == 0, "tile loads must divide evenly");
    if (step_skipped(g.control)) return;

    // float: each thread's rows (and columns) are runs of 4 adjacent ones, read from shared
    // memory as one float4 (a quarter of the load instructions per multiply-add); double: its
    // rows and columns are strided across the tile.
    constexpr bool kVec = std::is_same<T, float>::value && TM % 4 == 0 && TN % 4 == 0;
    __shared__ __align__(16) T As[2][BK][BM + kPad];
    __shared__ __align__(16) T Bs[2][BK][BN + kPad];
    const int t = threadIdx.x;
    const int tx = t % (BN / TN), ty = t / (BN / TN);
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const int M = g.M, N = g.N;
    const int k_begin = g.k_chunk > 0 ? static_cast<int>(blockIdx.z) * g.k_chunk : 0;
    const int K = g.k_chunk > 0 ? min(g.K, k_begin + g.k_chunk) : g.K;  // this block's end of K
    // The tile row of the thread's i-th row and the tile column of its j-th column.
    auto row_of = [&](int i) { return kVec ? ty * 4 + i % 4 + (i / 4) * (BM / (TM / 4)) : ty + i * (BM / TM); };
    auto col_of = [&](int j) { return kVec ? tx * 4 + j % 4 + (j / 4) * (BN / (TN / 4)) : tx + j * (BN / TN); };

    T a_reg[kALoads], b_reg[kBLoads];
    auto load = [&](int k0) {
#pragma unroll
        for (int i = 0; i < kALoads; ++i) {
            const int e = t + i * kThreads;
            T v = T(0);
            if constexpr (KIND == kWeightGrad) {
                const int m = m0 + e % BM, k = k0 + e / BM;
                if (k < K) {
                    if (m < M - 1) {
                        const long long row = g.rows != nullptr ? g.rows[k] : k;
                        v = g.a[row * g.lda + m];
                    } else if (m == M - 1) {
                        v = T(1);
                    }
                }
            } else {
                const int m = m0 + e / BK, k = k0 + e % BK;
                if (m < M && k < K) {
                    const long long row = g.rows != nullptr ? g.rows[m] : m;
                    v = g.a[row * g.lda + k];
                }
            }
            a_reg[i] = v;
        }
#pragma unroll
        for (int i = 0; i < kBLoads; ++i) {
            const int e = t + i * kThreads;
            T v = T(0);
            if constexpr (KIND == kInputGrad) {
                const int n = n0 + e / BK, k = k0 + e % BK;
                if (n < N && k < K) v = g.b[static_cast<long long>(n) * g.K + k];
            } else {
                const int n = n0 + e % BN, k = k0 + e / BN;
                if (n < N && k < K) v = g.b[static_cast<long long>(k) * N + n];
            }
            b_reg[i] = v;
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < kALoads; ++i) {
            const int e = t + i * kThreads;
            if constexpr (KIND == kWeightGrad) {
                As[buf][e / BM][e % BM] = a_reg[i];
            } else {
                As[buf][e % BK][e / BK] = a_reg[i];
            }
        }
#pragma unroll
        for (int i = 0; i < kBLoads; ++i) {
            const int e = t + i * kThreads;
            if constexpr (KIND == kInputGrad) {
                Bs[buf][e % BK][e / BK] = b_reg[i];
            } else {
                Bs[buf][e / BN][e % BN] = b_reg[i];
            }
        }
    };

    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    const int tiles = (K - k_begin + BK - 1) / BK;
    load(k_begin);
    store(0);
    __syncthreads();
    for (int tile = 0; tile < tiles; ++tile) {
        const int cur = tile & 1;
        const bool more = tile + 1 < tiles;
        if (more) load(k_begin + (tile + 1) * BK);
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            T a_frag[TM], b_frag[TN];
            if constexpr (kVec) {
#pragma unroll
                for (int i = 0; i < TM; i += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][row_of(i)]);
                    a_frag[i] = v.x;
                    a_frag[i + 1] = v.y;
                    a_frag[i + 2] = v.z;
                    a_frag[i + 3] = v.w;
                }
#pragma unroll
                for (int j = 0; j < TN; j += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][kk][col_of(j)]);
                    b_frag[j] = v.x;
                    b_frag[j + 1] = v.y;
                    b_frag[j + 2] = v.z;
                    b_frag[j + 3] = v.w;
                }
            } else {
#pragma unroll
                for (int i = 0; i < TM; ++i) a_frag[i] = As[cur][kk][row_of(i)];
#pragma unroll
                for (int j = 0; j < TN; ++j) b_frag[j] = Bs[cur][kk][col_of(j)];
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
        }
        if (more) store(cur ^ 1);
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + row_of(i);
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = n0 + col_of(j);
            if (n >= N) continue;
            const long long index = static_cast<long long>(m) * N + n;
            if constexpr (KIND == kForward) {
                const T z = acc[i][j] + g.bias[n];
                g.z_out[index] = z;
                if (g.h_out != nullptr) g.h_out[index] = dev_activate(g.act, z);
            } else if constexpr (KIND == kInputGrad) {
                g.c_out[index] = acc[i][j] * dev_activation_derivative(g.act, g.z_in[index], g.h_in[index]);
            } else {
                if (g.split_out != nullptr) {
                    g.split_out[static_cast<long long>(blockIdx.z) * M * N + index] = acc[i][j];
                } else if (m < M - 1) {
                    apply_gradient(g.update, g.control, g.w_offset + index, acc[i][j], true);
                } else {
                    apply_gradient(g.update, g.control, g.b_offset + n, acc[i][j], false);
                }
            }
        }
    }
}

// Adds the `splits` K ranges of a split weight gradient (M x N, as gemm_kernel's split_out) in
// order and applies each element's update, as the unsplit kernel's epilogue does.
template <class T>
__global__ void __launch_bounds__(256) splitk_update_kernel(const GemmArgs<T> g, int splits) {
    if (step_skipped(g.control)) return;
    const long long count = static_cast<long long>(g.M) * g.N;
    const long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (index >= count) return;
    T sum = 0;
#pragma unroll 4
    for (int z = 0; z < splits; ++z) sum += g.split_out[z * count + index];
    const int m = static_cast<int>(index / g.N), n = static_cast<int>(index % g.N);
    if (m < g.M - 1) {
        apply_gradient(g.update, g.control, g.w_offset + index, sum, true);
    } else {
        apply_gradient(g.update, g.control, g.b_offset + n, sum, false);
    }
}

}  // namespace fusedmlp::cuda
