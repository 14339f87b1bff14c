#!/usr/bin/env bash
# Set up .venv for vitdense on a fresh machine; a second run reuses it.
# Called by `make demo` / `make test`. Variables:
#   VENV        virtual environment folder            (default .venv)
#   PYTHON      interpreter that creates the venv      (default python3)
#   TORCH_SPEC  torch to install when none is present  (default torch==2.13.0)
#   MAX_JOBS    parallel compile jobs for mmcv/vitdense (default: all cores)
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}

say() { printf '\n[vitdense install] %s\n' "$*"; }
die() { printf '\n[vitdense install] ERROR: %s\n' "$*" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

if ! "$PY" -c 'import torch' 2>/dev/null; then
    say "installing $TORCH_SPEC"
    "${PIP[@]}" install "$TORCH_SPEC"
fi
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
# Everything after this keeps the installed torch: nothing may replace it.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"

"${PIP[@]}" install -q -c "$CONSTRAINTS" -r requirements/build.txt

mmcv_has_ops() {
    "$PY" -c 'from mmcv.ops import MultiScaleDeformableAttention, nms' \
        2>/dev/null
}
if ! mmcv_has_ops; then
    if "$PY" -c 'import mmcv' 2>/dev/null; then
        say "the installed mmcv has no compiled ops; rebuilding it"
        "${PIP[@]}" uninstall -y mmcv
    fi
    say "building mmcv 2.1.0 with ops from source (about 10 minutes on 2 cores the first time; pip caches the wheel)"
    MMCV_WITH_OPS=1 "${PIP[@]}" install -c "$CONSTRAINTS" \
        --no-build-isolation mmcv==2.1.0
    if ! mmcv_has_ops; then
        reason=$("$PY" -c 'from mmcv.ops import MultiScaleDeformableAttention' 2>&1 | tail -1)
        die "mmcv was installed without its compiled ops ($reason).
This happens when mmcv is built in an isolated environment where torch is
not visible (pip >= 25.3 isolates builds unless --no-build-isolation), or
when pip reuses such a wheel from its cache. Fix:
  $PY -m pip uninstall -y mmcv && $PY -m pip cache remove mmcv
  MMCV_WITH_OPS=1 $PY -m pip install --no-build-isolation mmcv==2.1.0"
    fi
fi

# tools/train.py and tools/test.py preload tcmalloc when it is installed
# (vitdense.utils.preload_tcmalloc: 1.5-2.3x faster CPU DETR training steps
# than glibc's allocator, docs/benchmarks.md). A system package, so only
# where this runs as root with apt; elsewhere the tools say how to get it.
SHARED_LIBS=$(ldconfig -p 2>/dev/null || true)
if [ "$(uname -s)" = Linux ] \
        && ! [[ $SHARED_LIBS =~ libtcmalloc(_minimal)?\.so\.4 ]]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing tcmalloc (Debian's libtcmalloc-minimal4)"
        apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4 \
            || say "tcmalloc not installed; CPU training will be slower"
    else
        say "tcmalloc not found: for faster CPU training install it, e.g. sudo apt-get install libtcmalloc-minimal4"
    fi
fi

say "installing mmdet, mmseg and runtime requirements"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r requirements/runtime.txt \
    -r requirements/tests.txt

say "installing vitdense (editable, compiling vitdense._C)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-build-isolation --use-pep517 \
    --no-deps -e .

"$PY" - <<'PY' || die "the environment check failed (see the traceback above)"
import mmcv, mmdet, mmengine, mmseg, torch
from mmcv.ops import MultiScaleDeformableAttention  # noqa: F401
import vitdense
print(f'torch {torch.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, vitdense {vitdense.__version__}')
try:
    from vitdense.ops import info
    print('vitdense ops:', info())
except ImportError:
    pass
PY
say "environment ready in $VENV"
