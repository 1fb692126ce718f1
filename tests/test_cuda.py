"""The CUDA backend against the NumPy reference: ops, whole epochs on both kernel paths (the
fused narrow-network kernel and the tiled GEMMs), optimizer variants, divergence, determinism.
Every test but the first group needs a GPU and is skipped, saying why, without one."""

import numpy as np
import pytest

from fusedmlp import reference
from fusedmlp import cuda_backend
from fusedmlp.cuda_backend import CudaBackend, cuda_available, cuda_unavailable_reason

from conftest import assert_matches_reference

ACTIVATIONS = reference.ACTIVATIONS
LOSSES = reference.LOSSES
# Whole trajectories in float32 differ from the reference by summation order only.
TRAJECTORY_TOLERANCE = {np.float32: 2e-3, np.float64: 1e-8}


# --- without a GPU: a clear error -------------------------------------------------------------


def test_availability_and_reason_agree():
    reason = cuda_unavailable_reason()
    assert cuda_available() == (reason == "")
    if not cuda_available():
        with pytest.raises((RuntimeError, ImportError), match="backend='cuda' is unavailable"):
            CudaBackend([3, 4, 2], "relu", "mse", np.float32)


def test_missing_module_gives_clear_error(monkeypatch):
    monkeypatch.setattr(cuda_backend, "_cuda", None)
    monkeypatch.setattr(cuda_backend, "_CUDA_IMPORT_ERROR", ImportError("No module named 'fusedmlp._cuda'"))
    assert not cuda_available()
    assert "built without its CUDA module" in cuda_unavailable_reason()
    with pytest.raises(ImportError, match="built without its CUDA module"):
        CudaBackend([3, 4, 2], "relu", "mse", np.float32)


needs_gpu = pytest.mark.skipif(not cuda_available(), reason=f"no CUDA backend here: {cuda_unavailable_reason()}")
needs_clusters = pytest.mark.skipif(
    not cuda_available() or not cuda_backend._cuda.device_has_clusters(),
    reason=f"no CUDA backend here: {cuda_unavailable_reason()}" if not cuda_available()
    else "no thread-block clusters on this GPU (compute capability below 9.0)")

# --- helpers ----------------------------------------------------------------------------------


def force_gemm_tile(monkeypatch, tile):
    """FUSEDMLP_CUDA_TILE=tile, where this device and build have code for it. The planned tiles
    always do; the tiles on trial only on sm_90 in a build with FUSEDMLP_CUDA_TRIAL_TILES (the
    backend would ignore the variable and the test run the planned tiles instead)."""
    forceable = cuda_backend._cuda.forceable_gemm_tiles()
    assert {"128", "64", "64w"} <= set(forceable)
    if tile not in forceable:
        pytest.skip(f"no code for GEMM tile {tile} here (sm_90 and a FUSEDMLP_CUDA_TRIAL_TILES build only)")
    monkeypatch.setenv("FUSEDMLP_CUDA_TILE", tile)


def make_data(sizes, loss, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    k = sizes[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, k, size=n).astype(np.int64)
    elif loss == "bce":
        y = rng.uniform(size=(n, k)).astype(dtype)
    else:
        y = rng.normal(size=(n, k)).astype(dtype)
    return X, y


def make_net(sizes, activation, loss, dtype, path, seed=1):
    """A CUDA backend on the given path and the reference's initial parameters."""
    net = CudaBackend(sizes, activation, loss, dtype)
    if path == "fused":
        assert net._net.fused_eligible, sizes
    net._net.fused = path == "fused"
    weights, biases = reference.init_parameters(sizes, activation, np.random.default_rng(seed), dtype)
    net.set_parameters(weights, biases)
    return net, weights, biases


def reference_epochs(weights, biases, activation, loss, X, y, orders, lrs, batch_size, drop_last=False,
                     momentum=0.0, nesterov=False, weight_decay=0.0):
    weights = [w.copy() for w in weights]
    biases = [b.copy() for b in biases]
    w_bufs = [np.zeros_like(w) for w in weights]
    b_bufs = [np.zeros_like(b) for b in biases]
    losses = []
    first = True
    for order, rates in zip(orders, lrs):
        step_loss, diverged = reference.train_epoch(weights, biases, w_bufs, b_bufs, activation, loss, X, y, order,
                                                    rates, batch_size, drop_last, momentum, nesterov, weight_decay,
                                                    first)
        assert not diverged
        losses.append(step_loss)
        first = False
    return weights, biases, losses


def epoch_plan(n, batch_size, drop_last, epochs, lr, seed=2):
    rng = np.random.default_rng(seed)
    steps = len(reference.batch_bounds(n, batch_size, drop_last))
    orders = [rng.permutation(n).astype(np.int64) for _ in range(epochs)]
    lrs = [np.full(steps, lr) * (1 + 0.1 * np.arange(steps) / max(steps, 1)) for _ in range(epochs)]
    return orders, lrs


def assert_trajectory(net, weights, biases, losses, step_losses, dtype):
    got_w, got_b = net.get_parameters()
    tolerance = TRAJECTORY_TOLERANCE[dtype]
    for got, want in zip(got_w + got_b, weights + biases):
        assert got.dtype == want.dtype
        assert_matches_reference(got, want, dtype, tolerance)
    assert_matches_reference(np.concatenate(step_losses), np.concatenate(losses), dtype, tolerance)


def assert_epochs_match_reference(net, weights, biases, activation, loss, X, y, orders, lrs, batch_size, dtype,
                                  momentum=0.0, nesterov=False, weight_decay=0.0):
    """Trains net for the planned epochs and holds its trajectory to the reference's."""
    want_w, want_b, want_losses = reference_epochs(weights, biases, activation, loss, X, y, orders, lrs, batch_size,
                                                   False, momentum, nesterov, weight_decay)
    step_losses = [net.train_epoch(X, y, o, batch_size, False, r, momentum, nesterov, weight_decay)[0]
                   for o, r in zip(orders, lrs)]
    assert_trajectory(net, want_w, want_b, want_losses, step_losses, dtype)


def assert_loss_and_grad_match_reference(net, weights, biases, activation, loss, X, y, dtype, rel):
    """net.loss_and_grad against the reference's: the loss within rel, every gradient within the
    per-op tolerance of its dtype."""
    value, dW, db = net.loss_and_grad(X, y)
    want_value, want_dW, want_db = reference.network_loss_and_grad(weights, biases, activation, loss, X, y)
    assert value == pytest.approx(want_value, rel=rel)
    for got, want in zip(dW + db, want_dW + want_db):
        assert got.dtype == dtype
        assert_matches_reference(got, want, dtype)


NARROW = [5, 17, 9, 3]  # every width <= 128: both paths
PATHS = ["fused", "tiled"]

# --- ops ---------------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_and_grad_matches_reference(activation, loss, path, dtype):
    net, weights, biases = make_net(NARROW, activation, loss, dtype, path)
    X, y = make_data(NARROW, loss, 37, dtype)  # one full fused tile of 32 rows and a partial one
    assert_loss_and_grad_match_reference(net, weights, biases, activation, loss, X, y, dtype,
                                         10 * {np.float32: 1e-6, np.float64: 1e-14}[dtype])
    # and nothing changed
    for got, want in zip(net.get_parameters()[0], weights):
        np.testing.assert_array_equal(got, want)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["gelu", "tanh", "gelu_tanh"])
