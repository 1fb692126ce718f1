// The fully fused kernel for narrow networks (every width <= 128): one block takes a tile of
// kFusedRows batch rows through every layer forward, the loss, and every layer backward, its
// activations, derivatives and gradients kept in shared memory the whole time. The weight
// gradient sums over the whole batch, across blocks: each block writes its partial sums, and
// a second kernel adds the blocks' partials in block order (deterministic, no atomics), then
// applies the SGD update to each parameter and sums the blocks' losses. A batch that fits one
// tile (batch_size <= kFusedRows) runs as this one kernel alone, applying its own updates, and
// a whole epoch of such batches as one launch of fused_epoch_kernel.
//
// A block is alone on its SM or nearly so (8 warps): a global load in an inner loop stalls the
// whole block for its full latency. Where shared memory allows, each layer's weights and bias
// are therefore copied into shared memory first (all loads of the copy in flight at once), and
// the products read them from there; otherwise (no room) they read global memory.
#pragma once

#include <cuda_runtime.h>

#include "activation.cuh"
#include "loss.cuh"
#include "sgd.cuh"

namespace fusedmlp::cuda {

constexpr int kFusedMaxLayers = 16;
constexpr int kFusedMaxWidth = 128;
constexpr int kFusedRows = 32;
constexpr int kFusedThreads = 256;

template <class T>
struct FusedArgs {
    int layers = 0;
    int sizes[kFusedMaxLayers + 1] = {};
    int ld[kFusedMaxLayers + 1] = {};       // shared-memory row strides (odd: no bank conflicts)
    int act_off[kFusedMaxLayers + 1] = {};  // shared-memory offsets of each layer's rows (0: input)
    int der_off[kFusedMaxLayers + 1] = {};  // and of f' for the hidden layers 1 .. layers - 1
    int stage_off = -1;  // shared-memory offset of one layer's copied W and b; -1: none, read global
    long long w_off[kFusedMaxLayers] = {}, b_off[kFusedMaxLayers] = {};
    long long param_count = 0;
    int act = kIdentity, loss = kCrossEntropy;
    const T* x = nullptr;
    const int* rows = nullptr;  // batch row -> training sample (null: identity)
    int batch_rows = 0;
    const int* labels = nullptr;
    const T* values = nullptr;
    const T* params = nullptr;  // the flat parameters this step reads
    T* partial = nullptr;       // per block: param_count partial gradient sums
    double* partial_loss = nullptr;
    // A batch of one tile needs no second kernel: the block applies its gradients itself.
    bool direct = false;
    SgdUpdate<T> update;
    StepControl control;
};

// out (kFusedRows x n_out) = in (kFusedRows x n_in) W + b, then f and f' for hidden layers.
// Thread (tr, tc) computes rows tr + 8a and columns tc + 32c: the warp shares its rows.
template <class T>
__device__ void fused_dense_forward(const FusedArgs<T>& f, T* sm, int l, const T* W, const T* bias) {
    const int n_in = f.sizes[l], n_out = f.sizes[l + 1];
    const T* in = sm + f.act_off[l];
    T* out = sm + f.act_off[l + 1];
    const int ld_in = f.ld[l], ld_out = f.ld[l + 1];
    const int tc = threadIdx.x % 32, tr = threadIdx.x / 32;
    T acc[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[a][c] = T(0);
#pragma unroll 4
    for (int k = 0; k < n_in; ++k) {
        T w[4], v[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int j = tc + 32 * c;
            w[c] = j < n_out ? W[static_cast<long long>(k) * n_out + j] : T(0);
        }
#pragma unroll
        for (int a = 0; a < 4; ++a) v[a] = in[(tr + 8 * a) * ld_in + k];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[a][c] += v[a] * w[c];
    }
    const bool hidden = l + 1 < f.layers;
    T* der = hidden ? sm + f.der_off[l + 1] : nullptr;
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        const int r = tr + 8 * a;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int j = tc + 32 * c;
            if (j >= n_out) continue;
            const T z = acc[a][c] + bias[j];
            if (hidden) {
                const T h = dev_activate(f.act, z);
                out[r * ld_out + j] = h;
                der[r * ld_out + j] = dev_activation_derivative(f.act, z, h);
            } else {
                out[r * ld_out + j] = z;
            }
        }
    }
}

