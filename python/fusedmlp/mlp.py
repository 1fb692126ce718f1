"""The MLP: one API over every backend (see DESIGN.md for the semantics it fixes)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import reference
from ._validation import (
    as_features,
    as_parameters,
    as_targets,
    check_bool,
    check_callbacks,
    check_choice,
    check_dtype,
    check_float,
    check_fraction,
    check_int,
    check_layer_sizes,
    check_pair,
    check_seed,
)
from .backends import BACKENDS, make_backend
from .errors import DivergenceError
from .history import EpochInfo, History
from .schedules import as_schedule, schedule_rates, warmup

INITS = ("auto", "he_uniform", "glorot_uniform")
ON_DIVERGENCE = ("raise", "stop")


class _Shuffles:
    """Each epoch's order, drawn from rng as DESIGN.md fixes: rng.permutation(n), or arange(n)
    without shuffling. The next epoch's can be drawn ahead, while the current one trains; one
    that no epoch took is given back, and the generator continues as if it had never been drawn."""

    def __init__(self, rng, n, shuffle):
        self._rng, self._n, self._shuffle = rng, n, shuffle
        self._ahead = None  # (the generator's state before the draw, the order drawn)

    def next(self):
        if self._ahead is not None:
            order, self._ahead = self._ahead[1], None
            return order
        return self._rng.permutation(self._n) if self._shuffle else np.arange(self._n)

    def draw_ahead(self):
        if self._shuffle and self._ahead is None:
            state = self._rng.bit_generator.state
            self._ahead = (state, self._rng.permutation(self._n))

    def give_back(self):
        if self._ahead is not None:
            self._rng.bit_generator.state = self._ahead[0]
            self._ahead = None


class MLP:
    """A multilayer perceptron trained with mini-batch SGD.

    layer_sizes: [n_features, hidden..., n_outputs]. Hidden layers apply `activation`; the
    last layer is linear and its output activation belongs to the loss (identity for mse,
    sigmoid for bce, softmax for cross_entropy).
    backend: "cpu" (native kernels, the default) or "numpy" (the reference).
    seed: seeds the model's random generator, which draws the initial parameters and then
    every epoch's shuffle.
    """

    def __init__(self, layer_sizes, activation="relu", loss="cross_entropy", backend="cpu",
                 dtype="float32", seed=None, init="auto"):
        self._layer_sizes = check_layer_sizes(layer_sizes)
        self._activation = check_choice("activation", activation, reference.ACTIVATIONS)
        self._loss = check_choice("loss", loss, reference.LOSSES)
        self._backend_name = check_choice("backend", backend, BACKENDS)
        self._dtype = check_dtype(dtype)
        self._init = check_choice("init", init, INITS)
        self._rng = np.random.default_rng(check_seed("seed", seed))
        try:
            weights, biases = reference.init_parameters(self._layer_sizes, self._activation, self._rng,
                                                        self._dtype, self._init)
        except (MemoryError, ValueError):  # NumPy: "Unable to allocate" / "array is too big"
            count = sum(a * b + b for a, b in zip(self._layer_sizes[:-1], self._layer_sizes[1:]))
            raise MemoryError(f"layer_sizes: {list(self._layer_sizes)} has {count} parameters, more than "
                              "this machine can allocate") from None
        self._backend = make_backend(self._backend_name, self._layer_sizes, self._activation, self._loss,
                                     self._dtype)
        self._backend.set_parameters(weights, biases)
        self._global_step = 0  # the schedule's step counter t: fit resets it, partial_fit continues it

    # --- description ----------------------------------------------------------------------

    @property
    def layer_sizes(self):
        return list(self._layer_sizes)

    @property
    def activation(self):
        return self._activation

    @property
    def loss(self):
        return self._loss

    @property
    def backend(self):
        return self._backend_name

    @property
    def dtype(self):
        return self._dtype

    @property
    def n_features_in(self):
        return self._layer_sizes[0]

    @property
    def n_outputs(self):
        return self._layer_sizes[-1]

    def __repr__(self):
        return (f"MLP({self.layer_sizes}, activation={self._activation!r}, loss={self._loss!r}, "
                f"backend={self._backend_name!r}, dtype={self._dtype.name!r})")

    # --- parameters -----------------------------------------------------------------------

    @property
    def weights(self):
        """Copies of each layer's W, shaped (fan_in, fan_out)."""
        return self._backend.get_parameters()[0]

    @property
    def biases(self):
        """Copies of each layer's b, shaped (fan_out,)."""
        return self._backend.get_parameters()[1]

    def set_parameters(self, weights, biases):
        """Replace every W and b (copied, converted to the model's dtype)."""
        weights, biases = as_parameters(weights, biases, self._layer_sizes, self._dtype)
        self._backend.set_parameters(weights, biases)

    # --- inference ------------------------------------------------------------------------

    def _features(self, X):
        return as_features(X, self._layer_sizes[0], self._dtype)

    def decision_function(self, X):
        """Logits of the last layer, shaped (n, n_outputs)."""
        return self._backend.logits(self._features(X))

    def forward(self, X):
        """The output after the loss's output activation: values, sigmoids or softmax rows."""
        return self._backend.outputs(self._features(X))

    def predict_proba(self, X):
        """Class probabilities: softmax rows (cross_entropy) or sigmoids (bce), (n, n_outputs)."""
        if self._loss == "mse":
            raise ValueError("predict_proba: needs loss 'bce' or 'cross_entropy'; this model's loss is 'mse'")
        return self.forward(X)

    def predict(self, X):
        """Class indices (cross_entropy), 0/1 labels (bce) or values (mse). Single-output bce and
        mse models return shape (n,), others (n, n_outputs)."""
        logits = self.decision_function(X)
        if self._loss == "cross_entropy":
            return logits.argmax(axis=1)
        out = (logits > 0).astype(np.int64) if self._loss == "bce" else logits
        return out[:, 0] if self.n_outputs == 1 else out

    def score(self, X, y):
        """Accuracy for cross_entropy and bce (every output right; targets rounded at 0.5),
        the coefficient of determination R^2 for mse (averaged over outputs, as scikit-learn)."""
        X = self._features(X)
        y = as_targets(y, self._loss, X.shape[0], self.n_outputs, self._dtype)
        return self._score_logits(self._backend.logits(X), y)

    def _score_logits(self, logits, y):
        if self._loss == "cross_entropy":
            return float(np.mean(logits.argmax(axis=1) == y))
        if self._loss == "bce":
            return float(np.mean(np.all((logits > 0) == (y >= 0.5), axis=1)))
        return _r2_score(y.astype(np.float64), logits.astype(np.float64))

    # --- training -------------------------------------------------------------------------

    def loss_and_grad(self, X, y):
        """Mean loss over the batch (X, y) and the gradients (lists dW, db) of that mean with
        respect to every W and b; no weight decay; the model is unchanged."""
        X = self._features(X)
        y = as_targets(y, self._loss, X.shape[0], self.n_outputs, self._dtype)
        return self._backend.loss_and_grad(X, y)

    def fit(self, X, y, epochs=5, batch_size=64, lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0,
            warmup_steps=0, shuffle=True, drop_last=False, seed=None, validation_data=None, validation_fraction=0.0,
            early_stopping=False, patience=10, min_delta=0.0, restore_best_weights=True, callbacks=(),
            progress=False, on_divergence="raise"):
        """Mini-batch SGD over (X, y) from fresh optimizer state and step counter t = 0; returns a
        History.

        Each epoch visits the samples in a fresh permutation (shuffle=True) or in order, in
        batches of batch_size (the last one partial unless drop_last). Momentum and nesterov
        follow PyTorch's SGD; weight_decay applies to weights, not biases.

        lr: a float, or a schedule from fusedmlp.schedules, evaluated per global step t.
        warmup_steps: a linear warmup over the first warmup_steps steps in front of lr
            (schedules.warmup(lr, warmup_steps)).
        seed: draw this call's shuffles (and validation split) from np.random.default_rng(seed)
            instead of the model's generator.
        validation_data: (X_val, y_val), evaluated after every epoch (history.val_loss and
            val_score, the latter as model.score).
        validation_fraction: in [0, 1); hold out ceil(fraction * n) samples, chosen by a seeded
            permutation drawn before the epochs' shuffles, as validation data. Both parts keep X's
            row order. Not together with validation_data.
        early_stopping: stop once the monitored loss (val_loss with validation data, else the
            epoch's training loss) has not improved by more than min_delta for `patience`
            epochs in a row. restore_best_weights: then end with the parameters of the best
            epoch (history.best_epoch); the optimizer state and step counter stay where training
            stopped, as scikit-learn's and Keras's.
        callbacks: callables callback(model, info) called after every epoch, info an
            fusedmlp.history.EpochInfo; one returning True (anything truthy) stops training after
            that epoch.
        progress: show a tqdm progress bar on stderr (epochs, loss, samples/s); needs tqdm.
        on_divergence: when a step's loss or updated parameters would be non-finite, that step is
            not applied and training stops; "raise" raises fusedmlp.errors.DivergenceError
            (epoch, step, lr, loss, and the history so far), the model keeping the parameters
            from before the step; "stop" returns the History with diverged True (and, with early
            stopping and restore_best_weights, the best epoch's parameters restored).
        Every argument is checked before anything changes: a bad one raises ValueError or
        TypeError and leaves the model, its generator and its optimizer state as they were.
        """
        options = self._training_options(epochs, batch_size, lr, momentum, nesterov, weight_decay, warmup_steps,
                                         shuffle, drop_last, callbacks, progress, on_divergence)
        validation_fraction = check_fraction("validation_fraction", validation_fraction)
        options.early_stopping = check_bool("early_stopping", early_stopping)
        options.patience = check_int("patience", patience, 1)
        options.min_delta = check_float("min_delta", min_delta, 0.0)
        options.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        seed = check_seed("seed", seed)
        if validation_data is not None and validation_fraction > 0:
            raise ValueError("validation_fraction: give validation_data or validation_fraction, not both; "
                             f"got validation_data and validation_fraction={validation_fraction!r}")
        X, y, validation = self._training_data(X, y, validation_data)
        n = X.shape[0]
        # Rounded first so that 0.7 of 10 holds out 7, not the 8 of ceil(7.000000000000001).
        held_out = math.ceil(round(validation_fraction * n, 9)) if validation_fraction > 0 else 0
        if held_out >= n:
            raise ValueError(f"validation_fraction: holding out {held_out} of the {n} samples of X leaves none "
                             f"to train on; got {validation_fraction!r}")
        self._check_batches(n - held_out, options, held_out)
        self._check_first_rates(0, options, n - held_out)
        bar = _progress_bar(options.epochs, "fit") if options.progress else None

        # Everything is valid: from here on, state changes.
        rng = self._rng if seed is None else np.random.default_rng(seed)
        if held_out:
            permutation = rng.permutation(n)
            train_rows, val_rows = np.sort(permutation[:n - held_out]), np.sort(permutation[n - held_out:])
            validation = (X[val_rows], y[val_rows])
            X, y = X[train_rows], y[train_rows]
        self._backend.reset_optimizer()
        self._global_step = 0
        return self._train(X, y, validation, rng, options, bar)

    def partial_fit(self, X, y, epochs=1, batch_size=64, lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0,
                    warmup_steps=0, shuffle=True, drop_last=False, seed=None, validation_data=None, callbacks=(),
                    progress=False, on_divergence="raise"):
        """More epochs of SGD over (X, y), continuing the optimizer state (momentum) and the global
        step counter t of the schedule where the last fit / partial_fit left them: fit(epochs=a)
        then partial_fit(epochs=b) trains exactly as fit(epochs=a + b) on the same data (with
        seed=None, both draw shuffles from the model's generator). For streaming data, call it
        once per chunk. The arguments mean what they mean for fit; returns this call's History.
        """
        options = self._training_options(epochs, batch_size, lr, momentum, nesterov, weight_decay, warmup_steps,
                                         shuffle, drop_last, callbacks, progress, on_divergence)
        seed = check_seed("seed", seed)
        X, y, validation = self._training_data(X, y, validation_data)
        self._check_batches(X.shape[0], options)
        self._check_first_rates(self._global_step, options, X.shape[0])
        bar = _progress_bar(options.epochs, "partial_fit") if options.progress else None
        rng = self._rng if seed is None else np.random.default_rng(seed)
        return self._train(X, y, validation, rng, options, bar)

    @property
    def global_step(self):
        """The step counter t of the learning-rate schedule: steps applied since the last fit()."""
        return self._global_step

    # --- training internals ---------------------------------------------------------------

    def _training_options(self, epochs, batch_size, lr, momentum, nesterov, weight_decay, warmup_steps, shuffle,
                          drop_last, callbacks, progress, on_divergence):
        options = _TrainingOptions(
            epochs=check_int("epochs", epochs, 0),
            batch_size=check_int("batch_size", batch_size, 1),
            schedule=as_schedule(lr, "lr"),
            momentum=check_float("momentum", momentum, 0.0, below=1.0),
            nesterov=check_bool("nesterov", nesterov),
            weight_decay=check_float("weight_decay", weight_decay, 0.0),
            shuffle=check_bool("shuffle", shuffle),
            drop_last=check_bool("drop_last", drop_last),
            callbacks=check_callbacks(callbacks),
            progress=check_bool("progress", progress),
            on_divergence=check_choice("on_divergence", on_divergence, ON_DIVERGENCE),
        )
        if options.nesterov and options.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0; got momentum=0.0")
        warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        if warmup_steps:
            options.schedule = warmup(options.schedule, warmup_steps)
        return options

    def _training_data(self, X, y, validation_data):
        X = self._features(X)
        y = as_targets(y, self._loss, X.shape[0], self.n_outputs, self._dtype)
        if validation_data is None:
            return X, y, None
        X_val, y_val = check_pair("validation_data", validation_data)
        X_val = as_features(X_val, self._layer_sizes[0], self._dtype, arg="validation_data[0]")
        y_val = as_targets(y_val, self._loss, X_val.shape[0], self.n_outputs, self._dtype, arg="validation_data[1]",
                           features_arg="validation_data[0]")
        return X, y, (X_val, y_val)

    @staticmethod
    def _check_batches(n, options, held_out=0):
        if options.drop_last and options.batch_size > n:
            where = f" left after validation_fraction held out {held_out}" if held_out else ""
            raise ValueError(f"batch_size: with drop_last=True, expected at most the {n} samples of X{where}; "
                             f"got {options.batch_size}")

    @staticmethod
    def _check_first_rates(first_step, options, n):
        """Ask the schedule for the first epoch's rates now, so a schedule that cannot give them
        fails before training starts (later epochs are asked for theirs as they come)."""
        if options.epochs:
            steps = len(reference.batch_bounds(n, options.batch_size, options.drop_last))
            schedule_rates(options.schedule, first_step, steps)

    def _train_epoch(self, X, y, order, lrs, options, meanwhile=None):
        """The backend's epoch: (step_loss as float64, diverged). meanwhile(), when given, runs
        while a backend that trains asynchronously (start_epoch / finish_epoch) works."""
        args = (X, y, order, options.batch_size, options.drop_last, lrs, options.momentum, options.nesterov,
                options.weight_decay)
        # Overflow on the way to a divergence is reported as one (DivergenceError or
        # history.diverged), not as NumPy warnings from the reference backend as well.
        with np.errstate(over="ignore", invalid="ignore"):
            if meanwhile is not None and hasattr(self._backend, "start_epoch"):
                self._backend.start_epoch(*args)
                try:
                    meanwhile()
                finally:
                    step_loss, diverged = self._backend.finish_epoch()
            else:
                step_loss, diverged = self._backend.train_epoch(*args)
        return np.asarray(step_loss, dtype=np.float64), bool(diverged)

    def _evaluate(self, X, y):
        """(mean loss, score) of the model on (X, y), from one forward pass."""
        logits = self._backend.logits(X)
        with np.errstate(over="ignore", invalid="ignore"):  # a model with huge outputs: inf loss, not a warning
            loss = reference.loss_and_grad(self._loss, logits, y)[0]
        return float(loss), self._score_logits(logits, y)

    def _train(self, X, y, validation, rng, options, bar):
        """The epochs of fit / partial_fit over validated data, from the current optimizer state
        and step counter; records and returns the History (or raises DivergenceError)."""
        n = X.shape[0]
        bounds = reference.batch_bounds(n, options.batch_size, options.drop_last)
        batch_rows = np.array([stop - start for start, stop in bounds], dtype=np.float64)
        samples = float(batch_rows.sum())
        record = {name: [] for name in ("step_loss", "lr", "epoch_loss", "epoch_time", "samples_per_s", "val_loss",
                                        "val_score")}
        best_loss, best_epoch, best_parameters, since_best = math.inf, None, None, 0
        keep_best = options.early_stopping and options.restore_best_weights
        stop_reason, divergence = None, None
        shuffles = _Shuffles(rng, n, options.shuffle)
        try:
            for epoch in range(options.epochs):
                order = shuffles.next()
                first_step = self._global_step
                lrs = schedule_rates(options.schedule, first_step, len(bounds))
                started = time.perf_counter()
                # A GPU trains while the host draws the next epoch's shuffle (2.4 ms for 262,144
                # samples here, on the order of the epoch itself).
                draw_ahead = shuffles.draw_ahead if epoch + 1 < options.epochs else None
                step_loss, diverged = self._train_epoch(X, y, order.astype(np.int64, copy=False), lrs, options,
                                                        draw_ahead)
                seconds = time.perf_counter() - started
                record["step_loss"].append(step_loss)
                record["lr"].append(lrs[:len(step_loss)])
                if diverged:
                    applied = len(step_loss) - 1
                    self._global_step = first_step + applied
                    divergence = (epoch, first_step + applied, lrs[applied], step_loss[-1])
                    stop_reason = "divergence"
                    break
                self._global_step = first_step + len(step_loss)
                epoch_loss = float(np.dot(step_loss, batch_rows) / samples)
                samples_per_s = samples / seconds if seconds > 0 else math.inf
                record["epoch_loss"].append(epoch_loss)
                record["epoch_time"].append(seconds)
                record["samples_per_s"].append(samples_per_s)
                val_loss = val_score = None
                if validation is not None:
                    val_loss, val_score = self._evaluate(*validation)
                    record["val_loss"].append(val_loss)
                    record["val_score"].append(val_score)

                monitored = epoch_loss if val_loss is None else val_loss
                if monitored < best_loss - options.min_delta:
                    best_loss, best_epoch, since_best = monitored, epoch, 0
                    if keep_best:
                        best_parameters = self._backend.get_parameters()
                else:
                    since_best += 1

                info = EpochInfo(epoch=epoch, global_step=self._global_step, loss=epoch_loss, val_loss=val_loss,
                                 val_score=val_score, lr=float(lrs[-1]), seconds=seconds, samples_per_s=samples_per_s)
                if bar is not None:
                    bar.set_postfix(_progress_fields(info), refresh=False)
                    bar.update(1)
                # Every callback sees every epoch, even after one of them asked to stop.
                stop_requested = [bool(callback(self, info)) for callback in options.callbacks]
                if epoch + 1 < options.epochs:
                    if any(stop_requested):
                        stop_reason = "callback"
                        break
                    if options.early_stopping and since_best >= options.patience:
                        stop_reason = "early_stopping"
                        break
        finally:
            # The generator continues as if no epoch that did not run had drawn its shuffle.
            shuffles.give_back()
            # The next fit may pass the same array with new contents: a backend that keeps the
            # training set (on a GPU) must take it afresh.
            self._backend.release_training_set()
            if bar is not None:
                bar.close()

        raising = divergence is not None and options.on_divergence == "raise"
        ends_elsewhere = divergence is not None or best_epoch != len(record["epoch_loss"]) - 1
        if keep_best and not raising and best_parameters is not None and ends_elsewhere:
            self._backend.set_parameters(*best_parameters)
        history = History(
            step_loss=np.concatenate(record["step_loss"]) if record["step_loss"] else np.empty(0),
            lr=np.concatenate(record["lr"]) if record["lr"] else np.empty(0),
            epoch_loss=record["epoch_loss"], epoch_time=record["epoch_time"],
            samples_per_s=record["samples_per_s"], val_loss=record["val_loss"], val_score=record["val_score"],
            best_epoch=best_epoch, stopped_early=stop_reason is not None, diverged=divergence is not None,
            stop_reason=stop_reason,
        )
        if raising:
            raise DivergenceError(*divergence, history=history)
        return history

    # --- files and other libraries ---------------------------------------------------------

    def save(self, path, include_optimizer=False):
        """Write the model to path (see fusedmlp.io: no pickle). include_optimizer also stores the
        momentum buffers and the step counter, so that a loaded model's partial_fit continues
        exactly where this one would."""
        from .io import save

        save(self, path, include_optimizer=include_optimizer)

    def to_torch(self):
        """An equivalent torch.nn.Sequential (needs torch; see fusedmlp.torch_interop)."""
        from .torch_interop import to_torch

        return to_torch(self)

    @classmethod
    def from_torch(cls, module, **kwargs):
        """An MLP with the layers and parameters of a torch module of Linear layers and supported
        activations; kwargs (loss, backend, dtype, ...) as MLP's (see fusedmlp.torch_interop)."""
        from .torch_interop import from_torch

        return from_torch(module, **kwargs)


