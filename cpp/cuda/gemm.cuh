// Tiled GEMM for the three products of a dense layer, each with its fused epilogue:
//   forward      Z = H W + b, H' = f(Z)               (bias + activation on the tile)
//   input grad   dZ_prev = (dZ W^T) * f'(Z_prev)      (derivative fused into the gradient)
//   weight grad  [dW; db] = [H 1]^T dZ, then SGD      (the update is applied as each tile of
//                                                      the gradient completes)
// The bias gradient, the product with the row of ones, takes no tiles of its own: the blocks of
// the last row of tiles add up dZ's columns as they pass through shared memory, in the order
// the row of ones would have (a multiply-add by 1 is an add, so the sums are the same). Where
// the features are a multiple of the tile, as in wide's 1024 (1025 x 1024 outputs), that saves
// a row of blocks that would hold the bias alone: 256 blocks instead of 272 on 132 SMs.
// Every output element is summed by one thread in a fixed order: results are bit-identical
// from run to run. A product with too few output tiles to fill the device is split along K:
// block z sums its own range of K into a workspace, and splitk_finish_kernel adds the ranges in
// order and applies the epilogue (deterministic, no atomics); or (cluster_sum) the z blocks of
// each tile run as one thread-block cluster and add the ranges in the same order through each
// other's shared memory. The launcher (cuda_mlp_impl.cuh) picks the tile shape and the split
// per product.
//
// Data movement: global memory is read in 16-byte vectors (float4 / double2) wherever the
// operand's leading dimension and base allow, element by element otherwise (any shape works);
// the gathered rows of the training set are resolved once per block, not per element. Tiles
// are staged through registers into double-buffered shared memory (the next tile's loads are
// in flight while the current one is multiplied). Each thread keeps a TM x TN block of the
// output in registers: runs of V adjacent rows / columns (V = one 16-byte vector), the runs
// strided across the tile, so that its shared-memory reads are 16-byte broadcasts or
// conflict-free, and its output columns can be stored as vectors.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "activation.cuh"
#include "cluster.cuh"
#include "sgd.cuh"
#include "vector_memory.cuh"

