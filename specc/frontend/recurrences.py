"""Recurrences: ``recur t over x { init h = ...; h[t] = f(h[t-1], x[t]) }``.

In: a :class:`~specc.frontend.ast.Recur` block in a frame.
Out: one ``scan`` equation in the frame's builder whose body graph computes
one step (inputs: captured outer values, the sequences read at ``[t]``, the
states at each lag read; outputs: the states at ``t``), and the stacked states
bound in the enclosing scope. Before the body is built, the block is checked:
states defined at the current step, every lagged state given an initial
value, no state read without a step, no nested ``recur``.
"""

from __future__ import annotations

from . import ast as A
from .context import Context, Frame, RecurCtx, Scope
from .diagnostics import notes_for, rule_error
from .expressions import equation, expr, named, tensor
from .params import param_decl
from .sizes import fixed_sizes
from .syntax import (bare_state_read, dataflow_order, defined_names, lag_reads, lag_text, refs,
                     stmt_name_span)
from ..errors import RecurrenceError, ShapeError, SpecNameError, did_you_mean
from ..ir.builder import GraphBuilder
from ..ir.core import Value
from ..ops import ShapeRuleError

MAX_LAG = 1024  # each step back is one more input of the scan's body


def check_block(s: A.Recur, fixed: dict[str, int] | None = None
                ) -> tuple[dict[str, int], dict[str, A.Assign], dict[str, A.Init]]:
    """The states of a recurrence with the largest lag each is read at, their equations and initial values."""
    states: dict[str, int] = {}
    assigns: dict[str, A.Assign] = {}
    inits: dict[str, A.Init] = {}
    for b in s.body:
        if isinstance(b, A.Assign) and b.time is not None:
            if not (isinstance(b.time, A.Name) and b.time.id == s.var):
                raise RecurrenceError(f"a state is defined at the current step: write {b.name}[{s.var}] = ...",
                                      b.time.span)
            states[b.name] = 0
            assigns[b.name] = b
        elif isinstance(b, A.Init):
            if b.name in inits:
                raise RecurrenceError(f"'{b.name}' has two initial values", b.span,
                                      notes=[f"the first at {inits[b.name].span}"])
            inits[b.name] = b
        elif isinstance(b, A.Update):
            raise RecurrenceError("`update` belongs outside a `recur` block: a state changes once per training "
                                  "step, not once per time step", b.span)
        elif isinstance(b, (A.Output, A.Return, A.TrainBlock)):
            raise RecurrenceError("only equations, `init` and `param` belong inside a `recur` block", b.span)
        elif isinstance(b, A.Recur):
            raise RecurrenceError("nested `recur` blocks are not supported yet", b.span,
                                  hint="put the inner recurrence in a layer of its own")
    for name, ini in inits.items():
        if name not in states:
            raise RecurrenceError(f"'{name}' has an initial value but is never defined as {name}[{s.var}] = ...",
                                  ini.span, hint=did_you_mean(name, states))
    for b in s.body:
        if isinstance(b, A.Assign):
            bare = bare_state_read(b.value, states)
            if bare is not None:
                raise RecurrenceError(
                    f"'{bare.id}' is a state: say which step, {bare.id}[{s.var}] or "
                    f"{bare.id}[{lag_text(s.var, 1, s.reverse)}]", bare.span)
    for b in s.body:  # lags: scan every lagged read
        if isinstance(b, A.Assign):
            for name, k, span in lag_reads(b.value, states, s.var, s.reverse, fixed):
                if k > MAX_LAG:
                    raise RecurrenceError(f"'{name}' is read {k:,} steps back; a recurrence reads at most "
                                          f"{MAX_LAG} steps back", span)
                states[name] = max(states[name], k)
                if k > 0 and name not in inits:
                    raise RecurrenceError(
                        f"'{name}' is read at {lag_text(s.var, k, s.reverse)} but has no initial value", span,
                        hint=f"add `init {name} = zeros([...])` inside the recur block")
    return states, assigns, inits


