"""Model files: exact round trips, no pickle, atomic saves, and a clear ValueError for every
damaged or foreign file."""

import io
import json
import os
import re
import sys
import zipfile

import numpy as np
import pytest

import fusedmlp as fm
import fusedmlp.io
from fusedmlp import MLP

BACKENDS = ("numpy", "cpu")
DTYPES = ("float32", "float64")
LOSSES = ("mse", "bce", "cross_entropy")
ACTIVATION = {"mse": "tanh", "bce": "gelu", "cross_entropy": "relu"}

_rng = np.random.default_rng(42)
X = _rng.normal(size=(24, 5))
TARGETS = {
    "mse": _rng.normal(size=(24, 3)),
    "bce": (_rng.random((24, 3)) > 0.5).astype(np.float64),
    "cross_entropy": np.arange(24) % 3,
}


def trained(backend="numpy", dtype="float64", loss="cross_entropy", sizes=(5, 6, 4, 3), seed=3):
    """A model whose parameters and generator have moved away from their initial state."""
    net = MLP(list(sizes), activation=ACTIVATION[loss], loss=loss, backend=backend, dtype=dtype, seed=seed)
    net.fit(X, TARGETS[loss], epochs=2, batch_size=5, lr=0.05, momentum=0.9)
    return net


def a_fit(net):
    return net.fit(X, TARGETS[net.loss], epochs=3, batch_size=4, lr=0.1, momentum=0.5, shuffle=True)


def assert_same_model(loaded, original, backend=None):
    assert loaded.layer_sizes == original.layer_sizes
    assert loaded.activation == original.activation
    assert loaded.loss == original.loss
    assert loaded.dtype == original.dtype
    if backend is not None:
        assert loaded.backend == backend
    assert len(loaded.weights) == len(original.weights) and len(loaded.biases) == len(original.biases)
    for got, want in zip(loaded.weights + loaded.biases, original.weights + original.biases):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()  # bit-identical
    assert loaded._rng.bit_generator.state == original._rng.bit_generator.state


def bad_file_error(path):
    """What a damaged file must raise: a ValueError whose message names the path."""
    prefix = f"path: {os.fspath(path)!r} is not a readable fusedmlp model file: "
    return pytest.raises(ValueError, match="^" + re.escape(prefix))


