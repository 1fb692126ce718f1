"""Smoke tests of the comparison runner (fusedmlp.bench): it runs, its figures are consistent,
its JSON has the documented fields, its FLOP count is the documented formula, and its command
line rejects bad arguments with one clear line. The speed itself is not asserted here."""

import argparse
import importlib.util
import json
import math
import types

import numpy as np
import pytest

import fusedmlp as fm
from fusedmlp import bench

HAVE_TORCH = importlib.util.find_spec("torch") is not None


def quick_run(frameworks, **overrides):
    options = dict(configs=["tiny"], frameworks=frameworks, repeats=2, quick=True, settle_seconds=0.0,
                   min_run_seconds=0.0)
    options.update(overrides)
    return bench.run_benchmarks(**options)


def bench_parser():
    parser = argparse.ArgumentParser(prog="fusedmlp")
    bench.register(parser.add_subparsers(dest="command", required=True))
    return parser


# --- what is measured -----------------------------------------------------------------------

def test_configurations_are_the_issue_table():
    table = {name: (list(c.layer_sizes), c.batch_size, c.n_samples) for name, c in bench.CONFIGS.items()}
    assert table == {
        "tiny": ([32, 64, 64, 4], 32, 8192),
        "small": ([64, 128, 128, 10], 64, 16384),
        "mnist": ([784, 256, 128, 10], 128, 16384),
        "wide": ([1024, 1024, 1024, 10], 256, 8192),
    }


def test_training_flops_hand_computed():
    # tiny 32-64-64-4: first layer forward + dW = 2 products of 2*32*64; then 3 products each of
    # 2*64*64 and 2*64*4:  8192 + 24576 + 1536.
    assert bench.training_flops_per_sample([32, 64, 64, 4]) == 34304
    # mnist 784-256-128-10: 2*2*784*256 + 3*2*256*128 + 3*2*128*10 = 802816 + 196608 + 7680.
    assert bench.training_flops_per_sample([784, 256, 128, 10]) == 1007104
    assert bench.predict_flops_per_sample([32, 64, 64, 4]) == 2 * (32 * 64 + 64 * 64 + 64 * 4)


def test_quick_configuration_keeps_the_network():
    quick = bench.CONFIGS["wide"].quick()
    assert quick.layer_sizes == bench.CONFIGS["wide"].layer_sizes
    assert quick.n_samples == bench.QUICK_BATCHES * 256 and quick.steps == bench.QUICK_BATCHES


# --- a quick run ----------------------------------------------------------------------------

