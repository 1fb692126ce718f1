"""The comparison benchmark behind `python -m fusedmlp bench`.

For each configuration of CONFIGS (one table drives this runner and bench/test_bench_fit.py)
it measures, in one process and one run:

* training samples/s, float32, of one epoch of mini-batch SGD (relu hidden layers,
  cross_entropy, lr 0.01, no momentum, no weight decay, shuffle off, synthetic data from a
  fixed seed) for
    cpu      fusedmlp's native backend: MLP(backend="cpu").fit(epochs=1), input checks included
    numpy    fusedmlp's NumPy reference: MLP(backend="numpy").fit(epochs=1)
    torch    PyTorch eager: nn.Sequential(Linear, ReLU, ...) + nn.CrossEntropyLoss +
             torch.optim.SGD, a Python loop over the batches (data already tensors)
    jax      JAX: the whole epoch as one jitted jax.lax.scan over the batches, parameters
             donated; the compilation happens in the warm-up call and is NOT timed (its time
             is reported separately as first_call_seconds)
    sklearn  scikit-learn MLPClassifier(solver="sgd", momentum=0, alpha=0, shuffle=False,
             learning_rate_init=0.01): one partial_fit call is one epoch
  every framework starts from the same initial parameters (fusedmlp's seeded init), except
  scikit-learn, which has no way to take them before its first partial_fit;
* the ratio of the native backend's samples/s to each of the others;
* the native backend's fraction of the sgemm "roofline": the GFLOP/s of NumPy's float32 matmul
  of two 2048x2048 matrices (2 * 2048**3 FLOPs), measured in the same run, at its start and at
  its end (the better of the two is used; the machine may be shared);
* float64 training (cpu vs numpy) and float32 inference, MLP.predict (cpu vs numpy);
* the issue's targets (TARGETS) and whether each is met.

FLOPs per training sample (TRAINING_FLOPS_FORMULA): a dense layer with fan_in inputs and fan_out
outputs does three matrix products per sample and step, each of 2 * fan_in * fan_out FLOPs (a
multiply and an add per weight): the forward X.W, the weight gradient X^T.dZ and the input
gradient dZ.W^T. The first layer needs no input gradient, so it counts 2 products and every later
layer 3:  sum_l  k_l * 2 * fan_in_l * fan_out_l,  k_0 = 2, k_l = 3 for l >= 1.  Element-wise work
(bias, activation, loss, update) is not counted, so the fraction is a lower bound of the machine's
use. Inference counts 1 product per layer.

Timing. Each framework is warmed up first by two calls (the first may compile or set up lazily;
the second sizes the timed runs). A timed run is `calls` back-to-back epochs (or
predict calls), as many as make the run last at least min_run_seconds, and gives the seconds per
call. The frameworks take turns, run after run (the order rotates each round), so that a burst of
load from elsewhere on the machine hits all of them alike; the reported figure is the BEST run of
`repeats` (noise on a shared machine only ever adds time); the median is in the JSON too.

Threads. Every framework uses the same number of threads, all the cores this process may run on
unless `threads` is given: threadpoolctl (when installed) limits the BLAS (NumPy, scikit-learn)
and OpenMP (the native backend, PyTorch's) pools, _native.set_num_threads and
torch.set_num_threads are called where they exist. JAX's thread pool is fixed when jax is first
imported: threads=1 is applied through XLA_FLAGS when jax is not imported yet, otherwise JAX
uses all cores (noted in the JSON).

Fairness between frameworks: OpenBLAS's worker threads keep spinning for about 0.1 s after each
NumPy call (measured here), and OpenMP workers spin after their parallel regions, stealing cores
from whichever framework runs next. Before every timed run and warm-up the runner therefore
sleeps settle_seconds (0.2 s by default) so that all those threads have gone to sleep.

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE pin OpenBLAS to a core type or cache size it did not
detect and slow NumPy down; OpenBLAS reads them when it is loaded, so they must be unset in the
benchmark command (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fusedmlp bench`).
The runner records them in the JSON and warns when they are set.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

# --- what is measured -----------------------------------------------------------------------

ACTIVATION = "relu"
LOSS = "cross_entropy"
LEARNING_RATE = 0.01
DATA_SEED = 0
MODEL_SEED = 0

ROOFLINE_SIZE = 2048
QUICK_ROOFLINE_SIZE = 512
QUICK_BATCHES = 8  # --quick: this many batches per epoch instead of the configuration's samples

DEFAULT_REPEATS = 5
DEFAULT_SETTLE_SECONDS = 0.2
QUICK_SETTLE_SECONDS = 0.02
DEFAULT_MIN_RUN_SECONDS = 0.1
QUICK_MIN_RUN_SECONDS = 0.005
DEFAULT_JSON_PATH = "bench-results.json"
STATISTIC = "best"  # of the timed runs; the median is reported alongside

TRAINING_FLOPS_FORMULA = ("sum over layers of k * 2*fan_in*fan_out, k = 2 for the first layer (forward, dW) "
                          "and 3 for every later layer (forward, dW, dX); element-wise work not counted")
PREDICT_FLOPS_FORMULA = "sum over layers of 2*fan_in*fan_out (forward only)"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark shape: float32 MLP layer_sizes, batch_size samples per step, n_samples per epoch."""

    name: str
    layer_sizes: tuple
    batch_size: int
    n_samples: int

    def quick(self):
        """The same network on QUICK_BATCHES batches only (for tests)."""
        return dataclasses.replace(self, n_samples=min(self.n_samples, QUICK_BATCHES * self.batch_size))

    @property
    def steps(self):
        return -(-self.n_samples // self.batch_size)

    @property
    def label(self):
        return "-".join(map(str, self.layer_sizes))


CONFIGS = {c.name: c for c in (
    BenchConfig("tiny", (32, 64, 64, 4), 32, 8192),
    BenchConfig("small", (64, 128, 128, 10), 64, 16384),
    BenchConfig("mnist", (784, 256, 128, 10), 128, 16384),
    BenchConfig("wide", (1024, 1024, 1024, 10), 256, 8192),
)}

NATIVE = "cpu"
REFERENCE = "numpy"
FRAMEWORKS = ("cpu", "numpy", "torch", "jax", "sklearn")
FRAMEWORK_TITLES = {
    "cpu": "fusedmlp cpu (native)",
    "numpy": "fusedmlp numpy (reference)",
    "torch": "PyTorch eager",
    "jax": "JAX lax.scan epoch",
    "sklearn": "scikit-learn MLPClassifier",
}
_IMPORT_NAMES = {"torch": "torch", "jax": "jax", "sklearn": "sklearn"}


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal from the issue: `metric` of `config` ("all": every configuration) >= threshold
    (strictly greater when strict)."""

    config: str
    metric: str
    threshold: float
    description: str
    strict: bool = False


# metric names: "ratio:<framework>" (native train float32 samples/s over that framework's),
# "roofline" (native's fraction), "float64:numpy", "predict:numpy" (native over the reference).
TARGETS = (
    Target("tiny", "ratio:numpy", 5.0, ">= 5x the NumPy reference's samples/s"),
    Target("small", "ratio:numpy", 3.0, ">= 3x the NumPy reference"),
    Target("mnist", "roofline", 0.85, ">= 85% of the sgemm roofline"),
    Target("wide", "roofline", 0.90, ">= 90% of the sgemm roofline"),
    Target("all", "ratio:jax", 1.0, "ahead of JAX's lax.scan epoch", strict=True),
    Target("all", "ratio:torch", 2.0, ">= 2x PyTorch eager"),
    Target("all", "float64:numpy", 1.0, "float64 >= the NumPy reference in float64"),
    Target("all", "predict:numpy", 1.0, "predict >= NumPy"),
)


def training_flops_per_sample(layer_sizes):
    """FLOPs of one training sample's matrix products (see TRAINING_FLOPS_FORMULA)."""
    layer_sizes = list(layer_sizes)
    return sum((2 if layer == 0 else 3) * 2 * fan_in * fan_out
               for layer, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])))


