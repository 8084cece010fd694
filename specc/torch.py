"""A PyTorch bridge: a ``.nn`` spec as a ``torch.nn.Module`` (``specc.torch.module(spec)``).

In: a spec (a path, source text or a compiled :class:`~specc.api.Model`).
Out: a ``torch.nn.Module`` whose parameters are ``nn.Parameter`` s (initialised as the spec says)
and whose forward and backward run specc's kernels through a ``torch.autograd.Function``:
forward is ``Model.forward``; backward is the vector-Jacobian product of the outputs with
respect to the parameters and the float inputs (:mod:`specc.interop.vjp`), compiled like any
other graph.  So a cell written in a ``.nn`` file can sit inside a PyTorch model and be trained
by PyTorch's optimizers.

Importing this module does not import PyTorch: :func:`module` does, and says how to install
it when it is missing.  The tensors cross to NumPy and back on the CPU (a tensor on a GPU is
copied to the host): the kernels are the target's (``cpu`` by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import InputError

if TYPE_CHECKING:
    import torch

    from .api import Model


def module(spec: str | Path | Model, *, outputs: Sequence[str] | None = None, seed: int = 0,
           target: str | None = None, dtype: str | None = None, model: str | None = None) -> torch.nn.Module:
    """The spec as a ``torch.nn.Module``.

    ``outputs``: what ``forward`` returns, in order (default: every output but ``loss``, or the
    loss when it is the only one); one output is returned as a tensor, several as a tuple.
    ``forward`` takes the spec's inputs by name or in declared order; inputs that the chosen
    outputs do not need (labels) may be left out.  ``seed``: the parameters' initialisation;
    random ops (dropout) draw from ``seed`` and a call counter, the backward pass replaying
    the forward pass's draws.  ``target``: ``cpu`` (default), ``interp`` or ``cuda``.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("specc.torch needs PyTorch, which is not installed",
                         hint="pip install 'specc[torch]' (or torch from pytorch.org)") from None
    from .interop.torch_bridge import SpeccModule

    if not hasattr(spec, "value_and_grad"):
        from .api import compile

        spec = compile(spec, target=target or "cpu", dtype=dtype, model=model)
    return SpeccModule(spec, outputs=outputs, seed=seed)


def parameter_name(name: str) -> str:
    """The ``nn.Parameter`` name of a spec parameter (PyTorch forbids dots): ``h.W_f`` -> ``h__W_f``."""
    return name.replace(".", "__")


__all__ = ["module", "parameter_name"]
