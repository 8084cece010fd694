"""The IR printer: a readable, deterministic text form of a Graph or Program.

In: a :class:`~specc.ir.core.Graph` or :class:`~specc.ir.core.Program`.
Out: jaxpr-like text, one equation per line, for humans, ``--dump-after`` and
golden-file tests::

    model rnn(x: f32[T, B, D], y: i32[B])                       # rnn.nn:1
    params:
      W: f32[D, H] = glorot                                     # rnn.nn:3
    graph:
      %0: f32[B, H] = full[dtype=f32, shape=(B, H), value=0.0]  # rnn.nn:6
      h: f32[T, B, H] = scan[length=T, n_consts=1, n_seqs=1, reverse=False, states=((h, 1))] W x %0  # rnn.nn:6
        { lambda consts: W.1: f32[D, H]; seqs: x[t]: f32[B, D]; states: h[t-1]: f32[B, H] .
          %1: f32[B, H] = matmul x[t] W.1                       # rnn.nn:7
          %2: f32[B, H] = add %1 h[t-1]                         # rnn.nn:7
          h.1: f32[B, H] = tanh %2                              # rnn.nn:7
          h[t] = h.1
        }
      %3: f32[B, H] = getitem[index=[-T]] h                     # rnn.nn:9
      %4: f32[] = cross_entropy %3 y                            # rnn.nn:12
    outputs: loss = %4

Names come from :class:`Namer`, shared with :mod:`specc.ir.serialize`: a value's
``name`` hint (deduplicated as ``h``, ``h.1``, ``h.2``), else ``%0``, ``%1``, ...
in order of definition as printed.  Inside a scan body the sequence slices
print as ``x[t]`` and the lagged states as ``h[t-1]``, ``h[t-2]`` (``h[t+1]``
in a reversed scan).  Uids never appear, so the text is stable across runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .dims import Dim
from ..errors import Span
from .core import Eqn, Graph, Program, Value
from .scan import unpack_scan

COMMENT_COLUMN_MAX = 72  # align `# file:line` comments up to this column, then just follow the code
INDENT = "  "


# ---- naming ----------------------------------------------------------------------------
class Namer:
    """Unique, deterministic printed names for values (by identity)."""

    def __init__(self) -> None:
        self._names: dict[Value, str] = {}
        self._used: set[str] = set()
        self._suffix: dict[str, int] = {}
        self._next_tmp = 0

    def define(self, v: Value, base: str | None = None) -> str:
        """Name ``v`` after ``base`` (default: its hint); a value already named keeps its name."""
        if v in self._names:
            return self._names[v]
        base = base or v.name
        name = self._dedupe(base) if base else self._temp()
        self._names[v] = name
        self._used.add(name)
        return name

    def __getitem__(self, v: Value) -> str:
        # a value used but never defined (a broken graph) still gets a name, so it can be printed
        return self._names.get(v) or self.define(v)

    def __contains__(self, v: Value) -> bool:
        return v in self._names

    def _dedupe(self, base: str) -> str:
        if base not in self._used:
            return base
        n = self._suffix.get(base, 0) + 1
        while f"{base}.{n}" in self._used:
            n += 1
        self._suffix[base] = n
        return f"{base}.{n}"

    def _temp(self) -> str:
        while f"%{self._next_tmp}" in self._used:
            self._next_tmp += 1
        self._next_tmp += 1
        return f"%{self._next_tmp - 1}"


def graph_names(graph: Graph, namer: Namer | None = None) -> Namer:
    """Name every value of ``graph`` (scan bodies included) in printing order."""
    namer = namer or Namer()
    for v in graph.inputs:
        namer.define(v)
    _name_eqns(graph.eqns, namer)
    return namer


def program_names(prog: Program) -> Namer:
    """Like :func:`graph_names`, but inputs and parameters take their declared names."""
    namer = Namer()
    for info in (*prog.inputs, *prog.params):
        namer.define(info.value, info.name)
    return graph_names(prog.graph, namer)


def _name_eqns(eqns: Iterable[Eqn], namer: Namer) -> None:
    for eqn in eqns:
        for v in eqn.outputs:
            namer.define(v)
        body = scan_body(eqn)
        if body is not None:
            for v, (_role, base) in zip(body.inputs, body_input_roles(eqn, namer)):
                namer.define(v, base)
            _name_eqns(body.eqns, namer)


# ---- scan bodies -----------------------------------------------------------------------
def scan_body(eqn: Eqn) -> Graph | None:
    body = eqn.params.get("body")
    return body if isinstance(body, Graph) else None


def body_input_roles(eqn: Eqn, namer: Namer) -> list[tuple[str, str | None]]:
    """(role, name base) for each body input of a scan: consts, seqs (``x[t]``), states (``h[t-1]``)."""
    body = scan_body(eqn)
    assert body is not None
    if eqn.op != "scan":  # fused: body input i stands for the equation's input i
        return [("inputs", v.name) for v in body.inputs]
    sc = unpack_scan(eqn)
    roles: list[tuple[str, str | None]] = [("consts", inner.name) for _outer, inner in sc.consts]
    roles += [("seqs", f"{namer[outer]}[t]") for outer, _inner in sc.seqs]
    sign = "+" if sc.reverse else "-"
    for st in sc.states:
        roles += [("states", f"{st.name}[t{sign}{k}]") for k in range(1, st.lag + 1)]
    return roles


def state_labels(eqn: Eqn) -> list[str]:
    """What each body output of a scan is: ``h[t]`` per state."""
    return [f"{name}[t]" for name, _lag in eqn.params.get("states", ())]


# ---- params and locations --------------------------------------------------------------
def format_param(value: Any) -> str:
    """A static parameter as text: dims as ``T + 1``, tuples as ``(a, b)``, strings bare."""
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(format_param(x) for x in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Graph):
        return "<graph>"
    return str(value)  # Dim, int, bool, None, str


def _format_index(index: Sequence[tuple]) -> str:
    """getitem's index as Python subscript text: ``[0, 1:T, ::2]``."""

    def bound(d: Dim | None) -> str:
        return "" if d is None else str(d)

    parts = []
    for entry in index:
        if entry[0] == "int":
            parts.append(str(entry[1]))
        else:
            _kind, start, stop, step = entry
            parts.append(f"{bound(start)}:{bound(stop)}" + (f":{step}" if step != 1 else ""))
    return "[" + ", ".join(parts) + "]"


