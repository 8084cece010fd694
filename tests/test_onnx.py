"""ONNX export (specc.export) against specc's own forward pass, through onnxruntime.

- every spec in specs/ (by glob): exported with initialised parameters, passes
  ``onnx.checker`` (full check, with shape inference), runs in onnxruntime at two sizes of
  each symbolic dim with one exported file, and equals ``model.forward`` (the reference
  interpreter) to float32 precision; the declared outputs, and the loss with ``with_loss``;
- symbolic dims are dynamic axes named after them; only the inputs the outputs read are inputs;
- hand-written specs cover every op with a rule: 1-D and 2-D convolutions and pools with
  stride, padding and dilation (opaque ``(L + 1) // 2`` sizes), reductions, softmax along
  axis 0, every elementwise formula and cast, indexing with negative, symbolic and strided
  bounds, reshape, transpose, concat, every rank of matmul, embedding lookup, losses, a
  reversed recurrence, a lag-2 state, per-step outputs, dropout and draws inside and
  outside a loop; in float32 and float64; an optimised graph (fused groups, hoisted matmuls);
- the standard LSTM and GRU become ONNX's ``LSTM``/``GRU`` ops, and only they (written-out
  variants that differ in one term stay a ``Scan``), both forms equal to ``model.forward``;
- random draws: ``mean`` (the default; a VAE decodes mu), ``input`` (the draws are inputs:
  fed the draws specc makes, the export equals ``model.forward`` with that seed) and
  ``sample`` (fresh standard-normal draws each run);
- an op with no rule fails with ``file:line:col: error:`` naming the op; the CLI and the API.

Skipped when onnx or onnxruntime is not installed (``pip install "specc[onnx]"``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.backends.interp import interpret
from specc.backends.lift import lift_random
from specc.cli import main
from specc.errors import ExportError
from specc.ir.core import NUMPY_DTYPES, prune

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from specc.export import to_onnx
from specc.export.onnx_rules import NO_RULE, RANDOM_OPS, RULES

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
SIZES = ({"T": 5, "B": 3, "L": 11}, {"T": 9, "B": 7, "L": 14})
TOL = {"float32": {"rtol": 1e-5, "atol": 2e-6}, "float64": {"rtol": 1e-8, "atol": 1e-10}}  # ORT's own exp, tanh
MEANS = {"normal": 0.0, "uniform": 0.5, "dropout_mask": 1.0}  # what `random="mean"` puts in place of a draw

NN_OPS = """\
# 1-D convolution and pooling over a symbolic length (opaque (L + 1) // 2 sizes), reductions, losses.
dim B, L

model nn_ops(s: f32[B, 2, L], ids: i32[B, 3], y: i32[B], t: f32[B, 6]) {
  param w3: [3, 2, 3] = he
  param b3: [3] = normal(0.1)
  param wt: [3, 2, 3] = he
  c1 = conv1d(s, w3, b3, stride=2, padding=2, dilation=2)
  output ct = conv_transpose1d(c1, wt, stride=2, padding=1, output_padding=1, dilation=2)
  q1 = max_pool1d(c1, kernel=2, stride=1)
  q2 = avg_pool1d(s, kernel=3, stride=2, padding=1)
  r1 = sum(c1, axis=[0, 2], keepdims=true)
  r2 = mean(q2, axis=-1)
  r3 = max(s, axis=[0, 2])
  output r4 = max(ids, axis=1, keepdims=true)
  h = dense(flatten(q2[:, :, :2]), 6)
  z = dense(h, 4)
  loss = cross_entropy(z, y) + bce_logits(h, t) + mean(r1) + mean(r2) + mean(r3) + mean(q1)
  output lsm = log_softmax(z, axis=0)
  output sm = softmax(h, axis=0)
  output c1
  output q1
  output total = sum(s)
}
"""

FORMULAS = """\
# Every elementwise formula (unary, binary, integer, casts) and layer norm.
dim B

