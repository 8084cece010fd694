"""The CUDA backend (specc.backends.cuda.generator + cuda_runtime) against the reference interpreter.

Without a GPU, kernels run in numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1: every GPU thread is a
Python thread, so sizes are tiny), and ``specc.backends.cuda.ptx`` compiles every kernel to PTX for an
H100 (NVVM only, no GPU) to catch what the simulator accepts but numba-cuda would not.

- every op of the registry has a CUDA lowering rule, and every op runs in one of the graphs below;
- simulated == interpreter, float64 to 1e-10 and float32 to 1e-5: the hand-written op-coverage specs
  of the CPU tests (forward, and value-and-grad with every gradient-only op), and forward plus every
  gradient of each spec in specs/ with its sizes shrunk (hidden 64 -> 12, ...);
- a recurrence is ONE persistent kernel (forward, and the reversed one of its backward), looping
  over time inside the kernel with barriers between the body's equations; the host launches a
  fixed number of kernels whatever T is;
- device arrays in and out (parameters can stay on the GPU);
- `--target cuda` on the command line, and a clear error where numba-cuda or a GPU is missing;
- on a real GPU (marked `gpu`, skipped elsewhere): every spec in specs/ at its own sizes, forward and
  every gradient, against the CPU backend; the LSTM's gradients against the interpreter.

With SPECC_TEST_REAL_GPU=1 the tests that use the simulator run on the GPU instead (numba-cuda itself;
benchmarks/gpu_check.sh does that), and fail where there is none.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import specc
from specc.backends import LOWERINGS, generator, missing_lowerings
from specc.backends.interp import interpret
from specc.ops import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.nn"))
TOL = {"f64": 1e-10, "f32": 1e-5}
REAL_GPU = os.environ.get("SPECC_TEST_REAL_GPU", "0") not in ("", "0")  # the simulator's tests on the GPU
HAS_NUMBA_CUDA = __import__("importlib").util.find_spec("numba_cuda") is not None
needs_numba_cuda = pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed (pip install numba-cuda)")


def python_path() -> str:
    """PYTHONPATH for a child process: the repository first, then what this process was given (where
    benchmarks/gpu_check.sh puts numpy 2.4 for numba-cuda)."""
    return os.pathsep.join([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def shrink(text: str) -> str:
    """A spec with its layer sizes made tiny for the simulator (comments untouched): 128 -> 7, 64 -> 12, ..."""
    sizes = {"128": "7", "120": "6", "84": "5", "64": "12", "32": "4", "16": "3"}
    out = []
    for line in text.splitlines():
        code, sep, comment = line.partition("#")
        code = re.sub(r"(?<![\w.])(128|120|84|64|32|16)(?![\w.])", lambda m: sizes[m.group(1)], code)
        out.append(code + sep + comment)
    return "\n".join(out) + "\n"


# ---- what needs no numba-cuda: the registry and the source --------------------------------------
def test_every_op_has_a_cuda_lowering() -> None:
    assert missing_lowerings("cuda") == [], "ops without a CUDA lowering rule (see specc/backends/cuda/backend.py)"
    assert set(LOWERINGS["cuda"]) == set(REGISTRY), "a CUDA rule for an op that is not registered"


def lstm_grad_module(grid_scan: bool = False):
    from specc.backends.cuda.backend import CUDA
    from specc.transforms.passes import optimize

    model = specc.compile(str(ROOT / "specs" / "lstm.nn"), target="interp")
    graph = optimize(model.grad_program().graph)
    return graph, CUDA.generator(grid_scan=grid_scan).generate(graph, f"{model.name}_grad")


def test_generated_source_reads_like_the_spec() -> None:
    model = specc.compile(str(ROOT / "specs" / "lstm.nn"), target="interp")
    mod = generator("cuda").generate(model.program.graph, model.name)
    src = mod.source
    assert mod.target == "cuda" and mod.inputs[:3] == ("x", "y", "h_W_f") and mod.dims == ("T", "B")
    assert "from numba import cuda" in src and "def run(x, y, h_W_f," in src
    assert "# lstm.nn:39 matmul: f = sigmoid(z @ W_f + b_f)" in src
    assert re.search(r"\n    h_z = scratch\(\d+, \(B, 72\), np.float32\)", src), "a temporary: kept across calls"
    assert "\n    probs = cuda.device_array((B, 10), np.float32)" in src, "an output: new every call"
    assert "np.exp" not in src and "np.tanh" not in src, "numba-cuda has no NumPy ufuncs in kernels"
    compile(src, "<generated>", "exec")
    again = generator("cuda").generate(specc.compile(str(ROOT / "specs" / "lstm.nn")).program.graph, model.name)
    assert again.source == src, "generation must be deterministic (the cache is keyed by the source)"


def kernels_of(src: str) -> dict[str, str]:
    """Kernel name -> its source, for each ``@cuda.jit`` kernel (not device functions)."""
    parts = re.split(r"\n(?=(?:# [^\n]*\n)*@(?:cuda\.jit|persistent))", src)
    out = {}
    for part in parts:
        m = re.search(r"@(?:cuda\.jit\(([^)]*)\)|persistent)\ndef (\w+)\(", part)
        if m and "device=True" not in (m.group(1) or ""):
            out[m.group(2)] = part.split("\n\n\ndef run(", 1)[0]
    return out


def test_a_recurrence_and_its_backward_are_one_persistent_kernel_each() -> None:
    _, mod = lstm_grad_module()
    src = mod.source
    kernels = kernels_of(src)
    scans = [name for name in kernels if name.endswith("_scan")]
    assert len(scans) == 2, "the forward scan and the reversed scan of its backward"
    forward, backward = (kernels[name] for name in scans)
    for body in (forward, backward):
        assert "@persistent\ndef " in body, "launch bounds: the one block fits an SM"
        assert "tid = cuda.threadIdx.x" in body and "nthreads = cuda.blockDim.x" in body
        assert body.count("cuda.syncthreads()") >= 2, "barriers between dependent body equations"
        assert "for flat in range(tid, " in body
    assert "for n in range(T):" in forward and "t = n" in forward
    assert "t_1 = T - 1 - n_1" in backward, "the backward scan runs in reverse"
    run = src.split("\ndef run(", 1)[1]
    assert "for " not in run, "the host launches a fixed number of kernels, whatever T is"
    for name in scans:
        assert re.search(rf"\n    {name}\[SCAN_BLOCKS, SCAN_THREADS\]\(", run), "launched once"
    assert "\nSCAN_BLOCKS = 1  #" in src, "one block"
    assert "gemm_f32[gemm_grid(" in run, "the input projections outside the recurrence use the tiled gemm"


def test_grid_scan_makes_persistent_kernels_cooperative_grids() -> None:
    """$SPECC_CUDA_GRID_SCAN: one block per SM, grid-strided loops, grid syncs instead of block barriers."""
    _, mod = lstm_grad_module(grid_scan=True)
    kernels = kernels_of(mod.source)
    for body in (kernels[name] for name in kernels if name.endswith("_scan")):
        assert "grid = cuda.cg.this_grid()" in body and "tid = cuda.grid(1)" in body
        assert "grid.sync()" in body and "cuda.syncthreads()" not in body
    assert "SCAN_BLOCKS = 1 if SIMULATED else cuda.get_current_device().MULTIPROCESSOR_COUNT" in mod.source


def test_cli_emit_cuda_prints_the_source(capsys) -> None:
    from specc.cli import main

    assert main(["emit", str(ROOT / "specs" / "rnn.nn"), "--target", "cuda", "--optimized", "--backward"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('"""classify_grad: generated by specc for CUDA') and "@cuda.jit(cache=True)" in out


