"""specc.transforms.passes.stack: per-step outputs concatenated in the step and again after the loop -> one wide history.

The pass on the LSTM's backward (the gate gradients), on hand-built scans that match it (with other uses
of the histories: reductions, reshapes, anything else, graph outputs), on near misses it must leave alone,
and the reference interpreter's outputs before and after.
"""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pytest

import specc
from specc.transforms.autodiff import value_and_grad
from specc.ir.builder import GraphBuilder
from specc.ir.dims import Dim
from specc.backends.interp import interpret
from specc.ir.core import Graph, TensorType, Value
from specc.ir.verify import verify
from specc.transforms.passes import optimize, stack_histories

ROOT = Path(__file__).resolve().parent.parent
T, B, H, N = (Dim.sym(n) for n in ("T", "B", "H", "N"))
DIMS = {"T": 5, "B": 3, "H": 4, "N": 2}


def f64(*shape: Dim | int) -> TensorType:
    return TensorType("f64", tuple(Dim.const(d) if isinstance(d, int) else d for d in shape))


def assert_same(before: Graph, after: Graph, dims=DIMS) -> None:
    verify(after)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(tuple(d.evaluate(dims) for d in v.shape)) for v in before.inputs]
    for k, (a, b) in enumerate(zip(interpret(before, args, dims, seed=3), interpret(after, args, dims, seed=3))):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14, err_msg=f"output {k}")


def scans(graph: Graph) -> list:
    return [e for e in graph.eqns if e.op == "scan"]


def outer_concats_of_histories(graph: Graph) -> list:
    results = {v.uid for e in scans(graph) for v in e.outputs}
    made = {v.uid: e for e in graph.eqns for v in e.outputs}

    def history(v: Value) -> bool:
        e = made.get(v.uid)
        return v.uid in results or (e is not None and e.op == "reshape" and e.inputs[0].uid in results)

    return [e for e in graph.eqns if e.op == "concat" and all(history(v) for v in e.inputs)]


# ---- a hand-built step: gates g1 = tanh(h @ U1 + x), g2 = sigmoid(h @ U2 - x), h[t] = concat(g1, g2) @ V ----
def gates_scan(b: GraphBuilder, *, body_order=(0, 1), lag_of_g=0):
    x = b.add_input(Value(f64(T, B, H), "x"))
    u1, u2 = (b.add_input(Value(f64(H, H), n)) for n in ("U1", "U2"))
    v = b.add_input(Value(f64(2 * H, H), "V"))
    h0 = b.emit1("full", [], {"dtype": "f64", "shape": (B, H), "value": 0.0})
    bb = GraphBuilder()
    cu1, cu2, cv = (bb.add_input(Value(w.type, w.name)) for w in (u1, u2, v))
    xt = bb.add_input(Value(f64(B, H), "x[t]"))
    hp = bb.add_input(Value(f64(B, H), "h[t-1]"))
    g_lag = [bb.add_input(Value(f64(B, H), f"g{k}[t-1]")) for k in range(2)] if lag_of_g else []
    g1 = bb.emit1("tanh", [bb.emit1("add", [bb.emit1("matmul", [hp, cu1]), xt])], name="g1")
    g2 = bb.emit1("sigmoid", [bb.emit1("sub", [bb.emit1("matmul", [hp, cu2]), xt])], name="g2")
    if g_lag:
        g1 = bb.emit1("add", [g1, g_lag[0]], name="g1")
        g2 = bb.emit1("add", [g2, g_lag[1]], name="g2")
    gs = (g1, g2)
    s = bb.emit1("concat", [gs[k] for k in body_order], {"axis": 1})
    h = bb.emit1("matmul", [s, cv], name="h")
    body = bb.build([h, g1, g2])
    states = (("h", 1), ("g1", lag_of_g), ("g2", lag_of_g))
    inits = [h0] + ([h0, h0] if lag_of_g else [])
    params = {"body": body, "n_consts": 3, "n_seqs": 1, "reverse": False, "length": T, "states": states}
    hs, G1, G2 = b.emit("scan", [u1, u2, v, x, *inits], params, names=["h", "G1", "G2"])
    return hs, G1, G2


def flat(b: GraphBuilder, g: Value) -> Value:
    return b.emit1("reshape", [g], {"shape": (B * T, H)})


def build(uses) -> Graph:
    """The scan, then ``uses(b, hs, G1, G2)`` -> the graph's outputs."""
    b = GraphBuilder()
    hs, G1, G2 = gates_scan(b)
    return b.build(uses(b, hs, G1, G2))


def stacked(graph: Graph) -> bool:
    """Whether the scan has one [T, B, 2H] per-step output and no G1, G2."""
    (scan,) = scans(graph)
    widths = [v.shape for v, (_n, lag) in zip(scan.outputs, scan.params["states"]) if lag == 0]
    return widths == [(T, B, 2 * H)]


