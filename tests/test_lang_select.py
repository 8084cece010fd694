"""Comparisons, masks and selection, sizes as numbers, fixed-size lags, stop_gradient, argmax/argmin,
tril/triu, repeat/tile and max/min of two tensors (issue 13, "Constructs to add").

Each construct: the CPU target matches the interpreter, gradients pass a float64 gradcheck on both
(through ``Model.value_and_grad``, the users' path), the values and gradients match PyTorch where
PyTorch has the same operation, the CUDA rules match the interpreter in numba-cuda's simulator, the
ONNX export matches in onnxruntime, and bad uses get clear errors.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.errors import SpeccError
from specc.transforms.gradcheck import gradcheck

ROOT = Path(__file__).resolve().parent.parent

# One spec per family; the torch functions below compute the same loss.
SELECT = """
dim B
dim N = 4

model m(x: f32[B, N], y: f32[B, N]) {
  param W: [N, N] = glorot
  h = x @ W
  s = h @ transpose(h) / sqrt(B)
  p = softmax(where(tril(ones([B, B])) > 0, s, -1e9), axis=-1)
  g = where(h > y, h, y * h)
  both = max(h, y) + min(h, 0.5 * y) + max(h, 0.25)
  r = repeat(h, 2, axis=1)
  tt = tile(h, [1, 2])
  k = stop_gradient(h) * h
  u = triu(s, diagonal=1) + tril(s, diagonal=-1) * 0.5
  c = float(h > 0 & h < y | !(x < 0.5))
  loss = mean(p @ h) + mean(g) + mean(both) + mean(r * tt) + mean(k) + sum(u) / B + mean(min(h, axis=1)) + mean(c * h)
  output idx = argmax(h, axis=1)
  output jdx = argmin(h, axis=0, keepdims=true)
  output c
}
"""

MASKED = """
dim T, B

model m(x: f32[T, B, 3], mask: f32[T, B, 1], y: f32[B, 4]) {
  param W: [3, 4] = glorot
  param U: [4, 4] = orthogonal
  recur t over x {
    init h = zeros([B, 4])
    new = tanh(x[t] @ W + h[t-1] @ U)
    h[t] = where(mask[t] > 0, new, h[t-1])
  }
  loss = mean((h[-1] - y) ** 2) + mean(sum(h, axis=0) / T)
  output h
}
"""

LAGGED = """
dim T, B
dim K = 2