def test_missing_numba_cuda_is_a_clear_error(monkeypatch) -> None:
    import importlib.util

    from specc.backends.cuda import runtime as cuda_runtime
    from specc.errors import SpeccError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    with pytest.raises(SpeccError, match="needs the numba-cuda package") as info:
        cuda_runtime.require_cuda()
    assert "pip install" in info.value.hint


@needs_numba_cuda
def test_no_gpu_without_the_simulator_is_a_clear_error(tmp_path) -> None:
    """In a process without the simulator: exit 1 and a message, no traceback (skipped where a GPU is)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = python_path()
    if _gpu_available():
        pytest.skip("a GPU is present: there is no error to show")
    out = subprocess.run([sys.executable, "-m", "specc", "run", str(ROOT / "specs" / "rnn.nn"), "--target", "cuda"],
                         env=env, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 1
    assert "no CUDA GPU" in out.stderr and "NUMBA_ENABLE_CUDASIM=1" in out.stderr
    assert "Traceback" not in out.stderr


@functools.cache
def _gpu_available() -> bool:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    probe = "from numba import cuda; print(cuda.is_available())"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False,
                         timeout=120)
    return out.stdout.strip().endswith("True")


# ---- every kernel compiles for a real GPU (PTX, no GPU needed) ---------------------------------------
def _nvvm_env() -> dict | None:
    if not HAS_NUMBA_CUDA:
        return None
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = python_path()
    probe = ("from numba import cuda, float32\n"
             "def k(a):\n    a[0] = 1\n"
             "cuda.compile_ptx(k, (float32[::1],), cc=(9, 0))\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False,
                         timeout=120)
    return env if out.stdout.strip() == "ok" else None


# (name, dtype, how, grid_scan)
PTX_CASES = [("lstm", "f32", "backward", False), ("lstm", "f32", "backward", True),
             ("recurrent", "f64", "backward", False), ("grads", "f64", "backward", False),
             ("nn_ops", "f32", "plain", False), ("layout", "f64", "plain", False),
             ("formulas", "f32", "optimised", False)]


def test_every_kernel_compiles_to_ptx(tmp_path) -> None:
    """numba-cuda (not the simulator) types and compiles every kernel, device function and gemm for sm_90."""
    env = _nvvm_env()
    if env is None:
        pytest.skip("numba-cuda with NVVM is not installed (pip install numba-cuda 'cuda-toolkit[nvvm]==13.*')")
    jobs = []
    from specc.backends.cuda.backend import CUDA

    for name, dtype, how, grid_scan in PTX_CASES:
        model, graph = load_graph(name, dtype, how)
        mod = CUDA.generator(grid_scan=grid_scan).generate(graph, f"{name}_{how}{'_grid' if grid_scan else ''}")
        path = tmp_path / f"{mod.name}.py"
        path.write_text(mod.source)
        dims = dims_for(model.program, {"T": 3, "B": 2, "L": 6})
        args = [[v.dtype, [d.evaluate(dims) for d in v.shape]] for v in (*graph.inputs, *(d.value for d in mod.draws))]
        jobs.append((path, json.dumps({"args": args, "dims": [dims[s] for s in mod.dims]}), mod))
    script = ("import sys, json\nfrom pathlib import Path\nfrom specc.backends.cuda.ptx import check_module\n"
              "out = {}\nfor path, spec in json.loads(sys.argv[1]):\n"
              "    s = json.loads(spec)\n    out[path] = check_module(Path(path), s['args'], s['dims'])\n"
              "print(json.dumps(out))")
    arg = json.dumps([[str(p), s] for p, s, _ in jobs])
    out = subprocess.run([sys.executable, "-c", script, arg], env=env, capture_output=True, text=True, check=False,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    compiled = json.loads(out.stdout.strip().splitlines()[-1])
    for path, _, mod in jobs:
        assert set(compiled[str(path)]) == set(kernels_of(mod.source)), f"{path.name}: some kernel was not launched"


# ---- the simulator: compiled == interpreter ---------------------------------------------------------
@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    """numba-cuda's simulator for this module (the GPU with SPECC_TEST_REAL_GPU=1), and one fresh cache directory."""
    with pytest.MonkeyPatch.context() as mp:
        yield cuda_for_tests(mp, tmp_path_factory.mktemp("specc-cuda-cache"))