# ---- the pass fires ------------------------------------------------------------------------------
def test_the_concat_after_the_loop_becomes_the_stacked_history() -> None:
    g = build(lambda b, hs, G1, G2: [b.emit1("concat", [G1, G2], {"axis": 2}), hs])
    new = stack_histories(g)
    assert stacked(new) and not outer_concats_of_histories(new)
    assert new.outputs[0] is g.outputs[0] and scans(new)[0].outputs[-1] is g.outputs[0]  # the scan computes it
    assert_same(g, new)
    assert stack_histories(new) is new


def test_reshaped_histories_and_the_other_uses_read_columns_of_the_stack() -> None:
    def uses(b, hs, G1, G2):
        z = b.add_input(Value(f64(B * T, N), "z"))
        zt = b.emit1("transpose", [z], {"perm": (1, 0)})
        dw = b.emit1("matmul", [zt, b.emit1("concat", [flat(b, G1), flat(b, G2)], {"axis": 1})])
        bias1 = b.emit1("sum", [G1], {"axes": (0, 1), "keepdims": False})
        bias2 = b.emit1("sum", [G2], {"axes": (0, 1), "keepdims": False})
        last = b.emit1("max", [G2], {"axes": (0,), "keepdims": True})
        other = b.emit1("matmul", [flat(b, G1), b.emit1("full", [], {"dtype": "f64", "shape": (H, N), "value": 0.5})])
        whole_sum = b.emit1("sum", [G1], {"axes": (0, 1, 2), "keepdims": False})  # reads every column: a slice
        return [dw, bias1, bias2, last, other, whole_sum, b.emit1("tanh", [G2]), G1]

    g = build(uses)
    new = stack_histories(g)
    assert stacked(new) and not outer_concats_of_histories(new)
    (scan,) = scans(new)
    whole = scan.outputs[-1]
    reads_whole = [e.op for e in new.eqns if whole in e.inputs]
    # one sum for both biases; a reshape for the product, one for the other; the slices G1, G2 for the rest
    assert sorted(reads_whole) == ["getitem", "getitem", "max", "reshape", "reshape", "sum"]
    assert new.outputs[-1] is g.outputs[-1]  # G1, still an output: now a slice of the stack
    assert_same(g, new)
    assert stack_histories(new) is new


def test_lstm_backward_writes_one_wide_history() -> None:
    prog = specc.compile(ROOT / "specs" / "lstm.nn", dtype="float64").program
    grad = value_and_grad(prog).graph
    stages: dict[str, Graph] = {}
    opt = optimize(grad, verify_each=True, dump_after=("loop_invariants", "stack_histories"),
                   dump=lambda name, g: stages.__setitem__(name, g))
    assert len(outer_concats_of_histories(stages["loop_invariants"])) == 1  # the gates' [B*T, 4H] copy
    assert not outer_concats_of_histories(stages["stack_histories"]) and not outer_concats_of_histories(opt)
    backward = scans(opt)[1]
    assert backward.params["reverse"]
    lag0 = [v.shape for v, (_n, lag) in zip(backward.outputs, backward.params["states"]) if lag == 0]
    assert lag0 == [(T, B, Dim.const(4 * 64))]  # d_f, d_i, d_o, d_c in one history, not four
    step = backward.params["body"]
    (cat,) = [e for e in step.eqns if e.op == "concat"]
    assert cat.outputs[0] in step.outputs  # the step's concat is the history's row
    dims = {"T": 4, "B": 3}
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(tuple(d.evaluate(dims) for d in v.shape)) if v.type.is_float
            else rng.integers(0, 2, tuple(d.evaluate(dims) for d in v.shape)).astype(np.int32) for v in grad.inputs]
    for k, (a, b) in enumerate(zip(interpret(grad, args, dims, seed=3), interpret(opt, args, dims, seed=3))):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11, err_msg=f"output {k}")


@pytest.mark.parametrize("spec", ["lstm", "peephole_lstm", "gru"])
def test_the_backward_step_concatenates_the_gates_in_the_forward_order(spec: str) -> None:
    """merge_matmuls orders a backward step's d_f @ W_f^T + d_i @ W_i^T + ... by the step's outputs, so the
    step's matrix is stacked in the order of the forward step's (LSTM: f, i, o, c; the peephole cell: f, i, c, o)."""
    prog = specc.compile(ROOT / "specs" / f"{spec}.nn").program
    opt = optimize(value_and_grad(prog).graph)
    forward, backward = scans(opt)
    assert backward.params["reverse"]
    made = {v.uid: e for e in opt.eqns for v in e.outputs}

    def source(v: Value) -> Value:  # through transposes and slices to the parameter
        while v not in opt.inputs:
            v = made[v.uid].inputs[0]
        return v

    def stacked_matrix(scan) -> list[str]:
        (v,) = [c for c in scan.inputs[:scan.params["n_consts"]] if c.type.rank == 2]
        while made[v.uid].op != "concat":
            v = made[v.uid].inputs[0]
        return [source(part).name for part in made[v.uid].inputs]

    order = stacked_matrix(forward)
    assert len(order) == (3 if spec == "gru" else 4)
    assert stacked_matrix(backward) == order
    assert not outer_concats_of_histories(opt)  # so the gate gradients are stacked (GRU: those of U_r, U_z, U_n)


