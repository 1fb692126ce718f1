"""The GPU tools' own logic (bench/gpu_timeline.py, bench/gpu_bench.py), which otherwise runs only
on a GPU machine, where a broken analysis or harness would cost scarce device time."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))

import gpu_bench  # noqa: E402
import gpu_timeline  # noqa: E402
from gpu_timeline import Event  # noqa: E402

US = 1000  # ns


def two_epochs():
    """Epoch 0 (host window 0-100 us): a 2 us upload at 10 us, kernels 15-35 and 40-50 us, and
    45-55 us on another stream. Epoch 1 (200-280 us): one kernel, 230-260 us."""
    events = [Event("Memcpy HtoD", "memcpy", 10 * US, 2 * US, 7),
              Event("a", "kernel", 15 * US, 20 * US, 7), Event("b", "kernel", 40 * US, 10 * US, 7),
              Event("c", "kernel", 45 * US, 10 * US, 8), Event("a", "kernel", 230 * US, 30 * US, 7)]
    windows = [(0, 100 * US), (200 * US, 280 * US)]
    runtime = {"cudaGraphLaunch": (2, 24 * US), "cudaStreamSynchronize": (2, 100 * US)}
    return gpu_timeline.analyze(events, 2, 1, [w[0] for w in windows], [100e-6, 80e-6], runtime, windows)


def test_timeline_splits_each_epoch_into_busy_time_gaps_and_host_time():
    result = two_epochs()
    first, second = result["per_epoch"]
    # span from the first kernel's start to the last kernel's end; busy: the union of the kernels
    assert (first["span_ns"], first["busy_ns"], first["gap_ns"]) == (40 * US, 35 * US, 5 * US)
    assert (second["span_ns"], second["busy_ns"], second["gap_ns"]) == (30 * US, 30 * US, 0)
    # host before the first device event (the upload counts) and after the last
    assert (first["lead_ns"], first["tail_ns"]) == (10 * US, 45 * US)
    assert (second["lead_ns"], second["tail_ns"]) == (30 * US, 20 * US)
    assert result["overlapping"] == 1
    assert (first["memcpy"], first["memcpy_ns"]) == (1, 2 * US)


def test_timeline_report_gives_host_time_and_runtime_calls_per_epoch():
    report = gpu_timeline.format_report(two_epochs())
    assert "host before the GPU's first event 20.0 us" in report
    assert "after its last 32.5 us" in report
    calls = report[report.index("CUDA runtime calls"):].splitlines()[1:]
    assert calls[0].split() == ["1.00", "50.0", "cudaStreamSynchronize"]
    assert calls[1].split() == ["1.00", "12.0", "cudaGraphLaunch"]


def test_timeline_without_an_epochs_events_leaves_the_host_split_out():
    events = [Event("a", "kernel", 15 * US, 20 * US, 7)]
    result = gpu_timeline.analyze(events, 2, 1, [0, 200 * US], None, {}, [(0, 100 * US), (200 * US, 280 * US)])
    assert "lead_ns" in result["per_epoch"][0] and "lead_ns" not in result["per_epoch"][1]
    assert "host before" not in gpu_timeline.format_report(result)


class TwoHalvesClock:
    """A backend on a fake clock that gpu_timeline reads through time.perf_counter: start_epoch
    takes 2 ms and the epoch ends 5 ms after it returns; an epoch of no steps takes 0.5 ms."""

    def __init__(self):
        self.now = 0.0
        self.started = []

    def perf_counter(self):
        return self.now

    def start_epoch(self, what):
        self.started.append(what)
        self.now += 0.5e-3 if what == "empty" else 2e-3

    def finish_epoch(self):
        if self.started[-1] == "empty":
            return [], False
        self.now += 5e-3
        return [0.5], False


def test_unprofiled_epochs_time_the_call_and_the_wait_apart(monkeypatch):
    net = TwoHalvesClock()
    monkeypatch.setattr(gpu_timeline.time, "perf_counter", net.perf_counter)
    times = gpu_timeline.unprofiled_epochs(net, lambda method, empty=False: method("empty" if empty else "epoch"), 3,
                                           lambda: None)
    assert net.started == ["epoch"] * 3 + ["empty"] * 3
    assert [round(t * 1e6) for t in times] == [2000, 5000, 7000, 500]
    line = gpu_timeline.unprofiled_line(*times, 6.5)
    assert line == ("unprofiled, median epoch: wall 7.000 ms = start_epoch call 2000.0 us (an epoch of no steps: "
                    "500.0 us) + finish_epoch wait 5000.0 us; minus the profiled GPU span: 500.0 us per epoch")


def test_gpu_bench_runs_both_fusedmlp_methods_or_says_why_not(tmp_path):
    out = tmp_path / "bench.json"
    assert gpu_bench.main(["--dry-run", "--only", "tiny", "--methods", "fusedmlp,fusedmlp_fit", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["name"] == "tiny"
    for method in ("fusedmlp", "fusedmlp_fit"):  # measured where a GPU is, else the reason why not
        assert (method in row["samples_per_s"]) != (method in row["errors"])
        if method in row["errors"]:
            assert "cuda" in row["errors"][method]


def test_gpu_bench_holds_only_the_fixed_order_epochs_to_the_targets(tmp_path, monkeypatch):
    rates = {"fusedmlp": 30.0, "fusedmlp_fit": 24.0, "torch_eager": 1.0, "torch_graph": 2.0, "jax_scan": 20.0}
    for method, rate in rates.items():
        monkeypatch.setitem(gpu_bench.RUNNERS, method, lambda *args, rate=rate: (rate, {}))
    out = tmp_path / "bench.json"
    assert gpu_bench.main(["--dry-run", "--only", "tiny", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["samples_per_s"] == rates
    assert row["ratios"] == {"fusedmlp/torch_eager": 30.0, "fusedmlp/torch_graph": 15.0, "fusedmlp/jax_scan": 1.5}
    # tiny's targets: 10x the CUDA graph (met here), 2.5x JAX (missed here)
    assert [(t["peer"], t["met"]) for t in row["targets"]] == [("torch_graph", True), ("jax_scan", False)]