def predict_flops_per_sample(layer_sizes):
    """FLOPs of one sample's forward pass (see PREDICT_FLOPS_FORMULA)."""
    layer_sizes = list(layer_sizes)
    return sum(2 * fan_in * fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]))


def synthetic_classification(layer_sizes, n, dtype=np.float32, seed=DATA_SEED):
    """Features ~ N(0, 1) of `dtype` and int64 labels from a fixed random linear teacher."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, layer_sizes[0]))
    teacher = rng.standard_normal((layer_sizes[0], layer_sizes[-1]))
    y = (X @ teacher).argmax(axis=1).astype(np.int64)
    return X.astype(dtype), y


def initial_parameters(layer_sizes):
    """fusedmlp's seeded initial (weights, biases) in float64, shared by every framework."""
    from .mlp import MLP

    net = MLP(list(layer_sizes), activation=ACTIVATION, loss=LOSS, backend="numpy", dtype="float64",
              seed=MODEL_SEED)
    return net.weights, net.biases


# --- one framework's model, ready to run an epoch -------------------------------------------

class _FusedTrainer:
    def __init__(self, backend, config, X, y, initial):
        from .mlp import MLP

        self._net = MLP(list(config.layer_sizes), activation=ACTIVATION, loss=LOSS, backend=backend,
                        dtype=X.dtype, seed=MODEL_SEED)
        self._net.set_parameters(*initial)
        self._X, self._y, self._batch_size = X, y, config.batch_size

    def __call__(self):
        self._net.fit(self._X, self._y, epochs=1, batch_size=self._batch_size, lr=LEARNING_RATE, shuffle=False)

    def parameters(self):
        return self._net.weights, self._net.biases


class _FusedPredictor:
    def __init__(self, backend, config, X, initial):
        from .mlp import MLP

        self._net = MLP(list(config.layer_sizes), activation=ACTIVATION, loss=LOSS, backend=backend,
                        dtype=X.dtype, seed=MODEL_SEED)
        self._net.set_parameters(*initial)
        self._X = X

    def __call__(self):
        self._net.predict(self._X)