def _members(path):
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _rewrite(source, target, change_meta=None, change_arrays=None):
    """Copy the model file source to target with its description or arrays changed."""
    members = _members(source)
    meta = json.loads(members.pop("meta").tobytes().decode("utf-8"))
    if change_meta is not None:
        change_meta(meta)
    if change_arrays is not None:
        change_arrays(members)
    members["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with open(target, "wb") as file:
        np.savez(file, **members)
    return target


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_is_exact(tmp_path, backend, dtype, loss):
    original = trained(backend, dtype, loss)
    path = tmp_path / "model.npz"
    original.save(path)
    loaded = fm.load(path, backend=backend)
    assert_same_model(loaded, original, backend)
    np.testing.assert_array_equal(loaded.forward(X), original.forward(X))
    np.testing.assert_array_equal(loaded.predict(X), original.predict(X))
    assert loaded.score(X, TARGETS[loss]) == original.score(X, TARGETS[loss])
    # The generator was restored: the same shuffled fit on both gives the same model.
    history, want = a_fit(loaded), a_fit(original)
    np.testing.assert_array_equal(history.step_loss, want.step_loss)
    assert_same_model(loaded, original, backend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("saved_on, loaded_on", [("cpu", "numpy"), ("numpy", "cpu")])
def test_a_file_loads_on_the_other_backend(tmp_path, saved_on, loaded_on, dtype):
    original = trained(saved_on, dtype, "cross_entropy")
    original.save(tmp_path / "model.npz")
    loaded = fm.load(tmp_path / "model.npz", backend=loaded_on)
    assert_same_model(loaded, original, loaded_on)
    tolerance = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(loaded.forward(X), original.forward(X), rtol=0, atol=tolerance)


def test_load_defaults_to_the_cpu_backend(tmp_path):
    trained("numpy").save(tmp_path / "model.npz")
    assert fm.load(tmp_path / "model.npz").backend == "cpu"


def test_an_untrained_single_layer_model_round_trips(tmp_path):
    original = MLP([3, 1], loss="bce", backend="cpu", dtype="float32", seed=0)
    original.save(str(tmp_path / "m.npz"))
    assert_same_model(fm.load(str(tmp_path / "m.npz"), backend="cpu"), original, "cpu")


def test_saving_does_not_change_the_model(tmp_path):
    net, twin = trained("cpu"), trained("cpu")
    net.save(tmp_path / "model.npz")
    assert_same_model(net, twin)
    np.testing.assert_array_equal(a_fit(net).step_loss, a_fit(twin).step_loss)


# --- the file ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_file_holds_no_pickle(tmp_path, backend):
    net = trained(backend, "float32")
    path = tmp_path / "model.npz"
    net.save(path)
    members = _members(path)  # allow_pickle=False: would raise on any pickled member
    assert set(members) == {"meta", "W0", "b0", "W1", "b1", "W2", "b2"}
    assert all(a.dtype != object for a in members.values())
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        assert members[f"W{l}"].tobytes() == w.tobytes() and members[f"W{l}"].dtype == np.float32
        assert members[f"b{l}"].tobytes() == b.tobytes()
    meta = json.loads(members["meta"].tobytes().decode("utf-8"))
    assert meta["format"] == "fusedmlp-model" and meta["format_version"] == 2
    assert meta["optimizer"] is None
    assert meta["layer_sizes"] == [5, 6, 4, 3] and meta["dtype"] == "float32"
    assert meta["library_version"] == fm.__version__
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == sorted(f"{name}.npy" for name in members)


def test_save_writes_exactly_the_path_given(tmp_path):
    """np.savez appends ".npz" to names without it; save must not."""
    net = trained()
    net.save(tmp_path / "model.bin")
    net.save(os.fsencode(tmp_path / "bytes-name"))
    assert sorted(os.listdir(tmp_path)) == ["bytes-name", "model.bin"]
    assert_same_model(fm.load(tmp_path / "model.bin", backend="numpy"), net)
    assert_same_model(fm.load(os.fsencode(tmp_path / "bytes-name"), backend="numpy"), net)


def test_save_is_atomic_and_replaces(tmp_path):
    first, second = trained(seed=1), trained(seed=2, loss="mse")
    path = tmp_path / "model.npz"
    first.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]
    second.save(path)  # an existing file is replaced
    assert os.listdir(tmp_path) == ["model.npz"]
    assert_same_model(fm.load(path, backend="numpy"), second)


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    old, new = trained(seed=1), trained(seed=2)
    path = tmp_path / "model.npz"
    old.save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fusedmlp.io.np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    assert path.read_bytes() == before


def test_saving_onto_a_folder_fails_and_leaves_no_temporary(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        trained().save(tmp_path / "folder")
    assert os.listdir(tmp_path) == ["folder"] and os.listdir(tmp_path / "folder") == []


def test_saving_into_a_missing_folder_is_file_not_found(tmp_path):
    path = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError) as info:
        trained().save(path)
    assert info.value.filename == os.fspath(path)  # the path given, not the temporary file
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="POSIX permissions; root ignores them")
def test_saving_into_a_read_only_folder_is_permission_error(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as info:
            trained().save(folder / "model.npz")
    finally:
        folder.chmod(0o755)
    assert info.value.filename == os.fspath(folder / "model.npz")
    assert os.listdir(folder) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_saved_file_gets_ordinary_permissions(tmp_path):
    """Not the 0o600 of a temporary file: what open() would have given."""
    umask = os.umask(0o022)
    try:
        trained().save(tmp_path / "model.npz")
        with open(tmp_path / "plain", "wb"):
            pass
    finally:
        os.umask(umask)
    assert (tmp_path / "model.npz").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o644


# --- damaged and foreign files -------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small saved model (float32, cpu) and its bytes."""
    net = trained("cpu", "float32", "bce", sizes=(5, 4, 3))
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    net.save(path)
    return net, path.read_bytes()


def test_truncated_files_are_rejected(tmp_path, saved):
    net, data = saved
    path = tmp_path / "cut.npz"
    lengths = sorted({0, 1, 2, 3, 4, 5, 10, 29, 30, 31, 100, len(data) // 3, len(data) // 2, len(data) - 100,
                      len(data) - 22, len(data) - 21, len(data) - 2, len(data) - 1})
    for length in lengths:
        path.write_bytes(data[:length])
        with bad_file_error(path):
            fm.load(path, backend="numpy")
    path.write_bytes(data)
    assert_same_model(fm.load(path, backend="numpy"), net)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flipped_bytes_are_rejected_or_harmless(tmp_path, saved, backend):
    """Flip single bits and whole bytes. A flip the CRC-32s and zip structure cannot see (a
    timestamp, an extra field) may load, but then it must load the very same model."""
    net, data = saved
    path = tmp_path / "flipped.npz"
    # numpy: every position, two masks; cpu: a stride through the file with a third mask.
    trials = ([(p, m) for p in range(len(data)) for m in (0x01, 0xFF)] if backend == "numpy"
              else [(p, 0x80) for p in range(0, len(data), 3)])
    rejected, harmless = 0, 0
    for position, mask in trials:
        damaged = bytearray(data)
        damaged[position] ^= mask
        path.write_bytes(damaged)
        try:
            loaded = fm.load(path, backend=backend)
        except ValueError as error:
            assert str(error).startswith(f"path: {os.fspath(path)!r} is not a readable fusedmlp model file: "), \
                (position, mask, error)
            rejected += 1
        else:
            assert_same_model(loaded, net, backend)
            harmless += 1
    # The array data and the description are nearly all of the file: most flips are caught.
    assert rejected > 0.5 * len(trials), (rejected, harmless)
    assert rejected + harmless == len(trials)


def test_every_member_byte_is_covered(tmp_path, saved):
    """A flip anywhere in a member's stored data (description or parameters) is rejected."""
    net, data = saved
    path = tmp_path / "flipped.npz"
    with zipfile.ZipFile(_write(tmp_path / "good.npz", data)) as archive:
        spans = []
        for info in archive.infolist():
            header = data[info.header_offset:info.header_offset + 30]
            name_length = int.from_bytes(header[26:28], "little")
            extra_length = int.from_bytes(header[28:30], "little")
            start = info.header_offset + 30 + name_length + extra_length
            spans.append((info.filename, start, start + info.compress_size))
    assert [name for name, _, _ in spans] == ["meta.npy", "W0.npy", "b0.npy", "W1.npy", "b1.npy"]
    for name, start, stop in spans:
        for position in range(start, stop, 2):
            damaged = bytearray(data)
            damaged[position] ^= 0x10
            path.write_bytes(damaged)
            with bad_file_error(path):
                fm.load(path, backend="numpy")


def _write(path, data):
    path.write_bytes(data)
    return path


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fm.load(tmp_path / "nothing.npz")


def test_a_folder_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        fm.load(tmp_path)


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\x93NUMPY", b"PK\x05\x06"],
                         ids=["plain", "zip", "npy", "empty zip"])
