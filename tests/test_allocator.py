"""The runtime keeps freed large blocks for the next kernel call (glibc's mallopt), unless told not to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                           reason="glibc only")

PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    import specc
    from specc.backends.cpu import runtime

    # the kernel's arrays come from NumPy, which asks Linux for huge pages for large blocks (a fault per
    # 2 MB): off, so that a fresh block shows as one fault per 4 KB page
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        from numpy.core.multiarray import _set_madvise_hugepage
    _set_madvise_hugepage(False)

    # a 34 MB result every call: above glibc's largest dynamic mmap threshold (32 MB)
    model = specc.compile("dim N\\nmodel big(x: f32[N, 2048]) {\\n  output y = tanh(x) * 2.0\\n  loss = mean(y)\\n}\\n", target="cpu")
    x = np.ones((4200, 2048), np.float32)
    model.forward({}, x=x)
    faults = []
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = model.forward({}, x=x)["y"]
        del y
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"tuned": runtime._ALLOCATOR, "faults": sorted(faults)[1]}))
""")


def probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_a_call_reuses_the_memory_of_the_last_one() -> None:
    tuned, plain = probe(SPECC_MALLOC_TUNING="1"), probe(SPECC_MALLOC_TUNING="0")
    assert tuned["tuned"] is True and not plain["tuned"]
    pages = 4200 * 2048 * 4 // 4096
    assert plain["faults"] > pages // 2  # every call touches a fresh mmap of the result
    assert tuned["faults"] < pages // 20  # the heap keeps it: no fresh pages


def test_tuning_is_done_once_and_reports_what_it_did() -> None:
    from specc.backends.cpu import runtime

    first = runtime.tune_allocator()
    assert runtime.tune_allocator() is first and isinstance(first, bool)



STATE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import specc
    from specc.backends.cpu import runtime

    # the kernel's arrays come from NumPy, which asks Linux for huge pages for large blocks (a fault per
    # 2 MB): off, so that a fresh block shows as one fault per 4 KB page
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        from numpy.core.multiarray import _set_madvise_hugepage
    _set_madvise_hugepage(False)
    if sys.argv[1] == "cli":
        from specc.cli import main
        main(["run", "specs/mlp.nn", "--dim", "B=2"])
    else:
        specc.compile("specs/mlp.nn", target="cpu").forward(specc.compile("specs/mlp.nn").init_params(0),
                                                            x=np.ones((2, 64), np.float32))
        if sys.argv[1] == "force":
            runtime.tune_allocator(force=True)
    print(json.dumps({"tuned": runtime._ALLOCATOR}))
""")


def allocator_state(how: str, **env: str):
    environ = {k: v for k, v in os.environ.items() if k != "SPECC_MALLOC_TUNING"}
    done = subprocess.run([sys.executable, "-c", STATE, how], capture_output=True, text=True, timeout=600,
                          env={**environ, **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["tuned"]


@glibc
def test_a_host_application_keeps_its_allocator_unless_it_asks() -> None:
    assert allocator_state("library") is None  # kernels ran, mallopt was never called
    assert allocator_state("force") is True  # opt in from Python
    assert allocator_state("library", SPECC_MALLOC_TUNING="1") is True  # or from the environment
    assert allocator_state("cli") is True  # the specc command tunes by default
    assert allocator_state("cli", SPECC_MALLOC_TUNING="0") is None