class _TorchTrainer:
    def __init__(self, config, X, y, initial):
        import torch

        self._torch = torch
        layers = []
        weights, biases = initial
        for index, (w, b) in enumerate(zip(weights, biases)):
            linear = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T, dtype=np.float32)))
                linear.bias.copy_(torch.from_numpy(b.astype(np.float32)))
            layers.append(linear)
            if index < len(weights) - 1:
                layers.append(torch.nn.ReLU())
        self._model = torch.nn.Sequential(*layers)
        self._loss = torch.nn.CrossEntropyLoss()
        self._optimizer = torch.optim.SGD(self._model.parameters(), lr=LEARNING_RATE, momentum=0.0)
        self._X = torch.from_numpy(X)
        self._y = torch.from_numpy(y)
        self._batch_size = config.batch_size

    def __call__(self):
        model, loss_fn, optimizer, X, y = self._model, self._loss, self._optimizer, self._X, self._y
        for start in range(0, X.shape[0], self._batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(X[start:start + self._batch_size]), y[start:start + self._batch_size])
            loss.backward()
            optimizer.step()

    def parameters(self):
        linears = [layer for layer in self._model if isinstance(layer, self._torch.nn.Linear)]
        return ([layer.weight.detach().numpy().T.copy() for layer in linears],
                [layer.bias.detach().numpy().copy() for layer in linears])


