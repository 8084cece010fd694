"""Where a value first became NaN or infinite.

In: a graph (a model's forward graph, or its forward-and-backward graph),
the arguments and dims of the step that went wrong, its seed.
Out: a :class:`Finding`: the first equation whose output is not finite while
its inputs were, with its ``.nn`` span, and, when that equation is a
recurrence, the time step (and the equation of the step's body) where it
first happened; :func:`nonfinite_error` turns it into a :class:`NonFiniteError`.

It is a second interpreter of the usual shape (an environment, a loop over
equations) that checks every output, so it is run only after a step has gone
wrong, on the reference implementation of each op.  For a recurrence it
does not re-run the loop: it reads the state sequences the scan produced,
finds the first step with a non-finite state, rebuilds that step's inputs
from them and descends into the body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import Span, SpeccError
from ..backends.interp import run_graph
from ..ir.core import Eqn, Graph, Value
from ..ops import REGISTRY, RefContext
from ..ir.scan import split_inputs, unpack_scan


class NonFiniteError(SpeccError):
    """Training produced NaN or Inf."""


@dataclass(frozen=True)
class Finding:
    eqn: Eqn | None  # None: a graph input was already non-finite
    value: Value
    kind: str  # "nan" | "inf"
    steps: tuple[int, ...] = ()  # time step in each enclosing recurrence, outermost first
    input_index: int | None = None  # when eqn is None: which graph input
    scans: tuple[Eqn, ...] = ()  # the enclosing recurrences, outermost first

    @property
    def loc(self) -> Span | None:
        return self.eqn.loc if self.eqn is not None else None


def _bad(x: np.ndarray) -> str | None:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating) or np.all(np.isfinite(x)):
        return None
    return "nan" if np.any(np.isnan(x)) else "inf"


def first_nonfinite(graph: Graph, args: Sequence[np.ndarray], dims: Mapping[str, int], *, seed: int = 0,
                    training: bool = True) -> Finding | None:
    """The first non-finite value computed by ``graph`` on ``args`` (None if all are finite)."""
    for i, (v, x) in enumerate(zip(graph.inputs, args)):
        kind = _bad(x)
        if kind:
            return Finding(None, v, kind, input_index=i)
    ctx = RefContext(dict(dims), seed=seed, training=training, run_graph=run_graph)
    return _walk(graph, args, ctx, ())


def _walk(graph: Graph, args: Sequence[np.ndarray], ctx: RefContext, steps: tuple[int, ...],
          scans: tuple[Eqn, ...] = ()) -> Finding | None:
    env = {v.uid: x for v, x in zip(graph.inputs, args)}
    for eqn in graph.eqns:
        ins = [env[v.uid] for v in eqn.inputs]
        outs = REGISTRY[eqn.op].ref(ctx, ins, dict(eqn.params))
        for v, x in zip(eqn.outputs, outs):
            kind = _bad(x)
            if kind:
                if eqn.op == "scan":
                    inner = _in_scan(eqn, ins, outs, ctx, steps, scans)
                    if inner is not None:
                        return inner
                return Finding(eqn, v, kind, steps, scans=scans)
        env.update((v.uid, x) for v, x in zip(eqn.outputs, outs))
    return None


def _in_scan(eqn: Eqn, ins: list[np.ndarray], outs: list[np.ndarray], ctx: RefContext,
             steps: tuple[int, ...], scans: tuple[Eqn, ...]) -> Finding | None:
    """Descend into the first step of a recurrence whose state is not finite."""
    sc = unpack_scan(eqn)
    consts, seqs, inits = split_inputs(ins, eqn.params)
    length = outs[0].shape[0] if outs else 0
    order = list(range(length - 1, -1, -1)) if sc.reverse else list(range(length))
    init_of, it = {}, iter(inits)
    for i, st in enumerate(sc.states):
        if st.lag:
            init_of[i] = next(it)
    for n, t in enumerate(order):
        if not any(_bad(o[t]) for o in outs):
            continue
        args = list(consts) + [s[t] for s in seqs]
        for i, st in enumerate(sc.states):
            for lag in range(1, st.lag + 1):
                args.append(outs[i][order[n - lag]] if n - lag >= 0 else init_of[i])
        sub = RefContext(ctx.dims, ctx.seed, ctx.training, ctx.path + (t,), ctx.run_graph)
        found = _walk(eqn.params["body"], args, sub, steps + (t,), scans + (eqn,))
        if found is not None:
            return found
        return Finding(eqn, eqn.outputs[0], "nan", steps + (t,), scans=scans + (eqn,))
    return None


def check_params(params: Mapping[str, np.ndarray], where: str, lr: float | None = None) -> None:
    """Raise a NonFiniteError naming the first parameter that holds NaN or infinity (after an update),
    so that a run never ends, or saves a checkpoint, with non-finite parameters."""
    for name, p in params.items():
        x = np.asarray(p)
        if not np.issubdtype(x.dtype, np.floating):
            continue
        bad = ~np.isfinite(x)
        if bad.any():
            flat = int(np.argmax(bad.ravel()))
            index = [int(i) for i in np.unravel_index(flat, x.shape)]
            rate = f" (learning rate {lr:g})" if lr is not None else ""
            raise NonFiniteError(f"{where}: parameter '{name}' holds {x.ravel()[flat]} at index {index} "
                                 f"after the optimizer's update{rate}",
                                 hint="the loss and gradients were finite: the step was too large; lower the "
                                      "learning rate or clip gradients (--clip 1.0)")


def describe(f: Finding, names: Sequence[str] = ()) -> str:
    """'log' at step t = 3 of the recurrence (names: the graph inputs' names, for an input finding)."""
    if f.eqn is None:
        name = names[f.input_index] if f.input_index is not None and f.input_index < len(names) else "an input"
        return f"input '{name}' already holds {f.kind}"
    where = f"'{f.eqn.op}'"
    if f.steps:
        where += f" at time step t = {f.steps[-1]} (from 0) of the recurrence"
        if len(f.steps) > 1:
            where += " (steps " + ", ".join(map(str, f.steps)) + " from the outermost)"
    return f"first {f.kind} from {where}"


def nonfinite_error(what: str, f: Finding | None, names: Sequence[str] = (), backward_of: str | None = None
                    ) -> NonFiniteError:
    """The error to raise; ``backward_of``: the forward op when the finding is in the backward pass."""
    if f is None:
        return NonFiniteError(f"{what}, but the reference interpreter computes only finite values here",
                              hint="the compiled backend and the interpreter disagree: report this as a bug")
    detail = describe(f, names)
    hint = None
    if f.eqn is not None and backward_of is not None:
        detail += f" in the backward pass of '{backward_of}' (this equation)"
        hint = BACKWARD_HINTS.get(backward_of)
    elif f.eqn is not None:
        hint = HINTS.get(f.eqn.op)
    related = [("in this recurrence", s.loc) for s in f.scans if s.loc is not None and s.loc != f.loc]
    return NonFiniteError(f"{what}: {detail}", f.loc, related=related,
                          hint=hint or "lower the learning rate, or clip gradients (--clip 1.0)")


HINTS = {
    "log": "log of a negative number is nan and log(0) is -inf: keep its argument positive",
    "sqrt": "sqrt of a negative number is nan",
    "div": "a division by zero gives inf or nan",
    "exp": "exp overflows past about 88 in float32: lower the learning rate or clip gradients",
    "pow": "a negative base with a fractional power is nan",
}

BACKWARD_HINTS = {
    "sqrt": "the derivative of sqrt(x) is infinite at x = 0: add a small constant, sqrt(x + 1e-8)",
    "log": "the derivative of log(x) is infinite at x = 0: add a small constant, log(x + 1e-8)",
    "div": "the derivative of a / b is infinite where b = 0",
    "pow": "the derivative of x ** p with p < 1 is infinite at x = 0",
}
