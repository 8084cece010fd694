"""Exporting a model for other runtimes.

In: a :class:`specc.api.Model` and its parameters.  Out: an ONNX file (``onnx_lower``
builds the model, ``onnx_context`` one graph of it, ``onnx_rules`` holds one lowering
rule per op, ``command`` is the body of ``specc export``).  The ``onnx`` package is an optional dependency
(``pip install "specc[onnx]"``): without it, export raises a clear :class:`SpeccError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpeccError
from ..safefiles import write_atomic


def require_onnx() -> Any:
    """The ``onnx`` module, or a clear error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise SpeccError("ONNX export needs the 'onnx' package, which is not installed",
                         hint='pip install "specc[onnx]"  (or: pip install onnx onnxruntime)') from None
    return onnx


def to_onnx(model: Any, params: Mapping[str, np.ndarray], *, with_loss: bool = False, random: str = "mean",
            cells: str = "onnx") -> Any:
    """The model as an ``onnx.ModelProto`` (see :func:`specc.export.onnx_lower.to_onnx`)."""
    require_onnx()
    from .onnx_lower import to_onnx as lower

    return lower(model, params, with_loss=with_loss, random=random, cells=cells)


def export_onnx(model: Any, params: Mapping[str, np.ndarray], path: str | Path, *, with_loss: bool = False,
                random: str = "mean", cells: str = "onnx") -> Any:
    """Write the model to ``path`` as ONNX (atomically: a temporary file, then a rename); returns the ModelProto."""
    proto = to_onnx(model, params, with_loss=with_loss, random=random, cells=cells)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, proto.SerializeToString())  # as checkpoints are
    return proto


__all__ = ["export_onnx", "require_onnx", "to_onnx"]