def test_logits_and_outputs_match_reference(activation, loss, dtype):
    sizes = [6, 130, 11, 4]
    net, weights, biases = make_net(sizes, activation, loss, dtype, "tiled")
    X, _ = make_data(sizes, loss, 301, dtype)
    want = reference.network_logits(weights, biases, activation, X)
    assert_matches_reference(net.logits(X), want, dtype)
    assert_matches_reference(net.outputs(X), reference.output_activation(loss, want), dtype)


@needs_gpu
def test_forward_of_many_rows_in_chunks_and_of_none():
    sizes = [3, 8, 2]
    net, weights, biases = make_net(sizes, "relu", "mse", np.float32, "tiled")
    X, _ = make_data(sizes, "mse", 40000, np.float32)
    assert_matches_reference(net.logits(X), reference.network_logits(weights, biases, "relu", X), np.float32)
    assert net.logits(X[:0]).shape == (0, 2)


# --- training ----------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_training_matches_reference(activation, loss, path):
    dtype = np.float32
    net, weights, biases = make_net(NARROW, activation, loss, dtype, path)
    X, y = make_data(NARROW, loss, 100, dtype)
    orders, lrs = epoch_plan(100, 16, False, 3, 0.05)  # 7 steps, the last of 4 rows
    want_w, want_b, want_losses = reference_epochs(weights, biases, activation, loss, X, y, orders, lrs, 16)
    step_losses = []
    for order, rates in zip(orders, lrs):
        step_loss, diverged = net.train_epoch(X, y, order, 16, False, rates, 0.0, False, 0.0)
        assert not diverged and step_loss.dtype == np.float64
        step_losses.append(step_loss)
    assert_trajectory(net, want_w, want_b, want_losses, step_losses, dtype)


OPTIMIZERS = [(0.9, False, 0.0), (0.9, True, 0.0), (0.0, False, 1e-2), (0.5, True, 1e-3)]


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("momentum,nesterov,weight_decay", OPTIMIZERS)
def test_optimizers_match_reference(momentum, nesterov, weight_decay, path, dtype):
    sizes = [8, 64, 32, 5]
    net, weights, biases = make_net(sizes, "tanh", "cross_entropy", dtype, path)
    X, y = make_data(sizes, "cross_entropy", 90, dtype)
    orders, lrs = epoch_plan(90, 20, True, 3, 0.1)
    want_w, want_b, want_losses = reference_epochs(weights, biases, "tanh", "cross_entropy", X, y, orders, lrs, 20,
                                                   True, momentum, nesterov, weight_decay)
    step_losses = []
    for order, rates in zip(orders, lrs):
        step_loss, diverged = net.train_epoch(X, y, order, 20, True, rates, momentum, nesterov, weight_decay)
        assert not diverged and len(step_loss) == 4
        step_losses.append(step_loss)
    assert_trajectory(net, want_w, want_b, want_losses, step_losses, dtype)
    w_momentum, b_momentum, started = net.get_optimizer_state()
    assert started
    if momentum == 0:
        assert all(not m.any() for m in w_momentum + b_momentum)
    else:
        assert all(m.any() for m in w_momentum)


# float64 where the fused kernel holds the network in shared memory; a tile of 128-wide layers
# fits there only in float32 (test_fused_eligibility_depends_on_shared_memory).
AWKWARD = [
    ([1, 1, 1], 1, "fused", np.float64),
    ([2, 3, 1], 7, "fused", np.float64),
    ([13, 63, 64, 65, 2], 33, "fused", np.float64),
    ([128, 128, 128, 127], 31, "fused", np.float32),
    ([128, 128, 128, 127], 31, "tiled", np.float64),
    ([7, 127, 129, 5], 65, "tiled", np.float64),
    ([130, 31, 1], 64, "tiled", np.float64),
    ([61, 97, 3], 1, "tiled", np.float64),
    ([3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2], 5, "tiled", np.float64),  # too deep for the fused kernel
]