model m(x: f32[T, B, 3], y: f32[B, 4]) {
  param W: [3, 4] = glorot
  recur t over x {
    init h = zeros([B, 4])
    h[t] = tanh(x[t] @ W + 0.5 * h[t-K] + 0.25 * h[t-1])
  }
  loss = mean((h[-1] - y) ** 2)
  output h
}
"""

SPECS = {"select": SELECT, "masked": MASKED, "lagged": LAGGED}


def _inputs(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if name == "select":
        return {"x": rng.standard_normal((3, 4)), "y": rng.standard_normal((3, 4))}
    out = {"x": rng.standard_normal((5, 3, 3)), "y": rng.standard_normal((3, 4))}
    if name == "masked":  # sequences of lengths 5, 2 and 4
        out["mask"] = (np.arange(5)[:, None, None] < np.array([5, 2, 4])[None, :, None]).astype(np.float64)
    return out


def _params(model: specc.Model, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in model.init_params(seed).items()}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_cpu_matches_the_interpreter(name):
    ref = specc.compile(SPECS[name], target="interp", dtype="float64")
    cpu = specc.compile(SPECS[name], target="cpu", dtype="float64")
    params, inputs = _params(ref), _inputs(name)
    want, got = ref.forward(params, **inputs), cpu.forward(params, **inputs)
    assert set(want) == set(got)
    for k in want:
        assert np.asarray(got[k]).dtype == np.asarray(want[k]).dtype, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=k)
    (lw, gw), (lg, gg) = ref.value_and_grad(params, **inputs), cpu.value_and_grad(params, **inputs)
    assert lg == pytest.approx(lw, rel=1e-12)
    for k in gw:
        np.testing.assert_allclose(gg[k], gw[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("target", ["interp", "cpu"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradcheck_float64(name, target):
    # stop_gradient's derivative is zero by design, unlike its difference quotient: the gradcheck leaves
    # its term out (PyTorch's detach checks it below)
    model = specc.compile(SPECS[name].replace("mean(k) + ", ""), target=target, dtype="float64")
    params, inputs = _params(model), _inputs(name)
    arrays, dims = model.bind_inputs(inputs)
    names = list(model.inputs) + [p.name for p in model.program.params]

    def grad_fn(values):
        kw = dict(zip(names, values))
        now = {p.name: kw.pop(p.name) for p in model.program.params}
        return model.value_and_grad(now, **kw)

    checks = gradcheck(model.program, params, arrays, dims, grad_fn=grad_fn, directions=3)
    assert {c.name for c in checks} == set(params)
    bad = [f"{c.name}: {c.analytic!r} vs {c.numeric!r}" for c in checks if not c.ok(1e-6)]
    assert not bad, bad


# ---- against PyTorch ----------------------------------------------------------------------------
def _torch_select(torch, x, y, W):
    h = x @ W
    b = x.shape[0]
    s = h @ h.T / math.sqrt(b)
    p = torch.softmax(torch.where(torch.tril(torch.ones(b, b, dtype=x.dtype)) > 0, s, torch.tensor(-1e9,
                                                                                                    dtype=x.dtype)), -1)
    g = torch.where(h > y, h, y * h)
    both = torch.maximum(h, y) + torch.minimum(h, 0.5 * y) + torch.clamp(h, min=0.25)
    r, tt = h.repeat_interleave(2, dim=1), h.repeat(1, 2)
    k = h.detach() * h
    u = torch.triu(s, diagonal=1) + torch.tril(s, diagonal=-1) * 0.5
    c = (((h > 0) & (h < y)) | ~(x < 0.5)).to(x.dtype)
    loss = ((p @ h).mean() + g.mean() + both.mean() + (r * tt).mean() + k.mean() + u.sum() / b
            + h.min(dim=1).values.mean() + (c * h).mean())
    return loss, {"idx": h.argmax(dim=1), "jdx": h.argmin(dim=0, keepdim=True), "c": c}


def _torch_masked(torch, x, mask, y, W, U):
    h = torch.zeros(x.shape[1], 4, dtype=x.dtype)
    hs = []
    for t in range(x.shape[0]):
        new = torch.tanh(x[t] @ W + h @ U)
        h = torch.where(mask[t] > 0, new, h)
        hs.append(h)
    hs = torch.stack(hs)
    return ((hs[-1] - y) ** 2).mean() + (hs.sum(0) / x.shape[0]).mean(), {"h": hs}


def _torch_lagged(torch, x, y, W):
    hs = [torch.zeros(x.shape[1], 4, dtype=x.dtype)] * 2
    for t in range(x.shape[0]):
        hs.append(torch.tanh(x[t] @ W + 0.5 * hs[-2] + 0.25 * hs[-1]))
    out = torch.stack(hs[2:])
    return ((out[-1] - y) ** 2).mean(), {"h": out}


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SPECS))
def test_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    model = specc.compile(SPECS[name], target="cpu", dtype="float64")
    params, inputs = _params(model), _inputs(name)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ti = {k: torch.tensor(v) for k, v in inputs.items()}
    fn = {"select": _torch_select, "masked": _torch_masked, "lagged": _torch_lagged}[name]
    loss, outs = fn(torch, **ti, **tp)
    loss.backward()
    got_loss, grads = model.value_and_grad(params, **inputs)
    assert got_loss == pytest.approx(loss.item(), rel=1e-12, abs=1e-12)
    for k in params:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    got = model.forward(params, **inputs)
    for k, v in outs.items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=k)
    if name == "select":
        assert got["idx"].dtype == np.int32 and got["jdx"].shape == (1, 4)


def test_masked_steps_keep_the_state():
    """A sequence whose mask ends at step 2 keeps its state from then on."""
    model = specc.compile(MASKED, target="cpu", dtype="float64")
    h = model.forward(_params(model), **_inputs("masked"))["h"]
    np.testing.assert_array_equal(h[2:, 1], np.broadcast_to(h[1, 1], (3, 4)))
    assert not np.allclose(h[3, 0], h[2, 0])


# ---- CUDA rules in the simulator, ONNX export ----------------------------------------------------
@pytest.mark.parametrize("name", ["select", "masked"])
def test_cuda_simulator_matches_the_interpreter(name, tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_codegen_cuda import cuda_for_tests

    from specc.backends.interp import interpret
    from specc.runtime import compile_graph
    from specc.transforms.passes import optimize

    with pytest.MonkeyPatch.context() as mp:
        cuda_for_tests(mp, tmp_path)
        model = specc.compile(SPECS[name], target="interp", dtype="float64")
        graph = optimize(model.grad_program().graph, verify_each=True)
        kernel = compile_graph(graph, target="cuda", name=f"select_{name}")
        params, inputs = _params(model), _inputs(name)
        args, dims = model.bind_inputs(inputs)
        args = [args[k] for k in model.inputs] + [params[p.name] for p in model.program.params]
        want = interpret(graph, args, dims, seed=0, training=True)
        got = kernel(args, dims, seed=0, training=True)
        ops = {e.op for e in graph.walk()}
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    if name == "select":
        assert {"where", "compare", "argmax", "argmin", "tri", "stop_gradient", "size"} <= ops


@pytest.mark.parametrize("name", ["select", "masked"])
def test_onnx_export_matches(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = specc.compile(SPECS[name], target="interp", dtype="float32")
    params = {k: v.astype(np.float32) for k, v in _params(model).items()}
    inputs = {k: v.astype(np.float32) for k, v in _inputs(name).items()}
    path = tmp_path / "m.onnx"
    model.export_onnx(params, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()],
                   sess.run(None, {i.name: inputs[i.name] for i in sess.get_inputs()})))
    want = model.forward(params, **inputs)
    for k in want:
        if k == "loss":
            continue
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=k)


# ---- the language: values of small expressions, and errors -----------------------------------------
def _run(body: str, decls: str = "x: f32[N]", **inputs):
    first = decls.split(":")[0]
    spec = f"dim N\nmodel m({decls}) {{\n{body}\nloss = sum(float({first}))\n}}\n"
    return specc.compile(spec, target="interp", dtype="float64").forward({}, **inputs)


def test_comparisons_give_masks_of_the_operands_dtype():
    x = np.array([-1.0, 0.0, 0.5, 2.0])
    out = _run("output a = x < 0.5\noutput b = x >= 0.5\noutput c = x == 0\noutput d = x != 0\n"
               "output e = x > 0 & x < 1\noutput f = x < 0 | x > 1\noutput g = not (x > 0)\noutput h = !(x > 0)",
               x=x)
    np.testing.assert_array_equal(out["a"], [1, 1, 0, 0])
    np.testing.assert_array_equal(out["b"], [0, 0, 1, 1])
    np.testing.assert_array_equal(out["c"], [0, 1, 0, 0])
    np.testing.assert_array_equal(out["d"], [1, 0, 1, 1])
    np.testing.assert_array_equal(out["e"], [0, 0, 1, 0])
    np.testing.assert_array_equal(out["f"], [1, 0, 0, 1])
    np.testing.assert_array_equal(out["g"], out["h"])
    np.testing.assert_array_equal(out["g"], [1, 1, 0, 0])
    ids = _run("output a = ids == 2\noutput b = where(ids > 1, ids, 0)", "ids: i32[N]", ids=np.array([1, 2, 3]))
    assert ids["a"].dtype == np.int32 and ids["b"].dtype == np.int32
    np.testing.assert_array_equal(ids["b"], [0, 2, 3])


def test_sizes_as_numbers():
    x = np.arange(4.0)
    out = _run("output a = sum(x) / N\noutput b = x / sqrt(N)\noutput c = x * (N - 1) / 2.0\noutput d = N ** 0.5 + x",
               x=x)
    assert out["a"] == pytest.approx(1.5)
    np.testing.assert_allclose(out["b"], x / 2)
    np.testing.assert_allclose(out["c"], x * 1.5)
    np.testing.assert_allclose(out["d"], x + 2)
    fixed = specc.compile("dim D = 4\nmodel m(x: f32[D]) { output y = x / sqrt(D) + D / 8\n loss = sum(x) }", target="interp",
                          dtype="float64").forward({}, x=np.ones(4))
    np.testing.assert_allclose(fixed["y"], np.full(4, 1.0))


def test_repeat_tile_tril_triu_follow_numpy():
    x = np.arange(6.0).reshape(2, 3)
    out = _run("output a = repeat(x, 2, axis=0)\noutput b = repeat(x, 3, axis=1)\noutput c = tile(x, 2)\n"
               "output d = tile(x, [2, 1, 2])\noutput e = tril(x, diagonal=1)\noutput f = triu(x, diagonal=-1)\n"
               "output g = triu(x)", "x: f32[2, N]", x=x)
    np.testing.assert_array_equal(out["a"], np.repeat(x, 2, axis=0))
    np.testing.assert_array_equal(out["b"], np.repeat(x, 3, axis=1))
    np.testing.assert_array_equal(out["c"], np.tile(x, 2))
    np.testing.assert_array_equal(out["d"], np.tile(x, [2, 1, 2]))
    np.testing.assert_array_equal(out["e"], np.tril(x, 1))
    np.testing.assert_array_equal(out["f"], np.triu(x, -1))
    np.testing.assert_array_equal(out["g"], np.triu(x))


def _error(spec: str) -> str:
    with pytest.raises(SpeccError) as info:
        specc.compile(spec, target="interp")
    text = str(info.value)
    assert "Traceback" not in text
    return text


@pytest.mark.parametrize("spec, words", [
    ("dim B\nmodel m(x: [B, 4], k: [B]) { output y = where(k > 0, x, 0.0) }", ["where", "do not broadcast", "[B]"]),
    ("dim B\nmodel m(x: [B]) { output y = 1 < x < 2 }", ["unexpected"]),
    ("model m(x: [4]) { output y = x + (1 & 2) }", ["'&' combines masks"]),
    ("dim B\nmodel m(x: [B]) { output y = where(x > 0, x, ids) }", ["unknown name 'ids'"]),
    ("model m(x: [4]) { output y = repeat(x, 0, axis=0) }", ["repeats must be positive"]),
    ("model m(x: [4]) { output y = tile(x, [2, 0]) }", ["reps must be"]),
    ("model m(x: [4]) { output y = tril(x) }", ["needs a matrix"]),
    ("model m(x: [4]) { output y = argmax(x, axis=1) }", ["out of range"]),
    ("dim T, B, K\nmodel m(x: [T, B, 3]) { recur t over x { init h = zeros([B, 3])\n h[t] = x[t] + h[t-K] }"
     "\n output h }", ["'K' that is not a fixed positive integer", "dim K = 2"]),
])
def test_bad_uses_are_clear_errors(spec, words):
    text = _error(spec)
    for w in words:
        assert w in text, text


INLOOP = """
dim T