namespace fusedmlp::cuda {

enum GemmKind : int { kForward, kInputGrad, kWeightGrad };

template <class T>
struct GemmArgs {
    int M = 0, N = 0, K = 0;
    // A: kForward H (M x K); kInputGrad dZ (M x K); kWeightGrad the transpose of [H 1] (M - 1
    // features + the row of ones, K batch rows; the tiles cover the features). H rows are
    // a[row(r) * lda + feature], where row(r) = rows[r] when rows is set (the training set
    // indexed by the epoch's order).
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
    // Split along K: block z sums K range [z k_chunk, (z + 1) k_chunk) into
    // split_out[z M N + m N + n] instead of applying the epilogue. k_chunk 0: no split.
    int k_chunk = 0;
    T* split_out = nullptr;
    // Split along K with the z blocks of each tile launched as one cluster (launch_tile in
    // cuda_mlp_impl.cuh), which add their ranges through shared memory instead of split_out.
    bool cluster_sum = false;
    // Whether 16-byte vectors may be used: for A and B, along their contiguous dimension; for
    // C, for the epilogue's rows (split_out when split, else the kind's outputs and inputs).
    // The launcher sets them from the leading dimensions and the pointers' alignment.
    bool vec_a = false, vec_b = false, vec_c = false;
    StepControl control;
};

// The rows of a product's output that its tiles cover: all but the weight gradient's bias row.
template <int KIND>
__host__ __device__ constexpr int gemm_tiled_rows(int M) {
    return KIND == kWeightGrad ? M - 1 : M;
}

// A GemmTile's kFirstArch for a tile with code for no architecture (its kernels trap).
constexpr int kNoArch = 1 << 30;

// A block tile of BM x BN outputs, K staged BK at a time, TM x TN outputs per thread; at least
// kMinBlocks blocks resident per SM (bounds the registers per thread).
template <class T, int BM_, int BN_, int BK_, int TM_, int TN_, int kMinBlocks_, int kFirstArch_ = 0>
struct GemmTile {
    using Scalar = T;
    static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_, kMinBlocks = kMinBlocks_;
    static constexpr int kFirstArch = kFirstArch_;  // the oldest __CUDA_ARCH__ with code for it
    static constexpr int kThreads = (BM / TM) * (BN / TN);
    // Shared memory: the double-buffered tiles of A and B (gemm_kernel's rows padded by a vector).
    static constexpr int kAStaging = 2 * BK * (BM + kVecWidth<T>), kBStaging = 2 * BK * (BN + kVecWidth<T>);
    // Whether that holds a block's partial sums (the tile and a bias row), so that the ranges of
    // a split may be added across a cluster (GemmArgs::cluster_sum).
    static constexpr bool kClusterSum = BM * BN + BN <= kAStaging + kBStaging;
};

// The epilogue of one output element of the summed product (shared by the unsplit kernel's
// scalar path and splitk_finish_kernel, so both compute exactly the same formula).
template <int KIND, class T>
__device__ __forceinline__ void finish_element(const GemmArgs<T>& g, int m, int n, long long index, T sum) {
    if constexpr (KIND == kForward) {
        const T z = sum + g.bias[n];
        g.z_out[index] = z;
        if (g.h_out != nullptr) g.h_out[index] = dev_activate(g.act, z);
    } else if constexpr (KIND == kInputGrad) {
        g.c_out[index] = sum * dev_activation_derivative(g.act, g.z_in[index], g.h_in[index]);
    } else {
        if (m < g.M - 1) {
            apply_gradient(g.update, g.control, g.w_offset + index, sum, true);
        } else {
            apply_gradient(g.update, g.control, g.b_offset + n, sum, false);
        }
    }
}

// A tile on trial (Tile::kFirstArch 900, or kNoArch in a build without them: never planned,
// only forced by FUSEDMLP_CUDA_TILE, for timing on an H100) is compiled into the sm_90 code
// alone; older devices never launch it (gemm_override), and their code has no copy of it to
// build. The body stays in this function: moved into an inlined one, it compiled to different
// code for the timed tiles.
template <class Tile, int KIND>
__global__ void __launch_bounds__(Tile::kThreads, Tile::kMinBlocks)
    gemm_kernel(const GemmArgs<typename Tile::Scalar> g) {
#if defined(__CUDA_ARCH__)
    if constexpr (__CUDA_ARCH__ < Tile::kFirstArch) {
        __trap();
    } else
#endif
    {
        using T = typename Tile::Scalar;
        constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
        constexpr int V = kVecWidth<T>;
        constexpr int kThreads = Tile::kThreads;
        constexpr int kAVecs = BM * BK / V / kThreads;  // vectors of A (and B) each thread stages per tile
        constexpr int kBVecs = BN * BK / V / kThreads;
        static_assert(kAVecs >= 1 && kAVecs * V * kThreads == BM * BK, "A tile loads must divide evenly");
        static_assert(kBVecs >= 1 && kBVecs * V * kThreads == BN * BK, "B tile loads must divide evenly");
        static_assert(TM % V == 0 && TN % V == 0 && BK % V == 0, "thread tiles are runs of whole vectors");
        static_assert(kThreads >= BN, "a thread per column sums the bias gradient");
        // Operands stored along K in global memory (rows of H or dZ, rows of W for the input
        // gradient) are transposed into shared memory; the others are copied as they are.
        constexpr bool kAAlongK = KIND != kWeightGrad;
        constexpr bool kBAlongK = KIND == kInputGrad;
        if (step_kernel_skipped(g.control)) return;

        // Rows padded by one vector: still 16-byte aligned, and the transposing stores of a warp
        // fall in distinct banks. A tile whose cluster sum reuses them for the block's partial sums
        // after the main loop has them in one array; the others in two (the 128 x 128 weight
        // gradient spills registers into its main loop with one).
        T *a_staging, *b_staging;
        if constexpr (Tile::kClusterSum) {
            FUSEDMLP_CLUSTER_SHARED(T, tiles, Tile::kAStaging + Tile::kBStaging);
            a_staging = tiles;
            b_staging = tiles + Tile::kAStaging;
        } else {
            __shared__ __align__(16) T a_tiles[Tile::kAStaging];
            __shared__ __align__(16) T b_tiles[Tile::kBStaging];
            a_staging = a_tiles;
            b_staging = b_tiles;
        }
        auto& As = *reinterpret_cast<T(*)[2][BK][BM + V]>(a_staging);
        auto& Bs = *reinterpret_cast<T(*)[2][BK][BN + V]>(b_staging);
        const int t = threadIdx.x;
        // The thread's column and row in the block's grid of thread tiles. A warp covers 8 x 4 of
        // them where the grid is wide enough, so that each of its shared-memory reads touches 8 (B)
        // or 4 (A) distinct vectors: one 128-byte wavefront.
        constexpr int kThreadCols = BN / TN;
        int tx, ty;
        if constexpr (kThreadCols % 8 == 0 && kThreads % 32 == 0) {
            const int lane = t % 32, warp = t / 32;
            tx = warp % (kThreadCols / 8) * 8 + lane % 8;
            ty = warp / (kThreadCols / 8) * 4 + lane / 8;
        } else {
            tx = t % kThreadCols;
            ty = t / kThreadCols;
        }
        const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
        const int M = g.M, N = g.N;
        const int k_begin = g.k_chunk > 0 ? static_cast<int>(blockIdx.z) * g.k_chunk : 0;
        const int k_end = g.k_chunk > 0 ? min(g.K, k_begin + g.k_chunk) : g.K;  // this block's end of K

        // Along-K operands: thread t stages vectors t kVecs .. t kVecs + kVecs - 1 of the tile, the
        // same tile rows and K offsets for every tile, so their rows' starts are resolved once here
        // (null: outside the matrix, read as zeros). Consecutive vectors share a row where a row
        // holds several: one gathered row, whole 32-byte sectors per thread, and each transposing
        // store of a warp lands on consecutive rows.
        constexpr int kRowVecs = BK / V;  // vectors per row of an along-K tile
        static_assert(kAVecs % kRowVecs == 0 || kRowVecs % kAVecs == 0, "a thread's A vectors span whole rows");
        static_assert(kBVecs % kRowVecs == 0 || kRowVecs % kBVecs == 0, "a thread's B vectors span whole rows");
        constexpr int kARows = kAVecs > kRowVecs ? kAVecs / kRowVecs : 1;  // vector i is in row i / kRowVecs
        constexpr int kBRows = kBVecs > kRowVecs ? kBVecs / kRowVecs : 1;
        const T* a_row[kARows];
        const T* b_row[kBRows];
        if constexpr (kAAlongK) {
#pragma unroll
            for (int i = 0; i < kARows; ++i) {
                const int m = m0 + t * kAVecs / kRowVecs + i;
                const long long row = m < M ? (g.rows != nullptr ? g.rows[m] : m) : 0;
                a_row[i] = m < M ? g.a + row * g.lda : nullptr;
            }
        }
        if constexpr (kBAlongK) {
#pragma unroll
            for (int i = 0; i < kBRows; ++i) {
                const int n = n0 + t * kBVecs / kRowVecs + i;
                b_row[i] = n < N ? g.b + static_cast<long long>(n) * g.K : nullptr;
            }
        }
        // V elements of a row that runs along K, from column k; zeros past the block's K range.
        auto load_along_k = [&](const T* row, int k, bool vec) {
            Vec16<T> x;
            if (row != nullptr && vec && k + V <= k_end) {
                x = load_vec(row + k);
            } else {
#pragma unroll
                for (int j = 0; j < V; ++j) x.v[j] = row != nullptr && k + j < k_end ? row[k + j] : T(0);
            }
            return x;
        };

        Vec16<T> a_stage[kAVecs], b_stage[kBVecs];
        // Whether this thread's part of every whole tile lies inside the operands, vectors allowed:
        // then it may be loaded without checks (load's kInside).
        bool a_inside = g.vec_a, b_inside = g.vec_b;
        if constexpr (kAAlongK) {
#pragma unroll
            for (int i = 0; i < kARows; ++i) a_inside = a_inside && a_row[i] != nullptr;
        } else {
            a_inside = a_inside && m0 + BM <= M - 1;
        }
        if constexpr (kBAlongK) {
#pragma unroll
            for (int i = 0; i < kBRows; ++i) b_inside = b_inside && b_row[i] != nullptr;
        } else {
            b_inside = b_inside && n0 + BN <= N;
        }
        // The tile at K offset k0 into a_stage / b_stage; inside (std::true_type): a whole tile of a
        // block that lies inside the operands, loaded without checks.
        auto load = [&](int k0, auto inside) {
            constexpr bool kInside = decltype(inside)::value;
#pragma unroll
            for (int i = 0; i < kAVecs; ++i) {
                if constexpr (kAAlongK) {
                    const T* row = a_row[i / kRowVecs];
                    const int k = k0 + ((t * kAVecs + i) % kRowVecs) * V;
                    a_stage[i] = kInside ? load_vec(row + k) : load_along_k(row, k, g.vec_a);
                } else {
                    // H^T: K row k is sample row(k); features m.. of it (the row of ones is not loaded).
                    const int e = t + i * kThreads;
                    const int k = k0 + e / (BM / V), m = m0 + (e % (BM / V)) * V;
                    if constexpr (kInside) {
                        const long long row = g.rows != nullptr ? g.rows[k] : k;
                        a_stage[i] = load_vec(g.a + row * g.lda + m);
                        continue;
                    }
                    Vec16<T> x;
#pragma unroll
                    for (int j = 0; j < V; ++j) x.v[j] = T(0);
                    if (k < k_end) {
                        const long long row = g.rows != nullptr ? g.rows[k] : k;
                        const T* p = g.a + row * g.lda + m;
                        if (g.vec_a && m + V <= M - 1) {
                            x = load_vec(p);
                        } else {
#pragma unroll
                            for (int j = 0; j < V; ++j) x.v[j] = m + j < M - 1 ? p[j] : T(0);
                        }
                    }
                    a_stage[i] = x;
                }
            }
#pragma unroll
            for (int i = 0; i < kBVecs; ++i) {
                if constexpr (kBAlongK) {
                    const T* row = b_row[i / kRowVecs];
                    const int k = k0 + ((t * kBVecs + i) % kRowVecs) * V;
                    b_stage[i] = kInside ? load_vec(row + k) : load_along_k(row, k, g.vec_b);
                } else {
                    const int e = t + i * kThreads;
                    const int k = k0 + e / (BN / V), n = n0 + (e % (BN / V)) * V;
                    if constexpr (kInside) {
                        b_stage[i] = load_vec(g.b + static_cast<long long>(k) * N + n);
                        continue;
                    }
                    Vec16<T> x;
#pragma unroll
                    for (int j = 0; j < V; ++j) x.v[j] = T(0);
                    if (k < k_end) {
                        const T* p = g.b + static_cast<long long>(k) * N + n;
                        if (g.vec_b && n + V <= N) {
                            x = load_vec(p);
                        } else {
#pragma unroll
                            for (int j = 0; j < V; ++j) x.v[j] = n + j < N ? p[j] : T(0);
                        }
                    }
                    b_stage[i] = x;
                }
            }
        };
        auto store = [&](int buf) {
#pragma unroll
            for (int i = 0; i < kAVecs; ++i) {
                if constexpr (kAAlongK) {
                    const int r = (t * kAVecs + i) / kRowVecs, k = ((t * kAVecs + i) % kRowVecs) * V;
#pragma unroll
                    for (int j = 0; j < V; ++j) As[buf][k + j][r] = a_stage[i].v[j];
                } else {
                    const int e = t + i * kThreads;
                    store_vec(&As[buf][e / (BM / V)][(e % (BM / V)) * V], a_stage[i]);
                }
            }
#pragma unroll
            for (int i = 0; i < kBVecs; ++i) {
                if constexpr (kBAlongK) {
                    const int r = (t * kBVecs + i) / kRowVecs, k = ((t * kBVecs + i) % kRowVecs) * V;
#pragma unroll
                    for (int j = 0; j < V; ++j) Bs[buf][k + j][r] = b_stage[i].v[j];
                } else {
                    const int e = t + i * kThreads;
                    store_vec(&Bs[buf][e / (BN / V)][(e % (BN / V)) * V], b_stage[i]);
                }
            }
        };

        // The tile row of the thread's i-th row and the tile column of its j-th column.
        auto row_of = [&](int i) { return ty * V + i % V + (i / V) * (BM / TM) * V; };
        auto col_of = [&](int j) { return tx * V + j % V + (j / V) * (BN / TN) * V; };

        T acc[TM][TN];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

        // The thread's rows of A and columns of B at K step kk of shared buffer buf.
        auto read_fragments = [&](int buf, int kk, T (&a_frag)[TM], T (&b_frag)[TN]) {
#pragma unroll
            for (int i = 0; i < TM; i += V) {
                const Vec16<T> x = load_vec(&As[buf][kk][row_of(i)]);
#pragma unroll
                for (int j = 0; j < V; ++j) a_frag[i + j] = x.v[j];
            }
#pragma unroll
            for (int j = 0; j < TN; j += V) {
                const Vec16<T> x = load_vec(&Bs[buf][kk][col_of(j)]);
#pragma unroll
                for (int q = 0; q < V; ++q) b_frag[j + q] = x.v[q];
            }
        };
        auto multiply = [&](const T (&a_frag)[TM], const T (&b_frag)[TN]) {
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
        };

        // The bias gradient of column n0 + t (t < BN), summed by the blocks of the last row of tiles.
        const bool bias_tiles = KIND == kWeightGrad && blockIdx.y == gridDim.y - 1;
        const bool sums_bias = bias_tiles && t < BN;
        T bias_sum = T(0);
        auto add_bias = [&](int buf) {
            if (sums_bias) {
#pragma unroll
                for (int kk = 0; kk < BK; ++kk) bias_sum += Bs[buf][kk][t];
            }
        };

        const int tiles = (k_end - k_begin + BK - 1) / BK;
        // A block whose tiles all lie inside the operands runs the pipelined loop: each K step's
        // fragments are read from shared memory under the previous step's multiply-adds, across the
        // tile boundary too (the next tile's first fragments right after its barrier, under this
        // tile's last multiply-adds), and its tiles are loaded without per-vector checks. Edge
        // blocks run the plain loop, which checks every load. The same sums in the same order
        // either way. The choice is block-wide (both loops have barriers), and the pipelined loop
        // has no checks to keep registers for. On an H100 it made mnist 4.8%, wide 3% and huge 0.2%
        // faster than the plain loop everywhere (2026-11-26).
        if (__syncthreads_and(a_inside && b_inside && (k_end - k_begin) % BK == 0)) {
            static_assert(BK % 2 == 0, "the fragments' two buffers alternate across tiles");
            load(k_begin, std::true_type{});
            store(0);
            __syncthreads();
            T a_frag[2][TM], b_frag[2][TN];
            read_fragments(0, 0, a_frag[0], b_frag[0]);
            for (int tile = 0; tile < tiles; ++tile) {
                const int cur = tile & 1;
                const bool more = tile + 1 < tiles;
                if (more) load(k_begin + (tile + 1) * BK, std::true_type{});
                add_bias(cur);
#pragma unroll
                for (int kk = 0; kk < BK; ++kk) {
                    const int f = kk & 1;
                    if (kk + 1 < BK) {
                        read_fragments(cur, kk + 1, a_frag[f ^ 1], b_frag[f ^ 1]);
                    } else if (more) {
                        // The other buffer was last read before the previous tile's barrier.
                        store(cur ^ 1);
                        __syncthreads();
                        read_fragments(cur ^ 1, 0, a_frag[f ^ 1], b_frag[f ^ 1]);
                    }
                    multiply(a_frag[f], b_frag[f]);
                }
            }
        } else {
            load(k_begin, std::false_type{});
            store(0);
            __syncthreads();
            for (int tile = 0; tile < tiles; ++tile) {
                const int cur = tile & 1;
                const bool more = tile + 1 < tiles;
                if (more) load(k_begin + (tile + 1) * BK, std::false_type{});
                add_bias(cur);
#pragma unroll
                for (int kk = 0; kk < BK; ++kk) {
                    T a_frag[TM], b_frag[TN];
                    read_fragments(cur, kk, a_frag, b_frag);
                    multiply(a_frag, b_frag);
                }
                if (more) store(cur ^ 1);
                __syncthreads();
            }
        }

        // The epilogue of a run of V adjacent columns from (m, n) of the summed product (n < N): as
        // vectors where the run lies inside the matrix and vec_c allows, else element by element
        // (the same formulas either way); into split_out when split.
        auto finish_run = [&](int m, int n, const Vec16<T>& sum) {
            const long long index = static_cast<long long>(m) * N + n;
            const bool whole = g.vec_c && n + V <= N;
            if (g.split_out != nullptr) {
                T* out = g.split_out + static_cast<long long>(blockIdx.z) * M * N + index;
                if (whole) {
                    store_vec(out, sum);
                } else {
#pragma unroll
                    for (int j = 0; j < V; ++j)
                        if (n + j < N) out[j] = sum.v[j];
                }
                return;
            }
            if constexpr (KIND == kForward) {
                if (whole) {
                    const Vec16<T> bias = load_vec(g.bias + n);
                    Vec16<T> z, h;
#pragma unroll
                    for (int j = 0; j < V; ++j) z.v[j] = sum.v[j] + bias.v[j];
                    store_vec(g.z_out + index, z);
                    if (g.h_out != nullptr) {
#pragma unroll
                        for (int j = 0; j < V; ++j) h.v[j] = dev_activate(g.act, z.v[j]);
                        store_vec(g.h_out + index, h);
                    }
                    return;
                }
            } else if constexpr (KIND == kInputGrad) {
                if (whole) {
                    const Vec16<T> z = load_vec(g.z_in + index), h = load_vec(g.h_in + index);
                    Vec16<T> c;
#pragma unroll
                    for (int j = 0; j < V; ++j) c.v[j] = sum.v[j] * dev_activation_derivative(g.act, z.v[j], h.v[j]);
                    store_vec(g.c_out + index, c);
                    return;
                }
            }
#pragma unroll
            for (int j = 0; j < V; ++j)
                if (n + j < N) finish_element<KIND>(g, m, n + j, index + j, sum.v[j]);
        };

#if defined(FUSEDMLP_CUDA_CLUSTERS)
        if constexpr (Tile::kClusterSum) {
            if (g.cluster_sum) {
                // Each block's partial sums go to its own shared memory: the tile, then (in the last
                // row of tiles) the bias row. Block r of the cluster then adds up every block's sums
                // of its share of the runs, in rank order as splitk_finish_kernel does, and applies
                // the epilogue to them.
                T* partial = a_staging;  // the tile's rows, then the bias row: [BM + 1][BN]
                __syncthreads();  // every thread has read its last fragments
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int jr = 0; jr < TN; jr += V) {
                        Vec16<T> run;
#pragma unroll
                        for (int j = 0; j < V; ++j) run.v[j] = acc[i][jr + j];
                        store_vec(partial + row_of(i) * BN + col_of(jr), run);
                    }
                if (sums_bias) partial[BM * BN + t] = bias_sum;
                cluster_sync();
                const int rank = static_cast<int>(cluster_rank()), size = static_cast<int>(gridDim.z);
                const int runs = (bias_tiles ? BM + 1 : BM) * (BN / V);
                for (int q = rank * kThreads + t; q < runs; q += size * kThreads) {
                    Vec16<T> sum = load_vec(cluster_peer(partial, 0) + q * V);
                    for (int z = 1; z < size; ++z) {
                        const Vec16<T> part = load_vec(cluster_peer(partial, z) + q * V);
#pragma unroll
                        for (int j = 0; j < V; ++j) sum.v[j] += part.v[j];
                    }
                    const int r = q / (BN / V), n = n0 + q % (BN / V) * V;
                    const int m = r < BM ? m0 + r : M - 1;  // row BM: the bias row
                    if ((r == BM || m < gemm_tiled_rows<KIND>(M)) && n < N) finish_run(m, n, sum);
                }
                cluster_sync();  // no block leaves while the others read its shared memory
                return;
            }
        }
#elif defined(__CUDA_ARCH__)
        if (g.cluster_sum) __trap();  // the host asks for clusters only where the device has them
#endif

        if (sums_bias && n0 + t < N) {
            const long long index = static_cast<long long>(M - 1) * N + n0 + t;
            if (g.split_out != nullptr) {
                g.split_out[static_cast<long long>(blockIdx.z) * M * N + index] = bias_sum;
            } else {
                finish_element<KIND>(g, M - 1, n0 + t, index, bias_sum);
            }
        }
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int m = m0 + row_of(i);
            if (m >= gemm_tiled_rows<KIND>(M)) continue;
#pragma unroll
            for (int jr = 0; jr < TN; jr += V) {
                const int n = n0 + col_of(jr);
                if (n >= N) continue;
                Vec16<T> sum;
#pragma unroll
                for (int j = 0; j < V; ++j) sum.v[j] = acc[i][jr + j];
                finish_run(m, n, sum);
            }
        }
    }
}

