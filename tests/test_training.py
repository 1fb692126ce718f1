"""Whole training runs: native and reference trajectories agree, history and schedule
semantics, determinism, and learning on real data."""

import threading

import numpy as np
import pytest

import fusedmlp as fm
from conftest import AVAILABLE_BACKENDS, assert_matches_reference, relative_error


def synthetic(loss, n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    logits = X @ rng.standard_normal((d, k))
    if loss == "cross_entropy":
        return X, logits.argmax(axis=1)
    if loss == "bce":
        return X, (logits > 0).astype(np.float64)
    return X, np.tanh(logits)


def train_both(sizes, loss, activation, dtype, fit_kwargs, n=330, seed=0):
    X, y = synthetic(loss, n, sizes[0], sizes[-1], seed)
    nets = {b: fm.MLP(sizes, activation=activation, loss=loss, backend=b, dtype=dtype, seed=seed) for b in AVAILABLE_BACKENDS}
    histories = {b: net.fit(X, y, **fit_kwargs) for b, net in nets.items()}
    return nets, histories


FIT_VARIANTS = [
    dict(epochs=10, batch_size=32, lr=0.05),
    dict(epochs=10, batch_size=32, lr=0.02, momentum=0.9),
    dict(epochs=10, batch_size=33, lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-3, warmup_steps=25),
    dict(epochs=10, batch_size=32, lr=0.05, drop_last=True, seed=7),
    dict(epochs=4, batch_size=330, lr=0.1, shuffle=False),
]


@pytest.mark.parametrize("fit_kwargs", FIT_VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_native_trajectory_matches_reference_float64(fit_kwargs):
    nets, hist = train_both([13, 32, 17, 5], "cross_entropy", "tanh", "float64", fit_kwargs)
    assert hist["cpu"].steps >= 4
    np.testing.assert_array_equal(hist["cpu"].lr, hist["numpy"].lr)
    np.testing.assert_allclose(hist["cpu"].step_loss, hist["numpy"].step_loss, rtol=1e-9)
    for a, b in zip(nets["cpu"].weights + nets["cpu"].biases, nets["numpy"].weights + nets["numpy"].biases):
        assert relative_error(a, b) < 1e-8
    # The model really trained.
    assert hist["cpu"].epoch_loss[-1] < hist["cpu"].epoch_loss[0]


@pytest.mark.parametrize("loss", fm.LOSSES)
@pytest.mark.parametrize("activation", fm.ACTIVATIONS)
def test_every_activation_and_loss_trains_alike(activation, loss):
    nets, hist = train_both([6, 9, 4], loss, activation, "float64", dict(epochs=3, batch_size=16, lr=0.05, momentum=0.5),
                            n=97)
    np.testing.assert_allclose(hist["cpu"].step_loss, hist["numpy"].step_loss, rtol=1e-9)
    for a, b in zip(nets["cpu"].weights, nets["numpy"].weights):
        assert relative_error(a, b) < 1e-8


@pytest.mark.parametrize("loss", fm.LOSSES)
def test_float32_trajectories_stay_close(loss):
    nets, hist = train_both([20, 64, 3], loss, "relu", "float32", dict(epochs=3, batch_size=32, lr=0.05, momentum=0.9))
    assert nets["cpu"].weights[0].dtype == np.float32
    np.testing.assert_allclose(hist["cpu"].step_loss, hist["numpy"].step_loss, rtol=1e-3)
    for a, b in zip(nets["cpu"].weights, nets["numpy"].weights):
        assert relative_error(a, b) < 1e-3


def test_history_records_steps_epochs_and_warmup(backend):
    X, y = synthetic("cross_entropy", 100, 4, 3)
    net = fm.MLP([4, 8, 3], backend=backend, seed=0)
    hist = net.fit(X, y, epochs=3, batch_size=30, lr=0.2, warmup_steps=5)
    assert hist.steps == 12 and hist.epochs == 3
    np.testing.assert_allclose(hist.lr[:6], [0.04, 0.08, 0.12, 0.16, 0.2, 0.2])
    np.testing.assert_allclose(hist.lr[6:], 0.2)
    sizes = np.array([30, 30, 30, 10])
    np.testing.assert_allclose(hist.epoch_loss, [np.dot(hist.step_loss[i * 4:(i + 1) * 4], sizes) / 100 for i in range(3)])
    assert len(hist.epoch_time) == 3 and (hist.epoch_time >= 0).all()
    assert net.fit(X, y, epochs=3, batch_size=30, drop_last=True).steps == 9


def test_zero_epochs_change_nothing(backend):
    X, y = synthetic("cross_entropy", 50, 4, 3)
    net = fm.MLP([4, 8, 3], backend=backend, seed=0)
    before = net.weights
    hist = net.fit(X, y, epochs=0)
    assert hist.steps == 0 and hist.epochs == 0
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)


def test_lr_zero_changes_nothing(backend):
    X, y = synthetic("mse", 50, 4, 2)
    net = fm.MLP([4, 8, 2], loss="mse", backend=backend, seed=0)
    before = net.weights
    net.fit(X, y, epochs=2, lr=0.0, momentum=0.9)
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)


