"""Lowering a checked model to ONNX: the graph, its inputs, its dims, its random draws.

In: a :class:`specc.api.Model` (its checked forward IR, ``Model.program``), parameter
arrays, which outputs (the declared ``output`` values; the loss too with ``with_loss``)
and what a random draw becomes at inference (``random``, see :data:`RANDOM_MODES`).
Out: an ``onnx.ModelProto`` at opset :data:`OPSET`, checked by ``onnx.checker``:

* graph inputs: the data inputs the chosen outputs read (usually not the labels), with
  each symbolic dim (``T``, ``B``) as an ONNX dynamic axis of that name; dims the spec
  fixes (``dim Z = 8``) are constants;
* initializers: the parameters, named as in a checkpoint (``h.W_f``);
* nodes: each equation lowered by its rule in :mod:`specc.export.onnx_rules` (one rule per
  op); a recurrence becomes an ONNX ``Scan`` whose body is the cell's own equations;
* every node's ``doc_string`` is the ``.nn`` location it came from.

Sizes needed at run time (``zeros([B, H])``, ``x[T - 1]``) are computed from the input
shapes (:mod:`specc.export.onnx_context`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import __version__
from ..backends.lift import RandomDraw, lift_random
from ..errors import ExportError
from ..ir.core import NUMPY_DTYPES, prune
from .onnx_context import Lowering
from .onnx_rules import RULES

OPSET = 18  # ReduceMean/ReduceMax take their axes as an input from 18 on, like ReduceSum
RANDOM_MODES = ("mean", "input", "sample")
CELL_MODES = ("onnx", "scan")


# ---- the model ---------------------------------------------------------------------------
def to_onnx(model: Any, params: Mapping[str, np.ndarray], *, with_loss: bool = False, random: str = "mean",
            cells: str = "onnx") -> Any:
    """Lower ``model`` (a :class:`specc.api.Model`) with ``params`` to a checked ``onnx.ModelProto``.

    ``with_loss``: also return the loss (its label inputs become graph inputs).
    ``random``: what a ``normal``/``uniform`` draw becomes: ``"mean"`` (0 and 0.5, so a VAE
    decodes its mean code ``mu``: deterministic, the default), ``"input"`` (an extra graph
    input named after the draw, [T, ...] inside a recurrence, for the caller to fill) or
    ``"sample"`` (fresh ``RandomNormalLike``/``RandomUniformLike`` draws on every run).
    Dropout is the identity at inference in every mode.
    ``cells``: ``"onnx"`` exports a recurrence that is exactly the standard LSTM or GRU cell
    as ONNX's ``LSTM``/``GRU`` op (:mod:`specc.export.onnx_cells` says when); ``"scan"``
    exports every recurrence as a ``Scan`` of its own equations.
    """
    if random not in RANDOM_MODES:
        raise ExportError(f"unknown random mode '{random}'", hint=f"choose one of {', '.join(RANDOM_MODES)}")
    if cells not in CELL_MODES:
        raise ExportError(f"unknown cells mode '{cells}'", hint=f"choose one of {', '.join(CELL_MODES)}")
    prog = model.program
    names = [n for n in prog.output_names if with_loss or n != "loss"]
    if not names:
        raise ExportError(f"model '{prog.name}' declares no `output` value to export", prog.loc,
                          hint="declare one (`output probs = softmax(logits)`) or export the loss with --with-loss")
    graph, draws = lift_random(prune(prog.graph, tuple(prog.output(n) for n in names)))
    arrays = dict(zip((p.name for p in prog.params), model.check_params(params)))
    used = {v.uid for e in graph.eqns for v in e.inputs} | {v.uid for v in graph.outputs}
    data = [i for i in prog.inputs if i.value.uid in used]
    taken = {i.name for i in data} | {p.name for p in prog.params} | set(names)
    sizes: dict[str, tuple[str, int]] = {}
    for info in data:
        for axis, d in enumerate(info.value.shape):
            sym = d.as_symbol()
            if sym is not None and sym not in prog.dims:
                sizes.setdefault(sym, (info.name, axis))
    top = Lowering(RULES, taken, sizes, prog.dims, cells=cells == "onnx")
    env = {i.value.uid: i.name for i in data}
    inputs = [top.value_info(i.name, i.value.type) for i in data]
    inits = [numpy_helper.from_array(arrays[p.name], p.name) for p in prog.params if p.value.uid in used]
    env.update({p.value.uid: p.name for p in prog.params if p.value.uid in used})
    for draw in draws:
        env[draw.value.uid] = _bind_draw(top, draw, random, inputs)
    top.lower(graph.eqns, env, keep=graph.outputs)
    top.loc, outputs = None, []
    for n in names:
        v = prog.output(n)
        top.nodes.append(helper.make_node("Identity", [env[v.uid]], [n], name=f"output_{n}"))
        outputs.append(top.value_info(n, v.type))
    onnx_graph = helper.make_graph(top.nodes, prog.name, inputs, outputs, inits,
                                   doc_string=f"specc model '{prog.name}'" + (f" ({prog.loc})" if prog.loc else ""))
    opsets = [helper.make_opsetid("", OPSET)]
    proto = helper.make_model(onnx_graph, opset_imports=opsets, producer_name="specc", producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    helper.set_model_props(proto, {"specc.model": prog.name, "specc.random": random, "specc.cells": cells,
                                   "specc.outputs": ",".join(names)})
    onnx.checker.check_model(proto)
    return proto


def _bind_draw(top: Lowering, draw: RandomDraw, random: str, inputs: list) -> str:
    """The ONNX value standing for a lifted random draw ([T, ...] when it is drawn inside a recurrence)."""
    v = draw.value
    top.loc, top.hint = None, v.name or draw.op
    dt = NUMPY_DTYPES[v.dtype]
    if draw.op in ("dropout_mask", "training_flag") or (random == "mean" and draw.op in ("normal", "uniform")):
        fill = {"dropout_mask": 1.0, "training_flag": 0.0, "normal": 0.0, "uniform": 0.5}[draw.op]  # inference
        return top.node("ConstantOfShape", [top.shape(v.shape)], value=numpy_helper.from_array(np.array([fill], dt)))
    if random == "input":
        name = top.fresh(v.name or draw.op)
        inputs.append(top.value_info(name, v.type))
        return name
    if draw.op not in ("normal", "uniform"):
        raise ExportError(f"random op '{draw.op}' has no ONNX export rule")
    template = top.node("ConstantOfShape", [top.shape(v.shape)], value=numpy_helper.from_array(np.zeros(1, dt)))
    if draw.op == "normal":
        return top.node("RandomNormalLike", [template], mean=0.0, scale=1.0)
    return top.node("RandomUniformLike", [template], low=0.0, high=1.0)