def cuda_for_tests(mp: pytest.MonkeyPatch, cache: Path):
    """``numba.cuda`` for a test module: the simulator, or with SPECC_TEST_REAL_GPU=1 the GPU (checked)."""
    if not HAS_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda)")
    mp.setenv("SPECC_CACHE_DIR", str(cache))
    if not REAL_GPU:
        mp.setenv("NUMBA_ENABLE_CUDASIM", "1")
        from specc.backends.cuda.runtime import require_cuda

        return require_cuda()  # (where numba.cuda was already imported for a real GPU, that GPU runs them)
    from specc.backends.cuda.runtime import require_cuda
    from specc.errors import SpeccError

    mp.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    try:
        cuda = require_cuda()
    except SpeccError as e:
        pytest.fail(f"SPECC_TEST_REAL_GPU=1, but: {e.message}")
    if type(cuda.device_array(1)).__name__ == "FakeCUDAArray":
        pytest.fail("SPECC_TEST_REAL_GPU=1, but numba.cuda was imported as the simulator in this process")
    return cuda


def hand_specs() -> dict[str, str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_codegen_cpu import HAND  # the CPU tests' op-coverage specs: one source of truth

    return HAND


def load_graph(name: str, dtype: str, how: str, shrunk: bool = True):
    from specc.transforms.passes import optimize

    source = hand_specs().get(name) or (ROOT / "specs" / f"{name}.nn").read_text()
    source = shrink(source) if shrunk else source
    model = specc.compile(source, target="interp", dtype={"f32": "float32", "f64": "float64"}[dtype])
    graph = model.program.graph
    if how == "backward":
        graph = optimize(model.grad_program(wrt_inputs=True).graph, verify_each=True)
    elif how == "optimised":
        graph = optimize(graph, verify_each=True)
    return model, graph


def dims_for(prog, binding: dict[str, int]) -> dict[str, int]:
    dims = dict(prog.dims)
    for info in prog.inputs:
        for d in info.value.shape:
            for s in d.symbols:
                dims.setdefault(s, binding.get(s, 3))
    return dims


def make_args(model, dims: dict[str, int], seed: int) -> list[np.ndarray]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_codegen_cpu import make_args as cpu_make_args

    return cpu_make_args(model, dims, seed)


def assert_close(got, want, dtype: str, names, tol: dict[str, float] = TOL) -> None:
    assert len(got) == len(want)
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, f"{name}: {g.dtype}{g.shape} vs {w.dtype}{w.shape}"
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=name)
        else:
            np.testing.assert_allclose(g, w, rtol=tol[dtype], atol=tol[dtype], err_msg=name)


