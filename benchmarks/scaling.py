"""Data-parallel scaling: training examples/s on 1 and 2 MPI ranks, next to PyTorch DDP (gloo).

    python benchmarks/scaling.py                      # MLP, LeNet-5, LSTM; 1 and 2 ranks; the table
    python benchmarks/scaling.py --models mlp --steps 200 --json scaling.json

In: the specs (specs/mlp.nn, specs/lenet5.nn, specs/lstm.nn) at their global batch (64) on the
digits, the number of ranks (1, 2), and for the extrapolation a network bandwidth and latency.
Out: per model and rank count, the median training step (forward, backward, gradient all-reduce,
optimizer update), the examples/s it gives, the median time of the all-reduce within a step (which
includes waiting for the slower rank) and of the all-reduce alone (the ranks meet at a barrier first); the
same for PyTorch DDP (gloo backend) on the same layers when torch is installed; then an estimate
for 8 nodes (see docs/training.md, "Data-parallel training").

Each measurement is a separate ``mpiexec -n R python benchmarks/scaling.py --worker ...`` run (the
ranks are processes of this machine).  specc's side runs
:class:`specc.training.distributed.DataParallelSteps` (for 1 rank, what one process runs:
:class:`specc.training.train.HostSteps`) on the compiled CPU kernels, kernel threads = cores /
ranks; PyTorch's runs ``DistributedDataParallel`` (1 rank: the plain module) with
``torch.set_num_threads(cores / ranks)``, started by the same mpiexec (torch reads its rank from
the launcher's environment and meets over TCP on localhost).  PyTorch overlaps its all-reduce with
the backward pass, so its all-reduce column is a separate ``all_reduce`` of a buffer of the same
size, timed after training.

The estimate for N nodes: a ring all-reduce of ``b`` bytes takes ``2 (N-1)/N b / bandwidth +
2 (N-1) latency``.  Weak scaling (each node keeps the batch measured here) adds that to one node's
step; strong scaling (the global batch split over N nodes) uses one node's step measured at
``batch / N`` rows instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS = {"mlp": "specs/mlp.nn", "lenet5": "specs/lenet5.nn", "lstm": "specs/lstm.nn"}


# ---- one rank: specc --------------------------------------------------------------------------
def specc_worker(model_name: str, batch: int, steps: int, warmup: int) -> dict | None:
    import numpy as np

    from specc import compile
    from specc.training.config import TrainConfig
    from specc.training.data import load_dataset
    from specc.training.distributed import DataParallelSteps, world
    from specc.training.optim import make_optimizer
    from specc.training.train import HostSteps, blas_threads, step_seed
    from specc.backends.cpu.runtime import kernel_threads

    w = world()
    model = compile(REPO / MODELS[model_name], target="cpu")
    cfg = TrainConfig(**{**model.train_config().model_dump(), "augment": "none"})
    data = load_dataset("digits", model).train
    params = model.init_params(0)
    opt = make_optimizer(cfg)
    state = opt.init(params)
    if w.parallel:
        steps_ = DataParallelSteps(w, model, opt, cfg.clip, params, state, data.axes)
    else:
        steps_ = HostSteps(model, opt, cfg.clip, params, state)
    order = np.random.default_rng(0).permutation(len(data))
    batches = list(data.batches(batch, order[: (len(order) // batch) * batch]))
    times, reduce_times = [], []
    with blas_threads():
        for k in range(warmup + steps):
            b = batches[k % len(batches)]
            before = w.stats.seconds
            t0 = time.perf_counter()
            steps_.run(b, step_seed(0, k), cfg.lr, lambda *a: None)
            if k >= warmup:
                times.append(time.perf_counter() - t0)
                reduce_times.append(w.stats.seconds - before)
    alone = []  # the all-reduce by itself: the ranks meet at a barrier first, so no rank waits for another
    if w.parallel:
        buf = steps_.reducer.buf
        for _ in range(steps):
            w.comm.Barrier()
            t0 = time.perf_counter()
            w.allreduce(buf, "the benchmark")
            alone.append(time.perf_counter() - t0)
    if not w.is_root:
        return None
    step = statistics.median(times)
    return {"framework": "specc", "model": model_name, "ranks": w.size, "batch": batch, "threads": kernel_threads(),
            "step_ms": step * 1e3, "examples_per_s": batch / step,
            "in_step_allreduce_ms": statistics.median(reduce_times) * 1e3 if w.parallel else 0.0,
            "allreduce_ms": statistics.median(alone) * 1e3 if w.parallel else 0.0,
            "allreduce_min_ms": min(alone) * 1e3 if w.parallel else 0.0,
            "param_bytes": int(sum(p.nbytes for p in params.values())), "steps": steps}


# ---- one rank: PyTorch DDP (gloo) -------------------------------------------------------------
def torch_net(torch, model_name: str):
    nn = torch.nn
    if model_name == "mlp":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    if model_name == "lenet5":
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    class LSTM(nn.Module):  # x: [T, B, 8] time-major, the classifier reads the last step
        def __init__(self):
            super().__init__()
            self.lstm, self.out = nn.LSTM(8, 64), nn.Linear(64, 10)

        def forward(self, x):
            return self.out(self.lstm(x)[0][-1])

    return LSTM()


def torch_worker(model_name: str, batch: int, steps: int, warmup: int) -> dict | None:
    rank = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", 0)))
    size = int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", 1)))
    local = int(os.environ.get("MPI_LOCALNRANKS", size))
    threads = max(1, len(os.sched_getaffinity(0)) // local)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)  # before torch starts its pool
    import numpy as np
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = torch_net(torch, model_name)
    if size > 1:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        dist.init_process_group("gloo", rank=rank, world_size=size)
        net = torch.nn.parallel.DistributedDataParallel(net)
    rows = batch // size + (rank < batch % size)
    rng = np.random.default_rng(rank)
    x = rng.random((rows, 64)).astype(np.float32)
    shapes = {"mlp": (rows, 64), "lenet5": (rows, 1, 8, 8), "lstm": (rows, 8, 8)}
    xt = torch.from_numpy(x.reshape(shapes[model_name]))
    if model_name == "lstm":
        xt = xt.permute(1, 0, 2).contiguous()  # [T, B, 8]
    yt = torch.from_numpy(rng.integers(0, 10, rows))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), yt).backward()
        opt.step()
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in net.parameters())
    reduce_ms = reduce_min_ms = 0.0
    if size > 1:
        flat = torch.zeros(n_params)
        samples = []
        for _ in range(steps):
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            samples.append(time.perf_counter() - t0)
        reduce_ms, reduce_min_ms = statistics.median(samples) * 1e3, min(samples) * 1e3
        dist.destroy_process_group()
    if rank != 0:
        return None
    step = statistics.median(times)
    return {"framework": "torch", "model": model_name, "ranks": size, "batch": batch, "threads": threads,
            "step_ms": step * 1e3, "examples_per_s": batch / step, "allreduce_ms": reduce_ms,
            "allreduce_min_ms": reduce_min_ms,
            "param_bytes": 4 * n_params, "steps": steps}


# ---- the driver -----------------------------------------------------------------------------------
def measure(framework: str, model: str, ranks: int, batch: int, steps: int, warmup: int, port: int) -> dict | None:
    from specc.training.launch import find_mpiexec

    cmd = [find_mpiexec(), "-n", str(ranks), sys.executable, __file__, "--worker", framework, "--models", model,
           "--batch", str(batch), "--steps", str(steps), "--warmup", str(warmup)]
    env = {k: v for k, v in os.environ.items() if k != "SPECC_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["MASTER_PORT"] = str(port)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print(f"  {framework} {model} on {ranks} ranks failed: {r.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    if r.returncode != 0:  # measured, then failed at exit (gloo's threads have been seen to, once)
        print(f"  ({framework} {model} on {ranks} ranks: exit code {r.returncode} after measuring: "
              f"{r.stderr.strip()[-200:]})", file=sys.stderr)
    return json.loads(lines[-1])


def ring_allreduce_s(nbytes: int, nodes: int, bandwidth: float, latency: float) -> float:
    """A ring all-reduce of ``nbytes`` over ``nodes`` nodes: 2 (N-1)/N bytes / bandwidth + 2 (N-1) latency."""
    return 2 * (nodes - 1) / nodes * nbytes / bandwidth + 2 * (nodes - 1) * latency


def report(results: list[dict], nodes: int, bandwidth: float, latency: float) -> None:
    def get(fw, model, ranks, batch):
        return next((r for r in results if (r["framework"], r["model"], r["ranks"], r["batch"]) == (fw, model, ranks,
                                                                                                   batch)), None)

    models = list(dict.fromkeys(r["model"] for r in results))
    print(f"\nmedians; this machine: {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f} at the "
          f"end; all-reduce: specc's within the step (waiting for the slower rank included) / alone, median (minimum)\n")
    print(f"{'model':8} {'params':>8} {'ranks':>5} | {'specc ex/s':>10} {'step ms':>8} {'allreduce ms':>22} "
          f"{'speedup':>7} | {'torch ex/s':>10} {'step ms':>8} {'allreduce ms':>22} {'speedup':>7}")
    for m in models:
        for ranks in (1, 2):
            row = f"{m:8} "
            s, t = get("specc", m, ranks, 64), get("torch", m, ranks, 64)
            ref = next((r for r in results if r["model"] == m and r["param_bytes"]), None)
            row += f"{(ref['param_bytes'] / 1e3 if ref else 0):>6.0f}kB {ranks:>5} |"
            for res, base in ((s, get("specc", m, 1, 64)), (t, get("torch", m, 1, 64))):
                if res is None:
                    row += f" {'-':>10} {'-':>8} {'-':>22} {'-':>7} |"
                else:
                    speed = res["examples_per_s"] / base["examples_per_s"] if base else float("nan")
                    ar = f"{res['allreduce_ms']:.3f} ({res.get('allreduce_min_ms', 0):.3f})"
                    if res.get("in_step_allreduce_ms"):
                        ar = f"{res['in_step_allreduce_ms']:.2f} / {ar}"
                    row += f" {res['examples_per_s']:>10,.0f} {res['step_ms']:>8.2f} {ar:>22} {speed:>6.2f}x |"
            print(row.rstrip(" |"))
    print(f"\nestimate for {nodes} nodes like this machine (ring all-reduce at {bandwidth / 1e9:g} GB/s, "
          f"{latency * 1e6:g} us per hop), from the one-node steps above:")
    print(f"{'model':8} {'all-reduce ms':>13} | {'weak: step ms':>13} {'ex/s':>9} {'efficiency':>10} | "
          f"{'strong: step ms':>15} {'ex/s':>9} {'speedup':>7}")
    for m in models:
        one, small = get("specc", m, 1, 64), get("specc", m, 1, 64 // nodes)
        if one is None:
            continue
        ar = ring_allreduce_s(one["param_bytes"], nodes, bandwidth, latency) * 1e3
        weak = one["step_ms"] + ar
        row = f"{m:8} {ar:>13.3f} | {weak:>13.2f} {nodes * 64 / weak * 1e3:>9,.0f} {one['step_ms'] / weak:>9.0%} |"
        if small is not None:
            strong = small["step_ms"] + ar
            row += f" {strong:>15.2f} {64 / strong * 1e3:>9,.0f} {one['step_ms'] / strong:>6.2f}x"
        print(row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mlp,lenet5,lstm")
    p.add_argument("--steps", type=int, default=100, help="timed steps per run (after --warmup)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=64, help="the global batch")
    p.add_argument("--nodes", type=int, default=8, help="the node count of the estimate")
    p.add_argument("--bandwidth", type=float, default=1.25e9, help="bytes/s per link (default 10 Gbit/s Ethernet)")
    p.add_argument("--latency", type=float, default=20e-6, help="seconds per hop of the ring")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--json", type=Path, help="write the measurements here")
    p.add_argument("--worker", choices=["specc", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = specc_worker if args.worker == "specc" else torch_worker
        out = fn(args.models, args.batch, args.steps, args.warmup)
        if out is not None:
            print(json.dumps(out), flush=True)
        return
    try:
        import torch  # noqa: F401

        has_torch = not args.no_torch
    except ImportError:
        has_torch = False
    results, port = [], 29500 + os.getpid() % 1000
    for m in args.models.split(","):
        runs = [("specc", 1, args.batch), ("specc", 2, args.batch), ("specc", 1, max(1, args.batch // args.nodes))]
        runs += [("torch", 1, args.batch), ("torch", 2, args.batch)] if has_torch else []
        for fw, ranks, batch in runs:
            port += 1
            r = measure(fw, m, ranks, batch, args.steps, args.warmup, port)
            if r is not None:
                results.append(r)
                print(f"  {fw:5} {m:7} {ranks} rank(s), batch {batch:3}: {r['examples_per_s']:>9,.0f} ex/s, "
                      f"step {r['step_ms']:.2f} ms, all-reduce {r['allreduce_ms']:.3f} ms", file=sys.stderr)
    report(results, args.nodes, args.bandwidth, args.latency)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
