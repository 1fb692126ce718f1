// Losses on the logits of the last layer, each giving the mean value and dL/dz in one pass.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fusedmlp {

enum class Loss { mse, bce, cross_entropy };

inline constexpr const char* kLossNames[] = {"mse", "bce", "cross_entropy"};
inline constexpr std::size_t kLossCount = sizeof(kLossNames) / sizeof(kLossNames[0]);

// What the loss compares the logits with: class indices for cross_entropy, else values
// shaped like the logits. Exactly one of the two is set.
template <class T>
struct Targets {
    const std::int64_t* labels = nullptr;
    const T* values = nullptr;
};

// Mean loss over the n rows of z (n, k), accumulated in double; dz = dL/dz, the gradient of
// that mean. Labels must lie in [0, k) (checked by the caller).
template <class T>
double loss_and_grad(Loss loss, std::size_t n, std::size_t k, const T* z, Targets<T> y, T* dz);

// forward(): identity, sigmoid or softmax of the logits, in place.
template <class T>
void apply_output_activation(Loss loss, std::size_t n, std::size_t k, T* z);

}  // namespace fusedmlp
