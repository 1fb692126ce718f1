"""Kernel timeline of fusedmlp's CUDA backend training, from torch.profiler (CUPTI through kineto).

Answers, per training step: how much of the GPU's time is kernels and how much is gaps between
kernels, and which kernels take the time. The epochs train exactly like gpu_bench.py's fusedmlp
method; ProfilerActivity.CUDA records every kernel the process launches, our own extension's
and those inside CUDA graphs included (nsys is not on the device machines, and Nsight Compute's
graph profiling saw no graphs). Per configuration, into --out ($OUT or the current folder):
timeline_<config>.txt (printed too) and timeline_<config>.csv (one row per kernel), and with
--trace a gzipped chrome trace trace_<config>.json.gz.

    python bench/gpu_timeline.py                          # on a GPU machine
    python bench/gpu_timeline.py --only narrow --epochs 3 --trace
    python bench/gpu_timeline.py --dry-run                # no GPU: tiny sizes, the cpu backend,
                                                          # CPU activity only, and the analysis
                                                          # run on a synthetic timeline

Exit status: 0; 1 when a configuration failed, or, on a GPU machine, when torch or CUDA is
missing or the profiler recorded no kernels.
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import sys
import time
import traceback

import numpy as np

# gpu_bench.py sits next to this script: the same configurations, data and initial parameters.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_bench import CONFIGS, LR, init_parameters, make_data  # noqa: E402

DEFAULT_CONFIGS = "narrow,small,mnist,wide"
EPOCH_MARK = "fusedmlp_epoch_"  # record_function names around the profiled epochs
NAME_WIDTH = 90
# Gap histogram: upper edges in microseconds; the last bucket is everything from 50 us up.
GAP_EDGES_US = [1, 2, 5, 10, 50]
GAP_LABELS = ["<1us", "1-2us", "2-5us", "5-10us", "10-50us", ">=50us"]
# kineto's activity types (libkineto's toString of ActivityType) of the device events we keep.
DEVICE_KINDS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset"}

Event = collections.namedtuple("Event", "name kind start_ns dur_ns stream", defaults=(None,))


def short_name(name, width=NAME_WIDTH):
    """A demangled kernel name without its leading 'void ' and its parameter list, cut to width."""
    text = name[5:] if name.startswith("void ") else name
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                if i > 0:
                    text = text[:i]
                break
    return text if len(text) <= width else text[:width - 3] + "..."


def gap_bucket(gap_us):
    for index, edge in enumerate(GAP_EDGES_US):
        if gap_us < edge:
            return index
    return len(GAP_EDGES_US)


def split_epochs(events, epoch_starts_ns):
    """Lists of events per epoch: an event belongs to the last epoch that started (on the host
    clock the profiler converts device times to) at or before it; events before the first
    epoch's start go to the first. No starts: one group holding everything."""
    if not epoch_starts_ns:
        return [list(events)]
    groups = [[] for _ in epoch_starts_ns]
    starts = np.asarray(epoch_starts_ns, dtype=np.int64)
    for event in events:
        index = int(np.searchsorted(starts, event.start_ns, side="right")) - 1
        groups[max(index, 0)].append(event)
    return groups


def timeline(kernels):
    """Kernel intervals (sorted by start here) merged: span, busy (the union of the intervals),
    gaps (span - busy), and per kernel the gap before it, measured from the latest end of the
    kernels before it (0 when it overlaps them) and attributed to the kernel holding that end."""
    kernels = sorted(kernels, key=lambda e: (e.start_ns, e.start_ns + e.dur_ns))
    if not kernels:
        return {"span_ns": 0, "busy_ns": 0, "gap_ns": 0, "rows": [], "transitions": []}
    busy = 0
    cur_start, cur_end = kernels[0].start_ns, kernels[0].start_ns + kernels[0].dur_ns
    last = kernels[0]  # the kernel whose end is the latest so far
    rows = [(kernels[0], None)]
    transitions = []  # (kernel before, kernel after, gap_ns)
    for event in kernels[1:]:
        end = event.start_ns + event.dur_ns
        gap = max(0, event.start_ns - cur_end)
        rows.append((event, gap))
        transitions.append((last, event, gap))
        if event.start_ns > cur_end:  # a new busy interval
            busy += cur_end - cur_start
            cur_start, cur_end = event.start_ns, end
        else:
            cur_end = max(cur_end, end)
        if end >= last.start_ns + last.dur_ns:
            last = event
    busy += cur_end - cur_start
    span = max(e.start_ns + e.dur_ns for e in kernels) - kernels[0].start_ns
    return {"span_ns": span, "busy_ns": busy, "gap_ns": span - busy, "rows": rows, "transitions": transitions}


