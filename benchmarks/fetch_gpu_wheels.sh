#!/usr/bin/env bash
# Download, on a machine with network, the wheels benchmarks/gpu_check.sh installs without network on
# the GPU machine: numpy 2.4.x for Linux x86_64 (numba-cuda 0.30.4 calls np.row_stack, which numpy 2.5
# removed, so under numpy 2.5 every kernel fails to compile).
#
#   bash benchmarks/fetch_gpu_wheels.sh [--deps] [DIR] [PYTHON_VERSION]
#
# DIR             where the wheels go (default shared/wheels: the GPU machine gets shared/ with the tree)
# PYTHON_VERSION  the GPU machine's Python, e.g. 3.12 (the default); numpy for 3.11, 3.12 and 3.13 is
#                 fetched in any case (about 16 MB each), so a wrong guess still works
# --deps          also specc's own dependencies that a bare torch image may lack (lark, pydantic, rich,
#                 threadpoolctl, scipy, pytest and what they need), for PYTHON_VERSION only (about 60 MB)
#
# Uses this machine's pip (pip download --only-binary=:all: --platform ... --python-version ...);
# PIP="python3 -m pip" by default.
set -euo pipefail

deps=0
if [[ "${1:-}" == "--deps" ]]; then
    deps=1
    shift
fi
dir=${1:-shared/wheels}
want=${2:-3.12}
if ! [[ "$want" =~ ^3\.[0-9]+$ ]]; then
    echo "error: PYTHON_VERSION must look like 3.12, not '$want'" >&2
    echo "usage: bash benchmarks/fetch_gpu_wheels.sh [--deps] [DIR] [PYTHON_VERSION]" >&2
    exit 2
fi
read -r -a pip <<< "${PIP:-python3 -m pip}"
# numpy 2.4 is built for manylinux_2_28 (glibc 2.28, as torch's own wheels), pydantic-core for manylinux2014;
# older pips do not widen one tag to the older ones, so both are named
platform=(--only-binary=:all: --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --implementation cp)
mkdir -p "$dir"

for v in $(printf '%s\n' "$want" 3.11 3.12 3.13 | awk '!seen[$0]++'); do
    echo "numpy 2.4 for Python $v -> $dir"
    "${pip[@]}" download --quiet "${platform[@]}" --python-version "$v" -d "$dir" 'numpy>=2.4,<2.5'
done
if [[ $deps == 1 ]]; then
    echo "specc's dependencies for Python $want -> $dir"
    "${pip[@]}" download --quiet "${platform[@]}" --python-version "$want" -d "$dir" \
        'numpy>=2.4,<2.5' 'lark>=1.2,<2' 'pydantic>=2.6,<3' 'rich>=13' 'threadpoolctl>=3.1' 'scipy>=1.11' \
        'pytest>=8'  # pyproject.toml's ranges
fi
ls -1 "$dir"
