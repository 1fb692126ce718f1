"""Bad input gets a clear error and leaves the model as it was.

One table drives the test: each row is (description, model kind, call, exception type, regex).
Every call must raise exactly that exception type (ValueError or TypeError) with a message that
matches the regex (which names the argument, what was expected and what was given), emit no
warning, and leave the model unchanged: the same parameters, the same random generator state,
and the same result from the next fit as an untouched twin.

The second half checks the other side: array layouts and dtypes that must be accepted give
exactly the result of the contiguous float array.
"""

import re
import warnings
from fractions import Fraction

import numpy as np
import pytest

import fusedmlp as fm
from fusedmlp import MLP

BACKENDS = ("numpy", "cpu")

N, D = 10, 4
_rng = np.random.default_rng(1234)
X = _rng.normal(size=(N, D))
Y = {
    "ce": np.arange(N) % 3,
    "mse": _rng.normal(size=(N, 2)),
    "mse1": _rng.normal(size=N),
    "bce": (_rng.random((N, 2)) > 0.5).astype(np.float64),
}
KINDS = {
    "ce": dict(layer_sizes=[D, 5, 3], activation="tanh", loss="cross_entropy"),
    "mse": dict(layer_sizes=[D, 5, 2], activation="relu", loss="mse"),
    "mse1": dict(layer_sizes=[D, 5, 1], activation="relu", loss="mse"),
    "bce": dict(layer_sizes=[D, 5, 2], activation="sigmoid", loss="bce"),
}


def make(kind, backend, dtype="float32", seed=7, started=False):
    """A model of the kind; started: with momentum buffers and a step counter already in use, so
    that a bad call that touched the optimizer state would show."""
    spec = KINDS[kind]
    net = MLP(spec["layer_sizes"], activation=spec["activation"], loss=spec["loss"], backend=backend,
              dtype=dtype, seed=seed)
    if started:
        net.fit(X, Y[kind], epochs=1, batch_size=4, lr=0.05, momentum=0.9, seed=1)
    return net


def snapshot(net):
    w_momentum, b_momentum, optimizer_started = net._backend.get_optimizer_state()
    return (net.weights, net.biases, net._rng.bit_generator.state,
            (w_momentum + b_momentum, optimizer_started, getattr(net, "_global_step", 0)))


def assert_same_snapshot(a, b):
    (wa, ba, ra, oa), (wb, bb, rb, ob) = a, b
    assert len(wa) == len(wb) and len(ba) == len(bb)
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb)), "weights changed"
    assert all(np.array_equal(x, y) for x, y in zip(ba, bb)), "biases changed"
    assert ra == rb, "random generator state changed"
    assert oa[1:] == ob[1:], "optimizer started flag or step counter changed"
    assert all(x.tobytes() == y.tobytes() for x, y in zip(oa[0], ob[0])), "momentum buffers changed"


def valid_fit(net, kind):
    """A fit that draws from the model's generator (shuffle) and uses momentum."""
    return net.fit(X, Y[kind], epochs=2, batch_size=3, lr=0.05, momentum=0.9)


def alphabet(names):
    """A regex that matches a message listing every one of names, comma separated."""
    return re.escape(", ".join(names))


# --- the table -----------------------------------------------------------------------------

CASES = []  # (description, kind, call(net, backend), exception type, regex)


def case(description, kind, call, error, regex):
    CASES.append(pytest.param(kind, call, error, regex, id=description))


def _with(array, index, value):
    array = np.array(array, dtype=np.float64)
    array[index] = value
    return array


# Bad X for every entry point that takes X; the y that goes with it is valid.
X_ENTRY_POINTS = {
    "fit": lambda net, kind, x: net.fit(x, Y[kind], epochs=1, batch_size=4),
    "loss_and_grad": lambda net, kind, x: net.loss_and_grad(x, Y[kind]),
    "forward": lambda net, kind, x: net.forward(x),
    "decision_function": lambda net, kind, x: net.decision_function(x),
    "predict": lambda net, kind, x: net.predict(x),
    "predict_proba": lambda net, kind, x: net.predict_proba(x),
    "score": lambda net, kind, x: net.score(x, Y[kind]),
}

_ragged = [list(row) for row in X]
_ragged[3] = _ragged[3][:2]
_with_none = [list(row) for row in X]
_with_none[2][1] = None

BAD_X = [
    ("1-D", X[0], ValueError, r"^X: expected a 2-D array of shape \(n_samples, 4\); got shape \(4,\)"),
    ("3-D", X[None], ValueError, r"^X: expected a 2-D array .*; got shape \(1, 10, 4\)"),
    ("scalar", 3.0, ValueError, r"^X: expected a 2-D array .*; got shape \(\)"),
    ("3 features", X[:, :3], ValueError, r"^X: expected 4 features \(columns\); got shape \(10, 3\)"),
    ("5 features", np.hstack([X, X[:, :1]]), ValueError, r"^X: expected 4 features \(columns\); got shape \(10, 5\)"),
    ("empty", np.empty((0, D)), ValueError, r"^X: expected at least one sample; got shape \(0, 4\)"),
    ("strings", X.astype(str), TypeError, r"^X: expected an array of real numbers; got dtype <U"),
    ("bytes", X.astype("S8"), TypeError, r"^X: expected an array of real numbers; got dtype \|S8"),
    ("objects", X.astype(object), TypeError, r"^X: expected an array of real numbers; got dtype object"),
    ("None in list", _with_none, TypeError, r"^X: expected an array of real numbers; got dtype object"),
    ("datetime", np.zeros((N, D), "datetime64[s]"), TypeError, r"^X: expected an array of real numbers; got dtype datetime64"),
    ("complex", X + 1j, TypeError, r"^X: expected real numbers; got complex dtype complex128"),
    ("complex64", (X + 0j).astype(np.complex64), TypeError, r"^X: expected real numbers; got complex dtype complex64"),
    ("ragged list", _ragged, ValueError, r"^X: expected a rectangular array of numbers; got \[\["),
    ("NaN", _with(X, (2, 1), np.nan), ValueError, r"^X: expected finite values .*; got nan at index \(2, 1\)"),
    ("+inf", _with(X, (0, 3), np.inf), ValueError, r"^X: expected finite values .*; got inf at index \(0, 3\)"),
    ("-inf", _with(X, (9, 0), -np.inf), ValueError, r"^X: expected finite values .*; got -inf at index \(9, 0\)"),
    ("float64 overflowing float32", _with(X, (4, 2), 1e300), ValueError,
     r"^X: expected finite values that fit in float32 .*; got 1e\+300 at index \(4, 2\), which overflows"),
]
for x_name, x_value, x_error, x_regex in BAD_X:
    for entry, call in X_ENTRY_POINTS.items():
        for kind in ("ce", "mse") if entry != "predict_proba" else ("ce", "bce"):
            case(f"X {x_name} -> {entry} ({kind})", kind,
                 lambda net, backend, call=call, kind=kind, x=x_value: call(net, kind, x), x_error, x_regex)

