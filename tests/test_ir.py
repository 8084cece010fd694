"""The IR verifier, pruning, and shape inference through the elaborator."""

import pytest

import specc
from specc.ir.dims import Dim
from specc.errors import IRError
from specc.ir.core import Eqn, Graph, TensorType, Value, freeze, prune
from specc.ir.verify import verify

B, H = Dim.sym("B"), Dim.sym("H")
F = TensorType("f32", (B, Dim.const(4)))


def _eqn(op, ins, outs, **params):
    return Eqn(op, tuple(ins), tuple(outs), freeze(params))


def test_verify_accepts_a_good_graph():
    x, y = Value(F, "x"), Value(F, "y")
    s = Value(F)
    verify(Graph((x, y), (_eqn("add", [x, y], [s]),), (s,)))


def test_verify_rejects_use_before_definition():
    x, a, b = Value(F, "x"), Value(F), Value(F)
    g = Graph((x,), (_eqn("exp", [a], [b]), _eqn("exp", [x], [a])), (b,))
    with pytest.raises(IRError, match="before it is defined"):
        verify(g)


def test_verify_rejects_double_definition():
    x, a = Value(F, "x"), Value(F)
    g = Graph((x,), (_eqn("exp", [x], [a]), _eqn("tanh", [x], [a])), (a,))
    with pytest.raises(IRError, match="defined twice"):
        verify(g)


def test_verify_rejects_wrong_output_type():
    x = Value(F, "x")
    bad = Value(TensorType("f32", (B,)))
    with pytest.raises(IRError, match="shape rule gives"):
        verify(Graph((x,), (_eqn("exp", [x], [bad]),), (bad,)))


def test_verify_rejects_unknown_op_and_undefined_output():
    x, a = Value(F, "x"), Value(F)
    with pytest.raises(IRError, match="unknown op"):
        verify(Graph((x,), (_eqn("frobnicate", [x], [a]),), (a,)))
    with pytest.raises(IRError, match="never defined"):
        verify(Graph((x,), (), (a,)))


def test_verify_checks_scan_bodies():
    m = specc.compile("dim T, B\nmodel m(x: f32[T, B, 3]) { h = rnn(x, hidden=5)\n loss = mean(h) }")
    scan = next(e for e in m.program.graph.eqns if e.op == "scan")
    body = scan.params["body"]
    broken = Graph(body.inputs[:-1], body.eqns, body.outputs)  # drop the h[t-1] input
    params = dict(scan.params, body=broken)
    g = Graph(m.program.graph.inputs, (Eqn("scan", scan.inputs, scan.outputs, freeze(params)),), ())
    with pytest.raises(IRError):
        verify(g)


def test_prune_keeps_only_what_outputs_need():
    x = Value(F, "x")
    a, b = Value(F), Value(F)
    g = Graph((x,), (_eqn("exp", [x], [a]), _eqn("tanh", [x], [b])), (a, b))
    p = prune(g, (a,))
    assert [e.op for e in p.eqns] == ["exp"]


def _types(src):
    m = specc.compile(src)
    return {v.name: str(v.type) for e in m.program.graph.walk() for v in e.outputs if v.name}


def test_shapes_symbolic_arithmetic_through_layers():
    t = _types("""
dim T, B
layer proj(x: [..., D], units N) -> [..., N] { param W: [D, N]
  return x @ W }
model m(x: f32[T, B, 6], y: i32[B]) {
  z = concat(x, x, axis=-1)
  p = proj(z, 3)
  q = p[-1]
  r = reshape(x, [T * B, 6])
  s = flatten(transpose(x, [1, 0, 2]))
  k = x[:, 0:2, 1:5:2]
  loss = cross_entropy(q, y)
}""")
    assert t["z"] == "f32[T, B, 12]"
    assert t["p"] == "f32[T, B, 3]"
    assert t["q"] == "f32[B, 3]"
    assert t["r"] == "f32[B*T, 6]"
    assert t["s"] == "f32[B, 6*T]"
    assert t["k"] == "f32[T, 2, 2]"


def test_shapes_convolution_and_pooling():
    t = _types("""
dim B
model m(x: f32[B, 1, 8, 8], y: i32[B]) {
  a = conv(x, channels=6, kernel=3, padding=1)
  b = max_pool2d(a, 2)
  c = conv(b, channels=4, kernel=3, stride=2)
  d = avg_pool2d(a, kernel=3, stride=1, padding=1)
  logits = dense(flatten(b), 10)
  loss = cross_entropy(logits, y)
}""")
    assert t["a"] == "f32[B, 6, 8, 8]"
    assert t["b"] == "f32[B, 6, 4, 4]"
    assert t["c"] == "f32[B, 4, 1, 1]"
    assert t["d"] == "f32[B, 6, 8, 8]"


def test_layer_size_solved_from_shape_arithmetic():
    m = specc.compile("""
dim B
layer half(x: [B, 2 * K]) -> [B, K] { return x[:, 0:K] }
model m(x: f32[B, 10]) { h = half(x)
  loss = mean(h) }""")
    assert str(m.program.output("loss").type) == "f32[]"
    h = next(v for e in m.program.graph.eqns for v in e.outputs if v.name == "h")
    assert str(h.type) == "f32[B, 5]"


def test_dtype_override_and_fixed_dims():
    m = specc.compile("dim B, H = 7\nmodel m(x: f32[B, H]) { loss = mean(x) }", dtype="float64")
    assert m.inputs["x"] == ("f64", ("B", 7))
    assert m.program.dims == {"H": 7}


def test_reversed_recurrence_and_lag_two():
    m = specc.compile("""
dim T, B
model m(x: f32[T, B, 2]) {
  recur t over x reverse {
    init s = zeros([B, 2])
    s[t] = 0.5 * s[t+1] + 0.25 * s[t+2] + x[t]
  }
  loss = mean(s)
}""")
    scan = next(e for e in m.program.graph.eqns if e.op == "scan")
    assert scan.params["reverse"] is True
    assert scan.params["states"] == (("s", 2),)


def test_fixed_dim_in_a_layer_signature_is_checked_not_rebound():
    from specc.errors import ShapeError

    layer = "dim B, D = 8\nlayer f(x: [B, D]) -> [B, D] { return x }\n"
    m = specc.compile(layer + "model m(x: f32[B, 8]) { loss = mean(f(x)) }")
    assert m.inputs["x"] == ("f32", ("B", 8))
    with pytest.raises(ShapeError, match="dim D is 8 .* but this argument has 5"):
        specc.compile(layer + "model m(x: f32[B, 5]) { loss = mean(f(x)) }")
