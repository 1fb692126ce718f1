"""Property-based tests: for random networks and data, every native backend agrees with the
NumPy reference within the tolerances of DESIGN.md.

Layer sizes run from 1 to a few hundred and favour the awkward ones (primes, and one below,
at and one above every SIMD tile 8/16/32/64/128/256); batch sizes run from 1 to n with partial
last batches; data magnitudes from 1e-6 to 1e6. The number of examples is bounded by the
profile of tests/_hypothesis_profiles.py (fixed and derandomized in CI).
"""

import numpy as np
import pytest
from hypothesis import currently_in_test_context as currently_testing
from hypothesis import example, given, note
from hypothesis import strategies as st

import _hypothesis_profiles  # noqa: F401  (loads the profile)
import fusedmlp as fm
from conftest import OP_TOLERANCE, relative_error

# DESIGN.md, "Agreement between backends": whole training, float64, weights within 1e-8.
TRAINING_TOLERANCE = 1e-8


def _native_backends():
    """"cpu" when the native module is built; "cuda" too when that backend exists and a GPU
    answers (fusedmlp.cuda_backend.cuda_available())."""
    backends = ["cpu"] if fm.native_available() else []
    try:
        from fusedmlp import cuda_backend
    except ImportError:
        return backends
    if cuda_backend.cuda_available():
        backends.append("cuda")
    return backends


def _model(sizes, backend, **kwargs):
    """An MLP on backend. Where the CUDA backend exists but MLP does not offer it yet, the
    model computes on a CudaBackend put in place of its reference backend (same parameters)."""
    if backend == "cuda" and "cuda" not in fm.BACKENDS:
        from fusedmlp.cuda_backend import CudaBackend

        net = fm.MLP(sizes, backend="numpy", **kwargs)
        weights, biases = net.weights, net.biases
        net._backend = CudaBackend(net.layer_sizes, net.activation, net.loss, net.dtype)
        net._backend.set_parameters(weights, biases)
        return net
    return fm.MLP(sizes, backend=backend, **kwargs)


NATIVE_BACKENDS = _native_backends()
pytestmark = pytest.mark.skipif(not NATIVE_BACKENDS, reason="no native backend built (fusedmlp._native missing)")

TILES = (8, 16, 32, 64, 128, 256)
AWKWARD_SIZES = sorted({t + d for t in TILES for d in (-1, 0, 1)}
                       | {1, 2, 3, 5, 7, 11, 13, 37, 61, 101, 211, 293})
layer_size = st.one_of(st.sampled_from(AWKWARD_SIZES), st.integers(1, 300))
magnitude = st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6])


@st.composite
def networks(draw, max_hidden_layers=2, dtypes=("float32", "float64"), magnitudes=magnitude):
    """(layer_sizes, activation, loss, dtype, data scale, seed) of one random case."""
    loss = draw(st.sampled_from(fm.LOSSES))
    sizes = [draw(layer_size) for _ in range(draw(st.integers(0, max_hidden_layers)) + 1)]
    k = draw(st.integers(2, 40)) if loss == "cross_entropy" else draw(st.sampled_from([1, 2, 3, 8, 17, 33]))
    return dict(sizes=sizes + [k], activation=draw(st.sampled_from(fm.ACTIVATIONS)), loss=loss,
                dtype=draw(st.sampled_from(dtypes)), scale=draw(magnitudes), seed=draw(st.integers(0, 2**32 - 1)))


def make_data(case, n):
    rng = np.random.default_rng(case["seed"])
    X = case["scale"] * rng.standard_normal((n, case["sizes"][0]))
    k = case["sizes"][-1]
    if case["loss"] == "cross_entropy":
        y = rng.integers(0, k, n)
    elif case["loss"] == "bce":
        # Hard and soft targets.
        y = np.where(rng.random((n, k)) < 0.5, rng.integers(0, 2, (n, k)), rng.random((n, k)))
    else:
        y = case["scale"] * rng.standard_normal((n, k))
    return X, y


def twins(case, backend):
    """The native model and the reference model, with the same parameters. Biases are set to
    random values: zero biases would hide a bias that is added wrongly."""
    kwargs = dict(activation=case["activation"], loss=case["loss"], dtype=case["dtype"], seed=case["seed"])
    native = _model(case["sizes"], backend, **kwargs)
    reference = fm.MLP(case["sizes"], backend="numpy", **kwargs)
    rng = np.random.default_rng(case["seed"] + 1)
    biases = [0.1 * rng.standard_normal(b.shape) for b in reference.biases]
    for net in (native, reference):
        net.set_parameters(reference.weights, biases)
    return native, reference


