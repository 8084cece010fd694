"""Recognising the standard LSTM and GRU cells, to export them as ONNX's own ``LSTM``/``GRU`` ops.

In: a ``scan`` equation.  Out: ``None``, or a :class:`Cell`: which of the scan's consts is each
gate's weight and bias, how the weights split between the input and the state, and which
scan output is the hidden state's sequence.

The proof is structural.  Read back from the body's outputs, the cell's equations must be
exactly these trees (``+`` and ``*`` in either operand order; every leaf a const of the
scan, the sequence slice ``x[t]`` or a state at ``t-1``), with every shape and dtype as
ONNX's ops take them:

* LSTM (``specc/frontend/lib/std.nn``, ``specs/lstm.nn``), ``z = concat(h[t-1], x[t])``
  (either order)::

      c[t] = sigmoid(z @ W_f + b_f) * c[t-1] + sigmoid(z @ W_i + b_i) * tanh(z @ W_c + b_c)
      h[t] = sigmoid(z @ W_o + b_o) * tanh(c[t])

  which is ONNX ``LSTM`` (no peepholes, default activations, forget bias in ``b_f``) with
  ``W = [W_i; W_o; W_f; W_c]`` (the x rows, transposed), ``R`` likewise from the h rows;
* GRU (PyTorch's convention: the reset gate multiplies ``h U_n + c_n``)::

      r = sigmoid(x[t] @ W_r + h[t-1] @ U_r + b_r)
      u = sigmoid(x[t] @ W_z + h[t-1] @ U_z + b_z)
      n = tanh(x[t] @ W_n + b_n + r * (h[t-1] @ U_n + c_n))
      h[t] = (1 - u) * n + u * h[t-1]

  which is ONNX ``GRU`` with ``linear_before_reset = 1``, gates in the order z, r, h.

Anything else (a peephole, a layer norm, another activation, a reversed scan, a per-step
output besides the states, the LSTM's cell sequence read after the loop, float64) is not
matched, and the recurrence is exported as a ``Scan`` of its own equations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.core import Eqn, Value
from ..ir.scan import unpack_scan

ONE = ("one",)  # the scalar constant 1.0 made in the body


def _gate(w: str, b: str, act: str, z: str = "z") -> tuple:
    return (act, ("add", ("matmul", z, w), b))


LSTM_C = ("add", ("mul", _gate("W_f", "b_f", "sigmoid"), "c"), ("mul", _gate("W_i", "b_i", "sigmoid"),
                                                                 _gate("W_c", "b_c", "tanh")))
LSTM_H = ("mul", _gate("W_o", "b_o", "sigmoid"), ("tanh", "c_t"))
_GRU_U = ("sigmoid", ("add", ("add", ("matmul", "x", "W_z"), ("matmul", "h", "U_z")), "b_z"))
_GRU_R = ("sigmoid", ("add", ("add", ("matmul", "x", "W_r"), ("matmul", "h", "U_r")), "b_r"))
_GRU_N = ("tanh", ("add", ("add", ("matmul", "x", "W_n"), "b_n"), ("mul", _GRU_R, ("add", ("matmul", "h", "U_n"),
                                                                                        "c_n"))))
GRU_H = ("add", ("mul", ("sub", ONE, _GRU_U), _GRU_N), ("mul", _GRU_U, "h"))
COMMUTATIVE = ("add", "mul", "concat")  # concat: its order is read back from the match


@dataclass(frozen=True)
class Cell:
    kind: str  # "LSTM" | "GRU"
    hidden: int
    consts: dict[str, int]  # weight or bias name in the patterns above -> index among the scan's consts
    h_first: bool  # LSTM: z = concat(h, x) (else concat(x, h))
    h_state: int  # index of the hidden state among the scan's states (its sequence is ONNX's Y)
    other_state: int | None  # the LSTM's cell state (its sequence must be unused)


def match_cell(eqn: Eqn) -> Cell | None:
    """The standard cell this scan computes, or None."""
    s = unpack_scan(eqn)
    if s.reverse or len(s.seqs) != 1 or any(st.lag != 1 for st in s.states):
        return None
    x = s.seqs[0][1]
    if x.type.rank != 2 or not x.shape[1].is_const or x.dtype != "f32":
        return None
    made_by = {o.uid: e for e in s.eqns for o in e.outputs}
    const_index = {inner.uid: k for k, (_outer, inner) in enumerate(s.consts)}
    if len(s.states) == 1:
        (st,) = s.states
        bind = match(GRU_H, st.out, made_by, {"x": x, "h": st.lagged[0]})
        return _checked("GRU", bind, const_index, x, st.out, True, 0, None)
    if len(s.states) != 2:
        return None
    for hi, ci in ((0, 1), (1, 0)):
        h, c = s.states[hi], s.states[ci]
        z_eqn = made_by.get(_first_matmul_lhs(c.out, made_by))
        if z_eqn is None or z_eqn.op != "concat" or len(z_eqn.inputs) != 2:
            continue
        h_first = z_eqn.inputs[0] is h.lagged[0]
        ordered = ("h", "x") if h_first else ("x", "h")
        bind = {"x": x, "h": h.lagged[0], "c": c.lagged[0], "c_t": c.out}
        bind = match(("concat", *ordered), z_eqn.outputs[0], made_by, bind)
        bind = bind and match(LSTM_C, c.out, made_by, {**bind, "z": z_eqn.outputs[0]})
        bind = bind and match(LSTM_H, h.out, made_by, bind)
        cell = _checked("LSTM", bind, const_index, x, h.out, h_first, hi, ci)
        if cell is not None:
            return cell
    return None


def match(pat: Any, v: Value, made_by: dict[int, Eqn], bind: dict[str, Value]) -> dict[str, Value] | None:
    """Bindings of the pattern's names that make ``v`` the pattern's tree, or None."""
    if isinstance(pat, str):
        if pat in bind:
            return bind if bind[pat] is v else None
        return {**bind, pat: v}
    e = made_by.get(v.uid)
    if pat == ONE:
        ok = e is not None and e.op == "full" and e.params["value"] == 1.0 and not e.params["shape"]
        return bind if ok else None
    op, *args = pat
    if e is None or e.op != op or len(e.inputs) != len(args):
        return None
    if op == "concat" and e.params["axis"] != e.outputs[0].type.rank - 1:
        return None
    orders = [e.inputs, e.inputs[::-1]] if op in COMMUTATIVE else [e.inputs]
    for ins in orders:
        b: dict[str, Value] | None = bind
        for p, arg in zip(args, ins):
            b = match(p, arg, made_by, b)
            if b is None:
                break
        if b is not None:
            return b
    return None


def _first_matmul_lhs(v: Value, made_by: dict[int, Eqn]) -> int | None:
    """The uid of the left operand of the first matmul found under ``v`` (the LSTM's z)."""
    todo, seen = [v], set()
    while todo:
        e = made_by.get(todo.pop().uid)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if e.op == "matmul":
            return e.inputs[0].uid
        todo.extend(e.inputs)
    return None


def _checked(kind: str, bind: dict[str, Value] | None, const_index: dict[int, int], x: Value, h_out: Value,
             h_first: bool, h_state: int, other: int | None) -> Cell | None:
    """The match as a Cell, if every weight and bias is a const of the shape ONNX's op takes."""
    if bind is None or h_out.type.rank != 2 or not h_out.shape[1].is_const:
        return None
    hidden, d = h_out.shape[1].value, x.shape[1].value
    consts = {}
    for name, v in bind.items():
        if name[0] not in "WUbc" or name in ("c", "c_t"):
            continue
        if v.uid not in const_index or v.dtype != "f32" or not all(dim.is_const for dim in v.shape):
            return None
        shape = tuple(dim.value for dim in v.shape)
        want = {"W": (hidden + d, hidden) if kind == "LSTM" else (d, hidden), "U": (hidden, hidden)}.get(
            name[0], (hidden,))
        if shape != want:
            return None
        consts[name] = const_index[v.uid]
    return Cell(kind, hidden, consts, h_first, h_state, other)


# ---- lowering --------------------------------------------------------------------------
LSTM_GATES = ("i", "o", "f", "c")  # ONNX's order
GRU_GATES = ("z", "r", "n")  # ONNX's z, r, h


def lower_cell(ctx: Any, eqn: Eqn, ins: list[str], cell: Cell) -> list[str]:
    """The scan as one ONNX ``LSTM``/``GRU`` node; returns a name per scan output (see :func:`match_cell`).

    ``ctx`` is the :class:`~specc.export.onnx_context.Lowering` of the enclosing graph.
    The LSTM's cell-state output is its final state ``Y_c``, not a sequence: the caller
    uses a Cell only when nothing reads that output.
    """
    s = unpack_scan(eqn)
    nc, hidden = len(s.consts), cell.hidden
    d = s.seqs[0][1].shape[1].value
    seq, inits = ins[nc], ins[nc + 1:]

    def const(name: str) -> str:
        return ins[cell.consts[name]]

    def rows(w: str, of: str) -> str:
        """[H, D] or [H, H]: the rows of a weight that multiply x (``of="x"``) or h, transposed for ONNX."""
        if cell.kind == "GRU":
            return ctx.node("Transpose", [const(w)], perm=[1, 0])
        lo = {"x": hidden if cell.h_first else 0, "h": 0 if cell.h_first else d}[of]
        n = d if of == "x" else hidden
        part = ctx.node("Slice", [const(w), ctx.int64s([lo]), ctx.int64s([lo + n]), ctx.int64s([0])])
        return ctx.node("Transpose", [part], perm=[1, 0])

    def stacked(parts: list[str]) -> str:
        return ctx.node("Unsqueeze", [ctx.node("Concat", parts, axis=0), ctx.int64s([0])])

    zeros = ctx.const(np.zeros(hidden, np.float32), np.float32, hint="zeros")
    if cell.kind == "LSTM":
        w = stacked([rows(f"W_{g}", "x") for g in LSTM_GATES])
        r = stacked([rows(f"W_{g}", "h") for g in LSTM_GATES])
        b = stacked([const(f"b_{g}") for g in LSTM_GATES] + [zeros] * 4)
        h0 = ctx.node("Unsqueeze", [inits[cell.h_state], ctx.int64s([0])])
        c0 = ctx.node("Unsqueeze", [inits[cell.other_state], ctx.int64s([0])])
        y, _yh, yc = ctx.node("LSTM", [seq, w, r, b, "", h0, c0], n_out=3, hidden_size=hidden,
                              hint=["Y", "Y_h", "Y_c"])
        others = {cell.other_state: yc}
    else:
        w = stacked([rows(f"W_{g}", "x") for g in GRU_GATES])
        r = stacked([ctx.node("Transpose", [const(f"U_{g}")], perm=[1, 0]) for g in GRU_GATES])
        b = stacked([const("b_z"), const("b_r"), const("b_n"), zeros, zeros, const("c_n")])
        h0 = ctx.node("Unsqueeze", [inits[cell.h_state], ctx.int64s([0])])
        y = ctx.node("GRU", [seq, w, r, b, "", h0], hidden_size=hidden, linear_before_reset=1, hint="Y")
        others = {}
    h_seq = ctx.node("Squeeze", [y, ctx.int64s([1])])  # [T, 1, B, H] -> [T, B, H]
    return [h_seq if k == cell.h_state else others[k] for k in range(len(s.states))]
