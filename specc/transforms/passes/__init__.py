"""The optimisation pipeline: checked (or backward) IR -> optimised IR.

In: a :class:`~specc.ir.core.Graph` or :class:`~specc.ir.core.Program`.
Out: the same computation, rewritten by the passes of :data:`PIPELINE` in
order.  Each pass is a plain function ``Graph -> Graph`` that builds new
immutable records (never mutating its input), returns its input itself when
it changes nothing, recurses into recurrence bodies, keeps every equation's
source span, and never touches the graph's inputs, so a Program's inputs,
parameters and outputs keep their meaning and order.

``optimize(graph, dump_after="cse")`` prints the IR after a pass (``all``
for every pass); so does the environment variable ``SPECC_DUMP_AFTER``
(names separated by commas), and ``specc ir --dump-after NAME``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import NamedTuple

from ...errors import IRError
from ...ir.core import Graph, Program
from ...ir.verify import verify
from .accumulate import batch_accumulations
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .fuse import fuse_elementwise
from .hoist import hoist_scan_invariants
from .merge import merge_matmuls
from .split import narrow_matmuls, split_concat_matmul
from .stack import stack_histories

GraphPass = Callable[[Graph], Graph]


class Pass(NamedTuple):
    name: str
    run: GraphPass
    description: str


def fixed_point(*passes: GraphPass, limit: int = 8) -> GraphPass:
    """One pass running ``passes`` in turn until a round changes nothing (at most ``limit`` rounds)."""

    def run(graph: Graph) -> Graph:
        for _ in range(limit):
            new = graph
            for p in passes:
                new = p(new)
            if new is graph:
                break
            graph = new
        return graph

    run.__name__ = "fixed_point_" + "_".join(p.__name__ for p in passes)
    return run


PIPELINE: tuple[Pass, ...] = (
    Pass("fold_constants", fold_constants, "evaluate ops on constants; drop x + 0, x * 1"),
    Pass("cse", cse, "merge equations repeating an earlier one (never random draws)"),
    Pass("dce", dce, "drop equations, scan states, consts and sequences nothing needs"),
    Pass("split_concat_matmul", split_concat_matmul,
         "in loops: concat(h, x) @ W -> h @ W[:H] + x @ W[H:] (separates state and input)"),
    Pass("batch_accumulations", batch_accumulations,
         "in loops: acc += a_t^T @ g_t -> per-step a_t, g_t and one product after the loop"),
    Pass("hoist_scan_invariants", hoist_scan_invariants,
         "compute what does not depend on the states before the loop, on whole sequences"),
    Pass("merge_matmuls", merge_matmuls,
         "a @ W1, a @ W2 -> a @ concat(W1, W2), then column slices; in loops a1 @ W1 + a2 @ W2 -> one matmul"),
    Pass("narrow_matmuls", narrow_matmuls, "(a @ W)[:, j:k] -> a @ W[:, j:k] when only that slice is read"),
    Pass("loop_invariants", fixed_point(hoist_scan_invariants, merge_matmuls, narrow_matmuls, fold_constants, cse, dce),
         "repeat hoisting, merging, narrowing, folding, cse and dce until nothing changes"),
    Pass("stack_histories", stack_histories,
         "in loops: per-step outputs concatenated per step and again after the loop -> one wide history"),
    Pass("fuse_elementwise", fuse_elementwise, "each group of connected elementwise ops -> one fused op"),
)

PASS_NAMES: tuple[str, ...] = tuple(p.name for p in PIPELINE)


def optimize(graph: Graph, *, dump_after: str | Iterable[str] | None = None, verify_each: bool = False,
             dump: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run the pipeline on ``graph``.

    ``dump_after``: pass names (or ``all``) after which ``dump(name, graph)`` is called (default: print
    the graph to stderr); ``verify_each``: verify the IR after every pass (tests do).
    """
    wanted = _dump_names(dump_after)
    dump = dump or _print_graph
    for p in PIPELINE:
        graph = p.run(graph)
        if verify_each:
            try:
                verify(graph, where=f"after {p.name}")
            except IRError as e:
                raise IRError(f"pass {p.name} broke the IR: {e.message}", e.span) from None
        if p.name in wanted or "all" in wanted:
            dump(p.name, graph)
    return graph


def optimize_program(prog: Program, *, dump_after: str | Iterable[str] | None = None, verify_each: bool = False,
                     dump: Callable[[str, Program], None] | None = None) -> Program:
    """Run the pipeline on a model's graph; its inputs, parameters and named outputs keep their meaning."""
    dump = dump or _print_program

    def dump_graph(name: str, graph: Graph) -> None:
        dump(name, replace(prog, graph=graph))

    graph = optimize(prog.graph, dump_after=dump_after, verify_each=verify_each, dump=dump_graph)
    if graph.inputs != prog.graph.inputs or len(graph.outputs) != len(prog.graph.outputs):
        raise AssertionError("a pass changed the program's inputs or outputs")
    return replace(prog, graph=graph)


def _dump_names(dump_after: str | Iterable[str] | None) -> set[str]:
    if dump_after is None:
        dump_after = os.environ.get("SPECC_DUMP_AFTER", "")
    names = {n.strip() for n in dump_after.split(",")} if isinstance(dump_after, str) else set(dump_after)
    names.discard("")
    unknown = names - set(PASS_NAMES) - {"all"}
    if unknown:
        raise ValueError(f"no pass named {', '.join(sorted(unknown))}; the passes are {', '.join(PASS_NAMES)}")
    return names


def _print_graph(name: str, graph: Graph) -> None:
    from ...ir.printer import format_graph

    print(f"# after {name}\n{format_graph(graph)}", file=sys.stderr)


def _print_program(name: str, prog: Program) -> None:
    from ...ir.printer import format_program

    print(f"# after {name}\n{format_program(prog)}", file=sys.stderr)


__all__ = [
    "PASS_NAMES",
    "PIPELINE",
    "Pass",
    "batch_accumulations",
    "cse",
    "dce",
    "fixed_point",
    "fold_constants",
    "fuse_elementwise",
    "hoist_scan_invariants",
    "merge_matmuls",
    "narrow_matmuls",
    "optimize",
    "optimize_program",
    "split_concat_matmul",
    "stack_histories",
]
