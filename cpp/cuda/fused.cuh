// The fully fused kernels for narrow networks (every width <= 128): one block takes a tile of
// `rows` (8, 16 or 32) batch rows through every layer forward, the loss, and every layer backward, its
// activations, derivatives and gradients kept in shared memory the whole time; every product
// is a block_product (block_gemm.cuh) on shared operands.
//
// - fused_mlp_kernel: one step, one block per tile. A batch of several tiles sums its weight
//   gradient across blocks: each block writes its partial sums and fused_reduce_kernel adds
//   them in block order (deterministic, no atomics) and applies the update. A batch of one
//   tile applies its update itself.
// - fused_epoch_kernel: a whole epoch of one-tile batches in one block. The parameters (and
//   the momentum) stay in shared memory from the first step to the last and are updated in
//   place; each update is also written through to the global buffer of the step
//   (parameters double-buffered as in sgd.cuh), so that a divergent step leaves the state before
//   it there.
//   The next batch's inputs are gathered with asynchronous copies while the current one runs.
//
// Shared memory layout (planned on the host, FusedLayout): activations are feature-major,
// H_t[feature][row] with rows padded to rows + 4 (an odd multiple of 4, see block_gemm.cuh), so that the batch rows of a feature are
// adjacent; weights are W[in][out] with rows padded to an odd multiple of 4. Every dimension
// is padded to a multiple of 4 with zeros, which the products then simply include.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "activation.cuh"
#include "async_copy.cuh"
#include "block_gemm.cuh"
#include "loss.cuh"
#include "sgd.cuh"
#include "vector_memory.cuh"

