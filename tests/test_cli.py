"""The command line: python -m fusedmlp demo / train / predict / sweep (the data sets: test_datasets.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fusedmlp
from fusedmlp.__main__ import main, run_demo

needs_native = pytest.mark.skipif(not fusedmlp.native_available(), reason="the native module is not built")


def run_cli(*args, timeout=120):
    # Run from the tests' folder, not the repository root, so `fusedmlp` is the installed package.
    return subprocess.run([sys.executable, "-m", "fusedmlp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(__file__))


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


# --- every subcommand's help ----------------------------------------------------------------------

def _subparsers():
    import argparse

    from fusedmlp.__main__ import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def run_main(argv, capsys):
    """main(argv) in this process: (exit status, stdout, stderr). An exception escaping main
    fails the test, as a traceback would."""
    try:
        status = main(argv)
    except SystemExit as exit:  # argparse: --help, bad arguments
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("command", ["demo", "train", "predict", "sweep"])
def test_every_option_of_every_subcommand_is_explained_in_its_help(command, capsys):
    subparser = _subparsers()[command]
    status, out, err = run_main([command, "--help"], capsys)
    assert status == 0 and err == ""
    assert out.startswith(f"usage: fusedmlp {command}")
    for action in subparser._actions:
        assert action.help, f"{command}: {action.dest} has no help"
        for option in action.option_strings:
            assert option in out, f"{command} --help does not mention {option}"


def test_top_level_help_lists_the_subcommands():
    completed = run_cli("--help")
    assert completed.returncode == 0
    for command in ("demo", "train", "predict", "sweep"):
        assert re.search(rf"^\s+{command}\s", completed.stdout, re.M), completed.stdout


# --- train and predict --------------------------------------------------------------------------

@needs_native
def test_train_then_predict_roundtrip_on_a_bundled_set(tmp_path, capsys):
    model = tmp_path / "iris.npz"
    status, out, err = run_main(["train", "iris", "--epochs", "30", "--quiet", "-o", str(model)], capsys)
    assert status == 0, err
    validation = float(re.search(r"^validation accuracy\s+([\d.]+)$", out, re.M).group(1))
    assert validation >= 0.8, out
    assert f"saved the model to {model}" in out
    net = fusedmlp.load(model)
    assert net.layer_sizes == [4, 64, 3] and net.loss == "cross_entropy"

    predictions = tmp_path / "predictions.csv"
    status, out, err = run_main(["predict", str(model), "iris", "-o", str(predictions)], capsys)
    assert status == 0, err
    X, y = fusedmlp.datasets.load_dataset("iris")
    written = np.loadtxt(predictions, dtype=np.int64)
    np.testing.assert_array_equal(written, net.predict(X))
    accuracy = float(re.search(r"accuracy on .*iris.*: ([\d.]+)", out).group(1))
    assert accuracy == pytest.approx(np.mean(written == y), abs=1e-4)
    assert accuracy >= 0.8


@needs_native
def test_train_on_a_csv_regression_and_predict_features_only_to_stdout(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.05 * rng.normal(size=300)
    data = tmp_path / "train.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",", header="a,b,c,target", comments="")
    model = tmp_path / "model.npz"
    status, out, err = run_main(["train", str(data), "--hidden", "16", "--epochs", "40", "--lr", "0.01", "-q",
                                 "-o", str(model)], capsys)
    assert status == 0, err
    assert "+ mse" in out  # the task was guessed from the real-valued target
    assert float(re.search(r"^validation R\^2\s+([-\d.]+)$", out, re.M).group(1)) > 0.9

    features = tmp_path / "features.csv"
    np.savetxt(features, X[:5], delimiter=",")
    status, out, err = run_main(["predict", str(model), str(features)], capsys)
    assert status == 0, err
    printed = np.array([float(line) for line in out.splitlines()])
    np.testing.assert_allclose(printed, fusedmlp.load(model).predict(X[:5]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(printed, y[:5], atol=0.5)


@needs_native
def test_predict_probabilities_to_npy_from_an_npz(tmp_path, capsys):
    X, y = fusedmlp.datasets.load_dataset("wine")
    data = tmp_path / "wine.npz"
    np.savez(data, X=X, y=y)
    model = tmp_path / "model.npz"
    assert run_main(["train", str(data), "--epochs", "5", "-q", "-o", str(model)], capsys)[0] == 0
    out_path = tmp_path / "proba.npy"
    status, out, err = run_main(["predict", str(model), str(data), "--proba", "-o", str(out_path)], capsys)
    assert status == 0, err
    proba = np.load(out_path)
    assert proba.shape == (178, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_sweep_tiny_in_this_process(tmp_path, capsys):
    out_folder = tmp_path / "sweep"
    status, out, err = run_main(["sweep", "iris", "--batch-sizes", "16,64", "--lrs", "0.05,0.5", "--activations",
                                 "relu", "--warmup", "off", "--seeds", "1", "--epochs", "2", "--workers", "1",
                                 "--backend", "numpy", "--no-plots", "-q", "--out", str(out_folder)], capsys)
    assert status == 0, err
    assert "4 runs" in out and "best points" in out
    rows = (out_folder / "sweep.csv").read_text().splitlines()
    assert len(rows) == 1 + 4
    assert {row.split(",")[0] for row in rows[1:]} == {"16", "64"}


# --- bad arguments: one line, never a traceback ---------------------------------------------------

def _bad_files(tmp_path):
    (tmp_path / "words.csv").write_text("a,b\n1,x\n")
    (tmp_path / "real.csv").write_text("1,0.5\n2,1.5\n3,2.25\n")
    (tmp_path / "garbage.npz").write_text("not a model")
    model = tmp_path / "iris-model.npz"
    fusedmlp.MLP([4, 3], backend="numpy").save(model)
    return {"dir": str(tmp_path), "model": str(model)}


@pytest.mark.parametrize("args, status, message", [
    (["train", "mnist"], 2, "unknown data set 'mnist'"),
    (["train", "{dir}/missing.csv"], 1, "missing.csv: No such file"),
    (["train", "iris", "--epochs", "0"], 2, "--epochs"),
    (["train", "iris", "--activation", "swish"], 2, "unknown activation 'swish'"),
    (["train", "iris", "--hidden", "8,x"], 2, "--hidden"),
    (["train", "iris", "--momentum", "1"], 2, "--momentum"),
    (["train", "{dir}/words.csv"], 2, "'x' is not a number"),
    (["train", "{dir}/real.csv", "--loss", "cross_entropy"], 2, "cross_entropy needs"),
    (["train", "iris", "--target", "3"], 2, "--target"),
    (["train", "iris", "--backend", "numpy", "-q", "-o", "{dir}/no/such/folder/m.npz"], 1, "No such file"),
    (["predict", "{dir}/missing.npz", "iris"], 1, "missing.npz: No such file"),
    (["predict", "{dir}/garbage.npz", "iris"], 2, "garbage.npz"),
    (["predict", "{model}", "wine"], 2, "13 feature columns; the model takes 4"),
    (["predict", "{model}", "iris", "-o", "{dir}/out.txt"], 2, ".csv or .npy"),
    (["sweep", "--lrs", "0.1,x"], 2, "--lrs"),
    (["sweep", "--activations", "relu,swish"], 2, "unknown activation 'swish'"),
    (["sweep", "--workers", "0"], 2, "--workers"),
    (["sweep", "--batch-sizes", "16,16"], 2, "distinct"),
    (["sweep", "mnist"], 2, "unknown data set 'mnist'"),
    (["sweep", "--scheduler", "localhost", "-q"], 2, "scheduler"),
])
def test_bad_arguments_give_one_line_and_an_exit_status(tmp_path, capsys, args, status, message):
    files = _bad_files(tmp_path)
    argv = [arg.format(**files) for arg in args]
    got, out, err = run_main(argv, capsys)
    assert got == status, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fusedmlp") and "error:" in lines[0]
    assert message in lines[0]


@needs_native
def test_divergent_training_is_one_line_and_exit_1(capsys):
    status, out, err = run_main(["train", "iris", "--lr", "1e20", "--epochs", "3", "-q", "-o", os.devnull], capsys)
    assert status == 1
    assert len(err.splitlines()) == 1 and "diverged" in err


def test_bad_model_file_in_a_subprocess_has_no_traceback(tmp_path):
    (tmp_path / "garbage.npz").write_text("not a model")
    completed = run_cli("predict", str(tmp_path / "garbage.npz"), "iris")
    assert completed.returncode == 2
    assert len(completed.stderr.splitlines()) == 1 and "Traceback" not in completed.stderr
    assert completed.stdout == ""
