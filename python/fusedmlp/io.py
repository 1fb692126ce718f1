"""Model files: a NumPy .npz archive (a zip whose members carry CRC-32 checksums) holding a
JSON description and one array per parameter. Nothing in it is pickled, and it is read with
allow_pickle=False, so loading a file never runs code from it.

Members: "meta" (UTF-8 JSON as uint8: format, format_version, library_version, layer_sizes,
activation, loss, dtype, rng_state, optimizer), "W0".."W{L-1}", "b0".."b{L-1}", and when the
optimizer state was saved (meta "optimizer" is then {"started": bool, "global_step": int}
instead of null) the momentum buffers "mW0".."mW{L-1}", "mb0".."mb{L-1}".

Format versions: 1 (no optimizer field, no momentum members) and 2 (the current one). load()
reads both; a file of a newer version is refused with a ValueError.

load() reports every defect of a file's content (not a zip, truncated, a checksum that does
not match, a description or arrays that do not fit together, a newer format version) as a
ValueError naming the path; a path that cannot be opened keeps its OSError
(FileNotFoundError, IsADirectoryError, PermissionError).
"""

from __future__ import annotations

import json
import os
import secrets

import numpy as np

from ._validation import INT_MAX, _describe, check_bool, check_choice, check_layer_sizes
from .backends import BACKENDS

FORMAT = "fusedmlp-model"
FORMAT_VERSION = 2


def _check_path(path):
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"path: expected a str, bytes or os.PathLike file name; got {_describe(path)}") from None