class _JaxTrainer:
    """The epoch as one compiled program: a lax.scan over the full batches (plus one compiled
    step for a last partial batch, when n is not a multiple of the batch size)."""

    def __init__(self, config, X, y, initial):
        import jax
        import jax.numpy as jnp

        self._jax = jax
        device = jax.devices("cpu")[0]
        n_layers = len(config.layer_sizes) - 1

        def batch_loss(params, xb, yb):
            h = xb
            for index, (w, b) in enumerate(params):
                h = h @ w + b
                if index < n_layers - 1:
                    h = jax.nn.relu(h)
            picked = jnp.take_along_axis(h, yb[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(h, axis=1) - picked)

        loss_and_grad = jax.value_and_grad(batch_loss)

        def step(params, batch):
            loss, grads = loss_and_grad(params, *batch)
            return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads), loss

        def epoch(params, xs, ys):
            return jax.lax.scan(step, params, (xs, ys))

        full = (X.shape[0] // config.batch_size) * config.batch_size
        shape = (full // config.batch_size, config.batch_size)
        self._xs = jax.device_put(X[:full].reshape(shape + X.shape[1:]), device)
        self._ys = jax.device_put(y[:full].astype(np.int32).reshape(shape), device)
        self._tail = None
        if full < X.shape[0]:
            self._tail = (jax.device_put(X[full:], device), jax.device_put(y[full:].astype(np.int32), device))
        self._epoch = jax.jit(epoch, donate_argnums=0)
        self._step = jax.jit(step, donate_argnums=0)
        self._params = jax.device_put([(w.astype(np.float32), b.astype(np.float32)) for w, b in zip(*initial)],
                                      device)

    def __call__(self):
        params, losses = self._epoch(self._params, self._xs, self._ys)
        if self._tail is not None:
            params, _ = self._step(params, self._tail)
        self._params = self._jax.block_until_ready(params)
        losses.block_until_ready()

    def parameters(self):
        return [np.asarray(w) for w, _ in self._params], [np.asarray(b) for _, b in self._params]


class _SklearnTrainer:
    def __init__(self, config, X, y):
        import warnings

        from sklearn.neural_network import MLPClassifier

        self._warnings = warnings
        self._model = MLPClassifier(
            hidden_layer_sizes=tuple(config.layer_sizes[1:-1]), activation="relu", solver="sgd",
            batch_size=config.batch_size, learning_rate="constant", learning_rate_init=LEARNING_RATE,
            momentum=0.0, nesterovs_momentum=False, alpha=0.0, shuffle=False, random_state=MODEL_SEED)
        self._X, self._y = X, y
        self._classes = np.arange(config.layer_sizes[-1])

    def __call__(self):
        with self._warnings.catch_warnings():
            self._warnings.simplefilter("ignore")  # convergence chatter; not a timing matter
            self._model.partial_fit(self._X, self._y, classes=self._classes)

    def parameters(self):
        return [w.copy() for w in self._model.coefs_], [b.copy() for b in self._model.intercepts_]


# --- timing ---------------------------------------------------------------------------------

def _time_calls(function, calls):
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def _measure(tasks, repeats, settle_seconds, min_run_seconds, samples, errors, where):
    """Time every callable of `tasks` (name -> zero-argument callable doing `samples` samples),
    interleaved, and return name -> result dict (or {"error": ...} for one that raised)."""
    results, calls, live = {}, {}, []
    for name, function in tasks.items():
        try:
            time.sleep(settle_seconds)
            first = _time_calls(function, 1)  # may include compilation, lazy set-up, first touch
            time.sleep(settle_seconds)
            seconds = _time_calls(function, 1)  # a warm call, to size the timed runs
        except Exception as error:  # a framework failing must not lose the others' figures
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            errors.append(f"{where} {name}: {type(error).__name__}: {error}")
            continue
        calls[name] = max(1, math.ceil(min_run_seconds / seconds)) if seconds > 0 else 1
        results[name] = {"first_call_seconds": first, "calls_per_run": calls[name], "seconds": []}
        live.append(name)
    for round_index in range(repeats):
        rotation = round_index % len(live) if live else 0
        for name in live[rotation:] + live[:rotation]:
            if "error" in results[name]:
                continue
            try:
                time.sleep(settle_seconds)
                results[name]["seconds"].append(_time_calls(tasks[name], calls[name]))
            except Exception as error:
                results[name] = {"error": f"{type(error).__name__}: {error}"}
                errors.append(f"{where} {name}: {type(error).__name__}: {error}")
    for name in live:
        result = results[name]
        if "error" in result:
            continue
        best, median = min(result["seconds"]), statistics.median(result["seconds"])
        result["samples_per_s"] = samples / best if best > 0 else math.inf
        result["median_samples_per_s"] = samples / median if median > 0 else math.inf
    return results


def measure_roofline(size=ROOFLINE_SIZE, repeats=3, settle_seconds=DEFAULT_SETTLE_SECONDS):
    """GFLOP/s of NumPy's float32 matmul of two size x size matrices (best of `repeats` after a warm-up)."""
    rng = np.random.default_rng(DATA_SEED)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    time.sleep(settle_seconds)
    np.matmul(a, b)
    best = min(_time_calls(lambda: np.matmul(a, b), 1) for _ in range(max(1, repeats)))
    time.sleep(settle_seconds)  # let OpenBLAS's threads stop spinning before the next timing
    return {"size": size, "seconds": best, "gflops": 2.0 * size ** 3 / best / 1e9}


# --- machine and frameworks -----------------------------------------------------------------

_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")
_DISTRIBUTIONS = {"numpy": "numpy", "torch": "torch", "jax": "jax", "jaxlib": "jaxlib", "sklearn": "scikit-learn",
                  "threadpoolctl": "threadpoolctl"}


def _cpu_model_and_flags():
    """The CPU's model name and which of _ISA_FLAGS it reports (Linux /proc/cpuinfo)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), [flag for flag in _ISA_FLAGS if flag in flags]


def _installed_version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _native_module():
    from . import backends

    return backends._native


def machine_info():
    """CPU, cores, the native ISA, library versions, BLAS and the environment variables that matter."""
    native = _native_module()
    model, flags = _cpu_model_and_flags()
    info = {
        "cpu_model": model,
        "cpu_isa_flags": flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "native_built": native is not None,
        "native_isa": native.isa() if native is not None and hasattr(native, "isa") else None,
        "native_available_isas": (list(native.available_isas())
                                  if native is not None and hasattr(native, "available_isas") else None),
        "native_openmp": bool(getattr(native, "OPENMP", False)) if native is not None else None,
        "versions": {name: _installed_version(distribution) for name, distribution in _DISTRIBUTIONS.items()},
        "environment": {name: os.environ.get(name) for name in (
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "FUSEDMLP_ISA", "XLA_FLAGS")},
    }
    info["versions"]["numpy"] = np.__version__  # the one imported, whatever the metadata says
    try:
        from threadpoolctl import threadpool_info

        info["thread_pools"] = [{key: pool.get(key) for key in (
            "user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")}
            for pool in threadpool_info()]
    except ImportError:
        info["thread_pools"] = None
    return info


def slow_blas_variables():
    """The OPENBLAS_* variables that slow NumPy's BLAS and are set in this environment."""
    return [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(name)]


def _import_framework(name, threads):
    """(module, None) or (None, reason) for an optional framework."""
    if name == "jax" and "jax" not in sys.modules and threads == 1:
        # XLA's CPU thread pool is fixed at import; this is the only per-process setting it has.
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                                   ).strip()
    try:
        return __import__(_IMPORT_NAMES[name]), None
    except Exception as error:  # ImportError, or a broken install raising something else
        return None, f"{_IMPORT_NAMES[name]} cannot be imported ({type(error).__name__}: {error})"


@contextlib.contextmanager
def _thread_limits(threads, modules, notes):
    """Every pool limited to `threads` for the duration; the previous settings restored after."""
    restore = []
    native = _native_module()
    if native is not None and hasattr(native, "set_num_threads"):
        previous = native.get_num_threads() if hasattr(native, "get_num_threads") else None
        native.set_num_threads(threads)
        if previous is not None:
            restore.append(lambda: native.set_num_threads(previous))
        notes["cpu"] = f"_native.set_num_threads({threads})"
    else:
        notes["cpu"] = f"OpenMP limited to {threads} by threadpoolctl" if _has_threadpoolctl() else \
            "OpenMP default (OMP_NUM_THREADS or all cores)"
    notes["numpy"] = notes["sklearn"] = (f"BLAS limited to {threads} by threadpoolctl" if _has_threadpoolctl()
                                         else "BLAS default (OPENBLAS_NUM_THREADS or all cores)")
    torch = modules.get("torch")
    if torch is not None:
        previous_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
        restore.append(lambda: torch.set_num_threads(previous_torch))
        notes["torch"] = f"torch.set_num_threads({threads})"
    if modules.get("jax") is not None:
        single = "intra_op_parallelism_threads=1" in os.environ.get("XLA_FLAGS", "")
        notes["jax"] = ("one thread (XLA_FLAGS)" if single else
                        "XLA's own pool over all cores (fixed when jax is imported; only 1 thread can be forced)")
    with contextlib.ExitStack() as stack:
        if _has_threadpoolctl():
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=threads))
        try:
            yield
        finally:
            for undo in reversed(restore):
                undo()


