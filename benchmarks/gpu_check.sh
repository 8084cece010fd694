#!/usr/bin/env bash
# The CUDA backend's checks that need a GPU, in about ten minutes.  Run from the repository root:
#
#   bash benchmarks/gpu_check.sh                  # logs and JSON in $OUT, else ./gpu_out
#   WHEELS=DIR PYTHON=python3.12 bash benchmarks/gpu_check.sh
#
# 0. env.log: nvidia-smi and the versions of Python, numpy, numba, numba-cuda, torch.
# 1. numpy: numba-cuda 0.30.4 calls np.row_stack, which numpy 2.5 removed, so every kernel fails to
#    compile.  If the Python's numpy lacks it, numpy 2.4 is installed from the wheels in $WHEELS
#    (default shared/wheels; no network: pip --no-index) into $PYDEPS (default
#    /tmp/specc_gpu_pydeps), which goes first on PYTHONPATH; so are specc's own dependencies if some
#    are missing and $WHEELS has them.  benchmarks/fetch_gpu_wheels.sh downloads these wheels on a
#    machine with network.
# 2. pytest -m gpu: every spec in specs/ at its own sizes, forward and every gradient, on the GPU
#    against the CPU backend, and the LSTM's gradients against the interpreter.
# 3. tests/test_codegen_cuda.py and tests/test_cuda_train.py with SPECC_TEST_REAL_GPU=1: the tests
#    that use numba-cuda's simulator elsewhere run on the GPU (the grid-scan kernel included).
# 4. benchmarks/cuda_rnn.py -> cuda_rnn.json, then SPECC_CUDA_GRID_SCAN=1 (peephole and LSTM) ->
#    cuda_rnn_grid.json.  (Before 2, probe.log: one trivial kernel compiled and run.)
#
# Each step has a timeout and a log in $OUT (steps go on after one fails); summary.txt lists what
# passed.  Exit status 0 when every step passed, 1 otherwise.
set -u -o pipefail

if [[ ! -f pyproject.toml || ! -d specc || ! -f benchmarks/cuda_rnn.py ]]; then
    echo "error: run this from the specc repository root (bash benchmarks/gpu_check.sh)" >&2
    exit 2
fi
ROOT=$PWD
OUT=${1:-${OUT:-./gpu_out}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEELS=${WHEELS:-shared/wheels}
PYDEPS=${PYDEPS:-/tmp/specc_gpu_pydeps}
PY=${PYTHON:-$(command -v python3 || command -v python)}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM  # the real GPU throughout
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
failed=0
started=$SECONDS

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME SECONDS COMMAND...: run with a timeout, tee the output into $OUT/NAME.log, record the result
step() {
    local name=$1 limit=$2 rc
    shift 2
    echo "=== $name (at most ${limit} s): $*"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    if [[ $rc == 0 ]]; then
        note "PASS  $name"
    elif [[ $rc == 124 || $rc == 137 ]]; then
        note "FAIL  $name: timed out after $limit s (see $name.log)"
        failed=1
    else
        note "FAIL  $name: exit status $rc (see $name.log)"
        failed=1
    fi
}

# ---- 0. what runs here ----------------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "python: $PY ($("$PY" --version 2>&1))"
    timeout 30 nvidia-smi 2>&1 || echo "nvidia-smi: not available"
} > "$OUT/env.log"

# ---- 1. numpy < 2.5 and specc's dependencies ------------------------------------------------------
has_row_stack() { "$PY" -c 'import numpy, sys; sys.exit(0 if hasattr(numpy, "row_stack") else 1)' 2>/dev/null; }
missing_modules() {  # the import names of what specc and the checks need, that do not import
    "$PY" - <<'EOF'
import importlib.util
need = {"lark": "lark>=1.2,<2", "pydantic": "pydantic>=2.6,<3", "rich": "rich>=13",
        "threadpoolctl": "threadpoolctl>=3.1", "scipy": "scipy>=1.11", "numba": "numba",
        "numba_cuda": "numba-cuda", "pytest": "pytest>=8"}
print(" ".join(need[m] for m in need if importlib.util.find_spec(m) is None))
EOF
}
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
packages=()
read -r -a missing <<< "$(missing_modules)"
# numpy 2.4 when numpy lacks row_stack, or when scipy must be installed (pip --target installs its numpy
# too: pinned in the same command, so that it is not numpy 2.5)
if ! has_row_stack || [[ " ${missing[*]-} " == *" scipy"* ]]; then
    packages+=('numpy>=2.4,<2.5')