def _fsync_folder(folder):
    """Make a rename into folder durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def save(net, path, include_optimizer=False):
    """Write net to path atomically: a temporary file in the same folder, renamed into place.

    Either path holds the complete new file afterwards or (when an error is raised) it is as it
    was before; no temporary file is left behind. The new file gets the permissions an ordinary
    new file would get (0o666 less the umask).

    include_optimizer: also store the momentum buffers, whether the optimizer has started, and
    the schedule's global step counter, so that partial_fit after load continues exactly.
    """
    from . import __version__

    given = os.fsdecode(_check_path(path))  # one type (str) for every os call below
    path = os.path.abspath(given)
    include_optimizer = check_bool("include_optimizer", include_optimizer)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "layer_sizes": net.layer_sizes,
        "activation": net.activation,
        "loss": net.loss,
        "dtype": net.dtype.name,
        "rng_state": net._rng.bit_generator.state,
        "optimizer": None,
    }
    arrays = {"meta": None}  # first in the archive; filled in once the description is complete
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = w, b
    if include_optimizer:
        w_momentum, b_momentum, started = net._backend.get_optimizer_state()
        meta["optimizer"] = {"started": bool(started), "global_step": int(getattr(net, "_global_step", 0))}
        for l, (w, b) in enumerate(zip(w_momentum, b_momentum)):
            arrays[f"mW{l}"], arrays[f"mb{l}"] = w, b
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    folder, name = os.path.split(path)
    # Created by hand rather than by tempfile.mkstemp, whose 0o600 mode the rename would keep.
    while True:
        temporary = os.path.join(folder, f".{name[:64]}.{secrets.token_hex(6)}.tmp")  # short: NAME_MAX
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            # A missing folder, no permission, a read-only file system: name the path asked for,
            # not the temporary file.
            raise type(error)(error.errno, error.strerror, given) from None
        break
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def _bad_file(path, why):
    return ValueError(f"path: {path!r} is not a readable fusedmlp model file: {why}")


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a first member, or an empty archive


def _read_members(file):
    """Every member of the npz archive in the open file, as arrays (never unpickled)."""
    magic = file.read(4)
    if magic not in _ZIP_MAGIC:
        why = "the file is empty" if not magic else f"it starts with {magic!r}"
        raise ValueError(f"not an .npz (zip) archive: {why}")
    file.seek(0)
    archive = np.load(file, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive
        raise ValueError("a single .npy array, not an .npz archive")
    with archive:
        members = {name: archive[name] for name in archive.files}
    for name, value in members.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"member {name!r} is not a .npy array")
    return members


def _read_meta(members):
    meta = members.pop("meta", None)
    if meta is None:
        raise ValueError("no description (member 'meta'); this is not a fusedmlp model file")
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise ValueError(f"the description (member 'meta') is not UTF-8 bytes: {_describe(meta)}")
    meta = json.loads(meta.tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("the description does not name the fusedmlp model format")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"format version {version!r}; this library reads versions 1 to {FORMAT_VERSION}")
    for key in ("layer_sizes", "activation", "loss", "dtype", "rng_state") + (("optimizer",) if version >= 2 else ()):
        if key not in meta:
            raise ValueError(f"the description has no {key!r}")
    optimizer = meta.get("optimizer")
    if optimizer is not None:
        if not isinstance(optimizer, dict) or set(optimizer) != {"started", "global_step"}:
            raise ValueError(f"the optimizer description {optimizer!r} is not {{'started': ..., 'global_step': ...}}")
        if not isinstance(optimizer["started"], bool):
            raise ValueError(f"the optimizer's 'started' is {optimizer['started']!r}, not true or false")
        step = optimizer["global_step"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= INT_MAX:
            raise ValueError(f"the optimizer's 'global_step' is {step!r}, not an integer in [0, 2**63)")
    return meta


def _check_arrays(meta, members):
    """The parameter arrays are exactly W0, b0, ... with the shapes layer_sizes gives. Checked
    before a model is built, so that a damaged description can never make one huge."""
    sizes = check_layer_sizes(meta["layer_sizes"])
    layers = len(sizes) - 1
    prefixes = ("", "m") if meta.get("optimizer") is not None else ("",)
    expected = {f"{p}{a}{l}" for p in prefixes for a in ("W", "b") for l in range(layers)}
    if set(members) != expected:
        raise ValueError(f"arrays {sorted(members)}, expected {sorted(expected)}")
    for prefix in prefixes:
        for l in range(layers):
            for name, shape in ((f"{prefix}W{l}", (sizes[l], sizes[l + 1])), (f"{prefix}b{l}", (sizes[l + 1],))):
                if members[name].shape != shape:
                    raise ValueError(f"array {name} has shape {members[name].shape}, expected {shape}")
                if members[name].dtype.name != meta["dtype"]:
                    raise ValueError(f"array {name} has dtype {members[name].dtype}, expected {meta['dtype']!r}")
                if not np.isfinite(members[name]).all():
                    raise ValueError(f"array {name} holds NaN or infinite values")
    return sizes


def load(path, backend="cpu"):
    """Read a model written by MLP.save; backend chooses where it runs ("cpu" or "numpy")."""
    from .mlp import MLP

    path = _check_path(path)
    backend = check_choice("backend", backend, BACKENDS)
    with open(path, "rb") as file:  # FileNotFoundError and the like stay what they are
        try:
            members = _read_members(file)
        except MemoryError:
            raise
        except Exception as error:
            # zipfile.BadZipFile (bad CRC, bad header), zlib.error, EOFError, OSError,
            # ValueError (numpy's header checks, pickled data), struct.error, KeyError,
            # UnicodeDecodeError, NotImplementedError (unknown compression), RuntimeError
            # (an "encrypted" flag), ...: whatever a damaged zip makes the readers raise.
            why = str(error) if type(error) is ValueError else f"{type(error).__name__}: {error}"
            raise _bad_file(path, why) from None
    try:
        meta = _read_meta(members)
        sizes = _check_arrays(meta, members)
        net = MLP(sizes, activation=meta["activation"], loss=meta["loss"], backend=backend, dtype=meta["dtype"])
        layers = len(sizes) - 1
        net.set_parameters([members[f"W{l}"] for l in range(layers)], [members[f"b{l}"] for l in range(layers)])
        net._rng.bit_generator.state = meta["rng_state"]
        optimizer = meta.get("optimizer")
        if optimizer is not None:
            net._backend.set_optimizer_state([members[f"mW{l}"] for l in range(layers)],
                                             [members[f"mb{l}"] for l in range(layers)], optimizer["started"])
            net._global_step = optimizer["global_step"]
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        # JSON or UTF-8 decoding, or a description that does not fit the arrays or the MLP
        # (an ImportError for a cpu backend that was never built is not the file's fault).
        raise _bad_file(path, f"{type(error).__name__}: {error}") from None
    return net
