// The three products of a dense layer with their fused epilogues, one implementation per
// instruction set (gemm_driver.hpp compiled with that ISA's flags); dense.cpp picks one by
// isa.hpp's active ISA.
//
// Every implementation packs B into panels of NR columns and computes each MR x NR tile of the
// result in registers over the whole k dimension, then applies the epilogue to the registers.
// Threads split rows or columns of the result, never k, so every output element is summed in
// the same order whatever the number of threads.
#pragma once

#include "activation.hpp"
#include "dense.hpp"
#include "isa.hpp"

namespace fusedmlp {

template <class T>
struct DenseKernels {
    // z = x W + b, h = act(z) (h may equal z for identity).
    void (*forward)(const DenseShape& s, const T* x, const T* w, const T* b, Activation act, T* z, T* h);
    // dz_prev = (dz W^T) * act'(z_prev, h_prev).
    void (*input_grad)(const DenseShape& s, const T* dz, const T* w, Activation prev_act, const T* z_prev,
                       const T* h_prev, T* dz_prev);
    // dw = x^T dz, db = column sums of dz.
    void (*weight_grads)(const DenseShape& s, const T* x, const T* dz, T* dw, T* db);
    // dense_weight_grads_sgd of dense.hpp.
    bool (*weight_grads_sgd)(const DenseShape& s, const T* x, const T* dz, const DenseSgdParams<T>& params,
                             double lr, const SgdConfig& config, bool first_step);
};

// The implementation for isa, which must be supported (isa_supported).
template <class T>
const DenseKernels<T>& dense_kernels(Isa isa);

// Per-ISA tables, defined in gemm_generic.cpp and cpp/kernels/x86/*.cpp.
const DenseKernels<float>& generic_dense_kernels_f32();
const DenseKernels<double>& generic_dense_kernels_f64();
#ifdef FUSEDMLP_X86_KERNELS
const DenseKernels<float>& avx2_dense_kernels_f32();
const DenseKernels<double>& avx2_dense_kernels_f64();
const DenseKernels<float>& avx512_dense_kernels_f32();
const DenseKernels<double>& avx512_dense_kernels_f64();
#endif

}  // namespace fusedmlp