@pytest.fixture(scope="module")
def compiled(simulator):
    """(name, dtype, how) -> (model, graph, CudaCompiledGraph), compiled once for the module."""
    from specc.runtime import compile_graph

    made: dict = {}

    def get(name: str, dtype: str, how: str):
        key = (name, dtype, how)
        if key not in made:
            model, graph = load_graph(name, dtype, how)
            made[key] = (model, graph, compile_graph(graph, target="cuda", name=f"{model.name}_{how}"))
        return made[key]

    return get


# (name, dtype, how): how = "plain" (one kernel per op), "optimised" (fused groups, views, merged matmuls),
# "backward" (value-and-grad IR, optimised: forward outputs and every gradient, inputs' too).
CASES = [(p.stem, "f64", "backward") for p in SPECS]  # every spec, forward and gradients, sizes shrunk
CASES += [("lstm", "f32", "backward")]  # float32
CASES += [("nn_ops", "f64", "plain"), ("layout", "f64", "plain"), ("recurrent", "f64", "plain")]  # every op
CASES += [("formulas", "f64", "optimised"), ("formulas", "f32", "optimised")]  # every scalar formula, fused
CASES += [("grads", "f64", "backward"), ("recurrent", "f64", "backward")]  # gradient ops, BPTT of odd scans
BINDINGS = ({"T": 3, "B": 2, "L": 6}, {"T": 2, "B": 3, "L": 7})


@pytest.mark.parametrize("name,dtype,how", CASES, ids=[f"{n}-{d}-{h}" for n, d, h in CASES])
def test_simulated_matches_interpreter(compiled, name: str, dtype: str, how: str) -> None:
    model, graph, kernel = compiled(name, dtype, how)
    names = [f"out{k}" for k in range(len(graph.outputs))]
    bindings = BINDINGS if how == "plain" else BINDINGS[:1]  # one module serves every binding of the dims
    for k, binding in enumerate(bindings):
        dims = dims_for(model.program, binding)
        args = make_args(model, dims, seed=k)
        want = interpret(graph, args, dims, seed=k + 10, training=True)
        got = kernel(args, dims, seed=k + 10, training=True)
        assert_close(got, want, dtype, names)


def test_cases_cover_every_op(compiled) -> None:
    used: set[str] = set()
    for name, dtype, how in CASES:
        used |= {e.op for e in compiled(name, dtype, how)[2].graph.walk()}
    assert sorted(set(REGISTRY) - used) == []


