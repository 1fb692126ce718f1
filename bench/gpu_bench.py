"""GPU training benchmark: fusedmlp's CUDA backend against PyTorch eager, PyTorch in a CUDA
graph, and JAX with the whole epoch compiled as one lax.scan, on the same GPU in the same run.

float32, cross_entropy, relu, plain SGD, shuffle off, true fp32 everywhere (TF32 off, JAX
matmul precision "highest"). Prints a table of training samples/s and writes JSON to
$OUT/gpu_bench.json (or ./gpu_bench.json). Each baseline is guarded: one failing records its
error and the others still run.

    python bench/gpu_bench.py                 # on a GPU machine
    python bench/gpu_bench.py --dry-run       # no GPU: tiny sizes, torch and JAX on the CPU
                                              # (the GPU-only methods record their errors), to
                                              # check the harness, the table and the JSON
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import sys
import time
import traceback

import numpy as np

LR = 0.01
# name, layer sizes, batch size, samples per epoch (a few tenths of a second per epoch)
CONFIGS = [
    ("tiny", [32, 64, 64, 4], 32, 32768),
    ("small", [64, 128, 128, 10], 64, 65536),
    ("narrow", [64, 64, 64, 64, 64, 16], 4096, 262144),
    ("mnist", [784, 256, 128, 10], 1024, 65536),
    ("wide", [1024, 1024, 1024, 10], 256, 32768),
    ("huge", [4096, 8192, 8192, 1000], 4096, 16384),
]
# The targets: (peer, minimum ratio of fusedmlp to it)
TARGETS = {
    "tiny": [("torch_graph", 10.0), ("jax_scan", 2.5)],
    "small": [("torch_graph", 10.0), ("jax_scan", 2.5)],
    "narrow": [("torch_graph", 3.0)],
    "mnist": [("jax_scan", 1.5)],
    "wide": [("jax_scan", 1.0)],
    "huge": [("torch_eager", 0.9), ("jax_scan", 0.9)],
}
PEERS = ["torch_eager", "torch_graph", "jax_scan"]
# fusedmlp: the backend's epochs in a fixed order, as the peers run them (the targets).
# fusedmlp_fit: MLP.fit with shuffling, what a user runs: one upload and a fresh shuffle each
# epoch, drawn on the host while the GPU trains the epoch before.
METHODS = ["fusedmlp", "fusedmlp_fit"] + PEERS


def make_data(sizes, samples, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(samples, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=samples).astype(np.int64)
    return X, y


@functools.lru_cache(maxsize=1)
def _initial_parameters(sizes):
    from fusedmlp import reference

    return reference.init_parameters(list(sizes), "relu", np.random.default_rng(1), np.float32)


def init_parameters(sizes):
    """The same initial parameters for every method (drawn once per configuration)."""
    return _initial_parameters(tuple(sizes))


def timed(run_epoch, samples, min_seconds, max_epochs, sync):
    """Samples/s of run_epoch after one warm-up epoch (compilation, graph capture, uploads)."""
    run_epoch()
    sync()
    epochs, started = 0, time.perf_counter()
    while True:
        run_epoch()
        epochs += 1
        sync()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds or epochs >= max_epochs:
            return samples * epochs / elapsed


def bench_fusedmlp(sizes, batch, X, y, opts):
    from fusedmlp.cuda_backend import CudaBackend

    net = CudaBackend(sizes, "relu", "cross_entropy", np.float32)
    net.set_parameters(*init_parameters(sizes))
    order = np.arange(len(X), dtype=np.int64)
    lrs = np.full(len(X) // batch, LR)

    def epoch():
        _, diverged = net.train_epoch(X, y, order, batch, True, lrs, 0.0, False, 0.0)
        assert not diverged

    return timed(epoch, len(X), opts.min_seconds, opts.max_epochs, lambda: None), {"fused": net._net.fused}


def bench_fusedmlp_fit(sizes, batch, X, y, opts):
    """Samples/s of one MLP.fit of several epochs with shuffle=True, its upload and checks of X
    included: as many epochs as a warm-up epoch says fill min_seconds."""
    import fusedmlp as fm

    model = fm.MLP(sizes, activation="relu", loss="cross_entropy", backend="cuda", dtype="float32")
    model.set_parameters(*init_parameters(sizes))

    def fit(epochs):
        history = model.fit(X, y, epochs=epochs, batch_size=batch, lr=LR, drop_last=True, shuffle=True, seed=0)
        assert not history.diverged and len(history.epoch_loss) == epochs
        return history

    started = time.perf_counter()
    fit(1)
    warm_up = time.perf_counter() - started
    epochs = min(max(2, int(opts.min_seconds / max(warm_up, 1e-9))), opts.max_epochs)
    started = time.perf_counter()
    history = fit(epochs)
    elapsed = time.perf_counter() - started
    # Where a fit's time goes beyond its epochs: the epochs as the history times them (each
    # includes the next epoch's shuffle, drawn while the GPU trains), and the rest of the fit
    # (checks and upload of the training set, the first shuffle, the history).
    epoch_ms = float(np.median(history.epoch_time)) * 1e3
    outside_ms = (elapsed - float(np.sum(history.epoch_time))) * 1e3
    # The first epoch also uploads the training set and captures the epoch's graph: timed
    # apart, and the upload alone once more (from the same pageable arrays), to tell which.
    first_ms = float(history.epoch_time[0]) * 1e3
    net = model._backend._net
    started = time.perf_counter()
    net.upload_training_set(X, y)
    upload_ms = (time.perf_counter() - started) * 1e3
    return len(X) * epochs / elapsed, {"epochs": epochs, "median_epoch_ms": round(epoch_ms, 3),
                                       "outside_epochs_ms": round(outside_ms, 3), "first_epoch_ms": round(first_ms, 3),
                                       "upload_ms": round(upload_ms, 3)}


def torch_setup(sizes, device):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    layers = []
    weights, biases = init_parameters(sizes)
    for l, (w, b) in enumerate(zip(weights, biases)):
        linear = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if l + 1 < len(weights):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    return torch, model, torch.optim.SGD(model.parameters(), lr=LR), torch.nn.CrossEntropyLoss()


def bench_torch_eager(sizes, batch, X, y, opts):
    torch, model, optimizer, criterion = torch_setup(sizes, opts.device)
    Xd = torch.from_numpy(X).to(opts.device)
    yd = torch.from_numpy(y).to(opts.device)
    steps = len(X) // batch

    def epoch():
        for s in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(Xd[s * batch:(s + 1) * batch]), yd[s * batch:(s + 1) * batch])
            loss.backward()
            optimizer.step()

    sync = torch.cuda.synchronize if opts.device == "cuda" else (lambda: None)
    return timed(epoch, len(X), opts.min_seconds, opts.max_epochs, sync), {}


def bench_torch_graph(sizes, batch, X, y, opts):
    torch, model, optimizer, criterion = torch_setup(sizes, opts.device)
    Xd = torch.from_numpy(X).to(opts.device)
    yd = torch.from_numpy(y).to(opts.device)
    steps = len(X) // batch
    static_x = Xd[:batch].clone()
    static_y = yd[:batch].clone()

    def step():
        loss = criterion(model(static_x), static_y)
        loss.backward()
        optimizer.step()

    # PyTorch's documented whole-network capture: warm up on a side stream, then capture with
    # the gradients unset, so that each replay writes fresh gradients.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()

    def epoch():
        for s in range(steps):
            static_x.copy_(Xd[s * batch:(s + 1) * batch])
            static_y.copy_(yd[s * batch:(s + 1) * batch])
            graph.replay()

    return timed(epoch, len(X), opts.min_seconds, opts.max_epochs, torch.cuda.synchronize), {}


def bench_jax_scan(sizes, batch, X, y, opts):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")
    weights, biases = init_parameters(sizes)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(weights, biases)]
    steps = len(X) // batch
    Xb = jnp.asarray(X[:steps * batch].reshape(steps, batch, -1))
    yb = jnp.asarray(y[:steps * batch].reshape(steps, batch))

    def loss_fn(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        logits = h @ params[-1][0] + params[-1][1]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, yb[:, None], axis=1)[:, 0])

    def step(params, batch_data):
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch_data)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), loss

    @jax.jit
    def run_epoch(params, Xb, yb):
        return jax.lax.scan(step, params, (Xb, yb))

    state = {"params": params}

    def epoch():
        state["params"], losses = run_epoch(state["params"], Xb, yb)
        state["losses"] = losses

    def sync():
        jax.block_until_ready(state["params"])

    return timed(epoch, len(X), opts.min_seconds, opts.max_epochs, sync), {"backend": jax.default_backend()}


RUNNERS = {
    "fusedmlp": bench_fusedmlp,
    "fusedmlp_fit": bench_fusedmlp_fit,
    "torch_eager": bench_torch_eager,
    "torch_graph": bench_torch_graph,
    "jax_scan": bench_jax_scan,
}


def release_device_memory():
    """Frees what one method cached on the device before the next one runs."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_name(opts):
    if opts.dry_run:
        return f"none (dry run on {platform.processor() or platform.machine()})"
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception as error:  # noqa: BLE001 - the name is informative only
        return f"unknown ({error})"