def assert_close(actual, expected, tolerance, what):
    error = relative_error(actual, expected)
    assert error <= tolerance, f"{what}: relative error {error:.3g} > {tolerance:.0e}"


EXACT = np.longdouble  # 64-bit significands on x86: 2^11 times finer than float64


def exact_inputs(reference, X, y=None):
    """X (and y) as the model sees them (rounded to its dtype), then widened to EXACT."""
    X = np.asarray(X).astype(reference.dtype).astype(EXACT)
    if y is not None and reference.loss != "cross_entropy":
        y = np.asarray(y).astype(reference.dtype).astype(EXACT)
        y = y.reshape(len(y), -1)
    return X, y


def exact_parameters(reference):
    return [w.astype(EXACT) for w in reference.weights], [b.astype(EXACT) for b in reference.biases]


def nudged(reference):
    """Copies of the reference model with every parameter moved one ulp up, and one down: the
    same computation on inputs as close as rounding can make them."""
    copies = []
    for direction in (np.inf, -np.inf):
        copy = fm.MLP(reference.layer_sizes, activation=reference.activation, loss=reference.loss, backend="numpy",
                      dtype=reference.dtype, seed=0)
        copy.set_parameters([np.nextafter(w, direction) for w in reference.weights],
                            [np.nextafter(b, direction) for b in reference.biases])
        copies.append(copy)
    return copies


def assert_agrees(native, references, exact, dtype, what):
    """native within DESIGN.md's tolerance of the reference (references[0]), or else as close
    to the exact result as the reference computation gets. Some results are ill-conditioned:
    1 - tanh(z)^2 or s (1 - s) of a nearly saturated unit cancels to a few significant bits,
    softmax turns the rounding of large logits into relative errors, and then the reference
    itself is off the exact result (computed in long double) by more than the tolerance. The
    noise floor is the largest error of the reference and of its one-ulp-nudged copies; the
    native result must be within the tolerance plus twice that floor of the exact result."""
    tolerance = OP_TOLERANCE[np.dtype(dtype).type]
    error = relative_error(native, references[0])
    if error <= tolerance:
        return
    native_error = relative_error(native, exact)
    floor = max(relative_error(r, exact) for r in references)
    assert native_error <= tolerance + 2 * floor, (
        f"{what}: relative error {error:.3g} to the reference; to the exact result {native_error:.3g}, "
        f"while the reference computation's noise floor is {floor:.3g}")


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@given(case=networks(), n=st.integers(1, 70))
# Found by hypothesis: float32 logits near 1e4, whose softmax magnifies their rounding.
@example(case={"sizes": [211, 47, 211, 20], "activation": "relu", "loss": "cross_entropy", "dtype": "float32",
               "scale": 1000.0, "seed": 0}, n=9)
def test_forward_logits_agree_with_the_reference(backend, case, n):
    note(repr(case))
    native, reference = twins(case, backend)
    X, _ = make_data(case, n)
    dtype = case["dtype"]
    weights, biases = exact_parameters(reference)
    X_exact, _ = exact_inputs(reference, X)
    models = [reference] + nudged(reference)
    exact_logits = fm.reference.network_logits(weights, biases, case["activation"], X_exact)
    exact_outputs = fm.reference.output_activation(case["loss"], exact_logits)
    for method, exact in (("decision_function", exact_logits), ("forward", exact_outputs)):
        assert_agrees(getattr(native, method)(X), [getattr(m, method)(X) for m in models], exact, dtype, method)


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@given(case=networks(), n=st.integers(1, 70))
# Found by hypothesis: s (1 - s) of a nearly saturated sigmoid in float64, the reference 1e-10 off
# (its float32 tanh sibling is test_saturated_tanh_gradient_float32 below): s (1 - s) of a nearly saturated sigmoid, the reference 1e-10 off.
@example(case={"sizes": [211, 211, 1], "activation": "sigmoid", "loss": "mse", "dtype": "float64", "scale": 1e6,
               "seed": 1}, n=1)
