"""The IR printer and the JSON export, on graphs built by hand."""

from __future__ import annotations

import json

from specc.ir.dims import Dim
from specc.errors import Source, Span
from specc.ir.serialize import ProgramJson, program_to_json
from specc.ir.core import Eqn, Graph, Initializer, InputInfo, ParamInfo, Program, TensorType, Value, freeze
from specc.ir.verify import verify
from specc.ops import REGISTRY
from specc.ir.printer import Namer, format_graph, format_program, program_names

T, B, D, H, C = (Dim.sym(n) for n in "TBDHC")
SRC = Source("specs/models/rnn.nn", "\n" * 40)


def f32(*shape: Dim) -> TensorType:
    return TensorType("f32", shape)


def eqn(op: str, ins: list[Value], params: dict | None = None, names=(None,), line: int | None = None) -> Eqn:
    """One equation, its output types from the op's shape rule."""
    types = REGISTRY[op].infer([v.type for v in ins], dict(params or {}))
    outs = tuple(Value(t, n) for t, n in zip(types, names))
    loc = Span(SRC, line, 3, line, 10) if line else None
    return Eqn(op, tuple(ins), outs, freeze(params), loc)


def mlp() -> Graph:
    x, w = Value(f32(B, D), "x"), Value(f32(D, H), "W")
    e1 = eqn("matmul", [x, w], line=3)
    e2 = eqn("tanh", [e1.outputs[0]], names=("h",), line=4)
    e3 = eqn("add", [e2.outputs[0], e1.outputs[0]], names=("h",), line=5)
    e4 = eqn("add", [e3.outputs[0], e3.outputs[0]])
    return Graph((x, w), (e1, e2, e3, e4), (e4.outputs[0], e2.outputs[0]))


def rnn(reverse: bool = False) -> Program:
    """h[t] = tanh(x[t] @ W + h[t-1] @ U + h[t-2]); z[t] = x[t] @ W (a lag-0 state); loss from h[-1]."""
    x, y = Value(f32(T, B, D), "x"), Value(TensorType("i32", (B,)), "y")
    w, u, v = Value(f32(D, H), "W"), Value(f32(H, H), "U"), Value(f32(H, C), "V")
    bw, bu = Value(w.type, "W"), Value(u.type, "U")
    xt, h1, h2 = Value(f32(B, D), "x"), Value(f32(B, H), "h"), Value(f32(B, H), "h")
    b1 = eqn("matmul", [xt, bw], line=7)
    b2 = eqn("matmul", [h1, bu], line=7)
    b3 = eqn("add", [b1.outputs[0], b2.outputs[0]], line=7)
    b4 = eqn("add", [b3.outputs[0], h2], line=7)
    b5 = eqn("tanh", [b4.outputs[0]], names=("h",), line=7)
    body = Graph((bw, bu, xt, h1, h2), (b1, b2, b3, b4, b5), (b5.outputs[0], b1.outputs[0]))
    h0 = eqn("full", [], {"dtype": "f32", "shape": (B, H), "value": 0.0}, line=6)
    states = (("h", 2), ("z", 0))
    scan_params = {"body": body, "n_consts": 2, "n_seqs": 1, "states": states, "reverse": reverse, "length": T}
    scan = eqn("scan", [w, u, x, h0.outputs[0]], scan_params, names=("h", "z"), line=6)
    last = eqn("getitem", [scan.outputs[0]], {"index": (("int", -T),)}, line=9)
    logits = eqn("matmul", [last.outputs[0], v], names=("logits",), line=10)
    probs = eqn("softmax", [logits.outputs[0]], {"axis": 1}, names=("probs",), line=11)
    loss = eqn("cross_entropy", [logits.outputs[0], y], line=12)
    graph = Graph((x, y, w, u, v), (h0, scan, last, logits, probs, loss), (loss.outputs[0], probs.outputs[0]))
    span = Span(SRC, 1, 1, 1, 6)
    return Program(
        name="rnn",
        graph=graph,
        inputs=(InputInfo("x", x, span), InputInfo("y", y, span)),
        params=(
            ParamInfo("W", w, Initializer("glorot"), Span(SRC, 3, 1, 3, 2)),
            ParamInfo("U", u, Initializer("orthogonal"), Span(SRC, 3, 1, 3, 2)),
            ParamInfo("V", v, Initializer("normal", (0.0, 0.02)), None),
        ),
        output_names=("loss", "probs"),
        dims={"H": 16},
        train={"lr": 0.1, "epochs": 3},
        loc=span,
    )


