"""Threads: the native backend releases the GIL for every op on a model and guards each model
with a reader/writer lock (training and set_parameters exclusive, inference and gradients
shared). These tests run real concurrent calls and compare them with the same calls made one
after the other."""

import threading
import time

import numpy as np
import pytest

import fusedmlp as fm

NATIVE = pytest.mark.skipif(not fm.native_available(), reason="fusedmlp._native is not built")
BACKENDS = [pytest.param("numpy"), pytest.param("cpu", marks=NATIVE)]

_rng = np.random.default_rng(11)
X = _rng.standard_normal((400, 24))
Y = (X @ _rng.standard_normal((24, 5))).argmax(axis=1)


def new_model(backend, seed, dtype="float64"):
    return fm.MLP([24, 64, 48, 5], activation="tanh", loss="cross_entropy", backend=backend, dtype=dtype, seed=seed)


def train(net, seed):
    return net.fit(X, Y, epochs=4, batch_size=16, lr=0.05, momentum=0.9, seed=seed)


def parameters(net):
    return [a.copy() for a in net.weights + net.biases]


def assert_identical(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def run_in_threads(functions):
    """Start every function at once (a barrier), join them, re-raise the first error."""
    barrier = threading.Barrier(len(functions))
    results, errors = [None] * len(functions), []

    def runner(i, function):
        try:
            barrier.wait()
            results[i] = function()
        except BaseException as error:  # noqa: BLE001 -- handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=runner, args=(i, f)) for i, f in enumerate(functions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_models_trained_at_once_equal_one_after_the_other(backend, dtype):
    serial = [new_model(backend, seed, dtype) for seed in (1, 2)]
    serial_loss = [train(net, 10 + i).step_loss for i, net in enumerate(serial)]
    concurrent = [new_model(backend, seed, dtype) for seed in (1, 2)]
    histories = run_in_threads([lambda net=net, i=i: train(net, 10 + i) for i, net in enumerate(concurrent)])
    for i in range(2):
        np.testing.assert_array_equal(histories[i].step_loss, serial_loss[i])
        assert_identical(parameters(concurrent[i]), parameters(serial[i]))
    # The two models are really different: the test could tell them apart.
    assert not np.array_equal(serial_loss[0], serial_loss[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_from_many_threads_equals_serial_predict(backend):
    net = new_model(backend, 3, "float32")
    train(net, 4)
    chunks = [X[i::6] for i in range(6)]
    want = [(net.predict_proba(c), net.predict(c), net.decision_function(c)) for c in chunks]
    repeats = 20

    def reader(chunk):
        return [(net.predict_proba(chunk), net.predict(chunk), net.decision_function(chunk)) for _ in range(repeats)]

    results = run_in_threads([lambda c=c: reader(c) for c in chunks])
    for chunk_results, expected in zip(results, want):
        for got in chunk_results:
            for a, b in zip(got, expected):
                assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
def test_loss_and_grad_from_many_threads_equals_serial(backend):
    net = new_model(backend, 5)
    want = net.loss_and_grad(X, Y)

    def reader():
        return [net.loss_and_grad(X, Y) for _ in range(5)]

    for results in run_in_threads([reader] * 4):
        for value, dW, db in results:
            assert value == want[0]
            assert_identical(dW + db, want[1] + want[2])


@NATIVE
def test_predict_during_fit_sees_whole_parameter_states():
    """cpu backend: training holds the model's lock exclusively (for whole steps: a long epoch
    lets go of it between chunks of steps) and inference holds it shared, so every concurrent
    predict sees the parameters after some completed step, never a torn mixture."""
    net = new_model("cpu", 6)
    states = [parameters(net)]
    done = threading.Event()

    def trainer():
        try:
            for epoch in range(12):  # one step per fit: every state in between is recorded
                net.fit(X, Y, epochs=1, batch_size=len(X), lr=0.5, seed=epoch)
                states.append(parameters(net))
                time.sleep(0.005)  # let the readers see this state too
        finally:
            done.set()

    def reader():
        seen = []
        while not done.is_set():
            seen.append(net.decision_function(X[:50]))
        seen.append(net.decision_function(X[:50]))
        return seen

    _, seen_a, seen_b = run_in_threads([trainer, reader, reader])
    probe = new_model("cpu", 0)
    allowed = set()
    for weights_and_biases in states:
        layers = len(weights_and_biases) // 2
        probe.set_parameters(weights_and_biases[:layers], weights_and_biases[layers:])
        allowed.add(probe.decision_function(X[:50]).tobytes())
    assert len(allowed) == len(states)  # every epoch changed the model
    for output in seen_a + seen_b:
        assert output.tobytes() in allowed
    # The readers really ran during training.
    assert len({output.tobytes() for output in seen_a + seen_b}) >= 3
    # The last output of each reader is the final state.
    assert seen_a[-1].tobytes() == seen_b[-1].tobytes() == probe.decision_function(X[:50]).tobytes()


@NATIVE
def test_two_threads_fitting_one_model_do_not_crash():
    """Not a recommended use (the order of their epochs is up to the scheduler), but it must
    leave a model with finite parameters that still trains."""
    net = new_model("cpu", 7)
    run_in_threads([lambda: train(net, 1), lambda: train(net, 2), lambda: net.predict(X)])
    assert all(np.isfinite(a).all() for a in parameters(net))
    assert np.isfinite(train(net, 3).step_loss).all()


@NATIVE
def test_predict_during_a_long_fit_sees_the_parameters_of_a_completed_step():
    """A fit of many steps, read concurrently: every output is that of the parameters after
    some whole step. The states after each step come from a twin trained one batch at a time
    (no shuffle, no momentum: the same steps, bit for bit)."""
    batch, epochs = 8, 3
    net, twin = new_model("cpu", 8), new_model("cpu", 8)
    probe_rows = X[:50]
    allowed = {twin.decision_function(probe_rows).tobytes()}
    for _ in range(epochs):
        for start in range(0, len(X), batch):
            twin.fit(X[start:start + batch], Y[start:start + batch], epochs=1, batch_size=batch, lr=0.05,
                     shuffle=False)
            allowed.add(twin.decision_function(probe_rows).tobytes())
    done = threading.Event()

    def trainer():
        try:
            net.fit(X, Y, epochs=epochs, batch_size=batch, lr=0.05, shuffle=False)
        finally:
            done.set()

    def reader():
        seen = []
        while not done.is_set():
            seen.append(net.decision_function(probe_rows).tobytes())
        return seen

    _, seen_a, seen_b = run_in_threads([trainer, reader, reader])
    assert net.decision_function(probe_rows).tobytes() == twin.decision_function(probe_rows).tobytes()
    assert set(seen_a + seen_b) <= allowed