# Bad y for every entry point that takes y; X is valid.
Y_ENTRY_POINTS = {
    "fit": lambda net, y: net.fit(X, y, epochs=1, batch_size=4),
    "loss_and_grad": lambda net, y: net.loss_and_grad(X, y),
    "score": lambda net, y: net.score(X, y),
}
BAD_Y = [
    ("ce", "too short", Y["ce"][:-1], ValueError, r"^y: expected 10 targets, one per sample of X; got shape \(9,\)"),
    ("ce", "too long", np.append(Y["ce"], 0), ValueError, r"^y: expected 10 targets, .*; got shape \(11,\)"),
    ("ce", "scalar", 1, ValueError, r"^y: expected 10 targets, .*; got shape \(\)"),
    ("ce", "empty", [], ValueError, r"^y: expected 10 targets, .*; got shape \(0,\)"),
    ("ce", "column", Y["ce"][:, None], ValueError, r"^y: expected class indices of shape \(10,\); got shape \(10, 1\)"),
    ("ce", "label = k", _with(Y["ce"], 5, 3).astype(int), ValueError,
     r"^y: expected class indices in \[0, 3\); got values from 0 to 3"),
    ("ce", "label -1", _with(Y["ce"], 5, -1).astype(int), ValueError,
     r"^y: expected class indices in \[0, 3\); got values from -1 to 2"),
    ("ce", "label 1e20", _with(Y["ce"], 5, 1e20), ValueError, r"^y: expected class indices in \[0, 3\); got values from 0"),
    ("ce", "label 0.5", _with(Y["ce"], 4, 0.5), ValueError,
     r"^y: expected integer class indices; got non-integer value 0.5 at index 4"),
    ("ce", "label NaN", _with(Y["ce"], 6, np.nan), ValueError, r"^y: expected finite values .*; got nan at index 6"),
    ("ce", "label inf", _with(Y["ce"], 6, np.inf), ValueError, r"^y: expected finite values .*; got inf at index 6"),
    ("ce", "label strings", Y["ce"].astype(str), TypeError, r"^y: expected an array of real numbers; got dtype <U"),
    ("ce", "None in list", [0, 1, None, 2, 0, 1, 2, 0, 1, 2], TypeError,
     r"^y: expected an array of real numbers; got dtype object"),
    ("ce", "complex", Y["ce"] + 0j, TypeError, r"^y: expected real numbers; got complex dtype complex128"),
    ("mse", "3 columns", np.hstack([Y["mse"], Y["mse"][:, :1]]), ValueError,
     r"^y: expected shape \(10, 2\) for 2 outputs; got shape \(10, 3\)"),
    ("mse", "1-D for 2 outputs", Y["mse"][:, 0], ValueError,
     r"^y: expected shape \(10, 2\) for 2 outputs; got shape \(10,\)"),
    ("mse", "3-D", Y["mse"][:, :, None], ValueError, r"^y: expected shape \(10, 2\) for 2 outputs; got shape \(10, 2, 1\)"),
    ("mse", "too short", Y["mse"][:-2], ValueError, r"^y: expected 10 targets, one per sample of X; got shape \(8, 2\)"),
    ("mse", "NaN", _with(Y["mse"], (3, 1), np.nan), ValueError, r"^y: expected finite values .*; got nan at index \(3, 1\)"),
    ("mse", "-inf", _with(Y["mse"], (0, 0), -np.inf), ValueError, r"^y: expected finite values .*; got -inf at index \(0, 0\)"),
    ("mse", "float64 overflowing float32", _with(Y["mse"], (7, 1), -1e39), ValueError,
     r"^y: expected finite values that fit in float32 .*; got -1e\+39 at index \(7, 1\), which overflows"),
    ("mse", "ragged", [[1.0, 2.0]] * 9 + [[1.0]], ValueError, r"^y: expected a rectangular array of numbers"),
    ("mse", "objects", Y["mse"].astype(object), TypeError, r"^y: expected an array of real numbers; got dtype object"),
    ("mse1", "2 columns", Y["mse"], ValueError, r"^y: expected shape \(10,\) or \(10, 1\) for 1 outputs; got shape \(10, 2\)"),
    ("bce", "target 1.5", _with(Y["bce"], (2, 0), 1.5), ValueError,
     r"^y: expected bce targets in \[0, 1\]; got values from 0.0 to 1.5"),
    ("bce", "target -0.25", _with(Y["bce"], (2, 0), -0.25), ValueError,
     r"^y: expected bce targets in \[0, 1\]; got values from -0.25 to 1.0"),
    ("bce", "target 2 (int)", _with(Y["bce"], (2, 0), 2).astype(int), ValueError,
     r"^y: expected bce targets in \[0, 1\]; got values from 0.0 to 2.0"),
    ("bce", "NaN", _with(Y["bce"], (1, 1), np.nan), ValueError, r"^y: expected finite values .*; got nan at index \(1, 1\)"),
]
for y_kind, y_name, y_value, y_error, y_regex in BAD_Y:
    for entry, call in Y_ENTRY_POINTS.items():
        case(f"y {y_kind} {y_name} -> {entry}", y_kind, lambda net, backend, call=call, y=y_value: call(net, y),
             y_error, y_regex)

# Bad arguments of fit (X and y valid).
FIT_ARGS = [
    ("batch_size", 0, ValueError, r"^batch_size: expected an integer >= 1; got 0"),
    ("batch_size", -3, ValueError, r"^batch_size: expected an integer >= 1; got -3"),
    ("batch_size", 2**70, ValueError, r"^batch_size: expected an integer >= 1 and <= \d+; got 1180591620717411303424"),
    ("batch_size", 4.0, TypeError, r"^batch_size: expected an integer >= 1; got 4.0 \(float\)"),
    ("batch_size", np.float64(4), TypeError, r"^batch_size: expected an integer >= 1; got .*4.0.* \(float64\)"),
    ("batch_size", True, TypeError, r"^batch_size: expected an integer >= 1; got True \(bool\)"),
    ("batch_size", "4", TypeError, r"^batch_size: expected an integer >= 1; got '4' \(str\)"),
    ("batch_size", None, TypeError, r"^batch_size: expected an integer >= 1; got None \(NoneType\)"),
    ("epochs", -1, ValueError, r"^epochs: expected an integer >= 0; got -1"),
    ("epochs", 2.5, TypeError, r"^epochs: expected an integer >= 0; got 2.5 \(float\)"),
    ("epochs", False, TypeError, r"^epochs: expected an integer >= 0; got False \(bool\)"),
    ("epochs", "3", TypeError, r"^epochs: expected an integer >= 0; got '3' \(str\)"),
    ("lr", -0.1, ValueError, r"^lr: expected a finite number >= 0.0; got -0.1"),
    ("lr", float("nan"), ValueError, r"^lr: expected a finite number >= 0.0; got nan"),
    ("lr", float("inf"), ValueError, r"^lr: expected a finite number >= 0.0; got inf"),
    ("lr", -float("inf"), ValueError, r"^lr: expected a finite number >= 0.0; got -inf"),
    ("lr", np.float32("nan"), ValueError, r"^lr: expected a finite number >= 0.0; got nan"),
    ("lr", 10**400, ValueError, r"^lr: expected a finite number >= 0.0; got 1000"),
    ("lr", Fraction(-1, 3), ValueError, r"^lr: expected a finite number >= 0.0; got -0.333"),
    ("lr", "0.1", TypeError, r"^lr: expected a finite number >= 0.0; got '0.1' \(str\)"),
    ("lr", None, TypeError, r"^lr: expected a finite number >= 0.0; got None"),
    ("lr", True, TypeError, r"^lr: expected a finite number >= 0.0; got True \(bool\)"),
    ("lr", 0.1 + 0j, TypeError, r"^lr: expected a finite number >= 0.0; got \(0.1\+0j\) \(complex\)"),
    ("momentum", -0.1, ValueError, r"^momentum: expected a finite number in \[0.0, 1.0\); got -0.1"),
    ("momentum", 1.0, ValueError, r"^momentum: expected a finite number in \[0.0, 1.0\); got 1.0"),
    ("momentum", 1.5, ValueError, r"^momentum: expected a finite number in \[0.0, 1.0\); got 1.5"),
    ("momentum", float("nan"), ValueError, r"^momentum: expected a finite number in \[0.0, 1.0\); got nan"),
    ("momentum", "0.9", TypeError, r"^momentum: expected a finite number in \[0.0, 1.0\); got '0.9' \(str\)"),
    ("weight_decay", -1e-4, ValueError, r"^weight_decay: expected a finite number >= 0.0; got -0.0001"),
    ("weight_decay", float("inf"), ValueError, r"^weight_decay: expected a finite number >= 0.0; got inf"),
    ("weight_decay", float("nan"), ValueError, r"^weight_decay: expected a finite number >= 0.0; got nan"),
    ("warmup_steps", -1, ValueError, r"^warmup_steps: expected an integer >= 0; got -1"),
    ("warmup_steps", 10.0, TypeError, r"^warmup_steps: expected an integer >= 0; got 10.0 \(float\)"),
    ("warmup_steps", True, TypeError, r"^warmup_steps: expected an integer >= 0; got True \(bool\)"),
    ("nesterov", "yes", TypeError, r"^nesterov: expected True or False; got 'yes' \(str\)"),
    ("nesterov", 1, TypeError, r"^nesterov: expected True or False; got 1 \(int\)"),
    ("shuffle", "no", TypeError, r"^shuffle: expected True or False; got 'no' \(str\)"),
    ("shuffle", None, TypeError, r"^shuffle: expected True or False; got None"),
    ("drop_last", 1, TypeError, r"^drop_last: expected True or False; got 1 \(int\)"),
    ("seed", -1, ValueError, r"^seed: expected an integer >= 0; got -1"),
    ("seed", 1.0, TypeError, r"^seed: expected an integer >= 0; got 1.0 \(float\)"),
    ("seed", "1", TypeError, r"^seed: expected an integer >= 0; got '1' \(str\)"),
    ("seed", True, TypeError, r"^seed: expected an integer >= 0; got True \(bool\)"),
]
for arg, value, error, regex in FIT_ARGS:
    case(f"fit {arg}={value!r}", "ce",
         lambda net, backend, arg=arg, value=value: net.fit(X, Y["ce"], **dict({"epochs": 1}, **{arg: value})),
         error, regex)
case("fit nesterov without momentum", "ce", lambda net, backend: net.fit(X, Y["ce"], nesterov=True, momentum=0.0),
     ValueError, r"^nesterov: Nesterov momentum needs momentum > 0; got momentum=0.0")
