#include "dense.hpp"

#include <algorithm>

#include "gemm.hpp"

namespace fusedmlp {

template <class T>
void dense_forward(const DenseShape& s, const T* x, const T* w, const T* b, Activation act, T* z, T* h) {
    with_activation(act, [&](auto a) {
        gemm_rows(s.rows, s.fan_out, s.fan_in, x, s.fan_in, 1, w,
                  [&](std::size_t i, std::size_t j0, std::size_t cols, const T* acc) {
                      T* z_row = z + i * s.fan_out + j0;
                      T* h_row = h + i * s.fan_out + j0;
                      const T* b_row = b + j0;
                      for (std::size_t j = 0; j < cols; ++j) {
                          const T zj = acc[j] + b_row[j];
                          z_row[j] = zj;
                          h_row[j] = activate<a.value>(zj);
                      }
                  });
    });
}

template <class T>
void dense_weight_grads(const DenseShape& s, const T* x, const T* dz, T* dw, T* db) {
    // dW(p, j) = sum_i x(i, p) dz(i, j): x read transposed by swapping its strides.
    gemm_rows(s.fan_in, s.fan_out, s.rows, x, 1, s.fan_in, dz,
              [&](std::size_t p, std::size_t j0, std::size_t cols, const T* acc) {
                  std::copy_n(acc, cols, dw + p * s.fan_out + j0);
              });
    std::fill_n(db, s.fan_out, T(0));
    for (std::size_t i = 0; i < s.rows; ++i) {
        const T* dz_row = dz + i * s.fan_out;
        for (std::size_t j = 0; j < s.fan_out; ++j) db[j] += dz_row[j];
    }
}

template <class T>
void dense_input_grad(const DenseShape& s, const T* dz, const T* w, Activation prev_act, const T* z_prev,
                      const T* h_prev, T* dz_prev, T* w_t) {
    transpose(s.fan_in, s.fan_out, w, w_t);
    with_activation(prev_act, [&](auto a) {
        gemm_rows(s.rows, s.fan_in, s.fan_out, dz, s.fan_out, 1, w_t,
                  [&](std::size_t i, std::size_t j0, std::size_t cols, const T* acc) {
                      const std::size_t at = i * s.fan_in + j0;
                      if constexpr (a.value == Activation::identity) {
                          std::copy_n(acc, cols, dz_prev + at);
                      } else {
                          for (std::size_t j = 0; j < cols; ++j)
                              dz_prev[at + j] =
                                  acc[j] * activation_derivative<a.value>(z_prev[at + j], h_prev[at + j]);
                      }
                  });
    });
}

template <class T>
void dense_backward(const DenseShape& s, const T* dh, const T* x, const T* w, const T* z, const T* h,
                    Activation act, T* dz, T* dw, T* db, T* dx, T* w_t) {
    with_activation(act, [&](auto a) {
        const std::size_t count = s.rows * s.fan_out;
        for (std::size_t i = 0; i < count; ++i) dz[i] = dh[i] * activation_derivative<a.value>(z[i], h[i]);
    });
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
    template void dense_backward<T>(const DenseShape&, const T*, const T*, const T*, const T*, const T*, \
                                    Activation, T*, T*, T*, T*, T*);
FUSEDMLP_INSTANTIATE(float)
FUSEDMLP_INSTANTIATE(double)
#undef FUSEDMLP_INSTANTIATE

}  // namespace fusedmlp
