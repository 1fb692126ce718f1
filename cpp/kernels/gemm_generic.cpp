// The dense kernels in portable C++ (baseline instruction set): 4-row tiles over GCC/Clang
// vector extensions, which lower to SSE2 on x86-64 and to NEON or scalar code elsewhere.
#include <cstdint>

#include "gemm_driver.hpp"

namespace fusedmlp {
namespace {

template <class Scalar, std::size_t Lanes>
struct PortableVector {
    using T = Scalar;
    typedef Scalar Reg __attribute__((vector_size(sizeof(Scalar) * Lanes)));
    static constexpr std::size_t W = Lanes;
    static constexpr std::size_t MR = 4;
    static Reg zero() { return Reg{}; }
    static Reg set1(T v) { return Reg{} + v; }
    static Reg load(const T* p) {
        Reg r;
        __builtin_memcpy(&r, p, sizeof(Reg));
        return r;
    }
    static Reg load_n(const T* p, std::size_t n) {
        Reg r = Reg{};
        for (std::size_t i = 0; i < n; ++i) r[i] = p[i];
        return r;
    }
    static void store(T* p, Reg r) { __builtin_memcpy(p, &r, sizeof(Reg)); }
    static void store_n(T* p, Reg r, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) p[i] = r[i];
    }
    static Reg add(Reg a, Reg b) { return a + b; }
    static Reg sub(Reg a, Reg b) { return a - b; }
    static Reg mul(Reg a, Reg b) { return a * b; }
    static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }
    static Reg select_positive(Reg z, Reg a, Reg b) { return z > Reg{} ? a : b; }
    static constexpr std::size_t kTransposeBlock = 1;
    static void transpose_block(const T* src, std::size_t, T* dst, std::size_t) { *dst = *src; }
    // min, max: the second operand when either is NaN, as on x86.
    static Reg div(Reg a, Reg b) { return a / b; }
    static Reg min(Reg a, Reg b) { return a < b ? a : b; }
    static Reg max(Reg a, Reg b) { return a > b ? a : b; }
    static Reg abs(Reg a) { return a < Reg{} ? -a : a; }
    static Reg select_negative(Reg z, Reg a, Reg b) { return z < Reg{} ? a : b; }
    // 2^n for t = n + 1.5 * 2^23 (float only): n sits in the low mantissa bits of t.
    static Reg pow2(Reg t) {
        typedef std::int32_t Bits __attribute__((vector_size(sizeof(Reg))));
        Bits bits;
        __builtin_memcpy(&bits, &t, sizeof(Reg));
        bits = (bits << 23) + 0x3F800000;
        Reg out;
        __builtin_memcpy(&out, &bits, sizeof(Reg));
        return out;
    }
    static bool all_finite(Reg r) {
        const Reg d = r - r;
        for (std::size_t i = 0; i < W; ++i)
            if (!(d[i] == T(0))) return false;
        return true;
    }
};

}  // namespace

const DenseKernels<float>& generic_dense_kernels_f32() { return PackedGemm<PortableVector<float, 4>>::table(); }
const DenseKernels<double>& generic_dense_kernels_f64() { return PackedGemm<PortableVector<double, 2>>::table(); }

}  // namespace fusedmlp