def run(opts):
    configs = CONFIGS
    if opts.only:
        configs = [c for c in CONFIGS if c[0] in opts.only.split(",")]
    results = []
    for name, sizes, batch, samples in configs:
        if opts.dry_run:  # the same shapes' structure, a CPU-sized amount of work
            sizes = [min(s, 32) for s in sizes]
            batch = min(batch, 64)
            samples = batch * 4
        X, y = make_data(sizes, samples)
        row = {"name": name, "sizes": sizes, "batch": batch, "samples": samples, "samples_per_s": {}, "errors": {},
               "info": {}}
        for method in opts.methods:
            try:
                rate, info = RUNNERS[method](sizes, batch, X, y, opts)
                row["samples_per_s"][method] = rate
                if info:
                    row["info"][method] = info
            except Exception as error:  # noqa: BLE001 - one baseline failing must not stop the rest
                row["errors"][method] = f"{type(error).__name__}: {error}"
                traceback.print_exc(file=sys.stderr)
            release_device_memory()
        rates = row["samples_per_s"]
        row["ratios"] = {f"fusedmlp/{peer}": rates["fusedmlp"] / rates[peer]
                         for peer in PEERS if "fusedmlp" in rates and peer in rates}
        row["targets"] = []
        for peer, minimum in TARGETS[name]:
            ratio = row["ratios"].get(f"fusedmlp/{peer}")
            row["targets"].append({"peer": peer, "min_ratio": minimum, "ratio": ratio,
                                   "met": None if ratio is None else ratio >= minimum})
        results.append(row)
        print_row(row, header=len(results) == 1)
    return results


