"""Fuzz the front end: every spec text gives a clean error with a location, or is accepted.

In: the specs of ``specs/`` and ``tests/bad_specs/`` (the seeds), a seed and a number of cases.
Out: per case, one outcome of ``specc check`` (parse + elaborate + check + the summary it prints;
nothing is compiled): ``ok``, ``error`` (a SpeccError with a file:line:col), ``unlocated`` (a
SpeccError without one), ``traceback`` (any other exception), ``timeout`` (over the per-case limit)
or ``memory`` (over the memory limit); and a summary with the distinct tracebacks (exception and
the last frame) and a minimal reproducer of each.

Cases are made three ways, each from its own random stream (so case i of seed s is always the same
text): token mutations of a seed spec (delete, duplicate, swap, replace or insert a token, from the
seeds' own tokens and a pool of hostile ones: huge numbers, lags, deep nesting, control characters),
line mutations (delete, duplicate, swap, move, splice a line of another spec, truncate), and
grammar-aware generation of whole models (random dims, parameters, recurrences and expressions over
the builtins and the standard layers).

Each case runs in a worker process with a memory limit (``RLIMIT_DATA``) and a time limit (SIGALRM,
and the pool is rebuilt when a worker dies or stops answering).

    python benchmarks/fuzz_specs.py --cases 12000 --seed 1 --limit 10 --out fuzz-report/

is the release check (the test suite runs a few thousand cases: tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import io
import json
import os
import random
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TOKEN = re.compile(r'#[^\n]*|"[^"\n]*"|[A-Za-z_]\w*|\d+\.\d*(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?|\.\.\.|//|\*\*|->'
                   r'|\s+|.', re.S)
HOSTILE = ["99999999999999999999999", "1e999", "0", "-1", "2**63", "9223372036854775807", "10000000", "1e-320",
           "0.0", "-0", "t-10000000", "t+1", "t-0", "h[-11]", "[-10**23]", "(", ")", "[", "]", "{", "}", ",", ":", ";",
           "=", "->", "...", "@", "**", "//", "-", "+", '"', '"../../etc/passwd"', '"/proc/self/environ"', "\f",
           "\u2028", "\r", "\x00", "\t", "é", "∑", "\ufeff", "recur", "over", "reverse", "init", "param", "output",
           "return", "layer", "model", "dim", "use", "train", "true", "false", "x[t]", "h[t-1]", "B", "T", "D", "H"]
UNARY = ["exp", "log", "sqrt", "abs", "sigmoid", "tanh", "relu", "gelu", "softplus", "softmax", "log_softmax",
         "sum", "mean", "max", "flatten", "zeros_like", "ones_like", "normal_like", "dropout", "transpose",
         "layer_norm", "float", "int"]
BINARY = ["maximum", "minimum", "concat", "cross_entropy", "bce_logits", "mse", "take", "binary_cross_entropy"]
LAGGED = ["h[t-1]", "x[t]", "h[t-2]", "W", "h[t-10000000]", "h[t-100]", "h[t - 10**23]", "h[t+1]", "x[t-1]"]
SIZED = ["dense", "rnn", "lstm", "gru", "embedding", "conv", "conv1"]


def seeds() -> list[tuple[str, str]]:
    """(name, text) of every spec and bad spec."""
    files = sorted((ROOT / "specs").glob("*.nn")) + sorted((ROOT / "tests" / "bad_specs").glob("*.nn"))
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


# ---- mutations ---------------------------------------------------------------------------------
def mutate_tokens(text: str, rng: random.Random, pool: list[str]) -> str:
    toks = TOKEN.findall(text)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.randrange(6)
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, toks[i])
        elif op == 2 and i + 1 < len(toks):
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif op == 3:
            toks[i] = rng.choice(pool)
        elif op == 4:
            toks[i] = rng.choice(HOSTILE)
        else:
            toks.insert(i, rng.choice(HOSTILE if rng.random() < 0.5 else pool))
    return "".join(toks)


def mutate_lines(text: str, rng: random.Random, others: list[str]) -> str:
    lines = text.split("\n")
    for _ in range(rng.choice([1, 1, 2, 3])):
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            lines.insert(rng.randrange(len(lines) + 1), lines.pop(i))
        elif op == 4:
            donor = rng.choice(others).split("\n")
            lines.insert(i, rng.choice(donor))
        else:
            return "\n".join(lines)[: rng.randrange(len(text) + 1)]
    return "\n".join(lines)


# ---- grammar-aware generation -------------------------------------------------------------------
def _expr(rng: random.Random, names: list[str], depth: int) -> str:
    if depth <= 0 or rng.random() < 0.25:
        r = rng.random()
        if r < 0.7 and names:
            return rng.choice(names)
        if r < 0.9:
            return rng.choice(["1", "0.5", "2", "1e-3", "0", "3"])
        return rng.choice(HOSTILE[:12])
    kind = rng.randrange(9)
    sub = lambda: _expr(rng, names, depth - 1)  # noqa: E731
    if kind == 0:
        return f"{sub()} {rng.choice(['+', '-', '*', '/', '@', '**', '//'])} {sub()}"
    if kind == 1:
        return f"{rng.choice(UNARY)}({sub()})"
    if kind == 2:
        return f"{rng.choice(BINARY)}({sub()}, {sub()})"
    if kind == 3:
        size = rng.choice(['4', '8', '1', '0', 'H', '3, 3', '99999999999999999999999', '9223372036854775807',
                           '2**63 - 1', '-4', '4.5', '10**7'])
        return f"{rng.choice(SIZED)}({sub()}, {size})"
    if kind == 4:
        return f"({sub()})[{rng.choice(['0', '-1', 't', 't-1', ':', '0:2', '..., 0', 'T', '5'])}]"
    if kind == 5:
        return f"-{sub()}"
    if kind == 6:
        return f"{rng.choice(['zeros', 'ones', 'normal', 'uniform'])}([{rng.choice(['B', 'B, 4', '4, 4', 'T, B, 4'])}])"
    if kind == 7:  # deep nesting, the kind the issue found
        n = rng.choice([50, 99, 101, 150, 250, 500])
        return rng.choice([" + ".join(["x"] * n), "-" * n + "x", "tanh(" * n + "x" + ")" * n, "x" + "[0]" * n,
                           "**".join(["x"] * n), "(" * n + "x" + ")" * n])
    return f"{rng.choice(['softmax', 'sum', 'mean', 'concat'])}({sub()}, axis={rng.choice(['0', '-1', '1', '5'])})"


def generate(rng: random.Random) -> str:
    """A whole random spec: dims, maybe a layer, a model with params, equations, a recurrence, a loss."""
    out = [f"dim {rng.choice(['B', 'T, B', 'B, D = 4', 'T, B, H = 3'])}"]
    names = ["x"]
    if rng.random() < 0.3:
        out.append("layer lay(x: [..., D], units N) -> [..., N] {\n  param W: [D, N] = glorot\n"
                   f"  return {_expr(rng, ['x', 'W'], 2)}\n}}")
        names.append("lay(x, units=4)")
    shape = rng.choice(["f32[B, 4]", "f32[T, B, 4]", "[B, 4]", "f32[B, 1, 8, 8]", "f64[B, 4]"])
    out.append(f"model m(x: {shape}, y: i32[B]) {{")
    if rng.random() < 0.5:
        out.append(f"  param W: [{rng.choice(['4, 4', '4', 'D, 4', '4, H'])}] = "
                   f"{rng.choice(['glorot', 'zeros', 'normal(0.1)', 'normal(-1)', 'ones', 'uniform(1, 0)'])}")
        names.append("W")
    for k in range(rng.randrange(1, 4)):
        out.append(f"  v{k} = {_expr(rng, names, rng.randrange(1, 4))}")
        names.append(f"v{k}")
    if rng.random() < 0.3:
        out.append("  recur t over x {\n    init h = zeros([B, 4])\n"
                   f"    h[t] = {_expr(rng, LAGGED, 2)}\n  }}")
        if rng.random() < 0.3:
            names.append(rng.choice(["h[-11]", "h[-1]", "h[7]", "h[-10**23]", "h[8]", "h[0]"]))
        names.append("h")
    out.append(f"  loss = {rng.choice(['mean', 'sum'])}({_expr(rng, names, 2)})")
    if rng.random() < 0.3:
        out.append(f"  output o = {_expr(rng, names, 1)}")
    out.append("}")
    if rng.random() < 0.2:
        out.append(f"train {{ lr = {rng.choice(['0.1', '-1', '1e999', 'inf', '0'])}, "
                   f"epochs = {rng.choice(['1', '0', '99999999999999999999'])} }}")
    return "\n".join(out) + "\n"


def make_case(seed: int, i: int, corpus: list[tuple[str, str]], pool: list[str]) -> tuple[str, str]:
    """(where it came from, the text) of case ``i``: the same for the same (seed, i)."""
    rng = random.Random(seed * 1_000_003 + i)
    kind = i % 3
    if kind == 2:
        return "generated", generate(rng)
    name, text = corpus[rng.randrange(len(corpus))]
    if kind == 0:
        return f"tokens of {name}", mutate_tokens(text, rng, pool)
    return f"lines of {name}", mutate_lines(text, rng, [t for _n, t in corpus])


# ---- running one case ----------------------------------------------------------------------------
@dataclass
class Outcome:
    index: int
    origin: str
    kind: str  # ok | error | unlocated | traceback | timeout | memory
    seconds: float
    detail: str = ""  # the error's first line, or the exception and its last frame
    signature: str = ""  # for tracebacks: exception type and last frame (file:function)


class _Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Timeout()


def _init_worker(memory_mb: int) -> None:
    import signal

    os.environ["SPECC_TARGET"] = "interp"
    sys.setrecursionlimit(1000)
    if memory_mb:  # RLIMIT_DATA (heap and mmap), not RLIMIT_AS: a stack that cannot grow is a SIGSEGV
        import resource

        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    import specc.cli  # noqa: F401 - imported once per worker, not per case


def check_text(text: str, index: int = 0, origin: str = "", limit_s: float = 10.0) -> Outcome:
    """``specc check`` on ``text`` (written to a file, as the command line reads it)."""
    import argparse as ap
    import signal

    from specc.cli import cmd_check
    from specc.errors import SpeccError

    with tempfile.TemporaryDirectory(prefix="specc-fuzz-") as d:
        path = Path(d) / "case.nn"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cmd_check(ap.Namespace(spec=path, dtype=None, model=None))
            kind, detail, sig = "ok", "", ""
        except _Timeout:
            kind, detail, sig = "timeout", f"over {limit_s:g} s", ""
        except SpeccError as e:
            located = e.span is not None and e.span.source is not None and e.span.line >= 1
            kind, detail, sig = ("error" if located else "unlocated"), e.render().split("\n")[0][:300], ""
            if not located:
                sig = f"unlocated: {type(e).__name__}: {re.sub(r'[0-9]+', 'N', e.message)[:80]}"
        except MemoryError:
            kind, detail, sig = "memory", "MemoryError", ""
        except BaseException as e:  # noqa: BLE001 - the point: anything else is a finding
            frames = traceback.extract_tb(e.__traceback__)
            last = next((f for f in reversed(frames) if "/specc/" in f.filename), frames[-1] if frames else None)
            where = f"{Path(last.filename).relative_to(ROOT) if last and str(ROOT) in last.filename else last.filename if last else '?'}:{last.lineno if last else 0} in {last.name if last else '?'}"
            kind = "traceback"
            detail = f"{type(e).__name__}: {str(e)[:200]} at {where}"
            sig = f"{type(e).__name__} at {where.split(':')[0]} in {last.name if last else '?'}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return Outcome(index, origin, kind, time.perf_counter() - t0, detail, sig)


def _run_chunk(args: tuple[int, list[int], float]) -> list[Outcome]:
    seed, indices, limit_s = args
    corpus = seeds()
    pool = sorted({t for _n, text in corpus for t in TOKEN.findall(text) if t.strip()})
    out = []
    for i in indices:
        origin, text = make_case(seed, i, corpus, pool)
        out.append(check_text(text, i, origin, limit_s))
    return out


def run(cases: int, seed: int = 0, workers: int = 2, limit_s: float = 10.0, memory_mb: int = 2048,
        chunk: int = 50) -> list[Outcome]:
    """Run ``cases`` cases in ``workers`` processes.

    When a worker dies (a crash below Python), every chunk still running is lost with it: those
    chunks run again in a fresh pool, and a chunk lost twice runs case by case, so that the case
    that kills its worker is found and recorded (``worker died``) and no other case is lost.
    """
    queue = [list(range(s, min(s + chunk, cases))) for s in range(0, cases, chunk)]
    lost: dict[tuple[int, ...], int] = {}
    results: list[Outcome] = []
    while queue:
        again: list[list[int]] = []
        with cf.ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(memory_mb,)) as pool:
            futures = {pool.submit(_run_chunk, (seed, c, limit_s)): c for c in queue}
            for f in cf.as_completed(futures):
                c = futures[f]
                try:
                    results.extend(f.result())
                except Exception as e:  # noqa: BLE001 - the pool broke: a worker died
                    key = tuple(c)
                    lost[key] = lost.get(key, 0) + 1
                    if len(c) == 1 and lost[key] > 1:
                        results.append(Outcome(c[0], "?", "traceback", 0.0, f"the worker died: {e!r}",
                                               "worker died"))
                    elif lost[key] > 1:
                        again.extend([i] for i in c)
                    else:
                        again.append(c)
        queue = again
    return sorted(results, key=lambda o: o.index)


# ---- minimising a finding ------------------------------------------------------------------------
def minimise(text: str, signature: str, limit_s: float = 10.0) -> str:
    """The smallest text (by deleting lines, then tokens) that still gives ``signature``."""
    def same(t: str) -> bool:
        return check_text(t, limit_s=limit_s).signature == signature

    for unit in ("lines", "tokens"):
        parts = text.split("\n") if unit == "lines" else TOKEN.findall(text)
        join = "\n".join if unit == "lines" else "".join
        size = max(len(parts) // 2, 1)
        while size >= 1:
            i, changed = 0, False
            while i < len(parts):
                trial = parts[:i] + parts[i + size:]
                if trial and same(join(trial)):
                    parts, changed = trial, True
                else:
                    i += size
            if not changed:
                size //= 2
        text = join(parts)
    return text


def summary(results: list[Outcome]) -> dict:
    counts: dict[str, int] = {}
    for o in results:
        counts[o.kind] = counts.get(o.kind, 0) + 1
    slow = [o for o in results if o.seconds > 10.0 or o.kind == "timeout"]
    return {"cases": len(results), "counts": counts, "over_10s": len(slow),
            "max_seconds": max((o.seconds for o in results), default=0.0),
            "signatures": sorted({o.signature for o in results if o.signature})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=12000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--limit", type=float, default=10.0, help="seconds per case")
    p.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per worker")
    p.add_argument("--out", type=Path, help="write summary.json and one reproducer per distinct finding here")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    results = run(args.cases, args.seed, args.workers, args.limit, args.memory_mb)
    s = summary(results)
    s["seconds"] = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in s.items() if k != "signatures"}))
    findings: dict[str, Outcome] = {}
    for o in results:
        if o.kind in ("traceback", "unlocated", "timeout", "memory"):
            findings.setdefault(o.signature or o.kind + o.detail[:40], o)
    corpus = seeds()
    pool = sorted({t for _n, text in corpus for t in TOKEN.findall(text) if t.strip()})
    for sig, o in findings.items():
        print(f"{o.kind}: {o.detail}  [case {o.index}, {o.origin}]")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps({**s, "findings": [asdict(o) for o in findings.values()]},
                                                           indent=1))
        for n, (sig, o) in enumerate(findings.items()):
            _origin, text = make_case(args.seed, o.index, corpus, pool)
            small = minimise(text, o.signature, args.limit) if o.signature and o.kind != "timeout" else text
            (args.out / f"finding_{n}.nn").write_text(f"# {o.kind}: {o.detail!r}\n# case {o.index} ({o.origin})\n"
                                                      + small)
    bad = sum(s["counts"].get(k, 0) for k in ("traceback", "unlocated", "timeout", "memory"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