case("fit nesterov with default momentum", "ce", lambda net, backend: net.fit(X, Y["ce"], nesterov=True),
     ValueError, r"^nesterov: .*momentum > 0")
case("fit drop_last with batch_size > n", "ce",
     lambda net, backend: net.fit(X, Y["ce"], batch_size=N + 1, drop_last=True), ValueError,
     r"^batch_size: with drop_last=True, expected at most the 10 samples of X; got 11")
case("fit drop_last with batch_size > n (mse)", "mse",
     lambda net, backend: net.fit(X[:3], Y["mse"][:3], batch_size=4, drop_last=True), ValueError,
     r"^batch_size: with drop_last=True, expected at most the 3 samples of X; got 4")
case("fit bad lr after valid X and y, bad y after valid lr", "ce",
     lambda net, backend: net.fit(X, Y["ce"] + 5, lr=0.1, momentum=0.5), ValueError,
     r"^y: expected class indices in \[0, 3\); got values from 5 to 7")

case("predict_proba on an mse model", "mse", lambda net, backend: net.predict_proba(X), ValueError,
     r"^predict_proba: .*'bce' or 'cross_entropy'.*'mse'")
case("predict_proba on an mse model with bad X", "mse1", lambda net, backend: net.predict_proba(X[0]), ValueError,
     r"predict_proba|^X:")

# partial_fit takes fit's common arguments: every bad one is refused the same way, and its
# continued optimizer state and step counter stay as they were.
PARTIAL_FIT_ARGS = [row for row in FIT_ARGS if row[0] != "epochs" or row[1] != -1] + [("epochs", -1, ValueError,
                                                                                       r"^epochs: expected an integer >= 0; got -1")]
for arg, value, error, regex in PARTIAL_FIT_ARGS:
    case(f"partial_fit {arg}={value!r}", "ce",
         lambda net, backend, arg=arg, value=value: net.partial_fit(X, Y["ce"], **{arg: value}), error, regex)
for x_name, x_value, x_error, x_regex in BAD_X:
    case(f"X {x_name} -> partial_fit (ce)", "ce", lambda net, backend, x=x_value: net.partial_fit(x, Y["ce"]),
         x_error, x_regex)
for y_kind, y_name, y_value, y_error, y_regex in BAD_Y:
    case(f"y {y_kind} {y_name} -> partial_fit", y_kind, lambda net, backend, y=y_value: net.partial_fit(X, y),
         y_error, y_regex)


def _bad_schedule():
    from fusedmlp import schedules
    return schedules.warmup(0.1, 3)