namespace fusedmlp::cuda {

constexpr int kFusedMaxLayers = 16;
constexpr int kFusedMaxWidth = 128;
// fused_mlp_kernel and fused_epoch_kernel are built for kFusedThreads and kWideFusedThreads<T>
// threads; kFusedThreads is the block a layout falls back to where the larger block's scratch
// does not fit.
constexpr int kFusedThreads = 256;
// The larger block, of float's kernels alone: 512 threads measured faster in float on an H100
// (FUSEDMLP_CUDA_STEP_THREADS, FUSEDMLP_CUDA_EPOCH_THREADS), but a second copy of every fused
// kernel was nearly half of the double unit's build, for float64, which nobody times. For
// double it is kFusedThreads, so the launches' choice of block names one kernel.
template <class T>
constexpr int kWideFusedThreads = std::is_same<T, float>::value ? 512 : kFusedThreads;
// Batch rows per block: a tile of 32 rows by default; 16 or 8 spread a small batch over more
// SMs. At most 32: fused_loss sums the rows' losses in one warp.
constexpr int kFusedMaxRows = 32;
constexpr int kFusedTileRows[] = {8, 16, 32};

// Offsets in elements of T into the dynamic shared memory (a multiple of 4 each).
struct FusedLayout {
    int rows = kFusedMaxRows, ldh = kFusedMaxRows + 4;  // batch rows per block; activations' row stride
    int threads = kFusedThreads;                         // the block the products are planned for
    int layers = 0;
    int sizes[kFusedMaxLayers + 1] = {};   // the widths
    int padded[kFusedMaxLayers + 1] = {};  // the widths rounded up to multiples of 4
    int act[kFusedMaxLayers + 1] = {};     // H_t of each layer's output; act[0]: the input
    int input2 = -1;                       // the epoch kernel's second input buffer
    int der[kFusedMaxLayers + 1] = {};     // f' of hidden layers 1 .. layers-1; backward: their dz
    int ldw[kFusedMaxLayers] = {};
    int w[kFusedMaxLayers] = {}, b[kFusedMaxLayers] = {};  // W_l and b_l (one shared slot when staged)
    bool staged = false;     // one layer's parameters at a time, copied in before each use
    int momentum_delta = 0;  // resident momentum: at the parameters' offsets + this; 0: none
    // The products' scratch (block_gemm.cuh); scratch2: a second one of the same size, for the
    // weight gradient while the input gradient's ranges are in the first (-1: none, the layout
    // could not afford it).
    int scratch = 0, scratch2 = -1, scratch_elems = 0;
    int total = 0;
    // fused_loss takes 2^loss_lanes_log2 lanes per row: as few as the row's logits allow, at
    // least 32 / rows (a pass then never runs past the tile), at most a warp.
    int loss_lanes_log2 = 0;
    // Each layer's products (block_gemm.cuh): forward H_{l+1} = W_l^T H_l; input gradient
    // dz_l = W_l dz_{l+1} (l > 0); weight gradient dW_l = H_l dz_{l+1}^T.
    ProductPlan forward[kFusedMaxLayers], input_grad[kFusedMaxLayers], weight_grad[kFusedMaxLayers];
};

// Plans the shared memory and the products of a fused kernel of `threads` threads for layer
// widths `sizes` (each <= kFusedMaxWidth) and tiles of `rows` batch rows within limit_bytes:
// every layer's parameters resident, or else (when !need_resident) one layer's at a time;
// resident momentum and a second input buffer for the epoch kernel. False
// when it does not fit.
inline bool plan_fused_layout(const std::vector<std::size_t>& sizes, int rows, int threads, std::size_t element_bytes,
                              std::size_t limit_bytes, bool need_resident, bool momentum, bool two_inputs,
                              FusedLayout& out) {
    const int layers = static_cast<int>(sizes.size()) - 1;
    if (layers < 1 || layers > kFusedMaxLayers) return false;
    for (std::size_t width : sizes)
        if (width < 1 || width > static_cast<std::size_t>(kFusedMaxWidth)) return false;
    auto round4 = [](int n) { return (n + 3) / 4 * 4; };
    for (const bool resident : {true, false}) {
        if (!resident && (need_resident || momentum)) break;
        FusedLayout s;
        s.rows = rows;
        s.threads = threads;
        s.ldh = rows + 4;
        s.layers = layers;
        while ((1 << s.loss_lanes_log2) < std::min(static_cast<int>(sizes[layers]), 32) ||
               (1 << s.loss_lanes_log2) * rows < 32)
            ++s.loss_lanes_log2;
        int offset = 0;
        for (int l = 0; l <= layers; ++l) {
            s.sizes[l] = static_cast<int>(sizes[l]);
            s.padded[l] = round4(s.sizes[l]);
            s.act[l] = offset;
            offset += s.padded[l] * s.ldh;
        }
        if (two_inputs) {
            s.input2 = offset;
            offset += s.padded[0] * s.ldh;
        }
        for (int l = 1; l < layers; ++l) {
            s.der[l] = offset;
            offset += s.padded[l] * s.ldh;
        }
        const int params_begin = offset;
        int slot = 0;
        for (int l = 0; l < layers; ++l) {
            const int p_out = s.padded[l + 1];
            s.ldw[l] = p_out / 4 % 2 == 1 ? p_out : p_out + 4;  // an odd multiple of 4
            const int w_base = resident ? offset : params_begin;
            s.w[l] = w_base;
            s.b[l] = w_base + s.padded[l] * s.ldw[l];
            const int need = s.padded[l] * s.ldw[l] + p_out;
            if (resident) {
                offset += need;
            } else {
                slot = std::max(slot, need);
            }
        }
        s.staged = !resident;
        offset += slot;
        if (momentum) {
            s.momentum_delta = offset - params_begin;
            offset += offset - params_begin;
        }
        s.scratch = offset;
        // The larger scratch first, each with a second one where both fit.
        struct ScratchChoice {
            int elems;
            bool pair;
        };
        for (const ScratchChoice c : {ScratchChoice{threads * 16, true}, ScratchChoice{threads * 16, false},
                                      ScratchChoice{threads * 4, true}, ScratchChoice{threads * 4, false}}) {
            const int scratch = c.elems;
            s.scratch_elems = scratch;
            s.scratch2 = c.pair ? offset + scratch : -1;
            s.total = offset + (c.pair ? 2 : 1) * scratch;
            if (static_cast<std::size_t>(s.total) * element_bytes <= limit_bytes) {
                for (int l = 0; l < layers; ++l) {
                    const int p_in = s.padded[l], p_out = s.padded[l + 1];
                    s.forward[l] = plan_product(p_out, rows, p_in, threads, scratch);
                    s.input_grad[l] = plan_product(p_in, rows, p_out, threads, scratch);
                    s.weight_grad[l] = plan_product(p_in, p_out, rows, threads, scratch);
                }
                out = s;
                return true;
            }
        }
    }
    return false;
}

// Where a completed gradient goes.
enum FusedSink : int {
    kSinkPartial,   // this block's partial sums, for fused_reduce_kernel
    kSinkGradient,  // the gradient itself (loss_and_grad, one tile)
    kSinkUpdate,    // the SGD update, from the shared copy and global momentum into the out buffers
    kSinkResident,  // the SGD update of the resident parameters and momentum, in shared memory
};

// Elements between two blocks' partial sums: the parameters rounded up to 16 bytes' worth, so
// that every block's partial sums start on a 16-byte boundary and go out as whole vectors.
inline long long fused_partial_stride(long long param_count) { return (param_count + 3) / 4 * 4; }

template <class T>
struct FusedArgs {
    FusedLayout s;
    long long w_off[kFusedMaxLayers] = {}, b_off[kFusedMaxLayers] = {};  // in the flat parameters
    long long partial_stride = 0;  // fused_partial_stride(parameters)
    int act = kIdentity, loss = kCrossEntropy;
    const T* x = nullptr;
    const int* rows = nullptr;  // batch row -> training sample (null: identity)
    int batch_rows = 0;
    const int* labels = nullptr;
    const T* values = nullptr;
    const T* params = nullptr;  // the flat parameters this step reads
    T* partial = nullptr;       // per block: its partial gradient sums, partial_stride apart
    double* partial_loss = nullptr;
    SgdUpdate<T> update;
    StepControl control;
};

// Layer l's W and b from the flat parameters src into their shared slot (+ delta), zero-padded;
// with asynchronous copies when `async` (then async_copy_wait_all and a barrier before use).
// A warp per row of W: no division per element, and the warp's loads are contiguous.
template <int kThreads, class T>
__device__ void fused_copy_layer(const FusedArgs<T>& f, T* sm, int l, const T* src, int delta, bool async) {
    const FusedLayout& s = f.s;
    const int n_in = s.sizes[l], n_out = s.sizes[l + 1], p_in = s.padded[l], p_out = s.padded[l + 1];
    const int ldw = s.ldw[l];
    T* W = sm + s.w[l] + delta;
    T* bias = sm + s.b[l] + delta;
    const T* gw = src + f.w_off[l];
    const T* gb = src + f.b_off[l];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    // Whole 16-byte vectors where every row starts on a 16-byte boundary in global memory (the
    // shared rows always do: their offsets and strides are multiples of 4 elements).
    constexpr int V = kVecWidth<T>;
    const int vectors = async && n_out % V == 0 && f.w_off[l] % V == 0 && f.b_off[l] % V == 0 &&
                                reinterpret_cast<std::uintptr_t>(src) % 16 == 0
                            ? n_out / V
                            : 0;
    for (int k = warp; k <= p_in; k += kThreads / 32) {
        // Row p_in is the bias.
        T* dst = k < p_in ? W + k * ldw : bias;
        const T* row = k < p_in ? gw + static_cast<long long>(k) * n_out : gb;
        const bool live = k < n_in || k == p_in;
        if (live)
            for (int v = lane; v < vectors; v += 32) async_copy_16(dst + v * V, row + v * V);
        for (int j = (live ? vectors * V : 0) + lane; j < p_out; j += 32) {
            if (live && j < n_out) {
                if (async) {
                    async_copy_element(dst + j, row + j);
                } else {
                    dst[j] = row[j];
                }
            } else {
                dst[j] = T(0);
            }
        }
    }
}

// The inverse of fused_copy_layer: layer l's W and b from their shared slot into the flat
// parameters dst, without the padding. How fused_mlp_kernel's gradients and partial sums
// leave it: whole 16-byte vectors where the rows allow, as in fused_copy_layer, not a store per
// parameter with its own index arithmetic. A warp per row.
template <int kThreads, class T>
__device__ void fused_store_layer(const FusedArgs<T>& f, const T* sm, int l, T* dst) {
    const FusedLayout& s = f.s;
    const int n_in = s.sizes[l], n_out = s.sizes[l + 1], ldw = s.ldw[l];
    const T* W = sm + s.w[l];
    const T* bias = sm + s.b[l];
    T* gw = dst + f.w_off[l];
    T* gb = dst + f.b_off[l];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    constexpr int V = kVecWidth<T>;
    const int vectors = n_out % V == 0 && f.w_off[l] % V == 0 && f.b_off[l] % V == 0 &&
                                reinterpret_cast<std::uintptr_t>(dst) % 16 == 0
                            ? n_out / V
                            : 0;
    for (int k = warp; k <= n_in; k += kThreads / 32) {
        // Row n_in is the bias.
        const T* src = k < n_in ? W + k * ldw : bias;
        T* row = k < n_in ? gw + static_cast<long long>(k) * n_out : gb;
        for (int v = lane; v < vectors; v += 32) copy_16(row + v * V, src + v * V);
        for (int j = vectors * V + lane; j < n_out; j += 32) row[j] = src[j];
    }
}

// The tile's inputs, feature-major: input[c][r] = x[sample[r]][c]; zero for padded features
// and for rows without a sample (sample < 0). Asynchronous copies when `async`. A warp per row.
template <int kThreads, class T>
__device__ void fused_gather_inputs(const FusedArgs<T>& f, T* input, const int* sample, bool async) {
    const FusedLayout& s = f.s;
    const int d = s.sizes[0], p0 = s.padded[0];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int r = warp; r < s.rows; r += kThreads / 32) {
        const int row = sample[r];
        const T* src = f.x + static_cast<long long>(row) * d;
        for (int c = lane; c < p0; c += 32) {
            T* dst = input + c * s.ldh + r;
            if (row >= 0 && c < d) {
                if (async) {
                    async_copy_element(dst, src + c);
                } else {
                    *dst = src[c];
                }
            } else {
                *dst = T(0);
            }
        }
    }
}