// dz_prev (rows x n_in) = (dz W^T) * f', written over layer l's input rows.
template <class T>
__device__ void fused_input_grad(const FusedArgs<T>& f, T* sm, int l, const T* W) {
    const int n_in = f.sizes[l], n_out = f.sizes[l + 1];
    const T* dz = sm + f.act_off[l + 1];
    T* out = sm + f.act_off[l];
    const T* der = sm + f.der_off[l];
    const int ld_in = f.ld[l], ld_out = f.ld[l + 1];
    const int tc = threadIdx.x % 32, tr = threadIdx.x / 32;
    T acc[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[a][c] = T(0);
#pragma unroll 4
    for (int j = 0; j < n_out; ++j) {
        T w[4], v[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int k = tc + 32 * c;
            w[c] = k < n_in ? W[static_cast<long long>(k) * n_out + j] : T(0);
        }
#pragma unroll
        for (int a = 0; a < 4; ++a) v[a] = dz[(tr + 8 * a) * ld_out + j];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[a][c] += v[a] * w[c];
    }
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        const int r = tr + 8 * a;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int k = tc + 32 * c;
            if (k < n_in) out[r * ld_in + k] = acc[a][c] * der[r * ld_in + k];
        }
    }
}

// This block's partial dW = in^T dz over its valid rows, and db = the column sums of dz.
// Thread (tk, tj) computes features tk + 16a and outputs tj + 16c.
// W and bias: layer l's parameters as this step read them (the shared copy, or global memory).
template <class T>
__device__ void fused_weight_grad(const FusedArgs<T>& f, const T* sm, int l, int valid, const T* W, const T* bias) {
    const int n_in = f.sizes[l], n_out = f.sizes[l + 1];
    const T* in = sm + f.act_off[l];
    const T* dz = sm + f.act_off[l + 1];
    const int ld_in = f.ld[l], ld_out = f.ld[l + 1];
    T* partial = f.partial + static_cast<long long>(blockIdx.x) * f.param_count;
    const int tj = threadIdx.x % 16, tk = threadIdx.x / 16;
    T acc[8][8];
#pragma unroll
    for (int a = 0; a < 8; ++a)
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[a][c] = T(0);
    for (int r = 0; r < valid; ++r) {
        T v[8], d[8];
#pragma unroll
        for (int a = 0; a < 8; ++a) {
            const int k = tk + 16 * a;
            v[a] = k < n_in ? in[r * ld_in + k] : T(0);
        }
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int j = tj + 16 * c;
            d[c] = j < n_out ? dz[r * ld_out + j] : T(0);
        }
#pragma unroll
        for (int a = 0; a < 8; ++a)
#pragma unroll
            for (int c = 0; c < 8; ++c) acc[a][c] += v[a] * d[c];
    }
    const bool update = f.direct && f.update.grad_out == nullptr;
    const T lr = update ? T(f.control.lrs[f.control.step]) : T(0);
    const bool first = update && sgd_first_step(f.control);
