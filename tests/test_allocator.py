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
    tuned, plain = probe(), probe(SPECC_MALLOC_TUNING="0")
    assert tuned["tuned"] is True and plain["tuned"] is False
    pages = 4200 * 2048 * 4 // 4096
    assert plain["faults"] > pages // 2  # every call touches a fresh mmap of the result
    assert tuned["faults"] < pages // 20  # the heap keeps it: no fresh pages


def test_tuning_is_done_once_and_reports_what_it_did() -> None:
    from specc.backends.cpu import runtime

    first = runtime.tune_allocator()
    assert runtime.tune_allocator() is first and isinstance(first, bool)