@needs_gpu
@pytest.mark.parametrize("sizes,dtype,eligible", [
    ([128, 128, 128, 127], np.float32, True),   # one layer's parameters in shared memory at a time
    ([128, 128, 128, 127], np.float64, False),  # a tile's activations alone nearly fill it
    ([64, 64, 64, 64, 64, 16], np.float64, True),
    ([129, 4], np.float32, False),  # wider than 128
    ([3] * 18, np.float32, False),  # deeper than 16 layers
])
def test_fused_eligibility_depends_on_shared_memory(sizes, dtype, eligible):
    net = CudaBackend(sizes, "relu", "cross_entropy", dtype)
    assert net._net.fused_eligible == eligible
    assert net._net.fused == eligible  # the fused kernel is the default wherever it runs


@needs_gpu
@pytest.mark.parametrize("sizes,batch_size,path,dtype", AWKWARD)
def test_awkward_sizes_match_reference(sizes, batch_size, path, dtype):
    loss = "mse" if sizes[-1] == 1 else "cross_entropy"
    net, weights, biases = make_net(sizes, "leaky_relu", loss, dtype, path)
    n = 67
    X, y = make_data(sizes, loss, n, dtype)
    assert_loss_and_grad_match_reference(net, weights, biases, "leaky_relu", loss, X, y, dtype,
                                         1e-12 if dtype == np.float64 else 1e-5)
    orders, lrs = epoch_plan(n, batch_size, False, 2, 0.01)
    assert_epochs_match_reference(net, weights, biases, "leaky_relu", loss, X, y, orders, lrs, batch_size, dtype, 0.9)


@needs_gpu
@pytest.mark.parametrize("tile", ["64", "128"])
def test_wide_network_on_both_gemm_tiles(tile, monkeypatch):
    force_gemm_tile(monkeypatch, tile)
    sizes = [100, 257, 129, 10]
    dtype = np.float32
    net, weights, biases = make_net(sizes, "relu", "cross_entropy", dtype, "tiled")
    assert not net._net.fused_eligible
    X, y = make_data(sizes, "cross_entropy", 300, dtype)
    assert_loss_and_grad_match_reference(net, weights, biases, "relu", "cross_entropy", X, y, dtype,
                                         1e-5)
    orders, lrs = epoch_plan(300, 128, False, 2, 0.05)
    assert_epochs_match_reference(net, weights, biases, "relu", "cross_entropy", X, y,
                                  orders, lrs, 128, dtype, 0.9, True, 1e-4)


@needs_gpu
@pytest.mark.parametrize("path,batch_size", [("fused", 8), ("fused", 40), ("tiled", 8)])
def test_divergent_step_is_not_applied_and_later_steps_do_nothing(path, batch_size):
    sizes = [4, 16, 3]
    n = 8 * batch_size
    X, y = make_data(sizes, "mse", n, np.float32)
    order = np.arange(n, dtype=np.int64)
    lrs = np.full(8, 0.01)
    lrs[5] = np.inf  # step 5 writes non-finite parameters
    net, _, _ = make_net(sizes, "relu", "mse", np.float32, path)
    step_loss, diverged = net.train_epoch(X, y, order, batch_size, False, lrs, 0.9, False, 0.0)
    assert diverged and len(step_loss) == 6 and np.isfinite(step_loss).all()
    # the state must be exactly that after the first five steps
    twin, _, _ = make_net(sizes, "relu", "mse", np.float32, path)
    twin_loss, twin_diverged = twin.train_epoch(X, y, order[:5 * batch_size], batch_size, False, lrs[:5], 0.9, False,
                                                0.0)
    assert not twin_diverged
    np.testing.assert_array_equal(step_loss[:5], twin_loss)
    for got, want in zip(sum(net.get_parameters(), []), sum(twin.get_parameters(), [])):
        np.testing.assert_array_equal(got, want)
    got_state, want_state = net.get_optimizer_state(), twin.get_optimizer_state()
    for got, want in zip(got_state[0] + got_state[1], want_state[0] + want_state[1]):
        np.testing.assert_array_equal(got, want)
    # training goes on from there
    step_loss, diverged = net.train_epoch(X, y, order, batch_size, False, np.full(8, 0.01), 0.9, False, 0.0)
    assert not diverged and len(step_loss) == 8 and np.isfinite(step_loss).all()


@needs_gpu
@pytest.mark.parametrize("path", PATHS)
def test_non_finite_loss_diverges_at_once(path):
    sizes = [4, 16, 3]
    X, y = make_data(sizes, "cross_entropy", 16, np.float32)
    net, weights, biases = make_net(sizes, "relu", "cross_entropy", np.float32, path)
    net.set_parameters([np.full_like(w, np.inf) for w in weights], biases)
    step_loss, diverged = net.train_epoch(X, y, np.arange(16, dtype=np.int64), 4, False, np.full(4, 0.1), 0.0,
                                          False, 0.0)
    assert diverged and len(step_loss) == 1 and not np.isfinite(step_loss[0])
    assert not net.get_optimizer_state()[2]  # no step was applied: the optimizer has not started


