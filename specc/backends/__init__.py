"""Code generation: from an IR graph to the source text of a kernel module for one target.

In: any checked Graph (a forward graph, a backward graph from autodiff, an
optimised graph) and a module name.
Out: a :class:`GeneratedModule`: source text whose entry function runs the
graph, plus the order of the entry's arguments and results.  The runtime
(:mod:`specc.runtime`) writes it to the cache directory, imports it and calls it.

The stages inside, one module each:

* :mod:`specc.backends.lift`: random draws become inputs (target-independent);
* :mod:`specc.backends.cpu.generator`: the CPU generator (Python source for Numba's ``@njit``);
* :mod:`specc.backends.cuda.generator`: the CUDA generator (``@cuda.jit`` kernels for numba-cuda), run by
  :mod:`specc.backends.cuda.runtime`;
* :mod:`specc.backends.lines`: the line builder the generators write with.

A generator walks the graph's equations and applies one lowering rule per
equation, found in :data:`LOWERINGS` by target and op name.  Rules live with
their target's generator and register with :func:`lowering`; the registry test
fails when an op of :data:`specc.ops.REGISTRY` has no rule for a target.
Nothing target-specific is stored in the IR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..ir.core import Eqn, Graph
from .lift import RandomDraw, lift_random


@dataclass(frozen=True)
class GeneratedModule:
    """A generated kernel module and how to call its entry function.

    The entry is called as ``entry(*inputs, *draws, *dims[, threads])``: first one
    array per graph input (in the graph's order), then one array per random draw
    (the runtime fills them with :meth:`RandomDraw.sample`), then each symbolic
    dim size as an int, in the order of ``dims``, then, when ``threads`` is set,
    the number of threads the kernel may use.  It returns a tuple with one array
    per graph output, in the graph's order.
    """

    target: str
    name: str  # a Python identifier: the module's base name
    source: str
    entry: str  # the entry function's name in the module
    inputs: tuple[str, ...]  # the entry's parameter names for the graph inputs
    draws: tuple[RandomDraw, ...]  # then one parameter per draw
    dims: tuple[str, ...]  # then the dim symbols, passed as ints
    outputs: tuple[str, ...]  # the names of the returned values (for reading the source)
    threads: bool = False  # the entry takes a last argument: how many threads it may use
    kernels: tuple[str, ...] = ()  # the compiled functions doing the work (the entry, or what it calls)


class CodeGen(Protocol):
    """What every target's generator implements."""

    target: str

    def generate(self, graph: Graph, name: str) -> GeneratedModule: ...


LoweringRule = Callable[[Any, Eqn], None]  # (the generator's emitter, the equation) -> emits code
LOWERINGS: dict[str, dict[str, LoweringRule]] = {}
GENERATORS: dict[str, Callable[[], CodeGen]] = {}


def lowering(target: str, *ops: str) -> Callable[[LoweringRule], LoweringRule]:
    """Register a function as the lowering rule of ``ops`` for ``target``.

    The rule is also recorded on the op itself (``Op.lowerings[target]``), so that
    everything about one op can be found from :data:`specc.ops.REGISTRY`.
    """

    def register(rule: LoweringRule) -> LoweringRule:
        from ..ops import REGISTRY

        table = LOWERINGS.setdefault(target, {})
        for name in ops:
            if name in table:
                raise ValueError(f"op {name} has two {target} lowerings")
            table[name] = rule
            if name in REGISTRY:
                REGISTRY[name].lowerings[target] = rule
        return rule

    return register


def generator(target: str) -> CodeGen:
    if target not in GENERATORS:
        raise ValueError(f"unknown target '{target}' (known: {', '.join(sorted(GENERATORS))})")
    return GENERATORS[target]()


def missing_lowerings(target: str) -> list[str]:
    """Registered ops without a lowering rule for ``target`` (the registry test wants none)."""
    from ..ops import REGISTRY

    table = LOWERINGS.get(target, {})
    return sorted(name for name in REGISTRY if name not in table)


from .cpu import generator as cpu  # registers the CPU generator and its rules (after the definitions it imports)
from .cuda import generator as cuda  # registers the CUDA generator and its rules (source only: numba-cuda is needed to run it)

__all__ = [
    "GENERATORS",
    "LOWERINGS",
    "CodeGen",
    "GeneratedModule",
    "RandomDraw",
    "cpu",
    "cuda",
    "generator",
    "lift_random",
    "lowering",
    "missing_lowerings",
]
