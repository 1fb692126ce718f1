#!/usr/bin/env bash
# Builds fusedmlp._cuda against the CPU emulation of the CUDA runtime in this folder, into
# build-dev/emulated/pkg/fusedmlp (a copy of python/fusedmlp), so that the CUDA backend's
# tests run without a GPU:
#   cpp/cuda/emulation/build_emulated.sh && PYTHONPATH=build-dev/emulated/pkg pytest tests/test_cuda.py
# Slow (every block spawns its threads): a debugging aid, not a benchmark.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
py="${PYTHON:-python3}"
out="$root/build-dev/emulated"
rm -rf "$out"
mkdir -p "$out/src/cuda" "$out/src/bindings" "$out/pkg"
cp "$root"/cpp/cuda/*.cuh "$root"/cpp/cuda/*.hpp "$out/src/cuda/"
for unit in "$root"/cpp/cuda/*.cu; do cp "$unit" "$out/src/cuda/$(basename "${unit%.cu}").cpp"; done
cp "$root"/cpp/bindings/cuda_module.cpp "$root"/cpp/bindings/*.hpp "$out/src/bindings/"
ln -s "$root/cpp/kernels" "$out/src/kernels"
"$py" - "$root" "$out" <<'PY'
import re, sys
root, out = sys.argv[1], sys.argv[2]
source = open(f"{root}/cpp/cuda/cuda_mlp_impl.cuh").read()
# kernel<<<grid, block, smem, stream>>>(args) -> a launch of the emulator, arguments taken by value
source = re.sub(r"(\w+(?:<[^;{}()]*?>)?)<<<(.*?)>>>\((.*?)\);",
                lambda m: f"emu_kernel({m.group(2)}, [fn = {m.group(1)}, args = std::make_tuple({m.group(3)})] "
                          "{ std::apply(fn, args); });", source, flags=re.S)
open(f"{out}/src/cuda/cuda_mlp_impl.cuh", "w").write(source)
line = "extern __shared__ __align__(16) unsigned char fused_smem[];"
for name in ("fused.cuh", "fused_cluster.cuh"):
    text = open(f"{out}/src/cuda/{name}").read()
    assert line in text, f"{name}: the dynamic shared-memory declaration changed; update build_emulated.sh"
    open(f"{out}/src/cuda/{name}", "w").write(text.replace(line, "unsigned char* fused_smem = g_dyn_smem;"))
PY
suffix="$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
# With the GEMM tiles on trial, as bench/gpu_check.sh builds (EMULATED_TRIAL_TILES=0: without).
flags=(-std=c++20 -O1 -fPIC -w -DFUSEDMLP_CUDA_TRIAL_TILES="${EMULATED_TRIAL_TILES:-1}" -I"$root/cpp/cuda/emulation"
       -I"$("$py" -c 'import pybind11; print(pybind11.get_include())')"
       -I"$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')")
# One object per unit, compiled in parallel as the real build does.
pids=()
for unit in "$out"/src/cuda/*.cpp "$out/src/bindings/cuda_module.cpp"; do
  g++ "${flags[@]}" -c "$unit" -o "${unit%.cpp}.o" & pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
g++ -shared "$out"/src/cuda/*.o "$out/src/bindings/cuda_module.o" -o "$out/_cuda$suffix" -lpthread
cp -r "$root/python/fusedmlp" "$out/pkg/"
rm -f "$out"/pkg/fusedmlp/_cuda*.so
cp "$out/_cuda$suffix" "$out/pkg/fusedmlp/"
echo "built $out/pkg/fusedmlp/_cuda$suffix"
