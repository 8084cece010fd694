"""The optimisation passes (specc.transforms.passes).

Three layers of checks:
- each pass on small graphs built by hand: what it removes, merges, moves or fuses (op counts before and
  after), what it must leave alone (random draws, cycles, widening constants), and that the reference
  interpreter gives the same outputs before and after;
- every spec in specs/ (found by glob) and a few written here (a reversed scan, lag 2, per-step outputs,
  a custom cell, nested recurrences), forward and backward: the IR verifies after every pass, and every
  intermediate graph computes the same outputs in float64;
- the LSTM: one state-dependent matmul and one fused equation per step, the golden file of its optimised
  IR (``pytest --update-golden`` rewrites it), and the ``specc ir`` options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.ir.builder import GraphBuilder
from specc.cli import main
from specc.ir.dims import Dim
from specc.backends.interp import interpret
from specc.ir.core import Graph, Program, TensorType, Value
from specc.ir.verify import verify
from specc.ops import REGISTRY
from specc.transforms.passes import PASS_NAMES, PIPELINE, batch_accumulations, fold_constants, fuse_elementwise, hoist_scan_invariants, merge_matmuls, narrow_matmuls, optimize, optimize_program, split_concat_matmul
from specc.transforms.passes import cse
from specc.transforms.passes import dce
from specc.ir.printer import format_graph, format_program

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
GOLDEN = ROOT / "tests" / "golden"
T, B, D, H, K, N = (Dim.sym(n) for n in ("T", "B", "D", "H", "K", "N"))
DIMS = {"T": 5, "B": 3, "D": 4, "H": 6, "K": 2, "N": 3, "S": 3}
RTOL, ATOL = 1e-10, 1e-12


# ---- helpers -----------------------------------------------------------------------------------
def f64(*shape: Dim | int) -> TensorType:
    return TensorType("f64", tuple(Dim.const(d) if isinstance(d, int) else d for d in shape))


def const(b: GraphBuilder, value: float, shape=(), dtype: str = "f64") -> Value:
    return b.emit1("full", [], {"dtype": dtype, "shape": tuple(shape), "value": value})


def scan(b: GraphBuilder, consts: Sequence[Value], seqs: Sequence[Value], states: Sequence[tuple],
         step: Callable, *, reverse: bool = False) -> list[Value]:
    """A scan equation. ``states``: (name, lag, init or None, type); ``step(bb, consts, slices, lagged)`` returns
    the body outputs, ``lagged[name]`` being the state at t-1, ..., t-lag."""
    bb = GraphBuilder()
    cin = [bb.add_input(Value(c.type, c.name)) for c in consts]
    sin = [bb.add_input(Value(TensorType(s.dtype, s.shape[1:]), s.name)) for s in seqs]
    lagged = {name: [bb.add_input(Value(t, name)) for _ in range(lag)] for name, lag, _i, t in states}
    body = bb.build(step(bb, cin, sin, lagged))
    params = {"body": body, "n_consts": len(consts), "n_seqs": len(seqs), "reverse": reverse, "length": T,
              "states": tuple((name, lag) for name, lag, _i, _t in states)}
    inits = [init for _n, lag, init, _t in states if lag]
    return b.emit("scan", [*consts, *seqs, *inits], params, names=[s[0] for s in states])


def random_args(graph: Graph, rng: np.random.Generator, dims=DIMS, ints: int = 2) -> list[np.ndarray]:
    out = []
    for v in graph.inputs:
        shape = tuple(d.evaluate(dims) for d in v.shape)
        out.append(rng.standard_normal(shape) if v.type.is_float else rng.integers(0, ints, shape).astype(np.int32))
    return out


def assert_same(before: Graph, after: Graph, args=None, dims=DIMS, what: str = "") -> None:
    """Both graphs verify and compute the same outputs (float64, tight tolerance)."""
    verify(after)
    args = random_args(before, np.random.default_rng(0), dims) if args is None else args
    want = interpret(before, args, dims, seed=7)
    got = interpret(after, args, dims, seed=7)
    assert len(want) == len(got)
    for k, (a, b) in enumerate(zip(want, got)):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"{what} output {k}")


def ops(graph: Graph, op: str | None = None, *, deep: bool = False) -> int:
    eqns = graph.walk() if deep else graph.eqns
    return sum(1 for e in eqns if op is None or e.op == op)


def scan_eqn(graph: Graph):
    (e,) = [e for e in graph.eqns if e.op == "scan"]
    return e


def body(graph: Graph) -> Graph:
    return scan_eqn(graph).params["body"]


def rnn_graph(reverse: bool = False) -> Graph:
    """h[t] = tanh(x[t] @ W + h[t-1] @ U + b); loss-free: outputs h[-1] and the whole h."""
    b = GraphBuilder()
    x, w, u, bias = (b.add_input(Value(t, n)) for t, n in
                     ((f64(T, B, D), "x"), (f64(D, H), "W"), (f64(H, H), "U"), (f64(H), "b")))
    h0 = const(b, 0.0, (B, H))

    def step(bb, c, s, lag):
        pre = bb.emit1("add", [bb.emit1("matmul", [s[0], c[0]]), bb.emit1("matmul", [lag["h"][0], c[1]])])
        return [bb.emit1("tanh", [bb.emit1("add", [pre, c[2]])])]

    (h,) = scan(b, [w, u, bias], [x], [("h", 1, h0, f64(B, H))], step, reverse=reverse)
    last = b.emit1("getitem", [h], {"index": (("int", Dim.const(-1)),)})
    return b.build([last, h])


# ---- the pipeline ------------------------------------------------------------------------------
def test_pipeline_is_data() -> None:
    assert [p.name for p in PIPELINE] == list(PASS_NAMES)
    assert len(set(PASS_NAMES)) == len(PASS_NAMES)
    for p in PIPELINE:
        assert callable(p.run) and p.description and "\n" not in p.description
    assert PASS_NAMES.index("split_concat_matmul") < PASS_NAMES.index("hoist_scan_invariants") \
        < PASS_NAMES.index("merge_matmuls") < PASS_NAMES.index("fuse_elementwise")


def test_dump_after(capsys, monkeypatch) -> None:
    g = rnn_graph()
    seen = []
    optimize(g, dump_after="dce,fuse_elementwise", dump=lambda name, graph: seen.append(name))
    assert seen == ["dce", "fuse_elementwise"]
    seen.clear()
    optimize(g, dump_after="all", dump=lambda name, graph: seen.append(name))
    assert seen == list(PASS_NAMES)
    with pytest.raises(ValueError, match="no pass named nope"):
        optimize(g, dump_after="nope")
    monkeypatch.setenv("SPECC_DUMP_AFTER", "hoist_scan_invariants")
    optimize(g)
    err = capsys.readouterr().err
    assert err.startswith("# after hoist_scan_invariants\n{ lambda x: f64[T, B, D]")


def test_passes_do_not_mutate_and_return_their_input_when_done() -> None:
    g = rnn_graph()
    text = format_graph(g)
    opt = optimize(g, verify_each=True)
    assert format_graph(g) == text
    for p in PIPELINE:
        assert p.run(opt) is opt, f"{p.name} changed an optimised graph"


def test_spans_survive() -> None:
    prog = specc.compile(ROOT / "specs" / "lstm.nn").program if (ROOT / "specs" / "lstm.nn").exists() \
        else specc.compile(STD_LSTM).program
    opt = optimize_program(prog)
    assert all(e.loc is not None for e in opt.graph.walk())


# ---- dce ---------------------------------------------------------------------------------------
def test_dce_drops_dead_equations_but_keeps_inputs() -> None:
    b = GraphBuilder()
    x, y = b.add_input(Value(f64(B), "x")), b.add_input(Value(f64(B), "y"))
    out = b.emit1("tanh", [x])
    b.emit1("exp", [b.emit1("neg", [x])])  # dead chain
    b.emit1("normal", [], {"dtype": "f64", "shape": (B,), "stream": 1})  # a dead draw
    g = b.build([out])
    new = dce(g)
    assert ops(g) == 4 and ops(new) == 1 and new.inputs == (x, y)
    assert_same(g, new)
    assert dce(new) is new


def test_dce_prunes_scan_states_lags_and_inputs() -> None:
    b = GraphBuilder()
    x, w, unused_c = (b.add_input(Value(t, n)) for t, n in ((f64(T, B, H), "x"), (f64(H, H), "W"), (f64(H), "c")))
    z = b.add_input(Value(f64(T, B, H), "z"))
    zero = const(b, 0.0, (B, H))

    def step(bb, c, s, lag):
        r = bb.emit1("tanh", [bb.emit1("add", [lag["r"][0], s[0]])])  # needed: h reads it
        h = bb.emit1("add", [bb.emit1("matmul", [lag["h"][0], c[0]]), lag["r"][0]])
        q = bb.emit1("mul", [lag["q"][0], s[0]])  # lag 2 declared, only t-1 read; needed by h2
        h2 = bb.emit1("add", [h, q])
        self_only = bb.emit1("add", [lag["s"][0], s[1]])  # reads only itself: dead
        never = bb.emit1("neg", [s[0]])  # lag 1 declared, never read back: a per-step output
        per_step = bb.emit1("exp", [s[1]])  # lag 0, output unused: dead
        _ = bb.emit1("mul", [c[1], s[0]])  # dead, and the only reader of const c
        return [r, h2, q, self_only, never, per_step]

    states = [("r", 1, zero, f64(B, H)), ("h", 1, zero, f64(B, H)), ("q", 2, zero, f64(B, H)),
              ("s", 1, zero, f64(B, H)), ("n", 1, zero, f64(B, H)), ("e", 0, None, f64(B, H))]
    _r, h, _q, _s, n, _e = scan(b, [w, unused_c], [x, z], states, step)
    g = b.build([h, n])
    new = dce(g)
    p = scan_eqn(new).params
    assert p["states"] == (("r", 1), ("h", 1), ("q", 1), ("n", 0))
    assert p["n_consts"] == 1 and p["n_seqs"] == 1
    assert ops(body(g)) == 10 and ops(body(new)) == 7
    assert_same(g, new)


# ---- cse ---------------------------------------------------------------------------------------
def test_cse_merges_repeats_in_either_order_but_not_draws() -> None:
    b = GraphBuilder()
    x, y = b.add_input(Value(f64(B), "x")), b.add_input(Value(f64(B), "y"))
    s1, s2 = b.emit1("add", [x, y]), b.emit1("add", [y, x])
    d1 = b.emit1("sub", [x, y])
    d2 = b.emit1("sub", [y, x])  # not commutative
    n1 = b.emit1("normal", [], {"dtype": "f64", "shape": (B,), "stream": 1})
    n2 = b.emit1("normal", [], {"dtype": "f64", "shape": (B,), "stream": 1})
    z1, z2 = const(b, 0.0), const(b, -0.0)  # different constants
    outs = [b.emit1("mul", [s1, n1]), b.emit1("mul", [s2, n2]), d1, d2, b.emit1("sub", [z1, z2])]
    g = b.build(outs)
    new = cse(g)
    assert ops(g, "add") == 2 and ops(new, "add") == 1
    assert ops(new, "sub") == 3 and ops(new, "normal") == 2 and ops(new, "full") == 2
    assert_same(g, new)


def test_cse_reads_a_repeated_scan_const_once() -> None:
    b = GraphBuilder()
    x, w = b.add_input(Value(f64(T, B, H), "x")), b.add_input(Value(f64(H, H), "W"))

    def step(bb, c, s, lag):
        return [bb.emit1("add", [bb.emit1("matmul", [s[0], c[0]]), bb.emit1("matmul", [s[1], c[1]])])]

    (y,) = scan(b, [w, w], [x, x], [("y", 0, None, f64(B, H))], step)
    g = b.build([y])
    new = cse(g)
    p = scan_eqn(new).params
    assert p["n_consts"] == 1 and p["n_seqs"] == 1 and ops(body(new), "matmul") == 1
    assert_same(g, new)


# ---- fold_constants ----------------------------------------------------------------------------
def test_fold_evaluates_constants() -> None:
    b = GraphBuilder()
    x = b.add_input(Value(f64(B, H), "x"))
    five = b.emit1("add", [const(b, 2.0), const(b, 3.0)])
    half = b.emit1("sigmoid", [const(b, 0.0, (B, H))])  # uniform stays uniform
    k = b.emit1("add", [const(b, 2, (), "i32"), const(b, 3, (), "i32")])
    total = b.emit1("mul", [b.emit1("mul", [x, five]), half])
    g = b.build([total, k])
    new = fold_constants(g)
    fulls = {e.outputs[0].uid: e.params for e in new.eqns if e.op == "full"}
    assert fulls[five.uid]["value"] == 5.0 and fulls[half.uid]["value"] == 0.5
    assert fulls[half.uid]["shape"] == (B, H) and fulls[k.uid]["value"] == 5 and fulls[k.uid]["dtype"] == "i32"
    assert ops(new, "sigmoid") == 0 and ops(new, "add") == 0
    assert_same(g, new)


def test_fold_drops_identities_only_when_safe() -> None:
    b = GraphBuilder()
    x, v = b.add_input(Value(f64(B, H), "x")), b.add_input(Value(f64(H), "v"))
    a = b.emit1("add", [x, const(b, 0.0)])
    m = b.emit1("mul", [const(b, 1.0), a])
    d = b.emit1("div", [m, const(b, 1.0)])
    wide = b.emit1("add", [v, const(b, 0.0, (B, H))])  # v + zeros[B, H] broadcasts: not v
    kept = b.emit1("add", [x, const(b, 0.0)])  # a graph output: kept
    g = b.build([b.emit1("tanh", [d]), wide, kept])
    new = fold_constants(g)
    assert ops(new, "mul") == 0 and ops(new, "div") == 0 and ops(new, "add") == 2
    assert next(e for e in new.eqns if e.op == "tanh").inputs[0] is x  # tanh reads x itself
    assert_same(g, new)


def test_fold_moves_constant_sequences_into_the_body() -> None:
    b = GraphBuilder()
    x = b.add_input(Value(f64(T, B, H), "x"))
    zeros = const(b, 0.0, (T, B, H))
    two = const(b, 2.0)

    def step(bb, c, s, lag):
        return [bb.emit1("tanh", [bb.emit1("add", [bb.emit1("mul", [s[0], c[0]]), s[1]])])]

    (y,) = scan(b, [two], [zeros, x], [("y", 0, None, f64(B, H))], step)
    g = b.build([y])
    new = fold_constants(g)
    p = scan_eqn(new).params
    assert p["n_consts"] == 0 and p["n_seqs"] == 1
    assert ops(body(new), "mul") == 0 and ops(body(new), "add") == 0  # 0 * 2 + x[t] -> x[t]
    assert body(new).eqns[-1].inputs[0] is body(new).inputs[0]
    assert_same(g, new)


# ---- split_concat_matmul -----------------------------------------------------------------------
def lstm_like_cell(gates: int = 4, reverse: bool = False) -> Graph:
    """z = concat(h[t-1], x[t]); one matmul per gate over z, as the textbook LSTM."""
    b = GraphBuilder()
    x = b.add_input(Value(f64(T, B, D), "x"))
    ws = [b.add_input(Value(f64(H + D, H), f"W{k}")) for k in range(gates)]
    bs = [b.add_input(Value(f64(H), f"b{k}")) for k in range(gates)]
    h0 = const(b, 0.0, (B, H))

    def step(bb, c, s, lag):
        z = bb.emit1("concat", [lag["h"][0], s[0]], {"axis": 1})
        acts = [bb.emit1("sigmoid", [bb.emit1("add", [bb.emit1("matmul", [z, w]), bias])])
                for w, bias in zip(c[:gates], c[gates:])]
        new_c = bb.emit1("add", [bb.emit1("mul", [acts[0], lag["c"][0]]), bb.emit1("mul", [acts[1], acts[-1]])])
        return [new_c, bb.emit1("mul", [acts[2 % gates], bb.emit1("tanh", [new_c])])]

    c, h = scan(b, ws + bs, [x], [("c", 1, h0, f64(B, H)), ("h", 1, h0, f64(B, H))], step, reverse=reverse)
    return b.build([b.emit1("getitem", [h], {"index": (("int", Dim.const(-1)),)}), c])


def test_split_concat_matmul_separates_state_and_input() -> None:
    g = lstm_like_cell(gates=2)
    new = split_concat_matmul(g)
    assert ops(body(g), "matmul") == 2 and ops(body(new), "matmul") == 4
    assert ops(body(new), "getitem") == 4 and ops(body(new), "concat") == 1  # the concat now feeds nothing
    assert_same(g, new)
    assert_same(g, dce(new))
    assert ops(body(dce(new)), "concat") == 0


def test_split_leaves_matmuls_outside_loops_alone() -> None:
    b = GraphBuilder()
    a, c, w = (b.add_input(Value(t, n)) for t, n in ((f64(B, H), "a"), (f64(B, D), "c"), (f64(H + D, N), "W")))
    g = b.build([b.emit1("matmul", [b.emit1("concat", [a, c], {"axis": 1}), w])])
    assert split_concat_matmul(g) is g


# ---- hoist_scan_invariants ---------------------------------------------------------------------
def test_hoist_moves_the_input_product_out_of_the_loop() -> None:
    g = rnn_graph()
    new = hoist_scan_invariants(g)
    assert ops(body(g), "matmul") == 2 and ops(body(new), "matmul") == 1
    outside = [e for e in new.eqns if e.op == "matmul"]
    assert len(outside) == 1 and outside[0].outputs[0].type == f64(T, B, H)  # [T, B, D] @ [D, H]
    p = scan_eqn(new).params
    assert p["n_seqs"] == 1 and scan_eqn(new).inputs[p["n_consts"]] is outside[0].outputs[0]
    assert_same(g, new)
    assert_same(rnn_graph(reverse=True), hoist_scan_invariants(rnn_graph(reverse=True)))


def test_hoist_consts_sequences_and_per_step_outputs() -> None:
    b = GraphBuilder()
    x, v = b.add_input(Value(f64(T, D), "x")), b.add_input(Value(f64(T, B, D), "v"))
    w, c = b.add_input(Value(f64(D, D), "W")), b.add_input(Value(f64(B, D), "c"))
    h0 = const(b, 0.0, (B, D))

    def step(bb, cs, s, lag):
        w2 = bb.emit1("mul", [cs[0], const(bb, 2.0)])  # consts only: once, before the loop
        shifted = bb.emit1("add", [s[0], cs[1]])  # x[t] + c: stays (it only feeds the loop)
        mask = bb.emit1("dropout_mask", [], {"dtype": "f64", "shape": (B, D), "p": 0.5, "stream": 3})
        h = bb.emit1("tanh", [bb.emit1("add", [bb.emit1("matmul", [lag["h"][0], w2]), shifted])])
        noisy = bb.emit1("mul", [s[1], mask])  # random: stays
        square = bb.emit1("mul", [s[1], s[1]])  # a per-step output of the sequences only
        return [h, noisy, square]

    states = [("h", 1, h0, f64(B, D)), ("noisy", 0, None, f64(B, D)), ("sq", 0, None, f64(B, D))]
    h, noisy, sq = scan(b, [w, c], [x, v], states, step)
    g = b.build([h, noisy, sq])
    new = hoist_scan_invariants(g)
    p = scan_eqn(new).params
    assert p["states"] == (("h", 1), ("noisy", 0))
    # elementwise work on the sequences that only feeds the loop stays in it (hoisted, it would
    # write a [T, ...] array for the loop to read back)
    assert [e.op for e in body(new).eqns] == ["full", "add", "dropout_mask", "matmul", "add", "tanh", "mul"]
    assert not any(e.op == "add" for e in new.eqns if e.op != "scan")
    assert new.outputs[2] not in scan_eqn(new).outputs
    for training in (True, False):
        args = random_args(g, np.random.default_rng(1))
        for a, b_ in zip(interpret(g, args, DIMS, seed=3, training=training),
                         interpret(new, args, DIMS, seed=3, training=training)):
            np.testing.assert_allclose(b_, a, rtol=RTOL, atol=ATOL)
    verify(new)


def test_hoist_removes_a_loop_with_nothing_left() -> None:
    b = GraphBuilder()
    x, w = b.add_input(Value(f64(T, B, D), "x")), b.add_input(Value(f64(D, H), "W"))

    def step(bb, c, s, lag):
        return [bb.emit1("tanh", [bb.emit1("matmul", [s[0], c[0]])])]

    (y,) = scan(b, [w], [x], [("y", 0, None, f64(B, H))], step, reverse=True)
    g = b.build([y])
    new = hoist_scan_invariants(g)
    assert ops(new, "scan") == 0 and [e.op for e in new.eqns] == ["matmul", "tanh"]
    assert_same(g, new)


# ---- merge_matmuls -----------------------------------------------------------------------------
def test_merge_matmuls_sharing_the_left_operand() -> None:
    b = GraphBuilder()
    a = b.add_input(Value(f64(B, H), "a"))
    ws = [b.add_input(Value(f64(H, n), f"W{k}")) for k, n in enumerate((H, N, H))]
    v = b.add_input(Value(f64(H, H), "V"))
    prods = [b.emit1("matmul", [a, w]) for w in ws]
    late = b.emit1("tanh", [prods[0]])  # [B, H]
    w_late = b.emit1("matmul", [b.emit1("transpose", [late], {"perm": (1, 0)}), a])  # [H, H], from a @ W0
    dependent = b.emit1("matmul", [a, b.emit1("add", [w_late, v])])
    g = b.build([*(b.emit1("tanh", [p]) for p in prods), dependent])
    new = merge_matmuls(g)
    assert ops(g, "matmul") == 5 and ops(new, "matmul") == 3  # the one depending on a @ W0 stays apart
    assert ops(new, "concat") == 1 and ops(new, "getitem") == 3
    assert_same(g, new)


def test_merge_sums_of_state_products_in_loops() -> None:
    """dz = d_f @ W_f^T + d_i @ W_i^T + b[t], as a backward step has it -> one matmul per step."""
    b = GraphBuilder()
    x, bias = b.add_input(Value(f64(T, B, N), "x")), b.add_input(Value(f64(T, B, H), "bias"))
    w1, w2 = (b.add_input(Value(f64(k, H), f"W{j}")) for j, k in enumerate((H, N)))
    h0 = const(b, 0.0, (B, H))

    def step(bb, c, s, lag):
        a1 = bb.emit1("tanh", [lag["h"][0]])
        a2 = bb.emit1("mul", [s[0], bb.emit1("getitem", [lag["h"][0]], {"index": (("slice", None, None, 1),
                                                                                  ("slice", None, N, 1))})])
        p1, p2 = bb.emit1("matmul", [a1, c[0]]), bb.emit1("matmul", [a2, c[1]])
        p3 = bb.emit1("matmul", [s[0], c[1]])  # free of the states: hoisted, not merged
        total = bb.emit1("add", [bb.emit1("add", [p1, s[1]]), bb.emit1("add", [p2, p3])])
        return [bb.emit1("tanh", [total])]

    (h,) = scan(b, [w1, w2], [x, bias], [("h", 1, h0, f64(B, H))], step)
    g = b.build([h])
    new = merge_matmuls(g)
    assert ops(body(g), "matmul") == 3 and ops(body(new), "matmul") == 2  # a1 @ W0 + a2 @ W1 merged
    assert ops(body(new), "concat") == 2
    assert_same(g, new)
    opt = optimize(g, verify_each=True)
    assert ops(body(opt), "matmul") == 1
    assert_same(g, opt)
    top = GraphBuilder()
    a1, a2 = top.add_input(Value(f64(B, H), "a1")), top.add_input(Value(f64(B, N), "a2"))
    w1, w2 = top.add_input(Value(w1.type, "W0")), top.add_input(Value(w2.type, "W1"))
    plain = top.build([top.emit1("add", [top.emit1("matmul", [a1, w1]), top.emit1("matmul", [a2, w2])])])
    assert merge_matmuls(plain) is plain  # outside loops sums are left alone


def test_narrow_matmuls_computes_only_the_columns_read() -> None:
    b = GraphBuilder()
    a, w = b.add_input(Value(f64(B, D), "a")), b.add_input(Value(f64(D, H + N), "W"))
    p = b.emit1("matmul", [a, w])
    cols = b.emit1("getitem", [p], {"index": (("slice", None, None, 1), ("slice", None, H, 1))})
    g = b.build([cols])
    new = narrow_matmuls(g)
    (mm,) = [e for e in new.eqns if e.op == "matmul"]
    assert mm.outputs[0] is cols and mm.inputs[1].type == f64(D, H)
    assert_same(g, new)
    both = b.build([cols, p])  # the whole product is read too: nothing to narrow
    assert narrow_matmuls(both) is both


def test_merge_then_hoist_gives_one_state_matmul_per_step() -> None:
    g = lstm_like_cell()
    new = optimize(g, verify_each=True)
    step = body(new)
    assert ops(step, "matmul") == 1 and ops(step, "fused") == 1
    assert not any(REGISTRY[e.op].elementwise for e in step.eqns)
    assert_same(g, new)
    rev = lstm_like_cell(reverse=True)
    assert_same(rev, optimize(rev, verify_each=True))


# ---- fuse_elementwise --------------------------------------------------------------------------
def test_fuse_chains_with_an_output_used_outside() -> None:
    b = GraphBuilder()
    x, y, w = (b.add_input(Value(t, n)) for t, n in ((f64(B, H), "x"), (f64(H), "y"), (f64(H, H), "W")))
    m = b.emit1("mul", [x, y])
    s = b.emit1("add", [m, const(b, 1.0)])
    t = b.emit1("tanh", [s])
    side = b.emit1("matmul", [m, w])  # m is also read outside the group
    g = b.build([t, side])
    new = fuse_elementwise(g)
    assert [e.op for e in new.eqns] == ["fused", "matmul"]
    fused = new.eqns[0]
    assert set(fused.outputs) == {m, t} and fused.inputs == (x, y)
    assert [e.op for e in fused.params["body"].eqns] == ["mul", "full", "add", "tanh"]
    assert_same(g, new)


def test_fuse_never_makes_a_cycle_or_mixes_shapes() -> None:
    b = GraphBuilder()
    x, v = b.add_input(Value(f64(B, H), "x")), b.add_input(Value(f64(H), "v"))
    e = b.emit1("exp", [x])
    total = b.emit1("sum", [e], {"axes": (0, 1), "keepdims": False})
    scaled = b.emit1("mul", [e, total])  # needs the sum, which needs exp: exp and mul cannot fuse
    small = b.emit1("neg", [b.emit1("abs", [v])])  # [H]: a group of its own
    g = b.build([b.emit1("add", [scaled, small])])
    new = fuse_elementwise(g)
    fused = [e for e in new.eqns if e.op == "fused"]
    assert len(fused) == 2
    assert sorted(len(f.params["body"].eqns) for f in fused) == [2, 2]  # (mul, add) and (abs, neg)
    assert ops(new, "exp") == 1
    assert_same(g, new)


# ---- batch_accumulations -----------------------------------------------------------------------
def accumulation(*, reverse=False, init_value=0.0, whole=False, extra=False, reuse=False) -> Graph:
    """A backward-like scan: a carried state and dW[t] = dW[t+1] + transpose(a[t]) @ g[t], db += sum(g[t])."""
    b = GraphBuilder()
    a, gs = b.add_input(Value(f64(T, B, K), "a")), b.add_input(Value(f64(T, B, N), "g"))
    u = b.add_input(Value(f64(N, N), "U"))
    h0, dw0, db0 = const(b, 0.0, (B, N)), const(b, init_value, (K, N)), const(b, 0.0, (N,))

    def step(bb, c, s, lag):
        h = bb.emit1("tanh", [bb.emit1("add", [bb.emit1("matmul", [lag["h"][0], c[0]]), s[1]])])
        term = bb.emit1("matmul", [bb.emit1("transpose", [s[0]], {"perm": (1, 0)}), h])
        if extra:
            term = bb.emit1("add", [term, bb.emit1("mul", [const(bb, 2.0, (K, N)), const(bb, 0.5)])])
        dw_prev = lag["dW"][0]
        if reuse:
            h = bb.emit1("add", [h, bb.emit1("sum", [dw_prev], {"axes": (0,), "keepdims": False})])
        db = bb.emit1("add", [lag["db"][0], bb.emit1("reshape", [bb.emit1(
            "sum", [s[1]], {"axes": (0,), "keepdims": True})], {"shape": (N,)})])
        return [h, bb.emit1("add", [dw_prev, term]), db]

    states = [("h", 1, h0, f64(B, N)), ("dW", 1, dw0, f64(K, N)), ("db", 1, db0, f64(N))]
    h, dw, db = scan(b, [u], [a, gs], states, step, reverse=reverse)
    last = Dim.const(0 if reverse else -1)
    pick = [b.emit1("getitem", [v], {"index": (("int", last),)}) for v in (h, dw, db)]
    return b.build([*pick, dw] if whole else pick)


@pytest.mark.parametrize("reverse", [False, True])
def test_batch_accumulations_becomes_one_product_after_the_loop(reverse: bool) -> None:
    g = accumulation(reverse=reverse)
    new = batch_accumulations(g)
    p = scan_eqn(new).params
    assert [n for n, lag in p["states"] if lag] == ["h"]
    assert ops(body(new), "matmul") == 2  # the recurrence's own h @ U and the now-dead dW term
    after = [e for e in new.eqns[new.eqns.index(scan_eqn(new)) + 1:]]
    assert [e.op for e in after if e.op in ("matmul", "sum")] == ["matmul", "sum"]
    assert_same(g, new)
    opt = optimize(g, verify_each=True)
    assert ops(body(opt), "matmul") == 1
    assert_same(g, opt)


def test_batch_accumulations_keeps_other_terms_in_the_loop() -> None:
    g = accumulation(extra=True)
    new = batch_accumulations(g)
    assert ("dW", 1) in scan_eqn(new).params["states"]
    assert_same(g, new)


@pytest.mark.parametrize("case", [{"init_value": 1.0}, {"whole": True}, {"reuse": True}])
def test_batch_accumulations_leaves_other_states_alone(case: dict) -> None:
    g = accumulation(**case)
    new = batch_accumulations(g)
    assert ("dW", 1) in scan_eqn(new).params["states"]
    assert_same(g, new)


# ---- every spec, forward and backward ------------------------------------------------------------
STD_LSTM = """dim T, B
model classify(x: f32[T, B, 8], y: i32[B]) { h = lstm(x, hidden=64)
 logits = dense(h[-1], 10)
 loss = cross_entropy(logits, y)
 output probs = softmax(logits) }
