"""Sweeps: train one MLP per point of a grid -- batch size x learning rate x activation x
warmup on/off -- for several seeds, in parallel, and record every run.

    result = sweep("digits", out="sweep-out")     # a data set name, or (X, y) arrays
    result.runs[0]["final_val_score"]             # one dict per run
    # sweep-out/sweep.csv, sweep.json and the PNG plots of fusedmlp.plots

Every run trains MLP([n_features, *hidden, n_outputs], activation, loss) with SGD (momentum)
on the same training split and scores every epoch on the same validation split, so the points
differ only by their parameters and seed. The seed draws the initial parameters and the
shuffles. A run that diverges (a non-finite loss or parameter) stops there and is recorded with
diverged=True; it never stops the sweep.

Warmup: a point with warmup=True ramps the learning rate up linearly over the first
`warmup_fraction` (default 0.1) of its steps, at least one step: lr_t = lr (t + 1) / w. Goyal
et al. (2017, "Accurate, large minibatch SGD") warm up over 5 of 90 epochs; for the short runs
of a sweep a tenth of the training is the same idea at a scale where it still shows. The step
count depends on the batch size, so w does too (it is recorded per run as warmup_steps).

Where the runs go: `workers` processes on this machine (concurrent.futures with a forkserver,
or spawn, context; default: one per CPU core; workers=1 runs in this process), or a Dask
cluster when `scheduler` is given -- an address such as "tcp://host:8786" or a
dask.distributed.Client. Each process's native kernels use one thread, so the runs, not the
threads, share the cores. Scripts that call sweep() with worker processes need the usual
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from . import reference
from ._validation import check_choice, check_dtype, check_float, check_int
from .backends import BACKENDS
from .datasets import DATASETS, TASK_LOSS, dataset_info, infer_task, load_dataset, train_test_split

__all__ = ["sweep", "SweepResult", "load_results", "DEFAULT_GRID", "CSV_COLUMNS"]

# The default grid: the batch sizes of the course homework this grew from, learning rates a
# decade apart, the four classic activations, warmup off and on. With the default momentum 0.9
# the rates span "barely moves in 20 epochs" (1e-3) to "unstable without warmup" (1.0); the
# homework's 1e-4 only adds a column of chance-level scores.
DEFAULT_GRID = {
    "batch_sizes": (16, 32, 64, 128, 256),
    "lrs": (1e-3, 1e-2, 1e-1, 1.0),
    "activations": ("sigmoid", "tanh", "relu", "gelu"),
    "warmup": (False, True),
}

CSV_COLUMNS = ("batch_size", "lr", "activation", "warmup", "warmup_steps", "seed", "epochs_run", "steps",
               "final_train_loss", "final_val_score", "diverged", "wall_time_s")


@dataclass
class SweepResult:
    """What sweep() returns.

    config: the sweep's settings (data, grid, model, training, split sizes, metric, ...).
    runs: one dict per run, in grid order (batch size, lr, activation, warmup, seed): the
        CSV_COLUMNS plus the curves step_loss (every step, the divergent one last),
        epoch_loss, val_loss and val_score (every completed epoch). final_train_loss is the
        last epoch's loss and final_val_score the last epoch's validation score (accuracy, or
        R^2 for mse); both NaN for a run that diverged.
    files: what was written, by kind ("csv", "json", and the plot names) -> path.
    """

    config: dict
    runs: list
    files: dict = field(default_factory=dict)

    @property
    def metric(self):
        return self.config["metric"]

    def write_csv(self, path):
        """One row per run: CSV_COLUMNS (NaN written as nan)."""
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            for run in self.runs:
                writer.writerow([_csv_cell(run[column]) for column in CSV_COLUMNS])
        return path

    def write_json(self, path):
        """The config and every run with its curves; non-finite numbers written as null."""
        document = {"format": "fusedmlp-sweep", "format_version": 1, "config": self.config,
                    "runs": [_jsonable(run) for run in self.runs]}
        with open(path, "w", encoding="utf-8") as file:
            json.dump(document, file, allow_nan=False)
        return path

    def best(self, count=5):
        """The `count` grid points with the best mean final validation score over their seeds
        (points with a diverged seed rank last), as dicts: the point's parameters, mean_score,
        seeds, diverged (how many of its seeds diverged)."""
        points = {}
        for run in self.runs:
            points.setdefault(_point_key(run), []).append(run)
        ranked = []
        for key, runs in points.items():
            diverged = sum(run["diverged"] for run in runs)
            scores = [run["final_val_score"] for run in runs if not run["diverged"]]
            mean = float(np.mean(scores)) if scores and not diverged else float("nan")
            ranked.append({**dict(zip(_POINT_FIELDS, key)), "mean_score": mean, "seeds": len(runs),
                           "diverged": diverged})
        ranked.sort(key=lambda p: math.inf if math.isnan(p["mean_score"]) else -p["mean_score"])
        return ranked[:count]


_POINT_FIELDS = ("batch_size", "lr", "activation", "warmup")


def _point_key(run):
    return tuple(run[name] for name in _POINT_FIELDS)


def _csv_cell(value):
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def load_results(path):
    """A SweepResult from the sweep.json that sweep() wrote (null numbers read back as NaN)."""
    with open(path, encoding="utf-8") as file:
        document = json.load(file)
    if not isinstance(document, dict) or document.get("format") != "fusedmlp-sweep":
        raise ValueError(f"{path}: not a fusedmlp sweep result (sweep.json)")
    runs = []
    for run in document["runs"]:
        run = dict(run)
        for name in ("final_train_loss", "final_val_score"):
            run[name] = float("nan") if run[name] is None else run[name]
        for name in ("step_loss", "epoch_loss", "val_loss", "val_score"):
            run[name] = np.array([np.nan if v is None else v for v in run[name]], dtype=np.float64)
        runs.append(run)
    return SweepResult(config=document["config"], runs=runs, files={"json": os.fspath(path)})


# --- one run ---------------------------------------------------------------------------------

def warmup_steps_for(n_train, batch_size, epochs, warmup_fraction):
    """The warmup length of a run: warmup_fraction of its steps, rounded, at least 1."""
    steps = epochs * math.ceil(n_train / batch_size)
    return max(1, int(round(warmup_fraction * steps)))


def _fit_recording(net, X, y, X_val, y_val, fit_args):
    """Train, scoring (X_val, y_val) after every epoch and stopping at a divergent step;
    return the curves: dict(step_loss, epoch_loss, val_loss, val_score, diverged)."""
    history = net.fit(X, y, validation_data=(X_val, y_val), on_divergence="stop", **fit_args)
    return {"step_loss": np.array(history.step_loss, dtype=np.float64),
            "epoch_loss": np.array(history.epoch_loss, dtype=np.float64),
            "val_loss": np.array(history.val_loss, dtype=np.float64),
            "val_score": np.array(history.val_score, dtype=np.float64),
            "diverged": bool(history.diverged)}


def _limit_native_threads(count):
    """Let this process's native kernels use `count` threads (the kernels' set_num_threads,
    CONTRACTS.md); without it, threadpoolctl's OpenMP limit where installed."""
    from . import backends

    native = getattr(backends, "_native", None)
    if native is not None and hasattr(native, "set_num_threads"):
        native.set_num_threads(count)
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=count, user_api="openmp")


