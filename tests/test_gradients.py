"""Gradients of every backend against central finite differences of its own loss, in float64."""

import numpy as np
import pytest

import fusedmlp as fm
from conftest import AVAILABLE_BACKENDS

SIZES = [5, 7, 6, 3]


def make_problem(loss, activation, backend, seed=0):
    rng = np.random.default_rng(seed)
    net = fm.MLP(SIZES, activation=activation, loss=loss, backend=backend, dtype="float64", seed=seed)
    # Random biases too, so that no pre-activation sits exactly on relu's kink.
    net.set_parameters(net.weights, [rng.standard_normal(b.shape) * 0.1 for b in net.biases])
    X = rng.standard_normal((11, SIZES[0]))
    if loss == "cross_entropy":
        y = rng.integers(0, SIZES[-1], 11)
    elif loss == "bce":
        y = rng.random((11, SIZES[-1]))
    else:
        y = rng.standard_normal((11, SIZES[-1]))
    return net, X, y


def numerical_gradients(net, X, y, eps=1e-6):
    weights, biases = net.weights, net.biases

    def loss_at(ws, bs):
        net.set_parameters(ws, bs)
        return net.loss_and_grad(X, y)[0]

    grads = []
    for group in (weights, biases):
        grads.append([])
        for param in group:
            grad = np.zeros_like(param)
            for index in np.ndindex(param.shape):
                original = param[index]
                param[index] = original + eps
                plus = loss_at(weights, biases)
                param[index] = original - eps
                minus = loss_at(weights, biases)
                param[index] = original
                grad[index] = (plus - minus) / (2 * eps)
            grads[-1].append(grad)
    net.set_parameters(weights, biases)
    return grads


@pytest.mark.parametrize("loss", fm.LOSSES)
@pytest.mark.parametrize("activation", fm.ACTIVATIONS)
def test_gradients_match_finite_differences(backend, activation, loss):
    net, X, y = make_problem(loss, activation, backend)
    value, dW, db = net.loss_and_grad(X, y)
    assert np.isfinite(value) and value > 0
    num_dW, num_db = numerical_gradients(net, X, y)
    for analytic, numeric in zip(dW + db, num_dW + num_db):
        scale = max(np.abs(numeric).max(), 1e-3)
        assert np.abs(analytic - numeric).max() / scale < 1e-6


@pytest.mark.parametrize("loss", fm.LOSSES)
def test_backends_give_the_same_gradients(loss):
    results = []
    for backend in AVAILABLE_BACKENDS:
        net, X, y = make_problem(loss, "gelu", backend)
        results.append(net.loss_and_grad(X, y))
    value_a, dW_a, db_a = results[0]
    for value_b, dW_b, db_b in results[1:]:
        assert value_a == pytest.approx(value_b, rel=1e-12)
        for a, b in zip(dW_a + db_a, dW_b + db_b):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_loss_and_grad_leaves_the_model_unchanged(backend):
    net, X, y = make_problem("cross_entropy", "relu", backend)
    before = net.weights + net.biases
    net.loss_and_grad(X, y)
    for a, b in zip(before, net.weights + net.biases):
        np.testing.assert_array_equal(a, b)