"""

HAND = {
    # a bidirectional RNN (one reversed scan), then a second-order recurrence (lag 2) with a per-step output
    "birnn_lag2": """dim T, B
layer birnn(x: [T, B, D], hidden H) -> [T, B, 2 * H] {
  param W: [D, H]
  param U_f: [H, H] = orthogonal
  param U_b: [H, H] = orthogonal
  u = x @ W
  recur t over x {
    init f = zeros([B, H])
    f[t] = tanh(u[t] + f[t-1] @ U_f)
  }
  recur t over x reverse {
    init g = zeros([B, H])
    g[t] = tanh(u[t] + g[t+1] @ U_b)
  }
  return concat(f, g)
}
model m(x: f32[T, B, 8], y: i32[B]) {
  h = birnn(x, hidden=6)
  recur t over h {
    init s = zeros([B, 12])
    param A: [12, 12] = orthogonal(0.5)
    a = tanh(h[t] + s[t-1] @ A)
    s[t] = a + 0.5 * s[t-2]
    e[t] = sum(a * a, axis=-1)
  }
  loss = cross_entropy(dense(s[-1], 10), y) + 0.01 * mean(e)
  output energy = e
}
""",
    # a custom reversed cell: embedding lookups, a three-way concat, lag 2, dropout, per-step outputs
    "custom_cell": """dim T, B
