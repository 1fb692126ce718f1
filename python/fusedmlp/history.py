"""What fit() and partial_fit() return (History) and what callbacks receive (EpochInfo)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

_STEP_ARRAYS = ("step_loss", "lr")
_EPOCH_ARRAYS = ("epoch_loss", "epoch_time", "samples_per_s")
_VALIDATION_ARRAYS = ("val_loss", "val_score")
_ARRAYS = _STEP_ARRAYS + _EPOCH_ARRAYS + _VALIDATION_ARRAYS
STOP_REASONS = (None, "early_stopping", "callback", "divergence")


def _frozen_array(values):
    array = np.array(values, dtype=np.float64).reshape(-1)  # a copy: the History owns it
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class History:
    """Per-step and per-epoch records of one fit() or partial_fit() call; read-only arrays.

    step_loss: the mean loss of each step's batch, before that step's update (float64).
    lr: the learning rate of each step.
    epoch_loss: each completed epoch's mean loss over its samples (step losses weighted by batch
        size).
    epoch_time: wall-clock seconds each epoch's training steps took (validation not included).
    samples_per_s: samples trained per second in each epoch.
    val_loss, val_score: per epoch, the loss and score (model.score: accuracy, or R^2 for mse) on
        the validation data; empty arrays without validation data.
    best_epoch: the epoch (0-based) with the best monitored loss (val_loss with validation data,
        else epoch_loss), improvements smaller than min_delta not counting; with early stopping
        and restore_best_weights, the epoch whose parameters the model ends with. None when no
        epoch completed.
    stopped_early: whether training stopped before the requested epochs (early stopping, a
        callback or a divergence); stop_reason says which ("early_stopping", "callback",
        "divergence") or is None.
    diverged: whether a step diverged (on_divergence="stop"); then the last entries of step_loss
        and lr belong to that step, which was not applied, and its epoch is not in the epoch
        arrays.
    """

    step_loss: np.ndarray
    lr: np.ndarray
    epoch_loss: np.ndarray
    epoch_time: np.ndarray
    val_loss: np.ndarray = field(default_factory=lambda: np.empty(0))
    val_score: np.ndarray = field(default_factory=lambda: np.empty(0))
    samples_per_s: np.ndarray = None
    best_epoch: int | None = None
    stopped_early: bool = False
    diverged: bool = False
    stop_reason: str | None = None

    def __post_init__(self):
        if self.samples_per_s is None:
            object.__setattr__(self, "samples_per_s", np.full(len(self.epoch_loss), np.nan))
        for name in _ARRAYS:
            object.__setattr__(self, name, _frozen_array(getattr(self, name)))
        if len(self.step_loss) != len(self.lr):
            raise ValueError(f"lr: expected one rate per step ({len(self.step_loss)}); got {len(self.lr)}")
        for name in _EPOCH_ARRAYS:
            if len(getattr(self, name)) != self.epochs:
                raise ValueError(f"{name}: expected one value per epoch ({self.epochs}); got {len(getattr(self, name))}")
        for name in _VALIDATION_ARRAYS:
            if len(getattr(self, name)) not in (0, self.epochs):
                raise ValueError(f"{name}: expected one value per epoch ({self.epochs}) or none; "
                                 f"got {len(getattr(self, name))}")
        if self.best_epoch is not None:
            object.__setattr__(self, "best_epoch", int(self.best_epoch))
        if self.stop_reason not in STOP_REASONS:
            raise ValueError(f"stop_reason: expected one of {STOP_REASONS}; got {self.stop_reason!r}")

    @property
    def epochs(self):
        """How many epochs completed."""
        return len(self.epoch_loss)

    @property
    def steps(self):
        """How many steps ran (a divergent last step included)."""
        return len(self.step_loss)

    @property
    def has_validation(self):
        return len(self.val_loss) > 0

    def as_dict(self, json_safe=False):
        """Plain Python lists, floats, ints, bools and None, for json.dumps. json_safe: write
        non-finite floats (a diverged loss) as None, since strict JSON has no inf or nan."""

        def number(value):
            value = float(value)
            return None if json_safe and not math.isfinite(value) else value

        record = {name: [number(v) for v in getattr(self, name)] for name in _ARRAYS}
        record.update(best_epoch=self.best_epoch, stopped_early=self.stopped_early, diverged=self.diverged,
                      stop_reason=self.stop_reason)
        return record

    @classmethod
    def from_dict(cls, record):
        """The History that as_dict() described (None entries read back as nan)."""
        known = {f.name for f in fields(cls)}
        unknown = set(record) - known
        if unknown:
            raise ValueError(f"record: unknown History fields {sorted(unknown)}")
        values = dict(record)
        for name in _ARRAYS:
            if name in values:
                values[name] = [np.nan if v is None else v for v in values[name]]
        return cls(**values)

    def __repr__(self):
        parts = [f"epochs={self.epochs}", f"steps={self.steps}"]
        if self.epochs:
            parts.append(f"epoch_loss={self.epoch_loss[-1]:.6g}")
        if self.has_validation:
            parts.append(f"val_loss={self.val_loss[-1]:.6g}")
            parts.append(f"val_score={self.val_score[-1]:.6g}")
        if self.best_epoch is not None:
            parts.append(f"best_epoch={self.best_epoch}")
        if self.stop_reason is not None:
            parts.append(f"stop_reason={self.stop_reason!r}")
        return f"History({', '.join(parts)})"


@dataclass(frozen=True)
class EpochInfo:
    """What each callback receives after each epoch, with the model.

    epoch: the epoch of this fit / partial_fit call (0-based).
    global_step: the model's step counter after this epoch (steps since the last fit()).
    loss: the epoch's mean training loss.
    val_loss, val_score: on the validation data, or None without it.
    lr: the learning rate of the epoch's last step.
    seconds: wall-clock seconds of the epoch's training steps.
    samples_per_s: samples trained per second in this epoch.
    """

    epoch: int
    global_step: int
    loss: float
    val_loss: float | None
    val_score: float | None
    lr: float
    seconds: float
    samples_per_s: float
