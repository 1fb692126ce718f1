"""What fit() returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class History:
    """Per-step and per-epoch records of one fit() call.

    step_loss: the mean loss of each step's batch, before that step's update.
    lr: the learning rate each step used.
    epoch_loss: each epoch's mean loss over its samples (step losses weighted by batch size).
    epoch_time: wall-clock seconds of each epoch.
    """

    step_loss: np.ndarray
    lr: np.ndarray
    epoch_loss: np.ndarray
    epoch_time: np.ndarray

    @property
    def epochs(self):
        return len(self.epoch_loss)

    @property
    def steps(self):
        return len(self.step_loss)

    def __repr__(self):
        last = f", final epoch_loss={self.epoch_loss[-1]:.6g}" if self.epochs else ""
        return f"History(epochs={self.epochs}, steps={self.steps}{last})"