def run_point(point, data):
    """Train one run. point: dict batch_size, lr, activation, warmup, warmup_steps, seed.
    data: dict X_train, y_train, X_val, y_val, hidden, n_outputs, loss, epochs, momentum,
    backend, dtype. Returns the run's record (see SweepResult.runs)."""
    from .mlp import MLP

    layers = [data["X_train"].shape[1], *data["hidden"], data["n_outputs"]]
    net = MLP(layers, activation=point["activation"], loss=data["loss"], backend=data["backend"],
              dtype=data["dtype"], seed=point["seed"])
    fit_args = {"epochs": data["epochs"], "batch_size": point["batch_size"], "lr": point["lr"],
                "momentum": data["momentum"], "warmup_steps": point["warmup_steps"] if point["warmup"] else 0}
    started = time.perf_counter()
    curves = _fit_recording(net, data["X_train"], data["y_train"], data["X_val"], data["y_val"], fit_args)
    seconds = time.perf_counter() - started
    diverged = curves["diverged"]
    epochs_run = len(curves["epoch_loss"])
    return {
        **point,
        "epochs_run": epochs_run,
        "steps": len(curves["step_loss"]),
        "final_train_loss": float("nan") if diverged or not epochs_run else float(curves["epoch_loss"][-1]),
        "final_val_score": (float("nan") if diverged or not len(curves["val_score"])
                            else float(curves["val_score"][-1])),
        "diverged": diverged,
        "wall_time_s": seconds,
        **{name: curves[name] for name in ("step_loss", "epoch_loss", "val_loss", "val_score")},
    }


