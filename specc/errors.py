"""Source spans and typed compiler errors.

In: a :class:`Source` (file name and text) and a :class:`Span` inside it.
Out: errors that render as ``file:line:col: error: message``, the source line,
an underline under the span, then notes and a hint, e.g.::

    specs/x.nn:12:9: error: shape mismatch in '+'
       12 |   y = x @ W + b
          |       ^^^^^^^^^
      note: left operand  x @ W : [B, 10]
      note: right operand b     : [12]

Every error the compiler or runtime raises for bad user input is a
:class:`SpeccError`; the CLI prints ``render()`` and exits 1.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    name: str
    text: str

    def __repr__(self) -> str:
        return f"Source({self.name!r})"

    def line(self, n: int) -> str:
        lines = self.text.splitlines()
        return lines[n - 1] if 1 <= n <= len(lines) else ""


@dataclass(frozen=True, slots=True)
class Span:
    source: Source | None
    line: int
    col: int
    end_line: int
    end_col: int  # exclusive

    @property
    def file(self) -> str:
        return self.source.name if self.source else "<unknown>"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def merge(self, other: "Span | None") -> "Span":
        if other is None or other.source is not self.source:
            return self
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(self.source, start[0], start[1], end[0], end[1])


NO_SPAN = Span(None, 0, 0, 0, 0)


@dataclass
class SpeccError(Exception):
    """A user-facing error with a source location."""

    message: str
    span: Span | None = None
    notes: list[str] = field(default_factory=list)
    hint: str | None = None
    kind: str = "error"
    related: list[tuple[str, Span]] = field(default_factory=list)  # other places worth showing, with a label

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        out: list[str] = []
        where = f"{self.span}: " if self.span and self.span.source else ""
        out.append(f"{where}{self.kind}: {self.message}")
        if self.span and self.span.source:
            out.extend(underline(self.span))
        for label, span in self.related:
            out.append(f"  note: {span}: {label}")
            if span.source is not None:
                out.extend(underline(span))
        for note in self.notes:
            out.append(f"  note: {note}")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


def underline(span: Span) -> list[str]:
    assert span.source is not None
    text = span.source.line(span.line)
    gutter = f"{span.line:>5} | "
    end = span.end_col if span.end_line == span.line else len(text) + 1
    width = max(1, end - span.col)
    pad = "".join(c if c == "\t" else " " for c in text[: span.col - 1])
    return [gutter + text, " " * (len(gutter) - 2) + "| " + pad + "^" * width]


class ParseError(SpeccError):
    pass


class SpecNameError(SpeccError):
    pass


class ShapeError(SpeccError):
    pass


class DTypeError(SpeccError):
    pass


class ArgumentError(SpeccError):
    pass


class RecurrenceError(SpeccError):
    pass


class ModelError(SpeccError):
    """A whole-model problem: no loss, a non-scalar loss, an unused input."""


class InputError(SpeccError):
    """Run-time data that does not fit the model's declared inputs."""


class ConfigError(SpeccError):
    pass


class IRError(SpeccError):
    """The IR verifier found a broken invariant (a compiler bug, not a user error)."""


class ExportError(SpeccError):
    """A model that cannot be exported (an op with no ONNX rule, a size unknown at run time)."""


def did_you_mean(name: str, candidates: Iterable[str], n: int = 1) -> str | None:
    """'did you mean 'x'?' for the closest candidate (or the ``n`` closest), or None if none is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates) - {name}), n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def join_names(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)
