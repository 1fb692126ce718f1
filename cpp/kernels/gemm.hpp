// Row-major matrix products for the three products of a dense layer, with the epilogue (bias,
// activation, derivative, plain store) applied to each block of results while it is still in
// L1. This is the portable version; the packed, register-blocked per-ISA micro-kernels of the
// performance work slot in behind the same entry points.
//
// Each row of the result is computed by one thread, summing over k in ascending order, so
// results do not depend on the number of threads.
#pragma once

#include <algorithm>
#include <cstddef>

namespace fusedmlp {

// Columns of the result handled per pass: four rows of this many accumulators stay in L1.
inline constexpr std::size_t kGemmColumnBlock = 128;
inline constexpr std::size_t kGemmRowBlock = 4;
// Below this many multiply-adds a product runs on one thread: forking costs more than it saves.
inline constexpr std::size_t kGemmParallelWork = std::size_t(1) << 20;

// For every row i < m of C = A * B, where A(i, p) = a[i * a_row_stride + p * a_col_stride]
// (so a transposed A is a stride swap) and B is a contiguous (k, n) matrix, calls
// epilogue(i, j0, count, acc) with acc[0..count) = C(i, j0 .. j0 + count).
template <class T, class Epilogue>
void gemm_rows(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t a_row_stride,
               std::size_t a_col_stride, const T* b, Epilogue&& epilogue) {
    const std::size_t row_blocks = (m + kGemmRowBlock - 1) / kGemmRowBlock;
    const bool parallel = m * n * k >= kGemmParallelWork && row_blocks > 1;
    const long long block_count = static_cast<long long>(row_blocks);
#pragma omp parallel for schedule(static) if (parallel)
    for (long long block = 0; block < block_count; ++block) {
        alignas(64) T acc[kGemmRowBlock][kGemmColumnBlock];
        const std::size_t i0 = static_cast<std::size_t>(block) * kGemmRowBlock;
        const std::size_t rows = std::min(kGemmRowBlock, m - i0);
        for (std::size_t j0 = 0; j0 < n; j0 += kGemmColumnBlock) {
            const std::size_t cols = std::min(kGemmColumnBlock, n - j0);
            if (rows == kGemmRowBlock) {
                T* c0 = acc[0];
                T* c1 = acc[1];
                T* c2 = acc[2];
                T* c3 = acc[3];
                std::fill_n(&acc[0][0], kGemmRowBlock * kGemmColumnBlock, T(0));
                for (std::size_t p = 0; p < k; ++p) {
                    const T* a_col = a + i0 * a_row_stride + p * a_col_stride;
                    const T a0 = a_col[0];
                    const T a1 = a_col[a_row_stride];
                    const T a2 = a_col[2 * a_row_stride];
                    const T a3 = a_col[3 * a_row_stride];
                    const T* b_row = b + p * n + j0;
                    for (std::size_t j = 0; j < cols; ++j) {
                        const T bj = b_row[j];
                        c0[j] += a0 * bj;
                        c1[j] += a1 * bj;
                        c2[j] += a2 * bj;
                        c3[j] += a3 * bj;
                    }
                }
            } else {
                for (std::size_t r = 0; r < rows; ++r) {
                    T* c = acc[r];
                    std::fill_n(c, cols, T(0));
                    for (std::size_t p = 0; p < k; ++p) {
                        const T ar = a[(i0 + r) * a_row_stride + p * a_col_stride];
                        const T* b_row = b + p * n + j0;
                        for (std::size_t j = 0; j < cols; ++j) c[j] += ar * b_row[j];
                    }
                }
            }
            for (std::size_t r = 0; r < rows; ++r) epilogue(i0 + r, j0, cols, acc[r]);
        }
    }
}

// dst (cols, rows) = src (rows, cols) transposed.
template <class T>
void transpose(std::size_t rows, std::size_t cols, const T* src, T* dst) {
    constexpr std::size_t tile = 32;
    for (std::size_t i0 = 0; i0 < rows; i0 += tile)
        for (std::size_t j0 = 0; j0 < cols; j0 += tile)
            for (std::size_t i = i0; i < std::min(rows, i0 + tile); ++i)
                for (std::size_t j = j0; j < std::min(cols, j0 + tile); ++j) dst[j * rows + i] = src[i * cols + j];
}

}  // namespace fusedmlp
