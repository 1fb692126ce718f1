// Losses on the logits, value and gradient in one pass: one warp per row, its lanes reduced by
// a fixed butterfly, and the rows' losses summed in a fixed order by a second, one-block
// kernel, so the step's loss is bit-identical from run to run. The formulas follow loss.cpp.
#pragma once

#include <cuda_runtime.h>

#include "activation.cuh"
#include "sgd.cuh"

namespace fusedmlp::cuda {

// Same order as fusedmlp::Loss.
enum LossCode : int { kMse, kBce, kCrossEntropy };

// Sums (maxima) over aligned groups of `group` lanes (a power of two <= 32), every lane of the
// warp taking part; each lane gets its group's result.
template <class V>
__device__ __forceinline__ V group_sum(V v, int group = 32) {
    for (int offset = group / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

template <class V>
__device__ __forceinline__ V group_max(V v, int group = 32) {
    for (int offset = group / 2; offset > 0; offset >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// One row of k logits z -> dz (may alias z), called by a group of `group` lanes (lane: the
// index in the group; every lane of the warp calls it, for its own group's row); returns the
// row's unscaled loss (the sum of its terms) on every lane of the group. scale: 2/(n k) mse,
// 1/(n k) bce, 1/n ce. stride: the distance between the row's logits (the fused kernels keep
// them feature-major).
template <class T>
__device__ double row_loss_and_grad(int loss, int k, const T* z, T* dz, int label, const T* y, T scale, int lane,
                                    int stride = 1, int group = 32) {
    double total = 0;
    if (loss == kMse) {
        for (int j = lane; j < k; j += group) {
            const T diff = z[j * stride] - y[j];
            total += static_cast<double>(diff * diff);
            dz[j * stride] = diff * scale;
        }
        return group_sum(total, group);
    }
    if (loss == kBce) {
        for (int j = lane; j < k; j += group) {
            const T zj = z[j * stride];
            const T term = fmax(zj, T(0)) - zj * y[j] + dev_log1p(dev_exp(-fabs(zj)));
            total += static_cast<double>(term);
            dz[j * stride] = (dev_sigmoid(zj) - y[j]) * scale;
        }
        return group_sum(total, group);
    }
    T m = -INFINITY;
    for (int j = lane; j < k; j += group) m = fmax(m, z[j * stride]);
    m = group_max(m, group);
    T s = 0;
    for (int j = lane; j < k; j += group) s += dev_exp(z[j * stride] - m);
    s = group_sum(s, group);
    const T z_label = z[label * stride];
    __syncwarp();
    for (int j = lane; j < k; j += group) {
        const T p = dev_exp(z[j * stride] - m) / s;
        dz[j * stride] = (j == label ? p - T(1) : p) * scale;
    }
    __syncwarp();
    return static_cast<double>(m + dev_log(s) - z_label);
}

// The loss's scale of dz and divisor of the summed row losses for n rows of k outputs.
__host__ __device__ inline double loss_divisor(int loss, int n, int k) {
    return loss == kCrossEntropy ? static_cast<double>(n) : static_cast<double>(n) * k;
}

// Sums count partial losses in a fixed order on one block of kReduceThreads threads, writes
// total / divisor to control.step_loss[control.step] and flags the step if it is not finite.
constexpr int kReduceThreads = 256;

__device__ inline void reduce_step_loss(const double* partial, int count, double divisor, const StepControl& c) {
    __shared__ double sums[kReduceThreads];
    double s = 0;
    for (int i = threadIdx.x; i < count; i += kReduceThreads) s += partial[i];
    sums[threadIdx.x] = s;
    __syncthreads();
    for (int width = kReduceThreads / 2; width > 0; width >>= 1) {
        if (threadIdx.x < width) sums[threadIdx.x] += sums[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const double value = sums[0] / divisor;
        c.step_loss[c.step] = value;
        if (!isfinite(value)) mark_diverged(c);
    }
}

template <class T>
struct LossArgs {
    int loss = kCrossEntropy;
    int n = 0, k = 0;
    const T* z = nullptr;
    T* dz = nullptr;
    const int* rows = nullptr;  // batch row -> training sample (null: identity)
    const int* labels = nullptr;
    const T* values = nullptr;
    double* row_loss = nullptr;
    unsigned* blocks_done = nullptr;  // 0 before each launch; the launch leaves it 0
    StepControl control;
};

// A warp per row: each row's loss and the gradient of its logits. The last block to finish then
// sums the rows' losses into the step's loss (reduce_step_loss: the same order whichever block
// that is), which saves the step a kernel. Blocks of kReduceThreads threads.
template <class T>
__global__ void __launch_bounds__(kReduceThreads) loss_rows_kernel(const LossArgs<T> a) {
    if (step_kernel_skipped(a.control)) return;
    const int lane = threadIdx.x % 32;
    const int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r < a.n) {
        const long long sample = a.rows != nullptr ? a.rows[r] : r;
        const T scale = T((a.loss == kMse ? 2.0 : 1.0) / loss_divisor(a.loss, a.n, a.k));
        const long long offset = static_cast<long long>(r) * a.k;
        const int label = a.loss == kCrossEntropy ? a.labels[sample] : 0;
        const T* y = a.loss == kCrossEntropy ? nullptr : a.values + sample * a.k;
        const double value = row_loss_and_grad(a.loss, a.k, a.z + offset, a.dz + offset, label, y, scale, lane);
        if (lane == 0) {
            a.row_loss[r] = value;
            __threadfence();  // visible to the whole device before the block counts itself done
        }
    }
    __shared__ bool last;
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(a.blocks_done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    reduce_step_loss(a.row_loss, a.n, loss_divisor(a.loss, a.n, a.k), a.control);
    if (threadIdx.x == 0) *a.blocks_done = 0;
}

// forward(): sigmoid (bce) or softmax (cross_entropy) of n rows of k logits, in place.
template <class T>
__global__ void output_activation_kernel(int loss, int n, int k, T* z) {
    const int lane = threadIdx.x % 32;
    const int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= n) return;
    T* row = z + static_cast<long long>(r) * k;
    if (loss == kBce) {
        for (int j = lane; j < k; j += 32) row[j] = dev_sigmoid(row[j]);
        return;
    }
    T m = -INFINITY;
    for (int j = lane; j < k; j += 32) m = fmax(m, row[j]);
    m = group_max(m);
    T s = 0;
    for (int j = lane; j < k; j += 32) s += dev_exp(row[j] - m);
    s = group_sum(s);
    for (int j = lane; j < k; j += 32) row[j] = dev_exp(row[j] - m) / s;
}

}  // namespace fusedmlp::cuda