@needs_gpu
@pytest.mark.parametrize("rows", ["8", "16", "32"])
def test_fused_tiles_of_every_size_match_reference(rows, monkeypatch):
    # A batch of several tiles, the last one partial, summed across blocks; momentum and decay.
    monkeypatch.setenv("FUSEDMLP_CUDA_FUSED_ROWS", rows)
    sizes = [9, 40, 24, 6]
    net, weights, biases = make_net(sizes, "gelu", "cross_entropy", np.float32, "fused")
    X, y = make_data(sizes, "cross_entropy", 150, np.float32)
    orders, lrs = epoch_plan(150, 70, False, 2, 0.1)  # batches of 70, 70 and 10 rows
    assert_epochs_match_reference(net, weights, biases, "gelu", "cross_entropy", X, y,
                                  orders, lrs, 70, np.float32, 0.9, True, 1e-3)


# float64's fused kernels come in blocks of 256 threads alone (kWideFusedThreads).
FUSED_BLOCKS = [("256", np.float32), ("512", np.float32), ("256", np.float64)]


@needs_gpu
@pytest.mark.parametrize("threads,dtype", FUSED_BLOCKS)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_epoch_kernel_of_each_block_size_matches_reference(threads, momentum, dtype, monkeypatch):
    # Batches of one tile: the whole epoch in one block; its last batch partial.
    monkeypatch.setenv("FUSEDMLP_CUDA_EPOCH_THREADS", threads)
    sizes = [9, 40, 24, 6]
    net, weights, biases = make_net(sizes, "tanh", "cross_entropy", dtype, "fused")
    X, y = make_data(sizes, "cross_entropy", 150, dtype)
    orders, lrs = epoch_plan(150, 20, False, 2, 0.1)
    assert_epochs_match_reference(net, weights, biases, "tanh", "cross_entropy", X, y,
                                  orders, lrs, 20, dtype, momentum, True, 1e-3)


@needs_clusters
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,batch_size,n", [("8", 40, 150), ("16", 100, 250)])
def test_cluster_epoch_kernel_matches_the_step_kernels_and_the_reference(rows, batch_size, n, dtype, monkeypatch):
    """FUSEDMLP_CUDA_CLUSTER_EPOCH=1: batches of 5 and 7 tiles, each epoch one launch on a
    thread-block cluster whose blocks keep the parameters and add each other's partial sums.
    The reference's trajectory, and the same parameters and momentum bit for bit as
    fused_mlp_kernel and fused_reduce_kernel per step, which add the blocks' partial sums in the
    same order. The last batches (30 and 50 rows) leave a block partial and others empty."""
    monkeypatch.setenv("FUSEDMLP_CUDA_FUSED_ROWS", rows)
    sizes = [9, 40, 24, 6]
    X, y = make_data(sizes, "cross_entropy", n, dtype)
    orders, lrs = epoch_plan(n, batch_size, False, 2, 0.1)
    states = []
    for hook, kernel in (("0", "fused steps"), ("1", "cluster")):
        monkeypatch.setenv("FUSEDMLP_CUDA_CLUSTER_EPOCH", hook)
        net, weights, biases = make_net(sizes, "gelu", "cross_entropy", dtype, "fused")
        assert net._net.epoch_kernel(batch_size, 0.9) == kernel
        assert_epochs_match_reference(net, weights, biases, "gelu", "cross_entropy", X, y,
                                      orders, lrs, batch_size, dtype, 0.9, True, 1e-3)
        states.append(sum(net.get_parameters(), []) + sum(net.get_optimizer_state()[:2], []))
    for got, want in zip(states[1], states[0]):
        np.testing.assert_array_equal(got, want)


@needs_clusters
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cluster_epoch_kernel_splits_batches_of_one_tile_on_request(dtype, monkeypatch):
    """FUSEDMLP_CUDA_CLUSTER_EPOCH=2: a batch of 20 rows, which fused_epoch_kernel would take on
    one block, runs on a cluster of 3 blocks of 8 rows (the last batch's 6 rows on one of them),
    on the reference's trajectory; a batch of 8 rows still takes one block."""
    monkeypatch.setenv("FUSEDMLP_CUDA_CLUSTER_EPOCH", "2")
    sizes, n = [9, 40, 24, 6], 146
    X, y = make_data(sizes, "cross_entropy", n, dtype)
    net, weights, biases = make_net(sizes, "gelu", "cross_entropy", dtype, "fused")
    assert net._net.epoch_kernel(8, 0.9) == "block"
    assert net._net.epoch_kernel(20, 0.9) == "cluster"
    orders, lrs = epoch_plan(n, 20, False, 2, 0.1)
    assert_epochs_match_reference(net, weights, biases, "gelu", "cross_entropy", X, y,
                                  orders, lrs, 20, dtype, 0.9, True, 1e-3)


