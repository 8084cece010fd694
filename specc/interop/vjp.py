"""Vector-Jacobian products of a model's outputs: the backward graph for any output cotangents.

In: a checked :class:`~specc.ir.core.Program` and the names of the outputs to differentiate.
Out: a :class:`VJPProgram` whose graph takes the forward graph's inputs (the model's inputs,
then its parameters) followed by one cotangent per chosen output (the output's type), and
returns the cotangent of every parameter and every float input: ``sum_k <ct_k, d out_k / d w>``.

``value_and_grad`` (:mod:`specc.transforms.autodiff`) is the special case of the loss with
cotangent 1; this is what a host framework's backward pass needs (:mod:`specc.torch`), where the
model is a layer in the middle of a larger network.  The same VJP rules, the same scan merging.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..ir.builder import GraphBuilder
from ..ir.core import Graph, Program, Value, prune
from ..transforms.autodiff import GradCtx, backprop
from ..transforms.bptt import merge_scans


@dataclass(frozen=True)
class VJPProgram:
    graph: Graph  # inputs: the forward inputs, then one cotangent per output; outputs: one gradient per wrt
    outputs: tuple[str, ...]  # the outputs whose cotangents the graph takes, in order
    wrt: tuple[str, ...]  # parameter names, then float input names


def vjp_program(prog: Program, outputs: Sequence[str]) -> VJPProgram:
    fwd = prog.graph
    unknown = [n for n in outputs if n not in prog.output_names]
    if unknown:
        raise InputError(f"model '{prog.name}' has no output '{unknown[0]}'",
                         hint=f"its outputs are {', '.join(prog.output_names)}")
    b = GraphBuilder()
    for v in fwd.inputs:
        b.add_input(v)
    b.extend(fwd.eqns)
    seeds: dict[int, Value] = {}
    for name in outputs:
        out = prog.output(name)
        if not out.type.is_float:
            raise InputError(f"output '{name}' is {out.type}: only float outputs have gradients")
        ct = b.add_input(Value(out.type, f"ct_{name}"))
        seeds[out.uid] = ct if out.uid not in seeds else GradCtx(b, prog.loc).add(seeds[out.uid], ct)
    targets = [(p.name, p.value) for p in prog.params] + [(i.name, i.value) for i in prog.inputs
                                                           if i.value.type.is_float]
    cts = backprop(b, fwd.eqns, seeds, {v.uid for _, v in targets})
    grads = [cts.get(v.uid) or GradCtx(b, prog.loc).zeros(v.type) for _, v in targets]
    graph = prune(merge_scans(b.build(grads)))
    return VJPProgram(graph, tuple(outputs), tuple(n for n, _ in targets))
