#include "loss.hpp"

#include <algorithm>
#include <cmath>

#include "activation.hpp"

namespace fusedmlp {

namespace {

template <class T>
double mse(std::size_t n, std::size_t k, const T* z, const T* y, T* dz) {
    const std::size_t count = n * k;
    const T scale = T(2.0 / static_cast<double>(count));
    double total = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const T diff = z[i] - y[i];
        total += static_cast<double>(diff * diff);
        dz[i] = diff * scale;
    }
    return total / static_cast<double>(count);
}

template <class T>
double bce(std::size_t n, std::size_t k, const T* z, const T* y, T* dz) {
    const std::size_t count = n * k;
    const T scale = T(1.0 / static_cast<double>(count));
    double total = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const T zi = z[i];
        const T term = std::max(zi, T(0)) - zi * y[i] + std::log1p(std::exp(-std::abs(zi)));
        total += static_cast<double>(term);
        dz[i] = (sigmoid(zi) - y[i]) * scale;
    }
    return total / static_cast<double>(count);
}

template <class T>
double cross_entropy(std::size_t n, std::size_t k, const T* z, const std::int64_t* labels, T* dz) {
    const T scale = T(1.0 / static_cast<double>(n));
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const T* z_row = z + i * k;
        T* dz_row = dz + i * k;
        const T m = *std::max_element(z_row, z_row + k);
        T s = 0;
        for (std::size_t j = 0; j < k; ++j) {
            dz_row[j] = std::exp(z_row[j] - m);
            s += dz_row[j];
        }
        const std::size_t label = static_cast<std::size_t>(labels[i]);
        const T logsumexp = m + std::log(s);
        total += static_cast<double>(logsumexp - z_row[label]);
        for (std::size_t j = 0; j < k; ++j) dz_row[j] /= s;
        dz_row[label] -= T(1);
        for (std::size_t j = 0; j < k; ++j) dz_row[j] *= scale;
    }
    return total / static_cast<double>(n);
}

}  // namespace

template <class T>
double loss_and_grad(Loss loss, std::size_t n, std::size_t k, const T* z, Targets<T> y, T* dz) {
    switch (loss) {
        case Loss::mse: return mse(n, k, z, y.values, dz);
        case Loss::bce: return bce(n, k, z, y.values, dz);
        case Loss::cross_entropy: break;
    }
    return cross_entropy(n, k, z, y.labels, dz);
}

template <class T>
void apply_output_activation(Loss loss, std::size_t n, std::size_t k, T* z) {
    if (loss == Loss::bce) {
        for (std::size_t i = 0; i < n * k; ++i) z[i] = sigmoid(z[i]);
    } else if (loss == Loss::cross_entropy) {
        for (std::size_t i = 0; i < n; ++i) {
            T* row = z + i * k;
            const T m = *std::max_element(row, row + k);
            T s = 0;
            for (std::size_t j = 0; j < k; ++j) {
                row[j] = std::exp(row[j] - m);
                s += row[j];
            }
            for (std::size_t j = 0; j < k; ++j) row[j] /= s;
        }
    }
}

template double loss_and_grad<float>(Loss, std::size_t, std::size_t, const float*, Targets<float>, float*);
template double loss_and_grad<double>(Loss, std::size_t, std::size_t, const double*, Targets<double>, double*);
template void apply_output_activation<float>(Loss, std::size_t, std::size_t, float*);
template void apply_output_activation<double>(Loss, std::size_t, std::size_t, double*);

}  // namespace fusedmlp