// Layer l forward: out = W^T input + b (feature-major), then f and f' for hidden layers. Rows
// past `valid` and padded features get h = f' = 0. The output layer and each activation have
// their own copy of the product, so that its epilogue does not branch per element.
template <int kThreads, class T>
__device__ void fused_forward_layer(const FusedArgs<T>& f, T* sm, int l, const T* input, int valid) {
    const FusedLayout& s = f.s;
    const int n_out = s.sizes[l + 1];
    const T* bias = sm + s.b[l];
    T* out = sm + s.act[l + 1];
    using Shape = ProductShape<false, false, false, false>;
    auto product = [&](auto&& epilogue) {
        block_product<Shape, kThreads>(s.forward[l], SharedOperand<T>{sm + s.w[l], s.ldw[l]},
                                       SharedOperand<T>{input, s.ldh}, sm + s.scratch, epilogue);
    };
    if (l + 1 == s.layers) {
        product([&](int m, int n0, int, const T(&v)[4]) {
            const T bm = bias[m];
            T h[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) h[q] = v[q] + bm;
            store4(out + m * s.ldh + n0, h);
        });
        return;
    }
    T* der = sm + s.der[l + 1];
    with_activation(f.act, [&](auto act) {
        product([&](int m, int n0, int, const T(&v)[4]) {
            const T bm = bias[m];
            T h[4], d[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const T z = v[q] + bm;
                const bool live = m < n_out && n0 + q < valid;
                h[q] = live ? dev_activate(act.value, z) : T(0);
                d[q] = live ? dev_activation_derivative(act.value, z, h[q]) : T(0);
            }
            store4(out + m * s.ldh + n0, h);
            store4(der + m * s.ldh + n0, d);
        });
    });
}

