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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """A spec's file name and text.

    Lines are counted one way everywhere: a line ends at ``\n`` only, as the parser counts
    them (a ``\r`` before it is dropped when a line is shown).  ``str.splitlines`` would also
    break at a form feed, U+2028 and others, and every later error would point at the wrong line.
    """

    name: str
    text: str

    def __repr__(self) -> str:
        return f"Source({self.name!r})"

    def lines(self) -> list[str]:
        return [ln[:-1] if ln.endswith("\r") else ln for ln in self.text.split("\n")]

    def line(self, n: int) -> str:
        if n < 1:
            return ""
        start = 0
        for _ in range(n - 1):  # no list of every line: errors on a long file stay cheap
            start = self.text.find("\n", start) + 1
            if start == 0:
                return ""
        end = self.text.find("\n", start)
        text = self.text[start:] if end < 0 else self.text[start:end]
        return text[:-1] if text.endswith("\r") else text


def read_source(path: str | Path, what: str = "spec file") -> Source:
    """The text of a .nn file; an error (not a traceback) when it cannot be read or is not UTF-8.

    A file that is not UTF-8 text gets ``file:line:col: error: not UTF-8 text`` at its first bad
    byte, without quoting the file (it may not be a spec at all).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpeccError(f"cannot read {what} '{path}': no such file") from None
    except IsADirectoryError:
        raise SpeccError(f"cannot read {what} '{path}': it is a directory") from None
    except OSError as e:
        raise SpeccError(f"cannot read {what} '{path}': {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        good = data[:e.start].decode("utf-8")
        line = good.count("\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ParseError(f"not UTF-8 text (byte 0x{data[e.start]:02x})",
                         Span(Source(str(path), ""), line, col, line, col + 1),
                         hint="a .nn file is UTF-8 text") from None
    if text.startswith("\ufeff"):  # a byte-order mark: not part of the spec
        text = text[1:]
    return Source(str(path), text)


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
        if self.span and self.span.source and self.span.source.text:  # no text: a file not shown
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


def param_site(params: Iterable[Any], source: Source | None, name: str) -> tuple[Span | None, list[tuple[str, Span]]]:
    """Where to point for a parameter: its declaration when the spec's own file has it; for a
    library layer's parameter (``h2.dense.W``), the spec's line that binds ``h2``, noting the declaration."""
    info = next(p for p in params if p.name == name)  # an IR ParamInfo: .name, .loc
    if info.loc is None or source is None or info.loc.source is source:
        return info.loc, []
    binding = re.compile(rf"^(\s*(?:output\s+)?){re.escape(name.split('.')[0])}\s*=")
    for n, line in enumerate(source.lines(), 1):
        m = binding.match(line)
        if m:
            return Span(source, n, len(m.group(1)) + 1, n, len(line.rstrip()) + 1), [("declared here", info.loc)]
    return info.loc, []
