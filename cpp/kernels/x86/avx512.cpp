// The dense kernels for AVX-512 (F, DQ, VL): 8 x 32 float / 8 x 16 double register tiles, tails
// through lane masks. Compiled with -mavx512f -mavx512dq -mavx512vl -mfma and used only when
// the CPU reports those (isa.cpp).
#include <immintrin.h>

#include "../gemm_driver.hpp"

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
    // dst[p * dst_stride + j] = src[j * ld + p] for an 8 x 8 block (unpack, shuffle, permute).
    static constexpr std::size_t kTransposeBlock = 8;
    static void transpose_block(const T* src, std::size_t ld, T* dst, std::size_t dst_stride) {
        __m256 r[8], t[8], u[8];
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
            u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
            u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
            u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
        }
        for (int i = 0; i < 4; ++i) {
            _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
            _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
        }
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
    // dst[p * dst_stride + j] = src[j * ld + p] for a 4 x 4 block.
    static constexpr std::size_t kTransposeBlock = 4;
    static void transpose_block(const T* src, std::size_t ld, T* dst, std::size_t dst_stride) {
        const __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + ld);
        const __m256d r2 = _mm256_loadu_pd(src + 2 * ld), r3 = _mm256_loadu_pd(src + 3 * ld);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(dst + dst_stride, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(dst + 2 * dst_stride, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(dst + 3 * dst_stride, _mm256_permute2f128_pd(t1, t3, 0x31));
    }
};

}  // namespace

const DenseKernels<float>& avx512_dense_kernels_f32() { return PackedGemm<Avx512Float>::table(); }
const DenseKernels<double>& avx512_dense_kernels_f64() { return PackedGemm<Avx512Double>::table(); }

}  // namespace fusedmlp
