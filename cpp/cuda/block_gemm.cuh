// Products of operands already in shared memory, computed by one whole block: the compute of
// the fused kernels (fused.cuh), where every layer of a narrow network is such a product.
//
// C (M x N) = sum over i < K of A(m, i) B(i, n); M, N and K are multiples of 4 (the callers pad
// their operands with zeros). Each operand has one contiguous dimension and one strided by its
// leading dimension `ld`; the template flags say which is which. A thread owns 4 x 4 blocks of
// C and reads each operand 4 x 4 elements at a time as four 128-bit loads, so that a load feeds
// four multiply-adds. Leading dimensions are odd multiples of 4 elements: a warp's loads along
// a strided dimension then fall in distinct banks.
//
// When C has fewer 4 x 4 blocks than the block has threads, the sum over i is split into
// contiguous ranges: group g of threads sums range g into the scratch buffer, and after a
// barrier the ranges are added in the order g = 0, 1, ... The sum of every element therefore
// has one fixed order: results are bit-identical from run to run.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "vector_memory.cuh"

namespace fusedmlp::cuda {

// Four consecutive elements at p (16-byte aligned) as one or two 128-bit accesses.
template <class T>
__device__ __forceinline__ void load4(const T* p, T (&v)[4]) {
    check_aligned16(p);
    if constexpr (std::is_same<T, float>::value) {
        const float4 q = *reinterpret_cast<const float4*>(p);
        v[0] = q.x;
        v[1] = q.y;
        v[2] = q.z;
        v[3] = q.w;
    } else {
        const double2 a = reinterpret_cast<const double2*>(p)[0];
        const double2 b = reinterpret_cast<const double2*>(p)[1];
        v[0] = a.x;
        v[1] = a.y;
        v[2] = b.x;
        v[3] = b.y;
    }
}

template <class T>
__device__ __forceinline__ void store4(T* p, const T (&v)[4]) {
    check_aligned16(p);
    if constexpr (std::is_same<T, float>::value) {
        *reinterpret_cast<float4*>(p) = float4{v[0], v[1], v[2], v[3]};
    } else {
        reinterpret_cast<double2*>(p)[0] = double2{v[0], v[1]};
        reinterpret_cast<double2*>(p)[1] = double2{v[2], v[3]};
    }
}

// One operand: its elements and the stride of its strided dimension.
template <class T>
struct SharedOperand {
    const T* p = nullptr;
    int ld = 0;
};

// How C's blocks are spread over threads. Rows (columns) of a thread's block are either 4
// adjacent ones (4 tm + q) or strided across C (tm + M/4 q): strided where the operand that
// depends on them is read along its strided dimension by neighbouring threads, so that their
// loads hit distinct banks; adjacent where it is read along its contiguous dimension, so that
// one 128-bit load holds the four.
//
// kAInner: A(m, i) = a.p[m * a.ld + i] (i contiguous), else a.p[i * a.ld + m] (needs adjacent m).
// kBInner: B(i, n) = b.p[n * b.ld + i] (i contiguous), else b.p[i * b.ld + n] (needs adjacent n).
template <bool kAInner, bool kBInner, bool kMStrided, bool kNStrided>
struct ProductShape {
    static_assert(kAInner || !kMStrided, "A read along m needs a thread's 4 rows adjacent");
    static_assert(kBInner || !kNStrided, "B read along n needs a thread's 4 columns adjacent");
    static constexpr bool a_inner = kAInner, b_inner = kBInner, m_strided = kMStrided, n_strided = kNStrided;
};

// The 4 x 4 block (tm, tn) of C summed over i in [i_begin, i_end) (multiples of 4).
template <class Shape, class T>
__device__ __forceinline__ void block_sum(SharedOperand<T> a, SharedOperand<T> b, int mt, int nt, int tm, int tn,
                                          int i_begin, int i_end, T (&acc)[4][4]) {
    int m[4], n[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        m[q] = Shape::m_strided ? tm + mt * q : 4 * tm + q;
        n[q] = Shape::n_strided ? tn + nt * q : 4 * tn + q;
    }
#pragma unroll
    for (int x = 0; x < 4; ++x)
#pragma unroll
        for (int y = 0; y < 4; ++y) acc[x][y] = T(0);
#pragma unroll 2
    for (int i0 = i_begin; i0 < i_end; i0 += 4) {
        T av[4][4], bv[4][4];  // av[row q][i], bv[i][column q]
        if constexpr (Shape::a_inner) {
#pragma unroll
            for (int q = 0; q < 4; ++q) load4(a.p + m[q] * a.ld + i0, av[q]);
        } else {
#pragma unroll
            for (int ii = 0; ii < 4; ++ii) {
                T v[4];
                load4(a.p + (i0 + ii) * a.ld + m[0], v);
#pragma unroll
                for (int q = 0; q < 4; ++q) av[q][ii] = v[q];
            }
        }
        if constexpr (Shape::b_inner) {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                T v[4];
                load4(b.p + n[q] * b.ld + i0, v);
#pragma unroll
                for (int ii = 0; ii < 4; ++ii) bv[ii][q] = v[ii];
            }
        } else {
#pragma unroll
            for (int ii = 0; ii < 4; ++ii) load4(b.p + (i0 + ii) * b.ld + n[0], bv[ii]);
        }
#pragma unroll
        for (int ii = 0; ii < 4; ++ii)
#pragma unroll
            for (int x = 0; x < 4; ++x)
#pragma unroll
                for (int y = 0; y < 4; ++y) acc[x][y] += av[x][ii] * bv[ii][y];
    }
}