def test_quick_run_gives_positive_consistent_figures(tmp_path):
    frameworks = ["numpy"] + (["cpu"] if fm.native_available() else [])
    results = quick_run(frameworks)
    assert results["errors"] == []
    entry = results["configs"]["tiny"]
    n = bench.QUICK_BATCHES * 32
    assert entry["n_samples"] == n and entry["steps"] == bench.QUICK_BATCHES
    assert entry["flops_per_sample"] == 34304
    gflops = results["roofline"]["gflops"]
    assert 0 < gflops < 1e5 and gflops == max(results["roofline"]["gflops_start"], results["roofline"]["gflops_end"])
    for name in frameworks:
        run = entry["train_float32"][name]
        assert len(run["seconds"]) == 2 and all(s > 0 for s in run["seconds"])
        assert run["samples_per_s"] == pytest.approx(n / min(run["seconds"]))
        assert 0 < run["median_samples_per_s"] <= run["samples_per_s"] < 1e9
        assert run["roofline_fraction"] == pytest.approx(run["samples_per_s"] * 34304 / (gflops * 1e9))
    for key in ("train_float64", "predict_float32"):
        for name in {"cpu", "numpy"} & set(frameworks):
            assert entry[key][name]["samples_per_s"] > 0
    if fm.native_available():
        rates = {name: entry["train_float32"][name]["samples_per_s"] for name in frameworks}
        for name in frameworks:
            if name != "cpu":
                assert entry["ratios"][name] == pytest.approx(rates["cpu"] / rates[name])
        assert entry["roofline_fraction"] == entry["train_float32"]["cpu"]["roofline_fraction"]
        assert entry["train_float64"]["ratio"] == pytest.approx(
            entry["train_float64"]["cpu"]["samples_per_s"] / entry["train_float64"]["numpy"]["samples_per_s"])

    path = tmp_path / "results.json"
    bench.write_json(results, path)
    saved = json.loads(path.read_text())
    for field in ("schema", "command", "settings", "flops_formula", "machine", "roofline", "frameworks", "configs",
                  "targets", "errors"):
        assert field in saved, field
    for field in ("cpu_model", "usable_cpus", "native_isa", "versions", "environment", "load_average"):
        assert field in saved["machine"], field
    assert saved["machine"]["versions"]["numpy"] == __import__("numpy").__version__
    assert saved["settings"]["statistic"] == "best" and saved["settings"]["quick"] is True
    targets = {(row["config"], row["metric"]) for row in saved["targets"]}
    assert targets == {("tiny", m) for m in ("ratio:numpy", "ratio:jax", "ratio:torch", "float64:numpy",
                                             "predict:numpy")}
    jax_row = next(row for row in saved["targets"] if row["metric"] == "ratio:jax")
    assert jax_row["value"] is None and jax_row["met"] is None  # jax not selected: no verdict

    text = bench.format_results(results)
    assert "training samples/s, float32" in text and "targets" in text and "tiny" in text


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
def test_quick_run_times_pytorch():
    frameworks = ["torch"] + (["cpu"] if fm.native_available() else [])
    # One thread: PyTorch's OpenMP pool can stall for seconds on a machine busy with other work.
    results = quick_run(frameworks, float64=False, predict=False, threads=1)
    assert results["errors"] == []
    entry = results["configs"]["tiny"]
    torch_run = entry["train_float32"]["torch"]
    assert torch_run["samples_per_s"] == pytest.approx(entry["n_samples"] / min(torch_run["seconds"]))
    if fm.native_available():
        assert entry["ratios"] == {"torch": pytest.approx(entry["train_float32"]["cpu"]["samples_per_s"]
                                                          / torch_run["samples_per_s"])}
    assert results["frameworks"]["torch"]["version"] == __import__("torch").__version__
    assert results["frameworks"]["torch"]["threads"] == "torch.set_num_threads(1)"
    assert results["settings"]["threads"] == 1


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_peers_train_exactly_like_the_reference(framework):
    """The comparison is fair only if every peer does the same epoch: same initial parameters,
    same batches in the same order, same loss and update. A last partial batch included."""
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")
    config = bench.BenchConfig("odd", (32, 64, 64, 4), 32, 4 * 32 + 7)
    X, y = bench.synthetic_classification(config.layer_sizes, config.n_samples)
    initial = bench.initial_parameters(config.layer_sizes)
    reference = bench._FusedTrainer("numpy", config, X, y, initial)
    peer = {"torch": bench._TorchTrainer, "jax": bench._JaxTrainer}[framework](config, X, y, initial)
    reference()
    peer()
    expected, actual = reference.parameters(), peer.parameters()
    for want, got in zip(expected[0] + expected[1], actual[0] + actual[1]):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    moved = max(np.abs(w - w0).max() for w, w0 in zip(expected[0], initial[0]))
    assert moved > 1e-3  # the epoch really trained


def test_missing_framework_is_recorded_not_fatal(monkeypatch):
    real_import = bench._import_framework

    def no_sklearn(name, threads):
        if name == "sklearn":
            return None, "sklearn cannot be imported (ImportError: pretend)"
        return real_import(name, threads)

    monkeypatch.setattr(bench, "_import_framework", no_sklearn)
    results = quick_run(["numpy", "sklearn"], float64=False, predict=False)
    assert results["frameworks"]["sklearn"] == {"available": False, "title": bench.FRAMEWORK_TITLES["sklearn"],
                                                "reason": "sklearn cannot be imported (ImportError: pretend)",
                                                "version": None}
    assert "sklearn" not in results["configs"]["tiny"]["train_float32"]
    assert "sklearn: not measured" in bench.format_results(results)


def test_a_failing_framework_keeps_the_others(monkeypatch):
    class ExplodingTrainer:
        def __init__(self, config, X, y):
            pass

        def __call__(self):
            raise RuntimeError("kernel exploded")

    # A stand-in for scikit-learn, so that the test needs neither its import nor its time.
    monkeypatch.setattr(bench, "_import_framework", lambda name, threads: (types.SimpleNamespace(__version__="0"), None))
    monkeypatch.setattr(bench, "_SklearnTrainer", ExplodingTrainer)
    results = quick_run(["numpy", "sklearn"], float64=False, predict=False)
    tiny = results["configs"]["tiny"]["train_float32"]
    assert tiny["numpy"]["samples_per_s"] > 0
    assert tiny["sklearn"] == {"error": "RuntimeError: kernel exploded"}
    assert results["errors"] == ["tiny train float32 sklearn: RuntimeError: kernel exploded"]
    assert "tiny train float32 sklearn: RuntimeError: kernel exploded" in bench.format_results(results)