#pragma unroll
    for (int a = 0; a < 8; ++a) {
        const int k = tk + 16 * a;
        if (k >= n_in) continue;
        if (update) {
            // The row's momentum loads first, all in flight together, then its updates.
            T m_in[8];
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                const int j = tj + 16 * c;
                m_in[c] = j < n_out ? f.update.mom_in[f.w_off[l] + static_cast<long long>(k) * n_out + j] : T(0);
            }
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                const int j = tj + 16 * c;
                if (j >= n_out) continue;
                const int local = k * n_out + j;
                apply_gradient_to(f.update, f.control, f.w_off[l] + local, acc[a][c], true, W[local], m_in[c], lr,
                                  first);
            }
            continue;
        }
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int j = tj + 16 * c;
            if (j >= n_out) continue;
            const long long index = f.w_off[l] + static_cast<long long>(k) * n_out + j;
            if (f.direct) {
                apply_gradient(f.update, f.control, index, acc[a][c], true);
            } else {
                partial[index] = acc[a][c];
            }
        }
    }
    for (int j = threadIdx.x; j < n_out; j += blockDim.x) {
        T s = 0;
        for (int r = 0; r < valid; ++r) s += dz[r * ld_out + j];
        if (update) {
            const long long index = f.b_off[l] + j;
            apply_gradient_to(f.update, f.control, index, s, false, bias[j], f.update.mom_in[index], lr, first);
        } else if (f.direct) {
            apply_gradient(f.update, f.control, f.b_off[l] + j, s, false);
        } else {
            partial[f.b_off[l] + j] = s;
        }
    }
}

// Layer l's W (n_in x n_out) and bias as this step reads them: copied into shared memory when
// the layout has room (the caller synchronises before the copy is read, and before a reader of
// the previous copy could see it overwritten), else read in place.
template <class T>
__device__ void fused_layer_params(const FusedArgs<T>& f, T* sm, int l, const T*& W, const T*& bias) {
    const T* gw = f.params + f.w_off[l];
    const T* gb = f.params + f.b_off[l];
    if (f.stage_off < 0) {
        W = gw;
        bias = gb;
        return;
    }
    const int wn = f.sizes[l] * f.sizes[l + 1], bn = f.sizes[l + 1];
    T* sw = sm + f.stage_off;
#pragma unroll 4
    for (int e = threadIdx.x; e < wn; e += kFusedThreads) sw[e] = gw[e];
    for (int e = threadIdx.x; e < bn; e += kFusedThreads) sw[wn + e] = gb[e];
    W = sw;
    bias = sw + wn;
}

