"""Layer calls: size variables are local to a layer, solved from shapes, and `check` agrees with `compile`.

`specc check` also elaborates the layers that no model calls, for every size of
their arguments; it goes through the same unification as a call, so a layer
that a call accepts is accepted on its own and vice versa.
"""

from __future__ import annotations

import pytest

import specc
from specc.cli import main
from specc.errors import ShapeError, SpeccError, Source
from specc.frontend.elaborate import check_layers


def _check(text: str) -> None:
    """What `specc check` does for a spec given as text: compile its model, then check every layer alone."""
    specc.compile(text)
    check_layers(Source("<string>", text))


def _types(model) -> dict[str, str]:
    return {v.name: str(v.type) for e in model.program.graph.walk() for v in e.outputs if v.name}


HALVES = """
dim B
layer halves(x: [B, 2 * H], hidden H) -> [B, H] {
  return x[:, 0:H] + x[:, H:2*H]
}
model m(x: f32[B, WIDTH], y: i32[B]) {
  h = halves(x, hidden=HIDDEN)
  loss = cross_entropy(h, y)
}
"""


# ---- issue 13, bug 3: a signature size written as an expression -------------------------------------
def test_size_expression_with_a_size_argument_checks_and_compiles(tmp_path, capsys) -> None:
    text = HALVES.replace("WIDTH", "8").replace("HIDDEN", "4")
    m = specc.compile(text)
    assert _types(m)["h"] == "f32[B, 4]"
    check_layers(Source("<string>", text))  # raised "expected 2 * H = 2*H, got 2*H" before
    path = tmp_path / "halves.nn"
    path.write_text(text)
    assert main(["check", str(path)]) == 0
    assert "ok: model m" in capsys.readouterr().out


def test_size_expression_mismatch_is_a_located_error_in_check_and_compile(tmp_path, capsys) -> None:
    text = HALVES.replace("WIDTH", "8").replace("HIDDEN", "3")
    with pytest.raises(ShapeError) as e:
        specc.compile(text)
    assert e.value.message == "argument 'x' of layer 'halves': expected 2 * H = 6, got 8"
    assert (e.value.span.line, e.value.span.col) == (7, 14)  # the argument x of the call
    path = tmp_path / "halves.nn"
    path.write_text(text)
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:7:14: error: argument 'x' of layer 'halves': expected")


def test_an_uncalled_layer_is_checked_for_every_size() -> None:
    _check("""
dim B
layer halves(x: [B, 2 * H], hidden H) -> [B, H] { return x[:, 0:H] + x[:, H:2*H] }
layer half(x: [B, 2 * K]) -> [B, K] { return x[:, 0:K] }
layer grow(x: [..., D], units N) -> [..., D + N] { return concat(x, dense(x, N), axis=-1) }
model m(x: f32[B, 3]) { loss = mean(x) }
""")


def test_an_uncalled_wrong_layer_is_a_located_error_in_check() -> None:
    text = """
dim B
layer halves(x: [B, 2 * H], hidden H) -> [B, H] { return x }
model m(x: f32[B, 3]) { loss = mean(x) }
"""
    specc.compile(text)  # compile elaborates only what the model calls
    with pytest.raises(ShapeError) as e:
        check_layers(Source("<string>", text))
    assert e.value.message == "layer 'halves' returns [B, 2*H] but declares -> [B, H] = [B, H]"
    assert (e.value.span.line, e.value.span.col) == (3, 42)
    assert "in layer 'halves', checked for every size of its arguments" in e.value.notes


def test_size_solved_from_a_constant_or_a_multiple_of_a_symbol() -> None:
    layer = "dim B, W\nlayer half(x: [B, 2 * K]) -> [B, K] { return x[:, 0:K] }\n"
    m = specc.compile(layer + "model m(x: f32[B, 10]) { h = half(x)\n loss = mean(h) }")
    assert _types(m)["h"] == "f32[B, 5]"
    m = specc.compile(layer + "model m(x: f32[B, 2 * W]) { h = half(x)\n loss = mean(h) }")
    assert _types(m)["h"] == "f32[B, W]"


@pytest.mark.parametrize("width,got", [("7", "7"), ("W", "W")])
def test_unsolvable_size_is_a_located_error(width: str, got: str) -> None:
    text = (f"dim B, W\nlayer half(x: [B, 2 * K]) -> [B, K] {{ return x[:, 0:K] }}\n"
            f"model m(x: f32[B, {width}]) {{ h = half(x)\n loss = mean(h) }}")
    with pytest.raises(ShapeError) as e:
        specc.compile(text)
    assert e.value.message == f"argument 'x' of layer 'half': no whole size K gives 2 * K = {got}"
    line = text.splitlines()[2]
    assert (e.value.span.line, e.value.span.col) == (3, line.index("half(x)") + 6)  # at the argument x


