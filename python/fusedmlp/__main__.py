"""The command line: `python -m fusedmlp <command>` or the `fusedmlp` script.

Commands:
    demo     train on the bundled digits with the native backend and the NumPy reference,
             and compare accuracy, speed and the final parameters.
    train    train on a bundled data set or a .csv / .npz file; save the model   (cli.py)
    predict  predict with a saved model                                          (cli.py)
    sweep    a grid of batch sizes x learning rates x activations x warmup       (cli.py)
    bench    benchmarks                                                          (bench.py)

Parsing stays thin; the work is done by functions that return plain results (run_demo,
fusedmlp.experiments.sweep), so they can be called and tested without a subprocess. Every
subcommand runs as args.func(args) -> exit status; main() turns errors into one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from . import cli

# Demo defaults: measured to reach >= 0.95 test accuracy on the digits split for every seed
# 0..19 (lowest 0.958), in well under a second per backend on a 2-core machine.
DEMO_DEFAULTS = {"epochs": 60, "batch_size": 32, "lr": 0.05, "hidden": 128, "seed": 0, "dtype": "float32"}

# When the two backends' final parameters "agree": DESIGN.md's whole-training tolerance in
# float64; in float32 (where DESIGN.md fixes only the per-op tolerance, 1e-4) the same 1e-4.
AGREEMENT_TOLERANCE = {"float32": 1e-4, "float64": 1e-8}


def max_relative_difference(params_a, params_b):
    """Largest over the arrays of max|a - b| / max|b| (relative to the largest magnitude, as
    in DESIGN.md), computed in float64."""
    worst = 0.0
    for a, b in zip(params_a, params_b):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        scale = float(np.abs(b).max()) if b.size else 0.0
        diff = float(np.abs(a - b).max()) if b.size else 0.0
        worst = max(worst, diff / scale if scale > 0 else diff)
    return worst


def run_demo(epochs=DEMO_DEFAULTS["epochs"], batch_size=DEMO_DEFAULTS["batch_size"], lr=DEMO_DEFAULTS["lr"],
             hidden=DEMO_DEFAULTS["hidden"], seed=DEMO_DEFAULTS["seed"], dtype=DEMO_DEFAULTS["dtype"],
             backends=("cpu", "numpy")):
    """Train MLP([64, hidden, 10], relu, cross_entropy) on the bundled digits' training split
    (75 %, stratified, split with `seed`) once per backend, from the same seed, and measure.

    Returns a dict:
        config: the arguments; n_train, n_test: the split's sizes
        results: one dict per backend: backend, accuracy (on the test split), seconds (wall
            time of fit), samples_per_s (epochs * n_train / seconds), final_loss (last epoch's)
        speedup: the reference's seconds over the native seconds (None unless both ran)
        max_rel_diff: max relative difference of the two final parameter sets (None unless two ran)
        tolerance, agree: the tolerance for this dtype and whether max_rel_diff is within it
    Raises ValueError / TypeError for bad arguments, ImportError when backend "cpu" is not built.
    """
    from .datasets import load_digits, train_test_split
    from .mlp import MLP

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.25, seed=seed)
    layers = [X.shape[1], hidden, 10]
    fit_args = dict(epochs=epochs, batch_size=batch_size, lr=lr)

    results, parameters = [], []
    for backend in backends:
        # Warm up first (thread pool, first-touch allocations), on a throwaway model, so the
        # timed fit measures training only.
        MLP(layers, backend=backend, dtype=dtype, seed=seed).fit(X_train[:256], y_train[:256], epochs=1,
                                                                 batch_size=batch_size, lr=lr)
        net = MLP(layers, activation="relu", loss="cross_entropy", backend=backend, dtype=dtype, seed=seed)
        started = time.perf_counter()
        history = net.fit(X_train, y_train, **fit_args)
        seconds = time.perf_counter() - started
        results.append({
            "backend": backend,
            "accuracy": net.score(X_test, y_test),
            "seconds": seconds,
            "samples_per_s": epochs * len(y_train) / seconds if seconds > 0 else float("inf"),
            "final_loss": float(history.epoch_loss[-1]) if history.epochs else float("nan"),
        })
        parameters.append(net.weights + net.biases)

    seconds = {r["backend"]: r["seconds"] for r in results}
    speedup = seconds["numpy"] / seconds["cpu"] if {"numpy", "cpu"} <= seconds.keys() and seconds["cpu"] > 0 else None
    max_rel_diff = max_relative_difference(parameters[0], parameters[1]) if len(parameters) >= 2 else None
    tolerance = AGREEMENT_TOLERANCE[np.dtype(dtype).name]
    return {
        "config": {"layers": layers, "activation": "relu", "loss": "cross_entropy", "dtype": np.dtype(dtype).name,
                   "seed": seed, **fit_args},
        "n_train": len(y_train),
        "n_test": len(y_test),
        "results": results,
        "speedup": speedup,
        "max_rel_diff": max_rel_diff,
        "tolerance": tolerance,
        "agree": None if max_rel_diff is None else max_rel_diff <= tolerance,
    }


def format_demo(result):
    """The demo's report as text."""
    c = result["config"]
    lines = [
        f"fusedmlp demo: bundled digits (8x8), {result['n_train']} train / {result['n_test']} test samples",
        f"MLP {c['layers']} {c['activation']} + {c['loss']}, {c['dtype']}; SGD {c['epochs']} epochs, "
        f"batch {c['batch_size']}, lr {c['lr']:g}, seed {c['seed']}",
        "",
        f"{'backend':<18}{'test accuracy':>13}{'train seconds':>15}{'samples/s':>13}",
    ]
    for r in result["results"]:
        name = r["backend"] + {"cpu": " (native)", "numpy": " (reference)"}.get(r["backend"], "")
        lines.append(f"{name:<18}{r['accuracy']:>13.4f}{r['seconds']:>15.3f}{r['samples_per_s']:>13,.0f}")
    lines.append("")
    if result["speedup"] is not None:
        lines.append(f"native speed-up over the NumPy reference: {result['speedup']:.2f}x")
    if result["max_rel_diff"] is not None:
        verdict = "agree" if result["agree"] else "DIFFER"
        relation = "<=" if result["agree"] else ">"
        lines.append(f"final parameters, cpu vs numpy: max relative difference {result['max_rel_diff']:.2e} "
                     f"({verdict}: {relation} {result['tolerance']:g} for {c['dtype']})")
    return "\n".join(lines)


# --- argument parsing -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _add_demo_parser(commands):
    demo = commands.add_parser(
        "demo", help="train on the bundled digits with the native and the NumPy backend and compare",
        description="Train an MLP [64, hidden, 10] (relu, cross_entropy, plain SGD) on the bundled "
                    "handwritten digits (75% train / 25% test, stratified) with the native backend "
                    "and with the NumPy reference from the same seed; print test accuracy, training "
                    "time and throughput of each, the native speed-up, and how far the two final "
                    "parameter sets differ.")
    d = DEMO_DEFAULTS
    demo.add_argument("--epochs", type=cli.positive_int, default=d["epochs"],
                      help=f"passes over the training split (default: {d['epochs']})")
    demo.add_argument("--batch-size", type=cli.positive_int, default=d["batch_size"],
                      help=f"samples per SGD step (default: {d['batch_size']})")
    demo.add_argument("--lr", type=cli.positive_float, default=d["lr"],
                      help=f"SGD learning rate (default: {d['lr']})")
    demo.add_argument("--hidden", type=cli.positive_int, default=d["hidden"],
                      help=f"width of the hidden layer (default: {d['hidden']})")
    demo.add_argument("--seed", type=cli.non_negative_int, default=d["seed"],
                      help=f"seeds the split, the initial parameters and the shuffles (default: {d['seed']})")
    demo.add_argument("--dtype", choices=("float32", "float64"), default=d["dtype"],
                      help=f"floating-point type of parameters and data (default: {d['dtype']})")
    demo.set_defaults(func=_demo_command)


def _demo_command(args):
    result = run_demo(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, hidden=args.hidden,
                      seed=args.seed, dtype=args.dtype)
    print(format_demo(result))
    return 0


def _register_bench(commands):
    """`bench` comes from fusedmlp.bench (the benchmarks' own module) where it is present."""
    try:
        from .bench import register
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.bench":
            raise
        return
    register(commands)


def build_parser():
    from . import __version__

    parser = _Parser(
        prog="fusedmlp",
        description="fusedmlp: multilayer perceptrons trained by fused native kernels, checked against NumPy. "
                    "Run 'fusedmlp COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"fusedmlp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True, parser_class=_Parser)
    _add_demo_parser(commands)
    cli.add_train_parser(commands)
    cli.add_predict_parser(commands)
    cli.add_sweep_parser(commands)
    _register_bench(commands)
    return parser


def _one_line(error):
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{os.fsdecode(error.filename)}: {error.strerror}"
    return text or type(error).__name__


def main(argv=None):
    """Entry point of `python -m fusedmlp` and of the `fusedmlp` script; returns the exit status.

    Bad arguments (argparse) and bad values the library rejects (ValueError, TypeError) exit
    with 2; files that cannot be read or written, a missing optional package, a training run
    that diverged and other failures to complete exit with 1; Ctrl-C with 130. Each is one
    line on stderr, never a traceback.
    """
    from .errors import DivergenceError

    parser = build_parser()
    args = parser.parse_args(argv)  # bad arguments: one error line, exit 2
    try:
        return args.func(args)
    except (ValueError, TypeError) as error:
        print(f"{parser.prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (OSError, ImportError, MemoryError, DivergenceError) as error:
        # OSError: a file that cannot be read or written, a Dask scheduler out of reach;
        # ImportError: the native module or an optional package (matplotlib, dask) is missing.
        print(f"{parser.prog}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
