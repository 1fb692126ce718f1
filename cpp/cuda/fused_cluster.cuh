// fused_cluster_epoch_kernel: a whole epoch of batches of up to C tiles on one thread-block
// cluster of C blocks (sm_90 and later), for batches too large for fused_epoch_kernel's one
// tile. Block r takes rows [r R, (r + 1) R) of every batch (R = the layout's tile rows) and
// keeps every parameter in its shared memory for the whole epoch, as fused_epoch_kernel does.
//
// A step: each block's forward pass, loss and backward pass on its rows, its weight gradients'
// partial sums written over its own copy of the parameters (kSinkPartial: no product of the
// step reads them any more); a cluster barrier; then each block updates the parameters it owns
// (rows m of each W_l, the bias as row n_in, with m % C == r): the gradient is every block's
// partial sum added in rank order, as fused_reduce_kernel adds the per-step path's, the current
// value comes from the step's global buffer, and the update is written through to the next
// buffer (parameters and momentum double-buffered as in sgd.cuh) and into every block's copy;
// a second cluster barrier. Against fused_mlp_kernel + fused_reduce_kernel per step, the
// parameters are not read from global memory at every step, the partial sums do not go
// through it, and there is one launch per epoch.
#pragma once

#include <cuda_runtime.h>

#include "cluster.cuh"
#include "fused.cuh"

