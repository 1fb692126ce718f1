"""fusedmlp: multilayer perceptrons trained by fused native kernels, checked against NumPy."""

from . import datasets, reference, schedules
from .backends import BACKENDS, native_available
from .cuda_backend import cuda_available, cuda_unavailable_reason
from .datasets import DATASETS, load_dataset
from .errors import DivergenceError
from .history import EpochInfo, History
from .io import load
from .mlp import MLP
from .reference import ACTIVATIONS, LOSSES
from .runtime import available_isas, cpu_isa, get_num_threads, set_num_threads
from .torch_interop import from_torch, to_torch

__version__ = "0.1.0"

__all__ = ["MLP", "History", "EpochInfo", "DivergenceError", "load", "reference", "schedules", "datasets", "DATASETS", "load_dataset", "ACTIVATIONS",
           "LOSSES", "BACKENDS", "native_available", "cuda_available", "cuda_unavailable_reason", "to_torch", "from_torch", "set_num_threads",
           "get_num_threads", "cpu_isa", "available_isas", "__version__"]