// The loss of the tile's logits, their gradient written over them (zero for rows past
// `valid`); returns the sum of the valid rows' losses on every thread. Contains a barrier.
// A group of 2^s.loss_lanes_log2 lanes per row, so that a tile's rows are mostly done in one
// pass. Every group takes a row of the tile (the shuffles need every lane), a row past `valid`
// too, whose results are then discarded. scale: fused_loss_scale of the batch.
//
// The grouping is planned on the host: worked out here by divisions and a loop, it cost every
// thread about 130 instructions per step, between the forward pass and the loss.
template <int kThreads, class T>
__device__ double fused_loss(const FusedArgs<T>& f, T* sm, T scale, int valid, const int* sample, const int* label,
                             double* row_loss) {
    const FusedLayout& s = f.s;
    const int k = s.sizes[s.layers];
    T* logits = sm + s.act[s.layers];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int shift = s.loss_lanes_log2, group = 1 << shift;
    const int member = lane & (group - 1);
    for (int first = warp * (32 >> shift); first < s.rows; first += kThreads >> shift) {
        const int r = first + (lane >> shift);
        T* z = logits + r;
        const bool live = r < valid;
        const T* y = f.loss == kCrossEntropy ? nullptr : f.values + static_cast<long long>(live ? sample[r] : 0) * k;
        const double value = row_loss_and_grad(f.loss, k, z, z, label[r], y, scale, member, s.ldh, group);
        if (!live)
            for (int j = member; j < k; j += group) z[j * s.ldh] = T(0);
        if (member == 0) row_loss[r] = live ? value : 0.0;
    }
    __syncthreads();
    return group_sum(lane < s.rows ? row_loss[lane] : 0.0);
}

// The factor of the logits' gradient for a batch of batch_rows rows (see row_loss_and_grad).
template <class T>
__device__ __forceinline__ T fused_loss_scale(const FusedArgs<T>& f, int batch_rows) {
    return T((f.loss == kMse ? 2.0 : 1.0) / loss_divisor(f.loss, batch_rows, f.s.sizes[f.s.layers]));
}

// The step a completed gradient belongs to: its learning rate and first-step flag, and for
// kSinkResident where the updates go.
template <class T>
struct FusedStep {
    StepControl control;
    T lr = 0;
    bool first = false;
    int* diverged = nullptr;  // the epoch kernel's shared flag
    // kSinkResident: where each update is also written through, as it is made (the step's
    // global buffers; momentum_out is not written without momentum).
    T* params_out = nullptr;
    T* momentum_out = nullptr;
};

// Where W[m][n] (or b[n]) of layer l is in the flat parameters.
template <class T>
__device__ __forceinline__ long long fused_param_index(const FusedArgs<T>& f, int l, bool is_weight, int m, int n) {
    return is_weight ? f.w_off[l] + static_cast<long long>(m) * f.s.sizes[l + 1] + n : f.b_off[l] + n;
}

// What a completed gradient g of one parameter does in fused_mlp_kernel (kSink, a FusedSink
// other than kSinkResident: fixed per kernel, so that no branch on it is left in the code that
// runs once per parameter). kSinkResident is resident_update, below.
template <int kSink, class T>
__device__ __forceinline__ void fused_sink(const FusedArgs<T>& f, T* sm, const FusedStep<T>& step, int l,
                                           bool is_weight, int m, int n, T g) {
    const FusedLayout& s = f.s;
    T* p = is_weight ? sm + s.w[l] + m * s.ldw[l] + n : sm + s.b[l] + n;
    const SgdUpdate<T>& u = f.update;
    if constexpr (kSink == kSinkPartial || kSink == kSinkGradient) {
        // Into the parameter's own shared slot, which no product of the step reads any more; the
        // kernel then writes the whole layer out (fused_store_layer).
        *p = g;
    } else {
        static_assert(kSink == kSinkUpdate, "a FusedSink of fused_mlp_kernel");
        const long long index = fused_param_index(f, l, is_weight, m, n);
        const T m_in = u.momentum != T(0) ? u.mom_in[index] : T(0);
        apply_gradient_to(u, step.control, index, g, is_weight, *p, m_in, step.lr, step.first);
    }
}

