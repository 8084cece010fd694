"""The Numba CPU backend (specc.backends + specc.runtime) against the reference interpreter.

- every op of the registry has a CPU lowering rule (a new op fails here until it gets one), and every op
  runs in one of the compiled graphs below;
- compiled == interpreter, float64 to 1e-10 and float32 to 1e-5, for two bindings of the dims with one
  compiled kernel, on: every spec in specs/ (by glob, optimised by specc.transforms.passes as training runs them);
  hand-written specs covering every op one loop nest each (convolutions with stride, padding and
  dilation, pools, reductions with keepdims, getitem with negative and symbolic bounds, a reversed
  recurrence, a lag-2 state, per-step outputs, dropout while training, normal and uniform draws inside
  and outside a loop); every elementwise formula fused; and backward (value-and-grad) graphs with every
  gradient-only op;
- the generated source is readable: spec names, `.nn` line comments, no slice assignment;
- the on-disk cache: a second compile reuses the module, a fresh process loads it (and Numba's machine
  code) from the cache directory.

Numba takes seconds per graph, so each compiled graph is chosen for what it adds (see CASES), compiled
once by a module-scoped fixture, into one temporary cache directory for the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.backends import LOWERINGS, generator, lift_random, missing_lowerings
from specc.backends.interp import interpret
from specc.ir.core import NUMPY_DTYPES, Program
from specc.ir.verify import verify
from specc.ops import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
BINDINGS = ({"T": 5, "B": 3, "L": 11}, {"T": 7, "B": 2, "L": 14})
TOL = {"f64": 1e-10, "f32": 1e-5}

NN_OPS = """\
# 1-D convolution and pooling over a symbolic length (opaque (L + 1) // 2 sizes), reductions with keepdims,
# softmax along axis 0, losses.  (2-D convolution and pooling, and take, are in GRADS below.)
dim B, L

model nn_ops(s: f64[B, 2, L], ids: i32[B, 3], y: i32[B], t: f64[B, 6]) {
  param w3: [3, 2, 3] = he
  param b3: [3] = normal(0.1)
  param wt: [3, 2, 3] = he
  c1 = conv1d(s, w3, b3, stride=2, padding=2, dilation=2)
  ct = conv_transpose1d(c1, wt, stride=2, padding=1, output_padding=1, dilation=2)
  q1 = max_pool1d(c1, kernel=2, stride=1)
  q2 = avg_pool1d(s, kernel=3, stride=2, padding=1)
  r1 = sum(c1, axis=[0, 2], keepdims=true)
  r2 = mean(q2, axis=-1)
  r3 = max(s, axis=[0, 2])
  output r4 = max(ids, axis=1, keepdims=true)
  h = dense(flatten(q2[:, :, :2]), 6)
  z = dense(h, 4)
  loss = cross_entropy(z, y) + bce_logits(h, t) + mean(r1) + mean(r2) + mean(r3) + mean(q1) + mean(ct)
  output lsm = log_softmax(z, axis=0)
  output sm = softmax(h, axis=0)
  output c1
  output total = sum(s)
}
"""

FORMULAS = """\
# Every elementwise formula (unary, binary, integer, casts): one fused loop once optimised.
dim B

model formulas(x: f64[B, 6], ids: i32[B, 6]) {
  param W: [6, 6] = glorot
  h = x @ W
  acts = relu(h) + leaky_relu(h) + elu(h) + gelu(h) + softplus(h) + sigmoid(h) + tanh(h)
  more = exp(-abs(h)) + log(1 + abs(h)) + sqrt(abs(h)) + maximum(h, x) + minimum(h, -x) + clip(h, -0.5, 0.5)
  powers = abs(h) ** 1.5 + h ** 2 + h / (1 + h * h) - 2 * h
  k = ids * 2 + 1 - ids
  output k2 = maximum(k, ids) + abs(-k)
  output ik = int(float(k) * 1.5 + h)
  sel = where(h > x, h, x * 0.5) + float(h <= 0.1 & x != 0.3 | !(h == x)) * stop_gradient(h) + where(x < 0.5, 1.0, h)
  output imask = where(ids >= 2, ids, 0) + (ids < 1)
  loss = mean(acts + more + powers + sel)
  output all = acts * more - powers
}
"""

LAYOUT = """\
# Indexing (negative, symbolic and strided bounds), transpose, reshape, concat, every rank of matmul.
dim B, L

