"""The CUDA backend: parameters, optimizer state and the training set live in GPU memory, and
each epoch runs on the device as one launch (see cpp/cuda/). Same interface as the other
backends in fusedmlp.backends.

The compiled module fusedmlp._cuda exists only when the package was built with a CUDA
compiler (FUSEDMLP_CUDA=AUTO or ON); a usable device is needed at run time as well.
cuda_available() says whether both hold and cuda_unavailable_reason() says why not.
"""

from __future__ import annotations

import functools

import numpy as np

from ._native_network import NativeNetworkBackend

try:
    from . import _cuda
except ImportError as error:  # built without CUDA, or a source tree never built
    _cuda = None
    _CUDA_IMPORT_ERROR = error
else:
    _CUDA_IMPORT_ERROR = None

# Elements of X and y compared to tell whether the training set on the device is still the
# one passed in (see CudaBackend._ensure_training_set).
_FINGERPRINT_ELEMENTS = 4096


def cuda_unavailable_reason() -> str:
    """Why backend='cuda' cannot run here; an empty string when it can."""
    if _cuda is None:
        return (
            f"fusedmlp was built without its CUDA module ({_CUDA_IMPORT_ERROR}); reinstall with a CUDA "
            "compiler on PATH, e.g. FUSEDMLP_CUDA=ON pip install ."
        )
    ok, detail = _cuda.device_status()
    return "" if ok else detail


def cuda_available() -> bool:
    """Whether the CUDA module is built and a usable GPU is present."""
    return cuda_unavailable_reason() == ""


@functools.lru_cache(maxsize=8)
def _fingerprint_picks(size):
    # Cached: every epoch of a fit fingerprints arrays of the same sizes.
    picks = np.linspace(0, size - 1, _FINGERPRINT_ELEMENTS).astype(np.int64)
    picks.flags.writeable = False
    return picks


def _fingerprint(array):
    flat = array.reshape(-1)
    if flat.size <= _FINGERPRINT_ELEMENTS:
        return flat.tobytes()
    return flat[_fingerprint_picks(flat.size)].tobytes()


class CudaBackend(NativeNetworkBackend):
    """The CUDA kernels: one device network per model; epochs run whole on the GPU."""

    def __init__(self, layer_sizes, activation, loss, dtype):
        reason = cuda_unavailable_reason()
        if reason:
            error = ImportError if _cuda is None else RuntimeError
            raise error(f"backend='cuda' is unavailable: {reason}. Use backend='cpu' or 'numpy'.")
        net_class = _cuda.MlpFloat32 if np.dtype(dtype).name == "float32" else _cuda.MlpFloat64
        self._net = net_class(list(layer_sizes), activation, loss)
        self._layers = len(layer_sizes) - 1
        self._training_set = None  # (X, y, fingerprint) of the set on the device

    def outputs(self, X):
        return self._net.outputs(X)

    def get_optimizer_state(self):
        layers = [self._net.get_momentum(l) for l in range(self._layers)]
        return [w for w, _ in layers], [b for _, b in layers], bool(self._net.optimizer_started)

    def set_optimizer_state(self, w_momentum, b_momentum, started):
        for l, (w, b) in enumerate(zip(w_momentum, b_momentum)):
            self._net.set_momentum(l, w, b)
        self._net.optimizer_started = bool(started)

    def start_epoch(self, X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay):
        """Queues the epoch on the GPU and returns at once, so that the caller can prepare the next
        one meanwhile; finish_epoch() waits for it and returns what train_epoch would."""
        self._ensure_training_set(X, y)
        self._net.start_epoch(order, int(batch_size), bool(drop_last), np.ascontiguousarray(lrs, dtype=np.float64),
                              float(momentum), bool(nesterov), float(weight_decay))

    def finish_epoch(self):
        step_loss, diverged = self._net.finish_epoch()
        return step_loss, bool(diverged)

    def train_epoch(self, X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay):
        self.start_epoch(X, y, order, batch_size, drop_last, lrs, momentum, nesterov, weight_decay)
        return self.finish_epoch()

    def release_training_set(self):
        """The next fit uploads its training set again, even if it passes the same arrays: their
        contents may have changed in between. (The device buffers are reused by that upload.)"""
        self._training_set = None

    def _ensure_training_set(self, X, y):
        """Uploads (X, y) unless the device already holds them: the same arrays, with the same
        contents at a few thousand evenly spaced places. An epoch loop passes the same arrays
        each time, so a fit uploads its training set once."""
        fingerprint = (X.__array_interface__["data"][0], X.shape, _fingerprint(X), y.shape, _fingerprint(y))
        held = self._training_set
        if held is not None and held[0] is X and held[1] is y and held[2] == fingerprint:
            return
        self._training_set = None
        self._net.upload_training_set(X, y)
        self._training_set = (X, y, fingerprint)
