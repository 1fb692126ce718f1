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

#include <algorithm>
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

// x / d for 0 <= x, d < 2^16 as a multiply-high: the divisions that map threads to 4 x 4
// blocks, with d fixed per product (planned on the host) and x per thread. An integer division
// by a value known only at run time costs about 20 instructions; this costs two.
struct FastDivisor {
    unsigned magic = 0, extra = 0;  // x / d = umulhi(x, magic) + x * extra; extra = 1 only for d = 1
};

inline FastDivisor make_fast_divisor(int d) {
    // magic = ceil(2^32 / d): exact for x, d < 2^16 (the error x (magic d - 2^32) / (d 2^32) < 1 / d)
    const unsigned long long m = ((1ULL << 32) + static_cast<unsigned>(d) - 1) / static_cast<unsigned>(d);
    return FastDivisor{static_cast<unsigned>(m), static_cast<unsigned>(m >> 32)};
}

__device__ __forceinline__ int fast_div(int x, FastDivisor d) {
    return static_cast<int>(__umulhi(static_cast<unsigned>(x), d.magic) + static_cast<unsigned>(x) * d.extra);
}

// One product's shape and how the block shares it out, planned on the host once per network
// (plan_product), so that the kernels do no integer division.
struct ProductPlan {
    int M = 0, N = 0, K = 0;  // C is M x N, summed over K; multiples of 4
    int nt = 0, blocks = 0;   // 4 x 4 blocks of C: (M / 4) x nt of them
    int splits = 1, chunk = 0;  // ranges of i and the 4-steps in each; splits 1: not split
    FastDivisor by_nt, by_blocks;
};

// When C has fewer 4 x 4 blocks than the block has threads, as many ranges of i as the idle
// threads and `scratch_elems` allow, none shorter than one step of 4.
inline ProductPlan plan_product(int M, int N, int K, int threads, int scratch_elems) {
    ProductPlan p;
    p.M = M;
    p.N = N;
    p.K = K;
    p.nt = N / 4;
    p.blocks = M / 4 * p.nt;
    const int kb = K / 4;
    int splits = 1;
    if (p.blocks < threads) splits = std::min(threads / p.blocks, std::min(kb, scratch_elems / (16 * p.blocks)));
    splits = std::max(splits, 1);
    p.chunk = (kb + splits - 1) / splits;
    p.splits = p.chunk > 0 ? (kb + p.chunk - 1) / p.chunk : 1;
    p.by_nt = make_fast_divisor(std::max(p.nt, 1));
    p.by_blocks = make_fast_divisor(std::max(p.blocks, 1));
    return p;
}

// C = A B over the whole block, as planned by plan_product(M, N, K, kThreads, scratch_elems), in
// two halves with a barrier between them when the sum over i is split: block_product_partial
// sums the ranges of i into `scratch` (room for the plan's `scratch_elems` elements), and
// block_product_finish adds them up. An unsplit product is done whole by the first half and
// the second does nothing. out(m, n0, n_step, v) receives row m of C at columns n0 + q n_step
// (q < 4) for every row of every 4 x 4 block, exactly once. Apart, the halves let two products
// share one barrier (fused_backward_layer); block_product runs both. No barrier at the end:
// the caller synchronises before anything reads what `out` wrote. Every thread of the block
// must call these.
template <class Shape, int kThreads, class T, class Out>
__device__ void block_product_partial(const ProductPlan& plan, SharedOperand<T> a, SharedOperand<T> b, T* scratch,
                                      Out&& out) {
    const int mt = plan.M / 4, nt = plan.nt, blocks = plan.blocks, K = plan.K;
    const int t = threadIdx.x;
    if (plan.splits <= 1) {
        for (int blk = t; blk < blocks; blk += kThreads) {
            const int tm = fast_div(blk, plan.by_nt), tn = blk - tm * nt;
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
    const int chunk = plan.chunk, kb = K / 4;
    // scratch[g][x][blk][y]: neighbouring threads store neighbouring 16-byte runs.
    if (t < blocks * plan.splits) {
        const int g = fast_div(t, plan.by_blocks), blk = t - g * blocks;
        const int tm = fast_div(blk, plan.by_nt), tn = blk - tm * nt;
        T acc[4][4];
        block_sum<Shape>(a, b, mt, nt, tm, tn, 4 * g * chunk, 4 * min(kb, (g + 1) * chunk), acc);
#pragma unroll
        for (int x = 0; x < 4; ++x) store4(scratch + ((g * 4 + x) * blocks + blk) * 4, acc[x]);
    }
}

// The second half: after a barrier, the ranges of a split product added in the order g = 0, 1, ...
template <class Shape, int kThreads, class T, class Out>
__device__ void block_product_finish(const ProductPlan& plan, const T* scratch, Out&& out) {
    if (plan.splits <= 1) return;
    const int mt = plan.M / 4, nt = plan.nt, blocks = plan.blocks, splits = plan.splits;
    for (int item = threadIdx.x; item < 4 * blocks; item += kThreads) {
        const int x = fast_div(item, plan.by_blocks), blk = item - x * blocks;
        T sum[4], part[4];
        load4(scratch + (x * blocks + blk) * 4, sum);
        // Unrolled so that several ranges' loads are in flight at once; still added in order.
#pragma unroll 4
        for (int g = 1; g < splits; ++g) {
            load4(scratch + ((g * 4 + x) * blocks + blk) * 4, part);
#pragma unroll
            for (int y = 0; y < 4; ++y) sum[y] += part[y];
        }
        const int tm = fast_div(blk, plan.by_nt), tn = blk - tm * nt;
        const int m = Shape::m_strided ? tm + mt * x : 4 * tm + x;
        out(m, Shape::n_strided ? tn : 4 * tn, Shape::n_strided ? nt : 1, sum);
    }
}

template <class Shape, int kThreads, class T, class Out>
__device__ void block_product(const ProductPlan& plan, SharedOperand<T> a, SharedOperand<T> b, T* scratch,
                              Out&& out) {
    block_product_partial<Shape, kThreads>(plan, a, b, scratch, out);
    if (plan.splits <= 1) return;
    __syncthreads();
    block_product_finish<Shape, kThreads>(plan, scratch, out);
}

}  // namespace fusedmlp::cuda
