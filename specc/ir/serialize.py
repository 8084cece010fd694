"""JSON export of the IR, for tools outside the compiler (viewers, diffing, other runtimes).

In: a :class:`~specc.ir.core.Program`.
Out: JSON text (:func:`program_to_json`) or the pydantic models that describe
it (:func:`program_to_model`): a :class:`ProgramJson` holding a
:class:`GraphJson` of :class:`EqnJson`; a scan equation nests its body as a
GraphJson.

Values are referred to by the names the printer uses (:mod:`specc.ir.printer`),
so the JSON and ``format_program`` agree; dims are strings (``"T + 1"``),
source locations ``"file:line:col"``.  Static params become JSON values:
dims as strings, tuples as lists, anything else as its ``str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from .dims import Dim
from ..errors import Span
from .core import Eqn, Graph, Program, Value
from .printer import Namer, program_names, scan_body


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueJson(_Model):
    name: str
    dtype: str
    shape: list[str]


class InputJson(ValueJson):
    loc: str | None = None


class ParamJson(ValueJson):
    init: str
    loc: str | None = None


class OutputJson(_Model):
    name: str  # the model's output name: loss, probs, ...
    value: str  # the graph value it is


class EqnJson(_Model):
    op: str
    inputs: list[str]
    outputs: list[ValueJson]
    params: dict[str, Any]
    loc: str | None = None
    body: GraphJson | None = None  # scan only; params n_consts, n_seqs, states say how inputs split


class GraphJson(_Model):
    inputs: list[ValueJson]
    eqns: list[EqnJson]
    outputs: list[str]


class ProgramJson(_Model):
    name: str
    inputs: list[InputJson]
    params: list[ParamJson]
    outputs: list[OutputJson]
    dims: dict[str, int]
    train: dict[str, Any]
    graph: GraphJson
    loc: str | None = None


EqnJson.model_rebuild()  # resolve the forward reference to GraphJson


# ---- conversion ------------------------------------------------------------------------
def jsonable(x: Any) -> Any:
    """A param or training setting as plain JSON data."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, Dim):
        return str(x)
    if isinstance(x, (tuple, list)):
        return [jsonable(e) for e in x]
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    return str(x)


def loc_str(span: Span | None) -> str | None:
    return None if span is None or span.source is None else str(span)


def value_json(v: Value, names: Namer) -> ValueJson:
    return ValueJson(name=names[v], dtype=v.dtype, shape=[str(d) for d in v.shape])


def eqn_json(eqn: Eqn, names: Namer) -> EqnJson:
    body = scan_body(eqn)
    params = {k: jsonable(eqn.params[k]) for k in sorted(eqn.params) if not (k == "body" and body)}
    return EqnJson(
        op=eqn.op,
        inputs=[names[v] for v in eqn.inputs],
        outputs=[value_json(v, names) for v in eqn.outputs],
        params=params,
        loc=loc_str(eqn.loc),
        body=graph_json(body, names) if body is not None else None,
    )


def graph_json(graph: Graph, names: Namer) -> GraphJson:
    """``names`` must already name the graph (see :func:`specc.ir.printer.graph_names`)."""
    return GraphJson(
        inputs=[value_json(v, names) for v in graph.inputs],
        eqns=[eqn_json(e, names) for e in graph.eqns],
        outputs=[names[v] for v in graph.outputs],
    )


def program_to_model(prog: Program) -> ProgramJson:
    names = program_names(prog)
    return ProgramJson(
        name=prog.name,
        inputs=[InputJson(**value_json(i.value, names).model_dump(), loc=loc_str(i.loc)) for i in prog.inputs],
        params=[
            ParamJson(**value_json(p.value, names).model_dump(), init=str(p.init), loc=loc_str(p.loc))
            for p in prog.params
        ],
        outputs=[OutputJson(name=n, value=names[v]) for n, v in zip(prog.output_names, prog.graph.outputs)],
        dims={k: int(v) for k, v in prog.dims.items()},
        train=jsonable(dict(prog.train)),
        graph=graph_json(prog.graph, names),
        loc=loc_str(prog.loc),
    )


def program_to_json(prog: Program) -> str:
    return program_to_model(prog).model_dump_json(indent=2)


__all__ = [
    "EqnJson",
    "GraphJson",
    "InputJson",
    "OutputJson",
    "ParamJson",
    "ProgramJson",
    "ValueJson",
    "eqn_json",
    "graph_json",
    "program_to_json",
    "program_to_model",
]
