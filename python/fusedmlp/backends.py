"""The compute backends behind MLP. The MLP chooses one once, by name; each offers the same
small interface over arrays already validated and converted by the MLP:

    get_parameters() -> (weights, biases)          copies
    set_parameters(weights, biases)                copies in
    logits(X) / outputs(X)                         last layer, before / after its activation
    loss_and_grad(X, y) -> (loss, dW, db)
    reset_optimizer()                              the next step starts fresh momentum
    get_optimizer_state() -> (w_momentum, b_momentum, started)   copies; zeros before momentum
    set_optimizer_state(w_momentum, b_momentum, started)
    release_training_set()                         the end of a fit: forget any copy of X and y
    train_epoch(X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay)
        -> (step_loss, diverged): the loss of each step that ran, parameters updated in place.
        A step diverges when its loss or a parameter value it would write is non-finite; it is
        not applied (parameters and momentum stay as before it), its loss is the last entry of
        step_loss, and the epoch stops there.

A backend that runs epochs asynchronously (cuda) also offers train_epoch in two halves, so that
MLP.fit draws the next epoch's shuffle while the device trains:

    start_epoch(X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay)
    finish_epoch() -> (step_loss, diverged)
"""

from __future__ import annotations

import numpy as np

from . import reference
from ._native_network import NativeNetworkBackend
from .cuda_backend import CudaBackend

try:
    from . import _native
except ImportError as error:
    if "FUSEDMLP_ISA" in str(error):  # the module is there, the user's setting is wrong: say so
        raise
    _native = None  # a source tree that was never built
    _NATIVE_IMPORT_ERROR = error
else:
    _NATIVE_IMPORT_ERROR = None

BACKENDS = ("numpy", "cpu", "cuda")


def native_available():
    """Whether the compiled CPU backend could be imported."""
    return _native is not None


def require_native(what):
    """The native module, or an ImportError saying why `what` cannot run."""
    if _native is None:
        raise ImportError(
            f"{what}: fusedmlp's native module is not built ({_NATIVE_IMPORT_ERROR}); install the package "
            "with pip, or use backend='numpy'"
        )
    return _native


class NumpyBackend:
    """The reference: every op from fusedmlp.reference, in NumPy."""

    def __init__(self, layer_sizes, activation, loss, dtype):
        self._activation, self._loss = activation, loss
        self._weights = [np.zeros((a, b), dtype) for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
        self._biases = [np.zeros(b, dtype) for b in layer_sizes[1:]]
        self.reset_optimizer()

    def get_parameters(self):
        return [w.copy() for w in self._weights], [b.copy() for b in self._biases]

    def set_parameters(self, weights, biases):
        self._weights = [w.copy() for w in weights]
        self._biases = [b.copy() for b in biases]

    def logits(self, X):
        return reference.network_logits(self._weights, self._biases, self._activation, X)

    def outputs(self, X):
        return reference.output_activation(self._loss, self.logits(X))

    def loss_and_grad(self, X, y):
        return reference.network_loss_and_grad(self._weights, self._biases, self._activation, self._loss, X, y)

    def reset_optimizer(self):
        self._w_momentum = [np.zeros_like(w) for w in self._weights]
        self._b_momentum = [np.zeros_like(b) for b in self._biases]
        self._first_step = True

    def get_optimizer_state(self):
        return ([b.copy() for b in self._w_momentum], [b.copy() for b in self._b_momentum],
                not self._first_step)

    def set_optimizer_state(self, w_momentum, b_momentum, started):
        self._w_momentum = [b.copy() for b in w_momentum]
        self._b_momentum = [b.copy() for b in b_momentum]
        self._first_step = not started

    def release_training_set(self):
        """Nothing is kept between fits: every epoch reads X and y where they are."""

    def train_epoch(self, X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay):
        with np.errstate(over="ignore", invalid="ignore"):  # a divergence is reported, not warned about
            step_loss, diverged = reference.train_epoch(
                self._weights, self._biases, self._w_momentum, self._b_momentum, self._activation, self._loss,
                X, y, order, lrs, batch_size, drop_last, momentum, nesterov, weight_decay, self._first_step)
        applied = len(step_loss) - int(diverged)
        self._first_step = self._first_step and applied == 0
        return step_loss, diverged


class CpuBackend(NativeNetworkBackend):
    """The native kernels: parameters, optimizer state and workspace live in C++, and each
    epoch runs there whole with the GIL released."""

    def __init__(self, layer_sizes, activation, loss, dtype):
        require_native("backend='cpu'")
        net_class = _native.MlpFloat32 if np.dtype(dtype).name == "float32" else _native.MlpFloat64
        self._net = net_class(list(layer_sizes), activation, loss)
        self._layers = len(layer_sizes) - 1
        self._loss = loss

    def outputs(self, X):
        return _native.output_activation(self._loss, self.logits(X))

    def get_optimizer_state(self):
        layers = [self._net.get_optimizer_state(l) for l in range(self._layers)]
        started = bool(layers[0][2])
        return [w for w, _, _ in layers], [b for _, b, _ in layers], started

    def set_optimizer_state(self, w_momentum, b_momentum, started):
        for l, (w, b) in enumerate(zip(w_momentum, b_momentum)):
            self._net.set_optimizer_state(l, w, b, bool(started))

    def release_training_set(self):
        """Nothing is kept between fits: every epoch reads X and y where they are."""

    def train_epoch(self, X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay):
        return self._net.train_epoch(X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay)


_BACKEND_CLASSES = {"numpy": NumpyBackend, "cpu": CpuBackend, "cuda": CudaBackend}


def make_backend(name, layer_sizes, activation, loss, dtype):
    return _BACKEND_CLASSES[name](layer_sizes, activation, loss, dtype)