@needs_clusters
def test_cluster_epoch_kernel_applies_no_divergent_step(monkeypatch):
    """A step whose updates are not finite (lr = inf at step 5 of 8) is applied neither to the
    state the host keeps nor further: the state after the first five steps; and a non-finite
    loss stops the epoch at its first step, before any update."""
    monkeypatch.setenv("FUSEDMLP_CUDA_CLUSTER_EPOCH", "1")
    monkeypatch.setenv("FUSEDMLP_CUDA_FUSED_ROWS", "8")
    sizes, batch_size = [4, 16, 3], 40
    n = 8 * batch_size
    X, y = make_data(sizes, "mse", n, np.float32)
    order = np.arange(n, dtype=np.int64)
    lrs = np.full(8, 0.01)
    lrs[5] = np.inf
    net, _, _ = make_net(sizes, "relu", "mse", np.float32, "fused")
    assert net._net.epoch_kernel(batch_size, 0.9) == "cluster"
    step_loss, diverged = net.train_epoch(X, y, order, batch_size, False, lrs, 0.9, False, 0.0)
    assert diverged and len(step_loss) == 6 and np.isfinite(step_loss).all()
    twin, _, _ = make_net(sizes, "relu", "mse", np.float32, "fused")
    twin_loss, twin_diverged = twin.train_epoch(X, y, order[:5 * batch_size], batch_size, False, lrs[:5], 0.9,
                                                False, 0.0)
    assert not twin_diverged
    np.testing.assert_array_equal(step_loss[:5], twin_loss)
    for got, want in zip(sum(net.get_parameters(), []) + sum(net.get_optimizer_state()[:2], []),
                         sum(twin.get_parameters(), []) + sum(twin.get_optimizer_state()[:2], [])):
        np.testing.assert_array_equal(got, want)
    step_loss, diverged = net.train_epoch(X, y, order, batch_size, False, np.full(8, 0.01), 0.9, False, 0.0)
    assert not diverged and len(step_loss) == 8 and np.isfinite(step_loss).all()

    # One layer, 5 blocks: block r owns row r of W (the bias is row 4). With inputs 1 to 3 zero,
    # their rows' gradients are zero and their updates finite even at lr = 1e38; the first
    # input's row and the bias overflow, and every block must stop with them.
    X = np.zeros((n, 4), np.float32)
    X[:, 0] = 1
    y = np.full((n, 3), 1e3, np.float32)
    net, _, _ = make_net([4, 3], "relu", "mse", np.float32, "fused")
    lrs = np.full(8, 0.01)
    lrs[2] = 1e38
    step_loss, diverged = net.train_epoch(X, y, order, batch_size, False, lrs, 0.0, False, 0.0)
    assert diverged and len(step_loss) == 3 and np.isfinite(step_loss).all()

    X, y = make_data(sizes, "cross_entropy", n, np.float32)
    net, weights, biases = make_net(sizes, "relu", "cross_entropy", np.float32, "fused")
    net.set_parameters([np.full_like(w, np.inf) for w in weights], biases)
    step_loss, diverged = net.train_epoch(X, y, order, batch_size, False, np.full(8, 0.1), 0.0, False, 0.0)
    assert diverged and len(step_loss) == 1 and not np.isfinite(step_loss[0])
    assert not net.get_optimizer_state()[2]


