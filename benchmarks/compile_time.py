"""Compile time of specs/lstm.nn's forward and backward: specc cold and cached, next to JAX's jit.

    python benchmarks/compile_time.py            # the three measurements, as a table
    python benchmarks/compile_time.py probe specc|jax   # one fresh measurement (used by the above)

Each measurement is a fresh Python process (a *probe*) that reports, as one JSON
line, the seconds from just before ``import specc`` (or ``import jax``) to the
first result of the loss and gradients of the LSTM classifier of specs/lstm.nn
(T = 8, B = 64, In = 8, H = 64, float32), and the import alone.

* specc cold: an empty ``$SPECC_CACHE_DIR`` (a new temporary directory, also the
  process's ``$TMPDIR``, where Lark caches its parser tables): specc parses,
  generates the kernels' source and Numba compiles it.
* specc cached: a second process with the same directory: the kernels load from
  the disk cache (Numba's own cache beside the generated source).
* JAX: ``jax.jit(jax.value_and_grad(loss))`` of the same model written with
  ``lax.scan``; the first call traces and compiles (JAX's persistent compilation
  cache is off by default, so every process compiles afresh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LSTM_SPEC = os.path.join(os.path.dirname(HERE), "specs", "lstm.nn")
T, B, D, H, CLASSES = 8, 64, 8, 64, 10


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.uniform(0, 1, (T, B, D)).astype(np.float32), rng.integers(0, CLASSES, B).astype(np.int32)


def probe_specc() -> dict[str, Any]:
    start_wall = time.time() - 1  # file times have coarse resolution on some filesystems
    t0 = time.perf_counter()
    import specc

    t_import = time.perf_counter() - t0
    model = specc.compile(LSTM_SPEC, target="cpu", dtype="float32")
    t_build = time.perf_counter() - t0 - t_import
    params = model.init_params(0)
    x, y = _data()
    t1 = time.perf_counter()
    loss, _ = model.value_and_grad(params, x=x, y=y)  # builds the backward IR, optimises, generates, compiles
    t_first = time.perf_counter() - t0
    first_call = time.perf_counter() - t1
    t2 = time.perf_counter()
    model.value_and_grad(params, x=x, y=y)
    second = time.perf_counter() - t2
    from specc.runtime import STATS, cache_dir

    # what the cache did: kernel sources written, and Numba machine code files (*.nbc) written
    written = [p for p in cache_dir().rglob("*.nbc") if p.stat().st_mtime >= start_wall]
    return {"import_s": t_import, "build_s": t_build, "first_call_s": first_call, "first_result_s": t_first,
            "second_call_s": second, "loss": float(loss), "sources_written": STATS.written,
            "numba_files_written": len(written)}


def probe_jax() -> dict[str, Any]:
    t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp

    t_import = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    P = {"W": rng.normal(0, 0.1, (H + D, 4 * H)).astype(np.float32), "b": np.zeros(4 * H, np.float32),
         "V": rng.normal(0, 0.1, (H, CLASSES)).astype(np.float32), "c": np.zeros(CLASSES, np.float32)}
    x, y = _data()

    def loss(P, x, y):
        def step(carry, xt):
            h, c = carry
            zf, zi, zo, zc = jnp.split(jnp.concatenate([h, xt], 1) @ P["W"] + P["b"], 4, 1)
            c = jax.nn.sigmoid(zf) * c + jax.nn.sigmoid(zi) * jnp.tanh(zc)
            h = jax.nn.sigmoid(zo) * jnp.tanh(c)
            return (h, c), h

        h0 = jnp.zeros((x.shape[1], H), x.dtype)
        (h, _), _ = jax.lax.scan(step, (h0, h0), x)
        logp = jax.nn.log_softmax(h @ P["V"] + P["c"])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], 1))

    f = jax.jit(jax.value_and_grad(loss))
    t1 = time.perf_counter()
    value, _ = jax.block_until_ready(f(P, x, y))
    t_first = time.perf_counter() - t0
    jit_first = time.perf_counter() - t1
    t2 = time.perf_counter()
    jax.block_until_ready(f(P, x, y))
    return {"import_s": t_import, "first_result_s": t_first, "first_call_s": jit_first,
            "second_call_s": time.perf_counter() - t2, "loss": float(value)}


def _probe(kind: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "probe", kind], env=env,
                          capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def measure(has_jax: bool, log=print) -> list[dict[str, Any]]:
    """specc cold, specc cached, then JAX: each a dict with name, import_s, first_result_s, target."""
    from harness import COMPILE_TARGETS

    results = []
    with tempfile.TemporaryDirectory(prefix="specc_cold_cache_") as cache:
        # TMPDIR too: Lark keeps its parser tables in the temporary directory
        env = dict(os.environ, SPECC_CACHE_DIR=cache, TMPDIR=cache)
        for name in ("cold", "cached"):
            r = _probe("specc", env) | {"name": f"specc {name}", "target": COMPILE_TARGETS[name]}
            log(f"  compile specc {name}: {r.get('first_result_s', r.get('error'))}")
            results.append(r)
    if has_jax:
        r = _probe("jax", dict(os.environ)) | {"name": "jax jit (first call)", "target": None}
        log(f"  compile jax: {r.get('first_result_s', r.get('error'))}")
        results.append(r)
    else:
        results.append({"name": "jax jit (first call)", "error": "jax not installed"})
    return results


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        print(json.dumps(probe_specc() if argv[1] == "specc" else probe_jax()))
        return
    sys.path.insert(0, HERE)
    from harness import format_compile_table, have

    print(format_compile_table(measure(have("jax"))))


if __name__ == "__main__":
    main()