def test_loss_and_grad_agree_with_the_reference(backend, case, n):
    if currently_testing():
        note(repr(case))
    native, reference = twins(case, backend)
    X, y = make_data(case, n)
    dtype = case["dtype"]
    value, dW, db = native.loss_and_grad(X, y)
    wanted = [m.loss_and_grad(X, y) for m in [reference] + nudged(reference)]
    weights, biases = exact_parameters(reference)
    X_exact, y_exact = exact_inputs(reference, X, y)
    exact_value, exact_dW, exact_db = fm.reference.network_loss_and_grad(
        weights, biases, case["activation"], case["loss"], X_exact, y_exact)
    assert np.isfinite(value)
    assert_agrees(np.array([value]), [np.array([w[0]]) for w in wanted], np.array([exact_value]), dtype, "loss")
    for l, got in enumerate(dW):
        assert got.dtype == wanted[0][1][l].dtype
        assert_agrees(got, [w[1][l] for w in wanted], exact_dW[l], dtype, f"dW[{l}]")
    for l, got in enumerate(db):
        assert_agrees(got, [w[2][l] for w in wanted], exact_db[l], dtype, f"db[{l}]")


SIGMOID_UNDERFLOW = {"sizes": [1, 1, 1], "activation": "sigmoid", "loss": "mse", "dtype": "float32", "scale": 1000.0,
                     "seed": 176}


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_sigmoid_that_underflows_gives_the_references_zero_gradient(backend):
    """Found by hypothesis in CI: sigmoid(z) for z near -270 underflows to 0 in float32, so the
    reference's dW is 0; a vector exp that stopped at the smallest normal number gave 2.5e-33."""
    test_loss_and_grad_agree_with_the_reference.hypothesis.inner_test(backend, SIGMOID_UNDERFLOW, 1)


SATURATED_TANH = {"sizes": [5, 5, 1], "activation": "tanh", "loss": "mse", "dtype": "float32", "scale": 1000.0,
                  "seed": 627}


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_saturated_tanh_gradient_float32(backend):
    """Found by hypothesis: float32 tanh units with |z| from 6 to 800. The reference is 1.6e-3
    off the exact gradient (1 - tanh^2 cancels); the native one must not be worse than that."""
    test_loss_and_grad_agree_with_the_reference.hypothesis.inner_test(backend, SATURATED_TANH, 2)


def _stable_lr(case):
    """A learning rate well inside the stable range: the curvature of a layer grows with its
    fan-in and with the square of the data's magnitude."""
    return 0.05 / (max(1.0, case["scale"]) ** 2 * sum(case["sizes"][:-1]))


@st.composite
def training_runs(draw):
    # Magnitudes the optimiser can take with a fixed small learning rate (no divergence).
    case = draw(networks(dtypes=("float64",), magnitudes=st.sampled_from([1e-6, 1e-3, 1.0, 10.0])))
    n = draw(st.integers(1, 40))
    fit = dict(epochs=draw(st.integers(1, 3)), batch_size=draw(st.integers(1, n)), shuffle=draw(st.booleans()),
               lr=_stable_lr(case), momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
               weight_decay=draw(st.sampled_from([0.0, 1e-3])))
    fit["nesterov"] = fit["momentum"] > 0 and draw(st.booleans())
    fit["drop_last"] = draw(st.booleans())
    return case, n, fit


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
@given(run=training_runs())
def test_a_few_training_steps_agree_with_the_reference(backend, run):
    case, n, fit = run
    note(repr(run))
    native, reference = twins(case, backend)
    X, y = make_data(case, n)
    if case["loss"] == "mse":
        y = y / case["scale"]  # targets of order one: the learning rate is scaled for X only
    got, want = native.fit(X, y, seed=case["seed"], **fit), reference.fit(X, y, seed=case["seed"], **fit)
    assert got.steps == want.steps == fit["epochs"] * (n // fit["batch_size"] if fit["drop_last"]
                                                       else -(-n // fit["batch_size"]))
    np.testing.assert_array_equal(got.lr, want.lr)
    assert np.all(np.isfinite(got.step_loss))
    assert_close(got.step_loss, want.step_loss, TRAINING_TOLERANCE, "step losses")
    for l, (a, b) in enumerate(zip(native.weights, reference.weights)):
        assert_close(a, b, TRAINING_TOLERANCE, f"W[{l}]")
    for l, (a, b) in enumerate(zip(native.biases, reference.biases)):
        assert_close(a, b, TRAINING_TOLERANCE, f"b[{l}]")
