"""Small data sets bundled with the package, and a deterministic stratified split.

Nothing here needs more than NumPy: the data ship inside the package as plain .npz arrays
(no pickle) and are read through importlib.resources, so they load from an installed wheel.
"""

from __future__ import annotations

import io
import math
import numbers
from importlib import resources

import numpy as np

__all__ = ["load_digits", "train_test_split"]


def load_digits():
    """The handwritten digits data set (UCI optical recognition of handwritten digits, as
    shipped by scikit-learn; CC BY 4.0 -- see fusedmlp/data/README.md).

    Returns (X, y): X is float64 of shape (1797, 64), the 8x8 pixel counts 0..16 scaled to
    [0, 1]; y is int64 of shape (1797,), the digit 0..9.
    """
    resource = resources.files("fusedmlp") / "data" / "digits.npz"
    # Read the bytes first: a resource need not be a file on disk (e.g. inside a zip).
    with np.load(io.BytesIO(resource.read_bytes()), allow_pickle=False) as arrays:
        X = arrays["X"].astype(np.float64) / 16.0
        y = arrays["y"].astype(np.int64)
    return X, y


def train_test_split(X, y, test_fraction=0.25, seed=0):
    """Split (X, y) into (X_train, X_test, y_train, y_test), stratified by the labels y.

    The test set holds round(test_fraction * n) samples, shared among the classes in
    proportion to their sizes (the classes with the largest remainders get the rounding), each
    class's test samples drawn at random. Both sides come in a shuffled order. The same seed
    gives the same split (np.random.default_rng(seed)) on every platform.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim != 1:
        raise ValueError(f"y: expected a 1-D array of class labels and X with one row per label; "
                         f"got X of shape {X.shape} and y of shape {y.shape}")
    n = y.shape[0]
    if X.shape[0] != n:
        raise ValueError(f"X, y: expected the same number of samples; got {X.shape[0]} and {n}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction: expected a number in (0, 1); got {test_fraction!r}")
    test_fraction = float(test_fraction)
    if not (0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction: expected a number in (0, 1); got {test_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0; got {seed!r}")
    n_test = int(math.floor(test_fraction * n + 0.5))
    if not (1 <= n_test <= n - 1):
        raise ValueError(f"test_fraction: {test_fraction} of {n} samples leaves an empty train or test set")

    classes, labels = np.unique(y, return_inverse=True)
    counts = np.bincount(labels, minlength=len(classes))
    # Each class's share of the test set: floor of its exact share, then the samples left
    # over go to the largest remainders (ties to the earlier class).
    exact = counts * (n_test / n)
    per_class = np.floor(exact).astype(np.int64)
    leftover = n_test - int(per_class.sum())
    order = np.lexsort((np.arange(len(classes)), -(exact - per_class)))
    per_class[order[:leftover]] += 1

    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for c in range(len(classes)):
        members = rng.permutation(np.flatnonzero(labels == c))
        test_parts.append(members[:per_class[c]])
        train_parts.append(members[per_class[c]:])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return X[train], X[test], y[train], y[test]
