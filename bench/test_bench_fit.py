"""Wall time of one training epoch (MLP.fit) and of MLP.predict, NumPy reference vs native CPU
backend, on the configurations of fusedmlp.bench.CONFIGS (the same table drives
`python -m fusedmlp bench`).

Not collected by `pytest` (testpaths is tests/); run with

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench/ --benchmark-only

Each training benchmark times fit(epochs=1) on the same model, round after round (the model keeps
training; shuffle=False so every round does the same work). See bench/README.md.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import fusedmlp as fm
from fusedmlp import bench

BACKENDS = ["numpy", "cpu"]
ROUNDS = 5


def make_model(config, backend, dtype):
    if backend == "cpu" and not fm.native_available():
        pytest.skip("the native module is not built")
    X, y = bench.synthetic_classification(config.layer_sizes, config.n_samples, dtype=dtype)
    net = fm.MLP(list(config.layer_sizes), activation=bench.ACTIVATION, loss=bench.LOSS, backend=backend,
                 dtype=dtype, seed=bench.MODEL_SEED)
    return net, X, y


def describe(benchmark, config, backend, dtype, what):
    benchmark.group = f"{what} {config.name} {config.label} batch {config.batch_size} n={config.n_samples} {dtype}"
    benchmark.extra_info.update(config=config.name, backend=backend, layer_sizes=list(config.layer_sizes),
                                batch_size=config.batch_size, n=config.n_samples, dtype=dtype)
    # The previous benchmark's OpenBLAS / OpenMP threads spin for ~0.1 s after their last call
    # and would slow this one's first rounds (see fusedmlp.bench).
    time.sleep(bench.DEFAULT_SETTLE_SECONDS)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config_name", list(bench.CONFIGS))
def test_fit_one_epoch(benchmark, config_name, backend, dtype):
    config = bench.CONFIGS[config_name]
    net, X, y = make_model(config, backend, dtype)

    def one_epoch():
        return net.fit(X, y, epochs=1, batch_size=config.batch_size, lr=bench.LEARNING_RATE, shuffle=False)

    describe(benchmark, config, backend, dtype, "fit")
    history = benchmark.pedantic(one_epoch, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert history.steps == config.steps
    assert np.isfinite(history.epoch_loss).all()
    samples_per_s = config.n_samples / benchmark.stats.stats.min
    benchmark.extra_info["samples_per_s"] = samples_per_s
    benchmark.extra_info["gflops"] = samples_per_s * bench.training_flops_per_sample(config.layer_sizes) / 1e9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config_name", list(bench.CONFIGS))
def test_predict(benchmark, config_name, backend):
    config = bench.CONFIGS[config_name]
    net, X, _ = make_model(config, backend, "float32")
    describe(benchmark, config, backend, "float32", "predict")
    labels = benchmark.pedantic(net.predict, args=(X,), rounds=ROUNDS * 4, warmup_rounds=1, iterations=1)
    assert labels.shape == (config.n_samples,)
    assert labels.min() >= 0 and labels.max() < config.layer_sizes[-1]
    benchmark.extra_info["samples_per_s"] = config.n_samples / benchmark.stats.stats.min