def test_random_bytes_are_rejected(tmp_path, prefix):
    path = tmp_path / "noise.npz"
    for seed in range(5):
        path.write_bytes(prefix + np.random.default_rng(seed).bytes(600))
        with bad_file_error(path):
            fm.load(path, backend="numpy")


def test_an_empty_file_is_rejected(tmp_path):
    path = _write(tmp_path / "empty.npz", b"")
    with bad_file_error(path):
        fm.load(path)


def test_an_empty_zip_is_rejected(tmp_path):
    path = tmp_path / "empty-zip.npz"
    with zipfile.ZipFile(path, "w"):
        pass
    with bad_file_error(path) as info:
        fm.load(path)
    assert "no description" in str(info.value)


def test_a_npy_file_is_rejected(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros((3, 4)))
    with bad_file_error(path) as info:
        fm.load(path)
    assert "archive" in str(info.value)


def test_a_foreign_npz_is_rejected(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, W0=np.zeros((5, 3)), b0=np.zeros(3))
    with bad_file_error(path) as info:
        fm.load(path)
    assert "no description" in str(info.value)


def test_a_foreign_description_is_rejected(tmp_path, saved):
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "other.npz", change_meta=lambda meta: meta.update(format="other-format"))
    with bad_file_error(path) as info:
        fm.load(path)
    assert "does not name the fusedmlp model format" in str(info.value)


@pytest.mark.parametrize("version", [3, 99, 2**70, 0, -1, "2", 2.0, True, None])
def test_an_unknown_format_version_is_rejected(tmp_path, saved, version):
    """Newer versions (3 and up) among them: a file from a newer library is refused, clearly."""
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "version.npz", change_meta=lambda meta: meta.update(format_version=version))
    with bad_file_error(path) as info:
        fm.load(path)
    assert f"format version {version!r}; this library reads versions 1 to 2" in str(info.value)


