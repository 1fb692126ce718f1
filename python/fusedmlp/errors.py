"""The errors fusedmlp raises beyond Python's own (ValueError, TypeError, MemoryError, ...)."""

from __future__ import annotations

import math


class DivergenceError(ArithmeticError):
    """Training diverged: a step's loss, or a parameter value the step would have written, was
    not finite. That step was not applied: the model keeps the parameters (and optimizer state)
    from before it.

    epoch: the epoch of that fit / partial_fit call (0-based) in which it happened.
    step: the global step t (0-based, the schedule's step counter, as DESIGN.md).
    lr: the learning rate of that step.
    loss: the loss of that step's batch, before the update (inf or nan when the loss itself
        overflowed; finite when only the update would have overflowed).
    history: the History of the call up to and including that step (history.diverged is True),
        or None.
    """

    def __init__(self, epoch, step, lr, loss, history=None):
        self.epoch, self.step, self.lr, self.loss = int(epoch), int(step), float(lr), float(loss)
        self.history = history
        cause = ("the loss is not finite" if not math.isfinite(self.loss)
                 else "the update would have made parameters non-finite")
        super().__init__(
            f"training diverged at epoch {self.epoch}, step {self.step} (global), lr={self.lr:.6g}: {cause} "
            f"(loss={self.loss:.6g}); the model keeps the parameters from before that step. "
            "Try a smaller learning rate, a warmup, or scaled inputs and targets"
        )

    def __reduce__(self):  # so worker processes can send it back whole
        return type(self), (self.epoch, self.step, self.lr, self.loss, self.history)
