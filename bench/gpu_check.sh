#!/usr/bin/env bash
# On a machine with one NVIDIA GPU, from the repository root, offline: build fusedmlp with its
# CUDA backend, run the CUDA tests (and the backend-parametrized suites' cuda cases), then the
# GPU benchmark, then fusedmlp alone under its tuning hooks and Nsight Compute. Designed to
# finish well inside 8 minutes; every step has its own time limit so that one hanging step
# cannot eat the rest. The whole output goes to $OUT/gpu_check.log, the benchmark's JSON to
# $OUT/gpu_bench.json (OUT defaults to the current folder), every other file into
# $OUT/gpu_check_files.tgz.
set -o pipefail
set -u

OUT="${OUT:-$PWD}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
# nvcc where the CUDA toolkit usually lives, when it is not on PATH already
command -v nvcc >/dev/null || export PATH="$PATH:/usr/local/cuda/bin"
ROOT="$PWD"
BUILD="$ROOT/build/gpu-check"  # build/ is ignored by git
START=$SECONDS
# Which steps run: build is always first; the rest by name (GPU_CHECK_STEPS). "baseline" (an
# earlier version's speed against this one's), "timeline" (each epoch's kernels and the gaps
# between them, from torch.profiler) and "profile" (Nsight Compute sections and source lines of
# each configuration's hot kernels) run only when named.
STEPS="${GPU_CHECK_STEPS:-tests bench hooks ncu}"
wants() { [[ " $STEPS " == *" $1 "* ]]; }

step() { echo; echo "== [$((SECONDS - START))s] $*"; }
# A file-name label for hook settings: FUSEDMLP_CUDA_TILE=64+FUSEDMLP_CUDA_SPLIT=1 -> tile_64_split_1
hooks_label() { echo "${1//FUSEDMLP_CUDA_/}" | tr "=+A-Z" "__a-z"; }

