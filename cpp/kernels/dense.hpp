// A dense layer's forward and backward passes, with bias, activation and activation derivative
// fused into the matrix products. All matrices are row-major and contiguous; rows are samples.
#pragma once

#include <cstddef>

#include "activation.hpp"

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
// w_t is scratch of fan_in * fan_out elements; z_prev and h_prev may be null for identity.
template <class T>
void dense_input_grad(const DenseShape& s, const T* dz, const T* w, Activation prev_act, const T* z_prev,
                      const T* h_prev, T* dz_prev, T* w_t);

// The backward pass given dh = dL/dh: dz = dh * f'(z) (written to dz, which may alias dh),
// dW, db, and dx = dz W^T when dx is not null (w_t as above).
template <class T>
void dense_backward(const DenseShape& s, const T* dh, const T* x, const T* w, const T* z, const T* h,
                    Activation act, T* dz, T* dw, T* db, T* dx, T* w_t);

}  // namespace fusedmlp