def fmt_rate(value):
    return "-" if value is None else f"{value / 1e6:9.3f}M"


def print_row(row, header):
    if header:
        print(f"{'config':8} {'batch':>6} " + " ".join(f"{m:>12}" for m in METHODS) +
              "  x_eager  x_graph    x_jax  targets")
    rates = row["samples_per_s"]
    ratios = row["ratios"]
    cells = " ".join(f"{fmt_rate(rates.get(m)):>12}" for m in METHODS)
    ratio_cells = " ".join(
        f"{ratios[f'fusedmlp/{p}']:8.2f}" if f"fusedmlp/{p}" in ratios else f"{'-':>8}" for p in PEERS)
    targets = ", ".join(
        f"{t['peer']}>={t['min_ratio']}: " + ("?" if t["met"] is None else ("met" if t["met"] else "MISSED"))
        for t in row["targets"])
    print(f"{row['name']:8} {row['batch']:6d} {cells} {ratio_cells}  {targets}", flush=True)
    fit = row["info"].get("fusedmlp_fit")
    if fit and "median_epoch_ms" in fit:
        print(f"         fusedmlp_fit: {fit['epochs']} epochs of {fit['median_epoch_ms']:.3f} ms (median), "
              f"the first {fit['first_epoch_ms']:.1f} ms, {fit['outside_epochs_ms']:.1f} ms of the fit outside "
              f"them; an upload of the training set alone {fit['upload_ms']:.1f} ms", flush=True)
    for method, error in row["errors"].items():
        print(f"         {method}: {error}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="no GPU: small sizes, torch and JAX on the CPU")
    parser.add_argument("--only", help="comma-separated config names (default: all)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated methods (default: all of {','.join(METHODS)})")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="timed time per method and config")
    parser.add_argument("--max-epochs", type=int, default=20, help="timed epochs at most")
    parser.add_argument("--out", help="JSON path (default: $OUT/gpu_bench.json or ./gpu_bench.json)")
    opts = parser.parse_args(argv)
    opts.methods = opts.methods.split(",")
    unknown = sorted(set(opts.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {METHODS}")
    opts.device = "cpu" if opts.dry_run else "cuda"
    if opts.dry_run:
        opts.min_seconds, opts.max_epochs = 0.0, 1
    print(f"device: {device_name(opts)}", flush=True)
    results = run(opts)
    out = opts.out or os.path.join(os.environ.get("OUT") or ".", "gpu_bench.json")
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for module in ("torch", "jax"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            versions[module] = None
    with open(out, "w") as f:
        json.dump({"device": device_name(opts), "dry_run": opts.dry_run, "lr": LR, "versions": versions,
                   "results": results}, f, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
