"""The ONNX lowering rules: one per op, keyed by op name.

In: a :class:`~specc.export.onnx_context.Lowering` (the graph being built), an equation
and the ONNX names of its inputs.  Out: the ONNX names of its outputs, after appending the
nodes that compute them.  The semantics to match are each op's NumPy reference
(``specc.ops.REGISTRY[op].ref``); tests/test_onnx.py runs every spec and a hand-written
spec per op family through onnxruntime against it.

An op with no entry here cannot be exported: :meth:`Lowering.lower` raises an
:class:`~specc.errors.ExportError` at the equation's ``.nn`` line.  By design without a
rule: the ops that only backward graphs hold (:data:`NO_RULE`); the random draws
(``normal``, ``uniform``, ``dropout_mask``) never reach the rules, they are lifted out
of the graph first and bound by ``onnx_lower._bind_draw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ..errors import ExportError
from ..ir.core import NUMPY_DTYPES, Eqn
from ..ir.scan import unpack_scan
from ..ops.grad import GRAD_ONLY
from .onnx_cells import lower_cell, match_cell
from .onnx_context import INT64_MAX, ONNX_DTYPES, Lowering, Rule

RULES: dict[str, Rule] = {}
RANDOM_OPS = ("normal", "uniform", "dropout_mask", "training_flag")  # lifted: see onnx_lower._bind_draw
# step, sign, ge and the adjoints: only backward graphs hold them ("size" is also a forward op: `x / T`)
NO_RULE = tuple(name for name in GRAD_ONLY if name != "size")


def rule(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for name in names:
            RULES[name] = fn
        return fn

    return register


def _simple(op_type: str, **attrs_of: Callable[[dict], Any]) -> Rule:
    """A rule that is one ONNX node of the same inputs (attributes computed from the params)."""
    def lower(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
        p = dict(eqn.params)
        return ctx.node(op_type, ins, **{k: f(p) for k, f in attrs_of.items()})

    return lower


# ---- elementwise -----------------------------------------------------------------------
for _name, _onnx in {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs", "sigmoid": "Sigmoid",
                     "tanh": "Tanh", "relu": "Relu", "softplus": "Softplus", "add": "Add",
                     "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "maximum": "Max", "minimum": "Min",
                     "matmul": "MatMul"}.items():
    RULES[_name] = _simple(_onnx)
RULES["leaky_relu"] = _simple("LeakyRelu", alpha=lambda p: float(p.get("alpha", 0.01)))
RULES["elu"] = _simple("Elu", alpha=lambda p: float(p.get("alpha", 1.0)))
RULES["transpose"] = _simple("Transpose", perm=lambda p: list(p["perm"]))
RULES["concat"] = _simple("Concat", axis=lambda p: int(p["axis"]))
RULES["cast"] = _simple("Cast", to=lambda p: ONNX_DTYPES[p["dtype"]])
RULES["softmax"] = _simple("Softmax", axis=lambda p: int(p["axis"]))
RULES["log_softmax"] = _simple("LogSoftmax", axis=lambda p: int(p["axis"]))
RULES["take"] = _simple("Gather", axis=lambda p: 0)


@rule("gelu")
def _gelu(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): the tanh approximation, as the reference."""
    (x,), dt = ins, eqn.inputs[0].dtype
    x3 = ctx.node("Mul", [ctx.node("Mul", [x, x]), x])
    inner = ctx.node("Add", [x, ctx.node("Mul", [x3, ctx.scalar(0.044715, dt)])])
    th = ctx.node("Tanh", [ctx.node("Mul", [inner, ctx.scalar(float(np.sqrt(2.0 / np.pi)), dt)])])
    half_x = ctx.node("Mul", [x, ctx.scalar(0.5, dt)])
    return ctx.node("Mul", [half_x, ctx.node("Add", [th, ctx.scalar(1.0, dt)])])


