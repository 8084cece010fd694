"""The op registry (see :mod:`specc.ops.core`); importing this package registers every op."""

from . import conv_transpose, elementwise, fused, grad, nn, scan, select, structural  # noqa: F401  (registers every op)
from .core import REGISTRY, DTypeRuleError, Op, RefContext, ShapeRuleError, register

__all__ = ["REGISTRY", "DTypeRuleError", "Op", "RefContext", "ShapeRuleError", "register"]
