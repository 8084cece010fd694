"""matmul_nt: a recurrence step's product with a constant matrix (specc.backends.cpu.shared)."""

from __future__ import annotations

import numpy as np
import pytest

from specc.backends.cpu.shared import NT_MIN_K, NT_MIN_ROWS, matmul_nt

SHAPES = [  # (m, k, n): both paths, rows and columns not multiples of 4, a single row, K = 1
    (1, 300, 17), (3, 256, 64), (4, 256, 64), (5, 256, 7), (6, 257, 130), (13, 512, 1029), (16, 256, 1024),
    (8, 128, 1024), (8, 64, 64), (7, 1, 9),
]


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matches_the_float64_product(m: int, k: int, n: int, dtype: type, tol: float) -> None:
    rng = np.random.default_rng(m * 1000 + k + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    matmul_nt(a, b, np.ascontiguousarray(b.T), out)
    want = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)  # the error bound's scale
    assert np.all(np.abs(out - want) <= tol * scale + 1e-30)


def test_views_in_and_out() -> None:
    """A recurrence passes row t of a history (a non-contiguous view type) and writes into one."""
    rng = np.random.default_rng(1)
    hist = rng.standard_normal((3, 12, 256)).astype(np.float32)
    b = rng.standard_normal((256, 40)).astype(np.float32)
    out = np.zeros((3, 12, 40), np.float32)
    matmul_nt(hist[1, 2:10], b, np.ascontiguousarray(b.T), out[2, 2:10])
    np.testing.assert_allclose(out[2, 2:10], hist[1, 2:10] @ b, rtol=1e-5, atol=1e-4)
    assert not out[2, :2].any() and not out[2, 10:].any() and not out[:2].any()


def test_a_row_gives_the_same_bits_in_any_block() -> None:
    """Row blocks of a recurrence differ with the thread count: a row's result must not."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((24, NT_MIN_K)).astype(np.float32)
    b = rng.standard_normal((NT_MIN_K, 66)).astype(np.float32)
    bt = np.ascontiguousarray(b.T)
    whole = np.empty((24, 66), np.float32)
    matmul_nt(a, b, bt, whole)
    for lo, hi in [(0, 12), (12, 24), (5, 11), (0, 7), (17, 24), (3, 3 + NT_MIN_ROWS)]:
        part = np.empty((hi - lo, 66), np.float32)
        matmul_nt(a[lo:hi], b, bt, part)
        assert np.array_equal(part, whole[lo:hi]), (lo, hi)


def test_empty_inner_dimension() -> None:
    a, b = np.ones((5, 0), np.float32), np.ones((0, 3), np.float32)
    out = np.full((5, 3), np.nan, np.float32)
    matmul_nt(a, b, np.ascontiguousarray(b.T), out)
    assert not out.any()


@pytest.mark.parametrize("k,m,n,threads", [(1600, 40, 96, 2), (1600, 40, 96, 3), (1600, 40, 96, 1), (9, 5, 7, 2),
                                           (70, 33, 1100, 2), (4000, 64, 64, 4)])
def test_transposed_product_by_blocks_of_rows(k: int, m: int, n: int, threads: int) -> None:
    """matmul_t_rows(z, g) = z.T @ g from z itself: blocks of rows of the result, the same bits on any number
    of threads."""
    from specc.backends.cpu.runtime import matmul_t_rows

    rng = np.random.default_rng(k + m + n)
    z = rng.standard_normal((k, m)).astype(np.float32)
    g = rng.standard_normal((k, n)).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    matmul_t_rows(z, g, out, threads)
    want = z.T.astype(np.float64) @ g.astype(np.float64)
    scale = np.abs(z.T).astype(np.float64) @ np.abs(g).astype(np.float64)
    assert np.all(np.abs(out - want) <= 2e-6 * scale)
    alone = np.full((m, n), np.nan, np.float32)
    matmul_t_rows(z, g, alone, 1)
    np.testing.assert_array_equal(out, alone)  # each element one dot product: the same bits on any threads


@pytest.mark.parametrize("shape", [(768, 2048), (33, 70), (1, 5), (0, 3), (64, 32)])
def test_transposed_is_a_c_array_of_the_transpose(shape) -> None:
    from specc.backends.cpu.runtime import transposed

    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    t = transposed(a)
    assert t.flags.c_contiguous and t.dtype == a.dtype
    np.testing.assert_array_equal(t, a.T)


def test_weight_gradients_read_the_transposed_operand_in_place() -> None:
    """The LSTM's weight gradient z.T @ dG: no transposed copy of z, matmul_t_rows reads z."""
    from pathlib import Path

    import specc
    from specc.transforms import passes
    from specc.backends import generator

    model = specc.compile(str(Path(__file__).resolve().parent.parent / "specs" / "lstm.nn"))
    src = generator("cpu").generate(passes.optimize(model.grad_program().graph), "g").source
    assert "matmul_t_rows(v40, " in src  # reads z itself (the view z.T, unread, is not even made)
    assert "v51[i0, i1] = v40[i1, i0]" not in src and "v40.transpose" not in src  # no copy


@pytest.mark.parametrize("m,threads", [(3000, 2), (3000, 3), (40, 2), (3000, 1)])
def test_product_by_blocks_of_rows(m: int, threads: int) -> None:
    """matmul_rows(a, b, out): blocks of rows on the kernel's threads, each np.dot into its rows of out."""
    from specc.backends.cpu.runtime import matmul_rows

    rng = np.random.default_rng(m + threads)
    a = rng.standard_normal((m, 300)).astype(np.float32)
    b = rng.standard_normal((300, 50)).astype(np.float32)
    out = np.full((m, 50), np.nan, np.float32)
    matmul_rows(a, b, out, threads)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    matmul_rows(a, np.ascontiguousarray(b.T).T, out, threads)  # a transposed (F-ordered) right operand
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