@rule("full")
def _full(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    p = eqn.params
    dt = np.dtype(NUMPY_DTYPES[p["dtype"]])
    shape = tuple(ctx.known(d) for d in p["shape"])
    if all(d.is_const for d in shape):
        return ctx.const(np.full(tuple(d.value for d in shape), p["value"], dt), dt, hint=ctx.hint)
    return ctx.node("ConstantOfShape", [ctx.shape(shape)], value=numpy_helper.from_array(np.full(1, p["value"], dt)))


# ---- sizes as numbers, comparisons and selection (specc.ops.select) -------------------------
@rule("size")
def _size(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """The run-time value of a size, as a scalar of the equation's dtype."""
    value = ctx.node("Cast", [ctx.dim(eqn.params["dim"])], to=ONNX_DTYPES[eqn.params["dtype"]])
    return ctx.node("Reshape", [value, ctx.int64s([])])


_ONNX_CMP = {"lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual", "eq": "Equal", "ne": "Equal"}


@rule("compare")
def _compare(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """A boolean ONNX comparison, cast back to the operands' dtype (masks are 0/1 numbers)."""
    truth = ctx.node(_ONNX_CMP[eqn.params["cmp"]], ins)
    if eqn.params["cmp"] == "ne":
        truth = ctx.node("Not", [truth])
    return ctx.node("Cast", [truth], to=ONNX_DTYPES[eqn.outputs[0].dtype])


@rule("where")
def _where(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    cond = ctx.node("Not", [ctx.node("Equal", [ins[0], ctx.scalar(0, eqn.inputs[0].dtype)])])
    return ctx.node("Where", [cond, ins[1], ins[2]])


RULES["stop_gradient"] = _simple("Identity")


@rule("argmax", "argmin")
def _arg_reduce(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    p = eqn.params
    pos = ctx.node("ArgMax" if eqn.op == "argmax" else "ArgMin", ins, axis=int(p["axis"]),
                   keepdims=int(bool(p.get("keepdims"))), select_last_index=0)
    return ctx.node("Cast", [pos], to=TensorProto.INT32)


@rule("tri")
def _tri(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """Trilu (lower, diagonal k) of a matrix of ones."""
    p = eqn.params
    dt = np.dtype(NUMPY_DTYPES[p["dtype"]])
    ones = ctx.node("ConstantOfShape", [ctx.shape(tuple(p["shape"]))], value=numpy_helper.from_array(np.ones(1, dt)))
    return ctx.node("Trilu", [ones, ctx.const(int(p["k"]), np.int64, hint="k")], upper=0)


# ---- shapes and indexing ---------------------------------------------------------------
@rule("sum", "mean", "max")
def _reduce(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    axes = list(eqn.params["axes"])
    if not axes:  # specc reduces over no axis at all; ONNX would read "no axes" as "every axis"
        return ctx.node("Identity", ins)
    op = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[eqn.op]
    return ctx.node(op, [ins[0], ctx.int64s(axes)], keepdims=int(bool(eqn.params["keepdims"])))


@rule("reshape")
def _reshape(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    shape = [ctx.known(d) for d in eqn.params["shape"]]
    free = [i for i, d in enumerate(shape) if not d.is_const]
    zero = any(d.is_const and d.value == 0 for d in shape)
    if len(free) == 1 and not zero:  # one size left to ONNX (-1): no run-time size to compute
        target = ctx.int64s([-1 if i in free else d.value for i, d in enumerate(shape)])
    else:
        target = ctx.shape(tuple(shape))
    return ctx.node("Reshape", [ins[0], target], allowzero=int(zero))


@rule("getitem")
def _getitem(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """Slices with one ``Slice`` (NumPy's clamping), then each picked position with ``Gather`` and a ``Squeeze``."""
    x, index = ins[0], eqn.params["index"]
    sliced = [(ax, e) for ax, e in enumerate(index) if e[0] == "slice" and (e[1], e[2], e[3]) != (None, None, 1)]
    if sliced:
        starts = _ints(ctx, [0 if e[1] is None else e[1] for _ax, e in sliced])
        ends = _ints(ctx, [INT64_MAX if e[2] is None else e[2] for _ax, e in sliced])
        x = ctx.node("Slice", [x, starts, ends, ctx.int64s([ax for ax, _e in sliced]),
                               ctx.int64s([e[3] for _ax, e in sliced])])
    picked = [ax for ax, e in enumerate(index) if e[0] == "int"]
    for ax in picked:
        x = ctx.node("Gather", [x, ctx.dim(index[ax][1])], axis=ax)  # a [1] index keeps the axis ...
    if picked:
        x = ctx.node("Squeeze", [x, ctx.int64s(picked)])  # ... and one Squeeze drops them all
    return x if x != ins[0] else ctx.node("Identity", [x])


def _ints(ctx: Lowering, items: list) -> str:
    """An int64 vector of constants and run-time sizes."""
    if all(isinstance(i, int) or ctx.known(i).is_const for i in items):
        return ctx.int64s([i if isinstance(i, int) else ctx.known(i).value for i in items])
    return ctx.node("Concat", [ctx.int64s([i]) if isinstance(i, int) else ctx.dim(i) for i in items], axis=0)


# ---- convolution and pooling (NCHW, weights [O, C, K...], as ONNX) ---------------------
def _window_attrs(p: dict) -> dict:
    return {"strides": list(p["stride"]), "pads": list(p["padding"]) * 2}


@rule("conv")
def _conv(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    return ctx.node("Conv", ins, dilations=list(eqn.params["dilation"]), **_window_attrs(eqn.params))


@rule("conv_transpose")
def _conv_transpose(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """ONNX ConvTranspose has PyTorch's weight layout [C_in, C_out, *K] and its output_padding."""
    return ctx.node("ConvTranspose", ins, dilations=list(eqn.params["dilation"]),
                    output_padding=list(eqn.params["output_padding"]), **_window_attrs(eqn.params))


@rule("max_pool", "avg_pool")
def _pool(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    p = eqn.params
    if eqn.op == "max_pool":  # padding never wins a max (the reference pads with -inf)
        return ctx.node("MaxPool", ins, kernel_shape=list(p["kernel"]), **_window_attrs(p))
    return ctx.node("AveragePool", ins, kernel_shape=list(p["kernel"]), count_include_pad=1, **_window_attrs(p))


# ---- losses ----------------------------------------------------------------------------
@rule("cross_entropy")
def _cross_entropy(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """-mean(log_softmax(logits)[label])."""
    logits, labels = ins
    axis = eqn.inputs[0].type.rank - 1
    logp = ctx.node("LogSoftmax", [logits], axis=axis)
    ids = ctx.node("Unsqueeze", [ctx.node("Cast", [labels], to=TensorProto.INT64), ctx.int64s([-1])])
    picked = ctx.node("GatherElements", [logp, ids], axis=axis)
    return ctx.node("Neg", [ctx.node("ReduceMean", [picked], keepdims=0)])


@rule("bce_logits")
def _bce_logits(ctx: Lowering, eqn: Eqn, ins: list[str]) -> str:
    """mean(max(z, 0) - z y + log(1 + e^-|z|)): the reference's stable form."""
    (z, y), dt = ins, eqn.inputs[0].dtype
    pos = ctx.node("Max", [z, ctx.scalar(0.0, dt)])
    soft = ctx.node("Log", [ctx.node("Add", [ctx.scalar(1.0, dt), ctx.node("Exp", [ctx.node("Neg", [
        ctx.node("Abs", [z])])])])])
    loss = ctx.node("Add", [ctx.node("Sub", [pos, ctx.node("Mul", [z, y])]), soft])
    return ctx.node("ReduceMean", [loss], keepdims=0)


# ---- graphs in graphs ------------------------------------------------------------------
@rule("fused")
def _fused(ctx: Lowering, eqn: Eqn, ins: list[str]) -> list[str]:
    """An optimiser's fused group: its body's equations, inline."""
    body = eqn.params["body"]
    env = {v.uid: name for v, name in zip(body.inputs, ins)}
    loc = ctx.loc
    ctx.lower(body.eqns, env, keep=body.outputs)
    ctx.loc = loc
    return [env[v.uid] for v in body.outputs]


@rule("scan")
def _scan(ctx: Lowering, eqn: Eqn, ins: list[str]) -> list[str]:
    """A recurrence as an ONNX ``Scan`` whose body is the cell's own equations.

    (Unless it is exactly the standard LSTM or GRU cell and ``ctx.cells`` is on: then one
    ONNX ``LSTM``/``GRU`` node, see :mod:`specc.export.onnx_cells`.)

    ONNX carries state variables and slices scan inputs; a specc state read at lags
    1..K becomes K carried variables (its values at t-1, ..., t-K, all starting at its
    ``init``, as the reference reads a lag before step 0), and its value at each step is
    a scan output ([T, ...], in time order: a reversed recurrence scans and stacks
    backwards).  The body reads the scan's consts (parameters, hoisted values) from the
    outer graph by name, as ONNX allows.
    """
    if ctx.cells:
        cell = match_cell(eqn)
        if cell is not None and (cell.other_state is None or eqn.outputs[cell.other_state].uid not in ctx.read):
            return lower_cell(ctx, eqn, ins, cell)
    s = unpack_scan(eqn)
    if not s.seqs:
        raise ExportError("a recurrence that reads no sequence has no ONNX Scan form", eqn.loc)
    nc, ns = len(s.consts), len(s.seqs)
    body = ctx.child()
    env = {inner.uid: name for (_outer, inner), name in zip(s.consts, ins[:nc])}
    carried, first, inits = [], [], iter(ins[nc + ns:])
    for st in s.states:
        init = next(inits) if st.lag else None
        for lag, v in enumerate(st.lagged, 1):
            env[v.uid] = body.fresh(f"{st.name}.prev{lag}")
            carried.append(body.value_info(env[v.uid], v.type))
            first.append(init)
    sliced = []
    for _outer, inner in s.seqs:
        env[inner.uid] = body.fresh(inner.name or "seq_t")
        sliced.append(body.value_info(env[inner.uid], inner.type))
    body.lower(s.eqns, env, keep=tuple(st.out for st in s.states))
    body.loc = eqn.loc
    outs = []  # the carried variables after the step, then each state's value at the step
    for st in s.states:
        now = [st.out] + st.lagged[:-1] if st.lag else []
        for lag, v in enumerate(now, 1):
            outs.append(body.value_info(body.node("Identity", [env[v.uid]], hint=f"{st.name}.next{lag}"), v.type))
    for st in s.states:
        outs.append(body.value_info(body.node("Identity", [env[st.out.uid]], hint=f"{st.name}.t"), st.out.type))
    graph = helper.make_graph(body.nodes, ctx.fresh(f"{ctx.hint}_cell"), carried + sliced, outs)
    attrs: dict[str, Any] = {"body": graph, "num_scan_inputs": ns}
    if s.reverse:
        attrs.update(scan_input_directions=[1] * ns, scan_output_directions=[1] * len(s.states))
    ctx.loc = eqn.loc
    hints = [f"{st.name}.final{lag}" for st in s.states for lag in range(1, st.lag + 1)]
    hints += [st.result.name or st.name for st in s.states]
    results = ctx.node("Scan", first + list(ins[nc:nc + ns]), n_out=len(hints), hint=hints, **attrs)
    results = [results] if isinstance(results, str) else results
    return results[len(first):]