model m(x: f32[T, 3, 3], y: f32[3, 3]) {
  param W: [3, 3] = glorot
  recur t over x {
    init h = zeros([3, 3])
    q = tril(x[t] @ W + h[t-1]) + triu(ones([3, 3]), diagonal=1) @ transpose(h[t-1]) / T
    h[t] = tanh(q + stop_gradient(h[t-1])) * float(argmax(x[t], axis=1) != 1) + min(h[t-1], 0.1)
  }
  loss = mean((h[-1] - y) ** 2)
  output h
}
"""


def test_the_new_ops_inside_a_recurrence(tmp_path):
    """tri, argmax, compare, stop_gradient, size and minimum in a scan body: CPU and the CUDA simulator
    (forward and gradients) match the interpreter."""
    ref = specc.compile(INLOOP, target="interp", dtype="float64")
    cpu = specc.compile(INLOOP, target="cpu", dtype="float64")
    rng = np.random.default_rng(0)
    params, inputs = _params(ref), {"x": rng.standard_normal((4, 3, 3)), "y": rng.standard_normal((3, 3))}
    np.testing.assert_allclose(cpu.forward(params, **inputs)["h"], ref.forward(params, **inputs)["h"], atol=1e-12)
    (lw, gw), (lg, gg) = ref.value_and_grad(params, **inputs), cpu.value_and_grad(params, **inputs)
    assert lg == pytest.approx(lw, rel=1e-12)
    np.testing.assert_allclose(gg["W"], gw["W"], rtol=1e-10, atol=1e-12)

    sys.path.insert(0, str(ROOT / "tests"))
    from test_codegen_cuda import cuda_for_tests

    from specc.backends.interp import interpret
    from specc.runtime import compile_graph
    from specc.transforms.passes import optimize

    with pytest.MonkeyPatch.context() as mp:
        cuda_for_tests(mp, tmp_path)
        graph = optimize(ref.grad_program().graph, verify_each=True)
        kernel = compile_graph(graph, target="cuda", name="select_inloop")
        args = [inputs["x"], inputs["y"], params["W"]]
        dims = {"T": 4}
        for g, w in zip(kernel(args, dims, seed=0, training=True), interpret(graph, args, dims, seed=0, training=True)):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
