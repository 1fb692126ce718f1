#!/usr/bin/env bash
# On a machine with one NVIDIA GPU, from the repository root, offline: build fusedmlp with its
# CUDA backend, run the CUDA tests (and the backend-parametrized suites' cuda cases), then the
# GPU benchmark. Designed to finish well inside 8 minutes; every step has its own time limit
# so that one hanging step cannot eat the rest. The whole output goes to $OUT/gpu_check.log and
# the benchmark's JSON to $OUT/gpu_bench.json (OUT defaults to the current folder).
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

step() { echo; echo "== [$((SECONDS - START))s] $*"; }

main() {
  local status=0
  step "machine"
  date -u
  nvidia-smi || echo "nvidia-smi failed"
  "$PY" --version
  nvcc --version | tail -1 || true

  step "build (FUSEDMLP_CUDA=ON)"
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  if ! timeout 240 cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFUSEDMLP_CUDA=ON \
        -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
     || ! timeout 240 cmake --build "$BUILD" -j "$(nproc)"; then
    echo "BUILD FAILED"
    return 1
  fi
  cp "$BUILD"/_*.so "$ROOT/python/fusedmlp/"
  export PYTHONPATH="$ROOT/python"
  "$PY" -c "import fusedmlp.cuda_backend as c; print('cuda_available:', c.cuda_available(), c.cuda_unavailable_reason())"

  step "tests/test_cuda.py"
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider --tb=short -rfE --maxfail=25 tests/test_cuda.py \
    --junitxml="$OUT/test_cuda.xml" || status=1

  step "backend-parametrized suites, cuda cases"
  timeout 90 "$PY" -m pytest -q -p no:cacheprovider --tb=short -rfE --maxfail=25 tests -k cuda \
    --ignore=tests/test_cuda.py
  local rc=$?
  # 5: no test selected (the suites do not know the cuda backend yet)
  [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && status=1

  step "GPU benchmark"
  # GPU_BENCH_ARGS: extra arguments, e.g. --dry-run to rehearse this script without a GPU
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 240 "$PY" bench/gpu_bench.py --out "$OUT/gpu_bench.json" \
    ${GPU_BENCH_ARGS:-} || status=1

  # fusedmlp alone under the CUDA backend's tuning hooks (README, build notes), to compare with
  # the defaults above in the same session: the tile shapes and K splits of the tiled GEMMs,
  # and the fused kernel's rows per block. GPU_CHECK_AB=0 skips it.
  if [ "${GPU_CHECK_AB:-1}" = 1 ]; then
    step "tuning hooks, fusedmlp only"
    local variant
    for variant in FUSEDMLP_CUDA_SPLIT=1 FUSEDMLP_CUDA_TILE=128 FUSEDMLP_CUDA_TILE=64 FUSEDMLP_CUDA_TILE=64w; do
      echo "-- $variant"
      env "$variant" timeout 60 "$PY" bench/gpu_bench.py --methods fusedmlp --only mnist,wide,huge \
        --out "$OUT/gpu_bench_$(echo "${variant#FUSEDMLP_CUDA_}" | tr "=A-Z" "_a-z").json" ${GPU_BENCH_ARGS:-} | grep -v '^wrote' || status=1
    done
    for variant in FUSEDMLP_CUDA_FUSED_ROWS=8 FUSEDMLP_CUDA_FUSED_ROWS=16 FUSEDMLP_CUDA_FUSED_ROWS=32; do
      echo "-- $variant"
      env "$variant" timeout 40 "$PY" bench/gpu_bench.py --methods fusedmlp --only small,narrow \
        --out "$OUT/gpu_bench_$(echo "${variant#FUSEDMLP_CUDA_}" | tr "=A-Z" "_a-z").json" ${GPU_BENCH_ARGS:-} | grep -v '^wrote' || status=1
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
