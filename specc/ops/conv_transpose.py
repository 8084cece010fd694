"""The transposed convolution (``conv_transpose1d/2d``), PyTorch's ``conv_transpose``.

In: x ``[B, C_in, *S]`` and a weight ``[C_in, C_out, *K]`` (PyTorch's layout), with the params
``nd``, ``stride``, ``padding``, ``dilation`` and ``output_padding``.
Out: ``[B, C_out, *S_out]`` with ``S_out = (S - 1)·stride - 2·padding + dilation·(K - 1) + output_padding + 1``.

It is the adjoint of ``conv`` with respect to its input, so its reference is that adjoint's
(:mod:`specc.ops.grad`'s ``conv_grad_input``, with the output shape as ``in_shape``), the backends
lower it with the same rules, and its VJP is the other two products of a convolution: ``conv`` of
the cotangent (for x) and ``conv_grad_weight`` (for the weight).
"""

from __future__ import annotations

from .core import Op, ShapeRuleError, need_float, register, same_dtype
from .grad import _conv_grad_input_ref
from ..ir.core import TensorType
from ..ir.dims import Dim, shape_str


def transpose_out(length, k, stride: int, pad: int, dil: int, out_pad: int):
    return (length - 1) * stride - 2 * pad + dil * (k - 1) + out_pad + 1


def _infer(ins, p):
    x, w = ins
    nd = p["nd"]
    name = f"conv_transpose{nd}d"
    dt = same_dtype(ins, name)
    need_float(x, name)
    if x.rank != nd + 2:
        raise ShapeRuleError(f"{name} input must be [B, C, {'L' if nd == 1 else 'H, W'}], got {shape_str(x.shape)}")
    if w.rank != nd + 2:
        raise ShapeRuleError(f"{name} weight must be [C_in, C_out, {', '.join('K' * nd)}], got {shape_str(w.shape)}",
                             operand=1)
    if x.shape[1] != w.shape[0]:
        raise ShapeRuleError(f"{name}: input has {x.shape[1]} channels but the weight [C_in, C_out, ...] expects "
                             f"{w.shape[0]}", operand=1)
    spatial = []
    for i in range(nd):
        s, op = p["stride"][i], p["output_padding"][i]
        if not 0 <= op < s:
            raise ShapeRuleError(f"{name}: output_padding must be smaller than the stride ({s}), got {op}")
        n = transpose_out(x.shape[2 + i], w.shape[2 + i], s, p["padding"][i], p["dilation"][i], op)
        if n.is_const and n.value <= 0:
            raise ShapeRuleError(f"{name}: the padding leaves no output on axis {2 + i}")
        spatial.append(n)
    return [TensorType(dt, (x.shape[0], w.shape[1], *spatial))]


def _ref(ctx, ins, p):
    x, w = ins
    nd = p["nd"]
    out = (x.shape[0], w.shape[1], *(transpose_out(x.shape[2 + i], w.shape[2 + i], p["stride"][i], p["padding"][i],
                                                   p["dilation"][i], p["output_padding"][i]) for i in range(nd)))
    return _conv_grad_input_ref(ctx, [x, w], {**_conv_params(p), "in_shape": tuple(Dim.const(n) for n in out)})


def _conv_params(p) -> dict:
    return {k: p[k] for k in ("nd", "stride", "padding", "dilation")}


def _vjp(g, eqn, cts, needed):
    x, w = eqn.inputs
    (ct,) = cts
    p = _conv_params(eqn.params)
    dx = g.emit("conv", [ct, w], **p) if needed[0] else None
    dw = g.emit("conv_grad_weight", [ct, x], w_shape=tuple(w.shape), **p) if needed[1] else None
    return [dx, dw]


register(Op("conv_transpose", _infer, _ref, n_inputs=2,
            doc="transposed convolution of [B, C_in, *S] with [C_in, C_out, *K]; params nd, stride, padding, "
                "dilation, output_padding",
            vjp=_vjp))