def _has_threadpoolctl():
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


# --- the run --------------------------------------------------------------------------------

def _check_names(argument, names, known):
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"{argument}: expected names from {', '.join(known)}; got "
                         f"{', '.join(map(repr, unknown)) if unknown else 'none'}")
    return list(dict.fromkeys(names))


def _check_positive(argument, value, kind):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) \
            or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{argument}: expected a positive {'number' if kind is float else 'integer'}; got {value!r}")
    return value


def _ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _rate(results, name):
    result = results.get(name)
    return result.get("samples_per_s") if result else None


def run_benchmarks(configs=None, frameworks=None, repeats=DEFAULT_REPEATS, quick=False, threads=None,
                   settle_seconds=None, min_run_seconds=None, float64=True, predict=True, command=None,
                   log=None):
    """Run the comparison and return its results as a JSON-ready dict.

    configs: names from CONFIGS or BenchConfig objects (default: all four).
    frameworks: names from FRAMEWORKS (default: all); torch, jax and sklearn are skipped, with
        the reason recorded, when they cannot be imported.
    repeats: timed runs per framework (the best is reported). quick: QUICK_BATCHES batches per
        epoch and a smaller roofline matrix, for tests. threads: per framework (default: every
        usable core). settle_seconds: pause before each timed run (see the module docstring).
    min_run_seconds: a timed run repeats the epoch until it lasts this long.
    float64 / predict: also measure float64 training and predict (cpu and numpy only).
    command: the command line to record. log: called with progress lines (default: silent).

    Keys of the result: settings, flops_formula, machine, roofline, frameworks, configs
    (name -> layer_sizes, batch_size, n_samples, steps, flops_per_sample, train_float32,
    ratios, roofline_fraction, train_float64, predict_float32), targets, errors, command.
    """
    say = log or (lambda line: None)
    if configs is None:
        configs = list(CONFIGS)
    if isinstance(configs, (str, BenchConfig)):
        configs = [configs]
    chosen = []
    for config in configs:
        if isinstance(config, BenchConfig):
            chosen.append(config)
        else:
            chosen.append(CONFIGS[_check_names("configs", [config], list(CONFIGS))[0]])
    if not chosen:
        raise ValueError(f"configs: expected names from {', '.join(CONFIGS)}; got none")
    frameworks = _check_names("frameworks", FRAMEWORKS if frameworks is None else frameworks, FRAMEWORKS)
    repeats = _check_positive("repeats", repeats, int)
    threads = _usable_cores() if threads is None else _check_positive("threads", threads, int)
    settle_seconds = (QUICK_SETTLE_SECONDS if quick else DEFAULT_SETTLE_SECONDS) if settle_seconds is None \
        else float(settle_seconds)
    if not (settle_seconds >= 0 and math.isfinite(settle_seconds)):
        raise ValueError(f"settle_seconds: expected a finite number >= 0; got {settle_seconds!r}")
    min_run_seconds = (QUICK_MIN_RUN_SECONDS if quick else DEFAULT_MIN_RUN_SECONDS) if min_run_seconds is None \
        else float(min_run_seconds)
    if not (min_run_seconds >= 0 and math.isfinite(min_run_seconds)):
        raise ValueError(f"min_run_seconds: expected a finite number >= 0; got {min_run_seconds!r}")
    if quick:
        chosen = [config.quick() for config in chosen]

    errors = []
    framework_info, modules = {}, {}
    native_built = _native_module() is not None
    for name in frameworks:
        if name == NATIVE:
            framework_info[name] = {"available": native_built, "title": FRAMEWORK_TITLES[name]}
            if not native_built:
                framework_info[name]["reason"] = "fusedmlp's native module is not built"
        elif name == REFERENCE:
            framework_info[name] = {"available": True, "title": FRAMEWORK_TITLES[name]}
        else:
            module, reason = _import_framework(name, threads)
            modules[name] = module
            framework_info[name] = {"available": module is not None, "title": FRAMEWORK_TITLES[name]}
            if module is None:
                framework_info[name]["reason"] = reason
                say(f"skipping {name}: {reason}")
    from . import __version__

    for name in frameworks:
        framework_info[name]["version"] = {NATIVE: __version__, REFERENCE: np.__version__}.get(
            name, getattr(modules.get(name), "__version__", None))
    runnable = [name for name in frameworks if framework_info[name]["available"]]

    results = {
        "schema": "fusedmlp-bench/1",
        "command": command,
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "configs": [c.name for c in chosen], "frameworks": frameworks, "repeats": repeats, "statistic": STATISTIC,
            "quick": bool(quick), "threads": threads, "settle_seconds": settle_seconds,
            "min_run_seconds": min_run_seconds, "dtype": "float32", "activation": ACTIVATION, "loss": LOSS,
            "optimizer": "SGD, no momentum, no weight decay", "lr": LEARNING_RATE, "epochs": 1, "shuffle": False,
            "data_seed": DATA_SEED, "model_seed": MODEL_SEED,
            "timing": ("samples/s = samples per epoch / seconds of the best timed run's per-epoch time, after two "
                       "warm-up calls; frameworks interleaved with a settle pause before each run; JAX compile time "
                       "excluded"),
        },
        "flops_formula": {"train": TRAINING_FLOPS_FORMULA, "predict": PREDICT_FLOPS_FORMULA,
                          "roofline": "NumPy float32 matmul n x n, 2*n**3 FLOPs, best of the start and end of the run"},
        "machine": machine_info(),
        "frameworks": framework_info,
        "configs": {},
        "errors": errors,
    }
    slow = slow_blas_variables()
    if slow:
        say(f"warning: {' and '.join(slow)} set: NumPy's BLAS is slowed; unset them "
            "(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...) for a fair comparison")

    roofline_size = QUICK_ROOFLINE_SIZE if quick else ROOFLINE_SIZE
    notes = {}
    with _thread_limits(threads, modules, notes):
        for name in runnable:
            framework_info[name]["threads"] = notes.get(name)
        say(f"roofline: float32 matmul {roofline_size}x{roofline_size}")
        roofline_start = measure_roofline(roofline_size, max(3, repeats), settle_seconds)
        for config in chosen:
            results["configs"][config.name] = _run_config(config, runnable, modules, repeats, settle_seconds,
                                                          min_run_seconds, float64, predict, errors, say)
        roofline_end = measure_roofline(roofline_size, max(3, repeats), settle_seconds)
    best = max(roofline_start, roofline_end, key=lambda r: r["gflops"])
    results["roofline"] = {"dtype": "float32", "size": roofline_size, "gflops": best["gflops"],
                           "gflops_start": roofline_start["gflops"], "gflops_end": roofline_end["gflops"]}
    for config in chosen:
        entry = results["configs"][config.name]
        for name, result in entry["train_float32"].items():
            if "samples_per_s" in result:
                result["roofline_fraction"] = result["samples_per_s"] * entry["flops_per_sample"] / (
                    best["gflops"] * 1e9)
        for name, result in entry.get("predict_float32", {}).items():
            if isinstance(result, dict) and "samples_per_s" in result:
                result["roofline_fraction"] = result["samples_per_s"] * entry["predict_flops_per_sample"] / (
                    best["gflops"] * 1e9)
        entry["roofline_fraction"] = entry["train_float32"].get(NATIVE, {}).get("roofline_fraction")
    results["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["targets"] = evaluate_targets(results)
    return results


def _run_config(config, runnable, modules, repeats, settle_seconds, min_run_seconds, float64, predict, errors, say):
    entry = {
        "layer_sizes": list(config.layer_sizes), "batch_size": config.batch_size, "n_samples": config.n_samples,
        "steps": config.steps, "flops_per_sample": training_flops_per_sample(config.layer_sizes),
        "predict_flops_per_sample": predict_flops_per_sample(config.layer_sizes),
    }
    X, y = synthetic_classification(config.layer_sizes, config.n_samples)
    initial = initial_parameters(config.layer_sizes)
    where = f"{config.name} train float32"
    say(f"{config.name} {config.label} batch {config.batch_size} n {config.n_samples}: training "
        f"{', '.join(runnable)}")
    tasks = {}
    for name in runnable:
        try:
            if name in (NATIVE, REFERENCE):
                tasks[name] = _FusedTrainer(name, config, X, y, initial)
            elif name == "torch":
                tasks[name] = _TorchTrainer(config, X, y, initial)
            elif name == "jax":
                tasks[name] = _JaxTrainer(config, X, y, initial)
            elif name == "sklearn":
                tasks[name] = _SklearnTrainer(config, X, y)
        except Exception as error:
            errors.append(f"{where} {name}: {type(error).__name__}: {error}")
    train = _measure(tasks, repeats, settle_seconds, min_run_seconds, config.n_samples, errors, where)
    _say_rates(say, config.name, train)
    for name in runnable:
        train.setdefault(name, {"error": "could not be set up (see errors)"})
    entry["train_float32"] = train
    native_rate = _rate(train, NATIVE)
    entry["ratios"] = {name: _ratio(native_rate, _rate(train, name)) for name in runnable if name != NATIVE}
    fused = [name for name in (NATIVE, REFERENCE) if name in runnable]
    if float64 and fused:
        say(f"{config.name}: float64 training {', '.join(fused)}")
        X64 = X.astype(np.float64)
        tasks = {name: _FusedTrainer(name, config, X64, y, initial) for name in fused}
        rows = _measure(tasks, repeats, settle_seconds, min_run_seconds, config.n_samples, errors,
                        f"{config.name} train float64")
        _say_rates(say, config.name, rows)
        rows["ratio"] = _ratio(_rate(rows, NATIVE), _rate(rows, REFERENCE))
        entry["train_float64"] = rows
    if predict and fused:
        say(f"{config.name}: predict {', '.join(fused)}")
        tasks = {name: _FusedPredictor(name, config, X, initial) for name in fused}
        rows = _measure(tasks, repeats, settle_seconds, min_run_seconds, config.n_samples, errors,
                        f"{config.name} predict float32")
        _say_rates(say, config.name, rows)
        rows["ratio"] = _ratio(_rate(rows, NATIVE), _rate(rows, REFERENCE))
        entry["predict_float32"] = rows
    return entry


def _say_rates(say, config_name, rows):
    say(f"{config_name}: " + ", ".join(f"{name} {_cell(result)}/s" for name, result in rows.items()))


def _target_value(entry, metric):
    if metric == "roofline":
        return entry.get("roofline_fraction")
    kind, _, framework = metric.partition(":")
    if kind == "ratio":
        return entry.get("ratios", {}).get(framework)
    rows = entry.get({"float64": "train_float64", "predict": "predict_float32"}[kind], {})
    return rows.get("ratio")


def evaluate_targets(results):
    """One row per (target, configuration measured): value, and met True/False, or None where
    the figure is missing (a framework not installed or not selected)."""
    rows = []
    for target in TARGETS:
        names = list(results["configs"]) if target.config == "all" else \
            [target.config] if target.config in results["configs"] else []
        for name in names:
            value = _target_value(results["configs"][name], target.metric)
            met = None if value is None else (value > target.threshold if target.strict else
                                              value >= target.threshold)
            rows.append({"config": name, "target": target.description, "metric": target.metric,
                         "threshold": target.threshold, "strict": target.strict, "value": value, "met": met})
    return rows


# --- output ---------------------------------------------------------------------------------

def _number(value, digits=0):
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{digits}f}"


