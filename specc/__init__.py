"""specc: a declarative model-spec compiler for neural networks.

Write a network as equations in a .nn file; specc parses it, checks names,
types and symbolic shapes, and runs it.  ``specc.compile(path_or_source)``
is the entry point;
``specc.training.train(model, data)`` trains it.

The names below load on first use (PEP 562), so that a process that needs only part of specc
(a kernel-compiling worker, :mod:`specc.backends.cpu.precompile`) does not import the whole compiler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["History", "Model", "SpeccError", "Trainer", "compile", "train", "__version__"]

_LAZY = {"Model": ".api", "compile": ".api", "SpeccError": ".errors", "History": ".training.history",
         "Trainer": ".training.train", "train": ".training.train"}

if TYPE_CHECKING:
    from .api import Model, compile
    from .errors import SpeccError
    from .training.history import History
    from .training.train import Trainer, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    try:  # a subpackage not imported yet (specc.training, specc.runtime, ...)
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
