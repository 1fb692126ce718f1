"""The MLP: one API over every backend (see DESIGN.md for the semantics it fixes)."""

from __future__ import annotations

import time

import numpy as np

from . import reference
from ._validation import (
    as_features,
    as_parameters,
    as_targets,
    check_bool,
    check_choice,
    check_dtype,
    check_float,
    check_int,
    check_layer_sizes,
    check_seed,
)
from .backends import BACKENDS, make_backend
from .history import History
from .schedules import warmup_rates

INITS = ("auto", "he_uniform", "glorot_uniform")


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
        logits = self._backend.logits(X)
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
            warmup_steps=0, shuffle=True, drop_last=False, seed=None):
        """Mini-batch SGD over (X, y); returns a History.

        Each epoch visits the samples in a fresh permutation (shuffle=True) or in order, in
        batches of batch_size (the last one partial unless drop_last). The learning rate warms
        up linearly over the first warmup_steps steps. Momentum state starts fresh each call.
        seed: shuffle with np.random.default_rng(seed) instead of the model's generator.
        """
        epochs = check_int("epochs", epochs, 0)
        batch_size = check_int("batch_size", batch_size, 1)
        lr = check_float("lr", lr, 0.0)
        momentum = check_float("momentum", momentum, 0.0, below=1.0)
        nesterov = check_bool("nesterov", nesterov)
        if nesterov and momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0; got momentum=0.0")
        weight_decay = check_float("weight_decay", weight_decay, 0.0)
        warmup_steps = check_int("warmup_steps", warmup_steps, 0)
        shuffle = check_bool("shuffle", shuffle)
        drop_last = check_bool("drop_last", drop_last)
        seed = check_seed("seed", seed)
        X = self._features(X)
        n = X.shape[0]
        y = as_targets(y, self._loss, n, self.n_outputs, self._dtype)
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size: with drop_last=True, expected at most the {n} samples of X; got {batch_size}"
            )

        rng = self._rng if seed is None else np.random.default_rng(seed)
        bounds = reference.batch_bounds(n, batch_size, drop_last)
        batch_rows = np.array([stop - start for start, stop in bounds], dtype=np.float64)
        step_losses, rates, epoch_losses, epoch_times = [], [], [], []
        self._backend.reset_optimizer()
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            lrs = warmup_rates(lr, warmup_steps, epoch * len(bounds), len(bounds))
            started = time.perf_counter()
            step_loss, _ = self._backend.train_epoch(X, y, order.astype(np.int64, copy=False), batch_size, drop_last,
                                                  lrs, momentum, nesterov, weight_decay)
            epoch_times.append(time.perf_counter() - started)
            step_losses.append(step_loss)
            rates.append(lrs)
            epoch_losses.append(float(np.dot(step_loss, batch_rows) / batch_rows.sum()))
        return History(
            step_loss=np.concatenate(step_losses) if step_losses else np.empty(0),
            lr=np.concatenate(rates) if rates else np.empty(0),
            epoch_loss=np.array(epoch_losses, dtype=np.float64),
            epoch_time=np.array(epoch_times, dtype=np.float64),
        )

    # --- files ----------------------------------------------------------------------------

    def save(self, path):
        """Write the model to path (see fusedmlp.io: no pickle)."""
        from .io import save

        save(self, path)


def _r2_score(y, prediction):
    residual = ((y - prediction) ** 2).sum(axis=0)
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    # scikit-learn's convention for constant targets: 1 if predicted exactly, else 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.where(residual == 0, 1.0, 0.0))
    return float(scores.mean())