// Adds the `splits` K ranges of a split product (M x N, as gemm_kernel's split_out) in order
// and applies each element's epilogue, as the unsplit kernel does.
// Outputs per thread of splitk_finish_kernel: one 16-byte vector of each range where vec_c
// allows (the ranges' loads are then a quarter as many instructions), else one element at a time.
constexpr int kFinishRun = 4;
// Ranges whose loads one thread has in flight at once: the kernel is bound by the latency of
// its loads, not by their bytes.
constexpr int kFinishBatch = 8;

// Sums the K ranges of a split product in order z = 0, 1, ... and applies the epilogue. Each
// thread takes kFinishRun consecutive outputs (in one row when vec_c: N is then a multiple of
// the vector width); launched with ceil(M N / (256 kFinishRun)) blocks of 256 threads.
template <int KIND, class T>
__global__ void __launch_bounds__(256) splitk_finish_kernel(const GemmArgs<T> g, int splits) {
    if (step_kernel_skipped(g.control)) return;
    // M N < 2^31: the split workspace holds every range (split_workspace_bound).
    const int count = g.M * g.N;
    const int first = (static_cast<int>(blockIdx.x) * 256 + static_cast<int>(threadIdx.x)) * kFinishRun;
    if (first >= count) return;
    const int runs = min(kFinishRun, count - first);
    const bool vec = g.vec_c && runs == kFinishRun;
    static_assert(kFinishRun % kVecWidth<T> == 0, "a run is whole vectors");
    auto load_run = [&](int z, T (&v)[kFinishRun]) {
        const T* p = g.split_out + static_cast<long long>(z) * count + first;
        if (vec) {
#pragma unroll
            for (int q = 0; q < kFinishRun; q += kVecWidth<T>) {
                const Vec16<T> x = load_vec(p + q);
#pragma unroll
                for (int e = 0; e < kVecWidth<T>; ++e) v[q + e] = x.v[e];
            }
        } else {
#pragma unroll
            for (int q = 0; q < kFinishRun; ++q) v[q] = q < runs ? p[q] : T(0);
        }
    };
    T sum[kFinishRun];
    load_run(0, sum);
    for (int z0 = 1; z0 < splits; z0 += kFinishBatch) {
        T part[kFinishBatch][kFinishRun];
#pragma unroll
        for (int j = 0; j < kFinishBatch; ++j)
            if (z0 + j < splits) load_run(z0 + j, part[j]);
#pragma unroll
        for (int j = 0; j < kFinishBatch; ++j)
            if (z0 + j < splits)
#pragma unroll
                for (int q = 0; q < kFinishRun; ++q) sum[q] += part[j][q];
    }
    int m = first / g.N, n = first - m * g.N;
#pragma unroll
    for (int q = 0; q < kFinishRun; ++q) {
        if (q < runs) finish_element<KIND>(g, m, n, static_cast<long long>(first) + q, sum[q]);
        if (++n == g.N) {
            n = 0;
            ++m;
        }
    }
}

}  // namespace fusedmlp::cuda
