"""A small builder for generated source text.

In: lines of code, one call per line, and ``with b.indent():`` or
``with b.block("for i in range(n):"):`` for nesting.
Out: the text (``str(b)`` or :meth:`Lines.render`), indented with four spaces.

Code generators build source with this instead of ``+=`` on strings, so that
nesting is visible in the generator's own code the way it will be in the
output.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

INDENT = "    "


class Lines:
    def __init__(self, depth: int = 0) -> None:
        self._lines: list[str] = []
        self._depth = depth
        self.statements = 0  # lines of code so far (not comments, not blank lines)

    def __call__(self, line: str = "") -> None:
        """Append one line of code at the current indentation (an empty line stays empty)."""
        self._append(line)
        self.statements += bool(line)

    def _append(self, line: str) -> None:
        self._lines.append(INDENT * self._depth + line if line else "")

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self(line)

    def comment(self, text: str) -> None:
        for part in text.splitlines() or [""]:
            self._append(f"# {part}".rstrip())

    def blank(self) -> None:
        """An empty line, but never two in a row nor one right after an opening line."""
        if self._lines and self._lines[-1] and not self._lines[-1].endswith(":"):
            self._lines.append("")

    @contextmanager
    def indent(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """``header`` (ending in ':') then its body, one level deeper."""
        self(header)
        with self.indent():
            yield

    @property
    def depth(self) -> int:
        return self._depth

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"

    def __len__(self) -> int:
        return len(self._lines)

    def cut(self, marks: list[int]) -> list[list[str]]:
        """The lines in pieces, cut before each line index in ``marks`` (ascending)."""
        bounds = [0, *marks, len(self._lines)]
        return [self._lines[a:b] for a, b in zip(bounds, bounds[1:])]

    __str__ = render
