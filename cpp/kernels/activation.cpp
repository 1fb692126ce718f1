#include "activation.hpp"

namespace fusedmlp {

template <class T>
void activation_forward(Activation a, std::size_t count, const T* z, T* h) {
    with_activation(a, [&](auto act) {
        for (std::size_t i = 0; i < count; ++i) h[i] = activate<act.value>(z[i]);
    });
}

template <class T>
void activation_derivative(Activation a, std::size_t count, const T* z, const T* h, T* out) {
    with_activation(a, [&](auto act) {
        for (std::size_t i = 0; i < count; ++i) out[i] = activation_derivative<act.value>(z[i], h[i]);
    });
}

template void activation_forward<float>(Activation, std::size_t, const float*, float*);
template void activation_forward<double>(Activation, std::size_t, const double*, double*);
template void activation_derivative<float>(Activation, std::size_t, const float*, const float*, float*);
template void activation_derivative<double>(Activation, std::size_t, const double*, const double*, double*);

}  // namespace fusedmlp