def _cell(result):
    if not result:
        return "-"
    if "error" in result:
        return "error"
    return _number(result.get("samples_per_s"))


def _table(header, rows):
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in [header] + rows]
    return lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:]


def format_results(results):
    """The results as a plain-text report."""
    settings, machine, roofline = results["settings"], results["machine"], results["roofline"]
    frameworks = [name for name in settings["frameworks"] if results["frameworks"][name]["available"]]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
    lines = [
        f"fusedmlp bench: float32 {settings['activation']} + {settings['loss']}, one epoch of SGD "
        f"(lr {settings['lr']:g}, shuffle off), {settings['statistic']} of {settings['repeats']} timed runs after two "
        f"warm-up calls{' (--quick: ' + str(QUICK_BATCHES) + ' batches per epoch)' if settings['quick'] else ''}",
        f"machine: {machine['cpu_model']}, {machine['usable_cpus']} usable cores"
        f"{' (' + ' '.join(machine['cpu_isa_flags']) + ')' if machine.get('cpu_isa_flags') else ''}, "
        f"native ISA {machine['native_isa'] or 'not reported'}; {settings['threads']} threads per framework",
        f"versions: {versions}",
        f"roofline: NumPy float32 matmul {roofline['size']}x{roofline['size']}: {roofline['gflops']:.1f} GFLOP/s "
        f"(start {roofline['gflops_start']:.1f}, end {roofline['gflops_end']:.1f})",
        f"training FLOPs/sample: {results['flops_formula']['train']}",
    ]
    slow = [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if machine["environment"].get(name)]
    if slow:
        lines.append(f"WARNING: {' and '.join(slow)} set: NumPy's BLAS is slowed, the comparison is unfair")
    busy = machine_busy(machine)
    if busy:
        lines.append(f"WARNING: {busy}")
    for name in settings["frameworks"]:
        info = results["frameworks"][name]
        if not info["available"]:
            lines.append(f"{name}: not measured: {info['reason']}")
    if "jax" in frameworks:
        lines.append("jax: compile time excluded (first_call_seconds in the JSON)")

    lines += ["", "training samples/s, float32"]
    header = ["config", "layers", "batch", "n", *frameworks,
              *[f"cpu/{name}" for name in frameworks if name != NATIVE], "cpu roofline", "numpy roofline"]
    rows = []
    for name, entry in results["configs"].items():
        train = entry["train_float32"]
        rows.append([name, "-".join(map(str, entry["layer_sizes"])), entry["batch_size"], entry["n_samples"],
                     *[_cell(train.get(f)) for f in frameworks],
                     *[_number(entry["ratios"].get(f), 2) + ("x" if entry["ratios"].get(f) is not None else "")
                       for f in frameworks if f != NATIVE],
                     _percent(train.get(NATIVE, {}).get("roofline_fraction")),
                     _percent(train.get(REFERENCE, {}).get("roofline_fraction"))])
    lines += _table(header, rows)
    for title, key in (("training samples/s, float64", "train_float64"), ("predict samples/s, float32", "predict_float32")):
        rows = [[name, _cell(entry[key].get(NATIVE)), _cell(entry[key].get(REFERENCE)),
                 _number(entry[key].get("ratio"), 2) + ("x" if entry[key].get("ratio") is not None else "")]
                for name, entry in results["configs"].items() if key in entry]
        if rows:
            lines += ["", title] + _table(["config", NATIVE, REFERENCE, "cpu/numpy"], rows)
    rows = [[row["config"], row["target"], _format_target_value(row),
             {True: "met", False: "NOT MET", None: "n/a"}[row["met"]]] for row in results["targets"]]
    if rows:
        lines += ["", "targets"] + _table(["config", "target", "measured", "status"], rows)
    if results["errors"]:
        lines += ["", "errors:"] + [f"  {error}" for error in results["errors"]]
    return "\n".join(lines)


