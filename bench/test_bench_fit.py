"""Wall time of one epoch of MLP.fit, NumPy reference vs native CPU backend.

Not collected by `pytest` (testpaths is tests/); run with

    pytest bench/ --benchmark-only

Each benchmark times fit(epochs=1) on the same model, round after round (the model keeps
training; shuffle=False so every round does the same work). See bench/README.md.
"""

from __future__ import annotations

import numpy as np
import pytest

import fusedmlp as fm

# name: (layer sizes, batch size, samples)
CONFIGS = {
    "tiny": ([32, 64, 64, 4], 32, 8192),
    "small": ([64, 128, 128, 10], 64, 16384),
}
BACKENDS = ["numpy", "cpu"]
LR = 0.01  # small enough that the repeated epochs stay finite


def synthetic_classification(layer_sizes, n, seed=0):
    """float32 features ~ N(0, 1) and int64 labels from a fixed random linear teacher."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, layer_sizes[0])).astype(np.float32)
    teacher = rng.standard_normal((layer_sizes[0], layer_sizes[-1]))
    y = (X @ teacher).argmax(axis=1).astype(np.int64)
    return X, y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_fit_one_epoch(benchmark, config, backend):
    if backend == "cpu" and not fm.native_available():
        pytest.skip("the native module is not built")
    layer_sizes, batch_size, n = CONFIGS[config]
    X, y = synthetic_classification(layer_sizes, n)
    net = fm.MLP(layer_sizes, activation="relu", loss="cross_entropy", backend=backend, dtype="float32", seed=0)

    def one_epoch():
        return net.fit(X, y, epochs=1, batch_size=batch_size, lr=LR, shuffle=False)

    benchmark.group = f"{config} {'-'.join(map(str, layer_sizes))} batch {batch_size} n={n}"
    benchmark.extra_info.update(config=config, backend=backend, layer_sizes=layer_sizes, batch_size=batch_size,
                                n=n, dtype="float32")
    history = benchmark.pedantic(one_epoch, rounds=10, warmup_rounds=1, iterations=1)
    assert history.steps == -(-n // batch_size)
    assert np.isfinite(history.epoch_loss).all()
    benchmark.extra_info["samples_per_s"] = n / benchmark.stats.stats.mean