model formulas(x: f32[B, 6], ids: i32[B, 6]) {
  param W: [6, 6] = glorot
  h = x @ W
  acts = relu(h) + leaky_relu(h) + elu(h) + gelu(h) + softplus(h) + sigmoid(h) + tanh(h)
  more = exp(-abs(h)) + log(1 + abs(h)) + sqrt(abs(h)) + maximum(h, x) + minimum(h, -x) + clip(h, -0.5, 0.5)
  powers = abs(h) ** 1.5 + h ** 2 + h / (1 + h * h) - 2 * h
  k = ids * 2 + 1 - ids
  output k2 = maximum(k, ids) + abs(-k)
  output ik = int(float(k) * 1.5 + h)
  output normed = layer_norm(h)
  loss = mean(acts + more + powers)
  output all = acts * more - powers
}
"""

LAYOUT = """\
# Indexing (negative, symbolic and strided bounds), transpose, reshape, concat, every rank of matmul.
dim B, L

model layout(s: f32[B, 2, L], ids: i32[B, 3]) {
  output g1 = s[:, -1, 1:L-1:2]
  output g2 = s[-1]
  output g3 = s[:, :, L-2]
  output g4 = s[1:, :, ::3]
  param V: [2, 3, 4] = glorot
  output bm = reshape(s[:, :, :3], [B, 2, 3]) @ V[0]
  output tr = transpose(s, [2, 0, 1])
  output rs = reshape(s, [B, -1])
  output cat = concat(s, s[:, :1], axis=1)
  output picked = ids[:, 1:] * 2
  output lead_sum = sum(s, axis=[0, 1], keepdims=true)
  output lead_mean = mean(s, axis=0)
  output lead_imax = max(ids, axis=0, keepdims=true)
  output mv = V[1] @ s[0, 1, :4]
  output vm = s[0, 0, :3] @ V[1]
  output vv = s[0, 0, :3] @ s[0, 1, :3]
  output bb = s[:, :, :3] @ reshape(s[:, :, :3], [B, 3, 2])
  loss = mean(s)
}
"""

RECURRENT = """\
# Recurrences: reversed, second order (lag 2), per-step outputs, dropout, draws inside and outside loops.
dim T, B

model recurrent(x: f32[T, B, 4], y: i32[B]) {
  param W: [4, 6] = glorot
  param U: [6, 6] = orthogonal
  u = dropout(x @ W, 0.25)
  recur t over x reverse {
    init g = zeros([B, 6])
    g[t] = tanh(u[t] + g[t+1] @ U)
  }
  recur t over x {
    init s = zeros([B, 6])
    param A: [6, 6] = orthogonal(0.5)
    a = tanh(g[t] + s[t-1] @ A) * dropout(ones([B, 6]), 0.3)
    s[t] = a + 0.5 * s[t-2] + 0.1 * normal([B, 6])
    e[t] = sum(a * a, axis=-1)
  }
  noise = uniform([B, 6])
  logits = dense(s[-1] + noise, 3)
  loss = cross_entropy(logits, y) + 0.01 * mean(e)
  output probs = softmax(logits)
  output energy = e
  output first = s[0]
  output g
}
"""

IMAGES = """\
# 2-D convolution and pools with stride, padding and dilation; an embedding.
dim B