layer cell(x: [T, B, D], ids: i32[T, B], hidden H) -> [T, B, H] {
  param W: [H + D + 4, H]
  param V: [H, H]
  param E: [10, 4] = normal(1.0)
  param b: [H] = zeros
  param s: [H] = ones
  recur t over x reverse {
    init h = zeros([B, H])
    init m = zeros([B, H])
    emb = take(E, ids[t])
    z = concat(h[t+1], x[t], emb)
    k = tanh(x[t] @ W[H:H + D] * 2.0 + b)
    p[t] = sigmoid(z @ W + m[t+2] @ V) * (s * 1.0 + 0.0)
    drop[t] = dropout(x[t], 0.25)
    m[t] = p[t] * k + h[t+1] @ V
    h[t] = tanh(m[t]) + k * 0.5
    sq[t] = x[t] * x[t] + 1.0
  }
  return h + p + sum(drop, axis=-1, keepdims=true) + sum(sq, axis=-1, keepdims=true)
}
model m(x: f32[T, B, 6], ids: i32[T, B], y: i32[B]) {
  h = cell(x, ids, hidden=7)
  loss = cross_entropy(dense(h[0], 10), y)
  output last = h[-1]
}
""",
    # a recurrence over a recurrence: a layer holding a recur called inside a recur
    "nested": """dim T, B, S
