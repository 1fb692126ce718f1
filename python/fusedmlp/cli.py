"""The `train`, `predict` and `sweep` commands of `python -m fusedmlp` (the parser and the
dispatch live in __main__.py): each adds its subparser with add_*_parser(commands) and runs
as args.func(args) -> exit status.

Errors that reach the user are one line on stderr: argparse's (exit 2) for malformed options,
and __main__.main's mapping of library errors for the rest.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

# --- argument types ---------------------------------------------------------------------------


def int_at_least(minimum):
    """An argparse type: an integer >= minimum."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _finite(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    return value if math.isfinite(value) else None


def positive_float(text):
    value = _finite(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text!r}")
    return value


def fraction(text):
    """A number in [0, 1)."""
    value = _finite(text)
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}")
    return value


def open_fraction(text):
    """A number in (0, 1)."""
    value = _finite(text)
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1); got {text!r}")
    return value


def comma_list(item_type, what):
    """An argparse type: comma-separated values, each parsed by item_type, distinct."""

    def parse(text):
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}; got {text!r}")
        try:
            values = [item_type(item) for item in items]
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}: {error}") from None
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"expected distinct {what}; got {text!r}")
        return values

    return parse


def choice_of(choices, what):
    def parse(text):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; expected one of {', '.join(choices)}")
        return text

    return parse


