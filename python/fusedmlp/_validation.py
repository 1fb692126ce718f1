"""Checks of user input shared by every backend.

Each check raises a TypeError (wrong kind of value) or ValueError (right kind, wrong value)
whose message names the argument, what was expected and what was given. Checks only read:
callers convert and validate everything before they change any state.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence

import numpy as np

DTYPES = ("float32", "float64")

# The largest integer a count (epochs, batch_size, layer size, ...) may take: it must fit the
# native side's 64-bit integers, so a larger one would fail there, after state has changed.
INT_MAX = 2**63 - 1


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_choice(arg, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{arg}: expected one of {', '.join(choices)}; got {_describe(value)}")
    if value not in choices:
        raise ValueError(f"{arg}: expected one of {', '.join(choices)}; got {value!r}")
    return value


def check_int(arg, value, minimum, maximum=INT_MAX):
    """An integer (not a bool, not a float) in [minimum, maximum]; maximum=None: unbounded."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{arg}: expected an integer >= {minimum}; got {_describe(value)}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{arg}: expected an integer >= {minimum}; got {_describe(value)}") from None
    if number < minimum:
        raise ValueError(f"{arg}: expected an integer >= {minimum}; got {number}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{arg}: expected an integer >= {minimum} and <= {maximum}; got {number}")
    return number


def check_float(arg, value, minimum, below=None):
    """A finite real number in [minimum, below) (or [minimum, inf) when below is None)."""
    expected = f"a finite number in [{minimum}, {below})" if below is not None else f"a finite number >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{arg}: expected {expected}; got {_describe(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int (or Fraction) beyond the float range
        raise ValueError(f"{arg}: expected {expected}; got {_describe(value)}") from None
    if not math.isfinite(number) or number < minimum or (below is not None and number >= below):
        raise ValueError(f"{arg}: expected {expected}; got {number!r}")
    return number


def check_bool(arg, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{arg}: expected True or False; got {_describe(value)}")
    return bool(value)


def check_seed(arg, value):
    """None or an integer >= 0 (of any size: np.random.default_rng takes them all)."""
    if value is None:
        return None
    return check_int(arg, value, 0, maximum=None)


def check_dtype(value):
    """One of DTYPES (a name, a NumPy type or dtype), as the native-byte-order dtype."""
    expected = f"one of {', '.join(DTYPES)}"
    if value is None:  # np.dtype(None) would quietly mean float64
        raise TypeError(f"dtype: expected {expected}; got None")
    try:
        dtype = np.dtype(value)
    except TypeError:
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"dtype: expected {expected}; got {_describe(value)}") from None
    if dtype.name not in DTYPES or dtype.fields is not None:
        raise ValueError(f"dtype: expected {expected}; got {dtype}")
    # ">f4" is float32 too, but every backend computes in native byte order.
    return np.dtype(dtype.name)


def check_layer_sizes(value):
    expected = "a sequence of at least two integers >= 1 (input, hidden..., output)"
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(f"layer_sizes: expected {expected}; got {_describe(value)}")
    elif isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        # Sets and dicts have no order; generators are used up by reading them.
        raise TypeError(f"layer_sizes: expected {expected}; got {_describe(value)}")
    sizes = list(value)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes: expected {expected}; got {sizes!r}")
    return tuple(check_int(f"layer_sizes[{i}]", size, 1) for i, size in enumerate(sizes))


def numeric_array(arg, value):
    """value as an ndarray of a real (bool, integer or float) dtype."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{arg}: expected a rectangular array of numbers; got {_describe(value)} ({error})") from None
    if array.dtype.kind == "c":
        raise TypeError(f"{arg}: expected real numbers; got complex dtype {array.dtype}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{arg}: expected an array of real numbers; got dtype {array.dtype}")
    return array


def _first_bad(mask):
    """The index of the first True of mask, as text: "index 3" or "index (2, 1)"."""
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"index {index[0]}" if len(index) == 1 else f"index {index}"


_FINITE_CHECK_CHUNK = 1 << 16


def _all_finite(array):
    """np.isfinite(array).all(), a chunk at a time: no temporary the size of a training set."""
    flat = array.reshape(-1)
    return all(np.isfinite(flat[i:i + _FINITE_CHECK_CHUNK]).all() for i in range(0, flat.size, _FINITE_CHECK_CHUNK))


def require_finite(arg, array, dtype, original=None):
    """Raise unless every value of array (already converted to dtype) is finite. original:
    the values before conversion, to tell an overflow in the conversion from a NaN or inf."""
    if array.dtype.kind != "f" or _all_finite(array):
        return
    bad = ~np.isfinite(array)
    if original is not None and original.dtype.kind in "biuf":
        overflowed = bad & np.isfinite(original)
        if overflowed.any():
            where = _first_bad(overflowed)
            value = original[tuple(np.argwhere(overflowed)[0])].item()
            raise ValueError(
                f"{arg}: expected finite values that fit in {dtype.name} (magnitude <= {np.finfo(dtype).max:.4g}); "
                f"got {value!r} at {where}, which overflows to infinity in {dtype.name}"
            )
    value = array[tuple(np.argwhere(bad)[0])].item()
    raise ValueError(f"{arg}: expected finite values (no NaN or infinity); got {value!r} at {_first_bad(bad)}")


def _convert(arg, array, dtype):
    """array as a C-contiguous array of dtype (copied only if it must be), all finite."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        converted = np.ascontiguousarray(array, dtype=dtype)
    require_finite(arg, converted, dtype, original=array)
    return converted


