"""Every native op against its NumPy reference, for every activation and loss, in float32 and
float64, on shapes that include 1, primes and sizes that are no multiple of a vector width."""

import numpy as np
import pytest

from fusedmlp import _native, reference
from conftest import assert_matches_reference

DTYPES = (np.float32, np.float64)
# (rows, fan_in, fan_out)
DENSE_SHAPES = [(1, 1, 1), (1, 3, 5), (2, 1, 7), (7, 13, 131), (17, 1, 9), (3, 65, 3), (5, 129, 127),
                (4, 128, 128), (33, 31, 17), (64, 64, 10)]
# (rows, outputs)
LOSS_SHAPES = [(1, 1), (1, 2), (7, 1), (9, 5), (33, 17), (3, 130)]


def test_names_agree():
    assert tuple(_native.ACTIVATIONS) == reference.ACTIVATIONS
    assert tuple(_native.LOSSES) == reference.LOSSES


def random(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_activation(activation, dtype, scale):
    rng = np.random.default_rng(1)
    z = random(rng, (3, 37), dtype, scale)
    z[0, :3] = [0, -0.0, 1e-30]
    h = reference.activation_forward(activation, z)
    assert_matches_reference(_native.activation_forward(activation, z), h, dtype)
    assert_matches_reference(_native.activation_derivative(activation, z, h),
                             reference.activation_derivative(activation, z, h), dtype)


def test_sigmoid_does_not_overflow():
    z = np.array([-1e4, -100.0, 0.0, 100.0, 1e4])
    with np.errstate(over="raise"):
        s = reference.sigmoid(z)
    np.testing.assert_array_equal(s, [0.0, s[1], 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(_native.activation_forward("sigmoid", z), s)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=str)
def test_dense_forward(shape, activation, dtype):
    rows, fan_in, fan_out = shape
    rng = np.random.default_rng(2)
    x, w, b = random(rng, (rows, fan_in), dtype), random(rng, (fan_in, fan_out), dtype), random(rng, fan_out, dtype)
    z, h = _native.dense_forward(x, w, b, activation)
    z_ref, h_ref = reference.dense_forward(x, w, b, activation)
    assert z.dtype == dtype and h.dtype == dtype
    assert_matches_reference(z, z_ref, dtype)
    assert_matches_reference(h, h_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=str)
@pytest.mark.parametrize("need_dx", [True, False])
def test_dense_backward(shape, activation, dtype, need_dx):
    rows, fan_in, fan_out = shape
    rng = np.random.default_rng(3)
    x, w, b = random(rng, (rows, fan_in), dtype), random(rng, (fan_in, fan_out), dtype), random(rng, fan_out, dtype)
    z, h = reference.dense_forward(x, w, b, activation)
    dh = random(rng, z.shape, dtype)
    dx, dw, db = _native.dense_backward(dh, x, w, z, h, activation, need_dx)
    dx_ref, dw_ref, db_ref = reference.dense_backward(dh, x, w, z, h, activation, need_dx)
    assert_matches_reference(dw, dw_ref, dtype)
    assert_matches_reference(db, db_ref, dtype)
    if need_dx:
        assert_matches_reference(dx, dx_ref, dtype)
    else:
        assert dx is None and dx_ref is None


def loss_targets(loss, rng, n, k, dtype):
    if loss == "cross_entropy":
        return rng.integers(0, k, n).astype(np.int64)
    if loss == "bce":
        return rng.random((n, k)).astype(dtype)
    return random(rng, (n, k), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", reference.LOSSES)
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=str)
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_loss_and_grad(loss, shape, dtype, scale):
    n, k = shape
    rng = np.random.default_rng(4)
    z = random(rng, shape, dtype, scale)
    y = loss_targets(loss, rng, n, k, dtype)
    value, dz = _native.loss_and_grad(loss, z, y)
    value_ref, dz_ref = reference.loss_and_grad(loss, z, y)
    assert np.isfinite(value)
    assert_matches_reference(value, value_ref, dtype)
    assert_matches_reference(dz, dz_ref, dtype)
    assert_matches_reference(_native.output_activation(loss, z), reference.output_activation(loss, z), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_on_known_values(dtype):
    z = np.array([[0.0, np.log(3.0)]], dtype=dtype)
    value, dz = reference.loss_and_grad("cross_entropy", z, np.array([1]))
    assert value == pytest.approx(np.log(4 / 3), rel=1e-6)
    np.testing.assert_allclose(dz, [[0.25, -0.25]], rtol=1e-6)
    value, dz = reference.loss_and_grad("bce", np.array([[0.0]], dtype=dtype), np.array([[1.0]], dtype=dtype))
    assert value == pytest.approx(np.log(2.0), rel=1e-6)
    np.testing.assert_allclose(dz, [[-0.5]], rtol=1e-6)
    value, dz = reference.loss_and_grad("mse", np.array([[1.0, 3.0]], dtype=dtype), np.array([[0.0, 1.0]], dtype=dtype))
    assert value == pytest.approx(2.5)
    np.testing.assert_allclose(dz, [[1.0, 2.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 80.0, -80.0]], dtype=dtype)
    y = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
    for impl in (reference, _native):
        value, dz = impl.loss_and_grad("bce", z, y)
        assert value == pytest.approx((1e4 + 1e4) / 4, rel=1e-5)
        assert np.isfinite(dz).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.5, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("first_step", [True, False])
@pytest.mark.parametrize("size", [1, 7, 130])
def test_sgd_update(dtype, momentum, nesterov, weight_decay, first_step, size):
    rng = np.random.default_rng(5)
    param, grad, buf = (random(rng, (size, 3), dtype) for _ in range(3))
    results = []
    for impl in (_native, reference):
        p, b = param.copy(), buf.copy()
        impl.sgd_update(p, grad, b, 0.1, momentum, nesterov, weight_decay, first_step)
        results.append((p, b))
    (p_native, b_native), (p_ref, b_ref) = results
    assert_matches_reference(p_native, p_ref, dtype)
    assert_matches_reference(b_native, b_ref, dtype)
    assert not np.array_equal(p_ref, param)


def test_sgd_follows_pytorch_convention():
    # Two steps with momentum 0.9, nesterov, weight decay 0.1, lr 0.5, worked by hand.
    p, g, buf = np.array([1.0]), np.array([0.5]), np.zeros(1)
    reference.sgd_update(p, g, buf, 0.5, 0.9, True, 0.1, True)
    # g' = 0.5 + 0.1 = 0.6; buf = 0.6; step = 0.6 + 0.9 * 0.6 = 1.14; p = 1 - 0.57 = 0.43
    np.testing.assert_allclose([p[0], buf[0]], [0.43, 0.6])
    reference.sgd_update(p, g, buf, 0.5, 0.9, True, 0.1, False)
    # g' = 0.5 + 0.043 = 0.543; buf = 0.54 + 0.543 = 1.083; step = 0.543 + 0.9747 = 1.5177
    np.testing.assert_allclose([p[0], buf[0]], [0.43 - 0.5 * 1.5177, 1.083])


def test_native_ops_reject_bad_shapes():
    x, w, b = np.ones((2, 3)), np.ones((4, 5)), np.ones(5)
    with pytest.raises(ValueError, match="W"):
        _native.dense_forward(x, w, b, "relu")
    with pytest.raises(ValueError, match="activation must be one of"):
        _native.dense_forward(x, np.ones((3, 5)), b, "swish")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        _native.loss_and_grad("cross_entropy", np.ones((2, 3)), np.array([0, 3]))
