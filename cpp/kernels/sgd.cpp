#include "sgd.hpp"

namespace fusedmlp {

template <class T>
void sgd_update(std::size_t count, T* param, const T* grad, T* buf, double lr, const SgdConfig& config,
                bool first_step) {
    const T rate = T(lr);
    const T mu = T(config.momentum);
    const T decay = T(config.weight_decay);
    const bool has_decay = config.weight_decay != 0;
    if (config.momentum == 0) {
        for (std::size_t i = 0; i < count; ++i) {
            const T g = has_decay ? grad[i] + decay * param[i] : grad[i];
            param[i] -= rate * g;
        }
        return;
    }
    for (std::size_t i = 0; i < count; ++i) {
        const T g = has_decay ? grad[i] + decay * param[i] : grad[i];
        const T b = first_step ? g : mu * buf[i] + g;
        buf[i] = b;
        param[i] -= rate * (config.nesterov ? g + mu * b : b);
    }
}

template void sgd_update<float>(std::size_t, float*, const float*, float*, double, const SgdConfig&, bool);
template void sgd_update<double>(std::size_t, double*, const double*, double*, double, const SgdConfig&, bool);

}  // namespace fusedmlp
