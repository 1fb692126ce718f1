// The dense kernels for AVX-512 (F, DQ, VL): 8 x 32 float / 8 x 16 double register tiles, tails
// through lane masks. Compiled with -mavx512f -mavx512dq -mavx512vl -mfma and used only when
// the CPU reports those (isa.cpp).
#include <immintrin.h>

#include "../gemm_driver.hpp"
#include "transpose_avx.hpp"

namespace fusedmlp {
namespace {

struct Avx512Float {
    using T = float;
    using Reg = __m512;
    static constexpr std::size_t W = 16;
    static constexpr std::size_t MR = 8;
    static __mmask16 mask(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
    static Reg zero() { return _mm512_setzero_ps(); }
    static Reg set1(T v) { return _mm512_set1_ps(v); }
    static Reg load(const T* p) { return _mm512_loadu_ps(p); }
    static Reg load_n(const T* p, std::size_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
    static void store(T* p, Reg r) { _mm512_storeu_ps(p, r); }
    static void store_n(T* p, Reg r, std::size_t n) { _mm512_mask_storeu_ps(p, mask(n), r); }
    static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
    static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
    static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
    static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
    static Reg select_positive(Reg z, Reg a, Reg b) {
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, zero(), _CMP_GT_OQ), b, a);
    }
    static bool all_finite(Reg r) { return _mm512_cmp_ps_mask(_mm512_sub_ps(r, r), zero(), _CMP_EQ_OQ) == 0xFFFF; }
    static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
    static Reg min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
    static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
    static Reg abs(Reg a) { return _mm512_abs_ps(a); }
    static Reg select_negative(Reg z, Reg a, Reg b) {
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, zero(), _CMP_LT_OQ), b, a);
    }
    static Reg pow2(Reg t) {
        const __m512i bits = _mm512_slli_epi32(_mm512_castps_si512(t), 23);
        return _mm512_castsi512_ps(_mm512_add_epi32(bits, _mm512_set1_epi32(0x3F800000)));
    }
    static constexpr std::size_t kTransposeBlock = 8;
    static void transpose_block(const T* src, std::size_t ld, T* dst, std::size_t dst_stride) {
        transpose_8x8_f32(src, ld, dst, dst_stride);
    }
};

struct Avx512Double {
    using T = double;
    using Reg = __m512d;
    static constexpr std::size_t W = 8;
    static constexpr std::size_t MR = 8;
    static __mmask8 mask(std::size_t n) { return static_cast<__mmask8>((1u << n) - 1u); }
    static Reg zero() { return _mm512_setzero_pd(); }
    static Reg set1(T v) { return _mm512_set1_pd(v); }
    static Reg load(const T* p) { return _mm512_loadu_pd(p); }
    static Reg load_n(const T* p, std::size_t n) { return _mm512_maskz_loadu_pd(mask(n), p); }
    static void store(T* p, Reg r) { _mm512_storeu_pd(p, r); }
    static void store_n(T* p, Reg r, std::size_t n) { _mm512_mask_storeu_pd(p, mask(n), r); }
    static Reg add(Reg a, Reg b) { return _mm512_add_pd(a, b); }
    static Reg sub(Reg a, Reg b) { return _mm512_sub_pd(a, b); }
    static Reg mul(Reg a, Reg b) { return _mm512_mul_pd(a, b); }
    static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
    static Reg select_positive(Reg z, Reg a, Reg b) {
        return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(z, zero(), _CMP_GT_OQ), b, a);
    }
    static bool all_finite(Reg r) { return _mm512_cmp_pd_mask(_mm512_sub_pd(r, r), zero(), _CMP_EQ_OQ) == 0xFF; }
    static constexpr std::size_t kTransposeBlock = 4;
    static void transpose_block(const T* src, std::size_t ld, T* dst, std::size_t dst_stride) {
        transpose_4x4_f64(src, ld, dst, dst_stride);
    }
};

}  // namespace

const DenseKernels<float>& avx512_dense_kernels_f32() { return PackedGemm<Avx512Float>::table(); }
const DenseKernels<double>& avx512_dense_kernels_f64() { return PackedGemm<Avx512Double>::table(); }

}  // namespace fusedmlp