def test_a_version_1_file_still_loads(tmp_path, saved):
    """Version 1: the same layout without the optimizer field."""
    net, data = saved
    good = _write(tmp_path / "good.npz", data)

    def as_version_1(meta):
        del meta["optimizer"]
        meta["format_version"] = 1

    path = _rewrite(good, tmp_path / "v1.npz", change_meta=as_version_1)
    assert_same_model(fm.load(path, backend="cpu"), net, "cpu")


def test_a_version_2_file_needs_the_optimizer_field(tmp_path, saved):
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "v2.npz", change_meta=lambda meta: meta.pop("optimizer"))
    with bad_file_error(path) as info:
        fm.load(path)
    assert "'optimizer'" in str(info.value)


def test_a_description_that_is_not_json_is_rejected(tmp_path, saved):
    good = _write(tmp_path / "good.npz", saved[1])
    members = _members(good)
    for text in (b"{not json", b"\xff\xfe", b"[1, 2]", b'"fusedmlp-model"'):
        members["meta"] = np.frombuffer(text, dtype=np.uint8)
        path = tmp_path / "meta.npz"
        np.savez(path, **members)
        with bad_file_error(path):
            fm.load(path)


_REMOVALS = ["layer_sizes", "activation", "loss", "dtype", "rng_state"]


@pytest.mark.parametrize("key", _REMOVALS)
def test_a_description_without_a_field_is_rejected(tmp_path, saved, key):
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "missing.npz", change_meta=lambda meta: meta.pop(key))
    with bad_file_error(path) as info:
        fm.load(path)
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("change", [
    dict(layer_sizes=[5, 4, 4]),
    dict(layer_sizes=[5, 3]),
    dict(layer_sizes=[5, 10**6, 10**6, 3]),  # must fail on the shapes, never try to build it
    dict(layer_sizes=[5, 4.0, 3]),
    dict(layer_sizes="5,4,3"),
    dict(activation="swish"),
    dict(loss="hinge"),
    dict(dtype="float64"),
    dict(dtype="float16"),
    dict(rng_state={"bit_generator": "PCG64", "state": "nonsense"}),
    dict(rng_state={"bit_generator": "NoSuchGenerator"}),
    dict(rng_state=[1, 2, 3]),
], ids=lambda change: ", ".join(f"{k}={v!r}"[:40] for k, v in change.items()))
def test_a_description_that_does_not_fit_is_rejected(tmp_path, saved, change):
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "misfit.npz", change_meta=lambda meta: meta.update(change))
    with bad_file_error(path):
        fm.load(path, backend="cpu")


@pytest.mark.parametrize("change", [
    lambda arrays: arrays.pop("b1"),
    lambda arrays: arrays.update(W2=np.zeros((3, 3), np.float32)),
    lambda arrays: arrays.update(W0=arrays["W0"].T.copy()),
    lambda arrays: arrays.update(b0=arrays["b0"].astype(np.float64)),
    lambda arrays: arrays.update(W1=np.full((4, 3), np.nan, np.float32)),
    lambda arrays: arrays.update(W1=arrays["W1"].astype(np.complex64)),
], ids=["missing b1", "extra W2", "W0 transposed", "b0 float64", "NaN W1", "complex W1"])
def test_arrays_that_do_not_fit_are_rejected(tmp_path, saved, change):
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "misfit.npz", change_arrays=change)
    with bad_file_error(path):
        fm.load(path)


_unpickled = []


def _spring(note):
    _unpickled.append(note)


class _Trap:
    """Unpickling this records it: a loader that unpickles would be caught in the act."""

    def __reduce__(self):
        return (_spring, ("unpickled!",))


def test_a_pickled_member_is_rejected_without_unpickling(tmp_path, saved):
    good = _write(tmp_path / "good.npz", saved[1])
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    path = _rewrite(good, tmp_path / "pickled.npz", change_arrays=lambda arrays: arrays.update(W1=trap))
    with bad_file_error(path) as info:
        fm.load(path)
    assert "allow_pickle" in str(info.value)
    assert _unpickled == []
    # The trap works: a loader that allowed pickles would have sprung it.
    with np.load(path, allow_pickle=True) as archive:
        archive["W1"]
    assert _unpickled == ["unpickled!"]
    _unpickled.clear()


def test_load_checks_its_own_arguments(tmp_path, saved):
    good = _write(tmp_path / "good.npz", saved[1])
    with pytest.raises(ValueError, match=r"^backend: expected one of numpy, cpu.*; got 'gpu'"):
        fm.load(good, backend="gpu")
    with pytest.raises(TypeError, match=r"^backend: expected one of numpy, cpu.*; got None"):
        fm.load(good, backend=None)
    with pytest.raises(TypeError, match=r"^path: expected a str, bytes or os.PathLike file name; got 123 \(int\)"):
        fm.load(123)
    with pytest.raises(TypeError, match=r"^path: expected a str, bytes or os.PathLike file name; got None"):
        trained().save(None)


