"""The command line (python -m fusedmlp) and the bundled data behind its demo."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fusedmlp
from fusedmlp import datasets
from fusedmlp.__main__ import main, run_demo

needs_native = pytest.mark.skipif(not fusedmlp.native_available(), reason="the native module is not built")


def run_cli(*args, timeout=120):
    # Run from the tests' folder, not the repository root, so `fusedmlp` is the installed package.
    return subprocess.run([sys.executable, "-m", "fusedmlp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(__file__))


# --- the bundled data ---------------------------------------------------------------------------

def test_load_digits_shapes_and_ranges():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.all(X * 16 == np.round(X * 16))  # pixel counts 0..16, scaled
    assert np.array_equal(np.unique(y), np.arange(10))
    assert np.bincount(y).min() >= 170


def test_load_digits_matches_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = sklearn_datasets.load_digits()
    X, y = datasets.load_digits()
    np.testing.assert_array_equal(X * 16, digits.data)
    np.testing.assert_array_equal(y, digits.target)


def test_train_test_split_is_stratified_deterministic_and_a_partition():
    X, y = datasets.load_digits()
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_fraction=0.25, seed=3)
    assert len(y_test) == round(0.25 * len(y)) and len(y_train) + len(y_test) == len(y)
    # Each class's share of the test set is its share of the data, to within one sample.
    expected = np.bincount(y) * len(y_test) / len(y)
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - expected) < 1)
    # A partition: every sample lands on exactly one side, with its own label.
    rows = np.concatenate([X_train, X_test])
    labels = np.concatenate([y_train, y_test])
    order, original = np.lexsort(rows.T[::-1]), np.lexsort(X.T[::-1])
    np.testing.assert_array_equal(rows[order], X[original])
    np.testing.assert_array_equal(labels[order], y[original])
    # The same seed gives the same split; another seed another.
    again = datasets.train_test_split(X, y, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again[1], X_test)
    np.testing.assert_array_equal(again[3], y_test)
    other = datasets.train_test_split(X, y, test_fraction=0.25, seed=4)
    assert not np.array_equal(other[3], y_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1e-9])
def test_train_test_split_rejects_fractions_that_leave_a_side_empty(fraction):
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.train_test_split(X, y, test_fraction=fraction)


def test_train_test_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same number of samples"):
        datasets.train_test_split(np.zeros((10, 2)), np.zeros(9))


# --- the demo -----------------------------------------------------------------------------------

@needs_native
def test_demo_defaults_reach_95_percent_and_backends_agree():
    result = run_demo()
    assert [r["backend"] for r in result["results"]] == ["cpu", "numpy"]
    for r in result["results"]:
        assert r["accuracy"] >= 0.95, r
        assert r["seconds"] > 0 and r["samples_per_s"] > 0
    assert result["n_train"] + result["n_test"] == 1797
    assert result["speedup"] > 0
    assert result["agree"], result["max_rel_diff"]


@needs_native
def test_demo_float64_trajectories_agree_to_design_tolerance():
    result = run_demo(epochs=2, dtype="float64")
    assert result["max_rel_diff"] <= 1e-8
    accuracies = [r["accuracy"] for r in result["results"]]
    assert accuracies[0] == accuracies[1]


@needs_native
def test_cli_demo_prints_both_backends_and_accuracies():
    completed = run_cli("demo", "--epochs", "3")
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(cpu|numpy)\b.*?\s(0\.\d{4}|1\.0000)\s", out, re.M)}
    assert set(rows) == {"cpu", "numpy"}, out
    assert all(0.5 < accuracy <= 1.0 for accuracy in rows.values()), out
    assert "speed-up" in out and "max relative difference" in out
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize("args", [
    ["demo", "--epochs", "-1"],
    ["demo", "--epochs", "three"],
    ["demo", "--lr", "0"],
    ["demo", "--dtype", "float16"],
    ["demo", "--no-such-option"],
    ["no-such-command"],
    [],
])
def test_cli_bad_arguments_exit_2_with_one_line(args):
    completed = run_cli(*args)
    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("fusedmlp") and "error:" in lines[0]
    assert "Traceback" not in completed.stderr and completed.stdout == ""


def test_library_errors_become_one_line_and_exit_2(monkeypatch, capsys):
    import fusedmlp.__main__ as cli

    def failing_demo(**kwargs):
        raise ValueError("batch_size: expected\nan integer >= 1; got 0")

    monkeypatch.setattr(cli, "run_demo", failing_demo)
    assert main(["demo"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "fusedmlp: error: batch_size: expected an integer >= 1; got 0\n"
    assert captured.out == ""


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"]])
def test_cli_help(args):
    completed = run_cli(*args)
    assert completed.returncode == 0
    assert completed.stdout.startswith("usage: fusedmlp")
    if "demo" in args:
        for option in ("--epochs", "--batch-size", "--lr", "--hidden", "--seed", "--dtype"):
            assert option in completed.stdout
    else:
        assert "demo" in completed.stdout