def test_grid_scan_matches_interpreter(simulator, monkeypatch) -> None:
    """The cooperative-grid form of the persistent kernels, forward and backward (a one-block grid here)."""
    from specc.runtime import compile_graph

    monkeypatch.setenv("SPECC_CUDA_GRID_SCAN", "1")
    model, graph = load_graph("recurrent", "f64", "backward")
    kernel = compile_graph(graph, target="cuda", name="recurrent_grid")
    assert "grid.sync()" in kernel.source
    dims = dims_for(model.program, BINDINGS[0])
    args = make_args(model, dims, seed=2)
    assert_close(kernel(args, dims, seed=5, training=True), interpret(graph, args, dims, seed=5, training=True),
                 "f64", range(len(graph.outputs)))


def test_random_draws_replay_the_interpreter(compiled) -> None:
    model, graph, kernel = compiled("recurrent", "f64", "plain")
    dims = dims_for(model.program, BINDINGS[0])
    args = make_args(model, dims, seed=3)
    for seed, training in ((0, True), (12345, False)):
        assert_close(kernel(args, dims, seed=seed, training=training),
                     interpret(graph, args, dims, seed=seed, training=training), "f64", model.program.output_names)


def test_device_arrays_in_and_out(compiled, simulator) -> None:
    """Parameters already on the device are used in place; device=True leaves the results there."""
    model, _, kernel = compiled("rnn", "f64", "backward")
    dims = dims_for(model.program, BINDINGS[0])
    args = make_args(model, dims, seed=1)
    on_device = [simulator.to_device(a) if a.ndim else a for a in args]
    host = kernel(args, dims)
    outs = kernel(on_device, dims, device=True)
    assert all(hasattr(o, "copy_to_host") for o in outs)
    kernel(make_args(model, dims, seed=2), dims)  # reuses the temporaries: must not touch outs
    assert_close([o.copy_to_host().reshape(h.shape) for o, h in zip(outs, host)], host, "f64", range(len(host)))


def test_inputs_are_checked(compiled) -> None:
    from specc.errors import InputError

    model, _, kernel = compiled("lstm", "f32", "backward")
    dims = dims_for(model.program, BINDINGS[0])
    args = make_args(model, dims, seed=0)
    with pytest.raises(InputError, match="expected"):
        kernel([args[0][:, :1], *args[1:]], dims)
    with pytest.raises(InputError, match="dim"):
        kernel(args, {})
    with pytest.raises(InputError, match="inputs"):
        kernel(args[:-1], dims)


def test_model_api_on_cuda(simulator) -> None:
    """specc.compile(target='cuda'): forward and value_and_grad as with the interpreter (host arrays in and out)."""
    source = shrink((ROOT / "specs" / "rnn.nn").read_text())
    model, ref = specc.compile(source, target="cuda"), specc.compile(source, target="interp")
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(3, 2, 8)).astype(np.float32), np.array([3, 9], np.int32)
    out, want = model.forward(params, x=x, y=y), ref.forward(params, x=x, y=y)
    assert_close(list(out.values()), list(want.values()), "f32", list(out))
    loss, grads = model.value_and_grad(params, x=x, y=y)
    loss_ref, grads_ref = ref.value_and_grad(params, x=x, y=y)
    assert_close([loss, *grads.values()], [loss_ref, *grads_ref.values()], "f32", ["loss", *grads])


def test_cli_run_and_gradcheck_on_cuda(simulator, tmp_path, capsys) -> None:
    from specc.cli import main

    spec = tmp_path / "rnn.nn"
    spec.write_text(shrink((ROOT / "specs" / "rnn.nn").read_text()))
    assert main(["run", str(spec), "--target", "cuda", "--dim", "T=2", "--dim", "B=2"]) == 0
    assert "(compiled, cuda" in capsys.readouterr().out
    assert main(["gradcheck", str(spec), "--target", "cuda", "--dim", "T=2", "--dim", "B=2"]) == 0
    assert "5/5 gradients agree" in capsys.readouterr().out


def test_cli_train_on_cuda_matches_the_interpreter(simulator, tmp_path, capsys) -> None:
    from specc.cli import main

    spec = tmp_path / "rnn.nn"
    spec.write_text(shrink((ROOT / "specs" / "rnn.nn").read_text()))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.uniform(size=(2, 8, 8)).astype(np.float32),
             y=rng.integers(0, 10, 8).astype(np.int32))
    final = {}
    for target in ("cuda", "interp"):
        argv = ["train", str(spec), "--data", str(tmp_path / "d.npz"), "--target", target, "--epochs", "1",
                "--batch", "4", "--val-split", "0.5", "--quiet", "--json", "-o", str(tmp_path / f"{target}.npz")]
        assert main(argv) == 0
        final[target] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final"]
    assert final["cuda"] == pytest.approx(final["interp"], rel=1e-5)


