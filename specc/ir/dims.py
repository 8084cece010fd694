"""Symbolic dimensions: integer polynomials over named sizes.

In: dim names (``T``, ``B``), integer constants and the arithmetic of shapes
(``D + H``, ``2 * H``, ``T * B``, ``(L - K) // 2 + 1``).
Out: a normalised, hashable :class:`Dim` that compares by value, so that two
shapes are equal exactly when their dims are equal polynomials, and that
evaluates to an int once its names are bound.

Floor division that does not divide exactly (convolution output sizes with a
symbolic input) is kept as an opaque atom ``(expr // k)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

Monomial = tuple[str, ...]  # sorted names, repeated for powers; () is the constant term


@dataclass(frozen=True, slots=True)
class Dim:
    """A polynomial with integer coefficients; terms is a sorted tuple of (monomial, coeff)."""

    terms: tuple[tuple[Monomial, int], ...]

    # -- construction -----------------------------------------------------------------
    @staticmethod
    def const(n: int) -> "Dim":
        return Dim((((), int(n)),)) if n else Dim(())

    @staticmethod
    def sym(name: str) -> "Dim":
        return Dim((((name,), 1),))

    @staticmethod
    def _make(acc: dict[Monomial, int]) -> "Dim":
        return Dim(tuple(sorted((m, c) for m, c in acc.items() if c)))

    # -- queries ----------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return all(m == () for m, _ in self.terms)

    @property
    def value(self) -> int:
        """The integer value of a constant dim."""
        if not self.is_const:
            raise ValueError(f"dim {self} is symbolic")
        return self.terms[0][1] if self.terms else 0

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(s for m, _ in self.terms for s in m)

    def as_symbol(self) -> str | None:
        """The name if this dim is exactly one name (``T``), else None."""
        if len(self.terms) == 1 and self.terms[0][1] == 1 and len(self.terms[0][0]) == 1:
            return self.terms[0][0][0]
        return None

    # -- arithmetic -------------------------------------------------------------------
    def __add__(self, other: DimLike) -> "Dim":
        other = as_dim(other)
        acc = dict(self.terms)
        for m, c in other.terms:
            acc[m] = acc.get(m, 0) + c
        return Dim._make(acc)

    __radd__ = __add__

    def __neg__(self) -> "Dim":
        return Dim(tuple((m, -c) for m, c in self.terms))

    def __sub__(self, other: DimLike) -> "Dim":
        return self + (-as_dim(other))

    def __rsub__(self, other: DimLike) -> "Dim":
        return as_dim(other) - self

    def __mul__(self, other: DimLike) -> "Dim":
        other = as_dim(other)
        acc: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2))
                acc[m] = acc.get(m, 0) + c1 * c2
        return Dim._make(acc)

    __rmul__ = __mul__

    def __floordiv__(self, other: DimLike) -> "Dim":
        other = as_dim(other)
        if not other.is_const or other.value <= 0:
            raise ValueError(f"can only divide a dim by a positive integer, not {other}")
        k = other.value
        if self.is_const:
            return Dim.const(self.value // k)
        if all(c % k == 0 for _, c in self.terms):
            return Dim(tuple((m, c // k) for m, c in self.terms))
        if all(c % k == 0 for m, c in self.terms if m):  # (k*a + c) // k = a + c // k for integer a
            const = sum(c for m, c in self.terms if not m)
            return Dim(tuple((m, c // k) for m, c in self.terms if m)) + const // k
        return Dim.sym(f"({self} // {k})")

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for m, c in self.terms:
            prod = c
            for s in m:
                prod *= _lookup(s, env)
            total += prod
        return total

    def substitute(self, env: Mapping[str, "Dim"]) -> "Dim":
        out = Dim(())
        for m, c in self.terms:
            term = Dim.const(c)
            for s in m:
                term = term * _subst_symbol(s, env)
            out = out + term
        return out

    # -- printing ---------------------------------------------------------------------
    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts: list[str] = []
        # symbolic terms first (in sorted order), the constant last: D + H + 1
        ordered = [t for t in self.terms if t[0]] + [t for t in self.terms if not t[0]]
        for i, (m, c) in enumerate(ordered):
            body = "*".join(m)
            if not m:
                text = str(abs(c))
            elif abs(c) == 1:
                text = body
            else:
                text = f"{abs(c)}*{body}"
            if i == 0:
                parts.append(text if c > 0 else f"-{text}")
            else:
                parts.append(f"{'+' if c > 0 else '-'} {text}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"Dim({self})"


DimLike = Union[Dim, int]


def as_dim(d: DimLike) -> Dim:
    if isinstance(d, Dim):
        return d
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"not a dim: {d!r}")
    return Dim.const(d)


def _lookup(name: str, env: Mapping[str, int]) -> int:
    if name.startswith("("):  # an opaque floor-division atom: "(expr // k)"
        inner, k = name[1:-1].rsplit(" // ", 1)
        return parse_dim(inner).evaluate(env) // int(k)
    if name not in env:
        raise KeyError(name)
    return int(env[name])


def _subst_symbol(name: str, env: Mapping[str, Dim]) -> Dim:
    if name.startswith("("):
        inner, k = name[1:-1].rsplit(" // ", 1)
        return parse_dim(inner).substitute(env) // int(k)
    return env.get(name, Dim.sym(name))


def parse_dim(text: str) -> Dim:
    """Parse the printed form of a dim back (used for opaque atoms); only + - * // and names."""
    import ast as pyast

    def walk(node: pyast.AST) -> Dim:
        if isinstance(node, pyast.Expression):
            return walk(node.body)
        if isinstance(node, pyast.Constant) and isinstance(node.value, int):
            return Dim.const(node.value)
        if isinstance(node, pyast.Name):
            return Dim.sym(node.id)
        if isinstance(node, pyast.UnaryOp) and isinstance(node.op, pyast.USub):
            return -walk(node.operand)
        if isinstance(node, pyast.BinOp):
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, pyast.Add):
                return a + b
            if isinstance(node.op, pyast.Sub):
                return a - b
            if isinstance(node.op, pyast.Mult):
                return a * b
            if isinstance(node.op, pyast.FloorDiv):
                return a // b
        raise ValueError(f"bad dim expression {text!r}")

    return walk(pyast.parse(text, mode="eval"))


Shape = tuple[Dim, ...]


def shape_str(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def concrete(shape: Shape, env: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(d.evaluate(env) for d in shape)


def numel(shape: Shape) -> Dim:
    out = Dim.const(1)
    for d in shape:
        out = out * d
    return out