layer inner(x: [S, B, D], hidden H) -> [S, B, H] {
  param U: [H, H] = orthogonal
  param W: [D, H]
  recur s over x {
    init g = zeros([B, H])
    g[s] = tanh(x[s] @ W + g[s-1] @ U)
  }
  return g
}
model m(x: f32[T, S, B, 4], y: i32[B]) {
  recur t over x {
    init h = zeros([B, 5])
    param V: [5, 5] = orthogonal
    g = inner(x[t], hidden=5)
    h[t] = tanh(g[-1] + h[t-1] @ V + sum(x[t], axis=0) @ ones([4, 5]))
  }
  loss = cross_entropy(dense(h[-1], 10), y)
}
""",
    "std_lstm": STD_LSTM,
}

CASES = [pytest.param(p, id=p.stem) for p in SPECS] + [pytest.param(src, id=name) for name, src in HAND.items()]


def compile64(spec: Path | str) -> specc.Model:
    return specc.compile(spec, dtype="float64")


def program_args(prog: Program, seed: int = 0) -> tuple[list[np.ndarray], dict[str, int]]:
    """Random inputs (ids within range), parameters perturbed away from their initial values, dim sizes."""
    rng = np.random.default_rng(seed)
    dims = dict(prog.dims)
    for info in prog.inputs:
        for d in info.value.shape:
            for s in d.symbols:
                dims.setdefault(s, DIMS.get(s, 2))
    args = []
    for info in prog.inputs:
        shape = tuple(d.evaluate(dims) for d in info.value.shape)
        if info.value.type.is_float:
            args.append(rng.uniform(0.0, 1.0, shape))
        else:
            args.append(rng.integers(0, _id_range(prog, info.value), shape).astype(np.int32))
    model = specc.api.Model(prog)
    for p, a in zip(prog.params, model.check_params(model.init_params(seed))):
        args.append(a + 0.1 * rng.standard_normal(a.shape))
    return args, dims


def _id_range(prog: Program, v: Value) -> int:
    for e in prog.graph.walk():
        if e.op == "cross_entropy" and e.inputs[1] is v:
            return e.inputs[0].shape[-1].value
    return 10 if any(e.op == "take" for e in prog.graph.walk()) else 2


def check_every_stage(graph: Graph, args, dims, what: str) -> Graph:
    want = interpret(graph, args, dims, seed=11)
    stages: list[tuple[str, Graph]] = []
    final = optimize(graph, verify_each=True, dump_after="all", dump=lambda name, g: stages.append((name, g)))
    for name, g in stages:
        got = interpret(g, args, dims, seed=11)
        for k, (a, b) in enumerate(zip(want, got)):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11, err_msg=f"{what}: output {k} after {name}")
    for p in PIPELINE:  # and each pass alone on the original graph
        alone = p.run(graph)
        verify(alone, where=f"{what} after {p.name} alone")
        for k, (a, b) in enumerate(zip(want, interpret(alone, args, dims, seed=11))):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11, err_msg=f"{what}: output {k}, {p.name} alone")
    return final


@pytest.mark.parametrize("spec", CASES)
def test_forward_same_outputs_after_every_pass(spec) -> None:
    prog = compile64(spec).program
    args, dims = program_args(prog)
    final = check_every_stage(prog.graph, args, dims, "forward")
    assert final.inputs == prog.graph.inputs


@pytest.mark.parametrize("spec", CASES)
def test_backward_same_outputs_after_every_pass(spec) -> None:
    autodiff = pytest.importorskip("specc.transforms.autodiff")
    prog = compile64(spec).program
    args, dims = program_args(prog)
    check_every_stage(autodiff.value_and_grad(prog).graph, args, dims, "backward")


def test_optimize_program_keeps_the_interface() -> None:
    prog = compile64(HAND["birnn_lag2"]).program
    opt = optimize_program(prog, verify_each=True)
    assert opt.inputs == prog.inputs and opt.params == prog.params and opt.output_names == prog.output_names
    assert opt.graph.inputs == prog.graph.inputs
    args, dims = program_args(prog)
    for a, b in zip(interpret(prog.graph, args, dims), interpret(opt.graph, args, dims)):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)


# ---- the LSTM ----------------------------------------------------------------------------------
def lstm_source() -> Path | str:
    path = ROOT / "specs" / "lstm.nn"
    return path if path.exists() else STD_LSTM


def depends_on(graph: Graph, roots: set[int]) -> set[int]:
    """uids of the values of ``graph`` computed from ``roots``."""
    tainted = set(roots)
    for e in graph.eqns:
        if any(v.uid in tainted for v in e.inputs):
            tainted.update(v.uid for v in e.outputs)
    return tainted


def test_lstm_step_is_one_matmul_and_one_fused_equation() -> None:
    prog = specc.compile(lstm_source()).program
    opt = optimize_program(prog, verify_each=True)
    scan_ = scan_eqn(opt.graph)
    step = scan_.params["body"]
    p = scan_.params
    lagged = {v.uid for v in step.inputs[p["n_consts"] + p["n_seqs"]:]}
    state_matmuls = [e for e in step.eqns if e.op == "matmul" and e.inputs[0].uid in depends_on(step, lagged)]
    assert len(state_matmuls) == 1 and ops(step, "matmul") == 1
    assert state_matmuls[0].outputs[0].shape[-1] == Dim.const(4 * 64)  # the four gates at once
    (fused,) = [e for e in step.eqns if e.op == "fused"]
    gate_ops = [e.op for e in fused.params["body"].eqns]
    assert gate_ops.count("sigmoid") == 3 and gate_ops.count("tanh") == 2
    assert not any(REGISTRY[e.op].elementwise for e in step.eqns)  # all the gate math is in the fused one
    assert {v.uid for v in fused.outputs} == {v.uid for v in step.outputs}
    assert len(prog.graph.eqns) == 8 and ops(body(prog.graph)) == 18 and ops(body(prog.graph), "matmul") == 4


def test_lstm_backward_accumulates_weight_gradients_after_the_loop() -> None:
    autodiff = pytest.importorskip("specc.transforms.autodiff")
    prog = specc.compile(lstm_source()).program
    opt = optimize(autodiff.value_and_grad(prog).graph, verify_each=True)
    scans = [e for e in opt.eqns if e.op == "scan"]
    assert len(scans) == 2
    backward = scans[1].params
    assert backward["reverse"]
    lagged = [n for n, lag in backward["states"] if lag]
    assert len(lagged) == 2, f"only the two carried cotangents stay in the loop, not {lagged}"
    step = backward["body"]
    assert ops(step, "matmul") == 1 and ops(step, "fused") == 1  # dh = concat(d_f, ..., d_c) @ W_h^T
    big = [e for e in opt.eqns[opt.eqns.index(scans[1]):] if e.op == "matmul"]
    assert any(e.inputs[0].shape[-1] == B * T or e.inputs[0].shape[-1] == T * B for e in big)


def test_lstm_golden(update_golden: bool) -> None:
    path = ROOT / "specs" / "lstm.nn"
    if not path.exists():
        pytest.skip("specs/lstm.nn is not there yet")
    text = format_program(optimize_program(specc.compile(path).program)) + "\n"
    golden = GOLDEN / "lstm.opt.ir"
    if update_golden:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), "no golden file yet: run `pytest tests/test_passes.py --update-golden`"
    assert text == golden.read_text(), "the optimised LSTM IR changed; if on purpose: pytest --update-golden"


# ---- the command line --------------------------------------------------------------------------
def test_cli_ir_optimized(capsys) -> None:
    spec = str(ROOT / "specs" / "lstm.nn")
    assert main(["ir", spec, "--optimized"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model classify(") and " = fused " in out and "--optimized" not in out
    assert main(["ir", spec, "--dump-after", "hoist_scan_invariants,merge_matmuls"]) == 0
    out = capsys.readouterr().out
    assert out.count("# after ") == 2 and out.startswith("# after hoist_scan_invariants\nmodel classify(")
    assert main(["ir", spec, "--dump-after", "nope"]) == 1
    assert "no pass named nope" in capsys.readouterr().err


def test_cli_list_passes(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["ir", "--list-passes"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PASS_NAMES)