# ---- a real GPU -------------------------------------------------------------------------------------
GPU_SCRIPT = """\
import sys
import numpy as np, specc
src = open(sys.argv[1]).read()
model, ref = specc.compile(src, target="cuda", dtype="float64"), specc.compile(src, target="interp", dtype="float64")
params = model.init_params(0)
rng = np.random.default_rng(0)
x, y = rng.uniform(size=(20, 16, 8)), rng.integers(0, 10, 16).astype(np.int32)
loss, grads = model.value_and_grad(params, x=x, y=y)
loss_ref, grads_ref = ref.value_and_grad(params, x=x, y=y)
assert abs(loss - loss_ref) < 1e-10, (loss, loss_ref)
for k in grads:
    np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-9, atol=1e-10, err_msg=k)
print("ok")
"""


@pytest.mark.gpu
@needs_numba_cuda
def test_lstm_gradients_on_a_real_gpu(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = python_path()
    env["SPECC_CACHE_DIR"] = str(tmp_path / "cache")
    if not _gpu_available():
        pytest.skip("no CUDA GPU")
    out = subprocess.run([sys.executable, "-c", GPU_SCRIPT, str(ROOT / "specs" / "lstm.nn")], env=env,
                         capture_output=True, text=True, check=False, timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-4000:]


# Every spec at its own sizes (not shrunk), forward outputs and every gradient (parameters and inputs), on
# the GPU against the CPU backend: one process without the simulator compiles and runs them all.
GPU_SPEC_CASES = [(p.stem, "f64") for p in SPECS] + [("lstm", "f32")]
GPU_TOL = {"f64": 1e-10, "f32": 1e-4}  # float32: two summation orders over products of a few hundred terms
GPU_SPECS_SCRIPT = """\
import json, sys, traceback
sys.path.insert(0, sys.argv[1])
from test_codegen_cuda import GPU_TOL, assert_close, dims_for, load_graph, make_args
from specc.runtime import compile_graph
out = {}
for name, dtype in json.loads(sys.argv[2]):
    key = f"{name}-{dtype}"
    try:
        model, graph = load_graph(name, dtype, "backward", shrunk=False)
        gpu = compile_graph(graph, target="cuda", name=f"{model.name}_{dtype}_gpu")
        cpu = compile_graph(graph, target="cpu", name=f"{model.name}_{dtype}_cpu")
        dims = dims_for(model.program, {"T": 12, "B": 16, "L": 10})
        args = make_args(model, dims, seed=0)
        names = [f"out{k}" for k in range(len(graph.outputs))]
        got, want = gpu(args, dims, seed=7, training=True), cpu(args, dims, seed=7, training=True)
        assert_close(got, want, dtype, names, GPU_TOL)
        out[key] = "ok"
    except BaseException:
        out[key] = traceback.format_exc()[-3000:]
    print(key, "ok" if out[key] == "ok" else "FAILED", file=sys.stderr, flush=True)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def gpu_spec_results(tmp_path_factory) -> dict[str, str]:
    if not HAS_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed (pip install numba-cuda)")
    if not _gpu_available():
        pytest.skip("no CUDA GPU")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = python_path()
    env["SPECC_CACHE_DIR"] = str(tmp_path_factory.mktemp("specc-gpu-cache"))
    out = subprocess.run([sys.executable, "-c", GPU_SPECS_SCRIPT, str(ROOT / "tests"), json.dumps(GPU_SPEC_CASES)],
                         env=env, capture_output=True, text=True, check=False, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.gpu
@pytest.mark.parametrize("name,dtype", GPU_SPEC_CASES, ids=[f"{n}-{d}" for n, d in GPU_SPEC_CASES])
def test_every_spec_on_a_real_gpu_matches_the_cpu_backend(gpu_spec_results, name: str, dtype: str) -> None:
    result = gpu_spec_results[f"{name}-{dtype}"]
    assert result == "ok", result

