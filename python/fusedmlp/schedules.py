"""Learning-rate schedules, evaluated per global step t (0-based, counted across the epochs of
one fit and continued by partial_fit, as DESIGN.md fixes).

fit() asks a schedule for one epoch's rates at a time, as a float64 array, and hands that array
to the backend whole, so a schedule costs nothing per step. Every schedule is an immutable value
object: compare them with ==, print them (the repr is the call that builds them), and give
them to fit(lr=...) or compose them with warmup().

Formulas, for a step t >= 0:

    constant(lr)                          lr
    step_decay(lr, step_size, gamma=0.1)  lr * gamma ** floor(t / step_size)
    exponential_decay(lr, gamma)          lr * gamma ** t
    cosine_decay(lr, total_steps, min_lr=0.0)
                                          min_lr + (lr - min_lr) * (1 + cos(pi * min(t, T) / T)) / 2
                                          with T = total_steps: from lr at t = 0 down to min_lr at
                                          t = T, then min_lr for every later step
    linear_decay(lr, total_steps, end_lr=0.0)
                                          lr + (end_lr - lr) * min(t, T) / T: from lr at t = 0 to
                                          end_lr at t = T, then end_lr for every later step
    warmup(schedule, steps)               s(0) * (t + 1) / steps   for t < steps
                                          s(t - steps)             for t >= steps
                                          where s is the wrapped schedule (a float means
                                          constant(float)). The wrapped schedule's own step count
                                          starts after the warmup (as PyTorch's SequentialLR and
                                          optax's join_schedules), so warmup(cosine_decay(lr, T), w)
                                          reaches min_lr at step w + T.

Any object with a method rates(first_step, count) returning `count` finite rates >= 0 can serve
as a schedule; subclass Schedule to get __call__ and composition for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_float, check_int

__all__ = ["Schedule", "Constant", "StepDecay", "ExponentialDecay", "CosineDecay", "LinearDecay", "Warmup",
           "constant", "step_decay", "exponential_decay", "cosine_decay", "linear_decay", "warmup",
           "as_schedule", "warmup_rates"]


class Schedule:
    """Base of the schedules: subclasses implement _rates(t) for a float64 array of steps."""

    def rates(self, first_step, count):
        """The learning rates of global steps first_step .. first_step + count - 1, as a float64
        array of length count."""
        first_step = check_int("first_step", first_step, 0)
        count = check_int("count", count, 0)
        steps = np.arange(first_step, first_step + count, dtype=np.int64)
        with np.errstate(over="ignore"):  # a growing exponential may overflow; fit reports it
            return np.asarray(self._rates(steps), dtype=np.float64)

    def __call__(self, step):
        """The learning rate of one global step."""
        return float(self.rates(step, 1)[0])

    def _rates(self, steps):
        raise NotImplementedError


def _lr(arg, value):
    return check_float(arg, value, 0.0)


@dataclass(frozen=True, repr=False)
class Constant(Schedule):
    lr: float

    def __post_init__(self):
        object.__setattr__(self, "lr", _lr("lr", self.lr))

    def _rates(self, steps):
        return np.full(steps.shape, self.lr)

    def __repr__(self):
        return f"constant(lr={self.lr!r})"


@dataclass(frozen=True, repr=False)
class StepDecay(Schedule):
    lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "lr", _lr("lr", self.lr))
        object.__setattr__(self, "step_size", check_int("step_size", self.step_size, 1))
        object.__setattr__(self, "gamma", _positive("gamma", self.gamma))

    def _rates(self, steps):
        return self.lr * np.power(self.gamma, (steps // self.step_size).astype(np.float64))

    def __repr__(self):
        return f"step_decay(lr={self.lr!r}, step_size={self.step_size!r}, gamma={self.gamma!r})"


@dataclass(frozen=True, repr=False)
class ExponentialDecay(Schedule):
    lr: float
    gamma: float

    def __post_init__(self):
        object.__setattr__(self, "lr", _lr("lr", self.lr))
        object.__setattr__(self, "gamma", _positive("gamma", self.gamma))

    def _rates(self, steps):
        return self.lr * np.power(self.gamma, steps.astype(np.float64))

    def __repr__(self):
        return f"exponential_decay(lr={self.lr!r}, gamma={self.gamma!r})"


@dataclass(frozen=True, repr=False)
class CosineDecay(Schedule):
    lr: float
    total_steps: int
    min_lr: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "lr", _lr("lr", self.lr))
        object.__setattr__(self, "total_steps", check_int("total_steps", self.total_steps, 1))
        object.__setattr__(self, "min_lr", _lr("min_lr", self.min_lr))
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr: expected at most lr={self.lr!r} (a decay); got {self.min_lr!r}")

    def _rates(self, steps):
        progress = np.minimum(steps, self.total_steps) / self.total_steps
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + np.cos(np.pi * progress)) / 2.0

    def __repr__(self):
        return f"cosine_decay(lr={self.lr!r}, total_steps={self.total_steps!r}, min_lr={self.min_lr!r})"


@dataclass(frozen=True, repr=False)
class LinearDecay(Schedule):
    lr: float
    total_steps: int
    end_lr: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "lr", _lr("lr", self.lr))
        object.__setattr__(self, "total_steps", check_int("total_steps", self.total_steps, 1))
        object.__setattr__(self, "end_lr", _lr("end_lr", self.end_lr))
        if self.end_lr > self.lr:
            raise ValueError(f"end_lr: expected at most lr={self.lr!r} (a decay); got {self.end_lr!r}")

    def _rates(self, steps):
        progress = np.minimum(steps, self.total_steps) / self.total_steps
        return self.lr + (self.end_lr - self.lr) * progress

    def __repr__(self):
        return f"linear_decay(lr={self.lr!r}, total_steps={self.total_steps!r}, end_lr={self.end_lr!r})"


@dataclass(frozen=True, repr=False)
class Warmup(Schedule):
    schedule: object
    steps: int

    def __post_init__(self):
        object.__setattr__(self, "schedule", as_schedule(self.schedule, arg="schedule"))
        object.__setattr__(self, "steps", check_int("steps", self.steps, 0))

    def rates(self, first_step, count):
        first_step = check_int("first_step", first_step, 0)
        count = check_int("count", count, 0)
        # The wrapped schedule may be any object with rates(), so ask it only through rates().
        rates = np.empty(count, dtype=np.float64)
        warming = max(0, min(self.steps - first_step, count))  # how many of the steps warm up
        if warming:
            t = np.arange(first_step, first_step + warming, dtype=np.float64)
            rates[:warming] = _checked_rates(self.schedule, 0, 1, "schedule")[0] * (t + 1.0) / self.steps
        if count > warming:
            rates[warming:] = _checked_rates(self.schedule, first_step + warming - self.steps, count - warming,
                                             "schedule")
        return rates

    def __repr__(self):
        return f"warmup({self.schedule!r}, steps={self.steps!r})"


def _positive(arg, value):
    number = check_float(arg, value, 0.0)
    if number == 0:
        raise ValueError(f"{arg}: expected a finite number > 0; got {number!r}")
    return number


def _checked_rates(schedule, first_step, count, arg):
    """schedule.rates(first_step, count), checked: count finite rates >= 0."""
    rates = np.asarray(schedule.rates(first_step, count))
    if rates.shape != (count,) or rates.dtype.kind not in "biuf":
        raise ValueError(f"{arg}: {schedule!r}.rates({first_step}, {count}) should return {count} real numbers; "
                         f"got an array of dtype {rates.dtype} and shape {rates.shape}")
    rates = rates.astype(np.float64, copy=False)
    bad = ~np.isfinite(rates) | (rates < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{arg}: {schedule!r} gives learning rate {float(rates[i])!r} at step {first_step + i}; "
                         "expected finite rates >= 0")
    return rates


# --- the public constructors (what the module's docstring documents) ---------------------------

def constant(lr):
    """lr at every step."""
    return Constant(lr)


def step_decay(lr, step_size, gamma=0.1):
    """lr * gamma ** floor(t / step_size): multiplied by gamma every step_size steps."""
    return StepDecay(lr, step_size, gamma)


def exponential_decay(lr, gamma):
    """lr * gamma ** t: multiplied by gamma every step (gamma > 1 grows, e.g. for an lr range test)."""
    return ExponentialDecay(lr, gamma)


def cosine_decay(lr, total_steps, min_lr=0.0):
    """Half a cosine from lr (t = 0) to min_lr (t = total_steps), then min_lr."""
    return CosineDecay(lr, total_steps, min_lr)


def linear_decay(lr, total_steps, end_lr=0.0):
    """A straight line from lr (t = 0) to end_lr (t = total_steps), then end_lr."""
    return LinearDecay(lr, total_steps, end_lr)


def warmup(schedule, steps):
    """A linear warmup over `steps` steps up to the first rate of schedule (a schedule or a
    float), then schedule, its step count starting after the warmup. steps=0: schedule alone."""
    return Warmup(schedule, steps)


def as_schedule(lr, arg="lr"):
    """lr as a schedule: a number becomes constant(lr); a schedule (anything with a rates
    method) is returned as it is."""
    if callable(getattr(lr, "rates", None)):
        return lr
    try:
        return Constant(check_float(arg, lr, 0.0))
    except TypeError as error:
        raise TypeError(f"{error}; or a schedule from fusedmlp.schedules") from None


def schedule_rates(schedule, first_step, count, arg="lr"):
    """The checked rates fit() hands to a backend: `count` finite float64 rates >= 0."""
    return _checked_rates(schedule, first_step, count, arg)


def warmup_rates(lr, warmup_steps, first_step, count):
    """Rates of steps first_step .. first_step + count - 1 for a constant lr after a linear
    warmup over warmup_steps: lr * (t + 1) / warmup_steps while t < warmup_steps."""
    return warmup(lr, warmup_steps).rates(first_step, count)

