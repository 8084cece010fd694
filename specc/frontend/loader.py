"""Loading a spec and the files it ``use``s.

In: the spec's :class:`~specc.errors.Source` (and the standard library
``specc/lib/std.nn``, parsed once per process).
Out: a :class:`Module`: every layer, model, ``dim`` declaration and ``train``
block visible to the spec, and for each file the files it uses (so that a
layer sees only the sizes of its own file and of what that file uses).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import ast as A
from ..errors import Source, SpecNameError, Span

STDLIB = Path(__file__).resolve().parent / "lib" / "std.nn"
STD_NAME = "<std>/std.nn"  # how errors name the standard library: the same on every machine
MAX_SPEC_BYTES = 16 * 2**20  # a used file larger than this is not a spec anyone wrote
BINARY = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # control characters other than tab, newlines, form feed


@dataclass
class Module:
    """All definitions visible to a spec: its own, those it uses, and the standard library."""

    layers: dict[str, A.LayerDef]
    models: list[A.ModelDef]
    dims: list[A.DimDecl]
    train: list[A.TrainBlock]
    sources: list[Source]
    uses: dict[Source, list[Source]] = field(default_factory=dict)  # file -> the files it `use`s

    def visible_from(self, source: Source | None) -> set[Source]:
        """A file and every file it uses, directly or through others."""
        seen: set[Source] = set()
        todo = [source] if source is not None else []
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo.extend(self.uses.get(s, ()))
        return seen


def load_module(source: Source, *, stdlib: bool = True) -> Module:
    from .parser import parse

    mod = Module({}, [], [], [], [])
    loaded: dict[str, Source] = {}

    def add(src: Source, is_root: bool, tree: A.Module | None = None) -> Source:
        key = str(Path(src.name).resolve()) if src.name and not src.name.startswith("<") else src.name
        if key in loaded:
            return loaded[key]
        loaded[key] = src
        mod.sources.append(src)
        mod.uses[src] = []
        tree = tree or parse(src)
        for item in tree.items:
            if isinstance(item, A.Use):
                mod.uses[src].append(add(_read_use(src, item), False))
            elif isinstance(item, A.LayerDef):
                _add_layer(mod, item, src)
            elif isinstance(item, A.ModelDef):
                if is_root:
                    first = next((m for m in mod.models if m.name == item.name), None)
                    if first is not None:
                        raise SpecNameError(f"model '{item.name}' is defined twice", head_span(item.span, item.name),
                                            notes=[f"first defined at {first.span}"])
                    mod.models.append(item)
            elif isinstance(item, A.DimDecl):
                mod.dims.append(item)
            elif isinstance(item, A.TrainBlock) and is_root:
                mod.train.append(item)
        return src

    if stdlib:
        std_source, std_tree = _parse_stdlib(STDLIB.read_text())
        add(std_source, False, std_tree)
    add(source, True)
    return mod


def _add_layer(mod: Module, item: A.LayerDef, src: Source) -> None:
    """A layer replaces the standard library's of the same name; any other second definition is an error."""
    prev = mod.layers.get(item.name)
    if prev is not None and prev.span.source is not None and (
            prev.span.source.name != STD_NAME and prev.span.source is not src or prev.span.source is src):
        raise SpecNameError(f"layer '{item.name}' is defined twice", item.name_span,
                            notes=[f"first defined at {prev.span}"])
    mod.layers[item.name] = item


@functools.lru_cache(maxsize=2)
def _parse_stdlib(text: str) -> tuple[Source, A.Module]:
    """The standard library's AST, parsed once per text (parsing dominates the compile time of a small spec)."""
    from .parser import parse

    src = Source(STD_NAME, text)
    return src, parse(src)


def _read_use(src: Source, item: A.Use) -> Source:
    """The file a `use "path"` names, relative to the file that says it (to the working directory for text).

    Only a .nn file of UTF-8 text is read, and an error about any other file never shows its content:
    `use` must not become a way to print /proc/self/environ or a symlinked secret.
    """
    base = Path(src.name).parent if not src.name.startswith("<") else Path(".")
    shown = os.path.normpath(base / item.path) if item.path else str(base)
    path = Path(shown).resolve()
    if path.is_dir():
        raise SpecNameError(f"'{item.path}' is a directory, not a .nn file", item.span)
    if Path(shown).suffix != ".nn":
        raise SpecNameError(f"`use` loads .nn files only, and '{item.path}' is not one", item.span)
    if not path.is_file():
        raise SpecNameError(f"cannot find '{item.path}' (looked for {shown})", item.span)
    if path.suffix != ".nn":
        raise SpecNameError(f"`use` loads .nn files only, and '{item.path}' links to a file that is not one",
                            item.span)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecNameError(f"'{item.path}' is too large for a spec ({size:,} bytes)", item.span)
        data = path.read_bytes()
    except OSError as e:
        raise SpecNameError(f"cannot read '{item.path}': {e.strerror or 'read error'}", item.span) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecNameError(f"cannot read '{item.path}': not UTF-8 text", item.span) from None
    if BINARY.search(text):
        raise SpecNameError(f"'{item.path}' is not a spec: it holds control characters", item.span)
    return Source(shown, text)


def head_span(span: Span, name: str) -> Span:
    """The head of a definition, `model m` or `layer f`: its keyword and name, not its whole body."""
    if span.source is None:
        return span
    m = re.compile(rf"\w+\s+{re.escape(name)}\b").match(span.source.line(span.line), span.col - 1)
    return Span(span.source, span.line, span.col, span.line, m.end() + 1) if m else span
