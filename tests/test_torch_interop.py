"""fusedmlp.torch_interop: to_torch / from_torch give the same functions, and a PyTorch SGD
epoch from the same parameters is fusedmlp's epoch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

import fusedmlp as fm  # noqa: E402
from fusedmlp.torch_interop import from_torch, to_torch  # noqa: E402
from conftest import AVAILABLE_BACKENDS

nn = torch.nn

# DESIGN.md's tolerances for outputs, relative to the largest magnitude.
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def _relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _model(activation, dtype, loss="cross_entropy", sizes=(5, 16, 9, 3), backend="cpu", seed=0):
    model = fm.MLP(list(sizes), activation=activation, loss=loss, backend=backend, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    model.set_parameters(model.weights, [rng.normal(scale=0.3, size=b.shape) for b in model.biases])
    return model


def _inputs(n=64, d=5, seed=2):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", fm.ACTIVATIONS)
def test_to_torch_computes_the_same_logits(activation, dtype):
    model = _model(activation, dtype)
    module = to_torch(model)
    X = _inputs().astype(dtype)
    assert [type(layer).__name__ for layer in module][::2] == ["Linear"] * 3
    assert all(p.dtype == getattr(torch, dtype) for p in module.parameters())
    assert module[0].weight.shape == (16, 5)  # PyTorch's (out, in)
    with torch.no_grad():
        theirs = module(torch.from_numpy(X)).numpy()
    assert theirs.dtype == np.dtype(dtype)
    assert _relative_error(theirs, model.decision_function(X)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation, layer", [
    ("identity", nn.Identity), ("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid), ("gelu", nn.GELU),
    ("gelu_tanh", lambda: nn.GELU(approximate="tanh")), ("leaky_relu", lambda: nn.LeakyReLU(0.01)),
])
def test_from_torch_computes_the_same_logits(activation, layer, dtype):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 16), layer(), nn.Linear(16, 9), layer(), nn.Linear(9, 3)).to(getattr(torch, dtype))
    model = from_torch(module, loss="cross_entropy")
    assert model.layer_sizes == [5, 16, 9, 3] and model.activation == activation and model.dtype == np.dtype(dtype)
    X = _inputs().astype(dtype)
    with torch.no_grad():
        theirs = module(torch.from_numpy(X)).numpy()
    assert _relative_error(model.decision_function(X), theirs) <= TOLERANCE[dtype]


@pytest.mark.parametrize("activation", fm.ACTIVATIONS)
def test_round_trip_keeps_every_parameter(activation):
    model = _model(activation, "float64", loss="mse")
    back = from_torch(to_torch(model), loss="mse", backend="numpy")
    assert back.activation == activation and back.loss == "mse" and back.backend == "numpy"
    for a, b in zip(model.weights + model.biases, back.weights + back.biases):
        np.testing.assert_array_equal(a, b)


def test_mlp_methods_delegate():
    model = _model("gelu", "float64")
    module = model.to_torch()
    back = fm.MLP.from_torch(module, loss="cross_entropy")
    X = _inputs()
    np.testing.assert_array_equal(back.decision_function(X), model.decision_function(X))


def test_linear_layers_without_activation_are_identity_and_single_linear_works():
    torch.manual_seed(0)
    model = from_torch(nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2)).double(), loss="mse")
    assert model.activation == "identity" and model.layer_sizes == [4, 6, 2]
    single = from_torch(nn.Linear(4, 2).double(), loss="mse")
    assert single.layer_sizes == [4, 2]


def test_dtype_argument_converts():
    module = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))  # float32 parameters
    model = from_torch(module, dtype="float64")
    assert model.dtype == np.float64
    np.testing.assert_array_equal(model.weights[0], module[0].weight.detach().double().numpy().T)


@pytest.mark.parametrize("backend", AVAILABLE_BACKENDS)
@pytest.mark.parametrize("loss, torch_loss, targets", [
    ("cross_entropy", nn.CrossEntropyLoss, lambda rng, n: rng.integers(0, 3, n)),
    ("bce", nn.BCEWithLogitsLoss, lambda rng, n: rng.integers(0, 2, (n, 3)).astype(np.float64)),
    ("mse", nn.MSELoss, lambda rng, n: rng.normal(size=(n, 3))),
])
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 1e-3), (0.9, True, 1e-2)])
def test_torch_sgd_epoch_equals_ours(backend, loss, torch_loss, targets, momentum, nesterov, weight_decay):
    # Same parameters, same batches (shuffle off, a partial last batch), PyTorch's SGD with the
    # same momentum / Nesterov / weight decay: the same parameters after every step (float64).
    rng = np.random.default_rng(3)
    X, y = _inputs(n=50), targets(rng, 50)
    model = _model("tanh", "float64", loss=loss, backend=backend)
    module = to_torch(model)
    lr, batch_size = 0.1, 16
    optimizer = torch.optim.SGD(module.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=0.0)
    criterion = torch_loss()
    for start in range(0, len(X), batch_size):
        xb = torch.from_numpy(X[start:start + batch_size])
        yb = torch.from_numpy(y[start:start + batch_size])
        optimizer.zero_grad()
        criterion(module(xb), yb).backward()
        with torch.no_grad():  # fusedmlp decays weights only, never biases (DESIGN.md)
            for linear in module[::2]:
                linear.weight.grad += weight_decay * linear.weight
        optimizer.step()
    history = model.fit(X, y, epochs=1, batch_size=batch_size, lr=lr, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, shuffle=False)
    assert len(history.step_loss) == 4
    ours = to_torch(model)
    for theirs_parameter, ours_parameter in zip(module.parameters(), ours.parameters()):
        assert _relative_error(ours_parameter.detach().numpy(), theirs_parameter.detach().numpy()) <= 1e-10


def test_single_step_matches_torch_sgd_with_builtin_weight_decay():
    # With every bias zero and kept out of the update, torch's own weight_decay is ours exactly.
    X, y = _inputs(n=32), np.random.default_rng(4).integers(0, 3, 32)
    model = fm.MLP([5, 8, 3], activation="relu", dtype="float64", seed=0)
    module = to_torch(model)
    weights = [linear.weight for linear in module[::2]]
    biases = [linear.bias for linear in module[::2]]
    optimizer = torch.optim.SGD([{"params": weights, "weight_decay": 0.01}, {"params": biases}], lr=0.2)
    nn.CrossEntropyLoss()(module(torch.from_numpy(X)), torch.from_numpy(y)).backward()
    optimizer.step()
    model.fit(X, y, epochs=1, batch_size=32, lr=0.2, weight_decay=0.01, shuffle=False)
    for theirs, ours in zip(module.parameters(), to_torch(model).parameters()):
        assert _relative_error(ours.detach().numpy(), theirs.detach().numpy()) <= 1e-10


@pytest.mark.parametrize("module, message", [
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 2)), r"module\[1\].*Dropout.*not supported"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)),
     "one hidden activation.*relu.*tanh"),
    (lambda: nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2)), r"module\[0\].*bias"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=1)),
     r"module\[3\].*Linear last.*loss"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), r"module\[0\].*Linear first"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 2)), "negative_slope=0.2"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2)), "two activations in a row"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)), r"module\[2\].*in_features=5"),
    (lambda: nn.Sequential(), "empty"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).half(), "float16"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2).double()), "several dtypes"),
])
def test_from_torch_rejects_what_it_cannot_represent(module, message):
    with pytest.raises(ValueError, match=message):
        from_torch(module())


def test_from_torch_argument_types():
    with pytest.raises(TypeError, match="module: expected a torch.nn.Sequential"):
        from_torch(nn.ReLU())
    with pytest.raises(TypeError, match="activation"):
        from_torch(nn.Sequential(nn.Linear(3, 2)), activation="relu")
    with pytest.raises(TypeError, match="model: expected a fusedmlp.MLP"):
        to_torch(nn.Linear(3, 2))


def test_missing_torch_is_a_clear_import_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ImportError, match="needs torch.*pip install torch"):
        to_torch(fm.MLP([2, 2]))
