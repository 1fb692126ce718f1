#include "sgd.hpp"

namespace fusedmlp {

template <class T>
bool sgd_update_into(std::size_t count, const T* param_in, const T* grad, const T* buf_in, T* param_out, T* buf_out,
                     const SgdStep<T>& step) {
    // x - x is 0 for finite x and NaN otherwise: one branch-free accumulation per value.
    T check = T(0);
    if (!step.momentum) {
        for (std::size_t i = 0; i < count; ++i) {
            const T p = step.apply(param_in[i], grad[i], T(0), nullptr);
            param_out[i] = p;
            check += p - p;
        }
    } else {
        for (std::size_t i = 0; i < count; ++i) {
            const T p = step.apply(param_in[i], grad[i], buf_in[i], buf_out + i);
            param_out[i] = p;
            check += p - p;
        }
    }
    return check == T(0);
}

template <class T>
void sgd_update(std::size_t count, T* param, const T* grad, T* buf, double lr, const SgdConfig& config,
                bool first_step) {
    sgd_update_into(count, param, grad, buf, param, buf, SgdStep<T>(lr, config, first_step));
}

template bool sgd_update_into<float>(std::size_t, const float*, const float*, const float*, float*, float*,
                                     const SgdStep<float>&);
template bool sgd_update_into<double>(std::size_t, const double*, const double*, const double*, double*, double*,
                                      const SgdStep<double>&);
template void sgd_update<float>(std::size_t, float*, const float*, float*, double, const SgdConfig&, bool);
template void sgd_update<double>(std::size_t, double*, const double*, double*, double, const SgdConfig&, bool);

}  // namespace fusedmlp
