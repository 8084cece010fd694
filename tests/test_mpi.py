"""Data-parallel training on MPI (specc.training.distributed, specc.ops.shard, specc.training.launch).

The first tests need no MPI.  The others start 2 ranks with mpiexec (MPICH from the package index:
``pip install -e ".[mpi]"``) on the reference interpreter and tiny runs on the digits; they are
skipped, saying why, where mpi4py or mpiexec is missing.  Every subprocess has a timeout, so a
hang fails the test instead of the CI job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specc import compile
from specc.errors import InputError
from specc.ir.dims import Dim
from specc.ops import REGISTRY, RefContext
from specc.ops.shard import RowWindow, batch_rows, shard
from specc.training import checkpoint as ckpt_io
from specc.training.distributed import GradReducer, World, loss_reduction, rank_threads
from specc.training.launch import mpiexec_command, rank_argv
from specc.training.train import train

ROOT = Path(__file__).resolve().parents[1]
RANK_SCRIPT = str(ROOT / "tests" / "mpi" / "train_rank.py")
TIMEOUT_S = 180  # per mpiexec run: a hang fails the test

DROPOUT_MLP = """dim B

model classify(x: f32[B, 64], y: i32[B]) {
  h1 = relu(dense(dropout(x, 0.2), 64))
  logits = dense(dropout(h1, 0.3), 10)
  loss = cross_entropy(logits, y)
  output probs = softmax(logits)
}

