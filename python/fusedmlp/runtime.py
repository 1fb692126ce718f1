"""Controls of the native CPU backend's runtime: how many threads its kernels use and which
instruction set they run. Results do not depend on either's thread count; the instruction set
changes only rounding (within DESIGN.md's tolerances)."""

from __future__ import annotations

from ._validation import check_int
from .backends import require_native


def set_num_threads(n):
    """Use at most n threads in the native kernels (like torch.set_num_threads); the default is
    OMP_NUM_THREADS, else the number of cores. Small products always run on one thread."""
    require_native("set_num_threads").set_num_threads(check_int("n", n, 1))


def get_num_threads():
    """The most threads the native kernels use."""
    return require_native("get_num_threads").get_num_threads()


def cpu_isa():
    """The instruction set the native kernels use now: "avx512", "avx2" or "generic". Chosen
    at import from what the CPU supports; FUSEDMLP_ISA=avx512|avx2|generic forces one."""
    return require_native("cpu_isa").isa()


def available_isas():
    """The instruction sets this CPU and build can run, from the most portable to the fastest."""
    return list(require_native("available_isas").available_isas())
