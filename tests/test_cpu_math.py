"""The vectorizable math helpers of specc.backends.cpu.vecmath: accuracy in ulps against long double
references (dense samples plus random bit patterns covering every exponent), special values, and
that a loop calling each helper compiles to packed SIMD code with no libm call."""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest

pytest.importorskip("numba")

from specc.backends.cpu.vecmath import MATH_HELPERS, MAX_ULP, array_fn, compiled  # noqa: E402

KINDS = sorted(MATH_HELPERS)
DTYPES = {"f32": np.float32, "f64": np.float64}
LD = np.longdouble

REFS = {
    "exp": lambda x: np.exp(x),
    "expm1": lambda x: np.expm1(x),
    "log": lambda x: np.log(x),
    "tanh": lambda x: np.tanh(x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "softplus": lambda x: np.logaddexp(LD(0), x),
}


def ulp_error(y: np.ndarray, ref: np.ndarray, dt) -> np.ndarray:
    """|y - ref| in units of the last place of ref rounded to dt (0 where y is that rounding, or both NaN)."""
    with np.errstate(all="ignore"):
        rounded = ref.astype(dt)
        ulp = np.spacing(np.abs(rounded)).astype(LD)
        err = np.abs(y.astype(LD) - ref) / ulp
    exact = (y == rounded) | (np.isnan(y) & np.isnan(ref))
    err = np.where(exact, 0, err)
    return np.where(np.isnan(err), np.inf, err)


def samples(kind: str, dt) -> np.ndarray:
    rng = np.random.default_rng(12345)
    it = np.uint32 if dt == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(it).max, 200_000, dtype=it, endpoint=True).view(dt)  # every exponent
    hi = 110 if dt == np.float32 else 800  # past exp's overflow and subnormal range
    x = np.concatenate([bits, np.linspace(-hi, hi, 200_001, dtype=dt), np.linspace(-3, 3, 150_001, dtype=dt),
                        rng.standard_normal(50_000).astype(dt) * 4])
    return np.abs(x) if kind == "log" else x


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("kind", KINDS)
def test_accuracy(kind: str, dt: str) -> None:
    x = samples(kind, DTYPES[dt])
    with np.errstate(all="ignore"):
        ref = REFS[kind](x.astype(LD))
    for contract in (True, False):
        y = array_fn(kind, dt, contract)(x)
        assert y.dtype == DTYPES[dt]
        err = ulp_error(y, ref, DTYPES[dt])
        i = int(np.argmax(err))
        where = f"{kind}_{dt} (contract={contract}): {err[i]:.2f} ulp at x={x[i]!r}: {y[i]!r} vs {ref[i]!r}"
        assert err[i] <= MAX_ULP[kind], where


INF, NAN = np.inf, np.nan
SPECIAL = {
    "exp": [(NAN, NAN), (INF, INF), (-INF, 0.0), (0.0, 1.0), (-0.0, 1.0), (1000.0, INF), (-1000.0, 0.0)],
    "expm1": [(NAN, NAN), (INF, INF), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (1000.0, INF), (-1000.0, -1.0),
              (1e-30, 1e-30), (-1e-30, -1e-30)],
    "log": [(NAN, NAN), (INF, INF), (-INF, NAN), (0.0, -INF), (-0.0, -INF), (-1.0, NAN), (1.0, 0.0)],
    "tanh": [(NAN, NAN), (INF, 1.0), (-INF, -1.0), (0.0, 0.0), (-0.0, -0.0), (20.0, 1.0), (-20.0, -1.0),
             (1e30, 1.0), (-1e30, -1.0), (1e-30, 1e-30), (-1e-30, -1e-30)],
    "sigmoid": [(NAN, NAN), (INF, 1.0), (-INF, 0.0), (0.0, 0.5), (-0.0, 0.5), (100.0, 1.0), (-1000.0, 0.0),
                (1e30, 1.0), (-1e30, 0.0)],
    "softplus": [(NAN, NAN), (INF, INF), (-INF, 0.0), (1e30, 1e30), (-1e30, 0.0), (1000.0, 1000.0), (-1000.0, 0.0)],
}


@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("kind", KINDS)
def test_special_values(kind: str, dt: str) -> None:
    t = DTYPES[dt]
    x = np.array([a for a, _ in SPECIAL[kind]], t)
    want = np.array([b for _, b in SPECIAL[kind]], t)
    for f in (array_fn(kind, dt), np.vectorize(compiled(kind, dt), otypes=[t])):
        with np.errstate(all="ignore"):
            y = f(x)
        assert y.dtype == t
        ok = (y == want) & (np.signbit(y) == np.signbit(want)) | (np.isnan(y) & np.isnan(want))
        assert ok.all(), f"{kind}_{dt}: {list(zip(x[~ok], y[~ok], want[~ok]))}"


@pytest.mark.parametrize("dt", list(DTYPES))
def test_exp_thresholds(dt: str) -> None:
    """Overflow exactly where the rounded result does; gradual underflow through the subnormals."""
    t = DTYPES[dt]
    big = t(np.log(np.float64(np.finfo(t).max)))
    with np.errstate(over="ignore"):
        while np.isinf(np.exp(LD(big)).astype(t)):
            big = np.nextafter(big, t(-INF))
        while np.isfinite(np.exp(LD(np.nextafter(big, t(INF)))).astype(t)):
            big = np.nextafter(big, t(INF))  # big: the largest x whose e^x rounds to a finite number
    x = np.array([big, np.nextafter(big, t(INF))], t)
    y = array_fn("exp", dt)(x)
    assert np.isfinite(y[0]) and y[1] == INF
    tiny = np.finfo(t).smallest_subnormal
    lo = np.log(LD(tiny))  # e^lo = the smallest subnormal
    x = np.linspace(t(lo - 1), t(lo + 20), 100_001, dtype=t)
    y = array_fn("exp", dt)(x)
    ref = np.exp(x.astype(LD))
    assert (ulp_error(y, ref, t) <= 1).all()  # in the subnormals an ulp is the smallest one
    assert (np.diff(y) >= 0).all()


def test_sigmoid_subnormal_tail() -> None:
    """sigmoid(x) = e^x/(1 + e^x) keeps the subnormal results that 1/(1 + e^-x) would flush."""
    x = np.array([-100.0, -103.0], np.float32)
    y = array_fn("sigmoid", "f32")(x)
    assert (y > 0).all() and (ulp_error(y, REFS["sigmoid"](x.astype(LD)), np.float32) <= 1).all()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 assembly")
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("kind", KINDS)
def test_vectorizes(kind: str, dt: str) -> None:
    """A loop calling the helper compiles to packed (ymm/zmm) float code with no call inside it."""
    for contract in (True, False):
        loop = array_fn(kind, dt, contract)
        loop(np.ones(4, DTYPES[dt]))
        asm = loop.inspect_asm(loop.signatures[0])
        suffix = "ps" if dt == "f32" else "pd"
        packed = re.findall(rf"\bv(?:fmadd|fnmadd|fmsub|mul|add|sub|div)\w*{suffix}\s[^\n]*%[yz]mm", asm)
        assert len(packed) >= 4, f"{kind}_{dt}: no packed arithmetic in the loop"
        called = re.findall(r"movabsq\s+\$(\S+),", asm)
        bad = [c for c in called if re.search(r"exp|log|tanh|sigmoid|softplus|pow", c)]
        assert not bad, f"{kind}_{dt}: calls {bad}"