# --- optimizer state -----------------------------------------------------------------------


def _momentum_trained(backend, dtype="float64"):
    net = trained(backend, dtype, "mse")
    net._global_step = 17  # what partial_fit's schedule counter would hold
    return net


def _continue(net, epochs=2):
    """More steps that carry on the optimizer state (no reset), straight on the backend."""
    X_in = net._features(X)
    y_in = fusedmlp._validation.as_targets(TARGETS[net.loss], net.loss, X_in.shape[0], net.n_outputs, net.dtype)
    order = np.arange(X_in.shape[0], dtype=np.int64)[::-1].copy()
    losses = []
    for _ in range(epochs):
        step_loss, diverged = net._backend.train_epoch(X_in, y_in, order, 5, False, np.full(5, 0.05), 0.9, True, 1e-3)
        assert not diverged
        losses.append(step_loss)
    return np.concatenate(losses)


def assert_same_optimizer(loaded, original):
    got, want = loaded._backend.get_optimizer_state(), original._backend.get_optimizer_state()
    assert got[2] == want[2]
    for a, b in zip(got[0] + got[1], want[0] + want[1]):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert getattr(loaded, "_global_step", 0) == getattr(original, "_global_step", 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("saved_on, loaded_on", [("cpu", "cpu"), ("numpy", "numpy"), ("cpu", "numpy"),
                                                 ("numpy", "cpu")])
def test_the_optimizer_state_round_trips(tmp_path, saved_on, loaded_on, dtype):
    original = _momentum_trained(saved_on, dtype)
    started = original._backend.get_optimizer_state()
    assert started[2] and any(np.abs(m).max() > 0 for m in started[0])  # really some momentum to keep
    fusedmlp.io.save(original, tmp_path / "model.npz", include_optimizer=True)
    loaded = fm.load(tmp_path / "model.npz", backend=loaded_on)
    assert_same_model(loaded, original, loaded_on)
    assert_same_optimizer(loaded, original)
    assert loaded._global_step == 17
    if saved_on == loaded_on:  # the same kernels: the continuation is bit for bit the same
        np.testing.assert_array_equal(_continue(loaded), _continue(original))
        assert_same_model(loaded, original)
    else:
        tolerance = 1e-4 if dtype == "float32" else 1e-10
        np.testing.assert_allclose(_continue(loaded), _continue(original), rtol=tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_include_optimizer_the_loaded_optimizer_starts_fresh(tmp_path, backend):
    original = _momentum_trained(backend)
    original.save(tmp_path / "model.npz")  # the default: no optimizer state
    assert not any(name.startswith("m") and name != "meta" for name in _members(tmp_path / "model.npz"))
    loaded = fm.load(tmp_path / "model.npz", backend=backend)
    w_momentum, b_momentum, started = loaded._backend.get_optimizer_state()
    assert started is False and all(not m.any() for m in w_momentum + b_momentum)
    assert getattr(loaded, "_global_step", 0) == 0
    # A fresh optimizer and the original's differ: the continuation shows it.
    assert not np.array_equal(_continue(loaded), _continue(original))


def test_an_optimizer_that_never_started_round_trips(tmp_path):
    original = MLP([5, 4, 3], backend="cpu", seed=1)
    fusedmlp.io.save(original, tmp_path / "model.npz", include_optimizer=True)
    loaded = fm.load(tmp_path / "model.npz")
    assert loaded._backend.get_optimizer_state()[2] is False
    assert_same_optimizer(loaded, original)


def test_include_optimizer_must_be_a_bool(tmp_path):
    with pytest.raises(TypeError, match=r"^include_optimizer: expected True or False; got 'yes' \(str\)"):
        fusedmlp.io.save(trained(), tmp_path / "model.npz", include_optimizer="yes")
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def saved_with_optimizer(tmp_path_factory):
    net = _momentum_trained("cpu", "float32")
    path = tmp_path_factory.mktemp("saved-optimizer") / "model.npz"
    fusedmlp.io.save(net, path, include_optimizer=True)
    return net, path.read_bytes()


@pytest.mark.parametrize("change", [
    dict(optimizer={"started": "yes", "global_step": 3}),
    dict(optimizer={"started": 1, "global_step": 3}),
    dict(optimizer={"started": True, "global_step": -1}),
    dict(optimizer={"started": True, "global_step": 1.5}),
    dict(optimizer={"started": True, "global_step": True}),
    dict(optimizer={"started": True, "global_step": 2**63}),
    dict(optimizer={"started": True}),
    dict(optimizer={"started": True, "global_step": 3, "extra": 1}),
    dict(optimizer=[True, 3]),
    dict(optimizer=None),  # says "no optimizer state" while the momentum arrays are there
], ids=lambda change: repr(change["optimizer"])[:40])
def test_an_optimizer_description_that_does_not_fit_is_rejected(tmp_path, saved_with_optimizer, change):
    good = _write(tmp_path / "good.npz", saved_with_optimizer[1])
    path = _rewrite(good, tmp_path / "misfit.npz", change_meta=lambda meta: meta.update(change))
    for backend in BACKENDS:
        with bad_file_error(path):
            fm.load(path, backend=backend)


@pytest.mark.parametrize("change", [
    lambda arrays: arrays.pop("mb1"),
    lambda arrays: arrays.update(mW0=arrays["mW0"].T.copy()),
    lambda arrays: arrays.update(mW1=arrays["mW1"].astype(np.float64)),
    lambda arrays: arrays.update(mb0=np.full_like(arrays["mb0"], np.inf)),
    lambda arrays: arrays.update(mW2=np.full_like(arrays["mW1"], np.nan)),
    lambda arrays: arrays.update(mW3=np.zeros((3, 3), np.float32)),
], ids=["missing mb1", "mW0 transposed", "mW1 float64", "inf mb0", "NaN mW2", "extra mW3"])
def test_momentum_arrays_that_do_not_fit_are_rejected(tmp_path, saved_with_optimizer, change):
    good = _write(tmp_path / "good.npz", saved_with_optimizer[1])
    path = _rewrite(good, tmp_path / "misfit.npz", change_arrays=change)
    with bad_file_error(path):
        fm.load(path, backend="cpu")


def test_momentum_arrays_without_an_optimizer_description_are_rejected(tmp_path, saved):
    good = _write(tmp_path / "good.npz", saved[1])
    path = _rewrite(good, tmp_path / "misfit.npz",
                    change_arrays=lambda arrays: arrays.update(mW0=np.zeros_like(arrays["W0"])))
    with bad_file_error(path):
        fm.load(path)


def _length_classes(data):
    """Every length class of a truncated file: nothing, one byte, inside and at the end of each
    member's local header and data, inside the central directory, all but the last byte."""
    lengths = {0, 1, 2, 3, 4, 29, 30, len(data) - 22, len(data) - 21, len(data) - 2, len(data) - 1}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            start = info.header_offset
            header = data[start:start + 30]
            data_start = start + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
            data_end = data_start + info.compress_size
            lengths |= {start + 1, start + 29, start + 30, data_start - 1, data_start, data_start + 1,
                        (data_start + data_end) // 2, data_end - 1, data_end}
    return sorted(length for length in lengths if 0 <= length < len(data))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_with_optimizer_state_truncated_anywhere_is_rejected(tmp_path, saved_with_optimizer, backend):
    net, data = saved_with_optimizer
    path = tmp_path / "cut.npz"
    lengths = _length_classes(data)
    assert len(lengths) > 100  # 16 members, ~9 classes each
    for length in lengths:
        path.write_bytes(data[:length])
        with bad_file_error(path):
            fm.load(path, backend=backend)
    path.write_bytes(data)
    loaded = fm.load(path, backend=backend)
    assert_same_model(loaded, net, backend)
    assert_same_optimizer(loaded, net)


def test_flipped_bytes_in_a_file_with_optimizer_state_are_rejected_or_harmless(tmp_path, saved_with_optimizer):
    net, data = saved_with_optimizer
    path = tmp_path / "flipped.npz"
    rejected = harmless = 0
    for position in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[position] ^= 0x04
        path.write_bytes(damaged)
        try:
            loaded = fm.load(path, backend="cpu")
        except ValueError as error:
            assert str(error).startswith(f"path: {os.fspath(path)!r} is not a readable fusedmlp model file: ")
            rejected += 1
        else:
            assert_same_model(loaded, net, "cpu")
            assert_same_optimizer(loaded, net)
            harmless += 1
    assert rejected > 0.5 * (rejected + harmless), (rejected, harmless)
