"""The CPU code generator: an IR graph -> Python source for Numba's ``@njit``.

In: any checked Graph (random draws are lifted to inputs first, see
:mod:`specc.backends.lift`) and a module name.
Out: a :class:`~specc.backends.GeneratedModule` whose source defines one entry
``run(<inputs>, <draws>, <dims>)`` returning a tuple of outputs, plus the few
per-dtype helpers it calls (``sigmoid_f32``, ``wrap_index``, ...).

What a reader of the generated source can rely on:

* every value is a C-contiguous NumPy array (0-d for a scalar), named after
  the spec's own name (``h.W_f`` -> ``h_W_f``, ``c[t-1]`` -> ``c_t_1``) or
  ``v0``, ``v1``, ... for intermediates; scalar constants (``full``) read by
  elementwise code are inlined as typed literals (``np.float32(0.5)``);
* each symbolic dim is an int argument named as in the spec (``T``, ``B``);
  shapes are Python arithmetic on them (``(T * B, 64)``), so one compiled
  kernel serves every binding of the dims;
* each equation's code is headed by a comment with its ``.nn`` file, line and
  op, and the source line itself;
* ``matmul`` calls ``np.dot`` (BLAS) on 2-D views; every other op is explicit
  loops (one loop nest per elementwise op or ``fused`` group, with
  broadcasting done by index arithmetic); float reductions accumulate in
  float64;
* ``scan`` is a Python loop over ``t`` inside the kernel; each state's
  history is preallocated ``[T, ...]``, the body's results are written in
  place into row ``t`` when the op allows it, and a lagged read is the row
  ``t - k`` or, before the first step, the init;
* no slice assignment (``a[t] = b``) inside ``@njit`` code: Numba compiles each such site slowly
  (about 0.4 s here), so copies there are explicit loops;
* the top level is the Python entry's (the *host glue*): it allocates every top-level array
  with NumPy just before the part that writes it, makes reshapes and transposes of its own
  arrays as views, and does top-level data movement (concat, getitem and transpose copies,
  getitem_grad) as one NumPy statement each (:mod:`specc.backends.cpu.host`), so that the
  ``@njit`` parts hold only arithmetic (fused loops, reductions, losses) and recurrences:
  fewer and smaller functions for Numba to compile (a spec's cold start is almost all Numba).
  The entry's statements read like the spec: ``v60 = v59[:, 0:64].copy()``;
* each ``@njit`` function's argument types are predicted from the IR
  (``GeneratedModule.signatures``) so that the runtime compiles them all before the first call,
  on a cold cache in parallel processes (:mod:`specc.backends.cpu.precompile`).

The lowering rules, one per op, are in :mod:`specc.backends.cpu.rules`, ``conv`` and ``scan``
(their table: :mod:`specc.backends.cpu.backend`); the emitter they write with is
:mod:`specc.backends.cpu.emitter`.  This module assembles the module: helpers, row-block functions,
and the entry, cut into ``@njit`` parts where work runs on threads (each part's arguments and
results are the def/use the emitter recorded).
"""

from __future__ import annotations

import re

from typing import Mapping

from ...ir.core import Eqn, Graph
from ..base import GeneratedModule, LoweringRule
from ..emitter import Scope, graph_dims
from ..lift import lift_random
from ..lines import Lines
from ..text import code_key, escape, sanitize
from .emitter import ENTRY, TARGET, THREADS, CpuEmitter, Split
from .helpers import NJIT
from .host import HOST_RULES


def product_transposes(graph: Graph) -> set[int]:
    """2-D transposes (outside loops) read only by products outside loops, and not results: BLAS reads
    an operand transposed in place, so ``x.T`` (a view) replaces the copy."""
    readers: dict[int, list[Eqn]] = {}
    for eqn in graph.eqns:
        for v in eqn.inputs:
            readers.setdefault(v.uid, []).append(eqn)
    results = {v.uid for v in graph.outputs}
    found = set()
    for eqn in graph.eqns:
        if eqn.op == "transpose" and eqn.outputs[0].type.rank == 2 and eqn.params["perm"] == (1, 0):
            out = eqn.outputs[0]
            users = readers.get(out.uid, [])
            if users and out.uid not in results and all(u.op == "matmul" and u.inputs[0].type.rank == 2
                                                         and u.inputs[1].type.rank == 2 for u in users):
                found.add(out.uid)
    return found


