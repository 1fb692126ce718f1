"""Determinism: the same seed and the same calls give bit-identical parameters, run after run,
in one process and across processes; for the cpu backend also whatever the number of OpenMP
threads (each output element is summed in one fixed order), on each instruction-set path."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

import fusedmlp as fm

NATIVE = pytest.mark.skipif(not fm.native_available(), reason="fusedmlp._native is not built")
BACKENDS = [pytest.param("numpy"), pytest.param("cpu", marks=NATIVE)]

# Wide enough layers and batches (above 2^20 multiply-adds per product) that the matrix
# products are split across threads; odd sizes so that the split is uneven.
CASES = {
    "ce": dict(sizes=[64, 256, 193, 7], activation="gelu", loss="cross_entropy"),
    "mse": dict(sizes=[64, 257, 131, 3], activation="tanh", loss="mse"),
    "bce": dict(sizes=[64, 320, 2], activation="relu", loss="bce"),
}
N_SAMPLES, BATCH = 600, 203

# One training run, printed as a digest of every parameter's bytes (and of the step losses).
_SCRIPT = r"""
import hashlib, sys
import numpy as np
import fusedmlp as fm
backend, dtype, kind, threads = sys.argv[1:5]
from fusedmlp import _native
if threads != "env" and hasattr(_native, "set_num_threads"):
    _native.set_num_threads(int(threads))
spec = {spec!r}[kind]
X = np.random.default_rng(5).standard_normal(({n}, 64))
logits = X @ np.random.default_rng(5).standard_normal((64, spec["sizes"][-1]))
y = {{"cross_entropy": logits.argmax(1), "bce": (logits > 0) * 1.0, "mse": np.tanh(logits)}}[spec["loss"]]
net = fm.MLP(spec["sizes"], activation=spec["activation"], loss=spec["loss"], backend=backend, dtype=dtype, seed=9)
history = net.fit(X, y, epochs=3, batch_size={batch}, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
digest = hashlib.sha256(history.step_loss.tobytes())
for array in net.weights + net.biases + [net.decision_function(X)]:
    digest.update(array.tobytes())
print(digest.hexdigest())
"""


def digest_of_run(backend, dtype, kind, threads="env", env=None):
    """Run one training in a fresh interpreter; threads: a count for _native.set_num_threads
    where it exists, else given as OMP_NUM_THREADS."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fm.__file__)))
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join([package_root, environment.get("PYTHONPATH", "")])
    if threads != "env":
        environment["OMP_NUM_THREADS"] = str(threads)
    script = _SCRIPT.format(spec=CASES, n=N_SAMPLES, batch=BATCH)
    done = subprocess.run([sys.executable, "-c", script, backend, dtype, kind, str(threads)], env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def features():
    return np.random.default_rng(5).standard_normal((N_SAMPLES, 64))


def train(backend, dtype, kind, seed=9, fit_seed=None):
    spec = CASES[kind]
    X = features()
    logits = X @ np.random.default_rng(5).standard_normal((64, spec["sizes"][-1]))
    y = {"cross_entropy": logits.argmax(1), "bce": (logits > 0) * 1.0, "mse": np.tanh(logits)}[spec["loss"]]
    net = fm.MLP(spec["sizes"], activation=spec["activation"], loss=spec["loss"], backend=backend, dtype=dtype,
                 seed=seed)
    history = net.fit(X, y, epochs=3, batch_size=BATCH, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4,
                      seed=fit_seed)
    return net, history


def fingerprint(net, history):
    return [history.step_loss.tobytes()] + [a.tobytes() for a in net.weights + net.biases]


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_bits_in_one_process(backend, dtype, kind):
    first, second = fingerprint(*train(backend, dtype, kind)), fingerprint(*train(backend, dtype, kind))
    assert first == second
    # A different seed gives a different model: the fingerprint can tell.
    assert fingerprint(*train(backend, dtype, kind, seed=10)) != first


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_bits_across_processes(backend):
    runs = {digest_of_run(backend, "float32", "ce") for _ in range(2)}
    assert len(runs) == 1
    # The child computes what this process computes.
    net, history = train(backend, "float32", "ce")
    digest = hashlib.sha256(history.step_loss.tobytes())
    for array in net.weights + net.biases + [net.decision_function(features())]:
        digest.update(array.tobytes())
    assert runs == {digest.hexdigest()}


def _threaded():
    """Whether the native kernels can run on several threads (a thread count to set, or OpenMP)."""
    native = fm.backends._native
    return native is not None and (hasattr(native, "set_num_threads") or bool(getattr(native, "OPENMP", False)))


@NATIVE
@pytest.mark.skipif(not _threaded(), reason="built without threads (no OpenMP, no set_num_threads): serial kernels")
@pytest.mark.parametrize("dtype, kind", [("float32", "ce"), ("float64", "mse"), ("float32", "bce")])
def test_cpu_results_do_not_depend_on_the_thread_count(dtype, kind):
    digests = {threads: digest_of_run("cpu", dtype, kind, threads) for threads in (1, 2, 3)}
    assert len(set(digests.values())) == 1, digests


def _isas():
    if not fm.native_available():
        return []
    return list(getattr(fm.backends._native, "available_isas", lambda: [])())


@NATIVE
@pytest.mark.parametrize("isa", _isas() or [pytest.param(None, marks=pytest.mark.skip(
    reason="this build has one instruction-set path (no _native.available_isas)"))])
def test_each_isa_path_is_deterministic_and_thread_count_independent(isa):
    """Results may differ between ISA paths (different summation blocks), never within one."""
    env = {"FUSEDMLP_ISA": isa}
    digests = [digest_of_run("cpu", "float32", "ce", threads, env) for threads in (1, 2, 1)]
    assert len(set(digests)) == 1, digests