# (op, param) -> formatter, for params whose generic form reads badly
PARAM_FORMATTERS: dict[tuple[str, str], Callable[[Any], str]] = {
    ("getitem", "index"): _format_index,
}


def format_params(eqn: Eqn) -> str:
    items = []
    for key in sorted(eqn.params):
        if key == "body" and scan_body(eqn) is not None:
            continue  # printed as a nested block instead
        fmt = PARAM_FORMATTERS.get((eqn.op, key), format_param)
        items.append(f"{key}={fmt(eqn.params[key])}")
    return f"[{', '.join(items)}]" if items else ""


def format_loc(span: Span | None) -> str | None:
    """``file.nn:12`` (basename, so golden files do not depend on where the spec lives)."""
    if span is None or span.source is None:
        return None
    return f"{os.path.basename(span.file)}:{span.line}"


# ---- graphs ----------------------------------------------------------------------------
Line = tuple[str, str | None]  # (code, location comment)


def _typed(v: Value, names: Namer) -> str:
    return f"{names[v]}: {v.type}"


def _eqn_lines(eqn: Eqn, names: Namer, indent: str) -> list[Line]:
    outs = ", ".join(_typed(v, names) for v in eqn.outputs)
    ins = " ".join(names[v] for v in eqn.inputs)
    code = f"{indent}{outs} = {eqn.op}{format_params(eqn)}" + (f" {ins}" if ins else "")
    lines: list[Line] = [(code, format_loc(eqn.loc))]
    body = scan_body(eqn)
    if body is not None:
        lines += _body_lines(eqn, body, names, indent + INDENT)
    return lines


def _body_lines(eqn: Eqn, body: Graph, names: Namer, indent: str) -> list[Line]:
    sections: dict[str, list[str]] = {"inputs": [], "consts": [], "seqs": [], "states": []}
    for v, (role, _base) in zip(body.inputs, body_input_roles(eqn, names)):
        sections[role].append(_typed(v, names))
    header = "; ".join(f"{role}: {', '.join(vs)}" for role, vs in sections.items() if vs)
    lines: list[Line] = [(f"{indent}{{ lambda {header} .", None)]
    lines += _graph_lines(body.eqns, names, indent + INDENT)
    if eqn.op != "scan":
        lines.append((f"{indent}{INDENT}return {', '.join(names[v] for v in body.outputs)}", None))
    for label, v in zip(state_labels(eqn), body.outputs):
        lines.append((f"{indent}{INDENT}{label} = {names[v]}", None))
    lines.append((f"{indent}}}", None))
    return lines


def _graph_lines(eqns: Iterable[Eqn], names: Namer, indent: str) -> list[Line]:
    return [line for eqn in eqns for line in _eqn_lines(eqn, names, indent)]


def _render(lines: Sequence[Line]) -> str:
    """Join lines, aligning the location comments in one column; longer lines just follow the code."""
    column = max((len(code) for code, loc in lines if loc and len(code) <= COMMENT_COLUMN_MAX), default=0)
    out = []
    for code, loc in lines:
        out.append(f"{code.ljust(column)}  # {loc}" if loc else code)
    return "\n".join(out)


def format_graph(graph: Graph, names: Namer | None = None) -> str:
    """A graph as ``{ lambda inputs . equations; return outputs }`` text."""
    names = names or graph_names(graph)
    ins = ", ".join(_typed(v, names) for v in graph.inputs)
    lines: list[Line] = [(f"{{ lambda {ins} .", None)]
    lines += _graph_lines(graph.eqns, names, INDENT)
    lines.append((f"{INDENT}return {', '.join(names[v] for v in graph.outputs)}", None))
    lines.append(("}", None))
    return _render(lines)


def format_program(prog: Program) -> str:
    """A model: header with its inputs, its dims and params, the equations, the named outputs."""
    names = program_names(prog)
    args = ", ".join(_typed(i.value, names) for i in prog.inputs)
    lines: list[Line] = [(f"model {prog.name}({args})", format_loc(prog.loc))]
    if prog.dims:
        lines.append(("dims: " + ", ".join(f"{k} = {v}" for k, v in prog.dims.items()), None))
    lines.append(("params:", None))
    for p in prog.params:
        lines.append((f"{INDENT}{_typed(p.value, names)} = {p.init}" + (" (state)" if p.state else ""),
                      format_loc(p.loc)))
    lines.append(("graph:", None))
    lines += _graph_lines(prog.graph.eqns, names, INDENT)
    outs = ", ".join(f"{n} = {names[v]}" for n, v in zip(prog.output_names, prog.graph.outputs))
    lines.append((f"outputs: {outs}", None))
    if prog.state_updates:  # `update m = ...`: what each state becomes after a training step
        ups = ", ".join(f"{n} <- {names[prog.graph.outputs[i]]}" for n, i in prog.state_updates)
        lines.append((f"state updates: {ups}", None))
    return _render(lines)


__all__ = [
    "Namer",
    "body_input_roles",
    "format_graph",
    "format_param",
    "format_program",
    "graph_names",
    "program_names",
    "scan_body",
    "state_labels",
]