@needs_gpu
@pytest.mark.parametrize("blocks,dtype", [(150, np.float32), (150, np.float64), (3, np.float32)])
def test_partial_sums_of_many_or_few_blocks_match_reference(blocks, dtype, monkeypatch):
    # fused_reduce_kernel: its warps each add a range of the blocks' partial sums (150 blocks of
    # 8 rows: ranges of 19, more than one round of loads; 3 blocks: most warps have none), and
    # 1,534 parameters end inside a 16-byte vector.
    monkeypatch.setenv("FUSEDMLP_CUDA_FUSED_ROWS", "8")
    sizes = [9, 40, 24, 6]
    batch_size = 8 * blocks
    n = batch_size + 8 * (blocks // 2) + 5  # the last batch partial, its last tile too
    net, weights, biases = make_net(sizes, "gelu", "cross_entropy", dtype, "fused")
    X, y = make_data(sizes, "cross_entropy", n, dtype)
    orders, lrs = epoch_plan(n, batch_size, False, 1, 0.1)
    assert_epochs_match_reference(net, weights, biases, "gelu", "cross_entropy", X, y,
                                  orders, lrs, batch_size, dtype, 0.9, True, 1e-3)


@needs_gpu
@pytest.mark.parametrize("threads,sizes,dtype",
                         [(threads, [9, 40, 24, 6], dtype) for threads, dtype in FUSED_BLOCKS]
                         + [(threads, [128, 128, 128, 127], np.float32) for threads in ("256", "512")])
def test_step_kernel_of_each_block_size_matches_reference(threads, sizes, dtype, monkeypatch):
    # fused_mlp_kernel on either block with each of its sinks: the gradient of one tile and of two
    # (summed across blocks), and training on batches of several tiles. [128, 128, 128, 127] holds
    # one layer's parameters in shared memory at a time, which also keeps its batches of one tile
    # off the epoch kernel: they update the parameters from fused_mlp_kernel.
    monkeypatch.setenv("FUSEDMLP_CUDA_STEP_THREADS", threads)
    rel = 1e-12 if dtype == np.float64 else 1e-5
    net, weights, biases = make_net(sizes, "gelu", "cross_entropy", dtype, "fused")
    for n in (20, 37):
        X, y = make_data(sizes, "cross_entropy", n, dtype, seed=n)
        assert_loss_and_grad_match_reference(net, weights, biases, "gelu", "cross_entropy", X, y, dtype, rel)
    X, y = make_data(sizes, "cross_entropy", 90, dtype)
    for batch_size in (70, 20) if sizes[1] == 128 else (70,):
        net, weights, biases = make_net(sizes, "gelu", "cross_entropy", dtype, "fused")
        orders, lrs = epoch_plan(90, batch_size, False, 2, 0.1)
        assert_epochs_match_reference(net, weights, biases, "gelu", "cross_entropy", X, y,
                                      orders, lrs, batch_size, dtype, 0.9, True, 1e-3)


@needs_gpu
@pytest.mark.parametrize("graphs", ["1", "0"])
@pytest.mark.parametrize("sizes", [[20, 64, 64, 4], [20, 200, 4]])
def test_bit_identical_run_to_run_with_and_without_graphs(sizes, graphs, monkeypatch):
    monkeypatch.setenv("FUSEDMLP_CUDA_GRAPHS", graphs)
    X, y = make_data(sizes, "cross_entropy", 1000, np.float32)
    orders, lrs = epoch_plan(1000, 96, False, 2, 0.05)
    results = []
    for _ in range(2):
        net, _, _ = make_net(sizes, "gelu", "cross_entropy", np.float32, "fused" if sizes[1] <= 128 else "tiled")
        losses = [net.train_epoch(X, y, o, 96, False, r, 0.9, True, 1e-4)[0] for o, r in zip(orders, lrs)]
        results.append((np.concatenate(losses), sum(net.get_parameters(), [])))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


@needs_gpu
def test_optimizer_state_round_trip_and_reset():
    sizes = [4, 8, 3]
    X, y = make_data(sizes, "cross_entropy", 32, np.float64)
    net, weights, biases = make_net(sizes, "sigmoid", "cross_entropy", np.float64, "fused")
    w_m, b_m, started = net.get_optimizer_state()
    assert not started and all(not m.any() for m in w_m + b_m)
    order = np.arange(32, dtype=np.int64)
    net.train_epoch(X, y, order, 8, False, np.full(4, 0.1), 0.9, False, 0.0)
    state = net.get_optimizer_state()
    params = net.get_parameters()
    net.train_epoch(X, y, order, 8, False, np.full(4, 0.1), 0.9, False, 0.0)
    after = net.get_parameters()
    # restoring parameters and optimizer state replays the second epoch exactly
    net.set_parameters(*params)
    net.reset_optimizer()
    assert not net.get_optimizer_state()[2]
    net.set_optimizer_state(*state)
    net.train_epoch(X, y, order, 8, False, np.full(4, 0.1), 0.9, False, 0.0)
    for got, want in zip(sum(net.get_parameters(), []), sum(after, [])):
        np.testing.assert_array_equal(got, want)


@needs_gpu
@pytest.mark.parametrize("path", PATHS)
def test_an_epoch_without_momentum_keeps_the_momentum(path):
    """momentum 0 reads and writes no momentum; after an odd number of steps the state comes back
    from the second of the double buffers, which must hold the kept momentum too. (After 4 steps
    with momentum, that buffer holds the momentum of step 3.)"""
    sizes = [6, 16, 3]
    X, y = make_data(sizes, "cross_entropy", 32, np.float32)
    net, _, _ = make_net(sizes, "relu", "cross_entropy", np.float32, path)
    order = np.arange(32, dtype=np.int64)
    net.train_epoch(X, y, order, 8, False, np.full(4, 0.1), 0.9, False, 0.0)
    kept_w, kept_b, _ = net.get_optimizer_state()
    assert all(m.any() for m in kept_w)
    net.train_epoch(X, y, order[::-1][:24].copy(), 8, False, np.full(3, 0.1), 0.0, False, 0.0)
    w_momentum, b_momentum, started = net.get_optimizer_state()
    assert started
    for got, want in zip(w_momentum + b_momentum, kept_w + kept_b):
        np.testing.assert_array_equal(got, want)


@needs_gpu
@pytest.mark.parametrize("path", ["fused", "tiled"])
def test_a_call_between_start_and_finish_sees_the_whole_epoch(path):
    """start_epoch returns before the epoch ends; every other call waits for it. 5 steps, an odd
    number: until then the current state is in the second of the double buffers."""
    sizes = [6, 16, 3]
    X, y = make_data(sizes, "cross_entropy", 40, np.float32)
    order = np.random.default_rng(3).permutation(40)
    rates = np.full(5, 0.1)
    whole, _, _ = make_net(sizes, "tanh", "cross_entropy", np.float32, path)
    halves, _, _ = make_net(sizes, "tanh", "cross_entropy", np.float32, path)
    step_loss, diverged = whole.train_epoch(X, y, order, 8, False, rates, 0.9, False, 0.0)
    halves.start_epoch(X, y, order, 8, False, rates, 0.9, False, 0.0)
    between = sum(halves.get_parameters(), []) + sum(halves.get_optimizer_state()[:2], [])
    finished_loss, finished_diverged = halves.finish_epoch()
    assert len(step_loss) == 5 and not diverged and not finished_diverged
    np.testing.assert_array_equal(finished_loss, step_loss)
    expected = sum(whole.get_parameters(), []) + sum(whole.get_optimizer_state()[:2], [])
    for got, want in zip(between, expected):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(sum(halves.get_parameters(), []), sum(whole.get_parameters(), [])):
        np.testing.assert_array_equal(got, want)


@needs_gpu
def test_one_epoch_in_flight_at_a_time():
    sizes = [6, 16, 3]
    X, y = make_data(sizes, "cross_entropy", 40, np.float32)
    order = np.arange(40, dtype=np.int64)
    net, _, _ = make_net(sizes, "relu", "cross_entropy", np.float32, "fused")
    with pytest.raises(RuntimeError, match="no epoch"):
        net.finish_epoch()
    net.start_epoch(X, y, order, 8, False, np.full(5, 0.1), 0.0, False, 0.0)
    with pytest.raises(RuntimeError, match="not read"):
        net.start_epoch(X, y, order, 10, False, np.full(4, 0.1), 0.0, False, 0.0)
    assert len(net.finish_epoch()[0]) == 5  # the first epoch's result, still there
    assert len(net.train_epoch(X, y, order, 10, False, np.full(4, 0.1), 0.0, False, 0.0)[0]) == 4
    with pytest.raises(RuntimeError, match="no epoch"):
        net.finish_epoch()


@needs_gpu
def test_changed_training_set_is_uploaded_again():
    sizes = [4, 8, 1]
    X, y = make_data(sizes, "mse", 50, np.float32)
    net, weights, biases = make_net(sizes, "relu", "mse", np.float32, "fused")
    order = np.arange(50, dtype=np.int64)
    net.train_epoch(X, y, order, 50, False, np.zeros(1), 0.0, False, 0.0)
    X *= 2  # in place: the same array object with new contents
    step_loss, _ = net.train_epoch(X, y, order, 50, False, np.zeros(1), 0.0, False, 0.0)
    want, _, _ = reference.network_loss_and_grad(weights, biases, "relu", "mse", X, y)
    assert step_loss[0] == pytest.approx(want, rel=1e-5)


# --- GEMM tile shapes and splits along K (FUSEDMLP_CUDA_TILE / FUSEDMLP_CUDA_SPLIT force them) --

# Widths chosen for the GEMMs' load paths: [100, 132, 67, 12] has leading dimensions that are
# multiples of four (16-byte vector loads and stores) next to ones that are not; in
# [99, 130, 68, 12] W1, W2 start at offsets that are not multiples of four, so their vector
# loads fall back to scalars although their widths would allow vectors.
GEMM_SIZES = [[100, 132, 67, 12], [99, 130, 68, 12]]


@needs_gpu
@pytest.mark.parametrize("split", ["1", "3"])
@pytest.mark.parametrize("tile", ["128", "64", "64w", "128t128", "128x256"])
@pytest.mark.parametrize("sizes", GEMM_SIZES)
def test_gemm_tiles_and_splits_match_reference(sizes, tile, split, monkeypatch):
    force_gemm_tile(monkeypatch, tile)
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", split)
    dtype = np.float32
    net, weights, biases = make_net(sizes, "tanh", "cross_entropy", dtype, "tiled")
    X, y = make_data(sizes, "cross_entropy", 150, dtype)
    assert_loss_and_grad_match_reference(net, weights, biases, "tanh", "cross_entropy", X, y, dtype,
                                         1e-5)
    # a partial last batch (150 = 64 + 64 + 22) and rows gathered through the epoch's order
    orders, lrs = epoch_plan(150, 64, False, 1, 0.05)
    assert_epochs_match_reference(net, weights, biases, "tanh", "cross_entropy", X, y, orders, lrs, 64, dtype, 0.9)
    # inference (rows not gathered, another row count) through the same kernels
    got_w, got_b = net.get_parameters()
    assert_matches_reference(net.logits(X[:37]), reference.network_logits(got_w, got_b, "tanh", X[:37]), dtype)


@needs_gpu
@pytest.mark.parametrize("tile,split,dtype", [("128", "1", np.float32), ("128", "3", np.float32),
                                              ("64", "1", np.float32), ("64w", "1", np.float32),
                                              ("64w", "3", np.float32), ("128t128", "1", np.float32),
                                              ("128t128", "3", np.float32), ("128x256", "1", np.float32),
                                              ("128x256", "3", np.float32), ("128", "1", np.float64)])
def test_gemm_blocks_inside_and_at_the_edges_match_reference(tile, split, dtype, monkeypatch):
    """Blocks whose tiles all lie inside the operands run gemm_kernel's pipelined loop, the
    others its plain one. Widths that are multiples of 16 put most blocks of each product kind
    inside; 160 and the output's 12 do not fill their last tiles, and 12 and the last batch's
    100 rows are not whole K steps, so both loops run within one product."""
    force_gemm_tile(monkeypatch, tile)
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", split)
    sizes = [144, 256, 160, 12]
    net, weights, biases = make_net(sizes, "tanh", "cross_entropy", dtype, "tiled")
    X, y = make_data(sizes, "cross_entropy", 356, dtype)
    assert_loss_and_grad_match_reference(net, weights, biases, "tanh", "cross_entropy", X, y, dtype,
                                         1e-12 if dtype == np.float64 else 1e-5)
    orders, lrs = epoch_plan(356, 256, False, 1, 0.05)
    assert_epochs_match_reference(net, weights, biases, "tanh", "cross_entropy", X, y, orders, lrs, 256, dtype, 0.9)


def assert_hook_keeps_parameters(variable, off, on, sizes, activation, loss, dtype, n, batch_size, monkeypatch,
                                 path="tiled"):
    """Two epochs of the path with variable=off, then with variable=on held to the reference:
    the same parameters bit for bit."""
    X, y = make_data(sizes, loss, n, dtype)
    orders, lrs = epoch_plan(n, batch_size, False, 2, 0.05)
    monkeypatch.setenv(variable, off)
    net, _, _ = make_net(sizes, activation, loss, dtype, path)
    for order, rates in zip(orders, lrs):
        net.train_epoch(X, y, order, batch_size, False, rates, 0.9, False, 0.0)
    want = sum(net.get_parameters(), [])
    monkeypatch.setenv(variable, on)
    net, weights, biases = make_net(sizes, activation, loss, dtype, path)
    assert_epochs_match_reference(net, weights, biases, activation, loss, X, y, orders, lrs, batch_size, dtype, 0.9)
    for got, expected in zip(sum(net.get_parameters(), []), want):
        np.testing.assert_array_equal(got, expected)


@needs_gpu
@pytest.mark.parametrize("split", ["2", "3", "8", "16"])
@pytest.mark.parametrize("sizes", GEMM_SIZES + [[144, 256, 160, 12]])
def test_split_summed_across_a_cluster_matches_the_finish_kernel_bit_for_bit(sizes, split, monkeypatch):
    """FUSEDMLP_CUDA_SPLIT_SUM=cluster: the K ranges of each 64w tile are added by the blocks of
    one thread-block cluster through shared memory, in the order splitk_finish_kernel adds
    them, so every parameter is the same bit for bit (16: clusters of 9 to 16 blocks,
    beyond the portable 8, where the device allows them). The widths give ragged and
    whole tiles, the weight gradient's bias row inside a tile of features and in a row of
    tiles of its own (256), and a last batch of 100 rows."""
    force_gemm_tile(monkeypatch, "64w")
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", split)
    assert_hook_keeps_parameters("FUSEDMLP_CUDA_SPLIT_SUM", "kernel", "cluster", sizes, "tanh", "cross_entropy",
                                 np.float32, 356, 128, monkeypatch)


@needs_gpu
@pytest.mark.parametrize("graphs,split,dtype", [("1", "1", np.float32), ("0", "1", np.float32),
                                                ("1", "3", np.float32), ("1", "1", np.float64)])
def test_weight_gradients_on_their_own_stream_match_bit_for_bit(graphs, split, dtype, monkeypatch):
    """FUSEDMLP_CUDA_WGRAD_STREAM=1: each layer's weight gradient and update run on a second
    stream beside the next input gradient, which writes its dZ over Z. The same sums, so the
    same parameters bit for bit, in a CUDA graph and without, split along K or not (each
    stream with its own workspace); and loss_and_grad through the same backward pass. (The
    emulator runs the second stream's work as late as its events allow: a dZ overwritten
    before its weight gradient read it would show here.)"""
    monkeypatch.setenv("FUSEDMLP_CUDA_GRAPHS", graphs)
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", split)
    sizes = [144, 256, 160, 12]
    monkeypatch.setenv("FUSEDMLP_CUDA_WGRAD_STREAM", "1")
    net, weights, biases = make_net(sizes, "tanh", "cross_entropy", dtype, "tiled")
    X, y = make_data(sizes, "cross_entropy", 100, dtype)
    assert_loss_and_grad_match_reference(net, weights, biases, "tanh", "cross_entropy", X, y, dtype,
                                         1e-12 if dtype == np.float64 else 1e-5)
    assert_hook_keeps_parameters("FUSEDMLP_CUDA_WGRAD_STREAM", "0", "1", sizes, "tanh", "cross_entropy", dtype,
                                 356, 128, monkeypatch)


@needs_gpu
@pytest.mark.parametrize("path,split,sum_,skinny", [("tiled", "1", "kernel", "0"), ("tiled", "3", "kernel", "0"),
                                                    ("tiled", "3", "cluster", "1"), ("fused", "1", "kernel", "0")])
def test_dependent_launches_change_no_result(path, split, sum_, skinny, monkeypatch):
    """FUSEDMLP_CUDA_PDL=1: every kernel of a step starts as a programmatic dependent of the one
    before it (compute capability 9.0 and later; elsewhere the hook does nothing) and waits for
    it before touching memory: the same parameters bit for bit, for the GEMMs, their split sums
    (by kernel or across a cluster), the skinny input gradients, the loss, and the fused path's
    step and sum kernels (40 rows in 5 tiles of 8)."""
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", split)
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT_SUM", sum_)
    monkeypatch.setenv("FUSEDMLP_CUDA_SKINNY", skinny)
    monkeypatch.setenv("FUSEDMLP_CUDA_FUSED_ROWS", "8")
    sizes = [144, 256, 160, 12] if path == "tiled" else [9, 40, 24, 6]
    batch_size = 128 if path == "tiled" else 40
    assert_hook_keeps_parameters("FUSEDMLP_CUDA_PDL", "0", "1", sizes, "tanh", "cross_entropy", np.float32,
                                 356, batch_size, monkeypatch, path)


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [GEMM_SIZES[0], [20, 16, 7, 1], [33, 45, 16]])
def test_skinny_input_grad_matches_the_tiled_gemm_and_the_reference(sizes, dtype, monkeypatch):
    """FUSEDMLP_CUDA_SKINNY=1: input gradients of at most 16 terms per sum (12, 16, 7 and 1 here,
    on hidden layers too) by a thread per 4 outputs, whose runs wrap across rows of 67, 45, 20
    and 16: the same parameters as through the tiled GEMM, bit for bit."""
    assert_hook_keeps_parameters("FUSEDMLP_CUDA_SKINNY", "0", "1", sizes, "gelu", "mse", dtype, 150, 64, monkeypatch)


