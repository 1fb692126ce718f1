"""Conversion between fusedmlp.MLP and torch.nn.Sequential (PyTorch is imported only when called).

to_torch(model) builds Linear layers (weights transposed to PyTorch's (out, in)) with the hidden
activation module between them, in the model's dtype, on the CPU. The output activation is not
included: it belongs to the loss in fusedmlp (DESIGN.md) as in PyTorch, so the module returns
logits — pair it with nn.CrossEntropyLoss, nn.BCEWithLogitsLoss or nn.MSELoss.

from_torch(module, **mlp_kwargs) reads an nn.Sequential of Linear layers (with biases) separated
by one activation type (ReLU, Tanh, Sigmoid, GELU, GELU(approximate="tanh"), LeakyReLU(0.01),
Identity, or nothing, which is identity) and returns an MLP with those parameters.
"""

from __future__ import annotations

import numpy as np

from .mlp import MLP

_DTYPES = ("float32", "float64")


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            "fusedmlp's PyTorch conversion needs torch, which could not be imported "
            f"({error}); install it with pip (e.g. the CPU build: "
            "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from error
    return torch


def _activation_module(nn, activation):
    return {
        "identity": nn.Identity,
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "gelu": nn.GELU,
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
    }[activation]()


def to_torch(model):
    """An nn.Sequential computing model's logits: Linear, activation, ..., Linear (no output
    activation). Parameters are copies in the model's dtype; the MLP is unchanged."""
    if not isinstance(model, MLP):
        raise TypeError(f"model: expected a fusedmlp.MLP; got {type(model).__name__}")
    torch = _import_torch()
    nn = torch.nn
    dtype = getattr(torch, model.dtype.name)
    layers = []
    weights, biases = model.weights, model.biases
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        if index > 0:
            layers.append(_activation_module(nn, model.activation))
        linear = nn.Linear(weight.shape[0], weight.shape[1], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
            linear.bias.copy_(torch.from_numpy(bias))
        layers.append(linear)
    return nn.Sequential(*layers)


def _activation_name(torch, layer, index):
    """fusedmlp's name of a supported activation module; ValueError for any other layer."""
    nn = torch.nn
    if isinstance(layer, nn.Identity):
        return "identity"
    if isinstance(layer, nn.ReLU):
        return "relu"
    if isinstance(layer, nn.Tanh):
        return "tanh"
    if isinstance(layer, nn.Sigmoid):
        return "sigmoid"
    if isinstance(layer, nn.GELU):
        if layer.approximate == "none":
            return "gelu"
        if layer.approximate == "tanh":
            return "gelu_tanh"
    if isinstance(layer, nn.LeakyReLU):
        if layer.negative_slope == 0.01:
            return "leaky_relu"
        raise ValueError(f"module[{index}]: LeakyReLU(negative_slope={layer.negative_slope}) is not supported; "
                         "fusedmlp's leaky_relu has slope 0.01")
    raise ValueError(
        f"module[{index}]: {layer!r} is not supported; expected Linear layers separated by one of "
        "Identity, ReLU, Tanh, Sigmoid, GELU, GELU(approximate='tanh'), LeakyReLU(0.01)"
    )


def from_torch(module, **mlp_kwargs):
    """An MLP with module's parameters (copied) and activation.

    module: an nn.Sequential of nn.Linear layers (bias=True) separated by activation modules
    of one type, or a single nn.Linear. mlp_kwargs go to MLP: loss, backend, seed, and dtype
    (default: the Linear layers' dtype, float32 or float64)."""
    torch = _import_torch()
    nn = torch.nn
    for name in ("layer_sizes", "activation"):
        if name in mlp_kwargs:
            raise TypeError(f"{name}: from_torch reads it from the module; do not pass it")
    if isinstance(module, nn.Linear):
        module = nn.Sequential(module)
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"module: expected a torch.nn.Sequential (or nn.Linear); got {type(module).__name__}")
    layers = list(module)
    if not layers:
        raise ValueError("module: expected at least one nn.Linear layer; got an empty nn.Sequential")
    if not isinstance(layers[0], nn.Linear):
        raise ValueError(f"module[0]: expected an nn.Linear first; got {layers[0]!r}")
    if not isinstance(layers[-1], nn.Linear):
        raise ValueError(
            f"module[{len(layers) - 1}]: expected an nn.Linear last; got {layers[-1]!r}. fusedmlp's output "
            "activation belongs to the loss: drop the module and pass loss='cross_entropy' (softmax), "
            "'bce' (sigmoid) or 'mse' (identity)")

    linears, activations = [], []
    pending = None  # the activation seen since the last Linear
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            if linears:
                activations.append((pending or "identity", index))
            if layer.bias is None:
                raise ValueError(f"module[{index}]: Linear layers need a bias (bias=True); this one has none")
            if linears and layer.in_features != linears[-1].out_features:
                raise ValueError(f"module[{index}]: Linear has in_features={layer.in_features} but the previous "
                                 f"Linear has out_features={linears[-1].out_features}")
            linears.append(layer)
            pending = None
        else:
            name = _activation_name(torch, layer, index)
            if pending is not None:
                raise ValueError(f"module[{index}]: two activations in a row ({pending}, {name}); expected one "
                                 "between consecutive Linear layers")
            pending = name
    names = {name for name, _ in activations}
    if len(names) > 1:
        listed = ", ".join(f"{name} before module[{index}]" for name, index in activations)
        raise ValueError(f"module: fusedmlp uses one hidden activation for every layer; got {listed}")
    activation = names.pop() if names else "relu"

    dtypes = {str(layer.weight.dtype).replace("torch.", "") for layer in linears} | \
             {str(layer.bias.dtype).replace("torch.", "") for layer in linears}
    if "dtype" not in mlp_kwargs:
        if len(dtypes) > 1:
            raise ValueError(f"module: parameters of several dtypes ({', '.join(sorted(dtypes))}); "
                             "pass dtype= to choose one")
        (dtype,) = dtypes
        if dtype not in _DTYPES:
            raise ValueError(f"module: parameters of dtype {dtype} are not supported; expected float32 or "
                             "float64, or pass dtype= to convert")
        mlp_kwargs["dtype"] = dtype

    def numpy_of(tensor):
        return tensor.detach().to("cpu", torch.float64).numpy()

    layer_sizes = [linears[0].in_features] + [layer.out_features for layer in linears]
    model = MLP(layer_sizes, activation=activation, **mlp_kwargs)
    model.set_parameters([numpy_of(layer.weight).T for layer in linears], [numpy_of(layer.bias) for layer in linears])
    return model