def machine_busy(machine):
    """A warning when other work loaded the machine during the run (1-minute load average above
    the usable cores at its start or end), else None: then every framework's threads compete
    for cores and the figures swing by large factors."""
    loads = [load[0] for load in (machine.get("load_average"), machine.get("load_average_end")) if load]
    cores = machine.get("usable_cpus") or 1
    if not loads or max(loads) <= cores:
        return None
    return (f"the machine was busy with other work (1-minute load average {' -> '.join(f'{x:.1f}' for x in loads)} "
            f"on {cores} cores): figures are unreliable; rerun on a quiet machine or raise --repeats")


def _percent(fraction):
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def _format_target_value(row):
    if row["value"] is None:
        return "-"
    return _percent(row["value"]) if row["metric"] == "roofline" else f"{row['value']:.2f}x"


def write_json(results, path):
    with open(path, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=2, allow_nan=True)
        file.write("\n")


# --- command line ---------------------------------------------------------------------------

def _names_type(argument, known):
    def parse(text):
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {argument} {', '.join(map(repr, unknown)) if unknown else repr(text)}; "
                f"choose from {', '.join(known)}")
        return names

    return parse


def _int_at_least_one(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1; got {text!r}")
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0; got {text!r}")
    return value


class _ExtendLists(argparse.Action):
    """`--configs tiny small` and `--configs tiny,small` (and repeated options) all add up."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = list(getattr(namespace, self.dest) or [])
        for names in values:
            current.extend(name for name in names if name not in current)
        setattr(namespace, self.dest, current)


def register(subparsers):
    """Add the `bench` command to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "bench", help="time training and predict against NumPy, PyTorch, JAX and scikit-learn",
        description="Time one epoch of float32 mini-batch SGD (relu, cross_entropy, lr 0.01, shuffle off, synthetic "
                    "data) for fusedmlp's native backend, its NumPy reference, PyTorch eager, a JAX lax.scan epoch "
                    "and scikit-learn's MLPClassifier, on the configurations "
                    + ", ".join(f"{c.name} ({c.label}, batch {c.batch_size}, n {c.n_samples})" for c in CONFIGS.values())
                    + "; also float64 training and predict (native vs NumPy) and the native backend's fraction of "
                    "NumPy's float32 matmul throughput. Prints a table and writes JSON. For a fair comparison run "
                    "it as: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fusedmlp bench")
    parser.add_argument("--configs", type=_names_type("config", list(CONFIGS)), nargs="+", action=_ExtendLists,
                        metavar="NAME", help=f"configurations to run, space- or comma-separated, from "
                                             f"{', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--frameworks", type=_names_type("framework", list(FRAMEWORKS)), nargs="+",
                        action=_ExtendLists, metavar="NAME",
                        help=f"frameworks to time, from {', '.join(FRAMEWORKS)} (default: all; torch, jax and "
                             "sklearn are skipped with a note when they are not installed)")
    parser.add_argument("--repeats", type=_int_at_least_one, default=DEFAULT_REPEATS,
                        help=f"timed runs per framework after the warm-up; the best is reported "
                             f"(default: {DEFAULT_REPEATS})")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {QUICK_BATCHES} batches per epoch and a {QUICK_ROOFLINE_SIZE}x{QUICK_ROOFLINE_SIZE} "
                             "roofline matmul: a fast check that everything runs, not a measurement")
    parser.add_argument("--threads", type=_int_at_least_one, default=None,
                        help="threads for every framework (default: all usable cores; JAX can only be forced to 1)")
    parser.add_argument("--settle", type=_seconds, default=None, metavar="SECONDS",
                        help=f"pause before each timed run so that the previous framework's spinning BLAS/OpenMP "
                             f"threads go to sleep (default: {DEFAULT_SETTLE_SECONDS}, {QUICK_SETTLE_SECONDS} "
                             "with --quick)")
    parser.add_argument("--json", default=DEFAULT_JSON_PATH, metavar="PATH",
                        help=f"where to write the results as JSON (default: {DEFAULT_JSON_PATH} in the current "
                             "directory)")
    parser.set_defaults(func=run_from_args)
    return parser


