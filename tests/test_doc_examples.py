"""Every complete example in the documentation compiles.

A complete example is a fenced code block of README.md or docs/*.md that
defines a model. A block that starts with a `# name.nn` comment is saved under
that name first, so that an example can `use` another. Two kinds of block are
marked in their fence: ```` ```nn excerpt ```` (lines left out on purpose: not
compiled) and ```` ```nn error ```` (a spec with a mistake: it must fail, and if
the next block shows `$ specc check name.nn`, with exactly the message shown).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import specc
from specc.errors import SpeccError

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
MODEL = re.compile(r"^\s*model\s+\w+\s*\(", re.M)
FILE_NAME = re.compile(r"#\s*([\w.-]+\.nn)\b")


@dataclass
class Block:
    doc: Path
    line: int
    info: str
    text: str

    @property
    def file_name(self) -> str | None:
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        m = FILE_NAME.match(first)
        return m.group(1) if m else None


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    return [Block(doc, text[:m.start()].count("\n") + 1, m.group(1).strip(), m.group(2))
            for m in FENCE.finditer(text)]


def examples() -> list[tuple[Block, Block | None]]:
    """Each block that defines a model, with the block after it (which may show its error)."""
    out = []
    for doc in DOCS:
        bs = blocks(doc)
        for i, b in enumerate(bs):
            if MODEL.search(b.text) and "excerpt" not in b.info.split():
                out.append((b, bs[i + 1] if i + 1 < len(bs) else None))
    return out


EXAMPLES = examples()


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 8, [f"{b.doc.name}:{b.line}" for b, _ in EXAMPLES]


@pytest.mark.parametrize("block,after", EXAMPLES, ids=[f"{b.doc.name}:{b.line}" for b, _ in EXAMPLES])
def test_example_compiles(block: Block, after: Block | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for other in blocks(block.doc):  # the files an example may `use`
        if other.file_name:
            (tmp_path / other.file_name).write_text(other.text)
    name = block.file_name or "example.nn"
    (tmp_path / name).write_text(block.text)
    monkeypatch.chdir(tmp_path)
    if "error" not in block.info.split():
        specc.compile(name)
        return
    with pytest.raises(SpeccError) as e:
        specc.compile(name)
    if after is not None and after.text.startswith(f"$ specc check {name}\n"):
        shown = after.text.split("\n", 1)[1].rstrip("\n")
        assert e.value.render() == shown
