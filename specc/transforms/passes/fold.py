"""Constant folding and safe algebraic identities.

In: a Graph.  Out: the Graph where
* an elementwise op whose inputs are all ``full`` becomes one ``full`` (a
  uniform tensor stays uniform), its value computed by the op's reference;
* any other op whose inputs are all scalar ``full`` and whose result has one
  element becomes a ``full`` the same way;
* ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x``, ``x / 1`` and
  ``x ** 1`` become ``x`` when the constant does not widen ``x``'s shape;
* a recurrence's const or sequence that is a ``full`` becomes a ``full``
  inside its body (so that ``d_c[t] + carry`` with ``d_c`` all zeros folds).

The folded equation keeps its output value (and so its name) and its span.
A graph output is never replaced by an identity: a scan body's outputs stay
values computed in the body (the elaborator's ``h + 0`` copies).  Random
draws are never folded.  Scan bodies are folded too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...ir.core import NUMPY_DTYPES, Eqn, Graph, Value, freeze
from ...ops import REGISTRY, RefContext
from .rewrite import has_body, new_graph, resolve, with_inputs, with_params
from ...ir.scan import unpack_scan

# op -> (which operand may be the constant, its value)
IDENTITIES: dict[str, tuple[tuple[int, float], ...]] = {
    "add": ((0, 0.0), (1, 0.0)),
    "sub": ((1, 0.0),),
    "mul": ((0, 1.0), (1, 1.0)),
    "div": ((1, 1.0),),
    "pow": ((1, 1.0),),
}


def fold_constants(graph: Graph) -> Graph:
    consts: dict[int, Eqn] = {}  # uid -> the full equation defining it
    subst: dict[int, Value] = {}
    outputs = {v.uid for v in graph.outputs}
    eqns = []
    for e in graph.eqns:
        e = with_inputs(e, [resolve(v, subst) for v in e.inputs])
        if e.op == "scan":
            e = _into_scan(e, consts)
            body = fold_constants(e.params["body"])
            e = e if body is e.params["body"] else with_params(e, body=body)
        folded = _fold(e, consts)
        if folded is not None:
            e = folded
        elif not outputs & {v.uid for v in e.outputs}:
            same = _identity(e, consts)
            if same is not None:
                subst[e.outputs[0].uid] = same
                continue
        if e.op == "full":
            consts[e.outputs[0].uid] = e
        eqns.append(e)
    return new_graph(graph, graph.inputs, eqns, [resolve(v, subst) for v in graph.outputs])


def _into_scan(e: Eqn, consts: Mapping[int, Eqn]) -> Eqn:
    """A const or sequence that is a ``full`` outside becomes a ``full`` inside the body (its slice's shape)."""
    scan = unpack_scan(e)
    fills = []
    for pairs in (scan.consts, scan.seqs):
        for outer, inner in pairs:
            if outer.uid in consts:
                params = {**consts[outer.uid].params, "shape": tuple(inner.shape)}
                fills.append(Eqn("full", (), (inner,), freeze(params), consts[outer.uid].loc))
    if not fills:
        return e
    defined = {f.outputs[0].uid for f in fills}
    scan.consts = [(o, i) for o, i in scan.consts if i.uid not in defined]
    scan.seqs = [(o, i) for o, i in scan.seqs if i.uid not in defined]
    scan.eqns = fills + scan.eqns
    return scan.pack()


def _fold(e: Eqn, consts: Mapping[int, Eqn]) -> Eqn | None:
    op = REGISTRY[e.op]
    if e.op == "full" or op.random or has_body(e) or not e.inputs or len(e.outputs) != 1:
        return None
    if not all(v.uid in consts for v in e.inputs):
        return None
    out = e.outputs[0]
    one_element = all(d.is_const and d.value == 1 for d in out.shape)
    if not op.elementwise and (any(v.shape for v in e.inputs) or not one_element):
        return None
    args = [np.full((), consts[v.uid].params["value"], dtype=NUMPY_DTYPES[v.dtype]) for v in e.inputs]
    try:
        with np.errstate(all="ignore"):
            (result,) = op.ref(RefContext({}), args, dict(e.params))
    except Exception:  # noqa: BLE001  (an op that cannot run on scalars here is simply left alone)
        return None
    result = np.asarray(result)
    if result.size != 1:
        return None
    value = result.reshape(()).item()
    value = float(value) if out.type.is_float else int(value)
    params = {"dtype": out.dtype, "shape": tuple(out.shape), "value": value}
    return Eqn("full", (), e.outputs, freeze(params), e.loc)


def _identity(e: Eqn, consts: Mapping[int, Eqn]) -> Value | None:
    """The operand ``e`` merely passes through, if it is ``x + 0``, ``x * 1`` and the like."""
    for k, unit in IDENTITIES.get(e.op, ()):
        c = consts.get(e.inputs[k].uid)
        other = e.inputs[1 - k]
        if c is None or other.type != e.outputs[0].type:
            continue
        value = c.params["value"]
        if isinstance(value, (int, float)) and value == unit:
            return other
    return None
