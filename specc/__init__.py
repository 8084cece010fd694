"""specc: a declarative model-spec compiler for neural networks.

Write a network as equations in a .nn file; specc parses it, checks names,
types and symbolic shapes, and runs it.  ``specc.compile(path_or_source)``
is the entry point.
"""

from .api import Model, compile
from .errors import SpeccError

__version__ = "0.1.0"
__all__ = ["Model", "SpeccError", "compile", "__version__"]
