// float32 activations on whole vectors, written over gemm_driver.hpp's vector type V (which
// adds, for float: div; min and max returning the second operand when either is NaN, as
// x86 does; abs; select_negative(z, a, b) = z < 0 ? a : b; and pow2, used in exp) and compiled
// per ISA with it. Accuracy (float32, checked against float64): exp within 2 ulp-ish (Cephes
// polynomial), tanh within 4e-7 absolute and relative (Eigen's rational approximation), the
// normal CDF within 3e-7 absolute (Abramowitz & Stegun 7.1.26) - well inside DESIGN.md's 1e-4.
// float64 keeps the scalar libm functions of activation.hpp: these could not promise 1e-10.
#pragma once

#include "activation.hpp"

namespace fusedmlp {
namespace {

template <class V>
struct VectorMath {
    using Reg = typename V::Reg;

    static Reg poly(Reg, Reg c0) { return c0; }
    template <class... Rest>
    static Reg poly(Reg x, Reg c0, Reg c1, Rest... rest) {
        return V::fma(poly(x, c1, rest...), x, c0);  // c0 + x (c1 + x (...))
    }
    static Reg c(float value) { return V::set1(value); }

    // e^x, subnormal or 0 where float32's is: below -87.3 the argument is shifted up by 32 ln 2
    // and the result scaled by 2^-32, so that it rounds to a subnormal (or to 0) in one multiply
    // instead of stopping at the smallest normal number (a saturated sigmoid would then be
    // 1e-38 where the reference has 0).
    static Reg exp(Reg x) {
        const Reg below = V::add(x, c(87.3f));  // negative where x < -87.3
        const Reg e = exp_normal(V::select_negative(below, V::add(x, c(22.1807097779182499f)), x));
        return V::select_negative(below, V::mul(e, c(2.3283064365386963e-10f)), e);
    }

    // e^x for x >= -87.3 (clamped there and at 88.3).
    static Reg exp_normal(Reg x) {
        x = V::min(c(88.3f), V::max(c(-87.3f), x));  // NaN (second operand) passes through
        const Reg magic = c(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
        const Reg t = V::fma(x, c(1.44269504088896341f), magic);
        const Reg n = V::sub(t, magic);
        Reg r = V::sub(x, V::mul(n, c(0.693359375f)));
        r = V::sub(r, V::mul(n, c(-2.12194440e-4f)));
        const Reg p = poly(r, c(5.0000001201e-1f), c(1.6666665459e-1f), c(4.1665795894e-2f), c(8.3334519073e-3f),
                           c(1.3981999507e-3f), c(1.9875691500e-4f));
        const Reg e = V::add(V::fma(V::mul(p, r), r, r), c(1.0f));
        return V::mul(e, V::pow2(t));  // pow2(t) = 2^n from the integer bits t carries
    }

    static Reg tanh(Reg x) {
        const Reg limit = c(7.90531110763549805f);
        const Reg xc = V::min(limit, V::max(V::sub(V::zero(), limit), x));
        const Reg x2 = V::mul(xc, xc);
        const Reg p = V::mul(xc, poly(x2, c(4.89352455891786e-03f), c(6.37261928875436e-04f), c(1.48572235717979e-05f),
                                      c(5.12229709037114e-08f), c(-8.60467152213735e-11f), c(2.00018790482477e-13f),
                                      c(-2.76076847742355e-16f)));
        const Reg q = poly(x2, c(4.89352518554385e-03f), c(2.26843463243900e-03f), c(1.18534705686654e-04f),
                           c(1.19825839466702e-06f));
        // Tiny |x|: tanh x = x to float precision (and keeps -0.0).
        const Reg body = V::select_negative(V::sub(V::abs(x), c(0.0004f)), x, V::div(p, q));
        // From |x| = 9.01 on, float32 tanh x rounds to exactly +-1; the clamped approximation
        // would stop 4 ulp short, and 1 - tanh^2 of a saturated unit would not be 0.
        const Reg unit = V::select_negative(x, c(-1.0f), c(1.0f));
        return V::select_negative(V::sub(V::abs(x), c(9.01f)), body, unit);
    }

    // 1 / (1 + e^-z) from e = e^-|z|: no overflow, no cancellation.
    static Reg sigmoid(Reg z) {
        const Reg e = exp(V::sub(V::zero(), V::abs(z)));
        const Reg d = V::add(c(1.0f), e);
        return V::select_negative(z, V::div(e, d), V::div(c(1.0f), d));
    }

    // Phi(z) = 0.5 erfc(-z / sqrt 2); the tail 0.5 erfc(|z| / sqrt 2) is computed directly, so
    // Phi of a negative z has no cancellation.
    static Reg normal_cdf(Reg z) {
        const Reg x = V::mul(V::abs(z), c(static_cast<float>(kInvSqrt2)));
        const Reg t = V::div(c(1.0f), V::fma(c(0.3275911f), x, c(1.0f)));
        const Reg p = poly(t, c(0.254829592f), c(-0.284496736f), c(1.421413741f), c(-1.453152027f), c(1.061405429f));
        const Reg tail = V::mul(V::mul(c(0.5f), V::mul(p, t)), exp(V::sub(V::zero(), V::mul(x, x))));
        return V::select_negative(z, tail, V::sub(c(1.0f), tail));
    }

    static Reg gelu_tanh_inner(Reg z) {
        const Reg z3 = V::mul(V::mul(z, z), z);
        return V::mul(c(static_cast<float>(kSqrt2OverPi)), V::add(z, V::mul(c(static_cast<float>(kGeluTanhCoef)), z3)));
    }

    static Reg activate(Activation act, Reg z) {
        switch (act) {
            case Activation::identity: return z;
            case Activation::relu: return V::select_positive(z, z, V::zero());
            case Activation::leaky_relu: return V::select_positive(z, z, V::mul(z, c(static_cast<float>(kLeakyReluSlope))));
            case Activation::tanh: return tanh(z);
            case Activation::sigmoid: return sigmoid(z);
            case Activation::gelu: return V::mul(z, normal_cdf(z));
            case Activation::gelu_tanh: break;
        }
        return V::mul(z, sigmoid(V::mul(c(2.0f), gelu_tanh_inner(z))));
    }

    // f'(z) for the activations whose derivative needs z alone (gelu, gelu_tanh).
    static Reg gelu_derivative(Activation act, Reg z) {
        const Reg one = c(1.0f);
        if (act == Activation::gelu) {
            const Reg pdf = V::mul(c(static_cast<float>(kInvSqrt2Pi)), exp(V::mul(c(-0.5f), V::mul(z, z))));
            return V::add(normal_cdf(z), V::mul(z, pdf));
        }
        const Reg u = gelu_tanh_inner(z);
        const Reg du = V::mul(c(static_cast<float>(kSqrt2OverPi)),
                              V::add(one, V::mul(c(static_cast<float>(3 * kGeluTanhCoef)), V::mul(z, z))));
        const Reg two_u = V::mul(c(2.0f), u);
        const Reg inner = V::mul(V::mul(V::mul(c(2.0f), z), sigmoid(V::sub(V::zero(), two_u))), du);
        return V::mul(sigmoid(two_u), V::add(one, inner));
    }
};

}  // namespace
}  // namespace fusedmlp