namespace fusedmlp::cuda {

// Each block's own state beside the layout. In static shared memory, which the emulator gives
// every block of a cluster its own copy of.
struct ClusterEpochState {
    FusedEpochRows rows;
    double block_loss;  // the sum of this block's rows' losses in the current step
    int diverged;  // set in every block by a block that made a non-finite update
};

// The update of the parameters this block owns (see above), after the cluster barrier that
// follows every block's backward pass. Returns whether every update was finite.
template <int kThreads, class T>
__device__ bool cluster_update_owned(const FusedArgs<T>& f, T* sm, const FusedEpoch<T>& e, int cur,
                                     const StepControl& control, T lr, bool first, unsigned rank, unsigned blocks) {
    const FusedLayout& s = f.s;
    SgdUpdate<T> u = f.update;
    u.param_out = e.params[cur ^ 1];
    u.mom_out = e.momentum[cur ^ 1];
    const T* params_in = e.params[cur];
    const T* momentum_in = e.momentum[cur];
    const bool momentum = u.momentum != T(0);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    T guard = 0;  // as resident_update's
    for (int l = 0; l < s.layers; ++l) {
        const int n_in = s.sizes[l], n_out = s.sizes[l + 1];
        // A warp per owned row; row n_in is the bias.
        for (int m = static_cast<int>(rank) + static_cast<int>(blocks) * warp; m <= n_in;
             m += static_cast<int>(blocks) * (kThreads / 32)) {
            const bool is_weight = m < n_in;
            T* row = is_weight ? sm + s.w[l] + m * s.ldw[l] : sm + s.b[l];
            const long long first_index = is_weight ? f.w_off[l] + static_cast<long long>(m) * n_out : f.b_off[l];
            // kBatch columns per lane at a time, every load first: the remote partial sums and
            // the global values are in flight together instead of one column's after another's.
            // (Double precision at 512 threads has no registers to spare: a batch of 2 spilled.)
            constexpr int kBatch = sizeof(T) == 4 ? 4 : 1;
            for (int n0 = lane; n0 < n_out; n0 += 32 * kBatch) {
                T g[kBatch], p[kBatch], m_in[kBatch];
#pragma unroll
                for (int j = 0; j < kBatch; ++j) {
                    const int n = n0 + 32 * j;
                    g[j] = p[j] = m_in[j] = T(0);
                    if (n >= n_out) continue;
                    for (unsigned b = 0; b < blocks; ++b) g[j] += *cluster_peer(row + n, b);
                    p[j] = params_in[first_index + n];
                    if (momentum) m_in[j] = momentum_in[first_index + n];
                }
#pragma unroll
                for (int j = 0; j < kBatch; ++j) {
                    const int n = n0 + 32 * j;
                    if (n >= n_out) continue;
                    const T updated =
                        apply_gradient_to(u, control, first_index + n, g[j], is_weight, p[j], m_in[j], lr, first);
                    for (unsigned b = 0; b < blocks; ++b) *cluster_peer(row + n, b) = updated;
                    guard = updated * T(0) + guard;
                }
            }
        }
    }
    return guard == T(0);
}

template <class T, int kThreads>
__global__ void __launch_bounds__(kThreads, 1) fused_cluster_epoch_kernel(const FusedArgs<T> f, const FusedEpoch<T> e) {
    extern __shared__ __align__(16) unsigned char fused_smem[];
#if defined(FUSEDMLP_CUDA_CLUSTERS)
    T* sm = reinterpret_cast<T*>(fused_smem);
    FUSEDMLP_CLUSTER_SHARED(ClusterEpochState, state, 1);
    ClusterEpochState& st = state[0];
    const FusedLayout& s = f.s;
    const int t = threadIdx.x;
    const unsigned rank = cluster_rank(), blocks = gridDim.z;
    const int first_row = static_cast<int>(rank) * s.rows;  // this block's tile of every batch
    for (int l = 0; l < s.layers; ++l) fused_copy_layer<kThreads>(f, sm, l, e.params[0], 0, true);
    const bool started = *f.control.started != 0;
    if (t == 0) st.diverged = 0;
    fused_epoch_first_rows<kThreads>(f, sm, e, first_row, st.rows);

    const T whole_batch_scale = fused_loss_scale(f, e.batch_size);
    FusedStep<T> partial_step;  // kSinkPartial needs nothing of the step
    for (int step_index = 0; step_index < e.steps; ++step_index) {
        const int cur = step_index & 1;
        const int batch_rows = min(e.batch_size, e.order_length - step_index * e.batch_size);
        const int valid = max(0, min(s.rows, batch_rows - first_row));
        T* input = sm + (cur == 0 ? s.act[0] : s.input2);
        T* next_input = sm + (cur == 0 ? s.input2 : s.act[0]);

        int next_label = 0;
        const double block_total = fused_epoch_forward_and_loss<kThreads>(
            f, sm, e, step_index, first_row, batch_rows, valid, whole_batch_scale, input, st.rows, next_label);
        if (t == 0) st.block_loss = block_total;
        // fused_loss's barrier made the next samples visible: gather their inputs meanwhile.
        if (step_index + 1 < e.steps) fused_gather_inputs<kThreads>(f, next_input, st.rows.sample[cur ^ 1], true);
        async_copy_commit();
        if (t < s.rows) st.rows.label[cur ^ 1][t] = next_label;
        for (int l = s.layers - 1; l >= 0; --l)
            fused_backward_layer<kSinkPartial, kThreads>(f, sm, partial_step, l, l == 0 ? input : sm + s.act[l],
                                                         l == 0);
        cluster_sync();  // every block's partial sums and loss are in place; no block reads W any more

        // The step's loss, the same on every block: the blocks' sums in rank order.
        double total = 0;
        for (unsigned b = 0; b < blocks; ++b) total += *cluster_peer(&st.block_loss, b);
        StepControl control = f.control;
        control.step = step_index;
        if (rank == 0 && t == 0) {
            const double value = total / loss_divisor(f.loss, batch_rows, s.sizes[s.layers]);
            f.control.step_loss[step_index] = value;
            if (!isfinite(value)) mark_diverged(control);
        }
        if (!isfinite(total)) {
            cluster_sync();  // no block leaves while another may still read its loss
            break;
        }
        const bool finite = cluster_update_owned<kThreads>(f, sm, e, cur, control, T(f.control.lrs[step_index]),
                                                           step_index == 0 && !started, rank, blocks);
        if (!finite)
            for (unsigned b = 0; b < blocks; ++b) *cluster_peer(&st.diverged, b) = 1;
        cluster_sync();  // every update is in every block's copy
        if (st.diverged) break;
    }
#else
    (void)fused_smem;
    __trap();  // launched only where the device has clusters (compute capability 9.0 and later)
#endif
}

}  // namespace fusedmlp::cuda