model images(x: f32[B, 2, 7, 6], ids: i32[B, 3], y: i32[B]) {
  param w: [3, 2, 3, 2] = he
  param E: [5, 4] = normal(1.0)
  param wt: [3, 2, 2, 3] = he
  a = relu(conv2d(x, w, stride=[2, 1], padding=[1, 1], dilation=[1, 2]))
  output u = conv_transpose2d(a, wt, stride=[2, 1], padding=[1, 0], output_padding=[1, 0], dilation=[1, 2])
  output p = max_pool2d(a, kernel=2, stride=[1, 2], padding=1)
  output q = avg_pool2d(abs(a), kernel=[2, 3], stride=1, padding=[1, 0])
  e = embedding(ids, vocab=5, size=4)
  h = concat(flatten(p), flatten(q), flatten(e[:, 1:, ::2]), axis=-1)
  z = dense(maximum(h, 0.1 * h), 4)
  loss = cross_entropy(z, y) + mean(e[:, -1])
  output probs = softmax(z)
}
"""

HAND = {"nn_ops": NN_OPS, "formulas": FORMULAS, "layout": LAYOUT, "recurrent": RECURRENT, "images": IMAGES}


# ---- helpers ---------------------------------------------------------------------------
def make_inputs(model: specc.Model, dims: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs: floats in [0, 1) (pixels, targets), class ids below their class count."""
    rng = np.random.default_rng(seed)
    out = {}
    env = {**dims, **model.program.dims}
    for info in model.program.inputs:
        shape = tuple(d.evaluate(env) for d in info.value.shape)
        if info.value.dtype == "i32":
            out[info.name] = rng.integers(0, model.label_classes.get(info.name, 5), shape).astype(np.int32)
        else:
            out[info.name] = rng.uniform(0, 1, shape).astype(NUMPY_DTYPES[info.value.dtype])
    return out


