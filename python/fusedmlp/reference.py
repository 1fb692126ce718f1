"""The NumPy reference: the executable specification of every op (see DESIGN.md).

Every native kernel is tested against these functions, and ``backend="numpy"`` trains with
them. They favour plain, obviously-correct NumPy over speed. Arrays keep the dtype they are
given (float32 or float64); scalars are passed as Python floats so that NumPy's promotion
rules never silently widen float32 work to float64.
"""

from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh")
LOSSES = ("mse", "bce", "cross_entropy")

LEAKY_RELU_SLOPE = 0.01
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_COEF = 0.044715
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# NumPy has no erfc; math.erfc is the C library's, the same function the native code calls.
_erfc_elementwise = np.frompyfunc(math.erfc, 1, 1)


def _normal_cdf(z):
    """Phi(z) = 0.5 (1 + erf(z / sqrt 2)), written as 0.5 erfc(-z / sqrt 2), which does not
    cancel for negative z."""
    return (0.5 * _erfc_elementwise(-z.astype(np.float64) * _INV_SQRT_2).astype(np.float64)).astype(z.dtype)


def sigmoid(z):
    """1 / (1 + e^-z) without overflow: exp is only ever taken of -|z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


# --- activations -------------------------------------------------------------------------


def _gelu_tanh_inner(z):
    """u = sqrt(2/pi) (z + 0.044715 z^3). Since 0.5 (1 + tanh u) = sigmoid(2u), gelu_tanh is
    z sigmoid(2u) and its derivative sigmoid(2u) (1 + 2 z sigmoid(-2u) u'): the same functions
    as DESIGN.md writes them, in a form that does not cancel where tanh u is near -1."""
    return _SQRT_2_OVER_PI * (z + _GELU_TANH_COEF * z * z * z)



def activation_forward(name, z):
    """f(z) for a hidden-layer activation."""
    if name == "identity":
        return z.copy()
    if name == "relu":
        return np.maximum(z, 0)
    if name == "leaky_relu":
        return np.where(z > 0, z, z * LEAKY_RELU_SLOPE)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return sigmoid(z)
    if name == "gelu":
        return z * _normal_cdf(z)
    if name == "gelu_tanh":
        return z * sigmoid(2 * _gelu_tanh_inner(z))
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def activation_derivative(name, z, h):
    """f'(z), given z and h = f(z) (tanh and sigmoid use h, the others z)."""
    if name == "identity":
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1, LEAKY_RELU_SLOPE).astype(z.dtype)
    if name == "tanh":
        return 1 - h * h
    if name == "sigmoid":
        return h * (1 - h)
    if name == "gelu":
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
        return _normal_cdf(z) + z * pdf
    if name == "gelu_tanh":
        u = _gelu_tanh_inner(z)
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_TANH_COEF * z * z)
        return sigmoid(2 * u) * (1 + 2 * z * sigmoid(-2 * u) * du)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


# --- dense layer ---------------------------------------------------------------------------


def dense_forward(x, W, b, activation):
    """z = x @ W + b and h = f(z); returns (z, h), both kept for the backward pass."""
    z = x @ W + b
    return z, activation_forward(activation, z)


def dense_backward(dh, x, W, z, h, activation, need_dx=True):
    """Backward of dense_forward given dL/dh; returns (dx or None, dW, db)."""
    dz = dh * activation_derivative(activation, z, h)
    dW = x.T @ dz
    db = dz.sum(axis=0)
    dx = dz @ W.T if need_dx else None
    return dx, dW, db


# --- losses --------------------------------------------------------------------------------


def loss_and_grad(loss, z, y):
    """Mean loss over the batch and dL/dz for the logits z (n, k).

    y: int64 class indices (n,) for cross_entropy, else targets of z's dtype shaped (n, k).
    The value is accumulated in float64; the gradient keeps z's dtype.
    """
    n, k = z.shape
    if loss == "mse":
        diff = z - y
        value = np.sum(diff * diff, dtype=np.float64) / (n * k)
        return float(value), diff * (2.0 / (n * k))
    if loss == "bce":
        terms = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        value = np.sum(terms, dtype=np.float64) / (n * k)
        return float(value), (sigmoid(z) - y) * (1.0 / (n * k))
    if loss == "cross_entropy":
        rows = np.arange(n)
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=1, keepdims=True)
        logsumexp = (m + np.log(s))[:, 0]
        value = np.sum(logsumexp - z[rows, y], dtype=np.float64) / n
        grad = e / s
        grad[rows, y] -= 1
        return float(value), grad * (1.0 / n)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def output_activation(loss, z):
    """What forward() returns for the logits z: identity, sigmoid or softmax."""
    if loss == "mse":
        return z.copy()
    if loss == "bce":
        return sigmoid(z)
    if loss == "cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


# --- SGD -----------------------------------------------------------------------------------


def sgd_update(param, grad, buf, lr, momentum, nesterov, weight_decay, first_step):
    """One SGD step on param in place (PyTorch's convention); buf is the momentum buffer,
    updated in place and unused when momentum == 0."""
    lr, momentum, weight_decay = float(lr), float(momentum), float(weight_decay)
    g = grad + weight_decay * param if weight_decay != 0 else grad
    if momentum != 0:
        if first_step:
            buf[...] = g
        else:
            buf *= momentum
            buf += g
        g = g + momentum * buf if nesterov else buf
    param -= lr * g


