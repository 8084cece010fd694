"""Gradient flow through recurrences: ||dL/dS_t|| for each state S and step t.

In: a model, its parameters and one batch of inputs.
Out: for every state of every top-level recurrence (``h`` and ``c`` of an
LSTM), the norm over the batch and units of the gradient of the loss with
respect to that state at each time step: what the textbook plots to show
gradients vanishing or exploding over time.

The gradient wanted is the *total* derivative dL/dS_t: what reaches S_t
directly (``h[-1]`` feeding the classifier) plus what flows back to it
through every later step.  The cotangent of the scan's output sequence holds
only the direct part, so the recurrence is rewritten instead: each state
gets a zero perturbation, ``S_t = body(...) + eps_t``, read by the rest of
the step and by later steps like the state itself; the values do not change
and dL/d eps_t is exactly dL/dS_t.  The gradient comes from the ordinary
reverse-mode rules (:func:`specc.transforms.autodiff.backprop`) on that graph and is run
by the reference interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..transforms.autodiff import GradCtx, backprop
from ..ir.builder import GraphBuilder
from ..errors import Span
from ..backends.interp import interpret
from ..ir.core import NUMPY_DTYPES, Eqn, TensorType, Value, prune
from ..ir.scan import unpack_scan

if TYPE_CHECKING:
    from ..api import Model


@dataclass(frozen=True)
class StateFlow:
    state: str  # the state's name in the spec (h, c, ...)
    loc: Span | None  # the recurrence
    norms: np.ndarray  # [T]: ||dL/dS_t|| over batch and units

    @property
    def label(self) -> str:
        return f"{self.state} (line {self.loc.line})" if self.loc else self.state

    def ratio(self) -> float:
        """||dL/dS_0|| / ||dL/dS_{T-1}||: below 1 the gradient shrinks going back in time."""
        return float(self.norms[0] / self.norms[-1]) if self.norms[-1] else float("inf")


def _perturbed_scan(e: Eqn) -> tuple[Eqn, list[tuple[str, Value]]]:
    """The scan with a zero sequence added to each state read back at a lag; and those sequences.

    The sum replaces the state's value everywhere after its definition: in the
    equations of the same step that read ``c[t]`` and in the step's output.
    """
    sc = unpack_scan(e)
    lagged = [s for s in sc.states if s.lag > 0]
    outer = [Value(s.result.type, f"eps_{s.name}") for s in lagged]
    inner = [Value(TensorType(v.dtype, v.shape[1:]), f"eps_{s.name}[t]") for v, s in zip(outer, lagged)]
    perturb = {s.out.uid: (eps, s.name) for s, eps in zip(lagged, inner)}
    bb = GraphBuilder()
    env: dict[int, Value] = {}

    def define(v: Value, loc: Span | None) -> None:
        if v.uid in perturb and v.uid not in env:
            eps, name = perturb[v.uid]
            env[v.uid] = bb.emit1("add", [v, eps], loc=loc, name=name)

    for v in sc.body_inputs():
        bb.add_input(v)
    for v in inner:
        bb.add_input(v)
    for v in sc.body_inputs():
        define(v, e.loc)
    for eq in sc.eqns:
        bb.append(Eqn(eq.op, tuple(env.get(v.uid, v) for v in eq.inputs), eq.outputs, eq.params, eq.loc))
        for v in eq.outputs:
            define(v, eq.loc)
    sc.seqs += [(o, i) for o, i in zip(outer, inner)]
    sc.eqns = list(bb.eqns)
    for s in sc.states:
        s.out = env.get(s.out.uid, s.out)
    return sc.pack(), [(s.name, v) for s, v in zip(lagged, outer)]


def grad_flow(model: Model, params: Mapping[str, np.ndarray], batch: Mapping[str, Any], *,
              seed: int = 0) -> list[StateFlow]:
    """||dL/dS_t|| per step for every state of every top-level recurrence (empty if there is none)."""
    flows = []
    for name, loc, ct in state_gradients(model, params, batch, seed=seed):
        ct = np.asarray(ct, dtype=np.float64)
        flows.append(StateFlow(name, loc, np.sqrt(np.sum(ct.reshape(ct.shape[0], -1) ** 2, axis=1))))
    return flows


def state_gradients(model: Model, params: Mapping[str, np.ndarray], batch: Mapping[str, Any], *,
                    seed: int = 0) -> list[tuple[str, Span | None, np.ndarray]]:
    """(state name, recurrence span, dL/dS: [T, ...]) for every state read back at a lag."""
    prog = model.program
    fwd = prog.graph
    b = GraphBuilder()
    for v in fwd.inputs:
        b.add_input(v)
    probes: list[tuple[str, Span | None, Value]] = []
    for e in fwd.eqns:
        if e.op == "scan" and any(k for _n, k in e.params["states"]):
            e, added = _perturbed_scan(e)
            for name, v in added:
                b.add_input(v)
                probes.append((name, e.loc, v))
        b.append(e)
    if not probes:
        return []
    loss = fwd.outputs[0]
    g = GradCtx(b, prog.loc)
    cts = backprop(b, b.eqns[:], {loss.uid: g.const(1.0, loss.dtype)}, {v.uid for _n, _l, v in probes})
    grads = [cts[v.uid] if v.uid in cts else g.zeros(v.type) for _n, _l, v in probes]
    graph = prune(b.build(grads))

    arrays, dims = model.bind_inputs(batch)
    args = [arrays[i.name] for i in prog.inputs] + model.check_params(params)
    for _n, _l, v in probes:
        shape = tuple(d.evaluate(dims) for d in v.shape)
        args.append(np.zeros(shape, dtype=NUMPY_DTYPES[v.dtype]))
    with np.errstate(all="ignore"):
        outs = interpret(graph, args, dims, seed=seed, training=True)
    return [(name, loc, ct) for (name, loc, _v), ct in zip(probes, outs)]


def format_flow(flows: list[StateFlow]) -> list[str]:
    """A small text table: one row per time step, one column per state."""
    if not flows:
        return ["no recurrence: no gradient flow to report"]
    head = "  t  " + "".join(f"{f.label:>22}" for f in flows)
    rows = [head]
    for t in range(len(flows[0].norms)):
        rows.append(f"{t:>3}  " + "".join(f"{f.norms[t]:>22.4e}" for f in flows))
    for f in flows:
        rows.append(f"  {f.label}: ||dL/d{f.state}_0|| / ||dL/d{f.state}_T-1|| = {f.ratio():.3g}")
    return rows
