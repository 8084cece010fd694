"""The CPU lowering of recurrences: a loop over the steps inside the kernel, or one block of rows per thread.

In: a ``scan`` equation (see :mod:`specc.ir.scan` for its operand layout) and a
:class:`~specc.backends.cpu.emitter.CpuEmitter`.
Out: the loop over the steps, each state's history preallocated ``[T, ...]`` and written in place at
row ``t``; when every step treats the batch rows independently (:mod:`specc.backends.cpu.rows`), a
``nogil`` function of a block of rows that the entry runs on threads.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ...ir.core import Eqn, Value
from ...ir.dims import Dim
from ...ir.scan import split_inputs
from ..base import RuleSet
from ..lines import Lines
from ..text import code_key, sanitize
from ..emitter import Scope
from .emitter import THREADS, CpuEmitter
from .helpers import NJIT_NOGIL
from .rows import ROW, RowPlan, row_plan
from .host import transpose_text
from .shared import nt_may_help

RULES = RuleSet()


@RULES("scan")
def scan(e: CpuEmitter, eqn: Eqn) -> None:
    """A loop over the steps; the body's code runs once per step (see specc.ops.scan for the layout).

    When every step treats the batch rows independently (:func:`specc.backends.cpu.rows.row_plan`),
    the loop becomes a function of a block of rows (``nogil``), and
    :func:`specc.runtime.run_row_blocks` runs one block per thread: the whole recurrence,
    all steps, with no synchronisation between steps.  The entry then becomes Python code
    calling the kernel's parts in turn (see :meth:`Emitter.split`).  (Two alternatives were
    measured and dropped: a ``prange`` over the blocks made Numba compile the recurrence
    twice and build a parallel wrapper, 4-6 s more for the LSTM's gradient kernel; an
    ``objmode`` call from the kernel costs 0.3 s of compilation in every process.)
    """
    history = [e.alloc(v) for v in eqn.outputs]  # [T, ...] per state, in time order
    plan = row_plan(eqn) if e.lines.depth == 1 and not e.in_rows else None  # only a top-level loop splits
    if plan is None:
        _scan_loop(e, eqn, history, None)
    else:
        _scan_by_rows(e, eqn, history, plan)


def _scan_by_rows(e: CpuEmitter, eqn: Eqn, history: list[str], plan: RowPlan) -> None:
    name = e.temp(f"scan_{sanitize(eqn.params['states'][0][0])}")
    lo, hi, nb = e.temp("lo"), e.temp("hi"), e.temp("nb")
    with e.in_scope(Scope()) as statement:  # what the entry's call reads
        rows = e.dim(Dim.sym(plan.batch))
    made = _transpose_constants(e, eqn, plan.inputs)  # in the part before: one copy for every block
    outer, e.lines = e.lines, Lines(depth=1)
    e.dim_names[plan.batch], e.in_rows = nb, True
    try:
        with e.in_scope(Scope((lo, hi))) as function:
            e.lines(f"{e.bind(nb)} = {hi} - {lo}")
            _scan_loop(e, eqn, history, (plan, lo, hi))
        code = e.lines.render()
    finally:
        e.lines, e.dim_names[plan.batch], e.in_rows = outer, rows, False
        for uid in made:
            del e.transposed[uid]
    free = list(function.uses)  # the function's arguments: what it reads and the entry made
    e.function_args[name] = [*free, lo, hi]
    e.typed(lo, ("int",))
    e.typed(hi, ("int",))
    args = ", ".join(free)
    source = (f"{NJIT_NOGIL}\ndef {name}({args}, {lo}, {hi}):\n"
              f'    """The recurrence of lines {_lines_of(eqn)} on rows {lo}:{hi} of the batch."""\n'
              f"{code}")
    # a recurrence whose code is another's up to names (a stacked layer) calls that one: one compile
    key = (code_key(source), tuple(e.arg_types.get(a) for a in e.function_args[name]))
    same = e.function_keys.setdefault(key, name)
    if same != name:
        name = same
    else:
        e.functions[name] = source
    e.runtime_calls.add("run_row_blocks")
    e.split(f"run_row_blocks({name}, ({args},), {rows}, {THREADS})",
            f"rows are independent: {name} runs on one block of rows per thread", [*free, *statement.uses])


def _lines_of(eqn: Eqn) -> str:
    lines = sorted({q.loc.line for q in eqn.params["body"].walk() if q.loc is not None})
    return f"{lines[0]}-{lines[-1]}" if lines else "?"


def _scan_loop(e: CpuEmitter, eqn: Eqn, history: list[str], rows: tuple[RowPlan, str, str] | None) -> None:
    """The loop over steps; with ``rows`` = (plan, lo, hi), on rows lo:hi of every row-wise array."""
    p = eqn.params
    body = p["body"]
    consts, seqs, inits = split_inputs(eqn.inputs, p)
    nc, ns = p["n_consts"], p["n_seqs"]
    length = e.dim(p["length"])
    n, t = e.temp("n"), e.temp("t")
    outputs = Counter(v.uid for v in body.outputs)
    body_inputs = {v.uid for v in body.inputs}
    kinds = rows[0].inputs if rows else ("shared",) * len(body.inputs)
    block = f", {rows[1]}:{rows[2]}" if rows else ""
    lo = rows[1] if rows else ""

    def shifted(idx: Sequence[str]) -> list[str]:  # a block's row i0 is the batch's row lo + i0
        return [f"{lo} + {idx[0]}", *idx[1:]]

    for bv, v, kind in zip(body.inputs[:nc], consts, kinds):
        if kind != ROW or v.uid in e.consts:
            e.alias(bv, v)
        elif v.uid in e.views:
            e.views[bv.uid] = (v, shifted)
        else:
            e.lines(f"{e.define(bv)} = {e.name(v)}[{lo}:{rows[2]}]")
    made = _transpose_constants(e, eqn, kinds)  # none left if the row blocks' caller made them
    with e.lines.block(f"for {n} in range({length}):"):
        e.lines(f"{t} = {length} - 1 - {n}" if p["reverse"] else f"{t} = {n}")
        for bv, v, kind in zip(body.inputs[nc:nc + ns], seqs, kinds[nc:nc + ns]):
            mine = block if kind == ROW else ""
            if v.uid in e.arrays:
                e.lines(f"{e.define(bv)} = {_row(e.name(v), t, mine, bv)}")
            elif v.uid in e.views:  # read in place through the view: row t of it
                if mine:
                    e.views[bv.uid] = (v, lambda idx, t=t: [t, *shifted(idx)])
                else:
                    e.views[bv.uid] = (v, lambda idx, t=t: [t, *idx])
                e.lines.comment(f"{e.define_view(bv)} = row {t} of {e.define_view(v)}, read in place")
            else:  # a literal
                e.alias(bv, v)
        lagged = iter(body.inputs[nc + ns:])
        init = iter(inits)
        for hist, (_name, lag) in zip(history, p["states"]):
            if lag == 0:
                continue
            e.use(hist)
            start = e.name(next(init)) + (f"[{lo}:{rows[2]}]" if rows else "")
            for k in range(1, lag + 1):
                row = f"{t} + {k}" if p["reverse"] else f"{t} - {k}"
                bv = next(lagged)
                e.lines(f"{e.define(bv)} = {_row(hist, row, block, bv)} if {n} >= {k} else {start}")
        for hist, v in zip(history, body.outputs):  # computed straight into row t where possible
            if outputs[v.uid] == 1 and v.uid not in body_inputs:
                e.dest[v.uid], e.dest_arrays[v.uid] = _row(hist, t, block, v), hist
        e.emit_graph(body)
        for hist, v in zip(history, body.outputs):
            unplaced = e.dest.pop(v.uid, None) is not None  # its rule made no new array (a view)
            e.dest_arrays.pop(v.uid, None)
            if unplaced or outputs[v.uid] > 1 or v.uid in body_inputs:
                e.lines.comment(f"{hist}[{t}] = {e.peek(v)}")
                e.use(hist)
                if rows:
                    dst = e.temp(f"{hist}_t")
                    e.lines(f"{dst} = {hist}[{t}{block}]")
                    e.copy(dst, [], v)
                else:
                    e.copy(hist, [t], v)
    for uid in made:
        del e.transposed[uid]


def _row(hist: str, t: str, block: str, v: Value) -> str:
    """Row ``t`` of a history as an array view.  A per-step scalar's row is a 0-d view
    (``h[t:t + 1].reshape(())``): ``h[t]`` would be a number, which can be neither written in
    place nor unified with the 0-d initial value."""
    if v.type.rank == 0 and not block:
        return f"{hist}[{t}:{t} + 1].reshape(())"
    return f"{hist}[{t}{block}]"


def _transpose_constants(e: CpuEmitter, eqn: Eqn, kinds: Sequence[str]) -> list[int]:
    """Before a recurrence's loop (before its row blocks: once, not per thread): ``W.T`` as a C array
    for each constant matrix ``W`` that a step multiplies by (``h[t-1] @ W``), for ``matmul_nt``.
    Returns the uids of the body inputs it bound."""
    body = eqn.params["body"]
    nc = eqn.params["n_consts"]
    consts = {bv.uid: (v, kind) for bv, v, kind in zip(body.inputs[:nc], eqn.inputs[:nc], kinds)}
    made = []
    for be in body.eqns:
        if be.op != "matmul" or len(be.inputs) != 2:
            continue
        a, b = be.inputs
        v, kind = consts.get(b.uid, (None, ROW))
        if (v is not None and kind != ROW and v.uid in e.arrays and b.uid not in e.transposed
                and b.type.rank == 2 and a.type.rank >= 2 and b.type.is_float
                and nt_may_help(*(d.value if d.is_const else None for d in b.shape))):
            src = e.peek(v)
            if e.at_top() and src in e.host_ready:  # made before this part: the entry transposes it
                direct = transpose_text(e, v)  # from what it was made of, when known
                if direct is not None:
                    expr = f"np.ascontiguousarray({direct})  # {src}.T for matmul_nt, from what {src} was made of"
                else:
                    expr = f"transposed({src})  # for matmul_nt: rows of {src}.T"
                    e.runtime_calls.add("transposed")
                name = e.before_part(e.temp(f"{src}_t"), expr)
            else:
                name = e.bind(e.temp(f"{e.name(v)}_t"))
            e.typed(name, (v.dtype, 2, "C"))
            if name not in e.host_names:
                e.lines(f"{name} = np.ascontiguousarray({e.name(v)}.T)  # for matmul_nt: rows of {e.name(v)}.T")
            e.transposed[b.uid] = name
            made.append(b.uid)
    return made