# Worker processes receive the shared data once, through the pool's initializer.
_WORKER_DATA = None


def _init_worker(data, threads):
    global _WORKER_DATA
    # Ctrl-C reaches the whole process group; the parent alone handles it (cancels what has not
    # started) so that the workers do not each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER_DATA = data
    _limit_native_threads(threads)


def _run_in_worker(point):
    return run_point(point, _WORKER_DATA)


def _run_with_data(point, data):  # Dask: the data arrive as a scattered future
    return run_point(point, data)


# --- where the runs go -----------------------------------------------------------------------

def _default_workers():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _pool_context():
    methods = multiprocessing.get_all_start_methods()
    # Not fork: the parent may hold threads (the native kernels' OpenMP pool, Dask, a GUI).
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_in_processes(points, data, workers, report):
    if workers == 1:
        for point in points:
            report(run_point(point, data))
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(points)), mp_context=_pool_context(),
                               initializer=_init_worker, initargs=(data, 1))
    pending = set()
    try:
        pending = {pool.submit(_run_in_worker, point) for point in points}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                report(future.result())
    except BaseException:  # Ctrl-C or a failed run: drop what has not started
        # Cancelled one by one, here: shutdown's own cancel_futures is carried out by the pool's
        # manager thread, which skips it once the pool object is gone, as it soon is.
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def check_scheduler(scheduler):
    """A scheduler address must name its protocol; anything else must be a Client (checked
    when dask is imported, in _dask_client)."""
    if isinstance(scheduler, str) and "://" not in scheduler:
        raise ValueError(f"scheduler: expected an address such as 'tcp://host:8786'; got {scheduler!r}")
    if not isinstance(scheduler, str) and not hasattr(scheduler, "submit"):
        raise TypeError(f"scheduler: expected a Dask scheduler address such as 'tcp://host:8786' or a "
                        f"dask.distributed.Client; got {type(scheduler).__name__}")


