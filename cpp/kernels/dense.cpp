#include "dense.hpp"

#include <algorithm>

#include "gemm.hpp"

namespace fusedmlp {

template <class T>
void dense_forward(const DenseShape& s, const T* x, const T* w, const T* b, Activation act, T* z, T* h) {
    dense_kernels<T>(active_isa()).forward(s, x, w, b, act, z, h);
}

template <class T>
void dense_weight_grads(const DenseShape& s, const T* x, const T* dz, T* dw, T* db) {
    dense_kernels<T>(active_isa()).weight_grads(s, x, dz, dw, db);
}

template <class T>
void dense_input_grad(const DenseShape& s, const T* dz, const T* w, Activation prev_act, const T* z_prev,
                      const T* h_prev, T* dz_prev, T* /*w_t*/) {
    dense_kernels<T>(active_isa()).input_grad(s, dz, w, prev_act, z_prev, h_prev, dz_prev);
}

template <class T>
bool dense_weight_grads_sgd(const DenseShape& s, const T* x, const T* dz, const DenseSgdParams<T>& params, double lr,
                            const SgdConfig& config, bool first_step) {
    return dense_kernels<T>(active_isa()).weight_grads_sgd(s, x, dz, params, lr, config, first_step);
}

template <class T>
void dense_backward(const DenseShape& s, const T* dh, const T* x, const T* w, const T* z, const T* h,
                    Activation act, T* dz, T* dw, T* db, T* dx, T* w_t) {
    // dz may alias dh: the derivative goes through a small buffer, a chunk at a time.
    constexpr std::size_t kChunk = 256;
    T derivative[kChunk];
    const std::size_t count = s.rows * s.fan_out;
    for (std::size_t start = 0; start < count; start += kChunk) {
        const std::size_t n = std::min(kChunk, count - start);
        activation_derivative(act, n, z + start, h + start, derivative);
        for (std::size_t i = 0; i < n; ++i) dz[start + i] = dh[start + i] * derivative[i];
    }
    dense_weight_grads(s, x, dz, dw, db);
    if (dx != nullptr) {
        // dx = dz W^T is dense_input_grad with an identity "previous activation".
        dense_input_grad<T>(s, dz, w, Activation::identity, nullptr, nullptr, dx, w_t);
    }
}

#define FUSEDMLP_INSTANTIATE(T)                                                                          \
    template void dense_forward<T>(const DenseShape&, const T*, const T*, const T*, Activation, T*, T*); \
    template void dense_weight_grads<T>(const DenseShape&, const T*, const T*, T*, T*);                  \
    template void dense_input_grad<T>(const DenseShape&, const T*, const T*, Activation, const T*,       \
                                      const T*, T*, T*);                                                 \
    template bool dense_weight_grads_sgd<T>(const DenseShape&, const T*, const T*,                       \
                                            const DenseSgdParams<T>&, double, const SgdConfig&, bool);   \
    template void dense_backward<T>(const DenseShape&, const T*, const T*, const T*, const T*, const T*, \
                                    Activation, T*, T*, T*, T*, T*);
FUSEDMLP_INSTANTIATE(float)
FUSEDMLP_INSTANTIATE(double)
#undef FUSEDMLP_INSTANTIATE

}  // namespace fusedmlp
