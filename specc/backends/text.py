"""User text in generated source: the one place where it is made inert.

In: text that comes from the user (a spec's file name and source lines, its names, a module name).
Out: an identifier (:func:`sanitize`, :class:`Namer`) or one line of comment or docstring text
(:func:`escape`) that cannot end the comment, the docstring or the line it is written in.

Every generator writes user text through these two functions and nothing else: a carriage
return, a newline or a quote in a spec's file name must stay part of the comment that shows it.
"""

from __future__ import annotations

import re
from typing import Iterable

_QUOTED = {"\\": "\\\\", '"': '\\"'}
_CONTROL = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str, *, quoted: bool = False) -> str:
    """``text`` as one inert line of a ``#`` comment (or, ``quoted``, of a ``\"\"\"`` docstring) of generated source.

    Every character that is not printable is written as its Python escape: line breaks of any
    kind (``\\r``, ``\\n``, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``,
    ``\\u2029``), NUL and the other control characters, so the text can never end the line it is
    in.  ``quoted`` escapes a backslash and a double quote too, so that text inside a docstring
    neither ends it nor starts an escape sequence.  Printable text, the common case, comes back
    unchanged (in a comment, quotes and backslashes are inert).
    """
    special = _QUOTED if quoted else {}
    if text.isprintable() and not any(c in text for c in special):
        return text
    return "".join(special.get(c) or _CONTROL.get(c) or (c if c.isprintable() else _hex(c)) for c in text)


def _hex(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def sanitize(name: str) -> str:
    """A spec name as a Python identifier: ``h.W_f`` -> ``h_W_f``, ``c[t-1]`` -> ``c_t_1``."""
    out = re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "v"
    return f"v_{out}" if out[0].isdigit() else out


LOOP_INDEX = re.compile(r"[ijku]\d+$")  # loop indices (i0, j1, k2, u0): reserved as a family


class Namer:
    """Unique Python identifiers for one generated module, none of them in ``reserved``."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.reserved = set(reserved)
        self.used: set[str] = set()

    def fresh(self, base: str) -> str:
        base = sanitize(base)
        name, k = base, 0
        while name in self.used or name in self.reserved or LOOP_INDEX.match(name):
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name


__all__ = ["LOOP_INDEX", "Namer", "escape", "sanitize"]


def code_key(source: str) -> str:
    """A generated function's code up to the names of its own variables: every parameter and variable it
    assigns renamed by order of first appearance, comments and strings (its docstring) dropped; every other
    name (a global, a helper, an attribute) kept.  Two functions with the same key compute the same thing from
    their arguments, so a module needs only one of them (Numba then compiles it once)."""
    import ast
    import io
    import tokenize

    tree = ast.parse(source)
    local: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            local.add(node.name)
            local.update(a.arg for a in node.args.args)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            local.add(node.id)
    names: dict[str, str] = {}
    out: list[str] = []
    previous = ""
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.STRING):
            continue
        text = tok.string
        if tok.type == tokenize.NAME and text in local and previous != ".":
            text = names.setdefault(text, f"_{len(names)}")
        out.append(text)
        previous = tok.string
    return " ".join(out)