train { optimizer = adam, lr = 0.01, epochs = 2, batch = 51, val_split = 0.1, seed = 3 }
"""
# batch 51 splits 26 + 25; 1,294 training rows leave a last batch of 19 (10 + 9)


# ---- without MPI --------------------------------------------------------------------------------
def test_shard_splits_every_row_once_the_remainder_first():
    for rows in (0, 1, 5, 19, 64):
        for size in (1, 2, 3, 8):
            blocks = [shard(rows, r, size) for r in range(size)]
            assert blocks[0][0] == 0 and blocks[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            sizes = [hi - lo for lo, hi in blocks]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("op", ["dropout_mask", "normal", "uniform"])
def test_a_shards_draws_are_its_rows_of_the_whole_batchs(op):
    params = {"shape": (Dim.sym("B"), Dim.const(7)), "dtype": "f32", "stream": 4, "p": 0.5}
    ref = REGISTRY[op].ref
    whole = ref(RefContext({"B": 9}, seed=11, training=True, path=(2,)), [], params)[0]
    for lo, hi in ((0, 5), (5, 9), (3, 4)):
        with batch_rows(RowWindow("B", 9, lo, hi)):
            part = ref(RefContext({"B": hi - lo}, seed=11, training=True, path=(2,)), [], params)[0]
        np.testing.assert_array_equal(part, whole[lo:hi])
    # outside a window, a draw of 4 rows is what it always was (the first rows of nothing in particular)
    alone = ref(RefContext({"B": 4}, seed=11, training=True, path=(2,)), [], params)[0]
    assert alone.shape == (4, 7)


def test_a_draw_whose_axis_only_involves_the_batch_dim_cannot_be_split():
    params = {"shape": (Dim.sym("B") * 2,), "dtype": "f32", "stream": 1}
    with batch_rows(RowWindow("B", 6, 0, 3)), pytest.raises(InputError, match="not the batch dim B itself"):
        REGISTRY["normal"].ref(RefContext({"B": 3}, seed=0), [], params)


def test_loss_reduction_is_measured(tmp_path):
    model = compile(ROOT / "specs" / "mlp.nn", target="interp")
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    batch = {"x": rng.random((10, 64)).astype(np.float32), "y": rng.integers(0, 10, 10)}
    axes = {"x": 0, "y": 0}
    assert loss_reduction(model, params, batch, axes, seed=0) == "mean"
    summed = tmp_path / "sum.nn"
    summed.write_text("dim B\nmodel s(x: f32[B, 4]) {\n  h = dense(x, 3)\n  loss = sum(h * h)\n}\n")
    m = compile(summed, target="interp")
    assert loss_reduction(m, m.init_params(0), {"x": rng.random((6, 4))}, {"x": 0}, seed=0) == "sum"
    coupled = tmp_path / "coupled.nn"
    coupled.write_text("dim B\nmodel c(x: f32[B, 4]) {\n  h = dense(x, 3)\n  m = mean(h)\n  loss = m * m\n}\n")
    m = compile(coupled, target="interp")
    with pytest.raises(InputError, match="mean or the sum of one term per example"):
        loss_reduction(m, m.init_params(0), {"x": rng.random((6, 4))}, {"x": 0}, seed=0)


def test_one_process_reducer_scales_by_the_share_of_rows():
    reducer = GradReducer(World(), {"w": (2, 3), "b": (3,)}, np.float32, bucket_mb=1e-5)  # buckets of 2 numbers
    grads = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    loss, out = reducer.reduce(2.0, grads, 0.25, step=0)
    assert loss == 0.5 and reducer.bucket == 2
    np.testing.assert_array_equal(out["w"], grads["w"] * 0.25)
    np.testing.assert_array_equal(out["b"], grads["b"] * 0.25)


def test_threads_per_rank_share_the_cores():
    cores = len(os.sched_getaffinity(0))
    if cores < (os.cpu_count() or cores):
        pytest.skip("this process is bound to some cores: then each rank keeps what it is given")
    assert rank_threads(1) == cores
    assert rank_threads(2) == max(1, cores // 2)
    assert rank_threads(4 * cores) == 1


def test_workers_command_line(tmp_path):
    argv = ["train", "s.nn", "--workers", "4", "--dataset", "digits", "--hosts=a,b", "--hostfile", "h", "--json"]
    assert rank_argv(argv) == ["train", "s.nn", "--dataset", "digits", "--json"]
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a:2\nb:2\n")
    fake = tmp_path / "mpiexec"  # answers --version like MPICH's Hydra
    fake.write_text("#!/bin/sh\necho 'HYDRA build details:'\n")
    fake.chmod(0o755)
    cmd = mpiexec_command(4, argv, hosts="a,b", hostfile=hostfile, mpiexec=str(fake))
    assert cmd[:7] == [str(fake), "-n", "4", "-hosts", "a,b", "-f", str(hostfile)]
    assert cmd[7:] == [sys.executable, "-m", "specc", "train", "s.nn", "--dataset", "digits", "--json"]
    fake.write_text("#!/bin/sh\necho 'mpiexec (OpenRTE) 4.1.2'\n")
    assert mpiexec_command(2, argv, hosts="a", mpiexec=str(fake))[3:5] == ["--host", "a"]
    with pytest.raises(InputError, match="at least 1"):
        mpiexec_command(0, argv, mpiexec=str(fake))


def test_hosts_without_workers_is_an_error(capsys):
    from specc.cli import main

    assert main(["train", "specs/mlp.nn", "--dataset", "digits", "--hosts", "a,b"]) == 1
    assert "--workers N" in capsys.readouterr().err


# ---- with MPI: 2 ranks ----------------------------------------------------------------------------
def _mpiexec() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install -e '.[mpi]'): data-parallel tests skipped")
    from specc.training.launch import find_mpiexec

    try:
        return find_mpiexec()
    except InputError:
        pytest.skip("no mpiexec (pip install -e '.[mpi]' installs MPICH's): data-parallel tests skipped")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SPECC_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env.setdefault("SPECC_TARGET", "interp")
    return {**env, **extra}


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(**env), cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} hung for {TIMEOUT_S} s: {e.stderr}")


@pytest.fixture(scope="module")
def mpiexec() -> str:
    mpiexec = _mpiexec()
    r = _run([mpiexec, "-n", "2", sys.executable, "-c",
              "from mpi4py import MPI; import numpy as np; a = np.ones(1); "
              "MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, a); assert a[0] == 2"])
    if r.returncode != 0:
        pytest.skip(f"mpiexec -n 2 does not run here: {r.stderr.strip()[-300:]}")
    return mpiexec


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mpi") / "drop.nn"
    path.write_text(DROPOUT_MLP)
    return path


@pytest.fixture(scope="module")
def one_process(spec, tmp_path_factory):
    """The reference: one process, the same global batch and seed."""
    ckpt = tmp_path_factory.mktemp("one") / "one.npz"
    history = train(compile(spec, target="interp"), "digits", progress=False, checkpoint=ckpt)
    return history, ckpt


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b))


def _assert_same_run(summary: dict, params: dict[str, np.ndarray], reference) -> None:
    history, _ckpt = reference
    want = history.final()
    assert summary["final"]["test_accuracy"] == pytest.approx(want["test_accuracy"], rel=1e-4)
    for key in ("test_loss", "val_loss", "val_accuracy", "train_loss"):
        assert _close(summary["final"][key], want[key]), (key, summary["final"][key], want[key])
    for k, p in history.params.items():
        np.testing.assert_allclose(params[k], p, rtol=0, atol=1e-5, err_msg=k)


def _params(path: Path) -> dict[str, np.ndarray]:
    return ckpt_io.load(path).params


@pytest.mark.mpi
def test_workers_2_equals_one_process(mpiexec, spec, one_process, tmp_path):
    """specc train --workers 2 (dropout, an uneven split, a short last batch) = one process; rank 0 alone prints."""
    out = tmp_path / "two.npz"
    r = _run([sys.executable, "-m", "specc", "train", str(spec), "--dataset", "digits", "--workers", "2",
              "--target", "interp", "-o", str(out), "--json"])
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and r.stdout.count("test accuracy") == 1 and r.stderr.count("epoch 2/2") == 1
    _assert_same_run(json.loads(lines[0]), _params(out), one_process)


@pytest.mark.mpi
def test_resume_one_process_run_on_2_ranks(mpiexec, spec, one_process, tmp_path):
    first = tmp_path / "first.npz"
    train(compile(spec, target="interp"), "digits", progress=False, checkpoint=first, epochs=1)
    out = tmp_path / "resumed.npz"
    r = _run([mpiexec, "-n", "2", sys.executable, "-m", "specc", "train", str(spec), "--dataset", "digits",
              "--target", "interp", "--resume", str(first), "--epochs", "2", "-o", str(out), "--json", "--quiet"])
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2
    _assert_same_run(summary, _params(out), one_process)


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["kill", "hang"])
def test_a_lost_rank_stops_the_others_and_leaves_the_checkpoint(mpiexec, spec, one_process, tmp_path, how):
    """Rank 1 dies (SIGKILL) or hangs after epoch 1.  A dead rank: mpiexec (MPICH's Hydra) stops the others.
    A hanging one: rank 0's all-reduce times out, it says so and aborts the job.  Either way the job ends with
    an error, not a hang, and the checkpoint of epoch 1 is intact and resumes to the one-process result."""
    ckpt = tmp_path / "k.npz"
    options = json.dumps({"epochs": 2, "checkpoint": str(ckpt), "stop_after_epoch": [1, 1, how]})
    r = _run([mpiexec, "-n", "2", sys.executable, RANK_SCRIPT, str(spec), str(tmp_path / "k"), options],
             SPECC_MPI_TIMEOUT="5")
    assert r.returncode != 0
    if how == "kill":
        assert "Killed (signal 9)" in r.stdout + r.stderr
    else:
        assert "rank 0 of 2: no answer from the other ranks for 5 s in the gradient all-reduce of step" in r.stderr
        assert "--resume" in r.stderr and "MPI_Abort" in r.stderr
    assert ckpt_io.load(ckpt).epoch == 1
    history = train(compile(spec, target="interp"), "digits", progress=False, resume=ckpt)
    for k, p in one_process[0].params.items():
        np.testing.assert_allclose(history.params[k], p, rtol=0, atol=1e-5, err_msg=k)


@pytest.mark.mpi
def test_thread_default_and_the_parameter_check(mpiexec):
    """Each rank's kernels get cores / ranks on the host; ranks holding different parameters are named."""
    script = (
        "import json\n"
        "import numpy as np\n"
        "from specc.backends.cpu.runtime import kernel_threads\n"
        "from specc.training.distributed import DistributedError, world\n"
        "w = world()\n"
        "p = {'a': np.ones(3, np.float32), 'b': np.ones(2, np.float32)}\n"
        "w.check_same(p, 'after epoch 1')\n"
        "p['b'][1] += w.rank\n"
        "try:\n"
        "    w.check_same(p, 'after epoch 2')\n"
        "    caught = None\n"
        "except DistributedError as e:\n"
        "    caught = e.message\n"
        "every = w.comm.gather([w.rank, w.local_size, kernel_threads(), caught], root=0)\n"
        "if w.is_root:\n"
        "    print(json.dumps(every))\n")
    r = _run([mpiexec, "-n", "2", sys.executable, "-c", script])
    assert r.returncode == 0, r.stderr
    cores = len(os.sched_getaffinity(0))
    want = cores if cores < (os.cpu_count() or cores) else max(1, cores // 2)
    every = json.loads(r.stdout.strip().splitlines()[-1])
    assert [e[:3] for e in every] == [[0, 2, want], [1, 2, want]]
    assert all("after epoch 2: 'b' differs first (rank 1 vs rank 0" in e[3] for e in every)
    r = _run([mpiexec, "-n", "2", sys.executable, "-c", script], SPECC_NUM_THREADS="3")
    assert [e[2] for e in json.loads(r.stdout.strip().splitlines()[-1])] == [3, 3]
