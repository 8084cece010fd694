"""The back ends: from an IR graph to something that runs it on one target.

In: any checked Graph (a forward graph, a backward graph from autodiff, an
optimised graph), a target name and a module name.
Out: a :class:`~specc.backends.base.Backend` object per target (:data:`BACKENDS`:
``interp``, ``cpu``, ``cuda``) that says what the target can do, and, for a target
that compiles, a :class:`GeneratedModule`: source text whose entry function runs
the graph, plus the order of the entry's arguments and results.  The runtime
(:mod:`specc.runtime`) writes it to the cache directory, imports it and calls it.

The layout, one stage per module:

* :mod:`~specc.backends.base`: the shared types (GeneratedModule, the CodeGen and
  Backend protocols, rule sets and lowering tables); every back end imports it;
* :mod:`~specc.backends.lift`: random draws become inputs (target-independent);
* :mod:`~specc.backends.text`: user text made inert in generated source (one place);
* :mod:`~specc.backends.lines`: the line builder the generators write with;
* :mod:`~specc.backends.emitter`: the target-neutral emitter rules are written against;
* :mod:`~specc.backends.common` and :mod:`~specc.backends.loops`: lowering pieces and whole
  rules both targets share;
* :mod:`~specc.backends.interp`: the reference interpreter (target ``interp``);
* ``cpu/`` and ``cuda/``: per target an emitter, rules by op family, helpers, a generator,
  a runtime and ``backend.py``, which builds the target's lowering table from its rule
  sets and defines its Backend object.

A generator walks the graph's equations and applies one lowering rule per
equation, found in its target's table by op name; a table is built explicitly
(``Lowerings.build``) from the rule sets of the target's own modules and the shared
ones.  Nothing target-specific is stored in the IR or in the op registry.
"""

from __future__ import annotations

from ..ops import REGISTRY
from .base import Backend, CodeGen, GeneratedModule, LoweringRule, Lowerings
from .cpu.backend import CPU
from .cuda.backend import CUDA
from .interp import INTERP
from .lift import RandomDraw, lift_random

BACKENDS: dict[str, Backend] = {b.name: b for b in (CPU, CUDA, INTERP)}
# op name -> rule, per target that compiles (read-only views for tests and tools)
LOWERINGS: dict[str, Lowerings] = {b.name: b.lowerings() for b in BACKENDS.values() if b.compiles}


def backend(target: str) -> Backend:
    """The Backend object of ``target`` ("cpu", "cuda" or "interp")."""
    if target not in BACKENDS:
        raise ValueError(f"unknown target '{target}' (known: {', '.join(sorted(BACKENDS))})")
    return BACKENDS[target]


def generator(target: str) -> CodeGen:
    """A new code generator for a target that compiles."""
    b = backend(target)
    if not b.compiles:
        raise ValueError(f"target '{target}' has no code generator (known: "
                         f"{', '.join(sorted(LOWERINGS))})")
    return b.generator()


def missing_lowerings(target: str) -> list[str]:
    """Registered ops without a lowering rule for ``target`` (the registry tests want none)."""
    return backend(target).lowerings().missing(REGISTRY)


__all__ = [
    "BACKENDS",
    "LOWERINGS",
    "Backend",
    "CodeGen",
    "GeneratedModule",
    "LoweringRule",
    "RandomDraw",
    "backend",
    "generator",
    "lift_random",
    "missing_lowerings",
]
