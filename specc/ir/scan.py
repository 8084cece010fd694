"""A ``scan`` equation taken apart, and its operand layout in one place.

In: a ``scan`` :class:`~specc.ir.core.Eqn`.  Out: a :class:`Scan` with (outer, inner)
pairs for its consts and sequences and one :class:`State` per state, which a
pass can change and :meth:`Scan.pack` back into one equation (whose outputs
keep their identity).

The layout of a scan's operands: ``inputs = consts + seqs + inits`` (one
init per state with a lag), ``body.inputs = consts + seq slices + lagged
states`` (``lag`` values per state, t-1 first), ``body.outputs`` one per state,
``outputs`` one ``[T, ...]`` sequence per state.  :func:`split_inputs` and
:func:`unpack_scan` are the only places that decode it; :func:`scan_params`
(and :meth:`Scan.pack`, which uses it) writes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import Span
from .core import Eqn, Graph, TensorType, Value, freeze
from .dims import Dim


def scan_params(body: Graph, n_consts: int, n_seqs: int, states: Sequence[tuple[str, int]],
                **rest: Any) -> dict[str, Any]:
    """A scan equation's params: its body, how its inputs split, its states ((name, lag) each), the rest."""
    return {"body": body, "n_consts": n_consts, "n_seqs": n_seqs, "states": tuple(states), **rest}


def split_inputs(eqn_inputs: Sequence[Value], params: Mapping[str, Any]):
    """(consts, seqs, inits): a scan equation's inputs by role."""
    nc, ns = params["n_consts"], params["n_seqs"]
    return eqn_inputs[:nc], eqn_inputs[nc:nc + ns], eqn_inputs[nc + ns:]


def _copy(v: Value, loc: Span | None, out: list[Eqn]) -> Value:
    """``v + 0`` as a new value (the elaborator's copy of a float), its equations appended to ``out``."""
    zero = Value(TensorType(v.dtype, ()))
    copy = Value(v.type, v.name)
    out.append(Eqn("full", (), (zero,), freeze({"dtype": v.dtype, "shape": (), "value": 0.0}), loc))
    out.append(Eqn("add", (v, zero), (copy,), freeze({}), loc))
    return copy


@dataclass
class State:
    name: str
    lag: int
    init: Value | None  # the outer initial value (lag >= 1)
    lagged: list[Value]  # body inputs: the state at t-1, ..., t-lag
    out: Value  # body output: the state at t
    result: Value  # the scan's output: the whole sequence [T, ...]


@dataclass
class Scan:
    """A scan equation taken apart; :meth:`pack` builds the equation back."""

    consts: list[tuple[Value, Value]]  # (outer value, body input)
    seqs: list[tuple[Value, Value]]  # (outer [T, ...], body input: the slice at t)
    states: list[State]
    eqns: list[Eqn]  # the body's equations
    params: dict[str, Any]  # reverse, length and anything else, without body/n_consts/n_seqs/states
    loc: Span | None = None

    @property
    def length(self) -> Dim:
        return self.params["length"]

    @property
    def reverse(self) -> bool:
        return bool(self.params["reverse"])

    def body_inputs(self) -> list[Value]:
        return [i for _o, i in self.consts] + [i for _o, i in self.seqs] + [v for s in self.states for v in s.lagged]

    def pack(self) -> Eqn:
        """The scan equation; its outputs are the states' ``result`` values (their identity kept).

        Keeps the elaborator's convention that every body output is a distinct value
        computed in the body: an output that is a body input or repeats an earlier output
        gets a copy.
        """
        ins = self.body_inputs()
        input_uids = {v.uid for v in ins}
        copies: list[Eqn] = []
        outs, taken = [], set()
        for s in self.states:
            v = s.out
            if (v.uid in input_uids or v.uid in taken) and v.type.is_float:
                v = _copy(v, self.loc, copies)
            taken.add(v.uid)
            outs.append(v)
        body = Graph(tuple(ins), tuple(self.eqns) + tuple(copies), tuple(outs))
        params = {**self.params, **scan_params(body, len(self.consts), len(self.seqs),
                                                  [(s.name, s.lag) for s in self.states])}
        inputs = [o for o, _i in self.consts] + [o for o, _i in self.seqs] + [s.init for s in self.states if s.lag]
        return Eqn("scan", tuple(inputs), tuple(s.result for s in self.states), freeze(params), self.loc)


def unpack_scan(eqn: Eqn) -> Scan:
    p = eqn.params
    body: Graph = p["body"]
    nc, ns = p["n_consts"], p["n_seqs"]
    consts = list(zip(eqn.inputs[:nc], body.inputs[:nc]))
    seqs = list(zip(eqn.inputs[nc:nc + ns], body.inputs[nc:nc + ns]))
    inits = iter(eqn.inputs[nc + ns:])
    lagged = iter(body.inputs[nc + ns:])
    states = []
    for (name, lag), out, result in zip(p["states"], body.outputs, eqn.outputs):
        init = next(inits) if lag else None
        states.append(State(name, lag, init, [next(lagged) for _ in range(lag)], out, result))
    rest = {k: v for k, v in p.items() if k not in ("body", "n_consts", "n_seqs", "states")}
    return Scan(consts, seqs, states, list(body.eqns), rest, eqn.loc)


def final_index(scan_params: Mapping[str, Any]) -> set[Dim]:
    """The getitem indices that pick a scan output's last computed step."""
    length = scan_params["length"]
    if scan_params["reverse"]:
        return {Dim.const(0), -length}
    return {Dim.const(-1), length - 1}
