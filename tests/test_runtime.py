"""fusedmlp.set_num_threads / get_num_threads / cpu_isa / available_isas over the native module."""

import subprocess
import sys

import numpy as np
import pytest

import fusedmlp as fm

pytestmark = pytest.mark.skipif(not fm.native_available(), reason="the native module is not built")


def test_set_num_threads_round_trips_and_keeps_results_identical():
    before = fm.get_num_threads()
    X = np.random.default_rng(1).standard_normal((512, 96))
    y = np.arange(512) % 7
    try:
        results = []
        for threads in (1, 2):
            fm.set_num_threads(threads)
            assert fm.get_num_threads() == threads
            net = fm.MLP([96, 256, 7], seed=3)
            net.fit(X, y, epochs=2, batch_size=128)
            results.append(net.weights)
        for a, b in zip(*results):
            np.testing.assert_array_equal(a, b)
    finally:
        fm.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True])
def test_set_num_threads_rejects_bad_counts(bad):
    before = fm.get_num_threads()
    with pytest.raises((TypeError, ValueError), match="n"):
        fm.set_num_threads(bad)
    assert fm.get_num_threads() == before


def test_cpu_isa_is_one_of_the_available_ones():
    assert fm.cpu_isa() in fm.available_isas()
    assert "generic" in fm.available_isas()


def test_omp_num_threads_sets_the_default():
    code = "import fusedmlp as fm; print(fm.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_a_bad_fusedmlp_isa_is_an_import_error_not_a_missing_module():
    code = "import fusedmlp"
    completed = subprocess.run([sys.executable, "-c", code],
                               env={**__import__("os").environ, "FUSEDMLP_ISA": "sse9"}, capture_output=True, text=True)
    assert completed.returncode != 0
    assert "FUSEDMLP_ISA" in completed.stderr
