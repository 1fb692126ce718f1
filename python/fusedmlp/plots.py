"""PNG plots of a sweep (fusedmlp.experiments.SweepResult), drawn with matplotlib.

    plot_sweep(result, folder) -> {"loss_by_batch_size": path, ...}

loss_by_batch_size.png      training loss vs step (and vs epoch), one curve per batch size
loss_by_lr.png              training loss vs step, one curve per learning rate
score_heatmap.png           final validation accuracy (or R^2) over batch size x learning rate,
                            one panel per activation
curves_by_activation.png    training loss and validation score, one curve per activation
warmup_large_batch.png      with and without warmup at the largest lr: loss curves of the largest
                            batch sizes, final score vs batch size

Each plot holds the other parameters fixed at a reference point, named in its title: the
activation relu (else the grid's first), warmup off (where the grid has it), and the learning
rate / batch size with the best mean final score. Curves are means over seeds; a run that
diverged ends its curve with an x. matplotlib is imported only here, through its
object-oriented API with the Agg canvas: no window opens and pyplot's global state (and the
user's chosen backend) is left alone.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot_sweep", "PLOTS"]

PLOTS = ("loss_by_batch_size", "loss_by_lr", "score_heatmap", "curves_by_activation", "warmup_large_batch")


def require_matplotlib():
    """Raise a clear ImportError unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("plots need matplotlib; install it with pip install matplotlib "
                          "(or pass plots=False / --no-plots)") from None


def _new_figure(width, height):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    figure.savefig(path, format="png")
    return path


# --- choosing what to show --------------------------------------------------------------------

def _select(runs, **fixed):
    return [run for run in runs if all(run[name] == value for name, value in fixed.items())]


def _mean_score(runs):
    """Mean final score of runs; NaN when any diverged or none exists."""
    if not runs or any(run["diverged"] for run in runs):
        return float("nan")
    return float(np.mean([run["final_val_score"] for run in runs]))


def _worst_score(result):
    """The lowest final score of the runs that did not diverge: what a diverged point counts as
    when points are ranked."""
    finite = [run["final_val_score"] for run in result.runs if not run["diverged"]]
    return min(finite) if finite else 0.0


def _reference(result):
    """The fixed parameters: activation, warmup, and the best lr and batch size for them."""
    config = result.config
    activation = "relu" if "relu" in config["activations"] else config["activations"][0]
    warmup = False if False in config["warmup"] else config["warmup"][0]
    runs = _select(result.runs, activation=activation, warmup=warmup)

    worst = _worst_score(result)

    def best(name, values, other, other_values):
        """The value of `name` with the best mean score over the other parameter's values; a
        point that diverged counts as the sweep's worst score."""
        means = []
        for value in values:
            scores = [_mean_score(_select(runs, **{name: value, other: o})) for o in other_values]
            means.append(np.mean([worst if math.isnan(score) else score for score in scores]))
        return values[int(np.argmax(means))]

    return {"activation": activation, "warmup": warmup,
            "lr": best("lr", config["lrs"], "batch_size", config["batch_sizes"]),
            "batch_size": best("batch_size", config["batch_sizes"], "lr", config["lrs"])}


def _mean_curve(curves):
    """Step-wise mean of curves of different lengths (diverged runs stop early)."""
    curves = [np.asarray(c, dtype=np.float64) for c in curves if len(c)]
    if not curves:
        return np.empty(0)
    length = max(len(c) for c in curves)
    padded = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        padded[i, :len(c)] = c
    with np.errstate(all="ignore"):
        finite = np.where(np.isfinite(padded), padded, np.nan)
        counts = np.isfinite(finite).sum(axis=0)
        return np.where(counts > 0, np.nansum(finite, axis=0) / np.maximum(counts, 1), np.nan)