# fit's and partial_fit's extras: validation, early stopping, callbacks, progress, divergence
# policy, and lr as a schedule.
FIT_EXTRA_ARGS = [
    ("validation_data", X, TypeError, r"^validation_data: expected a pair \(X, y\); got an array"),
    ("validation_data", (X, Y["ce"], Y["ce"]), ValueError, r"^validation_data: expected a pair \(X, y\); got a sequence of 3"),
    ("validation_data", (X[:, :3], Y["ce"]), ValueError, r"^validation_data\[0\]: expected 4 features \(columns\); got shape \(10, 3\)"),
    ("validation_data", (_with(X, (1, 1), np.nan), Y["ce"]), ValueError,
     r"^validation_data\[0\]: expected finite values .*; got nan at index \(1, 1\)"),
    ("validation_data", (X, Y["ce"] + 3), ValueError, r"^validation_data\[1\]: expected class indices in \[0, 3\); got values from 3 to 5"),
    ("validation_data", (X, Y["ce"][:-1]), ValueError, r"^validation_data\[1\]: expected 10 targets, one per sample of validation_data\[0\]; got shape \(9,\)"),
    ("callbacks", 3, TypeError, r"^callbacks: expected a callable or a sequence of callables; got 3 \(int\)"),
    ("callbacks", [print, "print"], TypeError, r"^callbacks\[1\]: expected a callable .*; got 'print' \(str\)"),
    ("progress", "yes", TypeError, r"^progress: expected True or False; got 'yes' \(str\)"),
    ("on_divergence", "ignore", ValueError, r"^on_divergence: expected one of raise, stop; got 'ignore'"),
    ("on_divergence", None, TypeError, r"^on_divergence: expected one of raise, stop; got None"),
    ("lr", object(), TypeError, r"^lr: expected a finite number >= 0.0; got <object .*; or a schedule from fusedmlp.schedules"),
    ("lr", [0.1, 0.2], TypeError, r"^lr: expected a finite number >= 0.0; got \[0.1, 0.2\] \(list\); or a schedule"),
    ("lr", lambda t: 0.1, TypeError, r"^lr: expected a finite number >= 0.0; got <function .*; or a schedule"),
]
FIT_ONLY_ARGS = [
    ("validation_fraction", 1.0, ValueError, r"^validation_fraction: expected a finite number in \[0.0, 1.0\); got 1.0"),
    ("validation_fraction", -0.1, ValueError, r"^validation_fraction: expected a finite number in \[0.0, 1.0\); got -0.1"),
    ("validation_fraction", float("nan"), ValueError, r"^validation_fraction: expected a finite number .*; got nan"),
    ("validation_fraction", "0.1", TypeError, r"^validation_fraction: expected a finite number .*; got '0.1' \(str\)"),
    ("validation_fraction", 0.95, ValueError, r"^validation_fraction: holding out 10 of the 10 samples of X leaves none"),
    ("early_stopping", 1, TypeError, r"^early_stopping: expected True or False; got 1 \(int\)"),
    ("patience", 0, ValueError, r"^patience: expected an integer >= 1; got 0"),
    ("patience", 1.5, TypeError, r"^patience: expected an integer >= 1; got 1.5 \(float\)"),
    ("min_delta", -1, ValueError, r"^min_delta: expected a finite number >= 0.0; got -1.0"),
    ("min_delta", float("inf"), ValueError, r"^min_delta: expected a finite number >= 0.0; got inf"),
    ("restore_best_weights", None, TypeError, r"^restore_best_weights: expected True or False; got None"),
]
def _short(value):
    """A readable test id for a value: arrays by their shape, containers item by item."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return repr(value)[:40]


for arg, value, error, regex in FIT_EXTRA_ARGS + FIT_ONLY_ARGS:
    case(f"fit {arg}={_short(value)}", "ce",
         lambda net, backend, arg=arg, value=value: net.fit(X, Y["ce"], epochs=1, **{arg: value}), error, regex)
for arg, value, error, regex in FIT_EXTRA_ARGS:
    case(f"partial_fit {arg}={_short(value)}", "ce",
         lambda net, backend, arg=arg, value=value: net.partial_fit(X, Y["ce"], **{arg: value}), error, regex)
case("fit validation_data and validation_fraction", "ce",
     lambda net, backend: net.fit(X, Y["ce"], validation_data=(X, Y["ce"]), validation_fraction=0.2), ValueError,
     r"^validation_fraction: give validation_data or validation_fraction, not both")
case("partial_fit validation_fraction (fit only)", "ce",
     lambda net, backend: net.partial_fit(X, Y["ce"], validation_fraction=0.2), TypeError,
     r"^MLP\.partial_fit\(\) got an unexpected keyword argument 'validation_fraction'")


# Schedules: constructors and rates(); a bad schedule never reaches a model.
def _schedule_call(make_schedule):
    def call(net, backend):
        from fusedmlp import schedules
        return make_schedule(schedules)
    return call


SCHEDULE_ARGS = [
    ("constant(-1)", lambda S: S.constant(-1), ValueError, r"^lr: expected a finite number >= 0.0; got -1.0"),
    ("constant(nan)", lambda S: S.constant(float("nan")), ValueError, r"^lr: expected a finite number >= 0.0; got nan"),
    ("constant('0.1')", lambda S: S.constant("0.1"), TypeError, r"^lr: expected a finite number >= 0.0; got '0.1'"),
    ("step_decay step_size 0", lambda S: S.step_decay(0.1, 0), ValueError, r"^step_size: expected an integer >= 1; got 0"),
    ("step_decay step_size 2.0", lambda S: S.step_decay(0.1, 2.0), TypeError, r"^step_size: expected an integer >= 1; got 2.0"),
    ("step_decay gamma -1", lambda S: S.step_decay(0.1, 10, gamma=-1), ValueError,
     r"^gamma: expected a finite number >= 0.0; got -1.0"),
    ("exponential_decay gamma 0", lambda S: S.exponential_decay(0.1, 0), ValueError, r"^gamma: expected a finite number > 0; got 0.0"),
    ("exponential_decay gamma inf", lambda S: S.exponential_decay(0.1, float("inf")), ValueError, r"^gamma: expected a finite number .*; got inf"),
    ("cosine_decay total 0", lambda S: S.cosine_decay(0.1, 0), ValueError, r"^total_steps: expected an integer >= 1; got 0"),
    ("cosine_decay total 10.0", lambda S: S.cosine_decay(0.1, 10.0), TypeError, r"^total_steps: expected an integer >= 1; got 10.0"),
    ("cosine_decay min_lr > lr", lambda S: S.cosine_decay(0.1, 10, min_lr=1.0), ValueError,
     r"^min_lr: expected at most lr=0.1 \(a decay\); got 1.0"),
    ("linear_decay end_lr -1", lambda S: S.linear_decay(0.1, 10, end_lr=-1), ValueError,
     r"^end_lr: expected a finite number >= 0.0; got -1.0"),
    ("warmup steps -1", lambda S: S.warmup(0.1, -1), ValueError, r"^steps: expected an integer >= 0; got -1"),
    ("warmup of a str", lambda S: S.warmup("a", 3), TypeError, r"^schedule: expected a finite number >= 0.0; got 'a'"),
    ("rates first_step -1", lambda S: S.constant(0.1).rates(-1, 3), ValueError, r"^first_step: expected an integer >= 0; got -1"),
    ("rates count -1", lambda S: S.constant(0.1).rates(0, -1), ValueError, r"^count: expected an integer >= 0; got -1"),
    ("rates first_step 2**70", lambda S: S.cosine_decay(0.1, 10).rates(2**70, 3), ValueError,
     r"^first_step: expected an integer >= 0 and <= \d+; got 1180591620717411303424"),
]
for description, make_schedule, error, regex in SCHEDULE_ARGS:
    case(f"schedules.{description}", "ce", _schedule_call(make_schedule), error, regex)


# Files: bad arguments of save and load.
def _save(**kwargs):
    def call(net, backend):
        from fusedmlp import io
        arguments = dict(kwargs)
        return io.save(net, arguments.pop("path", "never-written.npz"), **arguments)
    return call


case("save include_optimizer='yes'", "ce", _save(include_optimizer="yes"), TypeError,
     r"^include_optimizer: expected True or False; got 'yes' \(str\)")
case("save include_optimizer=1", "ce", _save(include_optimizer=1), TypeError,
     r"^include_optimizer: expected True or False; got 1 \(int\)")
case("save path None", "ce", _save(path=None), TypeError, r"^path: expected a str, bytes or os.PathLike file name; got None")
case("save path 3.5", "ce", _save(path=3.5), TypeError, r"^path: expected a str, bytes or os.PathLike file name; got 3.5")
case("load path None", "ce", lambda net, backend: fm.load(None), TypeError,
     r"^path: expected a str, bytes or os.PathLike file name; got None")
case("load path [1]", "ce", lambda net, backend: fm.load([1]), TypeError,
     r"^path: expected a str, bytes or os.PathLike file name; got \[1\] \(list\)")
case("load backend 'gpu'", "ce", lambda net, backend: fm.load("unused.npz", backend="gpu"), ValueError,
     r"^backend: expected one of .*; got 'gpu'")


# Bundled data: the split's arguments.
def _split(**kwargs):
    def call(net, backend):
        from fusedmlp.datasets import train_test_split
        arguments = dict(X=X, y=Y["ce"])
        arguments.update(kwargs)
        return train_test_split(arguments.pop("X"), arguments.pop("y"), **arguments)
    return call


SPLIT_ARGS = [
    ("test_fraction 0", dict(test_fraction=0), ValueError, r"^test_fraction: expected a number in \(0, 1\); got 0"),
    ("test_fraction 1", dict(test_fraction=1.0), ValueError, r"^test_fraction: expected a number in \(0, 1\); got 1.0"),
    ("test_fraction nan", dict(test_fraction=float("nan")), ValueError, r"^test_fraction: expected a number in \(0, 1\); got nan"),
    ("test_fraction '0.2'", dict(test_fraction="0.2"), TypeError, r"^test_fraction: expected a number in \(0, 1\); got '0.2'"),
    ("test_fraction too small", dict(test_fraction=0.01), ValueError, r"^test_fraction: 0.01 of 10 samples leaves an empty"),
    ("seed -1", dict(seed=-1), ValueError, r"^seed: expected an integer >= 0; got -1"),
    ("y 2-D", dict(y=Y["mse"]), ValueError, r"^y: expected a 1-D array of class labels .*; got X of shape \(10, 4\) and y of shape \(10, 2\)"),
    ("X and y lengths", dict(y=Y["ce"][:-1]), ValueError, r"^X, y: expected the same number of samples; got 10 and 9"),
]
for description, kwargs, error, regex in SPLIT_ARGS:
    case(f"train_test_split {description}", "ce", _split(**kwargs), error, regex)


# Bad constructor arguments; the table's model is only there to check nothing touched it.
VALID = dict(layer_sizes=[D, 3, 2], activation="relu", loss="cross_entropy", dtype="float32", init="auto", seed=0)


def construct(backend, changes):
    kwargs = dict(VALID, backend=backend)
    kwargs.update(changes)
    return MLP(kwargs.pop("layer_sizes"), **kwargs)


CONSTRUCTOR_ARGS = [
    ("activation", "relux", ValueError, rf"^activation: expected one of {alphabet(fm.ACTIVATIONS)}; got 'relux'"),
    ("activation", "ReLU", ValueError, rf"^activation: expected one of {alphabet(fm.ACTIVATIONS)}; got 'ReLU'"),
    ("activation", None, TypeError, rf"^activation: expected one of {alphabet(fm.ACTIVATIONS)}; got None"),
    ("activation", np.tanh, TypeError, rf"^activation: expected one of {alphabet(fm.ACTIVATIONS)}; got <ufunc"),
    ("loss", "hinge", ValueError, rf"^loss: expected one of {alphabet(fm.LOSSES)}; got 'hinge'"),
    ("loss", "crossentropy", ValueError, rf"^loss: expected one of {alphabet(fm.LOSSES)}; got 'crossentropy'"),
    ("loss", 3, TypeError, rf"^loss: expected one of {alphabet(fm.LOSSES)}; got 3 \(int\)"),
    ("backend", "tpu", ValueError, rf"^backend: expected one of {alphabet(fm.BACKENDS)}; got 'tpu'"),
    ("backend", "CPU", ValueError, rf"^backend: expected one of {alphabet(fm.BACKENDS)}; got 'CPU'"),
    ("backend", None, TypeError, rf"^backend: expected one of {alphabet(fm.BACKENDS)}; got None"),
    ("dtype", "float16", ValueError, r"^dtype: expected one of float32, float64; got float16"),
    ("dtype", "int32", ValueError, r"^dtype: expected one of float32, float64; got int32"),
    ("dtype", np.int64, ValueError, r"^dtype: expected one of float32, float64; got int64"),
    ("dtype", "complex128", ValueError, r"^dtype: expected one of float32, float64; got complex128"),
    ("dtype", "fp32", ValueError, r"^dtype: expected one of float32, float64; got 'fp32'"),
    ("dtype", None, TypeError, r"^dtype: expected one of float32, float64; got None"),
    ("dtype", 32, TypeError, r"^dtype: expected one of float32, float64; got 32 \(int\)"),
    ("init", "xavier", ValueError, r"^init: expected one of auto, he_uniform, glorot_uniform; got 'xavier'"),
    ("seed", -1, ValueError, r"^seed: expected an integer >= 0; got -1"),
    ("seed", 0.5, TypeError, r"^seed: expected an integer >= 0; got 0.5 \(float\)"),
    ("seed", "7", TypeError, r"^seed: expected an integer >= 0; got '7' \(str\)"),
    ("seed", False, TypeError, r"^seed: expected an integer >= 0; got False \(bool\)"),
    ("seed", np.float64(3), TypeError, r"^seed: expected an integer >= 0; got .*3.0.* \(float64\)"),
    ("layer_sizes", [D, 0, 2], ValueError, r"^layer_sizes\[1\]: expected an integer >= 1; got 0"),
    ("layer_sizes", [D, 3, -2], ValueError, r"^layer_sizes\[2\]: expected an integer >= 1; got -2"),
    ("layer_sizes", [0, 3], ValueError, r"^layer_sizes\[0\]: expected an integer >= 1; got 0"),
    ("layer_sizes", [D], ValueError, r"^layer_sizes: expected a sequence of at least two integers >= 1 .*; got \[4\]"),
    ("layer_sizes", [], ValueError, r"^layer_sizes: expected a sequence of at least two integers >= 1 .*; got \[\]"),
    ("layer_sizes", D, TypeError, r"^layer_sizes: expected a sequence of at least two integers .*; got 4 \(int\)"),
    ("layer_sizes", None, TypeError, r"^layer_sizes: expected a sequence .*; got None"),
    ("layer_sizes", "4,3", TypeError, r"^layer_sizes: expected a sequence .*; got '4,3' \(str\)"),
    ("layer_sizes", {D, 3}, TypeError, r"^layer_sizes: expected a sequence .*; got \{.*\} \(set\)"),
    ("layer_sizes", {D: 1, 3: 2}, TypeError, r"^layer_sizes: expected a sequence .*; got \{.*\} \(dict\)"),
    ("layer_sizes", (s for s in (D, 3)), TypeError, r"^layer_sizes: expected a sequence .*; got <generator .*\(generator\)"),
    ("layer_sizes", np.array(D), TypeError, r"^layer_sizes: expected a sequence .*; got an array of dtype int64 and shape \(\)"),
    ("layer_sizes", np.array([[D, 3]]), TypeError, r"^layer_sizes: expected a sequence .*; got an array .* shape \(1, 2\)"),
    ("layer_sizes", [D, 3.0], TypeError, r"^layer_sizes\[1\]: expected an integer >= 1; got 3.0 \(float\)"),
    ("layer_sizes", [D, True], TypeError, r"^layer_sizes\[1\]: expected an integer >= 1; got True \(bool\)"),
    ("layer_sizes", [D, "3"], TypeError, r"^layer_sizes\[1\]: expected an integer >= 1; got '3' \(str\)"),
    ("layer_sizes", [D, None], TypeError, r"^layer_sizes\[1\]: expected an integer >= 1; got None"),
    ("layer_sizes", [D, 2**70], ValueError, r"^layer_sizes\[1\]: expected an integer >= 1 and <= \d+; got 1180591620717411303424"),
]
for arg, value, error, regex in CONSTRUCTOR_ARGS:
    case(f"MLP {arg}={value!r}", "ce", lambda net, backend, arg=arg, value=value: construct(backend, {arg: value}),
         error, regex)

# Bad set_parameters: the valid base differs from the model's parameters, so that a partial
# update (some layers set before a bad one is found) would show.


def _new_parameters(net):
    return [w + 1 for w in net.weights], [b + 1 for b in net.biases]


def _set(change):
    def call(net, backend):
        weights, biases = _new_parameters(net)
        weights, biases = change(weights, biases)
        net.set_parameters(weights, biases)
    return call


def _put(array, index, value):
    array = np.array(array, dtype=np.float64)
    array[index] = value
    return array


SET_PARAMETERS = [
    ("one weight too few", lambda w, b: (w[:-1], b), ValueError,
     r"^weights: expected a list of 2 arrays, one per layer; got 1"),
    ("one weight too many", lambda w, b: (w + [w[-1]], b), ValueError,
     r"^weights: expected a list of 2 arrays, one per layer; got 3"),
    ("no biases", lambda w, b: (w, []), ValueError, r"^biases: expected a list of 2 arrays, one per layer; got 0"),
    ("weights an array", lambda w, b: (w[0], b), TypeError, r"^weights: expected a list of 2 arrays; got an array"),
    ("weights None", lambda w, b: (None, b), TypeError, r"^weights: expected a list of 2 arrays; got None"),
    ("weights a dict", lambda w, b: (dict(enumerate(w)), b), TypeError, r"^weights: expected a list of 2 arrays; got \{"),
    ("weights a generator", lambda w, b: (iter(w), b), TypeError, r"^weights: expected a list of 2 arrays; got <"),
    ("W0 transposed", lambda w, b: ([w[0].T, w[1]], b), ValueError, r"^weights\[0\]: expected shape \(4, 5\); got shape \(5, 4\)"),
    ("W1 wrong shape", lambda w, b: ([w[0], w[1][:, :2]], b), ValueError,
     r"^weights\[1\]: expected shape \(5, 3\); got shape \(5, 2\)"),
    ("b1 wrong shape", lambda w, b: (w, [b[0], b[1][:, None]]), ValueError,
     r"^biases\[1\]: expected shape \(3,\); got shape \(3, 1\)"),
    ("b0 scalar", lambda w, b: (w, [0.0, b[1]]), ValueError, r"^biases\[0\]: expected shape \(5,\); got shape \(\)"),
    ("NaN in W1", lambda w, b: ([w[0], _put(w[1], (4, 2), np.nan)], b), ValueError,
     r"^weights\[1\]: expected finite values .*; got nan at index \(4, 2\)"),
    ("inf in b1", lambda w, b: (w, [b[0], _put(b[1], 1, np.inf)]), ValueError,
     r"^biases\[1\]: expected finite values .*; got inf at index 1"),
    ("W1 overflowing float32", lambda w, b: ([w[0], _put(w[1], (0, 0), 1e40)], b), ValueError,
     r"^weights\[1\]: expected finite values that fit in float32 .*; got 1e\+40 at index \(0, 0\)"),
    ("strings in W1", lambda w, b: ([w[0], w[1].astype(str)], b), TypeError,
     r"^weights\[1\]: expected an array of real numbers; got dtype <U"),
    ("complex b1", lambda w, b: (w, [b[0], b[1] + 1j]), TypeError, r"^biases\[1\]: expected real numbers; got complex"),
    ("ragged W1", lambda w, b: ([w[0], [list(r) for r in w[1][:4]] + [[1.0]]], b), ValueError,
     r"^weights\[1\]: expected a rectangular array of numbers"),
    ("None in b1", lambda w, b: (w, [b[0], [1.0, None, 2.0]]), TypeError,
     r"^biases\[1\]: expected an array of real numbers; got dtype object"),
]
for description, change, error, regex in SET_PARAMETERS:
    case(f"set_parameters {description}", "ce", _set(change), error, regex)


# --- the test ------------------------------------------------------------------------------


def test_the_table_is_large():
    assert len(CASES) >= 100, len(CASES)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, call, error, regex", CASES)
def test_bad_input(backend, kind, call, error, regex):
    net, twin = make(kind, backend, started=True), make(kind, backend, started=True)
    before = snapshot(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear error, not a warning and then an error
        with pytest.raises((ValueError, TypeError)) as info:
            call(net, backend)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(regex, str(info.value)), str(info.value)
    assert_same_snapshot(snapshot(net), before)
    # Neither optimizer state nor the generator moved: the next fit is the untouched twin's.
    history, twin_history = valid_fit(net, kind), valid_fit(twin, kind)
    np.testing.assert_array_equal(history.step_loss, twin_history.step_loss)
    assert_same_snapshot(snapshot(net), snapshot(twin))


def test_messages_name_what_was_expected_and_given():
    """Every regex in the table asks for the argument's name and, for all but a few fixed
    messages, for 'expected' and 'got'."""
    for param in CASES:
        regex = param.values[3]
        assert regex.startswith(("^", "predict_proba")), param.id
        fixed_messages = ("nesterov", "predict_proba", "validation_data and validation_fraction", "too small",
                          "validation_fraction=0.95")
        if not any(word in param.id for word in fixed_messages):
            assert "expected" in regex and ("got" in regex or "rectangular" in regex), param.id


# --- what must be accepted -----------------------------------------------------------------

_wide = np.random.default_rng(5).normal(size=(2 * N, 2 * D))
_ints = np.random.default_rng(6).integers(-3, 4, size=(N, D))

# (description, X as given, the contiguous float array it must act exactly like)
ACCEPTED_X = [
    ("column slice of a wider array", _wide[:N, ::2], np.ascontiguousarray(_wide[:N, ::2])),
    ("every other row", _wide[::2, :D], np.ascontiguousarray(_wide[::2, :D])),
    ("negative strides", _wide[N - 1::-1, D - 1::-1], np.ascontiguousarray(_wide[N - 1::-1, D - 1::-1])),
    ("Fortran order", np.asfortranarray(X), np.ascontiguousarray(X)),
    ("transposed", np.ascontiguousarray(X.T).T, np.ascontiguousarray(X)),
    ("int64", _ints, _ints.astype(np.float64)),
    ("int8", _ints.astype(np.int8), _ints.astype(np.float64)),
    ("uint8", np.abs(_ints).astype(np.uint8), np.abs(_ints).astype(np.float64)),
    ("bool", _ints > 0, (_ints > 0).astype(np.float64)),
    ("nested lists", X.tolist(), X),
    ("list of rows", list(X), X),
    ("float16", X.astype(np.float16), X.astype(np.float16).astype(np.float64)),
    ("big-endian float64", X.astype(">f8"), X),
    ("read-only", np.frombuffer(X.tobytes()).reshape(N, D), X),
]


def _exact_twin(kind, backend, dtype):
    return make(kind, backend, dtype), make(kind, backend, dtype)


def _outputs(net, kind, x):
    """Every result an X gives, from every entry point."""
    y = Y[kind]
    value, dW, db = net.loss_and_grad(x, y)
    out = {
        "forward": net.forward(x),
        "decision_function": net.decision_function(x),
        "predict": net.predict(x),
        "score": net.score(x, y),
        "loss": value,
        "dW": dW,
        "db": db,
    }
    if kind != "mse":
        out["predict_proba"] = net.predict_proba(x)
    history = net.fit(x, y, epochs=2, batch_size=4, lr=0.1, momentum=0.5)
    out["step_loss"], out["weights"], out["biases"] = history.step_loss, net.weights, net.biases
    return out


def _assert_same_outputs(got, want):
    assert got.keys() == want.keys()
    for key in want:
        a, b = got[key], want[key]
        if isinstance(b, list):
            assert len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b)), key
        else:
            assert np.array_equal(np.asarray(a), np.asarray(b)), key
            assert np.asarray(a).dtype == np.asarray(b).dtype, key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["ce", "mse"])
@pytest.mark.parametrize("given, reference", [pytest.param(g, r, id=d) for d, g, r in ACCEPTED_X])
def test_accepted_X_acts_like_the_contiguous_float_array(backend, dtype, kind, given, reference):
    net, twin = _exact_twin(kind, backend, dtype)
    assert reference.flags.c_contiguous and reference.dtype == np.float64
    _assert_same_outputs(_outputs(net, kind, given), _outputs(twin, kind, reference))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_X_in_a_float32_model_is_the_float32_array(backend):
    net, twin = _exact_twin("ce", backend, "float32")
    _assert_same_outputs(_outputs(net, "ce", X), _outputs(twin, "ce", X.astype(np.float32)))
    assert net.forward(X).dtype == np.float32


# (kind, description, y as given, the array it must act exactly like)
ACCEPTED_Y = [
    ("ce", "int8 labels", Y["ce"].astype(np.int8), Y["ce"]),
    ("ce", "uint64 labels", Y["ce"].astype(np.uint64), Y["ce"]),
    ("ce", "integral floats", Y["ce"].astype(np.float64), Y["ce"]),
    ("ce", "list", Y["ce"].tolist(), Y["ce"]),
    ("ce", "every other element", np.repeat(Y["ce"], 2)[::2], Y["ce"]),
    ("mse", "Fortran order", np.asfortranarray(Y["mse"]), Y["mse"]),
    ("mse", "column slice", np.repeat(Y["mse"], 2, axis=1)[:, ::2], Y["mse"]),
    ("mse", "int", np.round(Y["mse"] * 3).astype(int), np.round(Y["mse"] * 3)),
    ("mse", "nested lists", Y["mse"].tolist(), Y["mse"]),
    ("mse1", "column", Y["mse1"][:, None], Y["mse1"]),
    ("mse1", "strided", np.repeat(Y["mse1"], 3)[::3], Y["mse1"]),
    ("bce", "bool", Y["bce"] > 0.5, Y["bce"]),
    ("bce", "int", Y["bce"].astype(int), Y["bce"]),
    ("bce", "soft targets as float32", np.full((N, 2), 0.25, np.float32), np.full((N, 2), 0.25)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, given, reference", [pytest.param(k, g, r, id=f"{k} {d}") for k, d, g, r in ACCEPTED_Y])
def test_accepted_y_acts_like_the_contiguous_array(backend, kind, given, reference):
    net, twin = _exact_twin(kind, backend, "float32")
    value, dW, db = net.loss_and_grad(X, given)
    want_value, want_dW, want_db = twin.loss_and_grad(X, reference)
    assert value == want_value
    assert all(np.array_equal(a, b) for a, b in zip(dW + db, want_dW + want_db))
    assert net.score(X, given) == twin.score(X, reference)
    history = net.fit(X, given, epochs=2, batch_size=3)
    want = twin.fit(X, reference, epochs=2, batch_size=3)
    np.testing.assert_array_equal(history.step_loss, want.step_loss)
    assert_same_snapshot(snapshot(net), snapshot(twin))


@pytest.mark.parametrize("backend", BACKENDS)
def test_accepted_scalar_arguments(backend):
    """NumPy scalars, Fractions and ints where floats are wanted behave like the plain values."""
    net, twin = _exact_twin("ce", backend, "float32")
    history = net.fit(X, Y["ce"], epochs=np.int64(2), batch_size=np.uint8(3), lr=Fraction(1, 20),
                      momentum=np.float32(0.5), nesterov=np.bool_(True), weight_decay=0, warmup_steps=np.int32(2),
                      shuffle=np.bool_(True), seed=np.uint64(3))
    want = twin.fit(X, Y["ce"], epochs=2, batch_size=3, lr=0.05, momentum=float(np.float32(0.5)), nesterov=True,
                    weight_decay=0.0, warmup_steps=2, shuffle=True, seed=3)
    np.testing.assert_array_equal(history.step_loss, want.step_loss)
    assert_same_snapshot(snapshot(net), snapshot(twin))
    # A seed larger than 64 bits is a valid NumPy seed.
    MLP([D, 2], backend=backend, seed=2**100)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes", [(D, 5, 3), range(D, 7), np.array([D, 5, 3]), [np.int32(D), np.int64(3)]],
                         ids=["tuple", "range", "array", "numpy ints"])
def test_accepted_layer_sizes(backend, sizes):
    net = MLP(sizes, backend=backend, seed=0)
    assert net.layer_sizes == [int(s) for s in sizes]
    assert all(type(s) is int for s in net.layer_sizes)
    assert [w.shape for w in net.weights] == [(a, b) for a, b in zip(net.layer_sizes[:-1], net.layer_sizes[1:])]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, want", [(np.float32, np.float32), ("f4", np.float32), (">f4", np.float32),
                                         (np.dtype("<f8"), np.float64), (float, np.float64), ("float64", np.float64)])
def test_accepted_dtypes_are_the_native_ones(backend, dtype, want):
    net = MLP([D, 3], backend=backend, dtype=dtype, seed=0)
    assert net.dtype == np.dtype(want) and net.dtype.isnative
    assert net.weights[0].dtype == want
    assert net.forward(X).dtype == want


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_parameters_accepts_layouts_and_copies(backend):
    net, twin = _exact_twin("ce", backend, "float32")
    weights, biases = _new_parameters(net)
    given_w = [np.asfortranarray(weights[0]), np.repeat(weights[1], 2, axis=1)[:, ::2]]
    given_b = [biases[0].tolist(), biases[1].astype(np.float64)]
    net.set_parameters(given_w, given_b)
    twin.set_parameters([w.astype(np.float32) for w in weights], [b.astype(np.float32) for b in biases])
    assert_same_snapshot(snapshot(net), snapshot(twin))
    # The model holds copies: changing what was passed in changes nothing.
    exact = [w.astype(np.float32) for w in weights], [b.astype(np.float32) for b in biases]
    net.set_parameters(*exact)
    exact[0][0][...] = 0
    exact[1][1][...] = 0
    assert_same_snapshot(snapshot(net), snapshot(twin))
    assert not np.array_equal(net.weights[0], exact[0][0])


# --- impossible sizes and huge (valid) arguments -------------------------------------------

IMPOSSIBLE_LAYER_SIZES = [
    [2**40, 2**40],            # 2^80 weights: the count overflows 64 bits
    [1, 2**62, 1],             # 2^63 weights of 8 bytes: more bytes than an address space
    [2**31, 2**31, 2**31],     # each layer alone is 2^62 weights
    [10**6, 10**6],            # 10^12 weights: 4 or 8 TB
    [3, 2**63 - 1],            # the largest accepted size
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes", IMPOSSIBLE_LAYER_SIZES, ids=lambda s: "x".join(map(str, s)))
def test_an_impossible_network_is_a_memory_error(backend, dtype, sizes):
    with pytest.raises(MemoryError, match=r"^layer_sizes: "):
        MLP(sizes, backend=backend, dtype=dtype, seed=0)


@pytest.mark.skipif(not fm.native_available(), reason="fusedmlp._native is not built")
@pytest.mark.parametrize("sizes", [[2**31, 2**31], [2**31, 2**30], [2**31 + 1, 1], [2**40, 2]],
                         ids=lambda s: "x".join(map(str, s)))
def test_the_native_constructor_refuses_impossible_sizes_without_crashing(sizes):
    """Straight to the binding, below MLP's checks: a clear Python error, never a crash."""
    from fusedmlp import _native

    for net_class in (_native.MlpFloat32, _native.MlpFloat64):
        with pytest.raises((MemoryError, ValueError)):
            net_class(sizes, "relu", "mse")


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_valid_arguments_work(backend):
    """Sizes far beyond the data are valid and act as the largest sensible value."""
    net, twin = make("ce", backend), make("ce", backend)
    history = net.fit(X, Y["ce"], epochs=2, batch_size=2**62, lr=0.05, seed=2**200)
    want = twin.fit(X, Y["ce"], epochs=2, batch_size=N, lr=0.05, seed=2**200)
    np.testing.assert_array_equal(history.step_loss, want.step_loss)
    assert_same_snapshot(snapshot(net), snapshot(twin))
    # A warmup longer than any run: every rate is a tiny fraction of lr, all finite.
    history = net.fit(X, Y["ce"], epochs=1, batch_size=3, lr=0.05, warmup_steps=2**62)
    assert np.all(history.lr > 0) and np.all(history.lr < 1e-15) and np.isfinite(history.step_loss).all()