// kSinkResident: the SGD update of a resident parameter *p (its momentum at p + momentum_delta),
// written through to *out (and *momentum_out) at once, so that the stores go out among the
// step's arithmetic. Writing each completed layer out as vectors instead (its own loop after the
// layer's barrier, fused_store_layer) measured 8% slower on an H100: tiny, 1.518M against 1.646M
// samples/s, same run (2026-11-26). Momentum is a template flag, resolved once per layer, and
// the callers pass pointers, not indices: a parameter costs its update and little else.
//
// guard collects updated * 0 over the updates: it stays zero while every update is finite and
// is NaN from the first one that is not (one multiply-add per parameter, where a flag cost three
// instructions and a branch per parameter cost more).
template <bool kMomentum, class T>
__device__ __forceinline__ void resident_update(const SgdUpdate<T>& u, const FusedStep<T>& step, int momentum_delta,
                                                bool decay, T* p, T* out, T* momentum_out, T g, T& guard) {
    const T current = *p;
    if (decay) g = g + u.weight_decay * current;
    T direction = g;
    if constexpr (kMomentum) {
        T* mp = p + momentum_delta;
        const T b = step.first ? g : u.momentum * *mp + g;
        *mp = b;
        *momentum_out = b;
        direction = u.nesterov ? g + u.momentum * b : b;
    }
    const T updated = current - step.lr * direction;
    *p = updated;
    *out = updated;
    guard = updated * T(0) + guard;
}

// Layer l backward, given dz of its output: dz of its input (l > 0) written over der[l], then
// the weight and bias gradients into the sink. Contains barriers; ends with one, after waiting
// for this thread's asynchronous copies when `wait_async`.
//
// Where the layout has a second scratch and the weight gradient is split, both products sum
// their ranges before one barrier and add them up after it: two barriers per layer, not three
// or four. The weight gradient's sink overwrites W_l, which the input gradient reads; with one
// barrier it runs after it, else after the input gradient's own.
template <int kSink, int kThreads, bool kMomentum, class T>
__device__ void fused_backward_products(const FusedArgs<T>& f, T* sm, const FusedStep<T>& step, int l,
                                        const T* input, bool wait_async) {
    const FusedLayout& s = f.s;
    const T* dz = sm + (l + 1 == s.layers ? s.act[s.layers] : s.der[l + 1]);
    const int n_in = s.sizes[l], n_out = s.sizes[l + 1], ldw = s.ldw[l];
    const ProductPlan& input_plan = s.input_grad[l];
    const ProductPlan& weight_plan = s.weight_grad[l];
    const bool one_barrier = s.scratch2 >= 0 && weight_plan.splits > 1;
    using InputShape = ProductShape<true, false, false, false>;
    using WeightShape = ProductShape<true, true, true, true>;
    T* der = sm + s.der[l];
    auto input_out = [&](int m, int n0, int, const T(&v)[4]) {
        T* at = der + m * s.ldh + n0;
        T out[4];
        load4(at, out);
#pragma unroll
        for (int q = 0; q < 4; ++q) out[q] *= v[q];
        store4(at, out);
    };
    // kSinkResident: the layer's parameters in shared memory and where their updates go (the
    // other sinks have no such buffers).
    constexpr bool kResident = kSink == kSinkResident;
    T* const w_shared = sm + s.w[l];
    T* const b_shared = sm + s.b[l];
    T* const w_out = kResident ? step.params_out + f.w_off[l] : nullptr;
    T* const b_out = kResident ? step.params_out + f.b_off[l] : nullptr;
    T* const w_momentum_out = kResident && kMomentum ? step.momentum_out + f.w_off[l] : nullptr;
    T* const b_momentum_out = kResident && kMomentum ? step.momentum_out + f.b_off[l] : nullptr;
    const bool decay = f.update.weight_decay != T(0);
    T guard = 0;  // see resident_update
    auto weight_out = [&](int m, int n0, int n_step, const T(&v)[4]) {
        if (m >= n_in) return;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int n = n0 + q * n_step;
            if (n >= n_out) continue;
            if constexpr (kResident) {
                const int at = m * n_out + n;
                resident_update<kMomentum>(f.update, step, s.momentum_delta, decay, w_shared + m * ldw + n,
                                           w_out + at, kMomentum ? w_momentum_out + at : nullptr, v[q], guard);
            } else {
                fused_sink<kSink>(f, sm, step, l, true, m, n, v[q]);
            }
        }
    };
    const SharedOperand<T> w{sm + s.w[l], ldw}, dz_operand{dz, s.ldh}, input_operand{input, s.ldh};
    T* const weight_scratch = sm + (one_barrier ? s.scratch2 : s.scratch);
    if (l > 0) {
        block_product_partial<InputShape, kThreads>(input_plan, w, dz_operand, sm + s.scratch, input_out);
        if (!one_barrier) {
            if (input_plan.splits > 1) {
                __syncthreads();
                block_product_finish<InputShape, kThreads>(input_plan, sm + s.scratch, input_out);
            }
            __syncthreads();
        }
    }
    block_product_partial<WeightShape, kThreads>(weight_plan, input_operand, dz_operand, weight_scratch, weight_out);
    if (weight_plan.splits > 1) {
        __syncthreads();
        if (one_barrier && l > 0) block_product_finish<InputShape, kThreads>(input_plan, sm + s.scratch, input_out);
        block_product_finish<WeightShape, kThreads>(weight_plan, weight_scratch, weight_out);
    }
    for (int n = threadIdx.x; n < n_out; n += kThreads) {
        T sum = 0;
        for (int r = 0; r < s.rows; r += 4) {
            T v[4];
            load4(dz + n * s.ldh + r, v);
            sum += v[0];
            sum += v[1];
            sum += v[2];
            sum += v[3];
        }
        if constexpr (kResident) {
            resident_update<kMomentum>(f.update, step, s.momentum_delta, false, b_shared + n, b_out + n,
                                       kMomentum ? b_momentum_out + n : nullptr, sum, guard);
        } else {
            fused_sink<kSink>(f, sm, step, l, false, 0, n, sum);
        }
    }
    if (guard != T(0)) {  // NaN: an update was not finite
        *step.diverged = 1;
        mark_diverged(step.control);
    }
    if (wait_async) async_copy_wait_all();
    __syncthreads();
}