# ---- near misses: left alone ---------------------------------------------------------------------
def near_misses():
    def swapped(b, hs, G1, G2):
        return [b.emit1("concat", [G2, G1], {"axis": 2})]

    def other_axis(b, hs, G1, G2):
        return [b.emit1("concat", [G1, G2], {"axis": 1})]

    def partial(b, hs, G1, G2):
        return [b.emit1("concat", [G1, hs], {"axis": 2})]

    def twice(b, hs, G1, G2):
        return [b.emit1("concat", [G1, G1], {"axis": 2})]

    def half_reshaped(b, hs, G1, G2):
        other = b.emit1("reshape", [b.emit1("tanh", [G2]), ], {"shape": (B * T, H)})
        return [b.emit1("concat", [flat(b, G1), other], {"axis": 1})]

    def not_the_last_axis_kept(b, hs, G1, G2):
        r = [b.emit1("reshape", [g], {"shape": (T, B * H)}) for g in (G1, G2)]
        return [b.emit1("concat", r, {"axis": 1})]

    return {"swapped": swapped, "other_axis": other_axis, "partial": partial, "twice": twice,
            "half_reshaped": half_reshaped, "not_the_last_axis_kept": not_the_last_axis_kept}


@pytest.mark.parametrize("name", sorted(near_misses()))
def test_near_misses_are_left_alone(name: str) -> None:
    g = build(near_misses()[name])
    assert stack_histories(g) is g


@pytest.mark.parametrize("kwargs", [{"body_order": (1, 0)}, {"lag_of_g": 1}], ids=["body_swapped", "lagged"])
def test_the_step_must_concat_lag0_histories_in_the_same_order(kwargs: dict) -> None:
    b = GraphBuilder()
    hs, G1, G2 = gates_scan(b, **kwargs)
    g = b.build([b.emit1("concat", [G1, G2], {"axis": 2})])
    assert stack_histories(g) is g


# ---- inside a recurrence -------------------------------------------------------------------------
def test_nested_scans_are_stacked_in_their_body() -> None:
    """An outer scan over N whose step runs the gates scan and concatenates its histories."""
    inner = GraphBuilder()
    _hs, G1, G2 = gates_scan(inner)
    cat = inner.emit1("concat", [G1, G2], {"axis": 2})
    x, u1, u2, v = inner.inputs
    body = inner.build([cat], inputs=[u1, u2, v, x])
    b = GraphBuilder()
    consts = [b.add_input(Value(w.type, w.name)) for w in (u1, u2, v)]
    xs = b.add_input(Value(f64(N, T, B, H), "xs"))
    params = {"body": body, "n_consts": 3, "n_seqs": 1, "reverse": False, "length": N, "states": (("cat", 0),)}
    (out,) = b.emit("scan", [*consts, xs], params, names=["cat"])
    g = b.build([out])
    new = stack_histories(g)
    assert new is not g
    new_body = scans(new)[0].params["body"]
    assert stacked(new_body) and not outer_concats_of_histories(new_body)
    assert_same(g, new)


# ---- the compiled step -----------------------------------------------------------------------------
def test_compiled_lstm_gradient_reads_the_stacked_history(monkeypatch, tmp_path) -> None:
    """The CPU code: the step's concat is written into row t of the stacked history, no concat after the
    loop, one reduction of the history gives the four bias gradients, and the gradients match the
    interpreter's on the unoptimised graph (two threads, blocks of rows)."""
    from specc.backends import generator

    monkeypatch.setenv("SPECC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SPECC_NUM_THREADS", "2")
    model = specc.compile(ROOT / "specs" / "lstm.nn", target="cpu", dtype="float64")
    grad = model.grad_program()
    source = generator("cpu").generate(optimize(grad.graph), "m").source
    entry = source[source.index("\ndef run("):]
    after = entry[entry.index("run_row_blocks(scan_d"):]  # what the entry calls after the backward loop
    parts = re.findall(r"(run_part\d+)\(", after)
    assert parts
    for part in parts:  # after the backward loop: no concat
        code = source[source.index(f"def {part}("):]
        assert "concat" not in code[:code.index("\n\n\n")], part
    assert source.count("np.full((256,), 0.0, np.float64)") == 1  # the bias gradients: one sum of [T, B, 4H]
    assert "np.full((64,), 0.0, np.float64)" not in source
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 6, 8)), rng.integers(0, 10, 6).astype(np.int32)
    loss, grads = model.value_and_grad(params, x=x, y=y)
    ref = interpret(grad.graph, [x, y, *(params[p.name] for p in model.program.params)], {"T": 5, "B": 6})
    np.testing.assert_allclose(loss, ref[0], rtol=1e-10)
    for k, want in zip(grad.wrt, ref[grad.n_forward:]):
        np.testing.assert_allclose(grads[k], want, rtol=1e-9, atol=1e-12, err_msg=k)