# --- scikit-learn estimators ---------------------------------------------------------------
# scikit-learn's conventions: parameters are checked in fit, X and y by scikit-learn's own
# validation (its messages), and a failed call leaves a fitted estimator as it was.

sklearn = pytest.importorskip("fusedmlp.sklearn", reason="scikit-learn is not installed")

_XS = np.random.default_rng(3).normal(size=(30, D))
_YS = {"classifier": np.arange(30) % 3, "regressor": _XS[:, 0] - _XS[:, 1]}

ESTIMATOR_PARAMS = [
    ("hidden_layer_sizes", (-1,), ValueError, r"^hidden_layer_sizes\[0\]: expected an integer >= 1; got -1"),
    ("hidden_layer_sizes", (5, 0), ValueError, r"^hidden_layer_sizes\[1\]: expected an integer >= 1; got 0"),
    ("hidden_layer_sizes", "10", TypeError, r"^hidden_layer_sizes: expected an integer or a sequence of integers"),
    ("activation", "swish", ValueError, r"^activation: expected one of .*; got 'swish'"),
    ("solver", "adam", ValueError, r"^solver: .*expected 'sgd'; got 'adam'"),
    ("alpha", -1.0, ValueError, r"^alpha: expected a finite number >= 0.0; got -1.0"),
    ("batch_size", 0, ValueError, r"^batch_size: expected an integer >= 1; got 0"),
    ("batch_size", "big", TypeError, r"^batch_size: expected an integer >= 1; got 'big'"),
    ("learning_rate", "fast", ValueError, r"^learning_rate: expected one of constant, invscaling, adaptive; got 'fast'"),
    ("learning_rate_init", 0.0, ValueError, r"^learning_rate_init: expected a .*number .*; got 0.0"),
    ("learning_rate_init", float("nan"), ValueError, r"^learning_rate_init: expected a .*number .*; got nan"),
    ("max_iter", 0, ValueError, r"^max_iter: expected an integer >= 1; got 0"),
    ("momentum", 1.5, ValueError, r"^momentum: expected a finite number in \[0.0, 1.0\); got 1.5"),
    ("validation_fraction", 1.0, ValueError, r"^validation_fraction: expected a finite number in \[0.0, 1.0\); got 1.0"),
    ("n_iter_no_change", 0, ValueError, r"^n_iter_no_change: expected an integer >= 1; got 0"),
    ("backend", "tpu", ValueError, r"^backend: expected one of .*; got 'tpu'"),
    ("dtype", "int32", ValueError, r"^dtype: expected one of float32, float64; got int32"),
    ("warmup_steps", -1, ValueError, r"^warmup_steps: expected an integer >= 0; got -1"),
]
ESTIMATOR_DATA = [
    ("X NaN", lambda X, y: (_with(X, (2, 1), np.nan), y), ValueError, r"Input X contains NaN"),
    ("X inf", lambda X, y: (_with(X, (0, 0), np.inf), y), ValueError, r"Input X contains infinity"),
    ("X 1-D", lambda X, y: (X[:, 0], y), ValueError, r"Expected 2D array, got 1D array"),
    ("X empty", lambda X, y: (X[:0], y[:0]), ValueError, r"Found array with 0 sample\(s\)"),
    ("y too short", lambda X, y: (X, y[:-1]), ValueError, r"inconsistent numbers of samples: \[(30, 29|29, 30)\]"),
    ("X complex", lambda X, y: (X + 1j, y), ValueError, r"[Cc]omplex data not supported"),
]