# The modules of the source tree $1, built in $2: all of them, or the targets named after. With
# the GEMM tiles on trial, which the hooks below time (an older tree ignores the option).
build_modules() {
  local src="$1" build="$2" generator=() targets=()
  shift 2
  [ $# -gt 0 ] && targets=(--target "$@")
  command -v ninja >/dev/null && generator=(-G Ninja)
  timeout 240 cmake -S "$src" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFUSEDMLP_CUDA=ON \
    -DFUSEDMLP_CUDA_TRIAL_TILES=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${GPU_CHECK_ARCH:-80;90}" -DCMAKE_CUDA_FLAGS=-lineinfo \
    -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
    && timeout 360 cmake --build "$build" -j "$(nproc)" "${targets[@]}"
}

main() {
  local status=0
  step "machine"
  date -u
  nvidia-smi || echo "nvidia-smi failed"
  "$PY" --version
  nvcc --version | tail -1 || true

  step "build (FUSEDMLP_CUDA=ON)"
  if ! build_modules "$ROOT" "$BUILD"; then
    echo "BUILD FAILED"
    return 1
  fi
  cp "$BUILD"/_*.so "$ROOT/python/fusedmlp/"
  export PYTHONPATH="$ROOT/python"
  "$PY" -c "import fusedmlp.cuda_backend as c; print('cuda_available:', c.cuda_available(), c.cuda_unavailable_reason());
c.cuda_available() and print('FUSEDMLP_CUDA_TILE can force:', c._cuda.forceable_gemm_tiles())"

  if wants tests; then
    step "tests/test_cuda.py"
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider --tb=short -rfE --maxfail=25 tests/test_cuda.py \
      --junitxml="$OUT/test_cuda.xml"
    local tests_rc=$?
    [ "$tests_rc" -ne 0 ] && status=1
    if [ "$tests_rc" -eq 124 ]; then
      # A kernel that hangs would hang every later step too: keep the time for a rerun.
      echo "CUDA TESTS TIMED OUT: stopping here"
      return 1
    fi

    # The CUDA tests again under each hook that changes how kernels run, not what they compute
    # (GPU_CHECK_TEST_HOOKS, space-separated VARIABLE=value, several joined by "+"; by default the
    # cluster sums, the skinny input gradients, the cluster epochs, batches of one tile
    # included, the weight gradients' own stream and dependent launches, together): results must
    # not change.
    local variant
    for variant in ${GPU_CHECK_TEST_HOOKS-FUSEDMLP_CUDA_SPLIT_SUM=cluster+FUSEDMLP_CUDA_SKINNY=1+FUSEDMLP_CUDA_CLUSTER_EPOCH=2+FUSEDMLP_CUDA_WGRAD_STREAM=1+FUSEDMLP_CUDA_PDL=1}; do
      step "tests/test_cuda.py with $variant"
      env ${variant//+/ } timeout 150 "$PY" -m pytest -q -p no:cacheprovider --tb=short -rfE --maxfail=25 tests/test_cuda.py \
        || status=1
    done

    step "backend-parametrized suites, cuda cases"
    timeout 90 "$PY" -m pytest -q -p no:cacheprovider --tb=short -rfE --maxfail=25 tests -k cuda \
      --ignore=tests/test_cuda.py
    local rc=$?
    # 5: no test selected (the suites do not know the cuda backend yet)
    [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && status=1
  fi

  if wants bench; then
    step "GPU benchmark"
    # GPU_BENCH_ARGS: extra arguments, e.g. --dry-run to rehearse this script without a GPU
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 240 "$PY" bench/gpu_bench.py --out "$OUT/gpu_bench.json" \
      ${GPU_BENCH_ARGS:-} || status=1
  fi

  # An earlier version of fusedmlp against this one, fusedmlp alone, in turns (baseline, this,
  # baseline, this) on the same GPU: for changes with no hook to switch them off. Its source
  # tree comes with the working tree: GPU_CHECK_BASELINE_SRC, a folder (e.g. made here by
  # `git archive COMMIT | tar -x -C build/baseline-src` and carried to the device), and
  # GPU_CHECK_BASELINE_CONFIGS the configurations to time (default tiny,small,narrow). Only its
  # CUDA module is built (GPU time is scarce); it runs with this build's CPU module.
  if wants baseline; then
    step "baseline ${GPU_CHECK_BASELINE_SRC:-(GPU_CHECK_BASELINE_SRC unset)} against this build"
    local base_src="${GPU_CHECK_BASELINE_SRC:-}" base_py="$ROOT/build/baseline-py"
    if [ -z "$base_src" ] || [ ! -d "$base_src/python/fusedmlp" ]; then
      echo "no baseline source tree at '$base_src'"
      status=1
    elif ! build_modules "$(cd "$base_src" && pwd)" "$ROOT/build/gpu-check-baseline" _cuda; then
      echo "BASELINE BUILD FAILED"
      status=1
    else
      rm -rf "$base_py" && mkdir -p "$base_py" && cp -r "$base_src/python/fusedmlp" "$base_py/"
      cp "$ROOT/build/gpu-check-baseline"/_cuda*.so "$BUILD"/_native*.so "$base_py/fusedmlp/"
      local round who
      for round in 1 2; do
        for who in baseline this; do
          echo "-- $who, round $round"
          PYTHONPATH="$([ "$who" = baseline ] && echo "$base_py" || echo "$ROOT/python")" timeout 90 "$PY" \
            bench/gpu_bench.py --methods fusedmlp --only "${GPU_CHECK_BASELINE_CONFIGS:-tiny,small,narrow}" \
            --out "$OUT/gpu_bench_${who}_$round.json" ${GPU_BENCH_ARGS:-} | grep -v '^wrote' || status=1
        done
      done
    fi
  fi

  # fusedmlp alone under the CUDA backend's tuning hooks (README, build notes), to compare with
  # the defaults above in the same session. GPU_CHECK_HOOKS: "VARIABLE=value@config,config ...",
  # several variables at once joined by "+" (VARIABLE=value+OTHER=value@config).
  if wants hooks; then
    step "tuning hooks, fusedmlp only"
    local hooks="${GPU_CHECK_HOOKS:-FUSEDMLP_CUDA_CLUSTER_EPOCH=1@small FUSEDMLP_CUDA_CLUSTER_EPOCH=2@tiny
      FUSEDMLP_CUDA_TILE=128t128@huge FUSEDMLP_CUDA_TILE=128x256@huge
      FUSEDMLP_CUDA_WGRAD_STREAM=1@mnist,wide,huge FUSEDMLP_CUDA_PDL=1@small,mnist,wide
      FUSEDMLP_CUDA_WGRAD_STREAM=1+FUSEDMLP_CUDA_PDL=1+FUSEDMLP_CUDA_SPLIT_SUM=cluster+FUSEDMLP_CUDA_SKINNY=1@mnist,wide
      FUSEDMLP_CUDA_SPLIT_SUM=cluster@mnist,wide FUSEDMLP_CUDA_SKINNY=1@mnist,wide
      FUSEDMLP_CUDA_SPLIT_SUM=cluster+FUSEDMLP_CUDA_SKINNY=1@mnist,wide
      FUSEDMLP_CUDA_PLAN_WARPS=8@mnist,wide,huge FUSEDMLP_CUDA_PLAN_WARPS=24@mnist,wide
      FUSEDMLP_CUDA_TILE=64w@mnist,wide,huge
      FUSEDMLP_CUDA_SPLIT=1@mnist,wide FUSEDMLP_CUDA_EPOCH_THREADS=256@tiny
      FUSEDMLP_CUDA_FUSED_ROWS=16@small,narrow FUSEDMLP_CUDA_STEP_THREADS=256@small,narrow
      FUSEDMLP_CUDA_GRAPHS=0@small,narrow}"
    local hook variant configs
    for hook in $hooks; do
      variant="${hook%@*}" configs="${hook#*@}"
      echo "-- $variant"
      env ${variant//+/ } timeout 60 "$PY" bench/gpu_bench.py --methods fusedmlp --only "$configs" \
        --out "$OUT/gpu_bench_$(hooks_label "$variant").json" ${GPU_BENCH_ARGS:-} \
        | grep -v '^wrote' || status=1
    done
  fi

  # Per-kernel durations of one epoch's steps after the warm-up epoch, under Nsight Compute, where
  # the machine has it: what the tiled path's planner and the fused tile sizes are tuned from.
  # ncu runs kernels one at a time with cold caches: short kernels read longer than in a graph.
  local name skip count
  if wants ncu && command -v ncu >/dev/null; then
    step "kernel times (ncu)"
    for spec in ${GPU_CHECK_NCU:-tiny:1:2 small:2100:8 narrow:130:8 mnist:1000:40 wide:2000:40 huge:70:30}; do
      IFS=: read -r name skip count <<<"$spec"
      timeout 45 ncu --clock-control none --metrics gpu__time_duration.sum --launch-skip "$skip" \
        --launch-count "$count" --csv --print-units base "$PY" bench/gpu_bench.py --methods fusedmlp \
        --only "$name" --max-epochs 1 --min-seconds 0 --out /dev/null >"$OUT/ncu_$name.csv" 2>&1 \
        || echo "ncu on $name: exit status $?"
    done
  fi

  # Where each epoch's time goes: kernels, gaps between them, and host time around them (on
  # 2026-11-26 it showed narrow's epochs spending 4 ms of 7.6 on the host, in the binding's check
  # of the order). torch.profiler's CUPTI records every kernel, our graphs' nodes included; these
  # machines have no nsys, and ncu's graph profiling saw no graphs. Per config: kernel busy time
  # and gaps per step, the kernels and the slow transitions, into $OUT/timeline_<config>.txt and
  # .csv.
  if wants timeline; then
    step "kernel timelines (torch.profiler)"
    : "${GPU_CHECK_TIMELINE:=narrow small mnist wide}"
    timeout 120 "$PY" bench/gpu_timeline.py --only "${GPU_CHECK_TIMELINE// /,}" --out "$OUT" \
      || echo "timeline: exit status $?"
  fi

  # Nsight Compute's throughput, stall and memory sections for one launch of each distinct kernel
  # of a step, into $OUT/profile_<config>.txt, and the fused kernels' instructions and stall
  # samples per source line (the build has -lineinfo) into $OUT/source_<config>.csv.
  if wants profile && command -v ncu >/dev/null; then
    step "kernel profiles (ncu sections)"
    local sections=(--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis
                    --section LaunchStats --section Occupancy --section SchedulerStats --section WarpStateStats
                    --section SourceCounters --section InstructionStats)
    # A spec may end in ":VARIABLE=value+..." to profile under those hooks, into profile_<config>_<hooks>.
    local hooks_env label
    for spec in ${GPU_CHECK_PROFILE:-tiny:1:1 small:2100:2 narrow:130:2 mnist:1000:15 wide:2000:15 huge:70:3}; do
      IFS=: read -r name skip count hooks_env <<<"$spec"
      label="$name"
      [ -n "$hooks_env" ] && label="${name}_$(hooks_label "$hooks_env")"
      # The fused configurations with every section (--set full), which the per-line counters need:
      # with the sections above alone, the source page (tried 2026-11-26) held no metric columns.
      local set=("${sections[@]}")
      case "$name" in tiny | small | narrow) set=(--set full --import-source yes) ;; esac
      env ${hooks_env//+/ } timeout 40 ncu --clock-control none "${set[@]}" --launch-skip "$skip" \
        --launch-count "$count" -o "$ROOT/build/profile_$label" -f "$PY" bench/gpu_bench.py --methods fusedmlp \
        --only "$name" --max-epochs 1 --min-seconds 0 --out /dev/null >/dev/null 2>&1 \
        || echo "ncu on $label: exit status $?"
      # --print-details all: the sections' tables too (the warp stall reasons among them)
      ncu -i "$ROOT/build/profile_$label.ncu-rep" --page details --print-details all >"$OUT/profile_$label.txt" 2>&1 \
        || ncu -i "$ROOT/build/profile_$label.ncu-rep" --page details >"$OUT/profile_$label.txt" 2>&1
      # Per-line counters and per-instruction stall samples: always for the fused configurations,
      # the latter for the others on request.
      case "$name" in
        tiny | small | narrow)
          timeout 20 ncu -i "$ROOT/build/profile_$label.ncu-rep" --page source --csv --print-source cuda \
            >"$OUT/source_$label.csv" 2>&1 || echo "ncu source page on $label: exit status $?" ;;
        *) [ "${GPU_CHECK_PROFILE_SASS:-0}" = 1 ] || continue ;;
      esac
      timeout 20 ncu -i "$ROOT/build/profile_$label.ncu-rep" --page source --csv --print-source sass \
        >"$OUT/sass_$label.csv" 2>&1 || echo "ncu sass page on $label: exit status $?"
    done
  fi

  # Opt-in (GPU_CHECK_PIP=1): it rebuilds everything and GPU time is scarce.
  if [ "${GPU_CHECK_PIP:-0}" = 1 ] && [ $((SECONDS - START)) -lt 330 ]; then
    step "pip install (FUSEDMLP_CUDA=ON) into a scratch prefix"
    FUSEDMLP_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" timeout 120 "$PY" -m pip install --no-build-isolation \
      --no-deps --target "$ROOT/build/pip-target" . >"$OUT/pip_install.log" 2>&1 \
      && ls "$ROOT/build/pip-target/fusedmlp/" | grep -E '^_(native|cuda)' || { echo "pip install failed (see pip_install.log)"; tail -20 "$OUT/pip_install.log"; }
  fi
  step "done, status $status"
  return $status
}

main 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
# The device tool returns at most 8 files: everything but the log and the benchmark's JSON goes
# into one archive.
(cd "$OUT" && extras=$(ls | grep -v -e '^gpu_check.log$' -e '^gpu_bench.json$' -e '^gpu_check_files.tgz$') \
  && [ -n "$extras" ] && tar czf gpu_check_files.tgz --remove-files $extras)
exit "$rc"
