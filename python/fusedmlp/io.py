"""Model files: a NumPy .npz archive (a zip whose members carry CRC-32 checksums) holding a
JSON description and one array per parameter. Nothing in it is pickled, and it is read with
allow_pickle=False, so loading a file never runs code from it.

Members: "meta" (UTF-8 JSON as uint8: format, format_version, library_version, layer_sizes,
activation, loss, dtype, rng_state), "W0".."W{L-1}", "b0".."b{L-1}".
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fusedmlp-model"
FORMAT_VERSION = 1


def save(net, path):
    """Write net to path atomically: a temporary file in the same folder, renamed into place."""
    from . import __version__

    path = os.fspath(path)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "layer_sizes": net.layer_sizes,
        "activation": net.activation,
        "loss": net.loss,
        "dtype": net.dtype.name,
        "rng_state": net._rng.bit_generator.state,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = w, b
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".fusedmlp-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _bad_file(path, why):
    return ValueError(f"path: {path!r} is not a readable fusedmlp model file: {why}")


def load(path, backend="cpu"):
    """Read a model written by MLP.save; backend chooses where it runs ("cpu" or "numpy")."""
    from .mlp import MLP

    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            members = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise _bad_file(path, f"{type(error).__name__}: {error}") from None
    try:
        meta = json.loads(members.pop("meta").tobytes().decode("utf-8"))
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _bad_file(path, f"no valid description ({type(error).__name__}: {error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad_file(path, "the description does not name the fusedmlp model format")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise _bad_file(path, f"format version {version!r}; this library reads versions 1 to {FORMAT_VERSION}")
    try:
        net = MLP(meta["layer_sizes"], activation=meta["activation"], loss=meta["loss"], backend=backend,
                  dtype=meta["dtype"])
        layers = len(net.layer_sizes) - 1
        expected = {f"W{l}" for l in range(layers)} | {f"b{l}" for l in range(layers)}
        if set(members) != expected:
            raise ValueError(f"parameter arrays {sorted(members)}, expected {sorted(expected)}")
        net.set_parameters([members[f"W{l}"] for l in range(layers)], [members[f"b{l}"] for l in range(layers)])
        net._rng.bit_generator.state = meta["rng_state"]
    except (KeyError, TypeError, ValueError) as error:
        raise _bad_file(path, f"{type(error).__name__}: {error}") from None
    return net