def test_same_seed_gives_identical_parameters(backend):
    X, y = synthetic("cross_entropy", 200, 10, 4)
    results = []
    for _ in range(2):
        net = fm.MLP([10, 32, 4], backend=backend, seed=3)
        net.fit(X, y, epochs=3, batch_size=16, momentum=0.9)
        results.append(net.weights + net.biases)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_shuffle_seed_uses_its_own_generator(backend):
    X, y = synthetic("cross_entropy", 64, 5, 3)
    a = fm.MLP([5, 8, 3], backend=backend, seed=1)
    b = fm.MLP([5, 8, 3], backend=backend, seed=1)
    a.fit(X, y, epochs=2, batch_size=8, seed=11)  # does not draw from a's generator
    b.fit(X, y, epochs=2, batch_size=8, seed=11)
    a.fit(X, y, epochs=1, batch_size=8)
    b.fit(X, y, epochs=1, batch_size=8)
    for p, q in zip(a.weights, b.weights):
        np.testing.assert_array_equal(p, q)
    c = fm.MLP([5, 8, 3], backend=backend, seed=1)
    c.fit(X, y, epochs=2, batch_size=8, seed=12)
    assert not np.array_equal(c.weights[0], b.weights[0])


def test_initialisation_follows_design():
    net = fm.MLP([100, 50, 10], activation="relu", backend="numpy", dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    expected_0 = rng.uniform(-np.sqrt(6 / 100), np.sqrt(6 / 100), (100, 50))
    expected_1 = rng.uniform(-np.sqrt(6 / 60), np.sqrt(6 / 60), (50, 10))
    np.testing.assert_array_equal(net.weights[0], expected_0)
    np.testing.assert_array_equal(net.weights[1], expected_1)
    assert all((b == 0).all() for b in net.biases)
    tanh_net = fm.MLP([100, 50, 10], activation="tanh", dtype="float32", seed=0)
    np.testing.assert_array_equal(tanh_net.weights[0],
                                  np.random.default_rng(0).uniform(-np.sqrt(6 / 150), np.sqrt(6 / 150), (100, 50))
                                  .astype(np.float32))


def test_every_backend_starts_identical():
    nets = [fm.MLP([7, 5, 3], backend=b, seed=9) for b in AVAILABLE_BACKENDS]
    for a, b in zip(nets[0].weights, nets[1].weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss", fm.LOSSES)
def test_inference_methods(backend, loss):
    X, y = synthetic(loss, 600, 6, 3)  # more rows than one native forward chunk
    net = fm.MLP([6, 16, 3], loss=loss, backend=backend, dtype="float64", seed=0)
    ref = fm.MLP([6, 16, 3], loss=loss, backend="numpy", dtype="float64", seed=0)
    logits = net.decision_function(X)
    np.testing.assert_allclose(logits, ref.decision_function(X), rtol=1e-10, atol=1e-12)
    out = net.forward(X)
    if loss == "cross_entropy":
        np.testing.assert_allclose(out.sum(axis=1), 1.0)
        np.testing.assert_array_equal(net.predict(X), logits.argmax(axis=1))
        np.testing.assert_allclose(net.predict_proba(X), out)
        assert net.score(X, y) == pytest.approx(np.mean(logits.argmax(axis=1) == y))
    elif loss == "bce":
        np.testing.assert_allclose(out, 1 / (1 + np.exp(-logits)))
        np.testing.assert_array_equal(net.predict(X), (logits > 0).astype(int))
        assert net.score(X, y) == pytest.approx(np.mean(((logits > 0) == (y > 0.5)).all(axis=1)))
    else:
        np.testing.assert_allclose(out, logits)
        np.testing.assert_allclose(net.predict(X), logits)
        r2 = 1 - ((y - logits) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)
        assert net.score(X, y) == pytest.approx(r2.mean())


def test_single_output_predictions_are_one_dimensional(backend):
    X, y = synthetic("bce", 40, 3, 1)
    net = fm.MLP([3, 4, 1], loss="bce", backend=backend, seed=0)
    net.fit(X, y.ravel(), epochs=1)
    assert net.predict(X).shape == (40,)
    reg = fm.MLP([3, 4, 1], loss="mse", backend=backend, seed=0)
    reg.fit(X, y.ravel(), epochs=1)
    assert reg.predict(X).shape == (40,)


def test_native_epoch_releases_the_gil():
    X, y = synthetic("cross_entropy", 8192, 256, 10)
    net = fm.MLP([256, 512, 512, 10], backend="cpu", seed=0)
    started = threading.Event()

    def train():
        started.set()
        net.fit(X, y, epochs=1, batch_size=256, shuffle=False)

    worker = threading.Thread(target=train)
    worker.start()
    started.wait()
    spins = 0
    while worker.is_alive():
        spins += 1
    worker.join()
    # With the GIL held for the whole epoch this thread could not run until it ended.
    assert spins > 1000


# --- learning real data --------------------------------------------------------------------

def standardized_split(X, y, seed=0):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed,
                                                        stratify=y if y.dtype.kind == "i" else None)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def test_digits_reach_95_percent(backend):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = standardized_split(X / 16.0, y)
    net = fm.MLP([64, 128, 10], activation="relu", backend=backend, seed=0)
    net.fit(X_train, y_train, epochs=30, batch_size=32, lr=0.05, momentum=0.9)
    assert net.score(X_test, y_test) >= 0.95


def test_breast_cancer_bce_reaches_95_percent(backend):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = standardized_split(X, y)
    net = fm.MLP([30, 32, 1], activation="relu", loss="bce", backend=backend, seed=0)
    net.fit(X_train, y_train, epochs=40, batch_size=32, lr=0.05, momentum=0.9)
    assert net.score(X_test, y_test) >= 0.95


def test_diabetes_mse_has_sensible_r2(backend):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = standardized_split(X, y)
    mean, std = y_train.mean(), y_train.std()
    net = fm.MLP([10, 32, 1], activation="tanh", loss="mse", backend=backend, seed=0)
    net.fit(X_train, (y_train - mean) / std, epochs=20, batch_size=32, lr=0.01, momentum=0.9)
    r2 = net.score(X_test, (y_test - mean) / std)
    # Least squares reaches 0.36 on this split: a sensible net comes close to it.
    least_squares = LinearRegression().fit(X_train, y_train).score(X_test, y_test)
    assert r2 >= 0.3 and r2 >= least_squares - 0.05


class _EpochInTwoHalves:
    """A backend whose epochs come in two halves, start_epoch and finish_epoch, as the CUDA
    backend's do: MLP.fit then draws the next epoch's shuffle between them."""

    def __init__(self, backend):
        self._backend = backend
        self.started = 0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def start_epoch(self, *args):
        self.started += 1
        self._result = self._backend.train_epoch(*args)

    def finish_epoch(self):
        result, self._result = self._result, None
        return result


def _stop_after_first_epoch(model, info):
    return info.epoch == 0


def _raise_after_first_epoch(model, info):
    raise RuntimeError("a callback failed")


# How a fit ends: every epoch run, or stopped before its last by a callback, early stopping, a
# divergence, or an exception.
FIT_ENDINGS = {
    "all_epochs": dict(epochs=3),
    "callback": dict(epochs=4, callbacks=[_stop_after_first_epoch]),
    "early_stopping": dict(epochs=5, early_stopping=True, patience=1, min_delta=1e9),
    "divergence": dict(epochs=4, lr=1e30, on_divergence="stop"),
    "exception": dict(epochs=4, callbacks=[_raise_after_first_epoch]),
}


@pytest.mark.parametrize("ending", FIT_ENDINGS)
def test_shuffles_drawn_ahead_leave_the_generator_as_drawn_in_turn(ending):
    """A backend that trains asynchronously gets the next epoch's shuffle drawn while it works;
    a shuffle that no epoch took goes back to the generator, so that later fits shuffle as they
    would have."""
    X, y = synthetic("cross_entropy", 96, 6, 3)
    plain = fm.MLP([6, 10, 3], backend="numpy", dtype="float64", seed=5)
    halves = fm.MLP([6, 10, 3], backend="numpy", dtype="float64", seed=5)
    halves._backend = _EpochInTwoHalves(halves._backend)
    initial_weights, initial_biases = plain.weights, plain.biases
    for net in (plain, halves):
        kwargs = {"batch_size": 16, "lr": 0.05, **FIT_ENDINGS[ending]}
        if ending == "exception":
            with pytest.raises(RuntimeError, match="a callback failed"):
                net.fit(X, y, **kwargs)
        else:
            net.fit(X, y, **kwargs)
    assert halves._backend.started >= 1
    # From the same parameters, the next fit differs only if its shuffles do.
    for net in (plain, halves):
        net.set_parameters(initial_weights, initial_biases)
        net.fit(X, y, epochs=2, batch_size=16, lr=0.05)
    for a, b in zip(plain.weights + plain.biases, halves.weights + halves.biases):
        np.testing.assert_array_equal(a, b)


def test_fit_stopped_early_leaves_the_shuffles_of_the_reference(backend):
    """On every backend, a fit stopped by a callback takes no more shuffles from the model's
    generator than the epochs it ran: the next fit trains as the reference's does."""
    X, y = synthetic("cross_entropy", 120, 7, 4)
    nets = {b: fm.MLP([7, 12, 4], backend=b, dtype="float64", seed=9) for b in ("numpy", backend)}
    for net in nets.values():
        net.fit(X, y, epochs=4, batch_size=16, lr=0.05, callbacks=[_stop_after_first_epoch])
        net.fit(X, y, epochs=2, batch_size=16, lr=0.05)
    for a, b in zip(nets[backend].weights + nets[backend].biases, nets["numpy"].weights + nets["numpy"].biases):
        assert_matches_reference(a, b, np.float64, 1e-8)
