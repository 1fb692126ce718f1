// The packed GEMM and its epilogues, written once over a vector type V and compiled once per
// instruction set: gemm_generic.cpp and cpp/kernels/x86/*.cpp include this with their own V and
// their own compiler flags. Everything here has internal linkage (anonymous namespace, and V is
// internal to its file), so no function compiled for one ISA can be linked into another's
// caller; the only calls out are to baseline-compiled functions (activation.cpp, threads.cpp).
//
// V provides: T, Reg, W (lanes), MR (rows per tile), zero, set1, load, load_n (first n lanes,
// rest 0), store, store_n (first n lanes), add, sub, mul, fma(a, b, c) = a b + c,
// select_positive(z, a, b) = z > 0 ? a : b per lane, all_finite.
#pragma once

#include <cstddef>
#include <type_traits>

#include "activation.hpp"
#include "dense.hpp"
#include "gemm.hpp"
#include "threads.hpp"
#include "vector_math.hpp"


// Epilogues inlined into their tile keep the accumulators in registers.
#if defined(__GNUC__) || defined(__clang__)
#define FUSEDMLP_INLINE inline __attribute__((always_inline))
#else
#define FUSEDMLP_INLINE inline
#endif

namespace fusedmlp {
namespace {

inline std::size_t smaller(std::size_t a, std::size_t b) { return a < b ? a : b; }

template <class V>
struct PackedGemm {
    using T = typename V::T;
    using Reg = typename V::Reg;
    static constexpr std::size_t W = V::W;
    static constexpr std::size_t MR = V::MR;
    static constexpr std::size_t NV = 2;  // vectors per tile row
    static constexpr std::size_t NR = NV * W;

    static Reg load_cols(const T* p, std::size_t cols) { return cols >= W ? V::load(p) : V::load_n(p, cols); }
    static void store_cols(T* p, Reg r, std::size_t cols) {
        if (cols >= W) {
            V::store(p, r);
        } else {
            V::store_n(p, r, cols);
        }
    }

    // How a tile reads A(r, p): a[p * stride + r] (a packed tile, stride MR, or a column-major
    // A read in place) or a[r * stride + p] (a row-major A read in place).
    enum class AccessA { columns, rows };

