"""Throughput of the vectorizable math helpers (specc.backends.cpu.vecmath) against what generated
code calls today, and against NumPy's ufuncs.

    python benchmarks/mathfn.py [--n 1000000] [--repeats 30] [--dtypes f32,f64]

Every variant runs over the same n random inputs (x ~ 4 N(0, 1); |x| for log), single-threaded:

  new      ``out[i] = {kind}_{dt}(x[i])`` in an njit loop with fastmath={"contract"} (cpu_math)
  new-nc   the same loop without fastmath flags
  libm     the same loop calling what generated code called before cpu_math (specc 1b94c68):
           np.exp / np.expm1 / np.log / np.tanh (libm calls), and the helpers sigmoid_{dt}, softplus_{dt},
           tanh_f32 of that version (through np.exp / np.log1p), copied below
  numpy    NumPy on the whole array: np.exp, np.expm1, np.log, np.tanh (ufuncs), 1/(1+np.exp(-x)),
           np.logaddexp(0, x)

Prints the best-of-repeats ns/element and the ratios libm/new and numpy/new (> 1: new is
faster).  Shared machines are noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from specc.backends.cpu.vecmath import MATH_HELPERS, array_fn, loop_over

KINDS = ["exp", "expm1", "log", "tanh", "sigmoid", "softplus"]
NP_DT = {"f32": np.float32, "f64": np.float64}


# The scalar helpers generated code used before cpu_math (cpu_rules.py at 1b94c68), {one}/{zero}: typed literals.
OLD_HELPERS = {
    "sigmoid": """
def f(x):
    e = np.exp(-abs(x))
    if x >= 0:
        return {one} / ({one} + e)
    return e / ({one} + e)
""",
    "softplus": """
def f(x):
    return max(x, {zero}) + np.log1p(np.exp(-abs(x)))
""",
    "tanh_f32": """
def f(x):
    a = abs(x)
    if a < np.float32(0.25):
        a2 = a * a
        t = a * (np.float32(1.0) + a2 * (np.float32(-1.0 / 3) + a2 * (np.float32(2.0 / 15) + a2 * (
            np.float32(-17.0 / 315) + a2 * np.float32(62.0 / 2835)))))
    else:
        e = np.exp(np.float32(-2.0) * a)
        t = (np.float32(1.0) - e) / (np.float32(1.0) + e)
    return t if x >= 0 else -t
""",
}


def libm_scalar(kind: str, dt: str):
    """The scalar function generated code used for this op before cpu_math."""
    if kind == "exp":
        return njit(lambda v: np.exp(v))
    if kind == "log":
        return njit(lambda v: np.log(v))
    if kind == "expm1":
        return njit(lambda v: np.expm1(v))
    if kind == "tanh" and dt == "f64":
        return njit(lambda v: np.tanh(v))
    src = OLD_HELPERS["tanh_f32" if kind == "tanh" else kind]
    lit = "np.float32({})" if dt == "f32" else "{}"
    src = src.replace("{one}", lit.format("1.0")).replace("{zero}", lit.format("0.0"))
    ns: dict = {"np": np}
    exec(src, ns)
    return njit(error_model="numpy")(ns["f"])


def numpy_fn(kind: str):
    one = None

    def sigmoid(x):
        return one / (one + np.exp(-x))

    fns = {
        "exp": np.exp,
        "expm1": np.expm1,
        "log": np.log,
        "tanh": np.tanh,
        "sigmoid": sigmoid,
        "softplus": lambda x: np.logaddexp(x.dtype.type(0), x),
    }

    def call(x):
        nonlocal one
        one = x.dtype.type(1)
        return fns[kind](x)

    return call


def best(fn, x, repeats: int) -> float:
    fn(x)  # compile / warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return min(times) / x.size * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--dtypes", default="f32,f64")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    base = rng.standard_normal(args.n) * 4
    print(f"n = {args.n}, best of {args.repeats}, ns/element (ratio > 1: new is faster)")
    print(f"{'fn':<12}{'new':>8}{'new-nc':>8}{'libm':>9}{'numpy':>8}{'libm/new':>9}{'np/new':>8}")
    for dt in args.dtypes.split(","):
        for kind in KINDS:
            assert kind in MATH_HELPERS
            x = base.astype(NP_DT[dt])
            if kind == "log":
                x = np.abs(x)
            with np.errstate(all="ignore"):
                t_new = best(array_fn(kind, dt, True), x, args.repeats)
                t_nc = best(array_fn(kind, dt, False), x, args.repeats)
                t_cur = best(loop_over(libm_scalar(kind, dt), dt, contract=False), x, args.repeats)
                t_np = best(numpy_fn(kind), x, args.repeats)
            print(f"{kind + '_' + dt:<12}{t_new:8.2f}{t_nc:8.2f}{t_cur:9.2f}{t_np:8.2f}"
                  f"{t_cur / t_new:9.1f}{t_np / t_new:8.1f}", flush=True)


if __name__ == "__main__":
    main()