def _fitted(kind, backend):
    estimator_class = sklearn.MLPClassifier if kind == "classifier" else sklearn.MLPRegressor
    estimator = estimator_class(hidden_layer_sizes=(6,), max_iter=3, backend=backend, random_state=0,
                                learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached: a ConvergenceWarning, as scikit-learn's
        return estimator.fit(_XS, _YS[kind])


def _estimator_state(estimator):
    return [a.copy() for a in estimator.coefs_ + estimator.intercepts_], estimator.predict(_XS)


ESTIMATOR_CASES = []
for kind in ("classifier", "regressor"):
    for name, value, error, regex in ESTIMATOR_PARAMS:
        ESTIMATOR_CASES.append(pytest.param(kind, "params", (name, value), error, regex, id=f"{kind} {name}={value!r}"))
    for method in ("fit", "partial_fit", "predict", "score"):
        for description, change, error, regex in ESTIMATOR_DATA:
            if method == "predict" and description == "y too short":
                continue
            ESTIMATOR_CASES.append(pytest.param(kind, method, change, error, regex,
                                                id=f"{kind} {method} {description}"))
    ESTIMATOR_CASES.append(pytest.param(kind, "predict", lambda X, y: (X[:, :3], y), ValueError,
                                        r"X has 3 features, but \w+ is expecting 4 features", id=f"{kind} predict 3 features"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind, method, change, error, regex", ESTIMATOR_CASES)
def test_estimator_bad_input(backend, kind, method, change, error, regex):
    estimator = _fitted(kind, backend)
    before = _estimator_state(estimator)
    with pytest.raises((ValueError, TypeError)) as info:
        if method == "params":
            name, value = change
            estimator.set_params(**{name: value})
            estimator.fit(_XS, _YS[kind])
        else:
            X, y = change(_XS, _YS[kind])
            if method == "predict":
                estimator.predict(X)
            elif method == "partial_fit":
                estimator.partial_fit(X, y)
            else:
                getattr(estimator, method)(X, y)
    assert type(info.value) is error or isinstance(info.value, error), f"{type(info.value).__name__}: {info.value}"
    assert re.search(regex, str(info.value)), str(info.value)
    if method != "params":  # a bad fit may have started afresh; bad data must change nothing
        after = _estimator_state(estimator)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(after[0], before[0]))
        assert np.array_equal(after[1], before[1])


def test_estimator_partial_fit_needs_classes_first():
    estimator = sklearn.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2)
    with pytest.raises(ValueError, match=r"classes must be passed on the first call to partial_fit"):
        estimator.partial_fit(_XS, _YS["classifier"])
    with pytest.raises(ValueError, match=r"^y: has classes not in classes_"):
        _fitted("classifier", "numpy").partial_fit(_XS, _YS["classifier"] + 1)


# --- PyTorch interop -----------------------------------------------------------------------


@pytest.mark.parametrize("module, error, regex", [
    (3, TypeError, r"^module: expected a torch.nn.Sequential \(or nn.Linear\); got int"),
    (None, TypeError, r"^module: expected a torch.nn.Sequential"),
    ("Sequential", TypeError, r"^module: expected a torch.nn.Sequential"),
])
def test_from_torch_bad_input(module, error, regex):
    pytest.importorskip("torch", reason="PyTorch is not installed")
    with pytest.raises(error, match=regex):
        fm.from_torch(module)


def test_from_torch_refuses_modules_it_cannot_represent():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    nn = torch.nn
    for module in (nn.Sequential(), nn.Sequential(nn.Linear(4, 5), nn.ReLU()),
                   nn.Sequential(nn.Linear(4, 5), nn.Softplus(), nn.Linear(5, 3)),
                   nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(6, 3)),
                   nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3, bias=False))):
        with pytest.raises((ValueError, TypeError)) as info:
            fm.from_torch(module)
        assert str(info.value).startswith(("module", "layer", "activation")), str(info.value)
    broken = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        broken[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"finite"):
        fm.from_torch(broken)