// One step on one batch tile of kFusedRows rows (blockIdx.x); ends with a __syncthreads.
template <class T>
__device__ void fused_tile_step(const FusedArgs<T>& f) {
    if (step_skipped(f.control)) return;
    extern __shared__ __align__(16) unsigned char fused_smem[];
    T* sm = reinterpret_cast<T*>(fused_smem);
    __shared__ double row_loss[kFusedRows];
    // The tile's samples and labels, looked up once (each a dependent global load).
    __shared__ int row_sample[kFusedRows], row_label[kFusedRows];
    const int r0 = blockIdx.x * kFusedRows;
    const int valid = min(kFusedRows, f.batch_rows - r0);
    if (const int r = static_cast<int>(threadIdx.x); r < valid) {
        const int sample = f.rows != nullptr ? f.rows[r0 + r] : r0 + r;
        row_sample[r] = sample;
        row_label[r] = f.loss == kCrossEntropy ? f.labels[sample] : 0;
    }
    __syncthreads();

    const int d = f.sizes[0];
#pragma unroll 4
    for (int e = threadIdx.x; e < kFusedRows * d; e += blockDim.x) {
        const int r = e / d, c = e % d;
        T v = T(0);
        if (r < valid) v = f.x[static_cast<long long>(row_sample[r]) * d + c];
        sm[f.act_off[0] + r * f.ld[0] + c] = v;
    }
    __syncthreads();
    const T* W = nullptr;
    const T* bias = nullptr;
    for (int l = 0; l < f.layers; ++l) {
        fused_layer_params(f, sm, l, W, bias);
        __syncthreads();
        fused_dense_forward(f, sm, l, W, bias);
        __syncthreads();
    }

    // Loss rows: one warp per row; rows past the batch get dz = 0.
    const int k = f.sizes[f.layers];
    T* logits = sm + f.act_off[f.layers];
    const int ld_k = f.ld[f.layers];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const T scale = T((f.loss == kMse ? 2.0 : 1.0) / loss_divisor(f.loss, f.batch_rows, k));
    for (int r = warp; r < kFusedRows; r += kFusedThreads / 32) {
        T* row = logits + r * ld_k;
        if (r < valid) {
            const long long sample = row_sample[r];
            const int label = row_label[r];
            const T* y = f.loss == kCrossEntropy ? nullptr : f.values + sample * k;
            const double value = row_loss_and_grad(f.loss, k, row, row, label, y, scale, lane);
            if (lane == 0) row_loss[r] = value;
        } else {
            for (int j = lane; j < k; j += 32) row[j] = T(0);
            if (lane == 0) row_loss[r] = 0;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0;
        for (int r = 0; r < valid; ++r) s += row_loss[r];
        if (f.direct) {
            const double value = s / loss_divisor(f.loss, f.batch_rows, k);
            f.control.step_loss[f.control.step] = value;
            if (!isfinite(value)) mark_diverged(f.control);
        } else {
            f.partial_loss[blockIdx.x] = s;
        }
    }

    for (int l = f.layers - 1; l >= 0; --l) {
        // The last layer's parameters are still in place from the forward pass.
        if (l != f.layers - 1) {
            fused_layer_params(f, sm, l, W, bias);
            __syncthreads();
        }
        fused_weight_grad(f, sm, l, valid, W, bias);
        __syncthreads();
        if (l > 0) {
            fused_input_grad(f, sm, l, W);
            __syncthreads();
        }
    }
}

template <class T>
__global__ void __launch_bounds__(kFusedThreads) fused_mlp_kernel(const FusedArgs<T> f) {
    fused_tile_step(f);
}

// A whole epoch whose every batch fits one tile (batch_size <= kFusedRows), run by one block,
// step after step: one launch instead of one per step. Step s reads params[s % 2] and
// momentum[s % 2] and writes the other buffers, as the per-step launches do; the block's
// __syncthreads between steps makes one step's writes visible to the next.
template <class T>
struct FusedEpoch {
    int steps = 0, batch_size = 0, order_length = 0;
    const int* order = nullptr;
    T* params[2] = {};
    T* momentum[2] = {};
};

template <class T>
__global__ void __launch_bounds__(kFusedThreads) fused_epoch_kernel(const FusedArgs<T> base, const FusedEpoch<T> e) {
    for (int s = 0; s < e.steps; ++s) {
        FusedArgs<T> f = base;
        const int in = s % 2, start = s * e.batch_size;
        f.rows = e.order + start;
        f.batch_rows = min(e.batch_size, e.order_length - start);
        f.params = e.params[in];
        f.update.param_in = e.params[in];
        f.update.param_out = e.params[in ^ 1];
        f.update.mom_in = e.momentum[in];
        f.update.mom_out = e.momentum[in ^ 1];
        f.control.step = s;
        fused_tile_step(f);
        __syncthreads();
    }
}

template <class T>
struct ReduceArgs {
    const T* partial = nullptr;
    int blocks = 0;
    long long param_count = 0, weight_count = 0;  // weights first, then biases
    const double* partial_loss = nullptr;
    double loss_divisor = 1;
    SgdUpdate<T> update;
    StepControl control;
};

// Sums the blocks' partial gradients in block order and applies them; block 0 also sums the
// blocks' losses into the step's loss.
template <class T>
__global__ void __launch_bounds__(kReduceThreads) fused_reduce_kernel(const ReduceArgs<T> a) {
    if (step_skipped(a.control)) return;
    if (blockIdx.x == 0) reduce_step_loss(a.partial_loss, a.blocks, a.loss_divisor, a.control);
    const long long p = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (p >= a.param_count) return;
    T g = 0;
    // Unrolled so that several blocks' loads are in flight at once; still summed in block order.
#pragma unroll 8
    for (int b = 0; b < a.blocks; ++b) g += a.partial[static_cast<long long>(b) * a.param_count + p];
    apply_gradient(a.update, a.control, p, g, p < a.weight_count);
}

}  // namespace fusedmlp::cuda
