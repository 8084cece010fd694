"""What the AST says before anything is evaluated.

In: typed AST nodes (:mod:`specc.frontend.ast`).
Out: the names an expression reads, the time lags at which a recurrence reads
its states, the order in which a block's equations must be elaborated (a
cycle without a lag is a :class:`~specc.errors.RecurrenceError`), and the
short texts that messages quote (``snippet``, a layer's call signature).
Nothing here looks at types, sizes or scopes.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

from . import ast as A
from ..errors import RecurrenceError, Span


def snippet(span: Span) -> str:
    """The spec text under a one-line span ('expression' if it spans lines)."""
    if span.source is None or span.line != span.end_line:
        return "expression"
    return span.source.line(span.line)[span.col - 1: span.end_col - 1].strip() or "expression"


# ---- names read by an expression --------------------------------------------------------
def children(x: Any) -> list:
    if isinstance(x, A.Index):
        return [x.base, *x.subs]
    if isinstance(x, A.Call):
        return [*x.args, *(k.value for k in x.kwargs)]
    if isinstance(x, A.BinOp):
        return [x.left, x.right]
    if isinstance(x, A.Neg):
        return [x.operand]
    if isinstance(x, (A.ListExpr, A.TupleExpr)):
        return list(x.items)
    if isinstance(x, A.Unpacked):
        return [x.value]
    if isinstance(x, A.Slice):
        return [i for i in (x.start, x.stop, x.step) if i is not None]
    return []


def refs(e: Any, lagged: set[str] = frozenset(), var: str | None = None) -> set[str]:
    """Names an expression depends on (reads of a lagged state at an earlier step excluded)."""
    out: set[str] = set()
    todo = [e]
    while todo:
        x = todo.pop()
        if isinstance(x, A.Name):
            out.add(x.id)
        elif (isinstance(x, A.Index) and var is not None and isinstance(x.base, A.Name) and x.base.id in lagged
              and x.subs and mentions(x.subs[0], var)):
            if isinstance(x.subs[0], A.Name) and x.subs[0].id == var:
                out.add(x.base.id)  # h[t]: a dependency on the current step
            todo.extend(x.subs[1:])
        else:
            todo.extend(children(x))
    return out


def mentions(e: Any, name: str) -> bool:
    return name in refs(e)


def names_in(e: Any) -> set[str]:
    return refs(e)


# ---- recurrences ------------------------------------------------------------------------
def lag_text(var: str, k: int, reverse: bool) -> str:
    return var if k == 0 else f"{var}{'+' if reverse else '-'}{k}"


def time_lag(sub: A.Expr, var: str, reverse: bool, fixed: Mapping[str, int] | None = None) -> int | None:
    """0 for ``t``; k for ``t-k`` (``t+k`` in a reversed recurrence); None otherwise.  ``k`` is a
    positive integer, or a name in ``fixed`` (a size fixed by ``dim K = 2``: ``h[t-K]``)."""
    if isinstance(sub, A.Name) and sub.id == var:
        return 0
    if isinstance(sub, A.BinOp) and isinstance(sub.left, A.Name) and sub.left.id == var:
        k = sub.right.value if isinstance(sub.right, A.Num) else \
            (fixed or {}).get(sub.right.id) if isinstance(sub.right, A.Name) else None
        if isinstance(k, int) and not isinstance(k, bool) and k > 0 and sub.op == ("+" if reverse else "-"):
            return k
    return None


def unfixed_lag(sub: A.Expr, var: str) -> str | None:
    """The text of a lag that is not a fixed integer (``t - n``: ``n``), for the message that says what is allowed."""
    if isinstance(sub, A.BinOp) and sub.op in "+-" and isinstance(sub.left, A.Name) and sub.left.id == var \
            and not isinstance(sub.right, A.Num):
        return snippet(sub.right.span)
    return None


LAG_RULE = "a lag is a positive integer (h[t-2]) or a size fixed by a declaration (`dim K = 2`, then h[t-K])"


def lag_reads(e: Any, states: dict[str, int], var: str, reverse: bool,
              fixed: Mapping[str, int] | None = None) -> list[tuple[str, int, Span]]:
    """Every read of a state at a step, ``(state, lag, span)``, in source order (``fixed``: see time_lag)."""
    out = []
    todo = [e]
    while todo:
        x = todo.pop()
        if isinstance(x, A.Index) and isinstance(x.base, A.Name) and x.base.id in states and x.subs:
            k = time_lag(x.subs[0], var, reverse, fixed)
            if k is None and mentions(x.subs[0], var):
                unfixed = unfixed_lag(x.subs[0], var)
                if unfixed is not None and time_lag(x.subs[0], var, not reverse, fixed) is None:
                    raise RecurrenceError(f"'{x.base.id}' is read at a lag '{unfixed}' that is not a fixed positive "
                                          "integer", x.subs[0].span, hint=LAG_RULE)
                wrong = time_lag(x.subs[0], var, not reverse, fixed)
                hint = None
                if wrong is not None:
                    hint = ("this recurrence runs backwards: an earlier step is "
                            f"{lag_text(var, wrong, reverse)}") if reverse else \
                        f"a forward recurrence reads earlier steps as {lag_text(var, wrong, reverse)}"
                raise RecurrenceError(f"'{x.base.id}' can only be read at {var} or an earlier step",
                                      x.subs[0].span, hint=hint)
            if k is not None:
                out.append((x.base.id, k, x.span))
        todo.extend(reversed(children(x)))
    return out


def bare_state_read(e: Any, states: dict[str, int]) -> A.Name | None:
    """The first read of a state without a step (``h`` rather than ``h[t]``), if any."""
    todo = [e]
    while todo:
        x = todo.pop()
        if isinstance(x, A.Name):
            if x.id in states:
                return x
            continue
        kids = children(x)
        if isinstance(x, A.Index) and isinstance(x.base, A.Name) and x.subs:
            kids = list(x.subs)  # h[...] says a step; what the subscript says is checked elsewhere
        todo.extend(reversed(kids))
    return None


def substitute(e: A.Expr, name: str, value: int) -> A.Expr:
    """``e`` with the size name ``name`` replaced by the integer ``value``."""
    if isinstance(e, A.Name) and e.id == name:
        return A.Num(value, e.span)
    if isinstance(e, A.BinOp):
        return A.BinOp(e.op, substitute(e.left, name, value), substitute(e.right, name, value), e.span)
    if isinstance(e, A.Neg):
        return A.Neg(substitute(e.operand, name, value), e.span)
    return e


# ---- statements and their order ---------------------------------------------------------
def defined_names(s: A.Stmt) -> list[str]:
    if isinstance(s, A.Assign):
        return [s.name]
    if isinstance(s, A.Output):
        return [s.name] if s.value is not None else []
    if isinstance(s, A.ParamDecl):
        return [s.name]
    if isinstance(s, A.Recur):
        return sorted({b.name for b in s.body if isinstance(b, A.Assign) and b.time is not None})
    return []


def stmt_refs(s: A.Stmt) -> set[str]:
    """The names a statement reads (a recurrence: what its body reads from outside, at the current step)."""
    if isinstance(s, (A.Assign, A.Return, A.Init, A.Update)):
        return refs(s.value)
    if isinstance(s, A.Output):
        return refs(s.value) if s.value is not None else {s.name}
    if isinstance(s, A.Recur):
        states = {b.name for b in s.body if isinstance(b, A.Assign) and b.time is not None}
        local = {b.name for b in s.body if isinstance(b, A.Assign) and b.time is None}
        out = refs(s.over)
        for b in s.body:
            if isinstance(b, A.Init):
                out |= refs(b.value)
            elif isinstance(b, A.Assign):
                out |= refs(b.value, lagged=states, var=s.var) - local - states - {s.var}
        return out
    return set()


def stmt_name_span(s: A.Stmt) -> Span:
    if isinstance(s, A.Assign):
        return s.target_span
    return s.span


def stmt_label(s: A.Stmt) -> str:
    if isinstance(s, A.Assign):
        return s.name if s.time is None else f"{s.name}[{snippet(s.time.span)}]"
    if isinstance(s, A.Recur):
        return "recur " + ", ".join(sorted({b.name for b in s.body if isinstance(b, A.Assign) and b.time}))
    return getattr(s, "name", type(s).__name__)


def dataflow_order(stmts: list[A.Stmt], deps: dict[int, set[str]], defs: dict[str, A.Stmt],
                   in_recur: bool = True) -> list[A.Stmt]:
    """The statements ordered so that each comes after those it reads; a cycle is an error that names it."""
    done: set[int] = set()
    visiting: list[A.Stmt] = []
    order: list[A.Stmt] = []
    by_id = {id(s): s for s in stmts}

    def cycle_error(s: A.Stmt) -> RecurrenceError:
        cyc = visiting[[id(v) for v in visiting].index(id(s)):] + [s]
        names = [stmt_label(c) for c in cyc]
        hint = "break it with a state read at an earlier step, e.g. h[t-1]" if in_recur else \
            "outside a `recur` block a value cannot depend on itself; write the loop as " \
            "`recur t over x { ... }` with a state read at an earlier step, e.g. h[t-1]"
        return RecurrenceError(
            f"cycle without a time lag: {' -> '.join(names)}", stmt_name_span(s),
            notes=[f"{stmt_label(a)} (at {stmt_name_span(a)}) uses {stmt_label(b)}"
                   for a, b in itertools.pairwise(cyc)],
            hint=hint)

    for root in stmts:  # depth first, with an explicit stack: a long chain of equations is not deep Python
        if id(root) in done:
            continue
        stack: list[tuple[A.Stmt, list[A.Stmt]]] = []

        def enter(s: A.Stmt) -> None:
            visiting.append(s)
            nexts = [defs[n] for n in sorted(deps[id(s)]) if n in defs and id(defs[n]) in by_id]
            stack.append((s, list(reversed(nexts))))

        enter(root)
        while stack:
            s, pending = stack[-1]
            if not pending:
                stack.pop()
                visiting.pop()
                done.add(id(s))
                order.append(s)
                continue
            d = pending.pop()
            if id(d) in done:
                continue
            if any(v is d for v in visiting):
                raise cycle_error(d)
            enter(d)
    return order


# ---- layers -----------------------------------------------------------------------------
def param_key(p: A.LayerParam) -> str:
    """The name a layer argument is given by at a call: ``hidden`` for ``hidden H``."""
    return p.keyword if isinstance(p, A.SizeParam) else p.name


def ann_text(t: A.TypeAnn) -> str:
    return (t.dtype or "") + "[" + ", ".join(snippet(d.span) for d in t.dims) + "]"


def layer_sig(layer: A.LayerDef) -> str:
    parts = []
    for p in layer.params:
        if isinstance(p, A.TensorParam):
            parts.append(p.name)
        elif isinstance(p, A.SizeParam):
            parts.append(f"{p.keyword}={snippet(p.default.span) if p.default else p.dim}")
        else:
            parts.append(f"{p.name}={snippet(p.default.span)}")
    return f"{layer.name}({', '.join(parts)})"


def number_literal(e: A.Expr) -> int | float | None:
    """The value of ``3``, ``0.5`` or ``-0.5``; None for anything else."""
    if isinstance(e, A.Num):
        return e.value
    if isinstance(e, A.Neg) and isinstance(e.operand, A.Num):
        return -e.operand.value
    return None