def reference(model: specc.Model, params, inputs, names: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    """specc's forward; with random draws, the interpreter with each draw at its mean (``random="mean"``)."""
    prog = model.program
    graph, draws = lift_random(prune(prog.graph, tuple(prog.output(n) for n in names)))
    if not draws:
        outs = model.forward(params, seed=seed, **inputs)
        return {n: outs[n] for n in names}
    arrays, dims = model.bind_inputs(inputs)
    args = [arrays[i.name] for i in prog.inputs] + model.check_params(params)
    args += [np.full(tuple(d.evaluate(dims) for d in r.value.shape), MEANS[r.op], NUMPY_DTYPES[r.value.dtype])
             for r in draws]
    return dict(zip(names, interpret(graph, args, dims, seed=seed, training=False)))


def perturbed(params: dict, seed: int = 7) -> dict:
    """Initialised parameters plus noise, so that no bias is zero or one (a swapped bias would show)."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0.0, 0.05, v.shape)).astype(v.dtype) for k, v in params.items()}


def session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run_onnx(sess, inputs: dict) -> dict[str, np.ndarray]:
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def compare(model, proto, params, sizes=SIZES) -> float:
    """Run the export at each binding of the dims; returns the largest absolute error over outputs and sizes."""
    sess = session(proto)
    names = [o.name for o in sess.get_outputs()]
    worst = 0.0
    for k, dims in enumerate(sizes):
        inputs = make_inputs(model, dims, seed=k)
        got, want = run_onnx(sess, inputs), reference(model, params, inputs, names)
        for n in names:
            assert got[n].shape == want[n].shape, (n, dims)
            assert got[n].dtype == want[n].dtype, (n, dims)
            np.testing.assert_allclose(got[n], want[n], err_msg=f"{model.name}.{n} at {dims}", **TOL[model.dtype])
            worst = max(worst, float(np.max(np.abs(got[n].astype(np.float64) - want[n]), initial=0.0)))
    return worst


def compile_hand(name: str, dtype: str = "float32") -> specc.Model:
    return specc.compile(HAND[name], target="interp", dtype=dtype)


# ---- every spec ------------------------------------------------------------------------
@pytest.mark.parametrize("with_loss", [False, True], ids=["outputs", "with_loss"])
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_round_trips_through_onnxruntime(path, with_loss, record_property):
    model = specc.compile(path, target="interp")
    params = perturbed(model.init_params(seed=0))
    proto = to_onnx(model, params, with_loss=with_loss)
    onnx.checker.check_model(proto, full_check=True)
    declared = [n for n in model.program.output_names if n != "loss"]
    assert [o.name for o in proto.graph.output] == (["loss"] if with_loss else []) + declared
    worst = compare(model, proto, params)
    record_property("max_abs_error", worst)
    print(f"{path.stem} ({'with loss' if with_loss else 'outputs'}): max abs error {worst:.3g}")


OUTPUTS_READ_LABELS = {"bilstm_tagger"}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_inputs_are_what_the_outputs_read_with_named_dynamic_axes(path):
    model = specc.compile(path, target="interp")
    proto = to_onnx(model, model.init_params(seed=0))
    free = {s for i in model.program.inputs for d in i.value.shape for s in d.symbols} - set(model.program.dims)
    for v in proto.graph.input:
        info = next(i for i in model.program.inputs if i.name == v.name)
        axes = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        want = [str(d) if not d.is_const else d.value for d in
                (d.substitute({k: type(d).const(n) for k, n in model.program.dims.items()}) for d in info.value.shape)]
        assert axes == want
    named = {d.dim_param for v in proto.graph.input for d in v.type.tensor_type.shape.dim if d.dim_param}
    assert named == free
    # labels only feed the loss, except where an output reads them (bilstm_tagger's per-step losses)
    assert ("y" in [v.name for v in proto.graph.input]) == (path.stem in OUTPUTS_READ_LABELS)


def test_the_lstm_is_one_scan_whose_body_is_the_cell():
    model = specc.compile(ROOT / "specs" / "lstm.nn", target="interp")
    params = perturbed(model.init_params(seed=0))
    proto = to_onnx(model, params, cells="scan")
    compare(model, proto, params)
    scans = [n for n in proto.graph.node if n.op_type == "Scan"]
    assert len(scans) == 1 and not any(n.op_type in ("LSTM", "Loop") for n in proto.graph.node)
    body = next(a.g for a in scans[0].attribute if a.name == "body")
    ops = [n.op_type for n in body.node]
    assert ops.count("MatMul") == 4 and ops.count("Sigmoid") == 3 and ops.count("Tanh") == 2
    assert all("lstm.nn:" in n.doc_string for n in body.node if n.op_type != "Identity")  # each node's .nn line
    assert {d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim} >= {"T", "B"}


# ---- every op, by hand-written specs ---------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_written_specs_cover_every_op(name, dtype):
    model = compile_hand(name, dtype)
    params = perturbed(model.init_params(seed=1))
    proto = to_onnx(model, params, with_loss=True)
    onnx.checker.check_model(proto, full_check=True)
    try:
        session(proto)
    except Exception as e:  # onnxruntime's CPU provider has no float64 Conv or AveragePool kernels
        if dtype == "float64" and "NOT_IMPLEMENTED" in str(e) and ("Conv" in str(e) or "AveragePool" in str(e)):
            pytest.skip(f"onnxruntime cannot run this float64 graph: {str(e)[:100]}")
        raise
    compare(model, proto, params)


def test_every_forward_op_has_a_rule():
    from specc.ops import REGISTRY

    missing = set(REGISTRY) - set(RULES) - set(NO_RULE) - set(RANDOM_OPS)
    assert not missing, f"ops without an ONNX export rule: {sorted(missing)}"
    assert not set(NO_RULE) & set(RULES)


def test_an_optimised_graph_exports_too():
    """Fused groups and matmuls hoisted out of the recurrence (what the CPU backend runs)."""
    from specc.transforms.passes import optimize

    model = specc.compile(ROOT / "specs" / "peephole_lstm.nn", target="interp")
    prog = model.program
    fast = specc.api.Model(dataclasses.replace(prog, graph=optimize(prog.graph)), target="interp")
    assert any(e.op == "fused" for e in fast.program.graph.walk())
    params = model.init_params(seed=0)
    proto = to_onnx(fast, params)
    onnx.checker.check_model(proto, full_check=True)
    compare(model, proto, params)


# ---- standard cells as ONNX's LSTM and GRU ops ----------------------------------------
LSTM_PARAMS = """\
  param W_f: [12, 7] = glorot
  param W_i: [12, 7] = glorot
  param W_o: [12, 7] = glorot
  param W_c: [12, 7] = glorot
  param b_f: [7] = ones
  param b_i: [7] = zeros
  param b_o: [7] = zeros
  param b_c: [7] = zeros"""
GRU_PARAMS = """\
  param W_r: [5, 7] = glorot
  param W_z: [5, 7] = glorot
  param W_n: [5, 7] = glorot
  param U_r: [7, 7] = orthogonal
  param U_z: [7, 7] = orthogonal
  param U_n: [7, 7] = orthogonal
  param b_r: [7] = zeros
  param b_z: [7] = zeros
  param b_n: [7] = zeros
  param c_n: [7] = zeros"""
LSTM_CELL = """\
    init c = zeros([B, 7])
    z = concat({first}, {second})
    f = sigmoid(z @ W_f + b_f)
    i = sigmoid(z @ W_i + b_i)
    o = sigmoid(z @ W_o + b_o)
    g = tanh(z @ W_c + b_c)
    c[t] = f * c[t-1] + i * g
    h[t] = o * tanh(c[t])"""
GRU_CELL = """\
    r = sigmoid(x[t] @ W_r + h[t-1] @ U_r + b_r)
    u = sigmoid(x[t] @ W_z + h[t-1] @ U_z + b_z)
    n = tanh(x[t] @ W_n + b_n + r * (h[t-1] @ U_n + c_n))
    h[t] = (1 - u) * n + u * h[t-1]"""


def cell_spec(params: str, cell: str, out: str = "output cs = c", reverse: str = "") -> str:
    """A model with a recurrence written in it (``cell`` is its body after ``init h``)."""
    return f"""dim T, B
model m(x: f32[T, B, 5], y: i32[B]) {{
{params}
  recur t over x {reverse} {{
    init h = zeros([B, 7])
{cell}
  }}
  logits = dense(h[-1], 3)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
  {out}
}}
"""


HX = LSTM_CELL.format(first="h[t-1]", second="x[t]")
CELLS = {  # name -> (spec, the ONNX op it must export as)
    "lstm_hx": (cell_spec(LSTM_PARAMS, HX, out=""), "LSTM"),
    "lstm_xh": (cell_spec(LSTM_PARAMS, LSTM_CELL.format(first="x[t]", second="h[t-1]"), out=""), "LSTM"),
    "lstm_cells_read": (cell_spec(LSTM_PARAMS, HX), "Scan"),  # ONNX's LSTM gives only the last c
    "lstm_reversed": (cell_spec(LSTM_PARAMS, HX.replace("[t-1]", "[t+1]"), out="", reverse="reverse"), "Scan"),
    "lstm_tanh_output_gate": (cell_spec(LSTM_PARAMS, HX.replace("o = sigmoid", "o = tanh"), out=""), "Scan"),
    "gru": (cell_spec(GRU_PARAMS, GRU_CELL, out=""), "GRU"),
    "gru_extra_state": (cell_spec(GRU_PARAMS, GRU_CELL + "\n    init c = zeros([B, 7])\n    c[t] = c[t-1] + h[t]",
                                  out=""), "Scan"),
    "gru_no_reset_bias": (cell_spec(GRU_PARAMS, GRU_CELL.replace("(h[t-1] @ U_n + c_n)", "(h[t-1] @ U_n)"),
                                    out="output k = c_n"), "Scan"),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_only_exactly_standard_cells_become_onnx_lstm_or_gru_ops(name):
    spec, want = CELLS[name]
    model = specc.compile(spec, target="interp")
    params = perturbed(model.init_params(seed=2))
    proto = to_onnx(model, params)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert want in ops and not {"Scan", "LSTM", "GRU"} - {want} & set(ops)
    compare(model, proto, params)


@pytest.mark.parametrize("spec,op", [("lstm", "LSTM"), ("gru", "GRU"), ("peephole_lstm", "Scan"), ("rnn", "Scan")])
def test_the_shipped_cells_export_as(spec, op):
    model = specc.compile(ROOT / "specs" / f"{spec}.nn", target="interp")
    params = perturbed(model.init_params(seed=0))
    for cells, want in (("onnx", op), ("scan", "Scan")):
        proto = to_onnx(model, params, cells=cells)
        loops = [n.op_type for n in proto.graph.node if n.op_type in ("Scan", "LSTM", "GRU")]
        assert loops == [want]
        compare(model, proto, params)


def test_a_gru_with_the_other_update_convention_stays_a_scan():
    """h = u * n + (1 - u) * h[t-1] is a GRU too, but not ONNX's: it must not become a GRU op."""
    spec = (ROOT / "specs" / "gru.nn").read_text().replace("h[t] = (1 - u) * n + u * h[t-1]",
                                                          "h[t] = u * n + (1 - u) * h[t-1]")
    model = specc.compile(spec, target="interp")
    params = perturbed(model.init_params(seed=0))
    proto = to_onnx(model, params)
    assert "GRU" not in [n.op_type for n in proto.graph.node] and "Scan" in [n.op_type for n in proto.graph.node]
    compare(model, proto, params)


# ---- random draws ----------------------------------------------------------------------
def test_vae_exports_its_mean_code_by_default():
    model = specc.compile(ROOT / "specs" / "vae.nn", target="interp")
    params = model.init_params(seed=0)
    proto = to_onnx(model, params)
    assert [v.name for v in proto.graph.input] == ["x"]
    compare(model, proto, params)  # the reference with eps = 0
    x = make_inputs(model, {"B": 4})["x"]
    got = run_onnx(session(proto), {"x": x})
    noisy = model.forward(params, seed=0, x=x)["recon"]  # with eps ~ N(0, 1): another reconstruction
    assert np.max(np.abs(got["recon"] - noisy)) > 1e-3


def test_random_input_mode_equals_specc_forward_with_the_same_draws():
    """Draws become inputs ([T, ...] inside a recurrence); fed specc's own draws, the export equals forward."""
    for model in (specc.compile(ROOT / "specs" / "vae.nn", target="interp"), compile_hand("recurrent")):
        params = model.init_params(seed=0)
        proto = to_onnx(model, params, random="input")
        onnx.checker.check_model(proto, full_check=True)
        sess = session(proto)
        names = [o.name for o in sess.get_outputs()]
        _graph, draws = lift_random(prune(model.program.graph, tuple(model.program.output(n) for n in names)))
        fed = [d for d in draws if d.op != "dropout_mask"]  # dropout is the identity at inference
        data = [i.name for i in model.program.inputs]
        extra = [v.name for v in proto.graph.input if v.name not in data]
        assert len(extra) == len(fed)
        for dims in SIZES:
            inputs = make_inputs(model, dims, seed=3)
            _arrays, bound = model.bind_inputs(inputs)
            noise = {name: d.sample(bound, seed=11, training=False) for name, d in zip(extra, fed)}
            got, want = run_onnx(sess, {**inputs, **noise}), model.forward(params, seed=11, training=False, **inputs)
            for n in names:
                np.testing.assert_allclose(got[n], want[n], err_msg=f"{model.name}.{n}", **TOL["float32"])


def test_random_sample_mode_draws_fresh_standard_normal_noise():
    model = specc.compile("dim B\nmodel noisy(x: f32[B, 4]) {\n  output z = x + normal([B, 4])\n"
                          "  loss = mean(z)\n}\n", target="interp")
    proto = to_onnx(model, {}, random="sample")
    sess = session(proto)
    x = np.zeros((20000, 4), np.float32)
    a, b = sess.run(None, {"x": x})[0], sess.run(None, {"x": x})[0]
    assert a.shape == (20000, 4) and not np.array_equal(a, b)
    assert abs(a.mean()) < 0.03 and abs(a.std() - 1.0) < 0.03


# ---- errors, CLI, API ------------------------------------------------------------------
def test_an_op_without_a_rule_is_a_clear_error_at_its_line(monkeypatch):
    monkeypatch.delitem(RULES, "tanh")
    path = ROOT / "specs" / "rnn.nn"
    model = specc.compile(path, target="interp")
    with pytest.raises(ExportError) as err:
        to_onnx(model, model.init_params(seed=0))
    text = err.value.render()
    line = next(n for n, t in enumerate(path.read_text().splitlines(), 1) if "tanh(" in t and "=" in t
                and not t.lstrip().startswith("#"))
    assert f"rnn.nn:{line}:" in text.splitlines()[0]
    assert "error: op 'tanh' has no ONNX export rule" in text
    assert "^" in text  # the equation underlined


def test_cli_export_writes_a_file_that_onnxruntime_runs(tmp_path, capsys):
    model = specc.compile(ROOT / "specs" / "lstm.nn", target="interp")
    params = model.init_params(seed=5)
    ckpt = tmp_path / "lstm.npz"
    np.savez(ckpt, **params)
    out = tmp_path / "lstm.onnx"
    assert main(["export", str(ROOT / "specs" / "lstm.nn"), "--params", str(ckpt), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}: ONNX opset 18" in text and "x: float32[T, B, 8]" in text and "probs: float32[B, 10]" in text
    assert "(LSTM)" in text
    x = make_inputs(model, {"T": 6, "B": 2})["x"]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model.forward(params, x=x)["probs"], **TOL["float32"])
    assert main(["export", str(ROOT / "specs" / "lstm.nn"), "--params", str(ckpt), "-o", str(out),
                 "--cells", "scan"]) == 0
    assert "(Scan)" in capsys.readouterr().out


def test_cli_export_errors_are_clean(tmp_path, capsys, monkeypatch):
    monkeypatch.delitem(RULES, "softmax")
    assert main(["export", str(ROOT / "specs" / "mlp.nn"), "-o", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "mlp.nn:" in err and "op 'softmax' has no ONNX export rule" in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_model_export_onnx_writes_the_file(tmp_path):
    model = specc.compile(ROOT / "specs" / "mlp.nn", target="interp")
    params = model.init_params(seed=0)
    proto = model.export_onnx(params, tmp_path / "mlp.onnx", with_loss=True)
    assert onnx.load(str(tmp_path / "mlp.onnx")).graph.output[0].name == "loss"
    assert [o.name for o in proto.graph.output] == ["loss", "probs"]
    assert sorted(i.name for i in proto.graph.initializer) == sorted(params)


def test_without_onnx_the_error_says_how_to_install(monkeypatch):
    import sys

    from specc.errors import SpeccError
    from specc.export import require_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(SpeccError, match="needs the 'onnx' package") as err:
        require_onnx()
    assert "specc[onnx]" in err.value.render()


def test_a_model_without_outputs_says_what_to_do():
    model = specc.compile("dim B\nmodel m(x: f32[B, 4]) {\n  loss = mean(x)\n}\n", target="interp")
    with pytest.raises(ExportError, match="declares no `output` value") as err:
        to_onnx(model, {})
    assert "--with-loss" in err.value.render()
    assert [o.name for o in to_onnx(model, {}, with_loss=True).graph.output] == ["loss"]


def test_cli_export_with_loss_and_noise_as_an_input(tmp_path, capsys):
    out = tmp_path / "vae.onnx"
    argv = ["export", str(ROOT / "specs" / "vae.nn"), "--with-loss", "--random", "input", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "no --params" in text
    assert "inputs:  x: float32[B, 64], eps: float32[B, 8]" in text
    assert "outputs: loss: float32[], mu: float32[B, 8], recon: float32[B, 64]" in text
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["specc.random"] == "input"