def as_features(X, n_features, dtype, arg="X"):
    """X as a C-contiguous (n, n_features) array of dtype, copied only if it must be; arg: its
    name in error messages."""
    array = numeric_array(arg, X)
    if array.ndim != 2:
        raise ValueError(f"{arg}: expected a 2-D array of shape (n_samples, {n_features}); got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{arg}: expected at least one sample; got shape {array.shape}")
    if array.shape[1] != n_features:
        raise ValueError(f"{arg}: expected {n_features} features (columns); got shape {array.shape}")
    return _convert(arg, array, dtype)


def as_targets(y, loss, n_samples, n_outputs, dtype, arg="y", features_arg="X"):
    """y in the form the losses take: int64 class indices (n,) for cross_entropy, else values of
    dtype shaped (n, n_outputs). A 1-D y is accepted for a single output. arg, features_arg: the
    names of y and of its X in error messages."""
    array = numeric_array(arg, y)
    if array.ndim == 0 or array.shape[0] != n_samples:
        raise ValueError(f"{arg}: expected {n_samples} targets, one per sample of {features_arg}; got shape {array.shape}")
    if loss == "cross_entropy":
        if array.ndim != 1:
            raise ValueError(f"{arg}: expected class indices of shape ({n_samples},); got shape {array.shape}")
        if array.dtype.kind == "f":
            require_finite(arg, array, array.dtype)
            fractional = array != np.floor(array)
            if fractional.any():
                raise ValueError(f"{arg}: expected integer class indices; got non-integer value "
                                 f"{array[fractional][0].item()!r} at {_first_bad(fractional)}")
        if array.min() < 0 or array.max() >= n_outputs:
            raise ValueError(
                f"{arg}: expected class indices in [0, {n_outputs}); got values from {array.min()} to {array.max()}"
            )
        return np.ascontiguousarray(array, dtype=np.int64)
    if array.ndim == 1 and n_outputs == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != n_outputs:
        expected = f"({n_samples},) or ({n_samples}, 1)" if n_outputs == 1 else f"({n_samples}, {n_outputs})"
        raise ValueError(f"{arg}: expected shape {expected} for {n_outputs} outputs; got shape {array.shape}")
    converted = _convert(arg, array, dtype)
    if loss == "bce" and (converted.min() < 0 or converted.max() > 1):
        raise ValueError(
            f"{arg}: expected bce targets in [0, 1]; got values from {converted.min()} to {converted.max()}"
        )
    return converted


def as_parameters(weights, biases, layer_sizes, dtype):
    """Validated copies of weights and biases, shaped for layer_sizes, in dtype."""
    layers = len(layer_sizes) - 1
    for arg, value in (("weights", weights), ("biases", biases)):
        if isinstance(value, (str, bytes, np.ndarray, Mapping)) or not isinstance(value, Sequence):
            raise TypeError(f"{arg}: expected a list of {layers} arrays; got {_describe(value)}")
        if len(value) != layers:
            raise ValueError(f"{arg}: expected a list of {layers} arrays, one per layer; got {len(value)}")
    new_weights, new_biases = [], []
    for l in range(layers):
        shapes = ((f"weights[{l}]", weights[l], (layer_sizes[l], layer_sizes[l + 1])),
                  (f"biases[{l}]", biases[l], (layer_sizes[l + 1],)))
        for arg, value, shape in shapes:
            array = numeric_array(arg, value)
            if array.shape != shape:
                raise ValueError(f"{arg}: expected shape {shape}; got shape {array.shape}")
            converted = _convert(arg, array, dtype)
            if converted is array:
                converted = converted.copy()  # the model must not share memory with the caller
            (new_weights if arg.startswith("weights") else new_biases).append(converted)
    return new_weights, new_biases


def check_fraction(arg, value):
    """A finite number in [0, 1)."""
    return check_float(arg, value, 0.0, below=1.0)


def check_callbacks(value):
    """A callable or a sequence of callables, as a tuple."""
    if callable(value):
        return (value,)
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"callbacks: expected a callable or a sequence of callables; got {_describe(value)}")
    for i, callback in enumerate(value):
        if not callable(callback):
            raise TypeError(f"callbacks[{i}]: expected a callable callback(model, info); got {_describe(callback)}")
    return tuple(value)


def check_pair(arg, value):
    """A sequence of exactly two items (such as validation_data=(X_val, y_val)), as a tuple."""
    if isinstance(value, (str, bytes, np.ndarray, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"{arg}: expected a pair (X, y); got {_describe(value)}")
    if len(value) != 2:
        raise ValueError(f"{arg}: expected a pair (X, y); got a sequence of {len(value)} items")
    return tuple(value)
