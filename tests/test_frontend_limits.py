"""Hostile and absurd specs get a clean, located error from the front end, quickly (issue 12).

`use` reads only .nn files of UTF-8 text and never shows the content of any
other file; nesting deeper than the compiler can follow, sizes, subscripts and
lags beyond fixed bounds, and initializer arguments that are not finite numbers
are errors at the spot, never a traceback, a hang or a run-time IndexError.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import specc
from specc.errors import Source, SpeccError

SECRET = "s3cret-token-do-not-print"


def _error(text_or_path: str | Path) -> SpeccError:
    start = time.perf_counter()
    with pytest.raises(SpeccError) as e:
        specc.compile(str(text_or_path))
    assert time.perf_counter() - start < 10
    return e.value


def _use(tmp_path: Path, target: str) -> SpeccError:
    spec = tmp_path / "spec.nn"
    spec.write_text(f'use "{target}"\ndim B\nmodel m(x: f32[B, 4]) {{ loss = mean(x) }}\n')
    err = _error(spec)
    text = err.render()
    assert SECRET not in text and text.startswith(f"{spec}:1:1: error: "), text
    assert len(err.message.splitlines()) == 1 and not err.notes
    return err


# ---- `use` ------------------------------------------------------------------------------------------
def test_use_of_a_file_that_is_not_nn_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "secrets.txt").write_text(f"TOKEN={SECRET}\n")
    assert "loads .nn files only" in _use(tmp_path, "secrets.txt").message
    assert "loads .nn files only" in _use(tmp_path, "/proc/self/environ").message
    assert "loads .nn files only" in _use(tmp_path, "../../../../../../etc/passwd").message


def test_use_of_a_symlink_to_another_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets.txt").write_text(f"layer {SECRET}\n")
    os.symlink(tmp_path / "secrets.txt", tmp_path / "lib.nn")
    assert "links to a file that is not one" in _use(tmp_path, "lib.nn").message


def test_use_of_binary_or_non_utf8_nn_files_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bin.nn").write_bytes(b"\x7fELF\x00\x01" + SECRET.encode() + b"\x00\x00")
    assert _use(tmp_path, "bin.nn").message == "'bin.nn' is not a spec: it holds control characters"
    (tmp_path / "latin.nn").write_bytes(b"# caf\xe9 " + SECRET.encode() + b"\n")
    assert _use(tmp_path, "latin.nn").message == "cannot read 'latin.nn': not UTF-8 text"


def test_use_of_a_good_nn_file_still_works(tmp_path: Path) -> None:
    (tmp_path / "lib.nn").write_text("layer twice(x: [..., D]) -> [..., D] { return x * 2.0 }\n")
    spec = tmp_path / "spec.nn"
    spec.write_text('use "lib.nn"\ndim B\nmodel m(x: f32[B, 4]) { loss = mean(twice(x)) }\n')
    assert specc.compile(str(spec)).name == "m"


# ---- nesting --------------------------------------------------------------------------------------
def _layer_chain(n: int) -> str:
    s = "dim B\nlayer f0(x: [B, 4]) -> [B, 4] { return x }\n"
    for i in range(1, n):
        s += f"layer f{i}(x: [B, 4]) -> [B, 4] {{ return f{i - 1}(x) }}\n"
    return s + f"model m(x: f32[B, 4]) {{ loss = mean(f{n - 1}(x)) }}\n"


def test_a_chain_of_layers_compiles_until_it_is_too_deep() -> None:
    assert specc.compile(_layer_chain(60)).name == "m"
    err = _error(_layer_chain(300))
    assert err.message.startswith("layer calls are nested too deeply (")
    assert err.span.line > 1 and len(err.notes) == 4  # three calls, then how many more


def _elaborate_with_little_stack(text: str, room: int) -> SpeccError:
    """Parse ``text`` with the whole stack, then elaborate it with only ``room`` Python frames to spare:
    this tests the elaborator's guard whatever nesting the parser itself accepts."""
    from specc.frontend.context import stack_room
    from specc.frontend.elaborate import Elaborator, load_module

    mod = load_module(Source("<string>", text))

    def deeper() -> None:
        if stack_room() > room:
            return deeper()
        Elaborator(mod).model(mod.models[0])

    with pytest.raises(SpeccError) as e:
        deeper()
    return e.value


