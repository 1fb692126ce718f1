"""fusedmlp: multilayer perceptrons trained by fused native kernels, checked against NumPy."""

from . import datasets, reference, schedules
from .backends import BACKENDS, native_available
from .datasets import DATASETS, load_dataset
from .errors import DivergenceError
from .history import EpochInfo, History
from .io import load
from .mlp import MLP
from .reference import ACTIVATIONS, LOSSES
from .torch_interop import from_torch, to_torch

__version__ = "0.1.0"

__all__ = ["MLP", "History", "EpochInfo", "DivergenceError", "load", "reference", "schedules", "datasets", "DATASETS", "load_dataset", "ACTIVATIONS",
           "LOSSES", "BACKENDS", "native_available", "to_torch", "from_torch", "__version__"]