@dataclass
class _TrainingOptions:
    """fit's / partial_fit's validated arguments."""

    epochs: int
    batch_size: int
    schedule: object
    momentum: float
    nesterov: bool
    weight_decay: float
    shuffle: bool
    drop_last: bool
    callbacks: tuple
    progress: bool
    on_divergence: str
    early_stopping: bool = False
    patience: int = 10
    min_delta: float = 0.0
    restore_best_weights: bool = True


def _progress_bar(epochs, description):
    """A tqdm bar over the epochs on stderr; tqdm is imported only when a bar is asked for."""
    try:
        from tqdm import tqdm
    except ImportError:
        raise ImportError("progress=True needs the tqdm package: pip install tqdm (or pass progress=False)") from None
    return tqdm(total=epochs, desc=description, unit="epoch", file=sys.stderr, dynamic_ncols=True)


def _progress_fields(info):
    fields = {"loss": f"{info.loss:.4g}"}
    if info.val_loss is not None:
        fields["val_loss"] = f"{info.val_loss:.4g}"
        fields["val_score"] = f"{info.val_score:.4g}"
    fields["samples/s"] = f"{info.samples_per_s:.3g}"
    return fields


def _r2_score(y, prediction):
    residual = ((y - prediction) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    # scikit-learn's convention for constant targets: 1 if predicted exactly, else 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.where(residual == 0, 1.0, 0.0))
    return float(scores.mean())