template <int kSink, int kThreads, class T>
__device__ void fused_backward_layer(const FusedArgs<T>& f, T* sm, const FusedStep<T>& step, int l, const T* input,
                                     bool wait_async = false) {
    if constexpr (kSink == kSinkResident) {
        if (f.update.momentum != T(0)) {
            fused_backward_products<kSink, kThreads, true>(f, sm, step, l, input, wait_async);
            return;
        }
    }
    fused_backward_products<kSink, kThreads, false>(f, sm, step, l, input, wait_async);
}

// One step on one batch tile of `rows` rows (blockIdx.x); kSink: kSinkPartial for a batch of
// several tiles, else kSinkGradient or kSinkUpdate.
template <int kSink, int kThreads, class T>
__device__ void fused_tile_step(const FusedArgs<T>& f) {
    if (step_kernel_skipped(f.control)) return;
    extern __shared__ __align__(16) unsigned char fused_smem[];
    T* sm = reinterpret_cast<T*>(fused_smem);
    __shared__ double row_loss[kFusedMaxRows];
    __shared__ int row_sample[kFusedMaxRows], row_label[kFusedMaxRows];
    const FusedLayout& s = f.s;
    const int r0 = blockIdx.x * s.rows;
    const int valid = min(s.rows, f.batch_rows - r0);
    if (const int r = static_cast<int>(threadIdx.x); r < s.rows) {
        const int sample = r >= valid ? -1 : f.rows != nullptr ? f.rows[r0 + r] : r0 + r;
        row_sample[r] = sample;
        row_label[r] = f.loss == kCrossEntropy && sample >= 0 ? f.labels[sample] : 0;
    }
    // Every load of the step's parameters in flight at once, while the samples arrive.
    if (!s.staged)
        for (int l = 0; l < s.layers; ++l) fused_copy_layer<kThreads>(f, sm, l, f.params, 0, true);
    __syncthreads();
    fused_gather_inputs<kThreads>(f, sm + s.act[0], row_sample, true);
    async_copy_commit();
    async_copy_wait_all();
    __syncthreads();
    for (int l = 0; l < s.layers; ++l) {
        if (s.staged) {
            fused_copy_layer<kThreads>(f, sm, l, f.params, 0, true);
            async_copy_commit();
            async_copy_wait_all();
            __syncthreads();
        }
        fused_forward_layer<kThreads>(f, sm, l, sm + s.act[l], valid);
        __syncthreads();
    }
    const double total =
        fused_loss<kThreads>(f, sm, fused_loss_scale(f, f.batch_rows), valid, row_sample, row_label, row_loss);
    constexpr bool updates = kSink == kSinkUpdate;
    if (threadIdx.x == 0) {
        if constexpr (kSink == kSinkPartial) {
            f.partial_loss[blockIdx.x] = total;
        } else {
            const double value = total / loss_divisor(f.loss, f.batch_rows, s.sizes[s.layers]);
            f.control.step_loss[f.control.step] = value;
            if (!isfinite(value)) mark_diverged(f.control);
        }
    }
    if (updates && !isfinite(total)) return;  // the same value on every thread
    FusedStep<T> step;
    step.control = f.control;
    if (updates) {
        step.lr = T(f.control.lrs[f.control.step]);
        step.first = sgd_first_step(f.control);
    }
    for (int l = s.layers - 1; l >= 0; --l) {
        // The last layer's parameters are still in their slot from the forward pass.
        if (s.staged && l != s.layers - 1) {
            fused_copy_layer<kThreads>(f, sm, l, f.params, 0, true);
            async_copy_commit();
            async_copy_wait_all();
            __syncthreads();
        }
        fused_backward_layer<kSink, kThreads>(f, sm, step, l, sm + s.act[l]);
        if constexpr (kSink == kSinkPartial || kSink == kSinkGradient) {
            T* out = kSink == kSinkPartial ? f.partial + blockIdx.x * f.partial_stride : f.update.grad_out;
            fused_store_layer<kThreads>(f, sm, l, out);
            if (s.staged) __syncthreads();  // read before the next layer's parameters replace it
        }
    }
}

template <class T, int kSink, int kThreads>
__global__ void __launch_bounds__(kThreads, 1) fused_mlp_kernel(const FusedArgs<T> f) {
    fused_tile_step<kSink, kThreads>(f);
}

// A whole epoch whose every batch fits one tile (batch_size <= rows), run by one block.
// Step s reads the state that step s - 1 left in shared memory and writes its updates through
// to params[(s + 1) % 2] and momentum[(s + 1) % 2], as the per-step launches would.
template <class T>
struct FusedEpoch {
    int steps = 0, batch_size = 0, order_length = 0;
    const int* order = nullptr;
    T* params[2] = {};
    T* momentum[2] = {};
};

