"""A worker process that compiles a share of a CPU module's kernels into Numba's cache.

In: one JSON request on standard input, from :func:`specc.backends.cpu.precompile.precompile`: the path
of a generated module in the kernel cache, the SHA-256 of its source, and the functions to compile with
their argument kinds.  Out: exit status 0 when it compiled them (the machine code is in Numba's cache
beside the module, where the parent process loads it), 2 when it refused the file.

The module is read only from a directory private to the user (:mod:`specc.safefiles`) and only when its
bytes hash to what the parent wrote; it runs as :mod:`specc.runtime.cache` runs every module (from the
checked bytes, under the same module name and ``__file__``, so Numba's cache entries match).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from ..backends.cpu.precompile import compile_kernels
from ..safefiles import read_private, unsafe_reason
from . import cache


def work(request: dict) -> int:
    """Compile the request's share (see the module docstring); 2 when the file is refused."""
    path = Path(request["path"])
    if unsafe_reason(path.parent) is not None:
        return 2
    data = read_private(path)
    if data is None or hashlib.sha256(data).hexdigest() != request["sha256"]:
        return 2
    cache._check_numba_cache_dir()
    mod = cache._exec(SimpleNamespace(source=data.decode()), path)
    compile_kernels(mod, [(name, [tuple(k) for k in kinds], cost) for name, kinds, cost in request["kernels"]])
    return 0


if __name__ == "__main__":
    sys.exit(work(json.loads(sys.stdin.read())))
