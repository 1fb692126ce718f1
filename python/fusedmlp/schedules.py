"""Learning-rate schedules, evaluated per global step t (0-based, counted across the epochs of
one fit). fit() computes one epoch's rates as an array and hands it to the backend whole, so a
schedule costs nothing per step."""

from __future__ import annotations

import numpy as np


def warmup_rates(lr, warmup_steps, first_step, count):
    """Rates of steps first_step .. first_step + count - 1 for a constant lr after a linear
    warmup over warmup_steps: lr * (t + 1) / warmup_steps while t < warmup_steps."""
    t = np.arange(first_step, first_step + count, dtype=np.float64)
    rates = np.full(count, float(lr))
    if warmup_steps > 0:
        warming = t < warmup_steps
        rates[warming] = lr * (t[warming] + 1) / warmup_steps
    return rates
