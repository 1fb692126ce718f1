"""fusedmlp.experiments.sweep and fusedmlp.plots: tiny grids on the process pool, in this
process and on a Dask LocalCluster; CSV / JSON contents; divergence; the PNG plots."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys

import numpy as np
import pytest

import fusedmlp
from fusedmlp import experiments
from fusedmlp.datasets import load_dataset, train_test_split
from fusedmlp.experiments import CSV_COLUMNS, load_results, sweep

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_native = pytest.mark.skipif(not fusedmlp.native_available(), reason="the native module is not built")

# A 2 x 2 grid (batch size x lr), one activation, warmup off and on, two seeds, one epoch, on
# iris: 16 runs of a few milliseconds each. float64, so that runs on different runners (whose
# native kernels may use different thread counts, hence summation orders) agree to 1e-9.
TINY = dict(batch_sizes=(16, 64), lrs=(0.05, 0.5), activations=("tanh",), warmup=(False, True), seeds=2, epochs=1,
            hidden=(8,), validation_fraction=0.2, dtype="float64")
SAME = 1e-9


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def pool_result(tmp_path_factory):
    """The tiny grid on 2 worker processes, with every output file written."""
    out = tmp_path_factory.mktemp("sweep")
    return sweep("iris", workers=2, out=out, plots=HAVE_MATPLOTLIB, **TINY)


def test_runs_cover_the_grid_in_order(pool_result):
    runs = pool_result.runs
    assert len(runs) == 2 * 2 * 2 * 2
    keys = [(r["batch_size"], r["lr"], r["activation"], r["warmup"], r["seed"]) for r in runs]
    assert keys == [(b, lr, "tanh", w, s) for b in (16, 64) for lr in (0.05, 0.5) for w in (False, True) for s in (0, 1)]
    n_train = pool_result.config["n_train"]
    assert n_train == 120 and pool_result.config["n_val"] == 30
    for run in runs:
        steps = math.ceil(n_train / run["batch_size"])
        assert run["steps"] == steps and len(run["step_loss"]) == steps
        assert run["epochs_run"] == 1 and len(run["epoch_loss"]) == 1 and len(run["val_score"]) == 1
        assert not run["diverged"] and run["wall_time_s"] > 0
        assert 0.0 <= run["final_val_score"] <= 1.0
        # Warmup lasts a tenth of the run's steps, at least one.
        assert run["warmup_steps"] == (max(1, round(0.1 * steps)) if run["warmup"] else 0)


def test_a_run_is_what_fit_gives_for_its_parameters(pool_result):
    """Recompute one run by hand: the same split, model, seed and fit arguments."""
    run = next(r for r in pool_result.runs if r["batch_size"] == 16 and r["lr"] == 0.5 and r["warmup"] and r["seed"] == 1)
    X, y = load_dataset("iris")
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_fraction=0.2, seed=0)
    net = fusedmlp.MLP([4, 8, 3], activation="tanh", dtype="float64", seed=1)
    history = net.fit(X_train, y_train, epochs=1, batch_size=16, lr=0.5, momentum=0.9, warmup_steps=run["warmup_steps"])
    np.testing.assert_allclose(run["step_loss"], history.step_loss, rtol=SAME)
    assert run["final_train_loss"] == pytest.approx(history.epoch_loss[-1], rel=SAME)
    assert run["final_val_score"] == pytest.approx(net.score(X_val, y_val))


def test_csv_has_one_row_per_run_with_its_results(pool_result):
    rows = _rows(pool_result.files["csv"])
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == len(pool_result.runs)
    for row, run in zip(rows, pool_result.runs):
        assert int(row["batch_size"]) == run["batch_size"] and float(row["lr"]) == run["lr"]
        assert row["warmup"] == str(run["warmup"]) and int(row["seed"]) == run["seed"]
        assert float(row["final_train_loss"]) == run["final_train_loss"]
        assert float(row["final_val_score"]) == run["final_val_score"]
        assert row["diverged"] == "False"


def test_json_holds_the_config_and_every_curve(pool_result):
    with open(pool_result.files["json"]) as file:
        document = json.load(file)
    assert document["format"] == "fusedmlp-sweep"
    config = document["config"]
    assert config["data"] == "iris" and config["metric"] == "accuracy" and config["loss"] == "cross_entropy"
    assert config["batch_sizes"] == [16, 64] and config["lrs"] == [0.05, 0.5] and config["seeds"] == [0, 1]
    for stored, run in zip(document["runs"], pool_result.runs):
        assert stored["step_loss"] == pytest.approx(list(run["step_loss"]))
        assert stored["val_score"] == pytest.approx(list(run["val_score"]))
    again = load_results(pool_result.files["json"])
    assert [r["final_val_score"] for r in again.runs] == [r["final_val_score"] for r in pool_result.runs]


def test_pngs_are_valid_images(pool_result):
    image = pytest.importorskip("matplotlib.image")
    from fusedmlp.plots import PLOTS

    assert set(PLOTS) <= set(pool_result.files)
    for name in PLOTS:
        pixels = image.imread(pool_result.files[name])
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert pixels.std() > 0.01  # something drawn, not a blank canvas


def test_in_process_run_gives_the_same_results_as_the_pool(pool_result):
    serial = sweep("iris", workers=1, **TINY)
    for a, b in zip(serial.runs, pool_result.runs):
        np.testing.assert_allclose(a["step_loss"], b["step_loss"], rtol=SAME)
        assert a["final_val_score"] == pytest.approx(b["final_val_score"])


def test_dask_local_cluster_gives_the_same_results(pool_result):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            on_dask = sweep("iris", scheduler=client, **TINY)
            assert on_dask.config["runner"] == "a Dask cluster"
            by_address = sweep("iris", scheduler=cluster.scheduler_address,
                               **{**TINY, "batch_sizes": (16,), "lrs": (0.05,), "seeds": 1})
    for a, b in zip(on_dask.runs, pool_result.runs):
        np.testing.assert_allclose(a["step_loss"], b["step_loss"], rtol=SAME)
        assert a["final_val_score"] == pytest.approx(b["final_val_score"])
    assert len(by_address.runs) == 2
    np.testing.assert_allclose(by_address.runs[0]["step_loss"], pool_result.runs[0]["step_loss"], rtol=SAME)


def test_a_dask_sweep_keeps_its_data_apart_from_the_clusters_other_keys(pool_result):
    # The sweep's data must travel under a key of its own: a user's future named like one of
    # its fields ("X_train") is neither used by the runs nor overwritten, and a sweep that
    # follows another on the same cluster cannot meet the keys the first one is releasing.
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            users = client.scatter({"X_train": "the user's own", "epochs": -1})
            first = sweep("iris", scheduler=client, **{**TINY, "seeds": 1})
            second = sweep("iris", scheduler=client, **{**TINY, "seeds": 1})
            assert users["X_train"].result() == "the user's own" and users["epochs"].result() == -1
    for a, b, c in zip(first.runs, second.runs, pool_result.runs[::2]):
        np.testing.assert_allclose(a["step_loss"], c["step_loss"], rtol=SAME)
        np.testing.assert_allclose(b["step_loss"], c["step_loss"], rtol=SAME)


@needs_native
def test_a_divergent_learning_rate_is_recorded_not_raised(tmp_path):
    result = sweep("digits", batch_sizes=(64,), lrs=(0.05, 1e20), activations=("relu",), warmup=(False,), seeds=1,
                   epochs=2, hidden=(16,), workers=1, out=tmp_path, plots=HAVE_MATPLOTLIB)
    good, bad = result.runs
    assert not good["diverged"] and math.isfinite(good["final_train_loss"])
    assert len(good["val_score"]) == 2 and good["final_val_score"] == good["val_score"][-1]  # one per epoch
    assert bad["diverged"]
    assert math.isnan(bad["final_train_loss"]) and math.isnan(bad["final_val_score"])
    assert bad["steps"] < good["steps"]  # it stopped at the divergent step
    row = _rows(result.files["csv"])[1]
    assert row["diverged"] == "True" and row["final_train_loss"] == "nan"
    with open(result.files["json"]) as file:
        stored = json.load(file)["runs"][1]  # strict JSON: the non-finite numbers are null
    assert stored["diverged"] is True and stored["final_val_score"] is None
    assert result.best(2)[-1]["diverged"] == 1
    assert (tmp_path / "score_heatmap.png").exists() == HAVE_MATPLOTLIB  # diverged points plot too


def test_regression_arrays_are_scored_by_r2():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = X[:, 0] - X[:, 1]
    result = sweep((X, y), batch_sizes=(16,), lrs=(0.01,), activations=("relu",), warmup=(False,), seeds=1,
                   epochs=5, backend="numpy", workers=1)
    assert result.config["loss"] == "mse" and result.config["metric"] == "r2"
    assert result.runs[0]["final_val_score"] > 0.5


@pytest.mark.parametrize("kwargs, error, match", [
    ({"activations": ("swish",)}, ValueError, "activations"),
    ({"lrs": ()}, ValueError, "lrs: expected at least one value"),
    ({"batch_sizes": (16, 16)}, ValueError, "distinct"),
    ({"seeds": 0}, ValueError, "seeds"),
    ({"warmup": ("yes",)}, TypeError, "warmup"),
    ({"validation_fraction": 0.0}, ValueError, "validation_fraction"),
    ({"workers": 0}, ValueError, "workers"),
    ({"scheduler": "localhost:8786"}, ValueError, "tcp://"),
    ({"scheduler": 8786}, TypeError, "scheduler"),
])
def test_bad_sweep_arguments_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        sweep("iris", **{**TINY, **kwargs})


def test_unknown_data_set_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data set"):
        sweep("mnist", **TINY)


def test_missing_dask_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(ImportError, match=r"dask\.distributed.*pip install"):
        sweep("iris", scheduler="tcp://127.0.0.1:8786", **TINY)


def test_warmup_steps_scale_with_the_run():
    assert experiments.warmup_steps_for(1000, 100, 10, 0.1) == 10
    assert experiments.warmup_steps_for(1000, 999, 1, 0.1) == 1  # at least one step