// The samples, labels and row losses of an epoch kernel's tile (fused_epoch_kernel's, and each
// block's of fused_cluster_epoch_kernel), in static shared memory; [step parity][row].
struct FusedEpochRows {
    double loss[kFusedMaxRows];
    int sample[2][kFusedMaxRows], label[2][kFusedMaxRows];
};

// The training sample of row t of a block's tile, rows [first_row, first_row + s.rows) of step
// `step`'s batch; -1 past the batch's end, past the tile's rows and past the epoch's last step.
template <class T>
__device__ __forceinline__ int fused_epoch_sample(const FusedArgs<T>& f, const FusedEpoch<T>& e, int step,
                                                  int first_row, int t) {
    const int start = step * e.batch_size;
    const int batch_rows = min(e.batch_size, e.order_length - start);
    return step < e.steps && t < f.s.rows && first_row + t < batch_rows ? e.order[start + first_row + t] : -1;
}

template <class T>
__device__ __forceinline__ int fused_epoch_label(const FusedArgs<T>& f, int sample) {
    return f.loss == kCrossEntropy && sample >= 0 ? f.labels[sample] : 0;
}

// Before an epoch kernel's first step: the first batch's samples, labels and inputs of a block's
// tile starting at row first_row. Ends with a barrier.
template <int kThreads, class T>
__device__ __forceinline__ void fused_epoch_first_rows(const FusedArgs<T>& f, T* sm, const FusedEpoch<T>& e, int first_row,
                                       FusedEpochRows& rows) {
    const int t = threadIdx.x;
    if (t < f.s.rows) {
        const int sample = fused_epoch_sample(f, e, 0, first_row, t);
        rows.sample[0][t] = sample;
        rows.label[0][t] = fused_epoch_label(f, sample);
    }
    __syncthreads();
    fused_gather_inputs<kThreads>(f, sm + f.s.act[0], rows.sample[0], true);
    async_copy_commit();
    async_copy_wait_all();
    __syncthreads();
}

// An epoch kernel's step `step` on a block's tile (`valid` rows from row first_row of a batch of
// batch_rows) up to its loss: the forward pass from `input` and fused_loss, while the next
// step's samples (into rows.sample, read after fused_loss's barrier) and labels (next_label, for
// the caller to store) are read. Returns the tile's summed row losses on every thread.
template <int kThreads, class T>
__device__ __forceinline__ double fused_epoch_forward_and_loss(const FusedArgs<T>& f, T* sm, const FusedEpoch<T>& e, int step,
                                               int first_row, int batch_rows, int valid, T whole_batch_scale,
                                               const T* input, FusedEpochRows& rows, int& next_label) {
    const FusedLayout& s = f.s;
    const int t = threadIdx.x, cur = step & 1;
    // Requested now, needed only after the forward pass.
    const int next_sample = fused_epoch_sample(f, e, step + 1, first_row, t);
    for (int l = 0; l < s.layers; ++l) {
        fused_forward_layer<kThreads>(f, sm, l, l == 0 ? input : sm + s.act[l], valid);
        __syncthreads();
    }
    if (t < s.rows) rows.sample[cur ^ 1][t] = next_sample;
    next_label = fused_epoch_label(f, next_sample);
    // Every batch but perhaps the last is whole.
    const T scale = batch_rows == e.batch_size ? whole_batch_scale : fused_loss_scale(f, batch_rows);
    return fused_loss<kThreads>(f, sm, scale, valid, rows.sample[cur], rows.label[cur], rows.loss);
}

template <class T, int kThreads>
__global__ void __launch_bounds__(kThreads, 1) fused_epoch_kernel(const FusedArgs<T> f, const FusedEpoch<T> e) {
    extern __shared__ __align__(16) unsigned char fused_smem[];
    T* sm = reinterpret_cast<T*>(fused_smem);
    __shared__ FusedEpochRows rows;
    __shared__ int diverged;
    const FusedLayout& s = f.s;
    const int t = threadIdx.x;
    const bool momentum = f.update.momentum != T(0);
    for (int l = 0; l < s.layers; ++l) {
        fused_copy_layer<kThreads>(f, sm, l, e.params[0], 0, true);
        if (momentum) fused_copy_layer<kThreads>(f, sm, l, e.momentum[0], s.momentum_delta, true);
    }
    const bool started = *f.control.started != 0;
    if (t == 0) diverged = 0;
    fused_epoch_first_rows<kThreads>(f, sm, e, 0, rows);

    const T whole_batch_scale = fused_loss_scale(f, e.batch_size);
    for (int step_index = 0; step_index < e.steps; ++step_index) {
        const int cur = step_index & 1;
        const int valid = min(e.batch_size, e.order_length - step_index * e.batch_size);
        FusedStep<T> step;
        step.control = f.control;
        step.control.step = step_index;
        step.lr = T(f.control.lrs[step_index]);
        step.first = step_index == 0 && !started;
        step.diverged = &diverged;
        step.params_out = e.params[cur ^ 1];
        step.momentum_out = e.momentum[cur ^ 1];
        T* input = sm + (cur == 0 ? s.act[0] : s.input2);
        T* next_input = sm + (cur == 0 ? s.input2 : s.act[0]);

        int next_label = 0;
        const double total = fused_epoch_forward_and_loss<kThreads>(f, sm, e, step_index, 0, valid, valid,
                                                                    whole_batch_scale, input, rows, next_label);
        if (t == 0) {
            const double value = total / loss_divisor(f.loss, valid, s.sizes[s.layers]);
            f.control.step_loss[step_index] = value;
            if (!isfinite(value)) mark_diverged(step.control);
        }
        if (!isfinite(total)) break;  // the same value on every thread
        // fused_loss's barrier made the next samples visible: gather their inputs meanwhile.
        if (step_index + 1 < e.steps) fused_gather_inputs<kThreads>(f, next_input, rows.sample[cur ^ 1], true);
        async_copy_commit();
        if (t < s.rows) rows.label[cur ^ 1][t] = next_label;
        // The last layer's barrier also makes the next inputs and labels visible.
        for (int l = s.layers - 1; l >= 0; --l)
            fused_backward_layer<kSinkResident, kThreads>(f, sm, step, l, l == 0 ? input : sm + s.act[l], l == 0);
        if (diverged) break;
    }
}