def recur(cx: Context, s: A.Recur, frame: Frame) -> None:
    """Check a recurrence, build its body graph and emit its scan; bind each state to its stacked values."""
    over = tensor(cx, expr(cx, s.over, frame), s.over.span, frame)
    if over.type.rank == 0:
        raise ShapeError("`recur ... over x` needs a sequence x with a leading time axis, got a scalar",
                         s.over.span)
    length = over.shape[0]
    states, assigns, inits = check_block(s, fixed_sizes(frame.scope))
    # initial values are computed outside the loop
    init_vals: dict[str, Value] = {}
    for name, ini in inits.items():
        init_vals[name] = equation(cx, name + "0", ini.value, frame, primary=False)
    body = GraphBuilder(frame.builder)
    lag_inputs: dict[tuple[str, int], Value] = {}
    for name, k in states.items():
        for lag in range(1, k + 1):
            lag_inputs[(name, lag)] = body.add_input(
                Value(init_vals[name].type, f"{name}[{lag_text(s.var, lag, s.reverse)}]"))
    rc = RecurCtx(s.var, s.reverse, length, states, lag_inputs, {})
    scope = Scope(frame.scope)
    inner = Frame(scope, body, frame.prefix, rc, frame.layer_stack, sharing=frame.sharing)
    body_equations(cx, s, frame, inner, init_vals, inits)
    order = list(states)
    outs = []
    for name in order:
        v = rc.current[name]
        if not body.owns(v) or any(v is o for o in outs) or any(v is i for i in body.inputs):
            v = body.emit1("add", [v, body.emit1("full", [], {"shape": (), "value": 0.0, "dtype": v.dtype})]) \
                if v.type.is_float else v
        outs.append(v)
    caps = list(body.captures.values())
    seqs = list(rc.seq_inputs.values())
    graph = body.build(outs, inputs=[c.inner for c in caps] + [i for _, i in seqs] + list(lag_inputs.values()))
    eqn_inputs = [c.outer for c in caps] + [o for o, _ in seqs] + [init_vals[n] for n in order if states[n] > 0]
    params = {"body": graph, "n_consts": len(caps), "n_seqs": len(seqs),
              "states": tuple((n, states[n]) for n in order), "reverse": s.reverse, "length": length}
    try:
        results = frame.builder.emit("scan", eqn_inputs, params, s.span, [frame.prefix + n for n in order])
    except ShapeRuleError as e:
        raise rule_error(cx, e, s.span, frame, []) from None
    for name, v in zip(order, results):
        frame.scope.values[name] = (v, assigns[name].target_span)


def body_equations(cx: Context, s: A.Recur, frame: Frame, inner: Frame, init_vals: dict[str, Value],
                   inits: dict[str, A.Init]) -> None:
    """Elaborate the equations of one step in dataflow order (parameters declared in the body are hoisted)."""
    rc = inner.recur
    stmts = [b for b in s.body if not isinstance(b, A.Init)]
    defs: dict[str, A.Stmt] = {}
    for b in stmts:
        for n in defined_names(b):
            if n in defs:
                raise SpecNameError(f"'{n}' is defined twice", stmt_name_span(b),
                                    notes=[f"first defined at {stmt_name_span(defs[n])}"])
            if frame.scope.value(n) is not None and n not in rc.states:
                prev = frame.scope.value(n)
                raise SpecNameError(f"'{n}' is already defined outside this recurrence", stmt_name_span(b),
                                    notes=[f"defined at {prev[1]}"])
            defs[n] = b
    for b in stmts:
        if isinstance(b, A.ParamDecl):
            param_decl(cx, b, inner)
    deps = {id(b): (refs(b.value, lagged=set(rc.states), var=s.var) if isinstance(b, A.Assign) else set()) & set(defs)
            for b in stmts}
    for b in dataflow_order([b for b in stmts if not isinstance(b, A.ParamDecl)], deps, defs):
        assert isinstance(b, A.Assign)
        v = equation(cx, b.name, b.value, inner)
        if b.time is not None:
            if b.name in init_vals and v.type != init_vals[b.name].type:
                raise ShapeError(
                    f"'{b.name}[{s.var}]' has type {v.type} but its initial value has {init_vals[b.name].type}",
                    b.value.span, notes=notes_for(cx, inner, []) + [f"the init is at {inits[b.name].span}"])
            rc.current[b.name] = v
        else:
            inner.scope.values[b.name] = (named(v, inner, b.name), b.target_span)
