"""Every instruction-set path of the native dense kernels against the NumPy reference: each ISA
this CPU runs, float32 and float64, every activation, on shapes around each path's register tile
(1, primes, one below / at / above the tile in every dimension); the fused weight-gradient + SGD
kernel; results independent of the thread count; and ISA selection through FUSEDMLP_ISA."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fusedmlp import _native, reference
from conftest import assert_matches_reference

DTYPES = (np.float32, np.float64)
ALL_ISAS = ("generic", "avx2", "avx512")
AVAILABLE = tuple(_native.available_isas())
# Register tile (rows MR, columns NR) and vector lanes W of each path, as set in
# cpp/kernels/gemm_generic.cpp and cpp/kernels/x86/*.cpp (NR is two vectors).
TILES = {
    ("generic", np.float32): (4, 8, 4), ("generic", np.float64): (4, 4, 2),
    ("avx2", np.float32): (6, 16, 8), ("avx2", np.float64): (6, 8, 4),
    ("avx512", np.float32): (8, 32, 16), ("avx512", np.float64): (8, 16, 8),
}


@pytest.fixture(params=AVAILABLE)
def isa(request):
    before = _native.isa()
    _native.set_isa(request.param)
    yield request.param
    _native.set_isa(before)


@pytest.fixture
def threads():
    before = _native.get_num_threads()
    yield _native.set_num_threads
    _native.set_num_threads(before)


def around(n):
    return {max(1, n - 1), n, n + 1}


def tile_shapes(isa, dtype):
    """(rows, fan_in, fan_out) around the tile in each dimension, plus primes and 1."""
    mr, nr, w = TILES[(isa, dtype)]
    rows = sorted({1, 13, 2 * mr + 1} | around(mr))
    # 512 columns: a row stride of 2 KiB or 4 KiB, where row-major A is packed rather than read in place.
    cols = sorted({1, 13, 512} | around(w) | around(nr) | around(2 * nr))
    depths = [1, 2, 17, 64, 512]
    shapes = [(m, 7, 11) for m in rows] + [(5, 7, n) for n in cols] + [(9, k, 29) for k in depths]
    # Row strides of 2 or 4 KiB with several column panels: row-major A is packed (by register
    # transposes for whole tiles), forward (x, stride fan_in) and backward (dz, stride fan_out).
    packed_a = [(2 * mr + 1, 512, 2 * nr + 3), (2 * mr + 1, 2 * nr + 3, 512)]
    return shapes + packed_a + [(mr + 1, 31, nr + 1), (1, 1, 1)]


def check(actual, expected, dtype, what):
    try:
        assert_matches_reference(actual, expected, dtype)
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}") from None


def random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def test_available_isas_are_known_and_include_generic():
    assert "generic" in AVAILABLE
    assert set(AVAILABLE) <= set(ALL_ISAS)
    assert _native.isa() in AVAILABLE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
def test_forward_and_input_grad(isa, dtype, activation):
    rng = np.random.default_rng(10)
    for shape in tile_shapes(isa, dtype):
        rows, fan_in, fan_out = shape
        x, w, b = random(rng, (rows, fan_in), dtype), random(rng, (fan_in, fan_out), dtype), random(rng, fan_out, dtype)
        z, h = _native.dense_forward(x, w, b, activation)
        z_ref, h_ref = reference.dense_forward(x, w, b, activation)
        check(z, z_ref, dtype, f"z for {shape}")
        check(h, h_ref, dtype, f"h for {shape}")

        # The product dz W^T for this layer, with the derivative of a previous layer whose
        # pre-activation has fan_in columns fused in.
        dz = random(rng, (rows, fan_out), dtype)
        z_prev = random(rng, (rows, fan_in), dtype)
        h_prev = reference.activation_forward(activation, z_prev)
        got = _native.dense_input_grad(dz, w, z_prev, h_prev, activation)
        expected = (dz @ w.T) * reference.activation_derivative(activation, z_prev, h_prev)
        check(got, expected, dtype, f"dz_prev for {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_activations_in_the_epilogues_over_wide_ranges(isa, dtype, activation, scale):
    """The activation and its derivative as the epilogues evaluate them (on vector registers for
    float32): z enters through x @ [[1]] + 0, which is exact, and f'(z) through 1 @ [1, ..]^T."""
    rng = np.random.default_rng(15)
    z = (rng.standard_normal(203) * scale).astype(dtype)
    z[:5] = [0.0, -0.0, 1e-30, -1e-30, scale]
    z[5:9] *= 1000  # deep in the tails of tanh, sigmoid and the normal CDF
    _, h = _native.dense_forward(z.reshape(-1, 1), np.ones((1, 1), dtype), np.zeros(1, dtype), activation)
    h_ref = reference.activation_forward(activation, z)
    check(h.ravel(), h_ref, dtype, "f(z)")
    z_row = z.reshape(1, -1)
    h_row = h_ref.reshape(1, -1)
    derivative = _native.dense_input_grad(np.ones((1, 1), dtype), np.ones((z.size, 1), dtype), z_row, h_row, activation)
    check(derivative.ravel(), reference.activation_derivative(activation, z_row, h_row).ravel(), dtype, "f'(z)")


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grads(isa, dtype):
    rng = np.random.default_rng(11)
    for shape in tile_shapes(isa, dtype):
        rows, fan_in, fan_out = shape
        x, w = random(rng, (rows, fan_in), dtype), random(rng, (fan_in, fan_out), dtype)
        z, h = reference.dense_forward(x, w, np.zeros(fan_out, dtype), "tanh")
        dh = random(rng, (rows, fan_out), dtype)
        dx, dw, db = _native.dense_backward(dh, x, w, z, h, "tanh", True)
        dx_ref, dw_ref, db_ref = reference.dense_backward(dh, x, w, z, h, "tanh", True)
        check(dw, dw_ref, dtype, f"dW for {shape}")
        check(db, db_ref, dtype, f"db for {shape}")
        check(dx, dx_ref, dtype, f"dx for {shape}")


