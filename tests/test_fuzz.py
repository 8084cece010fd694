"""Hostile and careless spec text: a clean error with a location, or accepted; never a traceback.

Two parts: the classes of issue 12 one by one (deep nesting of every kind, a file that is not UTF-8,
line separators other than ``\\n`` in comments, file names that look like spec text), and a fuzz
run of a few thousand cases with a fixed seed (benchmarks/fuzz_specs.py: token and line mutations of
every spec in specs/ and tests/bad_specs/, plus grammar-aware generation), each case under a time
and memory limit in a worker process.  The release check runs the same script with 12,000 cases.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import specc
from specc.cli import main
from specc.errors import ParseError, SpeccError
from specc.frontend.parser import MAX_NESTING

ROOT = Path(__file__).resolve().parent.parent


def _fuzz_module():
    if "fuzz_specs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fuzz_specs", ROOT / "benchmarks" / "fuzz_specs.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["fuzz_specs"] = mod  # by name: the worker processes unpickle its functions
        spec.loader.exec_module(mod)
    return sys.modules["fuzz_specs"]


def model_with(expr: str) -> str:
    return f"dim B\nmodel m(x: f32[B, 4]) {{\n  y = {expr}\n  loss = mean(y)\n}}\n"


# ---- deep nesting ----------------------------------------------------------------------------------
DEEP = {
    "calls": lambda n: "tanh(" * n + "x" + ")" * n,
    "unary minus": lambda n: "-" * n + "x",
    "index chain": lambda n: "sum(x)" + "[0]" * n,
    "power chain": lambda n: " ** ".join(["x"] * (n + 1)),
    "parentheses in calls": lambda n: "abs((" * n + "x" + "))" * n,
    "lists": lambda n: "concat(" + "[" * n + "x" + "]" * n + ")",
    "kwargs": lambda n: "softmax(" * n + "x" + ", axis=-1)" * n,
}


@pytest.mark.parametrize("kind", sorted(DEEP))
@pytest.mark.parametrize("n", [MAX_NESTING + 1, 250, 500, 2000])
def test_deep_nesting_is_a_located_error(kind, n):
    with pytest.raises(ParseError, match="nesting too deep") as e:
        specc.compile(model_with(DEEP[kind](n)), target="interp")
    assert e.value.span is not None and e.value.span.line == 3


LONG = {  # left-associative chains: walked in a loop by the front end, not nesting
    "sum": lambda n: " + ".join(["x"] * (n + 1)),
    "product": lambda n: " * ".join(["x"] * (n + 1)),
    "mixed": lambda n: " + ".join(["x * x - x"] * (n // 2 + 1)),
}


@pytest.mark.parametrize("kind", sorted(LONG))
def test_long_sums_and_products_are_not_nesting(kind):
    assert specc.compile(model_with(LONG[kind](3000)), target="interp").name == "m"


@pytest.mark.parametrize("kind", ["calls", "unary minus", "power chain", "parentheses in calls"])
def test_nesting_up_to_the_limit_is_accepted_even_from_a_deep_stack(kind):
    """The limit leaves room: a caller already ~300 frames deep still elaborates the deepest allowed spec."""
    def deep(k):
        return specc.compile(model_with(DEEP[kind](MAX_NESTING - 1)), target="interp") if k == 0 else deep(k - 1)

    assert deep(300).program is not None


def test_unary_plus_chain_builds_no_nesting():
    """`+` is dropped by the grammar (no node), so any number of them is accepted."""
    assert specc.compile(model_with("+" * 5000 + "x"), target="interp").name == "m"


def test_deep_nesting_through_the_cli(tmp_path, capsys):
    spec = tmp_path / "deep.nn"
    spec.write_text(model_with(DEEP["calls"](250)))
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:3:") and "nesting too deep" in err and "Traceback" not in err


def test_a_long_chain_of_layers_is_a_located_error(tmp_path, capsys):
    """The elaborator recurses per layer call; past its recursion the error is at the model, not a traceback."""
    parts = ["dim B", "layer l0(x: [..., D]) -> [..., D] {\n  return x\n}"]
    parts += [f"layer l{i}(x: [..., D]) -> [..., D] {{\n  return l{i - 1}(x)\n}}" for i in range(1, 400)]
    parts.append("model m(x: f32[B, 4]) {\n  loss = mean(l399(x))\n}")
    spec = tmp_path / "chain.nn"
    spec.write_text("\n".join(parts) + "\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert re.search("nest(s|ed) too deeply", err) and "Traceback" not in err and err.startswith(f"{spec}:")


# ---- sizes and initialisers ----------------------------------------------------------------------
@pytest.mark.parametrize("size", ["99999999999999999999999", "9223372036854775807", "2**62"])
def test_parameter_that_no_machine_can_hold_is_a_spec_error(size):
    with pytest.raises(SpeccError, match="more than any machine can hold|is too large") as e:
        specc.compile(model_with(f"dense(x, {size})"), target="interp")
    assert e.value.span.line == 3 and e.value.span.source.name == "<string>"


def test_parameter_larger_than_memory_is_refused_before_allocating(monkeypatch):
    import specc.limits

    monkeypatch.setattr(specc.limits, "memory_bytes", lambda: 1 << 20)  # a machine of 1 MiB
    model = specc.compile(model_with("dense(x, 2**20)"), target="interp")  # 16 MiB of float32
    with pytest.raises(SpeccError, match=r"'y.W' \[4, 1048576\] takes 16,777,216 bytes"):
        model.init_params()


@pytest.mark.parametrize("init", ["normal(-1)", "uniform(0, 1e308 * 10)"])
def test_initializer_with_bad_arguments_names_the_spec_line(init):
    text = f"dim B\nmodel m(x: f32[B, 4]) {{\n  param W: [4, 4] = {init}\n  loss = mean(x @ W)\n}}\n"
    try:
        model = specc.compile(text, target="interp")
    except SpeccError as e:  # refused by check: also fine, if located
        assert e.span is not None and e.span.line == 3
        return
    with pytest.raises(SpeccError, match="cannot initialise parameter 'W'") as e:
        model.init_params()
    assert e.value.span.line == 3


# ---- text that is not what it seems ----------------------------------------------------------------
def test_non_utf8_file_is_a_located_error(tmp_path, capsys):
    spec = tmp_path / "latin1.nn"
    spec.write_bytes("dim B\nmodel m(x: f32[B, 4]) {\n  # caf\xe9\n".encode("latin-1") + b"  loss = mean(x)\n}\n")
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{spec}:3:8: error: not UTF-8 text (byte 0xe9)"
    assert "caf" not in err  # the file is not quoted: it may not be a spec at all


def test_binary_file_is_one_line_of_error(tmp_path, capsys):
    spec = tmp_path / "bin.nn"
    spec.write_bytes(bytes(range(256)) * 4)
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "not UTF-8 text" in err and "Traceback" not in err and len(err.splitlines()) <= 2


@pytest.mark.parametrize("sep", ["\f", "\u2028", "\u2029", "\x0b", "\x1c", "\x85", "\r"])
def test_odd_line_separators_in_comments_do_not_shift_error_lines(sep):
    text = f"dim B\n# one{sep}two{sep}three\nmodel m(x: f32[B, 4]) {{\n  # a{sep}b\n  y = x + nope\n  loss = mean(y)\n}}\n"
    with pytest.raises(SpeccError) as e:
        specc.compile(text, target="interp")
    assert e.value.span.line == 5
    rendered = e.value.render()
    assert "    5 |   y = x + nope" in rendered and rendered.splitlines()[0].startswith("<string>:5:11:")


def test_crlf_file_reports_the_right_line_and_column():
    text = "dim B\r\nmodel m(x: f32[B, 4]) {\r\n  y = x + nope\r\n  loss = mean(y)\r\n}\r\n"
    with pytest.raises(SpeccError) as e:
        specc.compile(text, target="interp")
    assert str(e.value.span) == "<string>:3:11" and "\r" not in e.value.render()


@pytest.mark.parametrize("name", ["a{b}.nn", "x\ny.nn", "{", "model m(x: f32[B]) {"])
def test_a_path_on_the_command_line_is_always_a_path(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    Path(name).write_text("dim B\nmodel m(x: f32[B, 4]) {\n  loss = mean(x * q)\n}\n") if "/" not in name else None
    assert main(["check", name]) == 1
    err = capsys.readouterr().err
    assert f"{name}:3:" in err and "<string>" not in err
    assert main(["check", name + ".missing"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_compile_still_takes_source_text_and_paths():
    assert specc.compile("dim B\nmodel m(x: f32[B, 4]) {\n  loss = mean(x)\n}\n", target="interp").name == "m"
    assert specc.compile(str(ROOT / "specs" / "mlp.nn"), target="interp").name == "classify"
    assert specc.compile(ROOT / "specs" / "mlp.nn", target="interp").name == "classify"


def test_bom_at_the_start_of_a_spec_file_is_ignored(tmp_path):
    spec = tmp_path / "bom.nn"
    spec.write_bytes("\ufeffdim B\nmodel m(x: f32[B, 4]) {\n  loss = mean(x)\n}\n".encode())
    assert specc.compile(spec, target="interp").name == "m"


# ---- the fuzz run --------------------------------------------------------------------------------
FUZZ_SEED = 20261204
FUZZ_CASES = 4000


def test_cases_are_reproducible():
    fz = _fuzz_module()
    corpus = fz.seeds()
    pool = sorted({t for _n, text in corpus for t in fz.TOKEN.findall(text) if t.strip()})
    assert [fz.make_case(3, i, corpus, pool) for i in range(30)] == [fz.make_case(3, i, corpus, pool)
                                                                    for i in range(30)]
    assert len({fz.make_case(3, i, corpus, pool)[1] for i in range(30)}) > 25


def test_fuzz_detects_what_it_should():
    """The harness itself: a located error, an accepted spec, and a traceback are told apart."""
    fz = _fuzz_module()
    assert fz.check_text(model_with("x + nope")).kind == "error"
    assert fz.check_text(model_with("x * 2")).kind == "ok"
    import specc.cli as cli

    real = cli.cmd_check

    def broken(_args):
        raise KeyError("boom")

    cli.cmd_check = broken
    try:
        out = fz.check_text(model_with("x"))
    finally:
        cli.cmd_check = real
    assert out.kind == "traceback" and "KeyError" in out.signature


def test_fuzz_a_few_thousand_specs():
    """Every case: a clean SpeccError with a location, or accepted; none over its time or memory limit.

    Failures list each distinct finding; those whose last frame is in specc/frontend/elaborate.py
    are recorded with a minimal reproducer in the project notes (elab_crashes.md).
    """
    fz = _fuzz_module()
    results = fz.run(FUZZ_CASES, seed=FUZZ_SEED, workers=2, limit_s=3.0, memory_mb=2048)
    assert len(results) == FUZZ_CASES
    s = fz.summary(results)
    assert s["counts"].get("ok", 0) > 50 and s["counts"].get("error", 0) > 1000, s
    bad = [o for o in results if o.kind not in ("ok", "error")]
    seen: dict[str, object] = {}
    for o in bad:
        seen.setdefault(o.signature or o.kind, o)
    report = "\n".join(f"  {o.kind}: {o.detail} [case {o.index}, {o.origin}]" for o in seen.values())
    assert not bad, f"{len(bad)} of {FUZZ_CASES} cases failed ({len(seen)} distinct):\n{report}"
