#!/usr/bin/env bash
# One run on a bare GPU machine (issue 20): install the wheels carried in
# .whl/, build vitdense._C with CUDA for sm_90 next to mmcv 2.1.0's MSDA
# kernel compiled from its sdist (the baseline), run tests/test_ops with
# vitdense's CUDA kernels enabled, and benchmark against the baseline.
# Every log and table goes to $OUT (at most 8 files come back):
#   summary.txt  one line per step: name, exit status, seconds
#   env.log      GPU, driver, python, torch, CUDA, nvcc versions
#   build.log    vitdense._C (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST=9.0)
#   baseline.log mmcv's MSDA kernel, JIT-compiled (tools/device/mmcv_msda.py)
#   pytest.log   pytest tests/test_ops (the CUDA tests opt in themselves)
#   bench.md     tools/analysis_tools/benchmark_ops.py --device cuda, with
#                VITDENSE_CUDA_OPS=1
# Prepare here (no GPU needed), into the git-ignored .whl/:
#   pip download --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 --no-deps -d .whl \
#     mmengine==0.10.7 addict yapf termcolor platformdirs
#   pip download --no-binary=:all: --no-deps --no-build-isolation -d .whl \
#     mmcv==2.1.0
# and run on the device machine with `carry: [".whl"]`:
#   bash tools/device/cuda_check.sh
# The builds run in parallel on all cores; budget about 8 minutes in all.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/work_dirs/cuda_check}
PY=${PYTHON:-python3}
SDIST=$(ls .whl/mmcv-2.1.0.tar.gz 2>/dev/null)
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=9.0 FORCE_CUDA=1 MAX_JOBS=$(nproc) \
    PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
status=0

step() {  # step NAME LOG COMMAND...: log the output, record status and time
  local name=$1 log=$2 start=$SECONDS rc
  shift 2
  "$@" >>"$OUT/$log" 2>&1
  rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || status=1
  return "$rc"
}

environment() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv &&
    "$PY" -c 'import sys, torch
print(sys.version)
print("torch", torch.__version__, "CUDA", torch.version.cuda)
print(torch.cuda.get_device_name(0))' &&
    nvcc --version | tail -2 && echo "cores $(nproc)"
}

wheels() {
  local files=(.whl/*.whl)
  [ -e "${files[0]}" ] || { echo "no wheels in .whl/"; return 1; }
  # --no-deps: the image provides numpy, opencv, matplotlib, rich, pyyaml
  "$PY" -m pip install --no-index --no-deps "${files[@]}"
  "$PY" -c 'import mmengine; print("mmengine", mmengine.__version__)'
}

build_vitdense() {
  "$PY" setup.py build_ext --inplace &&
    "$PY" -c 'from vitdense import ops; r = ops.info(); print(r); assert r["cuda_compiled"] and r["gpu"], r'
}

build_baseline() {
  [ -n "$SDIST" ] || { echo "no .whl/mmcv-2.1.0.tar.gz"; return 1; }
  "$PY" tools/device/mmcv_msda.py "$SDIST" build/mmcv_msda
}

step environment env.log environment
step wheels env.log wheels
# the two CUDA builds are independent: run them side by side
step build build.log build_vitdense &
build_pid=$!
step baseline baseline.log build_baseline &
baseline_pid=$!
wait "$build_pid" || status=1
wait "$baseline_pid" || status=1
# the compile-only tests are redundant after the real builds above
step pytest pytest.log "$PY" -m pytest tests/test_ops -q -rs \
    -p no:cacheprovider --ignore=tests/test_ops/test_cuda_compile.py
bench_args=(--device cuda --repeats 20 --warmup 3)
[ -n "$SDIST" ] && bench_args+=(--mmcv-sdist "$SDIST" --mmcv-build build/mmcv_msda)
step bench bench.md env VITDENSE_CUDA_OPS=1 \
    "$PY" tools/analysis_tools/benchmark_ops.py "${bench_args[@]}"
echo "total ${SECONDS}s status=$status" | tee -a "$OUT/summary.txt"
exit "$status"