@pytest.mark.parametrize("arguments, message", [
    (dict(frameworks=["tensorflow"]), "frameworks"),
    (dict(configs=["huge"]), "configs"),
    (dict(repeats=0), "repeats"),
    (dict(threads=-1), "threads"),
    (dict(settle_seconds=-1.0), "settle_seconds"),
])
def test_run_benchmarks_rejects_bad_arguments(arguments, message):
    options = dict(configs=["tiny"], frameworks=["numpy"], quick=True)
    options.update(arguments)
    with pytest.raises(ValueError, match=message):
        bench.run_benchmarks(**options)


# --- targets --------------------------------------------------------------------------------

def test_targets_verdicts():
    def entry(ratios, roofline=None, float64=None, predict=None):
        return {"ratios": ratios, "roofline_fraction": roofline, "train_float64": {"ratio": float64},
                "predict_float32": {"ratio": predict}}

    results = {"configs": {
        "tiny": entry({"numpy": 5.0, "jax": 1.0, "torch": 1.99}, float64=1.2, predict=0.5),
        "wide": entry({"numpy": 1.1, "jax": 1.01}, roofline=0.9),
    }}
    verdicts = {(row["config"], row["metric"]): row["met"] for row in bench.evaluate_targets(results)}
    assert verdicts == {
        ("tiny", "ratio:numpy"): True,    # >= 5x: exactly 5 meets it
        ("wide", "roofline"): True,       # >= 90 %
        ("tiny", "ratio:jax"): False,     # "ahead of": a tie is not ahead
        ("wide", "ratio:jax"): True,
        ("tiny", "ratio:torch"): False,
        ("wide", "ratio:torch"): None,    # torch not measured
        ("tiny", "float64:numpy"): True,
        ("wide", "float64:numpy"): None,
        ("tiny", "predict:numpy"): False,
        ("wide", "predict:numpy"): None,
    }


def test_busy_machine_is_flagged():
    assert bench.machine_busy({"usable_cpus": 2, "load_average": [1.5, 1, 1], "load_average_end": [2.0, 1, 1]}) is None
    warning = bench.machine_busy({"usable_cpus": 2, "load_average": [1.5, 1, 1], "load_average_end": [7.25, 3, 1]})
    assert "1.5 -> 7.2" in warning and "2 cores" in warning


# --- command line ---------------------------------------------------------------------------

def test_register_parses_every_option():
    args = bench_parser().parse_args(["bench", "--configs", "tiny,small", "wide", "--frameworks", "numpy", "cpu",
                                      "--repeats", "2", "--quick", "--threads", "1", "--settle", "0",
                                      "--json", "out.json"])
    assert args.configs == ["tiny", "small", "wide"] and args.frameworks == ["numpy", "cpu"]
    assert (args.repeats, args.quick, args.threads, args.settle, args.json) == (2, True, 1, 0.0, "out.json")
    assert args.func is bench.run_from_args
    defaults = bench_parser().parse_args(["bench"])
    assert (defaults.configs, defaults.frameworks, defaults.repeats, defaults.quick, defaults.threads,
            defaults.json) == (None, None, bench.DEFAULT_REPEATS, False, None, "bench-results.json")


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as stop:
        bench_parser().parse_args(["bench", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for option in ("--configs", "--frameworks", "--repeats", "--quick", "--threads", "--settle", "--json"):
        assert option in text
    assert "OPENBLAS_CORETYPE" in text


@pytest.mark.parametrize("argv, words", [
    (["--configs", "huge"], ["'huge'", "tiny, small, mnist, wide"]),
    (["--frameworks", "numpy,tensorflow"], ["'tensorflow'", "cpu, numpy, torch, jax, sklearn"]),
    (["--repeats", "0"], ["--repeats", "integer >= 1"]),
    (["--threads", "many"], ["--threads", "'many'"]),
    (["--settle", "-1"], ["--settle", "seconds >= 0"]),
])
def test_bad_arguments_give_one_clear_line(capsys, argv, words):
    with pytest.raises(SystemExit) as stop:
        bench_parser().parse_args(["bench", *argv])
    assert stop.value.code == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert error_line.startswith("fusedmlp bench: error:")
    for word in words:
        assert word in error_line


def test_run_from_args_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    args = bench_parser().parse_args(["bench", "--quick", "--configs", "tiny", "--frameworks", "numpy",
                                      "--repeats", "1", "--settle", "0", "--json", str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "training samples/s, float32" in out and str(path) in out
    saved = json.loads(path.read_text())
    assert saved["command"] and saved["settings"]["repeats"] == 1
    assert math.isfinite(saved["configs"]["tiny"]["train_float32"]["numpy"]["samples_per_s"])


def test_run_from_args_refuses_an_unwritable_json_path_before_running(tmp_path, capsys):
    args = bench_parser().parse_args(["bench", "--quick", "--json", str(tmp_path / "missing" / "out.json")])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fusedmlp bench: error: --json")
