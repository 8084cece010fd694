"""Compiling a CPU module's kernels before the first call: predicted types, parallel workers, checked files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path


from specc.backends.cpu import precompile
from specc.runtime import compile_worker

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import specc
    m = specc.compile(sys.argv[1], target="cpu", dtype="float32")
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (8, 16, 8)).astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    loss, grads = m.value_and_grad(m.init_params(0), x=x, y=y)
    k = m.kernel("grad")
    print(json.dumps({"loss": float(loss), "grad": float(sum(np.abs(g).sum() for g in grads.values())),
                      "signatures": {d.py_func.__name__: len(d.signatures) for d in k.dispatchers},
                      "hits": sum(sum(d.stats.cache_hits.values()) for d in k.dispatchers),
                      "misses": sum(sum(d.stats.cache_misses.values()) for d in k.dispatchers)}))
""")


def _probe(cache: Path, jobs: int) -> dict:
    env = {**os.environ, "SPECC_CACHE_DIR": str(cache), "SPECC_COMPILE_JOBS": str(jobs), "SPECC_COMPILE_DEBUG": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "specs" / "lstm.nn")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_cold_compile_shared_with_a_worker_gives_the_same_kernels(tmp_path) -> None:
    alone, shared = _probe(tmp_path / "one", 1), _probe(tmp_path / "two", 2)
    assert alone["loss"] == shared["loss"] and alone["grad"] == shared["grad"]
    # every kernel was compiled once, for the predicted types (a wrong prediction compiles a second one)
    assert set(shared["signatures"].values()) == {1} and len(shared["signatures"]) >= 2
    # this process loaded from Numba's cache what the worker compiled
    assert shared["hits"] >= 1 and alone["hits"] == 0
    again = _probe(tmp_path / "two", 2)  # a fresh process: all from the cache
    assert again["misses"] == 0 and again["hits"] == len(again["signatures"]) and again["loss"] == alone["loss"]


def test_deal_balances_by_cost_and_leaves_this_process_the_most() -> None:
    kernels = [(f"k{c}", (), c) for c in (100, 90, 40, 30, 5)]
    shares = precompile.deal(kernels, 2)
    assert sorted(k[0] for s in shares for k in s) == sorted(k[0] for k in kernels)
    cost = [sum(k[2] + 10 for k in s) for s in shares]
    assert abs(cost[0] - (cost[1] + precompile.WORKER_START)) <= 100  # within the largest kernel
    assert precompile.deal(kernels, 1) == [sorted(kernels, key=lambda k: -k[2])]


def test_a_worker_compiles_only_the_file_it_was_promised(tmp_path) -> None:
    """A worker reads the module only from a private directory and only with the SHA-256 it was given."""
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    module = d / "m_0123.py"
    marker = tmp_path / "ran"
    module.write_text(f"open({str(marker)!r}, 'w').close()\n")
    good = hashlib.sha256(module.read_bytes()).hexdigest()
    assert compile_worker.work({"path": str(module), "sha256": "0" * 64, "kernels": []}) == 2
    assert not marker.exists()
    d.chmod(0o777)  # a directory others may write: refused even with the right hash
    try:
        assert compile_worker.work({"path": str(module), "sha256": good, "kernels": []}) == 2
        assert not marker.exists()
    finally:
        d.chmod(0o700)
    assert compile_worker.work({"path": str(module), "sha256": good, "kernels": []}) == 0
    assert marker.exists()  # the promised file runs (as the parent process would run it)


def test_argument_kinds_map_to_numba_types() -> None:
    from numba import types

    assert precompile.numba_type(("int",)) == types.int64
    assert precompile.numba_type(("f32", 2, "C")) == types.Array(types.float32, 2, "C")
    assert precompile.numba_type(("i32", 0, "C")) == types.Array(types.int32, 0, "C")
