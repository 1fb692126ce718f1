#include "gemm.hpp"

namespace fusedmlp {

template <>
const DenseKernels<float>& dense_kernels<float>(Isa isa) {
    switch (isa) {
#ifdef FUSEDMLP_X86_KERNELS
        case Isa::avx512: return avx512_dense_kernels_f32();
        case Isa::avx2: return avx2_dense_kernels_f32();
#endif
        default: return generic_dense_kernels_f32();
    }
}

template <>
const DenseKernels<double>& dense_kernels<double>(Isa isa) {
    switch (isa) {
#ifdef FUSEDMLP_X86_KERNELS
        case Isa::avx512: return avx512_dense_kernels_f64();
        case Isa::avx2: return avx2_dense_kernels_f64();
#endif
        default: return generic_dense_kernels_f64();
    }
}

}  // namespace fusedmlp