fi
packages+=(${missing[@]+"${missing[@]}"})
if (( ${#packages[@]} )); then
    echo "installing from $WHEELS into $PYDEPS: ${packages[*]}"
    if ! ls "$WHEELS"/*.whl > /dev/null 2>&1; then
        note "FAIL  setup: Python $pyver needs ${packages[*]} (numpy < 2.5: numba-cuda 0.30.4 calls np.row_stack)," \
             "and $WHEELS holds no wheels; on a machine with network run" \
             "bash benchmarks/fetch_gpu_wheels.sh --deps shared/wheels $pyver, and copy shared/wheels here (or set WHEELS)"
        exit 1
    fi
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$PYDEPS" --upgrade \
        "${packages[@]}" 2>&1 | tee "$OUT/setup.log"
    export PYTHONPATH="$PYDEPS:$PYTHONPATH"
fi
if ! has_row_stack; then
    note "FAIL  setup: numpy is still $("$PY" -c 'import numpy; print(numpy.__version__)' 2>&1), without" \
         "np.row_stack (see setup.log; a numpy 2.4 wheel for Python $pyver must be in $WHEELS)"
    exit 1
fi
read -r -a missing <<< "$(missing_modules)"
if (( ${#missing[@]} )) && [[ -n "${missing[*]}" ]]; then
    note "FAIL  setup: still missing ${missing[*]} (put their wheels in $WHEELS:" \
         "bash benchmarks/fetch_gpu_wheels.sh --deps shared/wheels $pyver)"
    exit 1
fi
"$PY" - >> "$OUT/env.log" 2>&1 <<'EOF'
import importlib.metadata as md
import numpy
print("numpy", numpy.__version__, "from", numpy.__file__)
for dist in ("numba", "numba-cuda", "torch", "cuda-bindings"):
    try:
        print(dist, md.version(dist))
    except md.PackageNotFoundError:
        print(dist, "not installed")
try:
    import torch
    print("torch.cuda", torch.cuda.is_available(), "cudnn", torch.backends.cudnn.version())
except Exception as e:  # noqa: BLE001
    print("torch:", e)
EOF
cat "$OUT/env.log"
note "ok    setup: numpy $("$PY" -c 'import numpy; print(numpy.__version__)')"

# one kernel compiled and run: where numba-cuda itself cannot start (driver, NVVM, numpy), this log says why
step probe 120 "$PY" -c '
import numpy as np
from numba import cuda
@cuda.jit
def twice(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 2 * a[i]
d = cuda.to_device(np.arange(4, dtype=np.float32))
twice[1, 32](d)
assert list(d.copy_to_host()) == [0, 2, 4, 6]
dev = cuda.get_current_device()
print("kernel ran on", dev.name, "cc", dev.compute_capability, "SMs", dev.MULTIPROCESSOR_COUNT)'

# ---- 2. and 3. the tests on the GPU -------------------------------------------------------------------
step pytest_gpu 240 "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider
if grep -q "SKIPPED" "$OUT/pytest_gpu.log"; then  # here a skipped GPU test means the GPU was not found
    note "FAIL  pytest_gpu: GPU tests were skipped (see the SKIPPED lines in pytest_gpu.log)"
    failed=1
fi
step pytest_cuda_files 200 env SPECC_TEST_REAL_GPU=1 "$PY" -m pytest -m "not gpu" -q -rs -p no:cacheprovider \
    tests/test_codegen_cuda.py tests/test_cuda_train.py

# ---- 4. the benchmark, block and grid persistent kernels (the custom cell first: a timeout cuts the last) --
step cuda_rnn 180 "$PY" benchmarks/cuda_rnn.py --cells peephole,lstm,gru --budget 4 --json "$OUT/cuda_rnn.json"
step cuda_rnn_grid 120 env SPECC_CUDA_GRID_SCAN=1 "$PY" benchmarks/cuda_rnn.py --cells peephole,lstm --budget 3 \
    --json "$OUT/cuda_rnn_grid.json"

note "$(( SECONDS - started )) s in all; logs and JSON in $OUT"
exit $failed
