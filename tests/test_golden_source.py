"""Golden files of the generated Numba source of specs/lstm.nn (optimised forward, and
forward-and-backward).  A change to the generator, the passes or autodiff shows up here as a
readable diff; ``pytest --update-golden`` rewrites the files after a deliberate change."""

from pathlib import Path

import pytest

import specc
from specc.transforms import passes
from specc.backends import generator

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def _source(kind: str) -> str:
    model = specc.compile(str(ROOT / "specs" / "lstm.nn"))
    graph = model.program.graph if kind == "forward" else model.grad_program().graph
    return generator("cpu").generate(passes.optimize(graph), f"{model.name}_{kind}").source


@pytest.mark.parametrize("kind", ["forward", "grad"])
def test_lstm_generated_source_golden(kind: str, update_golden: bool) -> None:
    text = _source(kind)
    golden = GOLDEN / f"lstm.{kind}.cpu.py"
    if update_golden:
        golden.write_text(text)
    assert golden.is_file(), f"{golden} missing: run pytest --update-golden"
    assert text == golden.read_text(), f"generated source of {kind} differs from {golden.name}"
    compile(text, golden.name, "exec")  # it is valid Python
