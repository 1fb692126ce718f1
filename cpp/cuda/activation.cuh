// Hidden-layer activations and their derivatives on the device, the formulas of
// cpp/kernels/activation.hpp (and reference.py) in float or double. The activation is a
// run-time argument: every thread of a launch takes the same branch, and one kernel then
// serves all seven activations instead of seven instantiations. Where an epilogue applies it
// to every element, with_activation hoists that branch out of the loop.
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

namespace fusedmlp::cuda {

// Same order as fusedmlp::Activation.
enum ActivationCode : int { kIdentity, kRelu, kLeakyRelu, kTanh, kSigmoid, kGelu, kGeluTanh };

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }
__device__ __forceinline__ float dev_log(float x) { return logf(x); }
__device__ __forceinline__ double dev_log(double x) { return log(x); }
__device__ __forceinline__ float dev_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double dev_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float dev_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double dev_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float dev_erfc(float x) { return erfcf(x); }
__device__ __forceinline__ double dev_erfc(double x) { return erfc(x); }
__device__ __forceinline__ bool dev_isfinite(float x) { return isfinite(x); }
__device__ __forceinline__ bool dev_isfinite(double x) { return isfinite(x); }

// exp is only ever taken of -|z|: no overflow for any finite z.
template <class T>
__device__ __forceinline__ T dev_sigmoid(T z) {
    const T e = dev_exp(-fabs(z));
    return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// Phi(z) = 0.5 erfc(-z / sqrt 2): no cancellation for z < 0.
template <class T>
__device__ __forceinline__ T dev_normal_cdf(T z) {
    return T(0.5) * dev_erfc(-z * T(0.7071067811865476));
}

// u = sqrt(2/pi) (z + 0.044715 z^3); gelu_tanh = z sigmoid(2u).
template <class T>
__device__ __forceinline__ T dev_gelu_tanh_inner(T z) {
    return T(0.7978845608028654) * (z + T(0.044715) * z * z * z);
}

template <class T>
__device__ __forceinline__ T dev_activate(int act, T z) {
    switch (act) {
        case kIdentity: return z;
        case kRelu: return z > T(0) ? z : T(0);
        case kLeakyRelu: return z > T(0) ? z : z * T(0.01);
        case kTanh: return dev_tanh(z);
        case kSigmoid: return dev_sigmoid(z);
        case kGelu: return z * dev_normal_cdf(z);
        default: return z * dev_sigmoid(T(2) * dev_gelu_tanh_inner(z));
    }
}

// f'(z) given z and h = f(z): tanh and sigmoid use h, the others z.
template <class T>
__device__ __forceinline__ T dev_activation_derivative(int act, T z, T h) {
    switch (act) {
        case kIdentity: return T(1);
        case kRelu: return z > T(0) ? T(1) : T(0);
        case kLeakyRelu: return z > T(0) ? T(1) : T(0.01);
        case kTanh: return T(1) - h * h;
        case kSigmoid: return h * (T(1) - h);
        case kGelu: {
            const T pdf = T(0.3989422804014327) * dev_exp(T(-0.5) * z * z);
            return dev_normal_cdf(z) + z * pdf;
        }
        default: {
            const T u = dev_gelu_tanh_inner(z);
            const T du = T(0.7978845608028654) * (T(1) + T(3 * 0.044715) * z * z);
            return dev_sigmoid(T(2) * u) * (T(1) + T(2) * z * dev_sigmoid(T(-2) * u) * du);
        }
    }
}

// body(std::integral_constant<int, act>{}) for the run-time code `act`: inside body the
// activation is a constant, so that dev_activate(act.value, z) folds to its one formula. The
// fused kernels' forward epilogue otherwise branched (an indirect jump) twice per element:
// about 260 instructions per warp and 4 x 4 block of outputs on tiny, against about 40 for
// ReLU with the branch hoisted (Nsight Compute, H100, session 9's profile). Each case
// instantiates body, so the code grows by one copy of it per activation; only one runs.
template <class Body>
__device__ __forceinline__ void with_activation(int act, Body&& body) {
    switch (act) {
        case kIdentity: body(std::integral_constant<int, kIdentity>{}); break;
        case kRelu: body(std::integral_constant<int, kRelu>{}); break;
        case kLeakyRelu: body(std::integral_constant<int, kLeakyRelu>{}); break;
        case kTanh: body(std::integral_constant<int, kTanh>{}); break;
        case kSigmoid: body(std::integral_constant<int, kSigmoid>{}); break;
        case kGelu: body(std::integral_constant<int, kGelu>{}); break;
        default: body(std::integral_constant<int, kGeluTanh>{}); break;
    }
}

}  // namespace fusedmlp::cuda
