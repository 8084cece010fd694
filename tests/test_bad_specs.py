"""Bad specs and the messages they get.

Each ``tests/bad_specs/NAME.nn`` is a spec with one mistake; ``NAME.err`` holds
the exact message ``specc.compile`` must give for it (location, source line,
underline, notes, hint).  ``pytest --update-golden`` rewrites the ``.err``
files from the current output: read the diff as a user would before keeping it.

The specs compile by a path relative to the repository root, so the file names
in the golden text are the same on every machine.  A token-level fuzz over a
good spec checks that a broken spec only ever raises a SpeccError.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import specc
from specc.errors import SpeccError

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "bad_specs"
CASES = sorted(p.stem for p in BAD.glob("*.nn"))


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def compile_error(name: str) -> SpeccError:
    path = f"tests/bad_specs/{name}.nn"
    try:
        specc.compile(path)
    except SpeccError as e:
        return e
    pytest.fail(f"{path} compiled, but it should fail")


@pytest.mark.parametrize("name", CASES)
def test_message_matches_golden(name: str, at_root: None, update_golden: bool) -> None:
    text = compile_error(name).render() + "\n"
    golden = BAD / f"{name}.err"
    if update_golden:
        golden.write_text(text)
        return
    assert golden.is_file(), f"no {golden.name}: run pytest tests/test_bad_specs.py --update-golden"
    assert text == golden.read_text()


@pytest.mark.parametrize("name", CASES)
def test_message_points_into_the_spec(name: str, at_root: None) -> None:
    lines = compile_error(name).render().splitlines()
    assert re.match(rf"tests/bad_specs/{name}\.nn:\d+:\d+: error: \S", lines[0]), lines[0]
    assert re.match(r" +\d+ \| ", lines[1]) and re.match(r" +\| *\^+$", lines[2]), "\n".join(lines[:3])


def test_every_spec_has_a_golden_and_every_golden_a_spec() -> None:
    assert CASES, "no bad specs found"
    assert sorted(p.stem for p in BAD.glob("*.err")) == CASES


def test_bad_specs_raise_only_specc_errors(at_root: None) -> None:
    others = []
    for name in CASES:
        try:
            specc.compile(f"tests/bad_specs/{name}.nn")
        except SpeccError:
            continue
        except Exception as e:  # noqa: BLE001 - the point is to catch anything else
            others.append(f"{name}: {type(e).__name__}: {e}")
        else:
            others.append(f"{name}: compiled")
    assert not others, "\n".join(others)


# ---- fuzz: single-token edits of a good spec -------------------------------------------
GOOD = """dim T, B
model m(x: f32[T, B, 8], y: i32[B]) { h = lstm(x, hidden=16)
 logits = dense(h[-1], 10)
 loss = cross_entropy(logits, y) }"""
TOKEN = re.compile(r'"[^"\n]*"|\d+\.\d*|\d+|[A-Za-z_]\w*|//|\*\*|->|\.\.\.|\S')
REPLACEMENTS = ["", "(", ")", "[", "]", "{", "}", ",", "=", ":", "+", "-", "@", "//", "0", "-1", "2.5", "1e400",
                "x", "y", "h", "t", "T", "B", "i32", "...", '"s"', "true", "model", "dim", "param", "recur", "init",
                "lstm", "zeros", "loss", "[]"]


def edits(text: str):
    for m in TOKEN.finditer(text):
        for r in REPLACEMENTS:
            if r != m.group():
                yield text[:m.start()] + r + text[m.end():]


def test_fuzz_single_token_edits_give_success_or_a_specc_error() -> None:
    specc.compile(GOOD)  # the unedited spec is good
    crashes = {}
    for variant in edits(GOOD):
        try:
            specc.compile(variant)
        except SpeccError as e:
            e.render()  # rendering must not fail either
        except Exception as e:  # noqa: BLE001
            crashes.setdefault(f"{type(e).__name__}: {e}", variant)
    assert not crashes, "\n\n".join(f"{k}\n{v}" for k, v in crashes.items())