model layout(s: f64[B, 2, L], ids: i32[B, 3]) {
  g1 = s[:, -1, 1:L-1:2]
  g2 = s[-1]
  g3 = s[:, :, L-2]
  g4 = s[1:, :, ::3]
  param V: [2, 3, 4] = glorot
  bm = reshape(s[:, :, :3], [B, 2, 3]) @ V[0]
  output tr = transpose(s, [2, 0, 1])
  output rs = reshape(s, [B, -1])
  output cat = concat(s, s[:, :1], axis=1)
  output picked = ids[:, 1:] * 2
  output lead_sum = sum(s, axis=[0, 1], keepdims=true)   # reductions that keep the last axis
  output lead_mean = mean(s, axis=0)
  output lead_max = max(s, axis=[0, 1])
  output lead_imax = max(ids, axis=0, keepdims=true)
  output am = argmax(s, axis=-1)                      # arg-reductions along the last and a leading axis
  output an = argmin(s[:, 0], axis=0, keepdims=true)
  output tl = tril(s, diagonal=-1) + triu(s, diagonal=1)   # the tri mask below and above the diagonal
  mv = V[1] @ s[0, 1, :4]
  vm = s[0, 0, :3] @ V[1]
  vv = s[0, 0, :3] @ s[0, 1, :3]
  bb = s[:, :, :3] @ reshape(s[:, :, :3], [B, 3, 2])
  loss = mean(g1) + mean(g2) + mean(g3) + mean(g4) + mean(bm) + mean(mv) + mean(vm) + vv + mean(bb)
}
"""

RECURRENT = """\
# Recurrences: reversed, second order (lag 2), per-step outputs, random draws inside and outside loops.
dim T, B

model recurrent(x: f64[T, B, 4], y: i32[B]) {
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
  loss = cross_entropy(dense(s[-1] + noise, 3), y) + 0.01 * mean(e) * (1 + training())
  output energy = e
  output first = s[0]
  output g
}
"""

GRADS = """\
# A backward graph with every gradient-only op: conv, pool, take and getitem adjoints, masks, one_hot, size.
dim B

model grads(x: f64[B, 2, 7, 6], ids: i32[B, 3], y: i32[B]) {
  param w: [3, 2, 3, 2] = he
  param E: [5, 4] = normal(1.0)
  param wt: [3, 2, 2, 3] = he
  a = relu(conv2d(x, w, stride=[2, 1], padding=[1, 1], dilation=[1, 2]))
  p = max_pool2d(a, kernel=2, stride=[1, 2], padding=1)
  q = avg_pool2d(abs(a), kernel=[2, 3], stride=1, padding=[1, 0])
  u = conv_transpose2d(a, wt, stride=[2, 1], padding=[1, 0], output_padding=[1, 0], dilation=[1, 2])
  e = take(E, ids)
  h = concat(flatten(p), flatten(q), flatten(e[:, 1:, ::2]), axis=-1)
  z = dense(maximum(h, 0.1 * h), 4)
  loss = cross_entropy(z, y) + mean(e[:, -1]) + mean(u * u)
}
"""

STACKED = """\
# Stacked layers whose recurrences (and parts) have the same code up to names: one function each, called
# for every layer; the gradients must still be each layer's own.
dim T, B

