// Mini-batch SGD with momentum, Nesterov momentum and weight decay (PyTorch's convention).
#pragma once

#include <cmath>
#include <cstddef>

namespace fusedmlp {

struct SgdConfig {
    double momentum = 0;      // in [0, 1); 0 leaves the momentum buffer untouched
    bool nesterov = false;
    double weight_decay = 0;  // applied to weights only: callers pass 0 for biases
};

// The scalars of one step in the parameters' precision, so that every kernel that fuses the
// update (plain, or in a product's epilogue) rounds exactly like the reference.
template <class T>
struct SgdStep {
    T rate, mu, decay;
    bool momentum, nesterov, first_step;

    SgdStep(double lr, const SgdConfig& config, bool first)
        : rate(T(lr)), mu(T(config.momentum)), decay(T(config.weight_decay)), momentum(config.momentum != 0),
          nesterov(config.nesterov), first_step(first) {}

    // g = grad + decay * param; buf = g on the first step, else mu * buf + g;
    // g = g + mu * buf (nesterov) or buf; returns param - rate * g. buf_out may alias buf_in;
    // both are unused without momentum.
    T apply(T param, T grad, T buf_in, T* buf_out) const {
        const T g = decay != T(0) ? grad + decay * param : grad;
        if (!momentum) return param - rate * g;
        const T b = first_step ? g : mu * buf_in + g;
        *buf_out = b;
        return param - rate * (nesterov ? g + mu * b : b);
    }
};

// param -= the step's update, in place.
template <class T>
void sgd_update(std::size_t count, T* param, const T* grad, T* buf, double lr, const SgdConfig& config,
                bool first_step);

// The update of param_in into param_out and of buf_in into buf_out (either pair may alias);
// returns whether every value written to param_out is finite.
template <class T>
bool sgd_update_into(std::size_t count, const T* param_in, const T* grad, const T* buf_in, T* param_out, T* buf_out,
                     const SgdStep<T>& step);

}  // namespace fusedmlp
