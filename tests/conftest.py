"""Shared pytest options: ``pytest --update-golden`` rewrites the golden files instead of comparing."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files (tests/golden/, tests/bad_specs/*.err) from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


# Tests of the language, autodiff and training run on the reference interpreter, which
# needs no compilation; the compiled backend's tests (test_codegen_cpu.py) ask for
# target="cpu" explicitly and compare it against the interpreter.
os.environ.setdefault("SPECC_TARGET", "interp")