model stacked(x: f64[T, B, 3], y: i32[B]) {
  h1 = lstm(x, hidden=5)
  h2 = lstm(h1, hidden=5)
  h3 = lstm(h2, hidden=5)
  g1 = gru(h3, hidden=4)
  g2 = gru(g1, hidden=4)
  loss = cross_entropy(dense(g2[-1], 3), y)
}
"""

HAND = {"nn_ops": NN_OPS, "formulas": FORMULAS, "layout": LAYOUT, "recurrent": RECURRENT, "grads": GRADS,
        "stacked": STACKED}

# What is compiled (Numba takes seconds per graph, so each case is chosen for what it adds):
# (name, dtype, how): how = "plain" (the checked IR, one loop nest per op), "optimised" (specc.transforms.passes:
# fused groups, hoisted and merged matmuls, views), "backward" (value-and-grad IR, optimised).
CASES = [(p.stem, "f64", "optimised") for p in SPECS]  # every spec, as training will run it
CASES += [("lstm", "f32", "plain")]  # float32, one loop nest per op
CASES += [("nn_ops", "f64", "plain"), ("layout", "f64", "plain"), ("recurrent", "f64", "plain")]  # every op
CASES += [("formulas", "f64", "optimised"), ("formulas", "f32", "optimised")]  # every scalar formula, fused
CASES += [("grads", "f64", "backward"), ("mlp", "f32", "backward")]  # gradient ops, float32 backward
# the adjoints of negative, symbolic and strided indexing and of transposes, at the top level: NumPy statements
# of the Python entry (specc/backends/cpu/host.py)
CASES += [("layout", "f64", "backward"), ("recurrent", "f64", "backward")]
CASES += [("stacked", "f64", "backward")]  # layers sharing one compiled recurrence


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """One fresh cache directory for this module (compiled modules and Numba's machine code)."""
    path = tmp_path_factory.mktemp("specc-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECC_CACHE_DIR", str(path))
        yield path


def load(name: str, dtype: str) -> specc.Model:
    source = HAND.get(name) or str(ROOT / "specs" / f"{name}.nn")
    return specc.compile(source, dtype={"f32": "float32", "f64": "float64"}[dtype])


@pytest.fixture(scope="module")
def compiled(cache_dir):
    """(name, dtype, how) -> (model, graph to compare with, CompiledGraph), compiled once for the module."""
    from specc.transforms.passes import optimize
    from specc.runtime import compile_graph

    made: dict = {}

    def get(name: str, dtype: str, how: str):
        key = (name, dtype, how)
        if key not in made:
            model = load(name, dtype)
            graph = model.program.graph
            if how == "backward":
                graph = model.grad_program(wrt_inputs=True).graph
            compiled_graph = graph if how == "plain" else optimize(graph, verify_each=True)
            made[key] = (model, graph, compile_graph(compiled_graph, name=f"{model.name}_{how}"))
        return made[key]

    return get


def dims_for(prog: Program, binding: dict[str, int]) -> dict[str, int]:
    dims = dict(prog.dims)
    for info in prog.inputs:
        for d in info.value.shape:
            for s in d.symbols:
                dims.setdefault(s, binding.get(s, 3))
    return dims


def id_range(prog: Program, v) -> int:
    """How many ids an integer input may take: the classes of a cross_entropy or the rows of a take."""
    for eqn in prog.graph.walk():
        if eqn.op == "cross_entropy" and eqn.inputs[1] is v:
            return eqn.inputs[0].shape[-1].value
        if eqn.op == "take" and eqn.inputs[1] is v:
            return eqn.inputs[0].shape[0].value
    return 5


def make_args(model: specc.Model, dims: dict[str, int], seed: int) -> list[np.ndarray]:
    """Inputs (floats in [0, 1): valid BCE targets too; valid ids) and random (not initial) parameters."""
    prog = model.program
    rng = np.random.default_rng(seed)
    args = []
    for v in prog.graph.inputs[:len(prog.inputs)]:
        shape = tuple(d.evaluate(dims) for d in v.shape)
        if v.type.is_float:
            args.append(rng.uniform(0.0, 1.0, shape).astype(NUMPY_DTYPES[v.dtype]))
        else:
            args.append(rng.integers(0, id_range(prog, v), shape).astype(np.int32))
    for p in prog.params:
        shape = tuple(d.value for d in p.value.shape)
        args.append((0.5 * rng.standard_normal(shape)).astype(NUMPY_DTYPES[p.value.dtype]))
    return args


def assert_close(got: list[np.ndarray], want: list[np.ndarray], dtype: str, names) -> None:
    assert len(got) == len(want)
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, f"{name}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name)


# ---- the registry ------------------------------------------------------------------------------
def test_every_op_has_a_cpu_lowering() -> None:
    assert missing_lowerings("cpu") == [], "ops without a CPU lowering rule (see specc/backends/cpu/backend.py)"
    assert set(LOWERINGS["cpu"]) == set(REGISTRY), "a CPU rule for an op that is not registered"


# ---- compiled == interpreter -------------------------------------------------------------------
@pytest.mark.parametrize("name,dtype,how", CASES, ids=[f"{n}-{d}-{h}" for n, d, h in CASES])
def test_compiled_matches_interpreter(compiled, name: str, dtype: str, how: str) -> None:
    model, graph, kernel = compiled(name, dtype, how)
    prog = model.program
    names = [f"out{k}" for k in range(len(graph.outputs))]
    for k, binding in enumerate(BINDINGS):
        dims = dims_for(prog, binding)
        args = make_args(model, dims, seed=k)
        want = interpret(graph, args, dims, seed=k + 10, training=True)
        got = kernel(args, dims, seed=k + 10, training=True)
        assert_close(got, want, dtype, names)
    compiled_twice = [d.py_func.__name__ for d in kernel.dispatchers if len(d.signatures) > 1]
    assert not compiled_twice, f"a new binding of the dims compiled {compiled_twice} again"


def test_cases_cover_every_op(compiled) -> None:
    """Every registered op is in some compiled graph above (so its rule ran and was checked)."""
    used: set[str] = set()
    for name, dtype, how in CASES:
        used |= {e.op for e in compiled(name, dtype, how)[2].graph.walk()}
    assert sorted(set(REGISTRY) - used) == []


def test_random_draws_replay_the_interpreter(compiled) -> None:
    """Dropout (training or not), normal and uniform, inside and outside loops, for several seeds."""
    model, graph, kernel = compiled("recurrent", "f64", "plain")
    dims = dims_for(model.program, BINDINGS[0])
    args = make_args(model, dims, seed=3)
    for seed in (0, 1, 12345):
        for training in (True, False):
            want = interpret(graph, args, dims, seed=seed, training=training)
            got = kernel(args, dims, seed=seed, training=training)
            assert_close(got, want, "f64", model.program.output_names)
    different = kernel(args, dims, seed=1, training=True)[0]
    assert not np.allclose(different, kernel(args, dims, seed=2, training=True)[0])


def test_lifting_random_draws_keeps_the_ir_valid() -> None:
    graph = specc.compile(RECURRENT).program.graph
    lifted, draws = lift_random(graph)
    verify(lifted)
    assert not any(REGISTRY[e.op].random for e in lifted.walk())
    assert [d.op for d in draws] == ["dropout_mask", "dropout_mask", "normal", "uniform", "training_flag"]
    assert [len(d.loops) for d in draws] == [0, 1, 1, 0, 0]
    assert lifted.inputs[:len(graph.inputs)] == graph.inputs


def test_inputs_are_checked(compiled) -> None:
    from specc.errors import InputError

    model, _, kernel = compiled("lstm", "f32", "plain")
    dims = dims_for(model.program, BINDINGS[0])
    args = make_args(model, dims, seed=0)
    with pytest.raises(InputError, match="expected"):
        kernel([args[0][:, :2], *args[1:]], dims)
    with pytest.raises(InputError, match="dim"):
        kernel(args, {})
    with pytest.raises(InputError, match="inputs"):
        kernel(args[:-1], dims)
    ok = kernel([a.astype(np.float64) if a.dtype == np.float32 else a for a in args], dims)  # converted
    assert ok[1].dtype == np.float32


def test_layers_with_the_same_code_share_their_kernels(compiled) -> None:
    """Stacked layers' recurrences (and parts) with the same code up to names are one function, called per
    layer: Numba compiles it once (3 LSTM and 2 GRU layers: far fewer functions than calls)."""
    _model, _graph, kernel = compiled("stacked", "f64", "backward")
    src = kernel.source
    scans = [n for n in kernel.module.kernels if n.startswith("scan_")]
    calls = src.count("run_row_blocks(scan_")
    assert calls == 10 and len(scans) <= 6, (scans, calls)  # 5 layers forward and backward
    assert src.count("run_row_blocks(scan_c, ") == 3  # the three LSTM layers' forward: one function
    assert all(len(d.signatures) == 1 for d in kernel.dispatchers)  # one compile each, for all its callers


# ---- the generated source -------------------------------------------------------------------------
def test_generated_source_reads_like_the_spec(tmp_path) -> None:
    # hidden 256: a step's product large enough for matmul_nt (below its thresholds the step calls np.dot)
    text = tmp_path / "lstm.nn"
    text.write_text((ROOT / "specs" / "lstm.nn").read_text().replace("hidden=64", "hidden=256"))
    small = generator("cpu").generate(specc.compile(str(ROOT / "specs" / "lstm.nn")).program.graph, "classify")
    assert "matmul_nt" not in small.source and "np.dot(h_z, h_W_f, " in small.source
    model = specc.compile(text)
    mod = generator("cpu").generate(model.program.graph, model.name)
    src = mod.source
    assert mod.inputs[:3] == ("x", "y", "h_W_f") and mod.dims == ("T", "B")
    assert "def run(x, y, h_W_f," in src and src.count("@njit(cache=True") >= 1
    assert "# lstm.nn:39 matmul: f = sigmoid(z @ W_f + b_f)" in src
    # a step's product with a constant matrix: the matrix transposed once, before the loop (in the part
    # before the row blocks, so once for all of them), and passed to the recurrence
    assert "h_W_f_t = transposed(h_W_f)" in src and "matmul_nt(h_z, h_W_f, h_W_f_t, " in src
    scan = src[src.index("def scan_c("):]
    scan = scan[:scan.index("\n\n\n")]
    assert "ascontiguousarray" not in scan and "h_W_f_t" in scan[:scan.index(":\n")]
    entry = src[src.index("\ndef run("):]
    assert entry.index("run_row_blocks(scan_c, (") < entry.index("return")
    made_in = src[:src.index("h_W_f_t = transposed")].rsplit("\ndef ", 1)[1]
    assert made_in.startswith("run(")  # the Python entry transposes an input (NumPy), before the row blocks
    # the recurrence's rows are independent: it runs on a block of rows lo:hi (nb rows) per thread
    assert "h_z = np.empty((nb, 264), np.float32)" in src
    assert "def scan_c(" in src and "run_row_blocks(scan_c, (" in src
    assert "for n in range(T):" in src and "c_t_1 = h_c[t - 1, lo:hi] if n >= 1 else " in src
    assert_no_slice_assignment(src)
    compile(src, "<generated>", "exec")
    again = generator("cpu").generate(specc.compile(text).program.graph, model.name)
    assert again.source == src, "generation must be deterministic (the cache is keyed by the source)"


def assert_no_slice_assignment(src: str) -> None:
    """No ``a[i:j] = ...`` in ``@njit`` code (Numba compiles each such site slowly); reading a slice is fine,
    and so is NumPy's slice assignment in the Python entry."""
    import ast

    jitted = [f for f in ast.parse(src).body if isinstance(f, ast.FunctionDef)
              and any("njit" in ast.unparse(d) for d in f.decorator_list)]
    assert jitted
    for node in (n for f in jitted for n in ast.walk(f)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            if isinstance(t, ast.Subscript) and any(isinstance(n, ast.Slice) for n in ast.walk(t.slice)):
                raise AssertionError(f"slice assignment (slow to compile in Numba) at line {node.lineno}: "
                                     f"{ast.unparse(node)}")


@pytest.mark.parametrize("name", list(HAND))
def test_hand_specs_generate_without_slice_assignment(name: str) -> None:
    model = specc.compile(HAND[name])
    assert_no_slice_assignment(generator("cpu").generate(model.program.graph, model.name).source)


def test_names_are_sanitised_and_unique() -> None:
    from specc.backends.cpu.emitter import RESERVED
    from specc.backends.text import Namer, sanitize

    assert sanitize("h.W_f") == "h_W_f" and sanitize("c[t-1]") == "c_t_1" and sanitize("1x") == "v_1x"
    names = Namer(RESERVED)
    assert [names.fresh(n) for n in ("h.z", "h_z", "np", "i0", "lambda", "h.z")] == \
        ["h_z", "h_z_1", "np_1", "i0_1", "lambda_1", "h_z_2"]


# ---- the cache ----------------------------------------------------------------------------------
SMALL = """\
dim B
model small(x: f32[B, 4]) {
  loss = mean(x * x)
}
"""


def test_second_compile_reuses_the_module(tmp_path, monkeypatch) -> None:
    from specc import runtime

    monkeypatch.setenv("SPECC_CACHE_DIR", str(tmp_path))
    graph = specc.compile(SMALL).program.graph
    before = runtime.STATS.written, runtime.STATS.memory_hits
    first = runtime.compile_graph(graph, name="small")
    assert first.path.is_file() and first.path.parent.parent == tmp_path
    assert runtime.STATS.written == before[0] + 1
    mtime = first.path.stat().st_mtime_ns
    second = runtime.compile_graph(specc.compile(SMALL).program.graph, name="small")
    assert second.path == first.path and second.entry is first.entry
    assert runtime.STATS.written == before[0] + 1 and runtime.STATS.memory_hits == before[1] + 1
    assert first.path.stat().st_mtime_ns == mtime
    assert runtime.cache_info(tmp_path)["modules"] == 1


FRESH_PROCESS = textwrap.dedent("""\
    import json, sys, time
    import specc
    from specc import runtime
    t0 = time.perf_counter()
    kernel = runtime.compile_graph(specc.compile(sys.argv[1]).program.graph, name="small")
    hits = sum(sum(d.stats.cache_hits.values()) for d in kernel.dispatchers)
    misses = sum(sum(d.stats.cache_misses.values()) for d in kernel.dispatchers)
    print(json.dumps({"written": runtime.STATS.written, "loaded": runtime.STATS.loaded, "numba_hits": hits,
                      "numba_misses": misses, "kernels": len(kernel.dispatchers),
                      "path": str(kernel.path), "seconds": time.perf_counter() - t0}))
""")


def test_a_fresh_process_loads_from_the_cache(tmp_path) -> None:
    env = {**os.environ, "SPECC_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    spec = tmp_path / "small.nn"
    spec.write_text(SMALL)

    def run() -> dict:
        out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(spec)], env=env, capture_output=True,
                             text=True, check=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    # compiled before the first call (the kernels' argument types are known from the IR)
    assert cold["written"] == 1 and cold["numba_misses"] == cold["kernels"] >= 1
    assert warm["written"] == 0 and warm["loaded"] == 1 and warm["numba_hits"] == warm["kernels"]
    assert warm["numba_misses"] == 0
    assert warm["path"] == cold["path"]
    assert list((tmp_path / "cache" / "cpu" / "__pycache__").glob("*.nbi")), "Numba wrote no cache index"
    from specc import runtime

    assert runtime.clear_cache(tmp_path / "cache") > 0 and runtime.cache_info(tmp_path / "cache")["files"] == 0


# ---- the command line ------------------------------------------------------------------------------
def test_cli_emit_prints_or_writes_the_source(tmp_path, capsys) -> None:
    from specc.cli import main

    assert main(["emit", str(ROOT / "specs" / "rnn.nn")]) == 0
    out = capsys.readouterr().out
    assert out.startswith('"""classify: generated by specc') and "def run(x, y, h_W, h_U, h_b," in out
    compile(out, "classify.py", "exec")
    assert main(["emit", str(ROOT / "specs" / "mlp.nn"), "--optimized", "--backward", "-o", str(tmp_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert "def run(" in (tmp_path / "classify_grad.py").read_text()


def test_cli_cache_info_and_clear(tmp_path, monkeypatch, capsys) -> None:
    from specc.cli import main

    monkeypatch.setenv("SPECC_CACHE_DIR", str(tmp_path))
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "m_0123.py").write_text("x = 1\n")
    assert main(["cache", "info"]) == 0
    assert f"{tmp_path}: 1 kernel modules, 1 files" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed 1 files" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())