def analyze(events, epochs, steps_per_epoch, epoch_starts_ns=None, wall_s=None, runtime_calls=None,
            epoch_windows_ns=None):
    """The timeline's numbers from device events.

    events: Event(name, kind, start_ns, dur_ns[, stream]) or plain tuples in that order, kind one
    of "kernel", "memcpy", "memset" (anything else is ignored). epoch_starts_ns: each profiled
    epoch's start on the events' clock, to split them; None: one group, reported per epoch as its
    totals divided by `epochs` (the gaps between epochs then count as gaps). wall_s: host seconds
    per epoch. runtime_calls: {name: (calls, total ns)} of CUDA runtime calls on the host.
    epoch_windows_ns: each epoch's (start, end) on the host, the same clock: the host time before
    the epoch's first device event (the call, its checks and uploads, the launch) and after its
    last (the downloads, the wake-up from the wait, the return) are reported per epoch.
    Times in the result are in ns unless the key says otherwise."""
    events = [e if isinstance(e, Event) else Event(*e) for e in events]
    kernels = [e for e in events if e.kind == "kernel"]
    copies = [e for e in events if e.kind in ("memcpy", "memset")]
    split = bool(epoch_starts_ns) and len(epoch_starts_ns) == epochs
    kernel_groups = split_epochs(kernels, epoch_starts_ns if split else None)
    copy_groups = split_epochs(copies, epoch_starts_ns if split else None)
    steps = epochs * steps_per_epoch
    first_start = min((e.start_ns for e in kernels), default=0)

    per_epoch, csv_rows = [], []
    by_name = collections.defaultdict(lambda: [0, 0])  # name: [launches, total ns]
    after = collections.defaultdict(lambda: [0, 0])  # name of the kernel before a gap: [gaps, total ns]
    pairs = collections.defaultdict(lambda: [0, 0])  # (before, after): [gaps, total ns]
    hist = [[0, 0] for _ in GAP_LABELS]  # [gaps, total ns]
    overlapping = 0
    for index, (group, copy_group) in enumerate(zip(kernel_groups, copy_groups)):
        merged = timeline(group)
        for event, gap in merged["rows"]:
            by_name[event.name][0] += 1
            by_name[event.name][1] += event.dur_ns
            csv_rows.append((index, event, gap))
        for before, following, gap in merged["transitions"]:
            for table, key in ((after, before.name), (pairs, (before.name, following.name))):
                table[key][0] += 1
                table[key][1] += gap
            bucket = hist[gap_bucket(gap / 1000)]
            bucket[0] += 1
            bucket[1] += gap
            overlapping += following.start_ns < before.start_ns + before.dur_ns
        kinds = collections.Counter(e.kind for e in copy_group)
        around = {}
        if split and epoch_windows_ns and len(epoch_windows_ns) == epochs and (group or copy_group):
            first = min(e.start_ns for e in group + copy_group)
            last = max(e.start_ns + e.dur_ns for e in group + copy_group)
            around = {"lead_ns": first - epoch_windows_ns[index][0], "tail_ns": epoch_windows_ns[index][1] - last}
        per_epoch.append({**around,
            "kernels": len(group), "span_ns": merged["span_ns"], "busy_ns": merged["busy_ns"],
            "gap_ns": merged["gap_ns"], "memcpy": kinds["memcpy"], "memset": kinds["memset"],
            "memcpy_ns": sum(e.dur_ns for e in copy_group if e.kind == "memcpy"),
            "memset_ns": sum(e.dur_ns for e in copy_group if e.kind == "memset"),
        })
    if not split:  # one group for all epochs: report its totals divided by the epochs
        only = per_epoch[0]
        per_epoch = [{k: v / epochs for k, v in only.items()} for _ in range(epochs)]
    busy_total = sum(e["busy_ns"] for e in per_epoch)
    kernel_table = sorted(
        ({"name": name, "launches": n, "launches_per_step": n / steps, "mean_ns": total / n, "total_ns": total,
          "share_of_busy": total / busy_total if busy_total else 0.0} for name, (n, total) in by_name.items()),
        key=lambda row: -row["total_ns"])
    gap_after = sorted(
        ({"name": name, "gaps": n, "mean_ns": total / n, "total_ns": total} for name, (n, total) in after.items()),
        key=lambda row: -row["total_ns"])
    gap_pairs = sorted(
        ({"before": b, "after": a, "gaps": n, "mean_ns": total / n, "total_ns": total}
         for (b, a), (n, total) in pairs.items()),
        key=lambda row: -row["total_ns"])
    return {
        "epochs": epochs, "steps_per_epoch": steps_per_epoch, "split_by_epoch": split,
        "wall_s": list(wall_s) if wall_s is not None else None, "per_epoch": per_epoch,
        "kernels": len(kernels), "kernel_table": kernel_table, "gap_after": gap_after, "gap_pairs": gap_pairs,
        "gap_histogram": [{"bucket": label, "gaps": n, "total_ns": total}
                          for label, (n, total) in zip(GAP_LABELS, hist)],
        "overlapping": overlapping,
        "runtime_calls": {name: tuple(value) for name, value in (runtime_calls or {}).items()},
        "csv_rows": [{"epoch": epoch, "name": event.name, "start_us": (event.start_ns - first_start) / 1000,
                      "duration_us": event.dur_ns / 1000, "gap_before_us": None if gap is None else gap / 1000,
                      "stream": event.stream} for epoch, event, gap in csv_rows],
    }