def _dask_client(scheduler):
    """(client, owned): a Client connected to `scheduler` (an address) or the Client given."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError("scheduler: running a sweep on a Dask cluster needs dask.distributed; "
                          "install it with pip install 'dask[distributed]'") from None
    if not isinstance(scheduler, str):
        if not isinstance(scheduler, Client):
            raise TypeError(f"scheduler: expected a Dask scheduler address or a dask.distributed.Client; "
                            f"got {type(scheduler).__name__}")
        return scheduler, False
    try:
        return Client(scheduler, timeout="10s"), True
    except (OSError, TimeoutError) as error:
        raise ConnectionError(f"scheduler: could not connect to the Dask scheduler at {scheduler} "
                              f"({' '.join(str(error).split())})") from None


def _run_on_dask(points, data, scheduler, report):
    client, owned = _dask_client(scheduler)
    from dask.distributed import as_completed

    try:
        # One object under a fresh key: a dict given to scatter is sent field by field under
        # its own keys ("X_train", ...), which the cluster shares with every client.
        [shared] = client.scatter([data], broadcast=True, hash=False)
        futures = [client.submit(_run_with_data, point, shared, pure=False) for point in points]
        try:
            for future in as_completed(futures):
                report(future.result())
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if owned:
            client.close()


# --- the sweep -------------------------------------------------------------------------------

def _values(arg, values, check):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        values = (values,)
    values = tuple(check(f"{arg}[{i}]", value) for i, value in enumerate(values))
    if not values:
        raise ValueError(f"{arg}: expected at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"{arg}: expected distinct values; got {list(values)}")
    return values


def _check_warmup(arg, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{arg}: expected True or False; got {value!r}")
    return bool(value)


def _prepare_data(data, loss, validation_fraction, split_seed):
    """(description, loss, X_train, X_val, y_train, y_val) of a data set name or (X, y)."""
    if isinstance(data, str):
        info = dataset_info(data)
        X, y = load_dataset(data)
        description, task = data, info.task
    else:
        try:
            X, y = data
        except (TypeError, ValueError):
            raise TypeError(f"data: expected a data set name (one of {', '.join(DATASETS)}) or a pair (X, y)") from None
        X, y = np.asarray(X), np.asarray(y)
        description, task = "arrays", infer_task(y)
    loss = TASK_LOSS[task] if loss is None else check_choice("loss", loss, reference.LOSSES)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_fraction=validation_fraction, seed=split_seed,
                                                      stratify=loss == "cross_entropy")
    return description, loss, X_train, X_val, y_train, y_val


def _n_outputs(loss, y):
    if loss == "cross_entropy":
        return int(np.max(y)) + 1
    return 1 if y.ndim == 1 else y.shape[1]


def sweep(data="digits", *, batch_sizes=DEFAULT_GRID["batch_sizes"], lrs=DEFAULT_GRID["lrs"],
          activations=DEFAULT_GRID["activations"], warmup=DEFAULT_GRID["warmup"], seeds=2, epochs=20,
          hidden=(64,), loss=None, momentum=0.9, warmup_fraction=0.1, validation_fraction=0.2, split_seed=0,
          backend="cpu", dtype="float32", workers=None, scheduler=None, out=None, plots=True, on_result=None,
          data_name=None):
    """Train every point of batch_sizes x lrs x activations x warmup once per seed.

    data: a name in fusedmlp.datasets.DATASETS, or (X, y) arrays.
    seeds: a count n (seeds 0..n-1) or a sequence of seeds.
    hidden: the hidden layer widths. loss: None picks the task's (cross_entropy for class
        labels, mse otherwise; for arrays, fusedmlp.datasets.infer_task guesses the task).
    momentum: SGD momentum of every run. warmup_fraction: the share of a run's steps its
        warmup lasts when warmup=True (see the module's docstring).
    validation_fraction, split_seed: one split (stratified for classes) shared by every run.
    workers: processes on this machine (None: one per core; 1: in this process).
    scheduler: a Dask scheduler address ("tcp://host:8786") or dask.distributed.Client; the
        runs then go to that cluster and `workers` is ignored.
    out: a folder to write sweep.csv, sweep.json and (plots=True) the PNG plots into.
    on_result: called as on_result(run, done, total) after each run finishes (progress).
    data_name: what to call (X, y) arrays in the results and plot titles (default "arrays").
    Returns a SweepResult; runs in grid order whatever order they finished in.
    """
    batch_sizes = _values("batch_sizes", batch_sizes, lambda a, v: check_int(a, v, 1))
    lrs = _values("lrs", lrs, lambda a, v: check_float(a, v, 0.0))
    if any(lr == 0 for lr in lrs):
        raise ValueError("lrs: expected learning rates > 0")
    activations = _values("activations", activations, lambda a, v: check_choice(a, v, reference.ACTIVATIONS))
    warmup = _values("warmup", warmup, _check_warmup)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = tuple(range(check_int("seeds", seeds, 1)))
    seeds = _values("seeds", seeds, lambda a, v: check_int(a, v, 0, maximum=2**32 - 1))
    epochs = check_int("epochs", epochs, 1)
    hidden = tuple(check_int(f"hidden[{i}]", width, 1) for i, width in enumerate(hidden))
    momentum = check_float("momentum", momentum, 0.0, below=1.0)
    warmup_fraction = check_float("warmup_fraction", warmup_fraction, 0.0, below=1.0)
    if warmup_fraction == 0 and True in warmup:
        raise ValueError("warmup_fraction: expected a number in (0, 1) when warmup=True is in the grid; got 0.0")
    validation_fraction = check_float("validation_fraction", validation_fraction, 0.0, below=1.0)
    if validation_fraction == 0:
        raise ValueError("validation_fraction: expected a number in (0, 1); a sweep scores every run on held-out data")
    backend = check_choice("backend", backend, BACKENDS)
    dtype = check_dtype(dtype).name
    if scheduler is None:
        workers = _default_workers() if workers is None else check_int("workers", workers, 1)
    else:
        check_scheduler(scheduler)
    if on_result is not None and not callable(on_result):
        raise TypeError(f"on_result: expected a callable; got {type(on_result).__name__}")

    if out is not None:
        # Fail before the runs, not after them: an unusable folder, or plots without matplotlib.
        out = os.fspath(out)
        os.makedirs(out, exist_ok=True)
        if plots:
            from .plots import require_matplotlib

            require_matplotlib()
    description, loss, X_train, X_val, y_train, y_val = _prepare_data(data, loss, validation_fraction, split_seed)
    if data_name is not None:
        description = str(data_name)
    n_outputs = _n_outputs(loss, np.concatenate([y_train, y_val]))
    n_train = len(y_train)
    # Check the shared settings once, here, rather than in every worker.
    from .mlp import MLP

    MLP([X_train.shape[1], *hidden, n_outputs], loss=loss, backend=backend, dtype=dtype).score(X_val, y_val)

    points = [{"batch_size": b, "lr": lr, "activation": a, "warmup": w,
               "warmup_steps": warmup_steps_for(n_train, b, epochs, warmup_fraction) if w else 0, "seed": s}
              for b in batch_sizes for lr in lrs for a in activations for w in warmup for s in seeds]
    shared = {"X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val, "hidden": hidden,
              "n_outputs": n_outputs, "loss": loss, "epochs": epochs, "momentum": momentum, "backend": backend,
              "dtype": dtype}

    finished = {}

    def report(run):
        finished[_point_key(run) + (run["seed"],)] = run
        if on_result is not None:
            on_result(run, len(finished), len(points))

    started = time.perf_counter()
    if scheduler is not None:
        _run_on_dask(points, shared, scheduler, report)
    else:
        _run_in_processes(points, shared, workers, report)
    seconds = time.perf_counter() - started

    from . import __version__

    config = {
        "data": description, "n_train": n_train, "n_val": len(y_val), "n_features": int(X_train.shape[1]),
        "n_outputs": n_outputs, "loss": loss, "metric": "accuracy" if loss in ("cross_entropy", "bce") else "r2",
        "batch_sizes": list(batch_sizes), "lrs": list(lrs), "activations": list(activations), "warmup": list(warmup),
        "seeds": list(seeds), "epochs": epochs, "hidden": list(hidden), "momentum": momentum,
        "warmup_fraction": warmup_fraction, "validation_fraction": validation_fraction, "split_seed": split_seed,
        "backend": backend, "dtype": dtype,
        "runner": ("a Dask cluster" if scheduler is not None
                   else f"{workers} worker processes" if workers > 1 else "this process"),
        "wall_time_s": seconds, "fusedmlp_version": __version__,
    }
    result = SweepResult(config=config, runs=[finished[_point_key(p) + (p["seed"],)] for p in points])
    if out is not None:
        write_outputs(result, out, plots=plots)
    return result


def write_outputs(result, out, plots=True):
    """Write sweep.csv, sweep.json and (plots=True) the PNG plots into the folder out (made if
    needed); record the paths in result.files and return them."""
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    result.files["csv"] = result.write_csv(os.path.join(out, "sweep.csv"))
    result.files["json"] = result.write_json(os.path.join(out, "sweep.json"))
    if plots:
        from .plots import plot_sweep

        result.files.update(plot_sweep(result, out))
    return result.files