SGD_CASES = [(0.0, False, 0.0, True), (0.9, False, 0.0, True), (0.9, False, 1e-2, False), (0.5, True, 1e-2, False),
             (0.5, True, 0.0, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay,first_step", SGD_CASES)
def test_weight_grads_sgd_matches_reference_update(isa, dtype, momentum, nesterov, weight_decay, first_step):
    rng = np.random.default_rng(12)
    mr, nr, _ = TILES[(isa, dtype)]
    for shape in [(1, 1, 1), (7, mr + 1, nr + 1), (3, mr - 1, nr - 1), (17, 2 * mr + 3, 2 * nr + 5)]:
        rows, fan_in, fan_out = shape
        x, dz = random(rng, (rows, fan_in), dtype), random(rng, (rows, fan_out), dtype)
        w, b = random(rng, (fan_in, fan_out), dtype), random(rng, fan_out, dtype)
        w_buf, b_buf = random(rng, w.shape, dtype), random(rng, b.shape, dtype)
        expected = [a.copy() for a in (w, b, w_buf, b_buf)]
        reference.sgd_update(expected[0], x.T @ dz, expected[2], 0.1, momentum, nesterov, weight_decay, first_step)
        reference.sgd_update(expected[1], dz.sum(axis=0), expected[3], 0.1, momentum, nesterov, 0.0, first_step)
        finite = _native.dense_weight_grads_sgd(x, dz, w, b, w_buf, b_buf, 0.1, momentum, nesterov, weight_decay,
                                                first_step)
        assert finite is True
        for name, got, want in zip(("W", "b", "w_buf", "b_buf"), (w, b, w_buf, b_buf), expected):
            check(got, want, dtype, f"{name} for {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("poisoned", ["x", "b"])
def test_weight_grads_sgd_reports_non_finite_parameters(isa, dtype, poisoned):
    rng = np.random.default_rng(13)
    x, dz = random(rng, (5, 9), dtype), random(rng, (5, 19), dtype)
    w, b = random(rng, (9, 19), dtype), random(rng, 19, dtype)
    if poisoned == "x":
        x[2, 4] = np.inf  # one row of dW becomes non-finite
    else:
        b[18] = np.nan  # the last (tail) bias lane
    buf_w, buf_b = np.zeros_like(w), np.zeros_like(b)
    assert _native.dense_weight_grads_sgd(x, dz, w, b, buf_w, buf_b, 0.1, 0.0, False, 0.0, True) is False


# Above the size where the kernels use a second thread; the first splits rows (one column
# panel), the second columns, the third is square-ish.
THREADED_SHAPES = [(1000, 300, 9), (9, 200, 1000), (257, 301, 263)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_thread_count(isa, dtype, threads):
    if not _native.OPENMP:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(14)
    for rows, fan_in, fan_out in THREADED_SHAPES:
        x, w, b = random(rng, (rows, fan_in), dtype), random(rng, (fan_in, fan_out), dtype), random(rng, fan_out, dtype)
        z, h = reference.dense_forward(x, w, b, "gelu")
        dh = random(rng, (rows, fan_out), dtype)
        results = []
        for n in (1, 2):
            threads(n)
            outputs = list(_native.dense_forward(x, w, b, "relu"))
            outputs += _native.dense_backward(dh, x, w, z, h, "gelu", True)
            outputs.append(_native.dense_input_grad(dh, w, x, x, "relu"))
            params = [a.copy() for a in (w, b, w, b)]
            _native.dense_weight_grads_sgd(x, dh, *params, 0.1, 0.9, True, 1e-3, False)
            results.append(outputs + params)
        for one, two in zip(*results):
            np.testing.assert_array_equal(one, two)


def test_num_threads_round_trip_and_validation(threads):
    threads(1)
    assert _native.get_num_threads() == 1
    threads(3)
    assert _native.get_num_threads() == 3
    with pytest.raises(ValueError, match="at least 1"):
        _native.set_num_threads(0)


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="avx512, avx2|generic, avx2, avx512"):
        _native.set_isa("sse9")
    assert _native.isa() in AVAILABLE


@pytest.mark.parametrize("name", sorted(set(ALL_ISAS) - set(AVAILABLE)) or [None])
def test_set_isa_rejects_isas_this_cpu_lacks(name):
    if name is None:
        pytest.skip("this CPU runs every ISA the kernels have")
    before = _native.isa()
    with pytest.raises(ValueError, match="not supported"):
        _native.set_isa(name)
    assert _native.isa() == before


def import_native_with(value):
    env = dict(os.environ, FUSEDMLP_ISA=value)
    code = "from fusedmlp import _native; print(_native.isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", AVAILABLE)
def test_environment_variable_selects_the_path(name):
    result = import_native_with(name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == name


def test_environment_variable_with_a_bad_value_fails_the_import_clearly():
    result = import_native_with("avx9000")
    assert result.returncode != 0
    assert "FUSEDMLP_ISA" in result.stderr and "avx9000" in result.stderr and "generic" in result.stderr
