"""The module and autograd function behind :func:`specc.torch.module` (imports PyTorch).

In: a compiled :class:`~specc.api.Model` and the outputs to return.
Out: :class:`SpeccModule` (``torch.nn.Module``); its forward calls :class:`_SpecFunction`, whose
``forward`` runs ``Model.forward`` and whose ``backward`` runs the compiled VJP graph of the
chosen outputs (:func:`specc.interop.vjp.vjp_program`) on the saved inputs and parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..api import Model
from ..errors import InputError
from ..ir.core import NUMPY_DTYPES
from .vjp import VJPProgram, vjp_program

def _name(name: str) -> str:
    return name.replace(".", "__")


class SpeccModule(torch.nn.Module):
    """A spec as a PyTorch layer; ``specc_params()`` / ``load_specc_params()`` use the spec's names."""

    def __init__(self, model: Model, *, outputs: Sequence[str] | None = None, seed: int = 0):
        super().__init__()
        self.model = model
        names = [n for n in model.outputs if n != "loss"] or ["loss"]
        self.output_names = tuple(outputs) if outputs is not None else tuple(names)
        for n in self.output_names:
            if n not in model.outputs:
                raise InputError(f"model '{model.name}' has no output '{n}'",
                                 hint=f"its outputs are {', '.join(model.outputs)}")
        self.param_names = list(model.param_shapes)
        for name, value in model.init_params(seed).items():
            self.register_parameter(_name(name), torch.nn.Parameter(torch.from_numpy(np.array(value))))
        self.seed = seed
        self.calls = 0
        self._vjp: VJPProgram | None = None

    def extra_repr(self) -> str:
        ins = ", ".join(self.model.inputs)
        return f"{self.model.name}({ins}) -> {', '.join(self.output_names)}, target={self.model.target}"

    # -- the spec's names ------------------------------------------------------------------------
    def specc_params(self) -> dict[str, np.ndarray]:
        """The parameters as NumPy arrays under the spec's names (for checkpoints, ``Model.forward``)."""
        return {n: getattr(self, _name(n)).detach().cpu().numpy().copy() for n in self.param_names}

    def load_specc_params(self, params: dict[str, np.ndarray]) -> None:
        from ..training.checkpoint import check_fit

        check_fit(params, self.model, "the parameters given")
        with torch.no_grad():
            for n in self.param_names:
                getattr(self, _name(n)).copy_(torch.from_numpy(np.asarray(params[n])))

    # -- running -------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any):
        names = list(self.model.inputs)
        if len(args) > len(names):
            raise InputError(f"model '{self.model.name}' takes {len(names)} inputs ({', '.join(names)}), "
                             f"got {len(args)}")
        given = dict(zip(names, args))
        twice = set(given) & set(kwargs)
        if twice:
            raise InputError(f"input '{sorted(twice)[0]}' given twice")
        given.update(kwargs)
        present = [n for n in names if given.get(n) is not None]
        params = [getattr(self, _name(n)) for n in self.param_names]
        self.calls += 1
        seed = self.seed * 1_000_003 + self.calls
        outs = _SpecFunction.apply(self, seed, bool(self.training), tuple(present),
                                   *[given[n] for n in present], *params)
        return outs[0] if len(outs) == 1 else outs

    def vjp(self) -> VJPProgram:
        if self._vjp is None:
            self._vjp = vjp_program(self.model.program, self.output_names)
        return self._vjp


def _numpy(t: Any, dtype: np.dtype | None = None) -> np.ndarray:
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return np.ascontiguousarray(a if dtype is None else a.astype(dtype, copy=False))


class _SpecFunction(torch.autograd.Function):
    """forward: the model's outputs; backward: their VJP with respect to the parameters and float inputs."""

    @staticmethod
    def forward(ctx, mod: SpeccModule, seed: int, training: bool, present: tuple[str, ...], *tensors):
        model = mod.model
        inputs = {n: _numpy(t) for n, t in zip(present, tensors)}
        params = {n: _numpy(t) for n, t in zip(mod.param_names, tensors[len(present):])}
        outs = model.forward(params, seed=seed, training=training, **inputs)
        missing = [n for n in mod.output_names if n not in outs]
        if missing:
            raise InputError(f"output '{missing[0]}' needs an input that was not given",
                             hint=f"give {', '.join(n for n in model.inputs if n not in present)}")
        ctx.mod, ctx.seed, ctx.training, ctx.present = mod, seed, training, present
        ctx.save_for_backward(*tensors)
        device = tensors[-1].device if tensors else None
        return tuple(torch.from_numpy(np.array(outs[n])).to(device) for n in mod.output_names)

    @staticmethod
    def backward(ctx, *grads):
        mod: SpeccModule = ctx.mod
        model, present, tensors = mod.model, ctx.present, ctx.saved_tensors
        prog = mod.vjp()
        arrays, dims = model.bind_inputs({n: _numpy(t) for n, t in zip(present, tensors)}, required=False)
        params = model.check_params({n: _numpy(t) for n, t in zip(mod.param_names, tensors[len(present):])})
        cts = []
        for name, g in zip(prog.outputs, grads):
            v = model.program.output(name)
            want = NUMPY_DTYPES[v.dtype]
            # an output the loss does not use gets no gradient from PyTorch: its cotangent is zero
            cts.append(np.zeros(tuple(d.evaluate(dims) for d in v.shape), want) if g is None else _numpy(g, want))
        args = [arrays.get(i.name) for i in model.program.inputs] + params + cts
        results = model._run(("vjp", prog.outputs), prog.graph, args, dims, ctx.seed, ctx.training)
        by_name = dict(zip(prog.wrt, results))
        device = tensors[-1].device if tensors else None
        out: list[Any] = [None, None, None, None]  # mod, seed, training, present
        for k, (n, t) in enumerate(zip(present, tensors)):
            g = by_name.get(n)  # None for an integer input
            out.append(torch.from_numpy(np.array(g)).to(device, t.dtype)
                       if g is not None and ctx.needs_input_grad[4 + k] else None)
        out += [torch.from_numpy(np.array(by_name[n])).to(device) for n in mod.param_names]
        return tuple(out)