class CpuGenerator:
    """Generates the Numba source for a graph (see the module docstring for its shape)."""

    target = TARGET

    def __init__(self, lowerings: Mapping[str, LoweringRule]) -> None:
        self.lowerings = lowerings

    def generate(self, graph: Graph, name: str) -> GeneratedModule:
        lifted, draws = lift_random(graph)
        e = CpuEmitter(self.lowerings, HOST_RULES)
        dims = graph_dims(lifted)
        for s in dims:
            e.dim_names[s] = e.names.fresh(s)
        e.name_values(lifted)
        e.product_transposes = product_transposes(lifted)
        with e.in_scope(Scope()):  # the entry's arguments: made by its caller, not by a part
            args = [e.define(v) for v in lifted.inputs]
        e.host_names.update(args)
        e.host_ready.update(args)
        e.emit_graph(lifted)
        results = [e.name(v) for v in lifted.outputs]
        threads = bool(e.splits)
        host_entry = bool(e.splits or e.prelude)  # a Python entry calling @njit parts
        dim_args = [e.dim_names[s] for s in dims] + ([THREADS] if threads else [])

        src = Lines()
        src(f'"""{escape(name, quoted=True)}: generated by specc for the CPU (Numba).  Regenerated from the IR; do not edit.')
        src()
        src(f"Entry: {ENTRY}({', '.join(args + dim_args)}) -> ({', '.join(results)})")
        src()
        for a, v in zip(args, lifted.inputs):
            src(f"  {a}: {v.type}")
        for s in dims:
            src(f"  {e.dim_names[s]}: the size of dim {escape(s, quoted=True)}")
        if threads:
            src(f"  {THREADS}: how many threads it may use")
        src('"""')
        src()
        src("import numpy as np")
        src("from numba import njit")
        if e.runtime_calls or e.shared:
            src()
        if e.shared:
            src(f"from specc.backends.cpu.shared import {', '.join(sorted(e.shared))}")
        if e.runtime_calls:
            src(f"from specc.backends.cpu.runtime import {', '.join(sorted(e.runtime_calls))}")
        for helper_source in (*e.helpers.values(), *e.functions.values()):
            src()
            src()
            src.extend(helper_source.rstrip("\n").splitlines())
        part_names: list[str] = []
        part_args: dict[str, tuple[list[str], int]] = {}
        for a in args + dim_args:
            e.arg_types.setdefault(a, ("int",))  # the dims (the inputs were defined as arrays)
        if host_entry:
            text = src.render() + _parts(e, args + dim_args, results, part_names, part_args)
        else:
            e.lines.blank()
            e.lines(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
            src()
            src()
            src(NJIT)
            src(f"def {ENTRY}({', '.join(args + dim_args)}):")
            text = src.render() + e.lines.render()
        n_in = len(graph.inputs)
        return GeneratedModule(
            target=TARGET,
            name=sanitize(name),
            source=text,
            entry=ENTRY,
            inputs=tuple(args[:n_in]),
            draws=tuple(draws),
            dims=tuple(dims),
            outputs=tuple(results),
            threads=threads,
            kernels=tuple(part_names) + tuple(e.functions) if host_entry else (ENTRY,),
            signatures=_signatures(e, part_names, part_args) if host_entry else (),
        )


def _parts(e: CpuEmitter, params: list[str], results: list[str], part_names: list[str],
           part_args: dict[str, tuple[list[str], int]]) -> str:
    """The entry cut at each split into ``@njit`` parts, and the Python entry calling them.

    Each part takes the variables it reads that an earlier part, the entry (an allocation, a NumPy
    copy: see :mod:`specc.backends.cpu.host`) or the entry's caller made, and returns those it makes
    that a later part or statement reads: the def/use the emitter recorded for each part
    (:class:`~specc.backends.emitter.Scope`), never the text.  Before each part's call the entry runs
    that part's prelude (allocations and views, which read only dims and the entry's variables).
    """
    codes = ["\n".join(p) + "\n" for p in e.lines.cut([s.line for s in e.splits])]
    scopes = [*e.parts, e.scope]
    preludes = [*e.preludes, e.prelude]
    counts = [0, *(s.statements for s in e.splits), e.lines.statements]
    statements: list[Split | None] = [*e.splits, None]
    rank = {n: k for k, n in enumerate(params)}  # the entry's own order first, then order of first use
    free = [sorted(scope.uses, key=lambda n: rank.get(n, len(rank))) for scope in scopes]
    reads_after: list[set[str]] = [set() for _ in codes]
    later: set[str] = set(results)
    for k in range(len(codes) - 1, -1, -1):  # part k, then statement k, then part k + 1 ...
        stmt = statements[k]
        reads_after[k] = later | (set(stmt.reads) if stmt else set())
        later = reads_after[k] | set(free[k])
    out, entry = Lines(), Lines(depth=1)
    seen: dict[tuple, str] = {}
    for k, code in enumerate(codes):
        for line in preludes[k]:
            entry(line)
        if counts[k + 1] > counts[k]:  # the part has code, not only comments
            name = f"{ENTRY}_part{k}"
            returns = [n for n in scopes[k].defs if n in reads_after[k]]
            part = Lines()
            part()
            part()
            part(NJIT)
            part(f"def {name}({', '.join(free[k])}):")
            part.extend(code.rstrip("\n").split("\n"))
            if returns:
                part(f"    return ({', '.join(returns)}{',' if len(returns) == 1 else ''})")
            # a part whose code is an earlier one's up to names (a stacked layer's) calls that one: one compile
            key = (code_key(part.render()), tuple(e.arg_types.get(a) for a in free[k]))
            name = seen.setdefault(key, name)
            if name == f"{ENTRY}_part{k}":
                part_names.append(name)
                part_args[name] = (free[k], counts[k + 1] - counts[k])
                out.extend(part.render().rstrip("\n").split("\n"))
            call = f"{name}({', '.join(free[k])})"
            if returns:
                entry(f"{', '.join(returns)}{',' if len(returns) == 1 else ''} = {call}")
            else:
                entry(call)
        stmt = statements[k]
        if stmt is not None and stmt.statement:  # (a part cut only for its size has no statement)
            entry.comment(stmt.why)
            entry(stmt.statement)
    entry(f"return ({', '.join(results)}{',' if len(results) == 1 else ''})")
    out()
    out()
    out(f"def {ENTRY}({', '.join(params)}):")
    out('    """The kernel\'s parts in turn; between them, NumPy copies, and recurrences and large products on '
        'threads (plain Python)."""')
    return out.render() + _drop_unread(entry.render(), [ln for p in preludes for ln in p])


def _drop_unread(entry: str, prelude: list[str]) -> str:
    """The entry without prelude assignments nothing reads (a view made for a product that read its source
    instead, ``z`` for ``z.T``), so that the entry shows only what runs for a reason."""
    lines = entry.split("\n")
    for stmt in prelude:
        name = stmt.split(" = ", 1)[0]
        word = re.compile(rf"\b{re.escape(name)}\b")
        mine = [i for i, ln in enumerate(lines) if ln.strip() == stmt]
        if mine and not any(word.search(ln.split("#", 1)[0]) for i, ln in enumerate(lines) if i != mine[0]):
            del lines[mine[0]]
    return "\n".join(lines)


def _signatures(e: CpuEmitter, part_names: list[str], part_args: dict[str, tuple[list[str], int]]) -> tuple:
    """Each ``@njit`` function's argument types, where every one is known (see ``GeneratedModule.signatures``),
    with its size in statements as the estimate of its compile time."""
    found = []
    calls = [(n, *part_args[n]) for n in part_names]
    calls += [(n, e.function_args[n], source.count("\n")) for n, source in e.functions.items()]
    for name, args, size in calls:
        kinds = [e.arg_types.get(a) for a in args]
        if all(kinds):
            found.append((name, tuple(kinds), size))
    return tuple(found)


__all__ = ["CpuGenerator", "product_transposes"]