@pytest.mark.parametrize("text", [  # nested within the parser's limit (MAX_NESTING), so the elaborator's guard is tested
    "mean(" + "relu(" * 95 + "x" + ")" * 95 + ")",
    "mean(" + "x * (" * 95 + "x" + ")" * 95 + ")",
    "mean(" + "-" * 95 + "x)",
    "mean(" + "relu(dense(" * 45 + "x" + ", 4))" * 45 + ")",
])
def test_deeply_nested_expressions_are_a_located_error(text: str) -> None:
    err = _elaborate_with_little_stack("dim B\nmodel m(x: f32[B, 4]) { loss = " + text + " }\n", 300)
    assert err.message == "this expression is nested too deeply for the compiler"
    assert err.span.line == 2


def test_a_long_sum_is_not_deep() -> None:
    m = specc.compile("dim B\nmodel m(x: f32[B, 4]) { loss = mean(" + " + ".join(["x"] * 400) + ") }\n")
    assert m.name == "m"


# ---- bounds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,message,where", [
    ("h = x[-11]\n  loss = mean(h)", "index -11 is out of range for axis 0 of size 8", "x[-11]"),
    ("h = x[-100000000000000000000000]\n  loss = mean(h)",
     "a subscript is too large: a number of 24 digits (the largest is 2,147,483,647)", "-100000000000000000000000"),
    ("loss = mean(dense(x, 99999999999999999999999))",
     "size 'units' is too large: a number of 23 digits (the largest is 2,147,483,647)", "99999999999999999999999"),
    ("loss = mean(x) + mean(zeros([B, 4294967296]))",
     "a size is too large: 4,294,967,296 (the largest is 2,147,483,647)", "4294967296"),
    ("param W: [4, 1000000000] = zeros\n  loss = mean(x[0] @ W)",
     "parameter 'W' would hold 4,000,000,000 numbers (16.0 GB as f32); the largest parameter holds 2,147,483,647",
     "[4, 1000000000]"),
    ("param W: [4, 4] = normal(-1)\n  loss = mean(x[0] @ W)", "normal(std) needs std >= 0, got -1", "-1"),
    ("param W: [4, 4] = normal(1" + "0" * 400 + ")\n  loss = mean(x[0] @ W)",
     "an initializer argument must be a finite number", "1" + "0" * 400),
    ("recur t over x {\n    init h = zeros([B, 4])\n    h[t] = h[t-10000000] + x[t]\n  }\n  loss = mean(h)",
     "'h' is read 10,000,000 steps back; a recurrence reads at most 1024 steps back", "h[t-10000000]"),
])
def test_absurd_sizes_are_located_errors(body: str, message: str, where: str) -> None:
    text = "dim B\nmodel m(x: f32[8, B, 4]) {\n  " + body + "\n}\n"
    err = _error(text)
    assert err.message == message
    line = text.splitlines()[err.span.line - 1]
    assert line[err.span.col - 1:].startswith(where), (line, err.span)


def test_a_large_but_sane_lag_is_accepted() -> None:
    m = specc.compile("dim T, B\nmodel m(x: f32[T, B, 4]) {\n  recur t over x {\n    init h = zeros([B, 4])\n"
                      "    h[t] = 0.5 * h[t-24] + x[t]\n  }\n  loss = mean(h)\n}\n")
    scan = next(e for e in m.program.graph.eqns if e.op == "scan")
    assert scan.params["states"] == (("h", 24),)


# ---- subscripts on symbolic sizes, checked when the sizes are known ------------------------------------
def test_a_constant_subscript_out_of_a_symbolic_axis_is_a_located_input_error() -> None:
    import numpy as np
    from specc.errors import InputError

    m = specc.compile("dim T, B\nmodel m(x: f32[T, B, 4]) {\n  h = x[-11]\n  loss = mean(h)\n}\n")
    out = m.forward(m.init_params(), x=np.ones((12, 2, 4), np.float32))
    assert out["loss"] == 1.0
    with pytest.raises(InputError) as e:
        m.forward(m.init_params(), x=np.ones((8, 2, 4), np.float32))
    assert e.value.message == "'x[-11]' reads index -11 of axis 0, which has 8 entries (T = 8)"
    assert (e.value.span.line, e.value.span.col) == (3, 7)


def test_a_slice_shorter_than_its_type_is_a_located_input_error() -> None:
    import numpy as np
    from specc.errors import InputError

    m = specc.compile("dim B, D\nlayer first(x: [B, D], units H) -> [B, H] { return x[:, 0:H] }\n"
                      "model m(x: f32[B, D]) {\n  h = first(x, units=6)\n  loss = mean(h)\n}\n")
    assert m.forward(m.init_params(), x=np.ones((2, 6), np.float32))["loss"] == 1.0
    with pytest.raises(InputError, match=r"'x\[:, 0:H\]' selects 4 of the 4 entries of axis 1, but its type says "
                                         r"6 \(D = 4\)"):
        m.forward(m.init_params(), x=np.ones((2, 4), np.float32))
