// Hidden-layer activations and their derivatives, as scalar functions the compiler can inline
// into the GEMM epilogues. The formulas and their evaluation order follow reference.py so that
// native and reference results agree to the last few ulps.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

namespace fusedmlp {

enum class Activation { identity, relu, leaky_relu, tanh, sigmoid, gelu, gelu_tanh };

inline constexpr const char* kActivationNames[] = {"identity", "relu",    "leaky_relu", "tanh",
                                                   "sigmoid",  "gelu",    "gelu_tanh"};
inline constexpr std::size_t kActivationCount = sizeof(kActivationNames) / sizeof(kActivationNames[0]);

inline constexpr double kLeakyReluSlope = 0.01;
inline constexpr double kSqrt2OverPi = 0.7978845608028654;   // sqrt(2 / pi)
inline constexpr double kGeluTanhCoef = 0.044715;
inline constexpr double kInvSqrt2 = 0.7071067811865476;      // 1 / sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.3989422804014327;    // 1 / sqrt(2 pi)

// exp is only ever taken of -|z|, so no overflow for any finite z.
template <class T>
inline T sigmoid(T z) {
    const T e = std::exp(-std::abs(z));
    return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// Phi(z) = 0.5 (1 + erf(z / sqrt 2)) as 0.5 erfc(-z / sqrt 2): no cancellation for z < 0.
// Evaluated in double, as the reference does, then rounded to T.
template <class T>
inline T normal_cdf(T z) {
    return T(0.5 * std::erfc(-static_cast<double>(z) * kInvSqrt2));
}

// u = sqrt(2/pi) (z + 0.044715 z^3). Since 0.5 (1 + tanh u) = sigmoid(2u), gelu_tanh is
// z sigmoid(2u) with derivative sigmoid(2u) (1 + 2 z sigmoid(-2u) u'): DESIGN.md's functions
// in a form that does not cancel where tanh u is near -1.
template <class T>
inline T gelu_tanh_inner(T z) {
    return T(kSqrt2OverPi) * (z + T(kGeluTanhCoef) * z * z * z);
}

template <Activation A, class T>
inline T activate(T z) {
    if constexpr (A == Activation::identity) {
        return z;
    } else if constexpr (A == Activation::relu) {
        return z > T(0) ? z : T(0);
    } else if constexpr (A == Activation::leaky_relu) {
        return z > T(0) ? z : z * T(kLeakyReluSlope);
    } else if constexpr (A == Activation::tanh) {
        return std::tanh(z);
    } else if constexpr (A == Activation::sigmoid) {
        return sigmoid(z);
    } else if constexpr (A == Activation::gelu) {
        return z * normal_cdf(z);
    } else {
        return z * sigmoid(T(2) * gelu_tanh_inner(z));
    }
}

// f'(z) given z and h = f(z): tanh and sigmoid use h, the others z.
template <Activation A, class T>
inline T activation_derivative(T z, T h) {
    if constexpr (A == Activation::identity) {
        return T(1);
    } else if constexpr (A == Activation::relu) {
        return z > T(0) ? T(1) : T(0);
    } else if constexpr (A == Activation::leaky_relu) {
        return z > T(0) ? T(1) : T(kLeakyReluSlope);
    } else if constexpr (A == Activation::tanh) {
        return T(1) - h * h;
    } else if constexpr (A == Activation::sigmoid) {
        return h * (T(1) - h);
    } else if constexpr (A == Activation::gelu) {
        const T pdf = T(kInvSqrt2Pi) * std::exp(T(-0.5) * z * z);
        return normal_cdf(z) + z * pdf;
    } else {
        const T u = gelu_tanh_inner(z);
        const T du = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoef) * z * z);
        return sigmoid(T(2) * u) * (T(1) + T(2) * z * sigmoid(T(-2) * u) * du);
    }
}

// Calls fn(std::integral_constant<Activation, A>{}) for the run-time value a, so that loops
// inside fn are compiled once per activation with no branch per element.
template <class Fn>
inline decltype(auto) with_activation(Activation a, Fn&& fn) {
    using A = Activation;
    switch (a) {
        case A::identity: return fn(std::integral_constant<A, A::identity>{});
        case A::relu: return fn(std::integral_constant<A, A::relu>{});
        case A::leaky_relu: return fn(std::integral_constant<A, A::leaky_relu>{});
        case A::tanh: return fn(std::integral_constant<A, A::tanh>{});
        case A::sigmoid: return fn(std::integral_constant<A, A::sigmoid>{});
        case A::gelu: return fn(std::integral_constant<A, A::gelu>{});
        case A::gelu_tanh: break;
    }
    return fn(std::integral_constant<A, A::gelu_tanh>{});
}

// Elementwise f and f' over arrays, for the single-op entry points and tests.
template <class T>
void activation_forward(Activation a, std::size_t count, const T* z, T* h);
template <class T>
void activation_derivative(Activation a, std::size_t count, const T* z, const T* h, T* out);

}  // namespace fusedmlp
