"""Symbolic dims: normalisation, arithmetic, evaluation, printing."""

import pytest

from specc.ir.dims import Dim, as_dim, numel, parse_dim

T, B, D, H = (Dim.sym(n) for n in "TBDH")


def test_polynomials_normalise():
    assert D + H == H + D
    assert 2 * H == H + H
    assert (D + H) - H == D
    assert T * B == B * T
    assert (T + 1) * 2 == 2 * T + 2
    assert D - D == Dim.const(0)


def test_const_and_symbol_queries():
    assert as_dim(3).is_const and as_dim(3).value == 3
    assert H.as_symbol() == "H" and (2 * H).as_symbol() is None
    assert (D + H).symbols == {"D", "H"}
    with pytest.raises(ValueError):
        _ = H.value


def test_printing_is_readable():
    assert str(D + H) == "D + H"
    assert str(2 * H + 1) == "2*H + 1"
    assert str(T * B) == "B*T"
    assert str(H - 3) == "H - 3"
    assert str(Dim.const(0)) == "0"


def test_floordiv_exact_and_opaque():
    assert (2 * H) // 2 == H
    assert as_dim(9) // 2 == as_dim(4)
    q = (H + 1) // 2
    assert not q.is_const
    assert q.evaluate({"H": 7}) == 4
    assert ((H + 1) // 2 + 1).evaluate({"H": 8}) == 5


def test_evaluate_substitute_parse():
    assert (D + 2 * H).evaluate({"D": 8, "H": 16}) == 40
    assert (D + H).substitute({"D": as_dim(8)}) == H + 8
    assert parse_dim("2*H + D - 1") == 2 * H + D - 1
    assert numel((T, B, as_dim(8))) == 8 * T * B
    with pytest.raises(KeyError):
        (T + B).evaluate({"T": 3})