# --- initialisation ------------------------------------------------------------------------

_HE_ACTIVATIONS = ("relu", "leaky_relu", "gelu", "gelu_tanh")


def init_parameters(layer_sizes, activation, rng, dtype, init="auto"):
    """Uniform initial weights drawn layer by layer from rng in float64, then cast; biases 0.

    init="auto": He-uniform U(+-sqrt(6 / fan_in)) for hidden layers with rectifier-like
    activations, Glorot-uniform U(+-sqrt(6 / (fan_in + fan_out))) for the other hidden layers
    and always for the output layer. "he_uniform" / "glorot_uniform" force one rule on every
    hidden layer.
    """
    weights, biases = [], []
    last = len(layer_sizes) - 2
    he_hidden = init == "he_uniform" or (init == "auto" and activation in _HE_ACTIVATIONS)
    for l, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        if l < last and he_hidden:
            bound = math.sqrt(6.0 / fan_in)
        else:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
        biases.append(np.zeros(fan_out, dtype=dtype))
    return weights, biases


# --- whole network -------------------------------------------------------------------------


def network_logits(weights, biases, activation, x):
    """Logits of the last layer; hidden layers apply the activation, the last is linear."""
    h = x
    for l, (W, b) in enumerate(zip(weights, biases)):
        act = activation if l < len(weights) - 1 else "identity"
        _, h = dense_forward(h, W, b, act)
    return h


def network_loss_and_grad(weights, biases, activation, loss, x, y):
    """Mean loss and the gradients of every layer's W and b for one batch."""
    last = len(weights) - 1
    inputs, zs, hs = [], [], []
    h = x
    for l, (W, b) in enumerate(zip(weights, biases)):
        inputs.append(h)
        z, h = dense_forward(h, W, b, activation if l < last else "identity")
        zs.append(z)
        hs.append(h)
    value, dh = loss_and_grad(loss, zs[-1], y)
    dWs, dbs = [None] * len(weights), [None] * len(weights)
    for l in range(last, -1, -1):
        act = activation if l < last else "identity"
        dh, dWs[l], dbs[l] = dense_backward(dh, inputs[l], weights[l], zs[l], hs[l], act, need_dx=l > 0)
    return value, dWs, dbs


def batch_bounds(n, batch_size, drop_last):
    """(start, stop) of each batch of one epoch."""
    stop = n - n % batch_size if drop_last else n
    return [(s, min(s + batch_size, n)) for s in range(0, stop, batch_size)]


def train_epoch(weights, biases, w_bufs, b_bufs, activation, loss, x, y, order, lrs,
                batch_size, drop_last, momentum, nesterov, weight_decay, first_step):
    """One epoch of mini-batch SGD over the batches of x[order], replacing the entries of
    weights, biases and (with momentum) the buffer lists as each step completes; first_step says
    whether the momentum buffers are still unset.

    Returns (step_loss, diverged). A step diverges when its loss or any parameter value it
    would write is non-finite; it is then not applied, the epoch stops, and its loss is the
    last entry of step_loss."""
    bounds = batch_bounds(len(order), batch_size, drop_last)
    if len(lrs) != len(bounds):
        raise ValueError(f"lrs: expected {len(bounds)} learning rates, got {len(lrs)}")
    step_loss = np.empty(len(bounds))
    for step, (start, stop) in enumerate(bounds):
        rows = order[start:stop]
        value, dWs, dbs = network_loss_and_grad(weights, biases, activation, loss, x[rows], y[rows])
        step_loss[step] = value
        updated = _sgd_step_out_of_place(weights, biases, w_bufs, b_bufs, dWs, dbs, lrs[step], momentum,
                                         nesterov, weight_decay, first_step) if np.isfinite(value) else None
        if updated is None:
            return step_loss[:step + 1], True
        for target, values in zip((weights, biases, w_bufs, b_bufs), updated):
            target[:] = values
        first_step = False
    return step_loss, False


def _sgd_step_out_of_place(weights, biases, w_bufs, b_bufs, dWs, dbs, lr, momentum, nesterov, weight_decay,
                           first_step):
    """The SGD update of every layer into new arrays, or None if any new parameter is not finite."""
    new_w, new_b = [W.copy() for W in weights], [b.copy() for b in biases]
    new_wbuf = [buf.copy() for buf in w_bufs] if momentum != 0 else list(w_bufs)
    new_bbuf = [buf.copy() for buf in b_bufs] if momentum != 0 else list(b_bufs)
    for l in range(len(weights)):
        sgd_update(new_w[l], dWs[l], new_wbuf[l], lr, momentum, nesterov, weight_decay, first_step)
        sgd_update(new_b[l], dbs[l], new_bbuf[l], lr, momentum, nesterov, 0.0, first_step)
        if not (np.isfinite(new_w[l]).all() and np.isfinite(new_b[l]).all()):
            return None
    return new_w, new_b, new_wbuf, new_bbuf