def test_a_size_that_is_not_linear_is_not_guessed() -> None:
    text = ("dim B\nlayer sq(x: [B, K * K]) -> [B, K] { return x[:, 0:K] }\n"
            "model m(x: f32[B, 9]) { h = sq(x)\n loss = mean(h) }")
    with pytest.raises(ShapeError, match="no whole size K gives K \\* K = 9"):
        specc.compile(text)


def test_two_unknowns_in_one_size_are_an_error_that_says_what_to_do() -> None:
    text = ("dim B\nlayer f(x: [B, J * K]) -> [B, K] { return x[:, 0:K] }\n"
            "model m(x: f32[B, 9]) { h = f(x)\n loss = mean(h) }")
    with pytest.raises(ShapeError, match="cannot find J and K from J \\* K = 9"):
        specc.compile(text)


def test_sizes_are_solved_in_any_order() -> None:
    m = specc.compile("""
dim B
layer f(x: [B, 2 * K], y: [B, K + J]) -> [B, J] { return y[:, K:K + J] }
model m(x: f32[B, 6], y: f32[B, 5]) { h = f(x, y)
  loss = mean(h) }""")
    assert _types(m)["h"] == "f32[B, 2]"


# ---- issue 13, bug 4: a user's sizes do not leak into the standard library ----------------------------
def test_a_fixed_dim_does_not_constrain_the_stdlib_dense() -> None:
    m = specc.compile("""
dim B
dim D = 8
model m(x: f32[B, D], y: i32[B]) {
  h = dense(x, 64)
  z = dense(h, 32)
  loss = cross_entropy(dense(z, 4), y)
}""")
    assert m.param_shapes["h.W"] == (8, 64) and m.param_shapes["z.W"] == (64, 32)


def test_a_fixed_dim_does_not_constrain_the_stdlib_conv() -> None:
    m = specc.compile("""
dim B
dim H = 16, W = 16, C = 3
model m(x: f32[B, C, H, W], y: i32[B]) {
  a = conv(x, channels=4, kernel=3, padding=1)
  b = conv(max_pool2d(a, 2), channels=2, kernel=3, padding=1)
  loss = cross_entropy(dense(flatten(b), 10), y)
}""")
    assert _types(m)["b"] == "f32[B, 2, 8, 8]"


def test_a_layer_in_a_used_file_does_not_see_the_specs_sizes(tmp_path) -> None:
    (tmp_path / "lib.nn").write_text("layer proj(x: [B, D]) -> [B, D] { return x * 2.0 }\n")
    (tmp_path / "spec.nn").write_text('use "lib.nn"\ndim B\ndim D = 8\n'
                                      "model m(x: f32[B, 5]) { h = proj(x)\n loss = mean(h) }\n")
    m = specc.compile(str(tmp_path / "spec.nn"))
    assert _types(m)["h"] == "f32[B, 5]"


def test_a_spec_sees_the_sizes_of_the_files_it_uses(tmp_path) -> None:
    (tmp_path / "sizes.nn").write_text("dim D = 8\n")
    (tmp_path / "spec.nn").write_text('use "sizes.nn"\ndim B\n'
                                      "layer f(x: [B, D]) -> [B, D] { return x }\n"
                                      "model m(x: f32[B, D]) { h = f(x)\n loss = mean(h) }\n")
    m = specc.compile(str(tmp_path / "spec.nn"))
    assert m.inputs["x"] == ("f32", ("B", 8))
    (tmp_path / "spec.nn").write_text('use "sizes.nn"\ndim B\n'
                                      "layer f(x: [B, D]) -> [B, D] { return x }\n"
                                      "model m(x: f32[B, 5]) { h = f(x)\n loss = mean(h) }\n")
    with pytest.raises(ShapeError, match="dim D is 8 .* but this argument has 5"):
        specc.compile(str(tmp_path / "spec.nn"))


def test_a_fixed_dim_in_the_layers_own_file_is_checked_in_a_size_expression() -> None:
    layer = "dim B, D = 8\nlayer f(x: [B, D + H], hidden H) -> [B, H] { return x[:, D:D + H] }\n"
    m = specc.compile(layer + "model m(x: f32[B, 12]) { h = f(x, hidden=4)\n loss = mean(h) }")
    assert _types(m)["h"] == "f32[B, 4]"
    with pytest.raises(SpeccError, match="expected D \\+ H = 12, got 10"):
        specc.compile(layer + "model m(x: f32[B, 10]) { h = f(x, hidden=4)\n loss = mean(h) }")
