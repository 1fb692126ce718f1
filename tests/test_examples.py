"""The scripts in examples/ run, each in its own process, and print what they claim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, *args, cwd):
    completed = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                               timeout=180, cwd=cwd, env={**os.environ, "MPLBACKEND": "Agg"})
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    return completed.stdout


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["lr_warmup_large_batch.py", "quick_start.py",
                                                             "sweep_small.py"]


def test_quick_start(tmp_path):
    out = run_example("quick_start.py", cwd=tmp_path)
    assert float(re.search(r"test accuracy\s+([\d.]+)", out).group(1)) >= 0.9
    assert "saved and reloaded" in out


def test_lr_warmup_large_batch_shows_warmup_helping(tmp_path):
    out = run_example("lr_warmup_large_batch.py", cwd=tmp_path)
    means = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"^\s+(\d+)\s.*\s([\d.]+)$", out, re.M)}
    assert set(means) == {0, 30}, out
    assert means[30] > means[0] + 0.3, out


def test_sweep_small_writes_results_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("sweep_small.py", str(tmp_path / "results"), cwd=tmp_path)
    assert out.startswith("48 runs")
    written = {p.name for p in (tmp_path / "results").iterdir()}
    assert {"sweep.csv", "sweep.json", "score_heatmap.png", "warmup_large_batch.png"} <= written