// C = A B over the whole block; out(m, n0, n_step, v) receives row m of C at columns
// n0 + q n_step (q < 4) for every row of every 4 x 4 block, exactly once. scratch: room for
// `scratch_elems` elements, used (with a barrier) when the sum over i is split. No barrier at
// the end: the caller synchronises before anything reads what `out` wrote. Every thread of the
// block must call this (it may contain a __syncthreads).
template <class Shape, int kThreads, class T, class Out>
__device__ void block_product(int M, int N, int K, SharedOperand<T> a, SharedOperand<T> b, T* scratch,
                              int scratch_elems, Out&& out) {
    const int mt = M / 4, nt = N / 4, blocks = mt * nt, kb = K / 4;
    const int t = threadIdx.x;
    // Ranges of i: as many as idle threads allow, none shorter than one step of 4.
    int splits = 1;
    if (blocks < kThreads) splits = min(kThreads / blocks, min(kb, scratch_elems / (16 * blocks)));
    splits = max(splits, 1);
    const int chunk = (kb + splits - 1) / splits;
    splits = (kb + chunk - 1) / chunk;
    if (splits <= 1) {
        for (int blk = t; blk < blocks; blk += kThreads) {
            const int tm = blk / nt, tn = blk % nt;
            T acc[4][4];
            block_sum<Shape>(a, b, mt, nt, tm, tn, 0, K, acc);
#pragma unroll
            for (int x = 0; x < 4; ++x) {
                const int m = Shape::m_strided ? tm + mt * x : 4 * tm + x;
                out(m, Shape::n_strided ? tn : 4 * tn, Shape::n_strided ? nt : 1, acc[x]);
            }
        }
        return;
    }
    // scratch[g][x][blk][y]: neighbouring threads store neighbouring 16-byte runs.
    if (t < blocks * splits) {
        const int g = t / blocks, blk = t % blocks;
        const int tm = blk / nt, tn = blk % nt;
        T acc[4][4];
        block_sum<Shape>(a, b, mt, nt, tm, tn, 4 * g * chunk, 4 * min(kb, (g + 1) * chunk), acc);
#pragma unroll
        for (int x = 0; x < 4; ++x) store4(scratch + ((g * 4 + x) * blocks + blk) * 4, acc[x]);
    }
    __syncthreads();
    for (int item = t; item < 4 * blocks; item += kThreads) {
        const int x = item / blocks, blk = item % blocks;
        T sum[4], part[4];
        load4(scratch + (x * blocks + blk) * 4, sum);
        // Unrolled so that several ranges' loads are in flight at once; still added in order.
#pragma unroll 4
        for (int g = 1; g < splits; ++g) {
            load4(scratch + ((g * 4 + x) * blocks + blk) * 4, part);
#pragma unroll
            for (int y = 0; y < 4; ++y) sum[y] += part[y];
        }
        const int tm = blk / nt, tn = blk % nt;
        const int m = Shape::m_strided ? tm + mt * x : 4 * tm + x;
        out(m, Shape::n_strided ? tn : 4 * tn, Shape::n_strided ? nt : 1, sum);
    }
}

}  // namespace fusedmlp::cuda
