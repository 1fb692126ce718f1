// Mini-batch SGD with momentum, Nesterov momentum and weight decay (PyTorch's convention),
// in one pass over a parameter.
#pragma once

#include <cstddef>

namespace fusedmlp {

struct SgdConfig {
    double momentum = 0;      // in [0, 1); 0 leaves the momentum buffer untouched
    bool nesterov = false;
    double weight_decay = 0;  // applied to weights only: callers pass 0 for biases
};

// g = grad + weight_decay * param; buf = g on the first step, else momentum * buf + g;
// g = g + momentum * buf (nesterov) or buf; param -= lr * g.
template <class T>
void sgd_update(std::size_t count, T* param, const T* grad, T* buf, double lr, const SgdConfig& config,
                bool first_step);

}  // namespace fusedmlp