def _command_line():
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) == "__main__.py":
        return "python -m fusedmlp " + shlex.join(argv[1:])
    return shlex.join(argv)


def run_from_args(args):
    """Run `fusedmlp bench` from parsed arguments; returns the exit status (0 done, 1 a framework
    failed or the JSON could not be written, 2 bad arguments, 130 interrupted by Ctrl-C)."""
    json_path = os.path.abspath(args.json)
    folder = os.path.dirname(json_path)
    if os.path.isdir(json_path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        print(f"fusedmlp bench: error: --json: cannot write {args.json!r} (no such writable folder, or a folder)",
              file=sys.stderr)
        return 2
    try:
        results = run_benchmarks(configs=args.configs, frameworks=args.frameworks, repeats=args.repeats,
                                 quick=args.quick, threads=args.threads, settle_seconds=args.settle,
                                 command=_command_line(),
                                 log=lambda line: print(f"[bench] {line}", file=sys.stderr, flush=True))
    except (ValueError, TypeError) as error:
        print(f"fusedmlp bench: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fusedmlp bench: interrupted; nothing written", file=sys.stderr)
        return 130
    print(format_results(results))
    try:
        write_json(results, json_path)
    except OSError as error:
        print(f"fusedmlp bench: error: --json: {error}", file=sys.stderr)
        return 1
    print(f"\nresults written to {json_path}")
    return 1 if results["errors"] else 0
