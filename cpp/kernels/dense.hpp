// A dense layer's forward and backward passes, with bias, activation and activation derivative
// fused into the matrix products. All matrices are row-major and contiguous; rows are samples.
#pragma once

#include <cstddef>

#include "activation.hpp"
#include "sgd.hpp"

namespace fusedmlp {

struct DenseShape {
    std::size_t rows;     // samples in the batch
    std::size_t fan_in;
    std::size_t fan_out;
};

// z = x W + b and h = f(z). h may be the same buffer as z only for the identity activation.
template <class T>
void dense_forward(const DenseShape& s, const T* x, const T* w, const T* b, Activation act, T* z, T* h);

// dW = x^T dz and db = column sums of dz, for dz = dL/dz of this layer.
template <class T>
void dense_weight_grads(const DenseShape& s, const T* x, const T* dz, T* dw, T* db);

// dz_prev = (dz W^T) * f'(z_prev): the gradient with respect to the previous layer's
// pre-activation, with that layer's activation derivative applied in the product's epilogue.
// z_prev and h_prev may be null for identity. w_t is unused (W is read transposed while it is
// packed) and may be null; it stays for existing callers.
template <class T>
void dense_input_grad(const DenseShape& s, const T* dz, const T* w, Activation prev_act, const T* z_prev,
                      const T* h_prev, T* dz_prev, T* w_t);

// The backward pass given dh = dL/dh: dz = dh * f'(z) (written to dz, which may alias dh),
// dW, db, and dx = dz W^T when dx is not null (w_t unused, as above).
template <class T>
void dense_backward(const DenseShape& s, const T* dh, const T* x, const T* w, const T* z, const T* h,
                    Activation act, T* dz, T* dw, T* db, T* dx, T* w_t);

// A layer's parameters and momentum buffers before (in) and after (out) an SGD step. Each out
// pointer may equal its in pointer (update in place). The momentum pointers are unused, and may
// be null, when the step has no momentum; momentum in-buffers are not read on a first step.
template <class T>
struct DenseSgdParams {
    const T* w_in;
    const T* w_momentum_in;
    T* w_out;
    T* w_momentum_out;
    const T* b_in;
    const T* b_momentum_in;
    T* b_out;
    T* b_momentum_out;
};

// The weight gradient x^T dz and bias gradient (column sums of dz) consumed tile by tile by an
// SGD step (sgd.hpp's rule, PyTorch's convention: weight decay on W only), without ever
// writing the gradients. Returns whether every value written to w_out and b_out is finite.
// Must run after anything that still needs the old W (dense_input_grad of this layer).
template <class T>
bool dense_weight_grads_sgd(const DenseShape& s, const T* x, const T* dz, const DenseSgdParams<T>& params, double lr,
                            const SgdConfig& config, bool first_step);

}  // namespace fusedmlp
