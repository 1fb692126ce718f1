import numpy as np
import pytest

import fusedmlp as fm

# Tolerances of DESIGN.md: error relative to the largest magnitude of the reference result.
OP_TOLERANCE = {np.float32: 1e-4, np.float64: 1e-10}


def relative_error(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.size == 0:
        return 0.0
    scale = max(np.abs(expected).max(), np.finfo(np.float64).tiny)
    return float(np.abs(actual - expected).max() / scale)


def assert_matches_reference(actual, expected, dtype, tolerance=None):
    tolerance = OP_TOLERANCE[dtype] if tolerance is None else tolerance
    error = relative_error(actual, expected)
    assert error <= tolerance, f"relative error {error:.3g} > {tolerance:.0e}"


# The backends this machine can run: "cuda" only with a usable GPU. Tests that compare every
# backend iterate these; the `backend` fixture below reports the others as skipped.
AVAILABLE_BACKENDS = tuple(b for b in fm.BACKENDS if b != "cuda" or fm.cuda_available())


@pytest.fixture(params=fm.BACKENDS)
def backend(request):
    if request.param == "cuda" and not fm.cuda_available():
        pytest.skip(f"no CUDA backend here: {fm.cuda_unavailable_reason()}")
    return request.param
