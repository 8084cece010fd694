"""Parsing good specs into the typed AST, with source spans."""

import pytest

from specc.frontend import ast as A
from specc.errors import ParseError, Source
from specc.frontend.parser import grammar_path, parse

LSTM = """\
dim T, B                               # symbolic sizes

layer lstm2(x: [T, B, D], hidden H) -> [T, B, H] {
  param W_f: [D + H, H] = glorot
  param b_f: [H] = ones
  recur t over x {
    init h = zeros([B, H])
    z = concat(h[t-1], x[t])
    h[t] = tanh(z @ W_f + b_f)
  }
  return h
}

model classify(x: f32[T, B, 8], y: i32[B]) {
  h = lstm2(x, hidden=64)
  logits = dense(h[-1], 10)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
}
train { optimizer = adam, lr = 1e-3, epochs = 5 }
"""


def _parse(text):
    return parse(Source("t.nn", text))


def test_grammar_file_is_found():
    assert grammar_path().name == "specc.lark"


def test_module_structure():
    mod = _parse(LSTM)
    kinds = [type(i).__name__ for i in mod.items]
    assert kinds == ["DimDecl", "LayerDef", "ModelDef", "TrainBlock"]
    dims, layer, model, train = mod.items
    assert [b.name for b in dims.bindings] == ["T", "B"]
    assert layer.name == "lstm2"
    assert [type(p).__name__ for p in layer.params] == ["TensorParam", "SizeParam"]
    assert layer.params[1].keyword == "hidden" and layer.params[1].dim == "H"
    assert [s.name for s in model.inputs] == ["x", "y"]
    assert model.inputs[0].type.dtype == "f32"
    assert [(i.key) for i in train.items] == ["optimizer", "lr", "epochs"]


def test_recurrence_statements_and_time_indices():
    layer = _parse(LSTM).items[1]
    recur = next(s for s in layer.body if isinstance(s, A.Recur))
    assert recur.var == "t" and not recur.reverse
    init, z, h = recur.body
    assert isinstance(init, A.Init) and init.name == "h"
    assert isinstance(z, A.Assign) and z.time is None
    assert isinstance(h, A.Assign) and isinstance(h.time, A.Name) and h.time.id == "t"
    lag = z.value.args[0]
    assert isinstance(lag, A.Index)
    assert isinstance(lag.subs[0], A.BinOp) and lag.subs[0].op == "-"


def test_spans_point_at_the_source():
    model = _parse(LSTM).items[2]
    stmt = model.body[1]
    assert (stmt.span.line, stmt.span.col) == (16, 3)
    call = stmt.value
    assert (call.func_span.line, call.func_span.col, call.func_span.end_col) == (16, 12, 17)
    assert str(call.span) == "t.nn:16:12"


def test_operator_precedence():
    e = _parse("model m(x: [B]) { y = -a + b * c @ d ** 2 }").items[0].body[0].value
    assert isinstance(e, A.BinOp) and e.op == "+"
    assert isinstance(e.left, A.Neg)
    assert e.right.op == "@" and e.right.left.op == "*"
    assert e.right.right.op == "**"


def test_slices_ellipsis_kwargs_and_reverse():
    mod = _parse("""model m(x: [T, B, D]) {
  a = x[:, 0:4, ...]
  b = x[1::2]
  c = sum(x, axis=[0, 1], keepdims=true)
  recur t over x reverse { init s = zeros([B, D]); s[t] = s[t+1] + x[t] }
}""")
    a, b, c, r = mod.items[0].body
    assert [type(s).__name__ for s in a.value.subs] == ["Slice", "Slice", "EllipsisExpr"]
    assert b.value.subs[0].step.value == 2 and b.value.subs[0].stop is None
    assert [k.name for k in c.value.kwargs] == ["axis", "keepdims"]
    assert isinstance(c.value.kwargs[1].value, A.Bool)
    assert r.reverse


def test_numbers_int_and_float():
    e = _parse("model m(x: [B]) { y = 3 + 2.5e-3 }").items[0].body[0].value
    assert e.left.value == 3 and isinstance(e.left.value, int)
    assert e.right.value == pytest.approx(0.0025)


def test_statements_need_no_separator_but_accept_semicolons():
    body = _parse("model m(x: [B]) { a = x; b = a\n c = b }").items[0].body
    assert [s.name for s in body] == ["a", "b", "c"]


@pytest.mark.parametrize("text,where", [
    ("model m(x: [B]) {\n  y = x +\n}", (3, 1)),
    ("model m(x: [B]) {\n  y = (x + 1\n  z = y\n}", (3, 3)),
    ("model m(x: [B]) {\n  y = x $ 2\n}", (2, 9)),
    ("layer f(x: [B]) { y = 1 ", (1, 23)),
])
def test_syntax_errors_have_positions(text, where):
    with pytest.raises(ParseError) as e:
        _parse(text)
    assert (e.value.span.line, e.value.span.col) == where
    assert "^" in e.value.render()
