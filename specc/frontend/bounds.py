"""Run-time conditions that a spec's subscripts put on its symbolic sizes.

In: a checked :class:`~specc.ir.core.Program`, then the sizes bound from each
set of inputs (``T = 8``, ``B = 32``).
Out: nothing when every subscript is within its axis for those sizes; else an
:class:`~specc.errors.InputError` located at the subscript in the spec, e.g.
``x[-11]`` reads index -11 of an axis of size 8 (T = 8). Subscripts whose
axis and bounds are all fixed sizes are checked at compile time, by the
``getitem`` shape rule; ``h[-11]`` on a symbolic T can only be checked here,
before any kernel runs (where it would be an IndexError, or worse, a read
outside the array).
"""

from __future__ import annotations

from typing import Mapping

from .syntax import snippet
from ..errors import InputError
from ..ir.core import Eqn, Program
from ..ir.dims import Dim


def symbolic_subscripts(program: Program) -> tuple[Eqn, ...]:
    """The getitem equations whose axis or bounds involve a symbolic size (computed once per model)."""
    out = []
    for e in program.graph.walk():
        if e.op != "getitem":
            continue
        dims = list(e.inputs[0].shape[:len(e.params["index"])])
        for entry in e.params["index"]:
            dims.extend(d for d in entry[1:] if isinstance(d, Dim))
        if any(not d.is_const for d in dims):
            out.append(e)
    return tuple(out)


def check_subscripts(eqns: tuple[Eqn, ...], sizes: Mapping[str, int]) -> None:
    """Each subscript of ``eqns`` within its axis, and each slice as long as its type says, for ``sizes``."""
    for e in eqns:
        outs = iter(e.outputs[0].shape)
        for axis, entry in enumerate(e.params["index"]):
            length = _value(e.inputs[0].shape[axis], sizes)
            if entry[0] == "int":
                k = _value(entry[1], sizes)
                if length is not None and k is not None and not -length <= k < length:
                    raise _error(e, f"reads index {k} of axis {axis}, which has {length} entries",
                                 e.inputs[0].shape[axis], sizes)
                continue
            declared = next(outs)
            lo, hi = (None if d is None else _value(d, sizes) for d in entry[1:3])
            want = _value(declared, sizes)
            if length is None or want is None or (entry[1] is not None and lo is None) \
                    or (entry[2] is not None and hi is None):
                continue
            got = len(range(length)[slice(lo, hi, entry[3])])
            if got != want:
                says = str(declared) if declared.is_const else f"{declared} = {want}"
                raise _error(e, f"selects {got} of the {length} entries of axis {axis}, but its type says {says}",
                             e.inputs[0].shape[axis], sizes)


def _value(d: Dim, sizes: Mapping[str, int]) -> int | None:
    try:
        return d.evaluate(sizes)
    except (KeyError, ValueError):
        return None


def _error(e: Eqn, detail: str, axis: Dim, sizes: Mapping[str, int]) -> InputError:
    what = f"'{snippet(e.loc)}'" if e.loc is not None else "a subscript"
    bound = ", ".join(f"{s} = {sizes[s]}" for s in sorted(axis.symbols) if s in sizes)
    return InputError(f"{what} {detail}" + (f" ({bound})" if bound else ""), e.loc,
                      hint="give inputs whose sizes fit the subscript, or index from the other end")
