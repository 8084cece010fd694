"""Checking generated CUDA kernels without a GPU: every kernel compiled to PTX by numba-cuda.

In: a generated CUDA module's file, the shapes and dtypes of its entry's arguments, the dim sizes.
Out: the kernels it launches, each compiled to PTX for the exact argument types of its launch
(``{kernel name: PTX size}``); a kernel that does not type-check or compile raises.

The simulator runs kernels as Python, so it cannot tell whether numba-cuda accepts them (NumPy
ufuncs, say, are not allowed in kernels).  This check can: it runs the module's host entry with
NumPy arrays standing in for device arrays and every launch recorded instead of run, then hands
each recorded kernel to ``numba.cuda.compile_ptx`` (NVVM only: no driver, no GPU).  It needs
numba-cuda with NVVM (``pip install "cuda-toolkit[nvvm]==13.*"``) and must run in a process without
the simulator (``NUMBA_ENABLE_CUDASIM`` unset)::

    python -m specc.backends.cuda.ptx MODULE.py '{"args": [["f32", [3, 2, 8]], ...], "dims": [3, 2]}'
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ...ir.core import NUMPY_DTYPES

CC = (9, 0)  # the PTX target: an H100


class _Recorder:
    """Stands for a kernel in the host entry: ``k[grid, block](*args)`` records the argument types."""

    def __init__(self, name: str, launches: dict[str, list[tuple]]) -> None:
        self.name, self.launches = name, launches

    def __getitem__(self, config: Any):
        def launch(*args: Any) -> None:
            from numba import typeof

            self.launches.setdefault(self.name, []).append(tuple(typeof(a) for a in args))

        return launch


def _fake_cuda(real: Any) -> Any:
    """What the host entry calls on ``cuda``: allocations become NumPy arrays."""
    return SimpleNamespace(device_array=lambda shape, dtype: np.zeros(shape, dtype), to_device=np.asarray,
                           shared=real.shared, syncthreads=real.syncthreads)


def pretend_h100() -> Any:
    """Let numba-cuda compile without a device: what the compiler asks of "the current device" is an H100's
    (for the rest of the process; the module's own import sees it too, see :func:`check_module`)."""
    from numba import cuda
    from numba.cuda import dispatcher

    if cuda.config.ENABLE_CUDASIM:
        raise RuntimeError("the PTX check needs numba-cuda itself: unset NUMBA_ENABLE_CUDASIM")
    device = SimpleNamespace(compute_capability=CC, MULTIPROCESSOR_COUNT=132)
    dispatcher.get_current_device = lambda: device
    return device


def compile_ptx(kernel: Any, sig: tuple) -> int:
    """One ``@cuda.jit`` kernel compiled to PTX for :data:`CC` and the argument types ``sig``; its size."""
    from numba import cuda

    bounds = kernel.targetoptions.get("launch_bounds")
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=CC, launch_bounds=bounds)
    return len(ptx)


def check_module(path: Path, args: Sequence[tuple[str, Sequence[int]]], dims: Sequence[int]) -> dict[str, int]:
    from numba import cuda

    device = pretend_h100()
    real_get = cuda.get_current_device
    cuda.get_current_device = lambda: device
    spec = importlib.util.spec_from_file_location(f"specc_ptx_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    finally:
        cuda.get_current_device = real_get
    kernels = {name: obj for name, obj in vars(mod).items() if hasattr(obj, "py_func") and _is_kernel(obj)}
    launches: dict[str, list[tuple]] = {}
    for name in kernels:
        setattr(mod, name, _Recorder(name, launches))
    real = mod.cuda
    mod.cuda = _fake_cuda(real)
    try:
        arrays = [np.zeros(tuple(shape) or (1,), NUMPY_DTYPES[dt]) for dt, shape in args]
        mod.run(*arrays, *dims)
    finally:
        mod.cuda = real
        for name, k in kernels.items():
            setattr(mod, name, k)
    sizes = {}
    for name, sigs in launches.items():
        for sig in dict.fromkeys(sigs):
            sizes[name] = compile_ptx(kernels[name], sig)
    return sizes


def _is_kernel(obj: Any) -> bool:
    return not getattr(obj, "targetoptions", {}).get("device", False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = json.loads(argv[1])
    sizes = check_module(Path(argv[0]), [tuple(a) for a in spec["args"]], spec["dims"])
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