# --- the command line ----------------------------------------------------------------------
# Every bad argument or file: the documented exit status (2: bad arguments or values, 1: a file
# that cannot be read or written), one error line on stderr that names what was wrong, no
# traceback, and no file written or changed.

from fusedmlp.__main__ import build_parser, main  # noqa: E402

_CSV_ROWS = 40


def _csv_lines():
    rng = np.random.default_rng(8)
    features = rng.normal(size=(_CSV_ROWS, 3))
    labels = (features[:, 0] > 0).astype(int)
    return ["a,b,c,y"] + [",".join(f"{v:.5f}" for v in row) + f",{label}" for row, label in zip(features, labels)]


def _with_cell(lines, row, column, text):
    lines = list(lines)
    cells = lines[row].split(",")
    cells[column] = text
    lines[row] = ",".join(cells)
    return lines


def _cli_files(folder):
    lines = _csv_lines()
    files = {
        "good.csv": lines,
        "nan.csv": _with_cell(lines, 5, 1, "nan"),
        "inf.csv": _with_cell(lines, 7, 0, "-inf"),
        "text.csv": _with_cell(lines, 3, 2, "x"),
        "ragged.csv": lines[:4] + [lines[4].rsplit(",", 1)[0]] + lines[5:],
        "header.csv": lines[:1],
    }
    for name, content in files.items():
        (folder / name).write_text("\n".join(content) + "\n")
    (folder / "empty.csv").write_bytes(b"")
    (folder / "garbage.npz").write_bytes(b"PK\x03\x04" + bytes(range(200)))
    MLP([3, 4, 2], backend="numpy", seed=0).save(folder / "model.npz")
    data = (folder / "model.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[:len(data) // 2])
    MLP([5, 4, 2], backend="numpy", seed=0).save(folder / "model5.npz")


def _commands():
    return set(build_parser()._subparsers._group_actions[0].choices)


TRAIN = ["train", "good.csv", "--epochs", "1", "-o", "out.npz"]
CLI_CASES = [
    ([], 2, r"^fusedmlp: error: the following arguments are required: command"),
    (["nosuchcmd"], 2, r"^fusedmlp: error: argument command: invalid choice: 'nosuchcmd'"),
    (["train"], 2, r"^fusedmlp train: error: the following arguments are required: DATA"),
    (["train", "nosuch"], 2, r"^fusedmlp: error: unknown data set 'nosuch': expected one of"),
    (["train", "missing.csv"], 1, r"^fusedmlp: error: missing.csv: No such file or directory"),
    (["train", "empty.csv"], 2, r"^fusedmlp: error: empty.csv: the file is empty"),
    (["train", "header.csv"], 2, r"^fusedmlp: error: header.csv: the file has a header line but no data"),
    (["train", "ragged.csv"], 2, r"^fusedmlp: error: ragged.csv: line 5 has 3 columns; expected 4"),
    (["train", "text.csv"], 2, r"^fusedmlp: error: text.csv: line 4: 'x' is not a number"),
    (["train", "nan.csv", "--validation-fraction", "0"], 2, r"^fusedmlp: error: X: expected finite values .*; got nan"),
    (["train", "inf.csv"], 2, r"^fusedmlp: error: (X|validation_data\[0\]): expected finite values .*; got -inf"),
    (["train", "garbage.npz"], 2, r"^fusedmlp: error: garbage.npz: not a readable .npz file"),
    (["train", "good.csv", "--target", "zz"], 2, r"^fusedmlp: error: target: good.csv has no column named 'zz'"),
    (["train", "good.csv", "--target", "7"], 2, r"^fusedmlp: error: target: column index 7 is out of range"),
    (["train", "digits", "--target", "y"], 2, r"^fusedmlp: error: --target: applies to .csv files"),
    (TRAIN[:-1] + ["nofolder/out.npz"], 1, r"^fusedmlp: error: nofolder/out.npz: No such file or directory"),
    (TRAIN + ["--lr", "1e300"], 1, r"^fusedmlp: error: training diverged at epoch 0, step 0"),
]
for option, values, message in [
    ("--epochs", ["0", "-1", "x", "1.5", ""], r"expected an integer >= 1"),
    ("--batch-size", ["0", "2.5", "big"], r"expected an integer >= 1"),
    ("--lr", ["0", "-1", "nan", "inf", "abc"], r"expected a finite number > 0"),
    ("--momentum", ["1", "-0.1", "nan", "x"], r"expected a number in \[0, 1\)"),
    ("--warmup", ["-1", "1.5"], r"expected an integer >= 0"),
    ("--validation-fraction", ["1", "1.5", "-0.5", "nan"], r"expected a number in \[0, 1\)"),
    ("--hidden", ["0", "64,,3", "a", "64,-1"], r"expected hidden layer widths as comma-separated integers >= 1"),
    ("--activation", ["swish", "RELU"], r"unknown activation"),
    ("--loss", ["hinge"], r"unknown loss 'hinge'"),
    ("--backend", ["tpu"], r"invalid choice: 'tpu'"),
    ("--dtype", ["float16", "int32"], r"invalid choice"),
    ("--seed", ["-1", "1.5"], r"expected an integer >= 0"),
]:
    for value in values:
        CLI_CASES.append((TRAIN + [option, value], 2, rf"^fusedmlp train: error: argument {option}: {message}"))

CLI_CASES += [
    (["predict", "model.npz"], 2, r"^fusedmlp predict: error: the following arguments are required: DATA"),
    (["predict", "missing.npz", "good.csv"], 1, r"^fusedmlp: error: missing.npz: No such file or directory"),
    (["predict", "garbage.npz", "good.csv"], 2, r"^fusedmlp: error: path: 'garbage.npz' is not a readable fusedmlp model"),
    (["predict", "truncated.npz", "good.csv"], 2, r"^fusedmlp: error: path: 'truncated.npz' is not a readable fusedmlp"),
    (["predict", "good.csv", "good.csv"], 2, r"^fusedmlp: error: path: 'good.csv' is not a readable fusedmlp model"),
    (["predict", "model.npz", "nan.csv"], 2, r"^fusedmlp: error: X: expected finite values .*; got nan"),
    (["predict", "model5.npz", "good.csv"], 2, r"^fusedmlp: error: .*(features|columns)"),
    (["predict", "model.npz", "digits"], 2, r"^fusedmlp: error: digits: has 64 feature columns; the model takes 3"),
    (["predict", "model.npz", "good.csv", "-o", "p.txt"], 2,
     r"^fusedmlp: error: --output: expected a file name ending in .csv or .npy; got 'p.txt'"),
    (["predict", "model.npz", "good.csv", "--backend", "tpu"], 2, r"^fusedmlp predict: error: argument --backend: invalid choice"),
    (["predict", "model.npz", "empty.csv"], 2, r"^fusedmlp: error: empty.csv: the file is empty"),
]
for option, value, message in [
    ("--batch-sizes", "0", r"expected comma-separated integers >= 1"),
    ("--batch-sizes", "", r"expected comma-separated integers >= 1"),
    ("--batch-sizes", "8,x", r"expected comma-separated integers >= 1"),
    ("--lrs", "-1", r"expected comma-separated numbers > 0"),
    ("--lrs", "nan", r"expected comma-separated numbers > 0"),
    ("--activations", "swish", r"expected comma-separated activations"),
    ("--warmup", "maybe", r"invalid choice: 'maybe'"),
    ("--warmup-fraction", "0", r"expected a number in \(0, 1\)"),
    ("--warmup-fraction", "1", r"expected a number in \(0, 1\)"),
    ("--seeds", "0", r"expected an integer >= 1"),
    ("--epochs", "0", r"expected an integer >= 1"),
    ("--hidden", "0", r"expected hidden layer widths"),
    ("--momentum", "1", r"expected a number in \[0, 1\)"),
    ("--validation-fraction", "0", r"expected a number in \(0, 1\)"),
    ("--backend", "tpu", r"invalid choice: 'tpu'"),
    ("--dtype", "float16", r"invalid choice: 'float16'"),
    ("--workers", "0", r"expected an integer >= 1"),
]:
    CLI_CASES.append((["sweep", option, value], 2, rf"^fusedmlp sweep: error: argument {option}: {message}"))
CLI_CASES += [
    (["sweep", "--scheduler", "notanaddress"], 2, r"^fusedmlp: error: scheduler: expected an address such as"),
    (["sweep", "nosuch"], 2, r"^fusedmlp: error: unknown data set 'nosuch'"),
    (["sweep", "missing.csv"], 1, r"^fusedmlp: error: missing.csv: No such file or directory"),
]
for option, value, message in [("--epochs", "0", r"expected an integer >= 1"), ("--batch-size", "-2", r"expected an integer >= 1"),
                               ("--lr", "-1", r"expected a finite number > 0"), ("--lr", "nan", r"expected a finite number > 0"),
                               ("--hidden", "0", r"expected an integer >= 1"), ("--seed", "-1", r"expected an integer >= 0"),
                               ("--dtype", "float16", r"invalid choice: 'float16'")]:
    CLI_CASES.append((["demo", option, value], 2, rf"^fusedmlp demo: error: argument {option}: {message}"))
CLI_CASES.append((["bench", "--no-such-option"], 2, r"^fusedmlp( bench)?: error: (unrecognized arguments|argument command)"))


@pytest.mark.parametrize("argv, status, regex", [pytest.param(a, s, r, id=" ".join(a) or "(nothing)")
                                                 for a, s, r in CLI_CASES])
def test_cli_bad_input(tmp_path, monkeypatch, capsys, argv, status, regex):
    if argv[:1] == ["bench"] and "bench" not in _commands():
        pytest.skip("this build has no bench command yet")
    _cli_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    try:
        got = main(argv)
    except SystemExit as exit:  # argparse's own errors
        got = exit.code
    captured = capsys.readouterr()
    assert got == status, captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert lines and re.search(regex, lines[-1]), captured.err
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert after == before  # no model or prediction file written, none changed


def test_the_cli_table_covers_every_command():
    covered = {argv[0] for argv, _, _ in CLI_CASES if argv}
    assert _commands() <= covered, _commands() - covered