def _smooth(values, window):
    """A trailing moving average (the first points average what exists so far)."""
    if window <= 1 or len(values) < 2:
        return values
    finite = np.where(np.isfinite(values), values, 0.0)
    weights = np.isfinite(values).astype(np.float64)
    sums, counts = np.cumsum(finite), np.cumsum(weights)
    sums[window:] = sums[window:] - sums[:-window].copy()
    counts[window:] = counts[window:] - counts[:-window].copy()
    with np.errstate(all="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _plot_loss(axes, runs, label, color, x_scale=1.0, smooth=True):
    """Mean step loss of runs (same parameters, different seeds) against step * x_scale."""
    curve = _mean_curve([run["step_loss"] for run in runs])
    if not len(curve):
        return
    steps_per_epoch = max(1, len(curve) // max(1, max(run["epochs_run"] for run in runs) or 1))
    shown = _smooth(curve, max(1, steps_per_epoch // 4)) if smooth else curve
    x = (np.arange(len(curve)) + 1) * x_scale
    axes.plot(x, shown, label=label, color=color, linewidth=1.4)
    if any(run["diverged"] for run in runs):
        last = np.flatnonzero(np.isfinite(shown))
        if last.size:
            axes.plot(x[last[-1]], shown[last[-1]], "x", color=color, markersize=9, markeredgewidth=2)


def _loss_axes(axes, xlabel):
    axes.set_xlabel(xlabel)
    axes.set_ylabel("training loss (batch mean, smoothed)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)


def _seeds_note(result):
    seeds = len(result.config["seeds"])
    return f"mean of {seeds} seeds" if seeds > 1 else "1 seed"


def _warmup_text(warmup):
    return "warmup" if warmup else "no warmup"


def _colors(count):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / max(1, count - 1)) for i in range(count)]


def _score_label(result):
    return "validation accuracy" if result.metric == "accuracy" else "validation R^2"


def _legend_score(runs):
    score = _mean_score(runs)
    if math.isnan(score):
        diverged = sum(run["diverged"] for run in runs)
        return f"diverged {diverged}/{len(runs)}" if diverged else "no score"
    return f"{score:.3f}"


# --- the plots -------------------------------------------------------------------------------

def plot_loss_by_batch_size(result, path):
    ref = _reference(result)
    figure = _new_figure(11, 4.2)
    by_step, by_epoch = figure.subplots(1, 2)
    sizes = result.config["batch_sizes"]
    for batch_size, color in zip(sizes, _colors(len(sizes))):
        runs = _select(result.runs, batch_size=batch_size, lr=ref["lr"], activation=ref["activation"],
                       warmup=ref["warmup"])
        steps_per_epoch = math.ceil(result.config["n_train"] / batch_size)
        label = f"batch {batch_size} (final {_legend_score(runs)})"
        _plot_loss(by_step, runs, label, color)
        _plot_loss(by_epoch, runs, label, color, x_scale=1.0 / steps_per_epoch)
    _loss_axes(by_step, "step")
    by_step.set_xscale("log")
    _loss_axes(by_epoch, "epoch (samples seen / training set size)")
    by_step.legend(fontsize=8, title=_score_label(result), title_fontsize=8)
    figure.suptitle(f"Loss vs steps per batch size: {result.config['data']}, {ref['activation']}, lr {ref['lr']:g}, "
                    f"{_warmup_text(ref['warmup'])}, momentum {result.config['momentum']:g}, {_seeds_note(result)}")
    return _save(figure, path)


def plot_loss_by_lr(result, path):
    ref = _reference(result)
    figure = _new_figure(7.5, 4.5)
    axes = figure.subplots()
    lrs = sorted(result.config["lrs"])
    for lr, color in zip(lrs, _colors(len(lrs))):
        runs = _select(result.runs, batch_size=ref["batch_size"], lr=lr, activation=ref["activation"],
                       warmup=ref["warmup"])
        _plot_loss(axes, runs, f"lr {lr:g} (final {_legend_score(runs)})", color)
    _loss_axes(axes, "step")
    axes.legend(fontsize=8, title=_score_label(result), title_fontsize=8)
    axes.set_title(f"Loss vs steps per learning rate: {result.config['data']}, {ref['activation']}, "
                   f"batch {ref['batch_size']}, {_warmup_text(ref['warmup'])}, {_seeds_note(result)}", fontsize=10)
    return _save(figure, path)


def plot_score_heatmap(result, path):
    config = result.config
    warmup = False if False in config["warmup"] else config["warmup"][0]
    activations = config["activations"]
    sizes, lrs = config["batch_sizes"], sorted(config["lrs"])
    columns = min(4, len(activations))
    rows = math.ceil(len(activations) / columns)
    figure = _new_figure(3.3 * columns + 0.8, 3.0 * rows + 0.6)
    panels = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    accuracy = result.metric == "accuracy"
    image = None
    for axes, activation in zip(panels, activations):
        grid = np.full((len(sizes), len(lrs)), np.nan)
        notes = np.full(grid.shape, "", dtype=object)
        for i, batch_size in enumerate(sizes):
            for j, lr in enumerate(lrs):
                runs = _select(result.runs, batch_size=batch_size, lr=lr, activation=activation, warmup=warmup)
                grid[i, j] = _mean_score(runs)
                diverged = sum(run["diverged"] for run in runs)
                notes[i, j] = f"div\n{diverged}/{len(runs)}" if diverged else f"{grid[i, j]:.2f}"
        image = axes.imshow(grid, cmap="viridis", vmin=0.0 if accuracy else max(-1.0, np.nanmin(grid, initial=0.0)),
                            vmax=1.0, aspect="auto", origin="lower")
        for i in range(len(sizes)):
            for j in range(len(lrs)):
                dark = not np.isfinite(grid[i, j]) or grid[i, j] < 0.6
                axes.text(j, i, notes[i, j], ha="center", va="center", fontsize=7,
                          color="white" if dark else "black")
        axes.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs], fontsize=8)
        axes.set_yticks(range(len(sizes)), [str(s) for s in sizes], fontsize=8)
        axes.set_xlabel("learning rate")
        axes.set_ylabel("batch size")
        axes.set_title(activation)
    for axes in panels[len(activations):]:
        axes.set_visible(False)
    if image is not None:
        figure.colorbar(image, ax=list(panels[:len(activations)]), label=f"final {_score_label(result)}", shrink=0.9)
    figure.suptitle(f"Final {_score_label(result)} after {config['epochs']} epochs: {config['data']}, "
                    f"{_warmup_text(warmup)}, momentum {config['momentum']:g}, {_seeds_note(result)} (div: diverged)")
    return _save(figure, path)


def plot_curves_by_activation(result, path):
    ref = _reference(result)
    config = result.config
    # The batch size and lr that are best on average over the activations.
    worst = _worst_score(result)
    candidates = [(b, lr) for b in config["batch_sizes"] for lr in config["lrs"]]
    scores = []
    for b, lr in candidates:
        per_activation = [_mean_score(_select(result.runs, batch_size=b, lr=lr, activation=a, warmup=ref["warmup"]))
                          for a in config["activations"]]
        scores.append(np.mean([worst if math.isnan(score) else score for score in per_activation]))
    batch_size, lr = candidates[int(np.argmax(scores))]
    figure = _new_figure(11, 4.2)
    loss_axes, score_axes = figure.subplots(1, 2)
    activations = config["activations"]
    for activation, color in zip(activations, _colors(len(activations))):
        runs = _select(result.runs, batch_size=batch_size, lr=lr, activation=activation, warmup=ref["warmup"])
        _plot_loss(loss_axes, runs, f"{activation} (final {_legend_score(runs)})", color)
        curve = _mean_curve([run["val_score"] for run in runs])
        if len(curve):
            score_axes.plot(np.arange(1, len(curve) + 1), curve, "o-", color=color, label=activation, markersize=3)
    _loss_axes(loss_axes, "step")
    loss_axes.legend(fontsize=8, title=_score_label(result), title_fontsize=8)
    score_axes.set_xlabel("epoch")
    score_axes.set_ylabel(_score_label(result))
    score_axes.grid(True, alpha=0.3)
    score_axes.legend(fontsize=8)
    figure.suptitle(f"Training per activation: {config['data']}, batch {batch_size}, lr {lr:g}, "
                    f"{_warmup_text(ref['warmup'])}, {_seeds_note(result)}")
    return _save(figure, path)


def plot_warmup_large_batch(result, path):
    """At the grid's largest learning rate -- where warmup matters -- the loss curves with and
    without warmup for the three largest batch sizes, and the final score against batch size.
    The activation shown is the one whose score warmup changes most there (named in the title).
    None when the grid does not have both warmup settings."""
    config = result.config
    if set(config["warmup"]) != {False, True}:
        return None
    lr = max(config["lrs"])
    sizes = sorted(config["batch_sizes"])
    large = sizes[-3:]
    worst = _worst_score(result)

    def score(**fixed):
        value = _mean_score(_select(result.runs, lr=lr, **fixed))
        return worst if math.isnan(value) else value

    activation = max(config["activations"], key=lambda a: np.mean(
        [abs(score(activation=a, batch_size=b, warmup=True) - score(activation=a, batch_size=b, warmup=False))
         for b in large]))
    figure = _new_figure(3.6 * (len(large) + 1) + 0.5, 4.0)
    panels = np.atleast_1d(figure.subplots(1, len(large) + 1, squeeze=False)).ravel()
    styles = ((False, "tab:red"), (True, "tab:blue"))
    for axes, batch_size in zip(panels, large):
        for warmup, color in styles:
            runs = _select(result.runs, batch_size=batch_size, lr=lr, activation=activation, warmup=warmup)
            steps = f", {runs[0]['warmup_steps']} steps" if warmup and runs else ""
            _plot_loss(axes, runs, f"{_warmup_text(warmup)}{steps} (final {_legend_score(runs)})", color, smooth=False)
        _loss_axes(axes, "step")
        axes.set_ylabel("training loss (batch mean)")
        axes.set_title(f"batch {batch_size}", fontsize=10)
        axes.legend(fontsize=8)
    summary = panels[-1]
    for warmup, color in styles:
        scores = [_mean_score(_select(result.runs, batch_size=b, lr=lr, activation=activation, warmup=warmup))
                  for b in sizes]
        summary.plot(sizes, scores, "o-", color=color, label=_warmup_text(warmup))
    summary.set_xscale("log", base=2)
    summary.set_xticks(sizes, [str(b) for b in sizes])
    summary.set_xlabel("batch size")
    summary.set_ylabel(f"final {_score_label(result)}")
    summary.set_title("final score (gaps: diverged)", fontsize=10)
    summary.grid(True, alpha=0.3)
    summary.legend(fontsize=8)
    figure.suptitle(f"Warmup vs no warmup at lr {lr:g}: {config['data']}, {activation}, momentum "
                    f"{config['momentum']:g}, warmup over {config['warmup_fraction']:g} of the steps, "
                    f"{_seeds_note(result)} (x: diverged)")
    return _save(figure, path)


_DRAWERS = {
    "loss_by_batch_size": plot_loss_by_batch_size,
    "loss_by_lr": plot_loss_by_lr,
    "score_heatmap": plot_score_heatmap,
    "curves_by_activation": plot_curves_by_activation,
    "warmup_large_batch": plot_warmup_large_batch,
}


def plot_sweep(result, folder):
    """Draw every plot of PLOTS that the grid supports into folder/<name>.png; returns
    {name: path} of those written."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for name in PLOTS:
        path = _DRAWERS[name](result, os.path.join(folder, f"{name}.png"))
        if path is not None:
            written[name] = path
    return written