def hidden_widths(text):
    """'128' or '128,64': hidden layer widths; '' or 'none': no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return []
    items = [item.strip() for item in text.split(",")]
    try:
        return [positive_int(item) for item in items]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected hidden layer widths as comma-separated integers >= 1 (e.g. 128,64); got {text!r}") from None


# --- data ---------------------------------------------------------------------------------------

def _data_help():
    from .datasets import DATASETS

    return f"a bundled data set ({', '.join(DATASETS)}) or a .csv / .npz file"


def load_data(source, target=None, n_features=None):
    """(X, y, task, description) of a bundled data set name or a file (see load_file); task is
    the registry's, or fusedmlp.datasets.infer_task's guess for a file (None when y is None)."""
    from .datasets import DATASETS, dataset_info, infer_task, load_dataset, load_file

    if source in DATASETS:
        if target is not None:
            raise ValueError(f"--target: applies to .csv files; {source!r} is a bundled data set")
        X, y = load_dataset(source)
        return X, y, dataset_info(source).task, f"bundled data set {source!r}"
    if not source.lower().endswith((".csv", ".npz")):
        raise ValueError(f"unknown data set {source!r}: expected one of {', '.join(DATASETS)} "
                         "or a file ending in .csv or .npz")
    X, y = load_file(source, target=target, n_features=n_features)
    return X, y, (None if y is None else infer_task(y)), source


def _targets_for(loss, y, where):
    """y converted for loss: class indices for cross_entropy (integers >= 0)."""
    if loss != "cross_entropy":
        return y
    if y.ndim != 1 or np.any(y != np.round(y)) or y.min() < 0:
        raise ValueError(f"{where}: cross_entropy needs one integer class label >= 0 per sample in the target "
                         "column; pass --loss mse for a regression target")
    return y.astype(np.int64)


def _n_outputs(loss, y):
    if loss == "cross_entropy":
        return int(y.max()) + 1
    return 1 if y.ndim == 1 else y.shape[1]


def _progress_wanted(args):
    if args.quiet:
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


# --- train --------------------------------------------------------------------------------------

TRAIN_DEFAULTS = {"hidden": [64], "activation": "relu", "epochs": 20, "batch_size": 32, "lr": 0.05,
                  "momentum": 0.9, "warmup": 0, "validation_fraction": 0.2, "backend": "cpu",
                  "dtype": "float32", "seed": 0, "output": "model.npz"}


def add_train_parser(commands):
    from . import reference
    from .backends import BACKENDS

    d = TRAIN_DEFAULTS
    train = commands.add_parser(
        "train", help="train an MLP on a bundled data set or a .csv / .npz file and save it",
        description="Train an MLP with mini-batch SGD on a bundled data set or your own file, show "
                    "progress, print the final training loss and the training and validation scores "
                    "(accuracy for classes, R^2 for values), and save the model (load it again with "
                    "fusedmlp.load or `fusedmlp predict`). Bundled sets come prepared (scaled); the "
                    "features of a file are used as they are, so scale them first.")
    train.add_argument("data", metavar="DATA", help=_data_help())
    train.add_argument("--target", metavar="COLUMN",
                       help="for a .csv: the target column, a header name or an index (negative counts "
                            "from the end; default: the last column)")
    train.add_argument("--hidden", type=hidden_widths, default=d["hidden"], metavar="WIDTHS",
                       help="hidden layer widths, comma-separated, e.g. 128,64 ('none': no hidden layer; "
                            f"default: {','.join(map(str, d['hidden']))})")
    train.add_argument("--activation", type=choice_of(reference.ACTIVATIONS, "activation"),
                       default=d["activation"], metavar="NAME",
                       help=f"hidden layers' activation: {', '.join(reference.ACTIVATIONS)} (default: {d['activation']})")
    train.add_argument("--loss", type=choice_of(reference.LOSSES, "loss"), metavar="NAME",
                       help=f"{', '.join(reference.LOSSES)} (default: cross_entropy for class labels, mse for "
                            "values; for a file the task is guessed from the target column)")
    train.add_argument("--epochs", type=positive_int, default=d["epochs"],
                       help=f"passes over the training data (default: {d['epochs']})")
    train.add_argument("--batch-size", type=positive_int, default=d["batch_size"],
                       help=f"samples per SGD step (default: {d['batch_size']})")
    train.add_argument("--lr", type=positive_float, default=d["lr"],
                       help=f"SGD learning rate (default: {d['lr']})")
    train.add_argument("--momentum", type=fraction, default=d["momentum"],
                       help=f"SGD momentum in [0, 1) (default: {d['momentum']})")
    train.add_argument("--warmup", type=non_negative_int, default=d["warmup"], metavar="STEPS",
                       help="warm the learning rate up linearly over this many steps (default: 0, no warmup)")
    train.add_argument("--validation-fraction", type=fraction, default=d["validation_fraction"], metavar="F",
                       help="share of the samples held out to score the model after each epoch, in [0, 1); "
                            f"stratified by class (default: {d['validation_fraction']}; 0: none)")
    train.add_argument("--backend", choices=BACKENDS, default=d["backend"],
                       help=f"cpu (native kernels) or numpy (the reference) (default: {d['backend']})")
    train.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"],
                       help=f"floating-point type of parameters and data (default: {d['dtype']})")
    train.add_argument("--seed", type=non_negative_int, default=d["seed"],
                       help=f"seeds the validation split, the initial parameters and the shuffles (default: {d['seed']})")
    train.add_argument("--output", "-o", default=d["output"], metavar="PATH",
                       help=f"where to save the trained model (default: {d['output']})")
    train.add_argument("--quiet", "-q", action="store_true",
                       help="no progress bar (it needs tqdm and is drawn on stderr)")
    train.set_defaults(func=train_command)
    return train


def train_command(args):
    from .datasets import TASK_LOSS, train_test_split
    from .mlp import MLP

    X, y, task, description = load_data(args.data, target=args.target)
    if y is None:
        raise ValueError(f"{args.data}: has no target (y); training needs one")
    loss = args.loss or TASK_LOSS[task]
    y = _targets_for(loss, y, args.data)
    if args.validation_fraction > 0:
        X_train, X_val, y_train, y_val = train_test_split(X, y, test_fraction=args.validation_fraction,
                                                          seed=args.seed, stratify=loss == "cross_entropy")
    else:
        X_train, X_val, y_train, y_val = X, None, y, None
    layers = [X.shape[1], *args.hidden, _n_outputs(loss, y)]
    net = MLP(layers, activation=args.activation, loss=loss, backend=args.backend, dtype=args.dtype, seed=args.seed)
    print(f"fusedmlp train: {description}, {len(y_train)} training / {0 if y_val is None else len(y_val)} "
          f"validation samples")
    print(f"MLP {layers} {args.activation} + {loss}, {args.dtype}, backend {args.backend}; SGD {args.epochs} epochs, "
          f"batch {args.batch_size}, lr {args.lr:g}, momentum {args.momentum:g}"
          + (f", warmup {args.warmup} steps" if args.warmup else ""), flush=True)

    started = time.perf_counter()
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      momentum=args.momentum, warmup_steps=args.warmup, progress=_progress_wanted(args),
                      validation_data=None if y_val is None else (X_val, y_val))
    seconds = time.perf_counter() - started

    metric = "accuracy" if loss in ("cross_entropy", "bce") else "R^2"
    rows = [("final training loss", f"{history.epoch_loss[-1]:.4f}"),
            (f"training {metric}", f"{net.score(X_train, y_train):.4f}")]
    if y_val is not None:
        rows.append((f"validation {metric}", f"{net.score(X_val, y_val):.4f}"))
    step_seconds = float(np.sum(history.epoch_time))
    rows.append(("train time", f"{seconds:.2f} s ({history.epochs * len(y_train) / max(step_seconds, 1e-9):,.0f} "
                               "samples/s in the SGD steps)"))
    lines = [f"{name:<21}{value}" for name, value in rows]
    print("\n".join(lines))
    net.save(args.output)
    print(f"saved the model to {args.output}")
    return 0


# --- predict ------------------------------------------------------------------------------------

def add_predict_parser(commands):
    from .backends import BACKENDS

    predict = commands.add_parser(
        "predict", help="predict with a saved model on a .csv / .npz file or a bundled data set",
        description="Load a model saved by `fusedmlp train` (or MLP.save) and predict: class labels "
                    "(cross_entropy, bce) or values (mse), or class probabilities with --proba. A .csv "
                    "may hold the features only, or the features and a target column; with a target "
                    "(or an .npz with y, or a bundled data set) the score is reported too (on stderr "
                    "when the predictions go to stdout).")
    predict.add_argument("model", metavar="MODEL", help="a saved model file (.npz)")
    predict.add_argument("data", metavar="DATA", help=_data_help())
    predict.add_argument("--target", metavar="COLUMN",
                         help="for a .csv that holds a target column: which (a header name or an index; "
                              "default: the last column when there is one more column than the model's inputs)")
    predict.add_argument("--output", "-o", metavar="PATH",
                         help="write the predictions to a .csv (one row per sample) or .npy file "
                              "(default: print them, one row per line)")
    predict.add_argument("--proba", action="store_true",
                         help="class probabilities instead of labels (softmax rows, or sigmoids for bce)")
    predict.add_argument("--backend", choices=BACKENDS, default="cpu",
                         help="backend to predict with: cpu (native) or numpy (default: cpu)")
    predict.set_defaults(func=predict_command)
    return predict


def _format_rows(values):
    values = np.asarray(values)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if values.dtype.kind in "iub":
        return [",".join(str(v) for v in row) for row in values.tolist()]
    return [",".join(f"{v:.9g}" for v in row) for row in values.tolist()]


def predict_command(args):
    from .io import load

    if args.output is not None and not args.output.lower().endswith((".csv", ".npy")):
        raise ValueError(f"--output: expected a file name ending in .csv or .npy; got {args.output!r}")
    net = load(args.model, backend=args.backend)
    X, y, _task, description = load_data(args.data, target=args.target, n_features=net.n_features_in)
    if X.shape[1] != net.n_features_in:
        raise ValueError(f"{args.data}: has {X.shape[1]} feature columns; the model takes {net.n_features_in}")
    predictions = net.predict_proba(X) if args.proba else net.predict(X)
    if args.output is None:
        sys.stdout.write("".join(line + "\n" for line in _format_rows(predictions)))
    elif args.output.lower().endswith(".npy"):
        np.save(args.output, predictions)
    else:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write("".join(line + "\n" for line in _format_rows(predictions)))
    if y is not None:
        y = _targets_for(net.loss, y, args.data)
        metric = "accuracy" if net.loss in ("cross_entropy", "bce") else "R^2"
        report = sys.stderr if args.output is None else sys.stdout
        print(f"{metric} on {description}: {net.score(X, y):.4f} ({len(X)} samples)", file=report)
    if args.output is not None:
        print(f"wrote {len(X)} predictions to {args.output}")
    return 0


# --- sweep --------------------------------------------------------------------------------------

# The default sweep: the full grid of experiments.DEFAULT_GRID on digits with 2 seeds and 20
# epochs -- 320 runs; about a minute on 2 cores.
SWEEP_DEFAULTS = {"data": "digits", "seeds": 2, "epochs": 20, "hidden": [64], "momentum": 0.9,
                  "warmup_fraction": 0.1, "validation_fraction": 0.2, "out": "sweep-results"}

_WARMUP_CHOICES = {"both": (False, True), "off": (False,), "on": (True,)}


def add_sweep_parser(commands):
    from . import reference
    from .backends import BACKENDS
    from .experiments import DEFAULT_GRID

    d, g = SWEEP_DEFAULTS, DEFAULT_GRID
    sweep = commands.add_parser(
        "sweep", help="train over a grid of batch sizes, learning rates, activations and warmup; CSV, JSON, plots",
        description="Train one MLP per point of the grid batch sizes x learning rates x activations x "
                    "warmup (off/on), once per seed, in parallel worker processes (or on a Dask "
                    "cluster), all on the same training/validation split. Writes sweep.csv (one row per "
                    "run), sweep.json (every step's loss and every epoch's validation score) and PNG "
                    "plots into --out, and prints the best points. A run whose loss or parameters "
                    "stop being finite is recorded as diverged. The defaults (320 runs on digits) take "
                    "about a minute on 2 cores.")
    sweep.add_argument("data", metavar="DATA", nargs="?", default=d["data"],
                       help=f"{_data_help()} (default: {d['data']})")
    sweep.add_argument("--target", metavar="COLUMN",
                       help="for a .csv: the target column, a header name or an index (default: the last)")
    sweep.add_argument("--batch-sizes", type=comma_list(positive_int, "integers >= 1"),
                       default=list(g["batch_sizes"]), metavar="LIST",
                       help=f"comma-separated batch sizes (default: {','.join(map(str, g['batch_sizes']))})")
    sweep.add_argument("--lrs", type=comma_list(positive_float, "numbers > 0"), default=list(g["lrs"]),
                       metavar="LIST",
                       help=f"comma-separated learning rates (default: {','.join(f'{v:g}' for v in g['lrs'])})")
    sweep.add_argument("--activations", type=comma_list(choice_of(reference.ACTIVATIONS, "activation"),
                                                        "activations"),
                       default=list(g["activations"]), metavar="LIST",
                       help=f"comma-separated hidden activations, of {', '.join(reference.ACTIVATIONS)} "
                            f"(default: {','.join(g['activations'])})")
    sweep.add_argument("--warmup", choices=tuple(_WARMUP_CHOICES), default="both",
                       help="run each point without warmup, with it, or both (default: both)")
    sweep.add_argument("--warmup-fraction", type=open_fraction, default=d["warmup_fraction"], metavar="F",
                       help="with warmup the learning rate ramps up linearly over this share of each run's "
                            f"steps (at least one step) (default: {d['warmup_fraction']})")
    sweep.add_argument("--seeds", type=positive_int, default=d["seeds"], metavar="N",
                       help=f"runs per grid point, with seeds 0..N-1 (default: {d['seeds']})")
    sweep.add_argument("--epochs", type=positive_int, default=d["epochs"],
                       help=f"epochs per run (default: {d['epochs']})")
    sweep.add_argument("--hidden", type=hidden_widths, default=d["hidden"], metavar="WIDTHS",
                       help=f"hidden layer widths, comma-separated (default: {','.join(map(str, d['hidden']))})")
    sweep.add_argument("--loss", type=choice_of(reference.LOSSES, "loss"), metavar="NAME",
                       help=f"{', '.join(reference.LOSSES)} (default: by the task, as for train)")
    sweep.add_argument("--momentum", type=fraction, default=d["momentum"],
                       help=f"SGD momentum of every run, in [0, 1) (default: {d['momentum']})")
    sweep.add_argument("--validation-fraction", type=open_fraction, default=d["validation_fraction"], metavar="F",
                       help=f"share of the samples held out to score every run (default: {d['validation_fraction']})")
    sweep.add_argument("--backend", choices=BACKENDS, default="cpu",
                       help="cpu (native kernels) or numpy (the reference) (default: cpu)")
    sweep.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="floating-point type (default: float32)")
    sweep.add_argument("--workers", type=positive_int, metavar="N",
                       help="worker processes on this machine (default: one per CPU core; 1: no extra process)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://host:8786) "
                            "instead of local processes; needs dask.distributed, and fusedmlp on the workers")
    sweep.add_argument("--out", default=d["out"], metavar="FOLDER",
                       help=f"folder for sweep.csv, sweep.json and the plots (default: {d['out']})")
    sweep.add_argument("--no-plots", action="store_true", help="skip the PNG plots (they need matplotlib)")
    sweep.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    sweep.set_defaults(func=sweep_command)
    return sweep


def _sweep_progress(quiet):
    """on_result for sweep(): a tqdm bar on stderr when tqdm is installed, else a line per 10 %."""
    if quiet:
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:
        def report(run, done, total):
            if done == total or done % max(1, total // 10) == 0:
                print(f"  {done}/{total} runs", file=sys.stderr, flush=True)

        return report, lambda: None
    bar = None

    def report(run, done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="sweep", unit="run", file=sys.stderr, dynamic_ncols=True)
        bar.update(1)

    return report, lambda: bar is not None and bar.close()


def sweep_command(args):
    from .experiments import check_scheduler, sweep

    if args.scheduler is not None:
        check_scheduler(args.scheduler)  # before the data are read
    data = args.data
    if data.lower().endswith((".csv", ".npz")) or args.target is not None:
        X, y, _task, _description = load_data(data, target=args.target)
        if y is None:
            raise ValueError(f"{data}: has no target (y); a sweep needs one")
        data, data_name = (X, y), os.path.basename(args.data)
    else:
        data_name = None
        load_data(data)  # an unknown name fails here, before any worker starts
    report, close = _sweep_progress(args.quiet)
    try:
        result = sweep(data, batch_sizes=args.batch_sizes, lrs=args.lrs, activations=args.activations,
                       warmup=_WARMUP_CHOICES[args.warmup], seeds=args.seeds, epochs=args.epochs, hidden=args.hidden,
                       loss=args.loss, momentum=args.momentum, warmup_fraction=args.warmup_fraction,
                       validation_fraction=args.validation_fraction, backend=args.backend, dtype=args.dtype,
                       workers=args.workers, scheduler=args.scheduler, out=args.out, plots=not args.no_plots,
                       on_result=report, data_name=data_name)
    finally:
        close()
    print(format_sweep(result, source=args.data))
    return 0


def _count(number, noun):
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def format_sweep(result, source):
    config = result.config
    runs = result.runs
    diverged = sum(run["diverged"] for run in runs)
    metric = "accuracy" if result.metric == "accuracy" else "R^2"
    lines = [
        f"fusedmlp sweep: {source}, {len(runs)} runs ({len(runs) // len(config['seeds'])} grid points x "
        f"{_count(len(config['seeds']), 'seed')}), {_count(config['epochs'], 'epoch')} each, on {config['runner']}: "
        f"{config['wall_time_s']:.1f} s; {diverged} diverged",
        "",
        f"best points by mean validation {metric}:",
        f"{'batch':>6}{'lr':>9}  {'activation':<11}{'warmup':<8}{metric:>9}",
    ]
    for point in result.best(5):
        score = "diverged" if math.isnan(point["mean_score"]) else f"{point['mean_score']:.4f}"
        lines.append(f"{point['batch_size']:>6}{point['lr']:>9g}  {point['activation']:<11}"
                     f"{'on' if point['warmup'] else 'off':<8}{score:>9}")
    lines.append("")
    lines.append("wrote:")
    lines.extend(f"  {path}" for path in result.files.values())
    return "\n".join(lines)