def format_report(result, header_lines=()):
    epochs, spe = result["epochs"], result["steps_per_epoch"]
    steps = epochs * spe
    lines = list(header_lines)
    lines.append(f"epochs profiled: {epochs}, steps per epoch: {spe} (len(X)//batch)")
    lines.append("" if result["split_by_epoch"] else
                 "(epochs not told apart: per-epoch figures are the totals divided by the epochs, and the "
                 "time between epochs counts as gaps)")
    lines.append(f"{'epoch':>5} {'wall ms':>9} {'wall us/step':>12} {'span ms':>9} {'span us/step':>12} "
                 f"{'busy us/step':>12} {'gap us/step':>11} {'kernels':>8} {'memcpy n/us':>12} {'memset n/us':>12}")
    walls = result["wall_s"] or [None] * epochs
    for index, (epoch, wall) in enumerate(zip(result["per_epoch"], walls)):
        wall_cells = f"{'-':>9} {'-':>12}" if wall is None else f"{wall * 1e3:9.3f} {wall * 1e6 / spe:12.2f}"
        lines.append(
            f"{index:5d} {wall_cells} {epoch['span_ns'] / 1e6:9.3f} {epoch['span_ns'] / 1e3 / spe:12.2f} "
            f"{epoch['busy_ns'] / 1e3 / spe:12.2f} {epoch['gap_ns'] / 1e3 / spe:11.2f} {epoch['kernels']:8.0f} "
            f"{epoch['memcpy']:5.0f}/{epoch['memcpy_ns'] / 1e3:<6.1f} "
            f"{epoch['memset']:5.0f}/{epoch['memset_ns'] / 1e3:<6.1f}")
    total = {k: sum(e[k] for e in result["per_epoch"]) for k in ("span_ns", "busy_ns", "gap_ns")}
    mean_wall = f"{sum(walls) / epochs * 1e6 / spe:.2f}" if result["wall_s"] else "-"
    lines.append(f"per step, mean: host wall {mean_wall} us, GPU span {total['span_ns'] / 1e3 / steps:.2f} us = "
                 f"kernels busy {total['busy_ns'] / 1e3 / steps:.2f} us + gaps {total['gap_ns'] / 1e3 / steps:.2f} us "
                 f"({100 * total['gap_ns'] / total['span_ns'] if total['span_ns'] else 0:.1f}% of the span)")
    lines.append("(gaps: no kernel running, memcpy/memset time included; kernels overlapping their predecessor: "
                 f"{result['overlapping']})")
    if all("lead_ns" in e for e in result["per_epoch"]):
        lead = sum(e["lead_ns"] for e in result["per_epoch"]) / epochs
        tail = sum(e["tail_ns"] for e in result["per_epoch"]) / epochs
        lines.append(f"per epoch, mean: host before the GPU's first event {lead / 1e3:.1f} us (call, checks, "
                     f"uploads, launch); after its last {tail / 1e3:.1f} us (downloads, wake-up, return)")
    lines.append("")
    lines.append(f"kernels, by total time ({result['kernels']} launches):")
    lines.append(f"{'per step':>8} {'mean us':>9} {'total ms':>9} {'% busy':>7}  name")
    for row in result["kernel_table"]:
        lines.append(f"{row['launches_per_step']:8.2f} {row['mean_ns'] / 1e3:9.2f} {row['total_ns'] / 1e6:9.3f} "
                     f"{100 * row['share_of_busy']:7.1f}  {short_name(row['name'])}")
    lines.append("")
    lines.append("gaps between consecutive kernels (within an epoch):")
    lines.append(f"{'bucket':>8} {'count':>8} {'per step':>9} {'total ms':>9} {'us/step':>8}")
    for row in result["gap_histogram"]:
        lines.append(f"{row['bucket']:>8} {row['gaps']:8d} {row['gaps'] / steps:9.2f} {row['total_ns'] / 1e6:9.3f} "
                     f"{row['total_ns'] / 1e3 / steps:8.2f}")
    lines.append("")
    lines.append("gap after each kernel (its end to the next kernel's start), by total:")
    lines.append(f"{'gaps':>7} {'mean us':>8} {'us/step':>8}  kernel before the gap")
    for row in result["gap_after"]:
        lines.append(f"{row['gaps']:7d} {row['mean_ns'] / 1e3:8.2f} {row['total_ns'] / 1e3 / steps:8.2f}  "
                     f"{short_name(row['name'])}")
    lines.append("")
    lines.append("slowest transitions (kernel -> next kernel), top 10 by total gap:")
    lines.append(f"{'gaps':>7} {'mean us':>8} {'us/step':>8}  before -> after")
    for row in result["gap_pairs"][:10]:
        lines.append(f"{row['gaps']:7d} {row['mean_ns'] / 1e3:8.2f} {row['total_ns'] / 1e3 / steps:8.2f}  "
                     f"{short_name(row['before'], 60)} -> {short_name(row['after'], 60)}")
    if result["runtime_calls"]:
        lines.append("")
        lines.append("CUDA runtime calls (host side), per epoch: calls, host us")
        for name, (calls, total_ns) in sorted(result["runtime_calls"].items(), key=lambda item: -item[1][1])[:10]:
            lines.append(f"{calls / epochs:9.2f} {total_ns / 1e3 / epochs:10.1f}  {name}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write_csv(path, result):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "name", "start_us", "duration_us", "gap_before_us", "stream"])
        for row in result["csv_rows"]:
            writer.writerow([row["epoch"], row["name"], f"{row['start_us']:.3f}", f"{row['duration_us']:.3f}",
                             "" if row["gap_before_us"] is None else f"{row['gap_before_us']:.3f}",
                             "" if row["stream"] is None else row["stream"]])


def profiler_events(prof):
    """(device events, epoch marks {index: (start_ns, end_ns)}, runtime calls {name: [calls, total
    ns]}, other device activity counts) from a finished torch.profiler.profile.

    kineto's events carry device_type() (DeviceType.CUDA for what CUPTI recorded on the GPU),
    activity_type() ("kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation", ...; host side
    "cpu_op", "user_annotation", "cuda_runtime", ...) and start_ns()/duration_ns() on the host's
    clock. Older builds without kineto_results: the FunctionEvents of prof.events()."""
    from torch.autograd import DeviceType

    device, marks, other = [], {}, collections.Counter()
    runtime = collections.defaultdict(lambda: [0, 0])  # name: [calls, total ns]
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is not None:
        # activity_type() is missing from some torch builds (2.11 on the H100 machine, 2026-11-26):
        # then kinds are told by name below.
        raw = [(e.name(), str(e.activity_type()) if hasattr(e, "activity_type") else "", e.device_type(),
                e.start_ns(), e.duration_ns(), e.device_resource_id()) for e in results.events()]
    else:
        raw = [(e.name, str(getattr(e, "activity_type", "") or ""), e.device_type, int(e.time_range.start * 1000),
                int((e.time_range.end - e.time_range.start) * 1000), getattr(e, "device_resource_id", None))
               for e in prof.events()]
    for name, activity, device_type, start, duration, resource in raw:
        activity = activity.lower()
        if device_type == DeviceType.CUDA:
            kind = DEVICE_KINDS.get(activity)
            if kind is None and not activity:  # no activity type: tell copies from kernels by name
                lowered = name.lower()
                if name.startswith(EPOCH_MARK):  # the epoch marks' device-side copies
                    activity = "gpu_user_annotation"
                else:
                    kind = "memcpy" if "memcpy" in lowered else "memset" if "memset" in lowered else "kernel"
            if kind is None:
                other[activity] += 1
            else:
                device.append(Event(name, kind, start, duration, resource))
        elif name.startswith(EPOCH_MARK):
            marks[int(name[len(EPOCH_MARK):])] = (start, start + duration)
        elif activity in ("cuda_runtime", "cuda_driver") or (not activity and name.startswith("cuda")):
            runtime[name][0] += 1
            runtime[name][1] += duration
    return device, marks, dict(runtime), other


def synthetic_events(marks, steps_per_epoch):
    """A made-up timeline for the dry run, and its epochs' starts: each epoch from its host
    window's start (or 50 us after the previous one's end, where the host was faster); per step
    a 10 us kernel, a 1.5 us gap, a 20 us kernel overlapped by the last 5 us of an 8 us one on
    another stream, then a 12 us gap; one 3 us memcpy per epoch, 1 us before its first kernel.
    Per step: busy 33 us, gaps 13.5 us (1.5 us in an epoch's last step)."""
    events, starts, t = [], [], 0
    for index in sorted(marks):
        t = max(marks[index][0], t + 50000)
        starts.append(t)
        events.append(Event("Memcpy HtoD (Pageable -> Device)", "memcpy", t, 3000, 7))
        t += 4000
        for step in range(steps_per_epoch):
            if step:
                t += 12000
            events.append(Event("void synthetic::forward<float, 64>(synthetic::Args<float>)", "kernel", t, 10000, 7))
            t += 11500
            events.append(Event("void synthetic::backward<float, 64>(synthetic::Args<float>)", "kernel", t, 20000, 7))
            events.append(Event("void synthetic::update<float>(float*, int)", "kernel", t + 15000, 8000, 8))
            t += 23000
    return events, starts


def make_net(sizes, dry_run):
    if dry_run:  # no GPU: the native CPU backend (the NumPy reference where it is not built)
        from fusedmlp import backends

        name = "cpu" if backends.native_available() else "numpy"
        return backends.make_backend(name, sizes, "relu", "cross_entropy", np.float32), f"backend {name} (dry run)"
    from fusedmlp.cuda_backend import CudaBackend

    net = CudaBackend(sizes, "relu", "cross_entropy", np.float32)
    return net, f"backend cuda, fused: {getattr(net._net, 'fused', '?')}"


def unprofiled_epochs(net, run_epoch, epochs, sync):
    """Host times of `epochs` epochs without the profiler, whose tracing slows every runtime call
    (a graph launch most): per epoch, seconds in start_epoch's call (checks, uploads, the launch),
    then waiting in finish_epoch, then the whole epoch; and the call of an epoch of no steps (the
    same checks and narrowing of the order, no copy or launch). Backends without the two halves
    give the whole epoch alone (the others are None)."""
    calls, waits, walls, empty = [], [], [], []
    halves = hasattr(net, "start_epoch")
    for _ in range(epochs):
        started = time.perf_counter()
        if halves:
            run_epoch(net.start_epoch)
            returned = time.perf_counter()
            _, diverged = net.finish_epoch()
            assert not diverged
            calls.append(returned - started)
            waits.append(time.perf_counter() - returned)
        else:
            _, diverged = run_epoch(net.train_epoch)
            assert not diverged
        sync()
        walls.append(time.perf_counter() - started)
    for _ in range(epochs if halves else 0):
        started = time.perf_counter()
        run_epoch(net.start_epoch, empty=True)
        net.finish_epoch()
        empty.append(time.perf_counter() - started)
    median = lambda values: float(np.median(values)) if values else None  # noqa: E731
    return median(calls), median(waits), median(walls), median(empty)


def unprofiled_line(call_s, wait_s, wall_s, empty_s, span_ms_per_epoch):
    """The report line of unprofiled_epochs' medians; span_ms_per_epoch: the profiled GPU span,
    so that the rest of the unprofiled wall is the time the GPU sat idle (None: not known)."""
    text = f"unprofiled, median epoch: wall {wall_s * 1e3:.3f} ms"
    if call_s is not None:
        text += (f" = start_epoch call {call_s * 1e6:.1f} us (an epoch of no steps: {empty_s * 1e6:.1f} us)"
                 f" + finish_epoch wait {wait_s * 1e6:.1f} us")
    if span_ms_per_epoch is not None:
        text += f"; minus the profiled GPU span: {(wall_s * 1e3 - span_ms_per_epoch) * 1e3:.1f} us per epoch"
    return text


def profile_config(name, sizes, batch, samples, opts, torch):
    """Trains and profiles one configuration; returns (report text, whether kernels were found)."""
    if opts.dry_run:  # gpu_bench's dry-run sizes
        sizes = [min(s, 32) for s in sizes]
        batch = min(batch, 64)
        samples = batch * 4
    X, y = make_data(sizes, samples)
    net, backend_info = make_net(sizes, opts.dry_run)
    net.set_parameters(*init_parameters(sizes))
    order = np.arange(len(X), dtype=np.int64)
    steps = len(X) // batch
    lrs = np.full(steps, LR)
    sync = (lambda: None) if opts.dry_run else torch.cuda.synchronize

    def run_epoch(method, empty=False):
        # empty: batches larger than the set, dropped, so no steps
        if empty:
            return method(X, y, order, len(X) + 1, True, lrs[:0], 0.0, False, 0.0)
        return method(X, y, order, batch, True, lrs, 0.0, False, 0.0)

    def epoch():
        _, diverged = run_epoch(net.train_epoch)
        assert not diverged

    header = [f"config {name}: layers {'-'.join(map(str, sizes))}, batch {batch}, samples {samples}, {backend_info}",
              f"device: {opts.device_name}, torch {torch.__version__}"]
    sync()  # the context exists before the warm-up
    epoch()  # warm-up outside the profiler: graph capture, uploads
    sync()
    unprofiled = unprofiled_epochs(net, run_epoch, opts.unprofiled_epochs, sync)
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([] if opts.dry_run else [ProfilerActivity.CUDA])
    walls = []
    with profile(activities=activities) as prof:
        for index in range(opts.epochs):
            with record_function(f"{EPOCH_MARK}{index}"):
                started = time.perf_counter()
                epoch()
                sync()
                walls.append(time.perf_counter() - started)
        sync()
    if opts.trace:
        trace = os.path.join(opts.out, f"trace_{name}.json.gz")
        prof.export_chrome_trace(trace)
        header.append(f"chrome trace: {trace}")
    events, marks, runtime, other = profiler_events(prof)
    if other:
        header.append("other device events (not counted): " + ", ".join(f"{k} {v}" for k, v in other.items()))
    starts = [marks[i][0] for i in range(opts.epochs)] if sorted(marks) == list(range(opts.epochs)) else None
    if starts is None:
        header.append(f"epoch marks not found ({sorted(marks)}): totals divided by the epochs")
    found = any(e.kind == "kernel" for e in events)
    if not found:
        why = ("dry run: CPU activity only" if opts.dry_run else
               "torch.profiler recorded no CUDA kernel events (is kineto built with CUPTI? does CUPTI load?)")
        header.append(f"NO CUDA KERNEL EVENTS: {why}; host wall per epoch: "
                      + ", ".join(f"{w * 1e3:.3f} ms" for w in walls))
        if not opts.dry_run:
            return "\n".join(header) + "\n", False
        header.append("SYNTHETIC timeline below (dry run: exercises the analysis; not a measurement)")
        events, starts = synthetic_events(marks, steps)
    else:
        # A kernel starting outside the epochs' host windows means the device and host clocks
        # disagree, and the split into epochs is off.
        windows = [marks[i] for i in sorted(marks)]
        outside = sum(1 for e in events if e.kind == "kernel"
                      and not any(a <= e.start_ns <= b for a, b in windows)) if windows else "?"
        header.append(f"kernels starting outside their epoch's host window: {outside}")
    windows = [marks[i] for i in range(opts.epochs)] if starts is not None else None
    result = analyze(events, opts.epochs, steps, starts, walls, runtime, windows)
    span_ms = float(np.mean([e["span_ns"] for e in result["per_epoch"]])) / 1e6 if found else None
    header.append(unprofiled_line(*unprofiled, span_ms))
    write_csv(os.path.join(opts.out, f"timeline_{name}.csv"), result)
    return format_report(result, header), found


def write_text(opts, name, text):
    path = os.path.join(opts.out, f"timeline_{name}.txt")
    with open(path, "w") as f:
        f.write(text)
    print(text, end="" if text.endswith("\n") else "\n", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=DEFAULT_CONFIGS, help=f"comma-separated configs (default {DEFAULT_CONFIGS})")
    parser.add_argument("--epochs", type=int, default=2, help="profiled epochs, after one warm-up (default 2)")
    parser.add_argument("--out", help="folder for the files (default $OUT, else the current folder)")
    parser.add_argument("--unprofiled-epochs", type=int, default=10,
                        help="epochs timed on the host before profiling, without the profiler (default 10)")
    parser.add_argument("--trace", action="store_true", help="also write a gzipped chrome trace per config")
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU: tiny sizes, the cpu backend, CPU activity, a synthetic timeline")
    opts = parser.parse_args(argv)
    known = {c[0]: c for c in CONFIGS}
    names = [n for n in opts.only.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {list(known)}")
    if opts.epochs < 1:
        parser.error("--epochs must be at least 1")
    opts.out = opts.out or os.environ.get("OUT") or os.getcwd()
    os.makedirs(opts.out, exist_ok=True)

    problem = None
    try:
        import torch
    except Exception as error:  # noqa: BLE001
        torch, problem = None, f"torch is not importable ({type(error).__name__}: {error})"
    if torch is not None and not opts.dry_run and not torch.cuda.is_available():
        problem = f"torch {torch.__version__} sees no CUDA device (torch.version.cuda = {torch.version.cuda})"
    if problem:
        for name in names:
            write_text(opts, name, f"config {name}: NOT PROFILED: {problem}\n")
        return 0 if opts.dry_run else 1
    opts.device_name = "none (dry run)" if opts.dry_run else torch.cuda.get_device_name(0)

    status, any_kernels = 0, False
    for name in names:
        _, sizes, batch, samples = known[name]
        try:
            text, found = profile_config(name, sizes, batch, samples, opts, torch)
            any_kernels = any_kernels or found
        except Exception as error:  # noqa: BLE001 - one configuration failing must not stop the rest
            text = f"config {name}: FAILED: {type(error).__name__}: {error}\n{traceback.format_exc()}"
            status = 1
        write_text(opts, name, text)
    if not opts.dry_run and not any_kernels:
        print("no CUDA kernel events in any configuration", flush=True)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
