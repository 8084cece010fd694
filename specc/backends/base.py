"""What every back end has in common: the generated module, the generator and backend protocols, rule tables.

In: nothing (types only; no back end is imported here, so every back end can import this module).
Out: :class:`GeneratedModule` (a generator's result), :class:`CodeGen` (what a generator implements),
:class:`Backend` (what :mod:`specc.api`, :mod:`specc.runtime` and training ask a target), and
:class:`Lowerings` (one target's table: op name -> lowering rule, owned by that target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol

from ..ir.core import Eqn, Graph
from .lift import RandomDraw

LoweringRule = Callable[[Any, Eqn], None]  # (the generator's emitter, the equation) -> emits code


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
    # the argument types each kernel will be called with, where the generator knows them all: (kernel,
    # ((dtype, rank, layout) of an array | ("int",), ...), estimated cost); compiled before the first call
    signatures: tuple[tuple[str, tuple[tuple, ...], int], ...] = ()


class CodeGen(Protocol):
    """What every target's generator implements."""

    target: str

    def generate(self, graph: Graph, name: str) -> GeneratedModule: ...


class Lowerings(dict[str, LoweringRule]):
    """One target's lowering rules by op name.  Each back end builds its own from rule sets
    (:class:`RuleSet`, one per op family module) with :meth:`build`; no rule is registered elsewhere."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    @classmethod
    def build(cls, target: str, *sets: Mapping[str, LoweringRule]) -> "Lowerings":
        table = cls(target)
        for rules in sets:
            for op, rule in rules.items():
                if op in table:
                    raise ValueError(f"op {op} has two {target} lowerings")
                table[op] = rule
        return table

    def missing(self, ops: Iterable[str]) -> list[str]:
        """The ops of ``ops`` without a rule here (the registry tests want none)."""
        return sorted(op for op in ops if op not in self)


class RuleSet(dict[str, LoweringRule]):
    """The rules of one module (an op family), filled by its ``@rules("op", ...)`` decorators as the
    module is defined; a back end's :class:`Lowerings` is built from such sets."""

    def __call__(self, *ops: str) -> Callable[[LoweringRule], LoweringRule]:
        def register(rule: LoweringRule) -> LoweringRule:
            for op in ops:
                if op in self:
                    raise ValueError(f"op {op} has two rules in one rule set")
                self[op] = rule
            return rule

        return register


class Backend(Protocol):
    """What the rest of specc asks a target, instead of comparing target names.

    ``compiles``: graphs are generated, cached and loaded as kernels (else the target runs the IR
    itself: the interpreter).  ``device_resident``: training keeps parameters and optimizer state on
    the target's device (:meth:`device_optimizer`, e.g. :mod:`specc.backends.cuda.optim`) instead of
    host NumPy arrays.
    """

    name: str
    label: str  # how messages name it: "reference interpreter", "compiled, cpu"
    compiles: bool
    device_resident: bool

    def require(self) -> None:
        """Raise a :class:`~specc.errors.SpeccError` saying what is missing when this target cannot run here."""

    def generator(self) -> CodeGen:
        """A new code generator (only for a target that compiles)."""

    def lowerings(self) -> Lowerings:
        """The target's lowering table (empty for one that does not compile)."""

    def load(self, graph: Graph, module: GeneratedModule, load: Callable[[list[str]], tuple[Any, Any]]) -> Any:
        """The callable compiled graph of ``module``; ``load(extra_key)`` imports the module from the cache
        (``extra_key``: what the cache key adds for this target) and returns (module object, path)."""

    # device_optimizer(optimizer, params, state): only a device_resident backend has it: the optimizer's
    # update rules run where the parameters live (see specc.backends.cuda.backend).


__all__ = ["Backend", "CodeGen", "GeneratedModule", "LoweringRule", "Lowerings", "RuleSet"]
