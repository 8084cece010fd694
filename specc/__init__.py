"""specc: a declarative model-spec compiler for neural networks.

Write a network as equations in a .nn file; specc parses it, checks names,
types and symbolic shapes, and runs it.  ``specc.compile(path_or_source)``
is the entry point;
``specc.training.train(model, data)`` trains it.
"""

from .api import Model, compile
from .errors import SpeccError
from .training.history import History
from .training.train import Trainer, train

__version__ = "0.1.0"
__all__ = ["History", "Model", "SpeccError", "Trainer", "compile", "train", "__version__"]