@needs_gpu
@pytest.mark.parametrize("sizes", GEMM_SIZES)
def test_float64_gemm_split_along_k_matches_reference(sizes, monkeypatch):
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", "3")
    dtype = np.float64
    net, weights, biases = make_net(sizes, "gelu", "mse", dtype, "tiled")
    X, y = make_data(sizes, "mse", 90, dtype)
    assert_loss_and_grad_match_reference(net, weights, biases, "gelu", "mse", X, y, dtype,
                                         1e-12)


@needs_gpu
@pytest.mark.parametrize("graphs", ["1", "0"])
def test_split_gemms_bit_identical_run_to_run_with_and_without_graphs(graphs, monkeypatch):
    monkeypatch.setenv("FUSEDMLP_CUDA_SPLIT", "3")
    sizes = GEMM_SIZES[0]
    X, y = make_data(sizes, "cross_entropy", 150, np.float32)
    orders, lrs = epoch_plan(150, 64, False, 1, 0.05)
    results = []
    for graphs_now in [graphs, "1"]:
        monkeypatch.setenv("FUSEDMLP_CUDA_GRAPHS", graphs_now)
        net, _, _ = make_net(sizes, "relu", "cross_entropy", np.float32, "tiled")
        losses = [net.train_epoch(X, y, o, 64, False, r, 0.9, True, 1e-4)[0] for o, r in zip(orders, lrs)]
        results.append((np.concatenate(losses), sum(net.get_parameters(), [])))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)