RNN_TEXT = """\
model rnn(x: f32[T, B, D], y: i32[B])                       # rnn.nn:1
dims: H = 16
params:
  W: f32[D, H] = glorot                                     # rnn.nn:3
  U: f32[H, H] = orthogonal                                 # rnn.nn:3
  V: f32[H, C] = normal(0, 0.02)
graph:
  %0: f32[B, H] = full[dtype=f32, shape=(B, H), value=0.0]  # rnn.nn:6
  h: f32[T, B, H], z: f32[T, B, H] = scan[length=T, n_consts=2, n_seqs=1, reverse=False, states=((h, 2), (z, 0))] W U x %0  # rnn.nn:6
    { lambda consts: W.1: f32[D, H], U.1: f32[H, H]; seqs: x[t]: f32[B, D]; states: h[t-1]: f32[B, H], h[t-2]: f32[B, H] .
      %1: f32[B, H] = matmul x[t] W.1                       # rnn.nn:7
      %2: f32[B, H] = matmul h[t-1] U.1                     # rnn.nn:7
      %3: f32[B, H] = add %1 %2                             # rnn.nn:7
      %4: f32[B, H] = add %3 h[t-2]                         # rnn.nn:7
      h.1: f32[B, H] = tanh %4                              # rnn.nn:7
      h[t] = h.1
      z[t] = %1
    }
  %5: f32[B, H] = getitem[index=[-T]] h                     # rnn.nn:9
  logits: f32[B, C] = matmul %5 V                           # rnn.nn:10
  probs: f32[B, C] = softmax[axis=1] logits                 # rnn.nn:11
  %6: f32[] = cross_entropy logits y                        # rnn.nn:12
outputs: loss = %6, probs = probs"""


# ---- naming ----------------------------------------------------------------------------
def test_graph_names_hints_dedupe_and_temps():
    assert format_graph(mlp()) == """\
{ lambda x: f32[B, D], W: f32[D, H] .
  %0: f32[B, H] = matmul x W  # rnn.nn:3
  h: f32[B, H] = tanh %0      # rnn.nn:4
  h.1: f32[B, H] = add h %0   # rnn.nn:5
  %1: f32[B, H] = add h.1 h.1
  return %1, h
}"""


def test_namer_never_reuses_a_name():
    names = Namer()
    vs = [Value(f32(B), n) for n in ("h", "h.1", "h", None, "%1", None)]
    assert [names.define(v) for v in vs] == ["h", "h.1", "h.2", "%0", "%1", "%2"]
    assert names.define(vs[0], "other") == "h"  # a named value keeps its name


def test_names_do_not_depend_on_uids():
    first, second = mlp(), mlp()
    assert first.inputs[0].uid != second.inputs[0].uid
    assert format_graph(first) == format_graph(second)
    assert format_program(rnn()) == format_program(rnn())


def test_undefined_value_still_prints():
    stray = Value(f32(B), "ghost")
    g = Graph((), (eqn("neg", [stray]),), ())
    assert "%0: f32[B] = neg ghost" in format_graph(g)


# ---- programs and scan bodies ----------------------------------------------------------
def test_program_golden():
    prog = rnn()
    verify(prog.graph)
    assert format_program(prog) == RNN_TEXT


def test_reverse_scan_names_lags_forward():
    text = format_program(rnn(reverse=True))
    assert "states: h[t+1]: f32[B, H], h[t+2]: f32[B, H] ." in text
    assert "%2: f32[B, H] = matmul h[t+1] U.1" in text


def test_param_formatting():
    x = Value(f32(T, B, D), "x")
    index = (("int", T + B), ("slice", None, B, 2), ("slice", -D, None, 1))
    e = Eqn("getitem", (x,), (Value(f32(B)),), freeze({"index": index}))  # the printer does not check types
    assert "%0: f32[B] = getitem[index=[B + T, :B:2, -D:]] x" in format_graph(Graph((x,), (e,), e.outputs))
    e = eqn("transpose", [x], {"perm": (1, 0, 2)})
    assert "transpose[perm=(1, 0, 2)] x" in format_graph(Graph((x,), (e,), e.outputs))


# ---- JSON export -----------------------------------------------------------------------
def test_json_has_the_expected_shape():
    data = json.loads(program_to_json(rnn()))
    assert set(data) == {"name", "inputs", "params", "outputs", "dims", "train", "graph", "loc"}
    assert data["inputs"][0] == {"name": "x", "dtype": "f32", "shape": ["T", "B", "D"],
                                 "loc": "specs/models/rnn.nn:1:1"}
    assert data["params"][2] == {"name": "V", "dtype": "f32", "shape": ["H", "C"], "init": "normal(0, 0.02)",
                                 "loc": None}
    assert data["outputs"] == [{"name": "loss", "value": "%6"}, {"name": "probs", "value": "probs"}]
    assert data["dims"] == {"H": 16} and data["train"] == {"lr": 0.1, "epochs": 3}
    scan = data["graph"]["eqns"][1]
    assert scan["op"] == "scan" and "body" not in scan["params"]
    assert scan["params"]["states"] == [["h", 2], ["z", 0]] and scan["params"]["length"] == "T"
    assert scan["inputs"] == ["W", "U", "x", "%0"]
    assert [v["name"] for v in scan["body"]["inputs"]] == ["W.1", "U.1", "x[t]", "h[t-1]", "h[t-2]"]
    assert scan["body"]["outputs"] == ["h.1", "%1"]
    assert scan["loc"] == "specs/models/rnn.nn:6:3"
    assert data["graph"]["eqns"][0]["body"] is None


def test_json_names_match_the_printer():
    prog = rnn()
    data = json.loads(program_to_json(prog))
    printed = format_program(prog)
    for e in data["graph"]["eqns"] + data["graph"]["eqns"][1]["body"]["eqns"]:
        for out in e["outputs"]:
            assert f"{out['name']}: f32" in printed
    names = program_names(prog)
    assert [v["name"] for v in data["graph"]["inputs"]] == [names[v] for v in prog.graph.inputs]


def test_json_round_trips():
    text = program_to_json(rnn())
    assert ProgramJson.model_validate_json(text).model_dump_json(indent=2) == text
