// The per-step control every training kernel reads, and the SGD / momentum update applied in
// the epilogue that completes a parameter's gradient (PyTorch's convention, as sgd.hpp).
//
// Divergence without a host round trip: parameters and momentum are double-buffered, step s
// reading buffer s % 2 and writing buffer (s + 1) % 2. A step whose loss or any written value is
// non-finite lowers *diverged_step to s; every kernel of a later step sees that and returns
// at once, so the buffer written before step s still holds the state the host keeps. Without
// momentum the momentum buffers are neither read nor written: the epoch starts by making both
// hold the same (kept) content.
#pragma once

#include <climits>
#include <cuda_runtime.h>

#include "activation.cuh"
#include "dependent_launch.cuh"

namespace fusedmlp::cuda {

struct StepControl {
    int step = 0;                  // index of this step in the epoch
    int* diverged_step = nullptr;  // INT_MAX while no step diverged; null outside training
    const int* started = nullptr;  // whether the optimizer had started before the epoch
    const double* lrs = nullptr;   // the epoch's learning rates
    double* step_loss = nullptr;   // where the step's loss goes
};

__device__ __forceinline__ bool step_skipped(const StepControl& c) {
    return c.diverged_step != nullptr && *reinterpret_cast<volatile int*>(c.diverged_step) < c.step;
}

// The first thing every kernel of a step does: wait for the kernels before it where it was
// launched as a dependent (dependent_launch.cuh; a no-op otherwise), let the next one be
// scheduled, and say whether an earlier step diverged (then the kernel does nothing).
__device__ __forceinline__ bool step_kernel_skipped(const StepControl& c) {
    wait_for_previous_kernels();
    allow_next_kernel();
    return step_skipped(c);
}

__device__ __forceinline__ void mark_diverged(const StepControl& c) {
    if (c.diverged_step != nullptr) atomicMin(c.diverged_step, c.step);
}

// Where a completed gradient goes: into grad_out (gradient mode, loss_and_grad), or through
// the optimizer from param_in/mom_in to param_out/mom_out.
template <class T>
struct SgdUpdate {
    T* grad_out = nullptr;
    const T* param_in = nullptr;
    T* param_out = nullptr;
    const T* mom_in = nullptr;
    T* mom_out = nullptr;
    T momentum = 0;
    T weight_decay = 0;
    bool nesterov = false;
};

// The optimizer's step for one parameter whose current value p and momentum m_in the caller
// has already read (so that a caller updating many parameters can issue their loads together;
// m_in is not used without momentum):
// lr = lrs[step], first = the optimizer's first step (see sgd_first_step). Returns the updated
// parameter.
template <class T>
__device__ __forceinline__ T apply_gradient_to(const SgdUpdate<T>& u, const StepControl& c, long long index, T g,
                                               bool is_weight, T p, T m_in, T lr, bool first) {
    if (is_weight && u.weight_decay != T(0)) g = g + u.weight_decay * p;
    T direction = g;
    if (u.momentum != T(0)) {
        const T b = first ? g : u.momentum * m_in + g;
        u.mom_out[index] = b;
        direction = u.nesterov ? g + u.momentum * b : b;
    }
    const T updated = p - lr * direction;
    u.param_out[index] = updated;
    if (!dev_isfinite(updated)) mark_diverged(c);
    return updated;
}

__device__ __forceinline__ bool sgd_first_step(const StepControl& c) { return c.step == 0 && *c.started == 0; }

template <class T>
__device__ __forceinline__ void apply_gradient(const SgdUpdate<T>& u, const StepControl& c, long long index, T g,
                                               bool is_weight) {
    if (u.grad_out != nullptr) {
        u.grad_out[index] = g;
        return;
    }
    apply_gradient_to(u, c, index, g, is_weight, u.param_in[index], u.momentum != T(0) ? u.mom_in[index] : T(0),
                      T(c.lrs[c.step]), sgd_first_step(c));
}

}  // namespace fusedmlp::cuda