    // One M x N-vector tile of A B over all k, B packed as k rows of NR values; then the
    // epilogue on the registers.
    template <std::size_t M, std::size_t N, AccessA kAccess, class Epilogue>
    static void tile(std::size_t k, const T* a, std::size_t stride, const T* b, std::size_t i0, std::size_t j0,
                     std::size_t cols, const Epilogue& epilogue) {
        Reg acc[M][N];
        for (std::size_t r = 0; r < M; ++r)
            for (std::size_t v = 0; v < N; ++v) acc[r][v] = V::zero();
        if constexpr (kAccess == AccessA::columns) {
            for (std::size_t p = 0; p < k; ++p) {
                const T* ap = a + p * stride;
                Reg bv[N];
                for (std::size_t v = 0; v < N; ++v) bv[v] = V::load(b + p * NR + v * W);
                for (std::size_t r = 0; r < M; ++r) {
                    const Reg ar = V::set1(ap[r]);
                    for (std::size_t v = 0; v < N; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
                }
            }
        } else {
            const T* row[M];
            for (std::size_t r = 0; r < M; ++r) row[r] = a + r * stride;
            for (std::size_t p = 0; p < k; ++p) {
                Reg bv[N];
                for (std::size_t v = 0; v < N; ++v) bv[v] = V::load(b + p * NR + v * W);
                for (std::size_t r = 0; r < M; ++r) {
                    const Reg ar = V::set1(row[r][p]);
                    for (std::size_t v = 0; v < N; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
                }
            }
        }
        epilogue.template finish<M, N>(i0, j0, cols, acc);
    }

    // tile<rows, ...> for a run-time rows in [1, M].
    template <std::size_t M, std::size_t N, AccessA kAccess, class Epilogue>
    static void tile_rows(std::size_t rows, std::size_t k, const T* a, std::size_t stride, const T* b,
                          std::size_t i0, std::size_t j0, std::size_t cols, const Epilogue& epilogue) {
        if constexpr (M == 1) {
            tile<1, N, kAccess>(k, a, stride, b, i0, j0, cols, epilogue);
        } else if (rows == M) {
            tile<M, N, kAccess>(k, a, stride, b, i0, j0, cols, epilogue);
        } else {
            tile_rows<M - 1, N, kAccess>(rows, k, a, stride, b, i0, j0, cols, epilogue);
        }
    }

    // C (m, n) = A (m, k) B (k, n) through epilogue. A is row-major with row stride `stride`,
    // or column-major with column stride `stride` when Epilogue::kColumnMajorA. pack_b(j0,
    // cols, k, dst, reduce) writes columns j0 .. j0 + cols of B as k rows of NR values (zero
    // beyond cols); with reduce it also does the column reductions, which exactly one thread
    // does for each column.
    //
    // A is read in place, except a row-major A whose row stride is a multiple of 2 KiB, when
    // more than one column panel reuses it: its rows would share a few L1 cache sets, so it is
    // packed into tiles of MR rows.
    //
    // Each thread takes a range of column panels (or of row tiles, when that divides more
    // evenly), packs what it multiplies into its own scratch (every thread packs all of B when
    // rows are split: a few percent of the work, and no barrier) and runs its tiles.
    template <class PackB, class Epilogue>
    struct Product {
        std::size_t m, n, k;
        const T* a;
        std::size_t stride;
        const PackB* pack_b;
        const Epilogue* epilogue;
        bool split_columns;
        bool pack_a;

        static void run_part(void* self, int id, int count) {
            static_cast<const Product*>(self)->part(static_cast<std::size_t>(id), static_cast<std::size_t>(count));
        }

        void part(std::size_t id, std::size_t count) const {
            const std::size_t panels = (n + NR - 1) / NR;
            const std::size_t row_tiles = (m + MR - 1) / MR;
            const std::size_t own_q0 = panels * id / count, own_q1 = panels * (id + 1) / count;
            std::size_t q0 = 0, q1 = panels, t0 = 0, t1 = row_tiles;
            if (split_columns) {
                q0 = own_q0;
                q1 = own_q1;
            } else {
                t0 = row_tiles * id / count;
                t1 = row_tiles * (id + 1) / count;
            }
            const std::size_t depth = k > 0 ? k : 1;
            const std::size_t a_tiles = pack_a ? t1 - t0 : 0;
            T* packed_b = static_cast<T*>(thread_scratch(((q1 - q0) * NR + a_tiles * MR) * depth * sizeof(T)));
            for (std::size_t q = q0; q < q1; ++q)
                (*pack_b)(q * NR, smaller(NR, n - q * NR), k, packed_b + (q - q0) * NR * k, own_q0 <= q && q < own_q1);
            if (pack_a) {
                T* packed_a = packed_b + (q1 - q0) * NR * depth;
                for (std::size_t it = t0; it < t1; ++it)
                    pack_row_major_a(a, stride, it * MR, smaller(MR, m - it * MR), k, packed_a + (it - t0) * MR * k);
                compute<AccessA::columns>(packed_a, MR * k, t0, MR, packed_b, q0, q1, t0, t1);
            } else if constexpr (Epilogue::kColumnMajorA) {
                compute<AccessA::columns>(a, MR, 0, stride, packed_b, q0, q1, t0, t1);
            } else {
                compute<AccessA::rows>(a, MR * stride, 0, stride, packed_b, q0, q1, t0, t1);
            }
        }

        // Tiles of panels q0 .. q1 and row tiles t0 .. t1; row tile it of A starts at
        // a + (it - a_first_tile) * tile_step; B is packed from panel q0 on.
        template <AccessA kAccess>
        void compute(const T* a, std::size_t tile_step, std::size_t a_first_tile, std::size_t a_stride,
                     const T* packed_b, std::size_t q0, std::size_t q1, std::size_t t0, std::size_t t1) const {
            for (std::size_t q = q0; q < q1; ++q) {
                const std::size_t j0 = q * NR;
                const std::size_t cols = smaller(NR, n - j0);
                const T* b = packed_b + (q - q0) * NR * k;
                for (std::size_t it = t0; it < t1; ++it) {
                    const std::size_t i0 = it * MR;
                    const std::size_t rows = smaller(MR, m - i0);
                    const T* a_tile = a + (it - a_first_tile) * tile_step;
                    if (cols > W) {
                        tile_rows<MR, 2, kAccess>(rows, k, a_tile, a_stride, b, i0, j0, cols, *epilogue);
                    } else {
                        tile_rows<MR, 1, kAccess>(rows, k, a_tile, a_stride, b, i0, j0, cols, *epilogue);
                    }
                }
            }
        }
    };

    template <class PackB, class Epilogue>
    static void run(std::size_t m, std::size_t n, std::size_t k, const T* a, std::size_t stride, const PackB& pack_b,
                    const Epilogue& epilogue) {
        if (n == 0 || m == 0) return;
        const std::size_t panels = (n + NR - 1) / NR;
        const std::size_t row_tiles = (m + MR - 1) / MR;
        const int threads = threads_for(m * n * k, panels > row_tiles ? panels : row_tiles);
        // Split whichever dimension divides more evenly between the threads; columns on a tie.
        const std::size_t t = static_cast<std::size_t>(threads);
        const bool split_columns = ((panels + t - 1) / t) * row_tiles <= ((row_tiles + t - 1) / t) * panels;
        const bool pack_a = !Epilogue::kColumnMajorA && (stride * sizeof(T)) % 2048 == 0 && panels > 1;
        Product<PackB, Epilogue> product{m, n, k, a, stride, &pack_b, &epilogue, split_columns, pack_a};
        parallel_run(threads, &Product<PackB, Epilogue>::run_part, &product);
    }

    // --- packing ---------------------------------------------------------------------------

    // Rows i0 .. i0 + rows of a row-major A as k columns of MR values (dst[p * MR + r]); rows
    // past `rows` are left unwritten: the tile for fewer rows never reads them. Full tiles go
    // through register transposes where MR is a multiple of the transpose block.
    static void pack_row_major_a(const T* a, std::size_t stride, std::size_t i0, std::size_t rows, std::size_t k,
                                 T* dst) {
        constexpr std::size_t B = V::kTransposeBlock;
        std::size_t p_done = 0;
        if constexpr (MR % B == 0 && B > 1) {
            if (rows == MR) {
                p_done = k / B * B;
                for (std::size_t pb = 0; pb < p_done; pb += B)
                    for (std::size_t rb = 0; rb < MR; rb += B)
                        V::transpose_block(a + (i0 + rb) * stride + pb, stride, dst + pb * MR + rb, MR);
            }
        }
        constexpr std::size_t kBlock = 64;  // columns per pass, so each row is read a line at a time
        for (std::size_t p0 = p_done; p0 < k; p0 += kBlock) {
            const std::size_t p1 = smaller(k, p0 + kBlock);
            for (std::size_t r = 0; r < rows; ++r) {
                const T* src = a + (i0 + r) * stride;
                for (std::size_t p = p0; p < p1; ++p) dst[p * MR + r] = src[p];
            }
        }
    }

    // B row-major with row stride ld: a copy into panels, optionally summing each column.
    static void pack_rows(const T* src, std::size_t ld, std::size_t j0, std::size_t cols, std::size_t k, T* dst,
                          Reg* column_sums) {
        for (std::size_t v = 0; v < NV; ++v) {
            T* d = dst + v * W;
            const std::size_t lanes = cols > v * W ? cols - v * W : 0;
            if (lanes == 0) {
                for (std::size_t p = 0; p < k; ++p) V::store(d + p * NR, V::zero());
                if (column_sums != nullptr) column_sums[v] = V::zero();
                continue;
            }
            const T* s = src + j0 + v * W;
            Reg sum = V::zero();
            if (lanes >= W) {
                for (std::size_t p = 0; p < k; ++p) {
                    const Reg x = V::load(s + p * ld);
                    sum = V::add(sum, x);
                    V::store(d + p * NR, x);
                }
            } else {
                for (std::size_t p = 0; p < k; ++p) {
                    const Reg x = V::load_n(s + p * ld, lanes);
                    sum = V::add(sum, x);
                    V::store(d + p * NR, x);
                }
            }
            if (column_sums != nullptr) column_sums[v] = sum;
        }
    }

    // B(p, j) = src[j * ld + p]: B is stored transposed (W when computing dz W^T). Copied in
    // square blocks transposed in registers (V::transpose_block), the edges element by element.
    static void pack_transposed(const T* src, std::size_t ld, std::size_t j0, std::size_t cols, std::size_t k,
                                T* dst) {
        constexpr std::size_t B = V::kTransposeBlock;
        const std::size_t j_blocks = cols / B * B, p_blocks = k / B * B;
        for (std::size_t jb = 0; jb < j_blocks; jb += B) {
            const T* s = src + (j0 + jb) * ld;
            for (std::size_t pb = 0; pb < p_blocks; pb += B) V::transpose_block(s + pb, ld, dst + pb * NR + jb, NR);
            for (std::size_t j = jb; j < jb + B; ++j)
                for (std::size_t p = p_blocks; p < k; ++p) dst[p * NR + j] = src[(j0 + j) * ld + p];
        }
        for (std::size_t j = j_blocks; j < cols; ++j)
            for (std::size_t p = 0; p < k; ++p) dst[p * NR + j] = src[(j0 + j) * ld + p];
        for (std::size_t p = 0; p < k; ++p)
            for (std::size_t j = cols; j < NR; ++j) dst[p * NR + j] = T(0);
    }

    // --- epilogues -------------------------------------------------------------------------

    // float32 evaluates every activation on the registers; float64 does so for the piecewise
    // linear ones and hands the others to the scalar libm code of activation.cpp, row by row.
    static constexpr bool kVectorMath = std::is_same_v<T, float>;

    static bool vector_activation(Activation act) {
        return kVectorMath || act == Activation::identity || act == Activation::relu ||
               act == Activation::leaky_relu;
    }

    struct ForwardEpilogue {
        static constexpr bool kColumnMajorA = false;
        const T* b;
        T* z;
        T* h;
        std::size_t ld;
        Activation act;

        template <std::size_t M, std::size_t N>
        FUSEDMLP_INLINE void finish(std::size_t i0, std::size_t j0, std::size_t cols, Reg (&acc)[M][N]) const {
            Reg bias[N];
            for (std::size_t v = 0; v < N; ++v) bias[v] = load_cols(b + j0 + v * W, cols - v * W);
            const bool in_registers = vector_activation(act);
            const bool store_h = h != z || act != Activation::identity;
            for (std::size_t r = 0; r < M; ++r) {
                T* z_row = z + (i0 + r) * ld + j0;
                T* h_row = h + (i0 + r) * ld + j0;
                for (std::size_t v = 0; v < N; ++v) {
                    const Reg zv = V::add(acc[r][v], bias[v]);
                    store_cols(z_row + v * W, zv, cols - v * W);
                    if (in_registers && store_h) store_cols(h_row + v * W, activate(act, zv), cols - v * W);
                }
                if (!in_registers) activation_forward(act, cols, z_row, h_row);
            }
        }
    };

    static Reg activate(Activation act, Reg z) {
        if constexpr (kVectorMath) {
            return VectorMath<V>::activate(act, z);
        } else {
            if (act == Activation::relu) return V::select_positive(z, z, V::zero());
            if (act == Activation::leaky_relu) return V::select_positive(z, z, V::mul(z, V::set1(T(kLeakyReluSlope))));
            return z;
        }
    }

    struct InputGradEpilogue {
        static constexpr bool kColumnMajorA = false;
        T* out;
        const T* z;
        const T* h;
        std::size_t ld;
        Activation act;

        template <std::size_t M, std::size_t N>
        FUSEDMLP_INLINE void finish(std::size_t i0, std::size_t j0, std::size_t cols, Reg (&acc)[M][N]) const {
            const Reg one = V::set1(T(1));
            const Reg zero = V::zero();
            const Reg slope = V::set1(T(kLeakyReluSlope));
            for (std::size_t r = 0; r < M; ++r) {
                const std::size_t at = (i0 + r) * ld + j0;
                for (std::size_t v = 0; v < N; ++v) {
                    const std::size_t lanes = cols - v * W;
                    Reg d = acc[r][v];
                    switch (act) {
                        case Activation::relu:
                            d = V::mul(d, V::select_positive(load_cols(z + at + v * W, lanes), one, zero));
                            break;
                        case Activation::leaky_relu:
                            d = V::mul(d, V::select_positive(load_cols(z + at + v * W, lanes), one, slope));
                            break;
                        case Activation::tanh: {
                            const Reg hv = load_cols(h + at + v * W, lanes);
                            d = V::mul(d, V::sub(one, V::mul(hv, hv)));
                            break;
                        }
                        case Activation::sigmoid: {
                            const Reg hv = load_cols(h + at + v * W, lanes);
                            d = V::mul(d, V::mul(hv, V::sub(one, hv)));
                            break;
                        }
                        case Activation::identity:
                            break;
                        default:  // gelu, gelu_tanh
                            if constexpr (kVectorMath)
                                d = V::mul(d, VectorMath<V>::gelu_derivative(act, load_cols(z + at + v * W, lanes)));
                            break;
                    }
                    store_cols(out + at + v * W, d, lanes);
                }
                if (!kVectorMath && (act == Activation::gelu || act == Activation::gelu_tanh)) {
                    alignas(64) T derivative[NR];
                    activation_derivative(act, cols, z + at, h + at, derivative);
                    for (std::size_t j = 0; j < cols; ++j) out[at + j] *= derivative[j];
                }
            }
        }
    };

    struct StoreEpilogue {
        static constexpr bool kColumnMajorA = true;
        T* c;
        std::size_t ld;

        template <std::size_t M, std::size_t N>
        FUSEDMLP_INLINE void finish(std::size_t i0, std::size_t j0, std::size_t cols, Reg (&acc)[M][N]) const {
            for (std::size_t r = 0; r < M; ++r)
                for (std::size_t v = 0; v < N; ++v) store_cols(c + (i0 + r) * ld + j0 + v * W, acc[r][v], cols - v * W);
        }
    };

    // sgd.hpp's per-element rule on vectors: g = grad + decay param; buf = g (first step) or
    // mu buf + g; g = g + mu buf (nesterov) or buf; param - rate g. Products and sums are
    // rounded separately, as the reference does.
    struct SgdRule {
        Reg rate, mu, decay;
        bool has_decay, has_momentum, nesterov, first_step;

        SgdRule(double lr, const SgdConfig& config, bool first, bool with_decay)
            : rate(V::set1(T(lr))), mu(V::set1(T(config.momentum))),
              decay(V::set1(with_decay ? T(config.weight_decay) : T(0))),
              has_decay(with_decay && config.weight_decay != 0), has_momentum(config.momentum != 0),
              nesterov(config.nesterov), first_step(first) {}

        // Updates `lanes` values at offset `at`; returns whether the new params are finite.
        bool apply(Reg grad, const T* param_in, const T* buf_in, T* param_out, T* buf_out, std::size_t at,
                   std::size_t lanes) const {
            const Reg param = load_cols(param_in + at, lanes);
            Reg g = has_decay ? V::add(grad, V::mul(decay, param)) : grad;
            if (has_momentum) {
                const Reg b = first_step ? g : V::add(V::mul(mu, load_cols(buf_in + at, lanes)), g);
                store_cols(buf_out + at, b, lanes);
                g = nesterov ? V::add(g, V::mul(mu, b)) : b;
            }
            const Reg updated = V::sub(param, V::mul(rate, g));
            store_cols(param_out + at, updated, lanes);
            return V::all_finite(updated);
        }
    };

    struct SgdEpilogue {
        static constexpr bool kColumnMajorA = true;
        const DenseSgdParams<T>* params;
        const SgdRule* rule;
        std::size_t ld;
        int* nonfinite;

        template <std::size_t M, std::size_t N>
        FUSEDMLP_INLINE void finish(std::size_t i0, std::size_t j0, std::size_t cols, Reg (&acc)[M][N]) const {
            bool finite = true;
            for (std::size_t r = 0; r < M; ++r)
                for (std::size_t v = 0; v < N; ++v)
                    finite &= rule->apply(acc[r][v], params->w_in, params->w_momentum_in, params->w_out,
                                          params->w_momentum_out, (i0 + r) * ld + j0 + v * W, cols - v * W);
            if (!finite) __atomic_store_n(nonfinite, 1, __ATOMIC_RELAXED);
        }
    };

    // --- the dense layer's products ----------------------------------------------------------

    static void forward(const DenseShape& s, const T* x, const T* w, const T* b, Activation act, T* z, T* h) {
        const ForwardEpilogue epilogue{b, z, h, s.fan_out, act};
        run(s.rows, s.fan_out, s.fan_in, x, s.fan_in,
                   [&](std::size_t j0, std::size_t cols, std::size_t k, T* dst, bool) {
                       pack_rows(w, s.fan_out, j0, cols, k, dst, nullptr);
                   },
                   epilogue);
    }

    static void input_grad(const DenseShape& s, const T* dz, const T* w, Activation prev_act, const T* z_prev,
                           const T* h_prev, T* dz_prev) {
        const InputGradEpilogue epilogue{dz_prev, z_prev, h_prev, s.fan_in, prev_act};
        run(s.rows, s.fan_in, s.fan_out, dz, s.fan_out,
                   [&](std::size_t j0, std::size_t cols, std::size_t k, T* dst, bool) {
                       pack_transposed(w, s.fan_out, j0, cols, k, dst);
                   },
                   epilogue);
    }

    // dW(p, j) = sum_i x(i, p) dz(i, j): A = x^T read column-major, B = dz; db reduced while
    // dz is packed.
    static void weight_grads(const DenseShape& s, const T* x, const T* dz, T* dw, T* db) {
        const StoreEpilogue epilogue{dw, s.fan_out};
        run(s.fan_in, s.fan_out, s.rows, x, s.fan_in,
                  [&](std::size_t j0, std::size_t cols, std::size_t k, T* dst, bool reduce) {
                      Reg sums[NV];
                      pack_rows(dz, s.fan_out, j0, cols, k, dst, reduce ? sums : nullptr);
                      if (!reduce) return;
                      for (std::size_t v = 0; v < NV && v * W < cols; ++v) store_cols(db + j0 + v * W, sums[v], cols - v * W);
                  },
                  epilogue);
    }

    static bool weight_grads_sgd(const DenseShape& s, const T* x, const T* dz, const DenseSgdParams<T>& params,
                                 double lr, const SgdConfig& config, bool first_step) {
        const SgdRule weight_rule(lr, config, first_step, true);
        const SgdRule bias_rule(lr, config, first_step, false);
        int nonfinite = 0;
        const SgdEpilogue epilogue{&params, &weight_rule, s.fan_out, &nonfinite};
        run(s.fan_in, s.fan_out, s.rows, x, s.fan_in,
                  [&](std::size_t j0, std::size_t cols, std::size_t k, T* dst, bool reduce) {
                      Reg sums[NV];
                      pack_rows(dz, s.fan_out, j0, cols, k, dst, reduce ? sums : nullptr);
                      if (!reduce) return;
                      bool finite = true;
                      for (std::size_t v = 0; v < NV && v * W < cols; ++v)
                          finite &= bias_rule.apply(sums[v], params.b_in, params.b_momentum_in, params.b_out,
                                                    params.b_momentum_out, j0 + v * W, cols - v * W);
                      if (!finite) __atomic_store_n(&nonfinite, 1, __ATOMIC_RELAXED);
                  },
                  epilogue);
        return nonfinite == 0;
    }

    static const DenseKernels<T>& table() {
        static const DenseKernels<T> kernels{&forward, &input_grad, &weight_grads, &weight_grads_sgd};
        return kernels;
    }
};

}  // namespace
}  // namespace fusedmlp
