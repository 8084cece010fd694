"""Compile time of specs/lstm.nn's forward and backward: specc cold and cached, next to JAX's jit.

    python benchmarks/compile_time.py            # the three measurements, as a table
    python benchmarks/compile_time.py --specs    # cold and cached, to a first gradient, of every spec in specs/
    python benchmarks/compile_time.py --stacked 1,2,4   # the LSTM classifier with 1, 2, 4 stacked LSTM layers
    python benchmarks/compile_time.py probe specc|jax|spec FILE   # one fresh measurement (used by the above)

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
from pathlib import Path
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LSTM_SPEC = os.path.join(os.path.dirname(HERE), "specs", "lstm.nn")
T, B, D, H, CLASSES = 8, 64, 8, 64, 10


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.uniform(0, 1, (T, B, D)).astype(np.float32), rng.integers(0, CLASSES, B).astype(np.int32)


def _numba_cache_files() -> set[str]:
    root = os.environ.get("SPECC_CACHE_DIR")
    return {str(p) for p in Path(root).rglob("*.nbc")} if root and os.path.isdir(root) else set()


def probe_specc() -> dict[str, Any]:
    before = _numba_cache_files()  # the files already there: the cache writes are the others
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
    from specc.runtime import STATS

    # what the cache did: kernel sources written, and Numba machine code files (*.nbc) written (by this
    # process or its compile workers)
    written = _numba_cache_files() - before
    return {"import_s": t_import, "build_s": t_build, "first_call_s": first_call, "first_result_s": t_first,
            "second_call_s": second, "loss": float(loss), "sources_written": STATS.written,
            "numba_files_written": len(written)}


def probe_spec(spec: str) -> dict[str, Any]:
    """Cold or cached (as the cache directory is): ``import specc`` to the first ``value_and_grad`` result of
    any spec (its free dims 8; random inputs as ``specc bench`` makes them; float32)."""
    t0 = time.perf_counter()
    import specc
    from specc.cli import _free_dims, random_inputs

    model = specc.compile(spec, target="cpu", dtype="float32")
    dims = {s: 8 for s in _free_dims(model)}
    arrays, _ = model.bind_inputs(random_inputs(model, dims, 0))
    params = model.init_params(0)
    model.value_and_grad(params, **arrays)
    return {"first_result_s": time.perf_counter() - t0}


def stacked_lstm(layers: int) -> str:
    """specs/lstm.nn's classifier with ``layers`` LSTM layers (the standard library's), as spec text."""
    body = "\n".join(f"  h{k} = lstm(h{k - 1}, hidden=64)" for k in range(1, layers + 1))
    return (f"dim T, B\n\nmodel stacked(x: f32[T, B, 8], y: i32[B]) {{\n  h0 = x\n{body}\n"
            f"  logits = dense(h{layers}[-1], 10)\n  loss = cross_entropy(logits, y)\n}}\n")


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


def _probe(kind: str, env: dict[str, str], *extra: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "probe", kind, *extra], env=env,
                          capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def measure(has_jax: bool, log=print) -> list[dict[str, Any]]:
    """specc cold, specc cached, then JAX: each a dict with name, import_s, first_result_s, target.
    The cold target is COLD_VS_JAX times JAX's first result when JAX ran, else COMPILE_TARGETS["cold"]."""
    from harness import COLD_VS_JAX, COMPILE_TARGETS

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
        if "first_result_s" in r:
            results[0]["target"] = round(COLD_VS_JAX * r["first_result_s"], 2)
    else:
        results.append({"name": "jax jit (first call)", "error": "jax not installed"})
    return results


def measure_files(kind: str, items: list[str], log=print) -> list[tuple[str, float | None, float | None]]:
    """(name, cold s, cached s) per spec file (or per stacked-LSTM layer count): each a fresh process, the cold
    one with an empty cache directory."""
    rows = []
    for item in items:
        with tempfile.TemporaryDirectory(prefix="specc_cold_cache_") as cache:
            env = dict(os.environ, SPECC_CACHE_DIR=cache, TMPDIR=cache)
            spec = item
            if kind == "stacked":
                spec = os.path.join(cache, f"stacked{item}.nn")
                with open(spec, "w") as f:
                    f.write(stacked_lstm(int(item)))
            cold, cached = (_probe("spec", env, spec) for _ in range(2))
            name = f"{item} LSTM layers" if kind == "stacked" else os.path.basename(item)
            rows.append((name, cold.get("first_result_s"), cached.get("first_result_s")))
            log(f"  {name}: cold {cold.get('first_result_s', cold.get('error'))}, "
                f"cached {cached.get('first_result_s', cached.get('error'))}")
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        probes = {"specc": probe_specc, "jax": probe_jax, "spec": lambda: probe_spec(argv[2])}
        print(json.dumps(probes[argv[1]]()))
        return
    sys.path.insert(0, HERE)
    from harness import COMPILE_TARGETS, format_compile_table, have

    if argv[:1] in (["--specs"], ["--stacked"]):
        if argv[0] == "--specs":
            kind, items = "specs", sorted(str(p) for p in Path(LSTM_SPEC).parent.glob("*.nn"))
        else:
            kind, items = "stacked", (argv[1] if len(argv) > 1 else "1,2,4").split(",")
        rows = measure_files(kind, items)
        target = COMPILE_TARGETS["cold"]
        print(f"\n{'spec':<24} {'cold s':>7} {'cached s':>9}  target (cold)")
        for name, cold, cached in rows:
            verdict = "-" if cold is None else ("PASS" if cold <= target else "MISS")
            print(f"{name:<24} {cold if cold is not None else float('nan'):7.2f} "
                  f"{cached if cached is not None else float('nan'):9.2f}  <= {target:g} s {verdict}")
        return
    print(format_compile_table(measure(have("jax"))))


if __name__ == "__main__":
    main()
