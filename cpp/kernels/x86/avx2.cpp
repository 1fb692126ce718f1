// The dense kernels for AVX2 + FMA: 6 x 16 float / 6 x 8 double register tiles (12 of the 16
// ymm registers accumulate), tails through vmaskmov. Compiled with -mavx2 -mfma and used only
// when the CPU reports both (isa.cpp).
#include <immintrin.h>

#include "../gemm_driver.hpp"
#include "transpose_avx.hpp"

namespace fusedmlp {
namespace {

struct Avx2Float {
    using T = float;
    using Reg = __m256;
    static constexpr std::size_t W = 8;
    static constexpr std::size_t MR = 6;
    static __m256i mask(std::size_t n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static Reg zero() { return _mm256_setzero_ps(); }
    static Reg set1(T v) { return _mm256_set1_ps(v); }
    static Reg load(const T* p) { return _mm256_loadu_ps(p); }
    static Reg load_n(const T* p, std::size_t n) { return _mm256_maskload_ps(p, mask(n)); }
    static void store(T* p, Reg r) { _mm256_storeu_ps(p, r); }
    static void store_n(T* p, Reg r, std::size_t n) { _mm256_maskstore_ps(p, mask(n), r); }
    static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
    static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
    static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
    static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
    static Reg select_positive(Reg z, Reg a, Reg b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(z, zero(), _CMP_GT_OQ)); }
    static bool all_finite(Reg r) {
        return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(r, r), zero(), _CMP_EQ_OQ)) == 0xFF;
    }
    static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
    static Reg min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
    static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
    static Reg abs(Reg a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
    static Reg select_negative(Reg z, Reg a, Reg b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(z, zero(), _CMP_LT_OQ)); }
    static Reg pow2(Reg t) {
        const __m256i bits = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
        return _mm256_castsi256_ps(_mm256_add_epi32(bits, _mm256_set1_epi32(0x3F800000)));
    }
    static constexpr std::size_t kTransposeBlock = 8;
    static void transpose_block(const T* src, std::size_t ld, T* dst, std::size_t dst_stride) {
        transpose_8x8_f32(src, ld, dst, dst_stride);
    }
};

struct Avx2Double {
    using T = double;
    using Reg = __m256d;
    static constexpr std::size_t W = 4;
    static constexpr std::size_t MR = 6;
    static __m256i mask(std::size_t n) {
        return _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(n)), _mm256_setr_epi64x(0, 1, 2, 3));
    }
    static Reg zero() { return _mm256_setzero_pd(); }
    static Reg set1(T v) { return _mm256_set1_pd(v); }
    static Reg load(const T* p) { return _mm256_loadu_pd(p); }
    static Reg load_n(const T* p, std::size_t n) { return _mm256_maskload_pd(p, mask(n)); }
    static void store(T* p, Reg r) { _mm256_storeu_pd(p, r); }
    static void store_n(T* p, Reg r, std::size_t n) { _mm256_maskstore_pd(p, mask(n), r); }
    static Reg add(Reg a, Reg b) { return _mm256_add_pd(a, b); }
    static Reg sub(Reg a, Reg b) { return _mm256_sub_pd(a, b); }
    static Reg mul(Reg a, Reg b) { return _mm256_mul_pd(a, b); }
    static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
    static Reg select_positive(Reg z, Reg a, Reg b) { return _mm256_blendv_pd(b, a, _mm256_cmp_pd(z, zero(), _CMP_GT_OQ)); }
    static bool all_finite(Reg r) {
        return _mm256_movemask_pd(_mm256_cmp_pd(_mm256_sub_pd(r, r), zero(), _CMP_EQ_OQ)) == 0xF;
    }
    static constexpr std::size_t kTransposeBlock = 4;
    static void transpose_block(const T* src, std::size_t ld, T* dst, std::size_t dst_stride) {
        transpose_4x4_f64(src, ld, dst, dst_stride);
    }
};

}  // namespace

const DenseKernels<float>& avx2_dense_kernels_f32() { return PackedGemm<Avx2Float>::table(); }
const DenseKernels<double>& avx2_dense_kernels_f64() { return PackedGemm<Avx2Double>::table(); }

}  // namespace fusedmlp