template <class T>
struct ReduceArgs {
    const T* partial = nullptr;
    long long partial_stride = 0;
    int blocks = 0;
    long long param_count = 0, weight_count = 0;  // weights first, then biases
    const double* partial_loss = nullptr;
    double loss_divisor = 1;
    SgdUpdate<T> update;
    StepControl control;
};

// Sums the blocks' partial gradients and applies them; block 0 also sums the blocks' losses into
// the step's loss. A block takes kReduceLanes 16-byte vectors of parameters, and each of its
// kReduceGroups warps adds its own contiguous range of the partial sums' blocks, in block order;
// then one thread per parameter adds the warps' sums in warp order and applies the update: a
// fixed order, bit-identical from run to run. Why not one thread per parameter over every
// block: narrow's 17k parameters made 68 blocks of threads that each waited on 8 rounds of 16
// loads (12.5 us per step under ncu); here its 128 blocks' sums are 136 blocks of threads with
// one round of 16 vector loads each, and every update's loads are in flight at once (3.6 us per
// step in an H100 timeline, 2026-11-26).
constexpr int kReduceLanes = 32;
constexpr int kReduceGroups = kReduceThreads / kReduceLanes;
// The parameters one block of fused_reduce_kernel takes.
template <class T>
constexpr int kReduceParams = kReduceLanes * kVecWidth<T>;

template <class T>
__global__ void __launch_bounds__(kReduceThreads) fused_reduce_kernel(const ReduceArgs<T> a) {
    if (step_kernel_skipped(a.control)) return;
    if (blockIdx.x == 0) reduce_step_loss(a.partial_loss, a.blocks, a.loss_divisor, a.control);
    constexpr int V = kVecWidth<T>;
    constexpr int kParams = kReduceParams<T>;
    static_assert(kParams <= kReduceThreads, "a thread per parameter of the block");
    __shared__ Vec16<T> group_sums[kReduceGroups][kReduceLanes];
    const int lane = static_cast<int>(threadIdx.x) % kReduceLanes, group = static_cast<int>(threadIdx.x) / kReduceLanes;
    const long long block_first = static_cast<long long>(blockIdx.x) * kParams;
    // The vector's first parameter; the vector stays inside the block's partial_stride (a
    // multiple of 4 elements), past param_count only into the padding, whose sums are unused.
    const long long first = block_first + lane * V;
    const int per_group = (a.blocks + kReduceGroups - 1) / kReduceGroups;
    const int begin = min(a.blocks, group * per_group), end = min(a.blocks, begin + per_group);
    Vec16<T> sum{};
    if (first < a.param_count) {
        constexpr int kBatch = 16;  // loads in flight at once
        for (int b0 = begin; b0 < end; b0 += kBatch) {
            Vec16<T> part[kBatch];
#pragma unroll
            for (int j = 0; j < kBatch; ++j)
                if (b0 + j < end) part[j] = load_vec(a.partial + static_cast<long long>(b0 + j) * a.partial_stride + first);
#pragma unroll
            for (int j = 0; j < kBatch; ++j)
                if (b0 + j < end)
#pragma unroll
                    for (int q = 0; q < V; ++q) sum.v[q] += part[j].v[q];
        }
    }
    group_sums[group][lane] = sum;
    __syncthreads();
    const int e = static_cast<int>(threadIdx.x);  // this thread's parameter in the block
    const long long p = block_first + e;
    if (e >= kParams || p >= a.param_count) return;
    T g = group_sums[0][e / V].v[e % V];
    for (int k = 1; k < kReduceGroups; ++k) g += group_sums[k][e / V].v[e % V];
    apply_gradient(a.update, a.control, p, g, p < a.weight_count);
}

// The grid of fused_reduce_kernel for param_count parameters.
template <class T>
int fused_reduce_blocks(long long param_count) {
    return static_cast<int>((param_count + kReduceParams<T> - 1) / kReduceParams<T>);
}

}  // namespace fusedmlp::cuda
