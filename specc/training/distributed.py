"""Data-parallel training on MPI: every rank holds the same parameters and trains on its share of each batch.

In: the MPI world (mpi4py's ``COMM_WORLD`` when this process was started by
``mpiexec``, ``mpirun`` or ``srun``), a :class:`~specc.training.train.Trainer`'s
model, batches and optimizer.
Out: a :class:`World` the Trainer asks for its rank, for sharded evaluation
(:meth:`World.evaluate`) and for the per-epoch parameter check
(:meth:`World.check_same`), and :class:`DataParallelSteps`, the training step
of one rank.

A step on N ranks does what one process does on the whole batch:

1. the global batch (the spec's ``batch`` rows, fewer at the end of an
   epoch) is split by :func:`shard`: rank r takes a contiguous block of about
   ``rows / N`` rows, the first ``rows % N`` ranks one more;
2. each rank runs the compiled value-and-grad kernel on its rows; its random
   draws (dropout, a VAE's noise) are its rows of the whole batch's draws
   (:mod:`specc.ops.shard`), and augmentation is drawn for the whole batch by
   the Trainer, so no random number depends on N;
3. the gradients, each scaled by its rank's share of the rows (the loss is a
   mean over the rows a kernel sees: ``sum_r (n_r / n) grad(mean over r's rows)``
   is the gradient of the mean over all n rows, also for an uneven split or a
   short last batch), and the loss, scaled alike, are summed by one
   ``Allreduce`` on one flat contiguous buffer (in buckets of
   ``$SPECC_MPI_BUCKET_MB``, 64 MB, when larger);
4. every rank clips and applies the same optimizer update to the same sums.

A loss that adds the rows up instead of averaging them is summed unscaled;
which of the two a spec's loss is gets measured once, on the first batch
(:func:`loss_reduction`), and a loss that is neither (one that couples the
rows of a batch) stops the run with an error.

What still depends on N: the order of float additions (the gradient of the
batch is two partial sums instead of one), so N ranks match one process to
float32 rounding, not bit for bit.  Ranks hold identical parameters (they
apply the same update to the same all-reduced numbers); a CRC of every
parameter is compared across ranks after each epoch, and a difference stops
the run naming the first parameter that differs.

Faults: every collective is non-blocking and waited for with a timeout
(``$SPECC_MPI_TIMEOUT`` seconds, 600 by default), so a rank that died or
hangs makes the others stop with an error naming the step instead of waiting
forever; an error on any rank aborts the whole job (``MPI_Abort``).  Rank 0
alone writes checkpoints (atomically), so the last one is intact.

Threads: each rank's kernels use ``cores / ranks on this host`` threads
(ranks on a host counted with an MPI shared-memory split) unless
``$SPECC_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, SpeccError
from ..ops.shard import RowWindow, batch_rows, shard, take_rows
from .data import batch_dim
from .metrics import Metric, evaluate_totals, totals_result
from .optim import OptState, Optimizer, clip_by_global_norm

if TYPE_CHECKING:
    from ..api import Model
    from .data import Dataset

# environment variables that MPI launchers set in the processes they start
LAUNCHER_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_BUCKET_MB = 64


class DistributedError(SpeccError):
    """A data-parallel run cannot go on: a rank is gone, or the ranks disagree."""


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (``$SPECC_MPI=0`` says to ignore it)."""
    return os.environ.get("SPECC_MPI", "1") != "0" and any(k in os.environ for k in LAUNCHER_ENV)


def env_rank() -> int:
    """This process's rank as the launcher's environment tells it (0 when not launched by MPI)."""
    for key in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


@dataclass
class ReduceStats:
    """Time spent in the gradient all-reduce (for the scaling benchmark and the docs)."""

    steps: int = 0
    seconds: float = 0.0
    bytes: int = 0  # per step


@dataclass
class World:
    """The ranks of a data-parallel run; ``World()`` is one process alone."""

    comm: Any = None  # an mpi4py communicator, or None for one process
    rank: int = 0
    size: int = 1
    local_size: int = 1  # ranks on this host
    timeout: float = DEFAULT_TIMEOUT_S
    stats: ReduceStats = field(default_factory=ReduceStats)

    @property
    def parallel(self) -> bool:
        return self.size > 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- collectives with a timeout ---------------------------------------------------------
    def wait(self, requests: list[Any], what: str) -> None:
        """Wait for non-blocking MPI requests; a DistributedError if they take longer than the timeout."""
        from mpi4py import MPI

        start, spins = time.monotonic(), 0
        while not MPI.Request.Testall(requests):
            spins += 1
            if spins > 2000:  # spin first (a step's all-reduce takes microseconds), then poll gently
                if time.monotonic() - start > self.timeout:
                    raise DistributedError(
                        f"rank {self.rank} of {self.size}: no answer from the other ranks for {self.timeout:g} s "
                        f"in {what}; a rank has died or hangs",
                        hint="resume from the last checkpoint with --resume (on any number of ranks); "
                             "$SPECC_MPI_TIMEOUT sets the timeout")
                time.sleep(2e-4)

    def allreduce(self, buf: np.ndarray, what: str) -> None:
        """Sum ``buf`` over the ranks, in place."""
        if self.parallel:
            from mpi4py import MPI

            self.wait([self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)], what)

    # -- what the Trainer asks ------------------------------------------------------------------
    def evaluate(self, model: Model, params: Mapping[str, np.ndarray], data: Dataset, metric: Metric | None,
                 *, batch: int = 256, seed: int = 0) -> dict[str, float]:
        """:func:`specc.training.metrics.evaluate` with each rank on its rows of every batch, the sums reduced."""
        totals = evaluate_totals(model, params, data, metric, batch=batch, seed=seed, part=(self.rank, self.size))
        self.allreduce(totals, "the evaluation's sums")
        return totals_result(totals, metric)

    def check_same(self, params: Mapping[str, np.ndarray], when: str) -> None:
        """Every rank holds the same parameters (a CRC32 of each, gathered); else an error naming the first
        parameter that differs."""
        if not self.parallel:
            return
        names = list(params)
        mine = np.array([zlib.crc32(np.ascontiguousarray(params[k]).view(np.uint8)) for k in names], dtype=np.int64)
        every = np.empty((self.size, len(names)), dtype=np.int64)
        self.wait([self.comm.Iallgather(mine, every)], f"the parameter check {when}")
        differ = [j for j in range(len(names)) if np.any(every[:, j] != every[0, j])]
        if differ:
            k = names[differ[0]]
            ranks = [r for r in range(self.size) if every[r, differ[0]] != every[0, differ[0]]]
            raise DistributedError(f"the ranks hold different parameters {when}: '{k}' differs first "
                                   f"(rank {ranks[0]} vs rank 0; {len(differ)} of {len(names)} parameters differ)",
                                   hint="the ranks must run the same spec, data, seed and checkpoint; "
                                        "resume from the last checkpoint")

    def abort(self, code: int) -> None:
        """Stop every rank (after this one has said why)."""
        if self.parallel:
            sys.stdout.flush()
            sys.stderr.flush()
            # the launcher forwards output asynchronously and an abort drops what it has not sent yet: wait a
            # little; the other ranks longer, so that a failure every rank shares is reported once, by rank 0
            time.sleep(0.5 if self.is_root else 1.5)
            self.comm.Abort(code)


_WORLD: World | None = None


def world() -> World:
    """The world this process belongs to (detected once: MPI when launched by mpiexec, else one process)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = _detect()
        if _WORLD.parallel:
            set_rank_threads(_WORLD)
            _abort_on_uncaught()
    return _WORLD


def _detect() -> World:
    if not launched_by_mpi():
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        size = int(os.environ.get("PMI_SIZE") or os.environ.get("OMPI_COMM_WORLD_SIZE") or 1)
        if size > 1:
            raise InputError(f"this process was started by an MPI launcher with {size} ranks, but mpi4py is not "
                             f"installed", hint="pip install 'specc[mpi]' (mpi4py and MPICH), or run without mpiexec")
        return World()
    comm = MPI.COMM_WORLD
    if comm.size == 1:
        return World()
    comm.Set_errhandler(MPI.ERRORS_RETURN)  # an MPI failure becomes a Python exception, then an abort
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_size = local.size
    local.Free()
    timeout = float(os.environ.get("SPECC_MPI_TIMEOUT", DEFAULT_TIMEOUT_S))
    return World(comm, comm.rank, comm.size, local_size, timeout)


def rank_threads(local_size: int) -> int:
    """Kernel threads for one of ``local_size`` ranks on this host: its share of the cores it may run on.

    A launcher that binds each rank to some cores has already given it its share (fewer CPUs in its
    affinity than the machine has): then all of them.
    """
    mine = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if mine < (os.cpu_count() or mine):
        return max(1, mine)
    return max(1, mine // max(1, local_size))


def set_rank_threads(w: World) -> None:
    """``$SPECC_NUM_THREADS`` for this rank, unless the user set it (the CPU runtime reads it per call)."""
    if not os.environ.get("SPECC_NUM_THREADS"):
        os.environ["SPECC_NUM_THREADS"] = str(rank_threads(w.local_size))


def _abort_on_uncaught() -> None:
    """An uncaught exception on one rank stops them all (else the others wait in a collective)."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if _WORLD is not None:
            _WORLD.abort(1)

    sys.excepthook = hook


def abort_if_parallel(code: int) -> None:
    """After an error has been printed: under MPI, stop the other ranks too."""
    if _WORLD is not None and _WORLD.parallel:
        print(f"specc: rank {_WORLD.rank} of {_WORLD.size} stopped with the error above; stopping every rank",
              file=sys.stderr)
        _WORLD.abort(code)


# ---- the training step of one rank ---------------------------------------------------------------
def loss_reduction(model: Model, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                   axes: Mapping[str, int], seed: int) -> str:
    """``mean`` or ``sum``: how the loss combines the rows of a batch, measured on ``batch`` and its halves.

    Data parallelism is exact only for a loss that is the mean (or the sum) of one term per row; a loss
    that couples rows (a batch statistic, a contrastive term) is neither, and an error.
    """
    name = next(iter(batch))
    n = batch[name].shape[axes[name]]
    if n < 2:
        return "mean"
    half, dim = n // 2, batch_dim(model)

    def loss(lo: int, hi: int) -> float:  # the halves draw their rows of the whole batch's noise (a VAE's)
        with batch_rows(RowWindow(dim, n, lo, hi) if hi - lo < n else None), np.errstate(all="ignore"):
            return float(model.value_and_grad(params, seed=seed, training=False, **take_rows(batch, axes, lo, hi))[0])

    whole, a, b = loss(0, n), loss(0, half), loss(half, n)
    scale = max(abs(whole), abs(a), abs(b), 1e-30)
    if abs(whole - (half * a + (n - half) * b) / n) <= 1e-4 * scale:
        return "mean"
    if abs(whole - (a + b)) <= 1e-4 * scale:
        return "sum"
    raise InputError(f"model '{model.name}': data-parallel training needs a loss that is the mean or the sum of "
                     f"one term per example, but on a batch of {n} its loss is {whole:.6g}, and on its halves "
                     f"{a:.6g} and {b:.6g}",
                     hint="train this model in one process (without mpiexec / --workers)")


class GradReducer:
    """Sums the gradients (and the loss) over the ranks with one Allreduce on one flat buffer."""

    def __init__(self, w: World, shapes: Mapping[str, tuple[int, ...]], dtype: Any, bucket_mb: float | None = None):
        self.world = w
        self.names = list(shapes)
        self.shapes = {k: tuple(s) for k, s in shapes.items()}
        sizes = [int(np.prod(s)) for s in self.shapes.values()]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.buf = np.zeros(int(self.offsets[-1]) + 1, dtype=dtype)  # the gradients, then the loss
        mb = float(os.environ.get("SPECC_MPI_BUCKET_MB", DEFAULT_BUCKET_MB)) if bucket_mb is None else bucket_mb
        self.bucket = max(1, int(mb * 2**20) // self.buf.itemsize)
        w.stats.bytes = self.buf.nbytes

    def reduce(self, loss: float, grads: Mapping[str, np.ndarray] | None, weight: float,
               step: int) -> tuple[float, dict[str, np.ndarray]]:
        """(the sum over ranks of ``weight * loss``, of ``weight * grads``); ``grads`` None: this rank had no rows."""
        buf = self.buf
        if grads is None:
            buf[:] = 0
        else:
            for k, lo, hi in zip(self.names, self.offsets[:-1], self.offsets[1:]):
                np.multiply(np.asarray(grads[k]).reshape(-1), weight, out=buf[lo:hi])
            buf[-1] = loss * weight
        started = time.perf_counter()
        w = self.world
        if w.parallel:
            from mpi4py import MPI

            requests = [w.comm.Iallreduce(MPI.IN_PLACE, buf[i:i + self.bucket], op=MPI.SUM)
                        for i in range(0, len(buf), self.bucket)]
            w.wait(requests, f"the gradient all-reduce of step {step + 1}")
        w.stats.seconds += time.perf_counter() - started
        w.stats.steps += 1
        grads = {k: buf[lo:hi].reshape(self.shapes[k]) for k, lo, hi in zip(self.names, self.offsets[:-1],
                                                                              self.offsets[1:])}
        return float(buf[-1]), grads


class DataParallelSteps:
    """Training steps of one rank (host targets: cpu, interp): its rows of each batch, the gradients all-reduced.

    Same interface as :class:`specc.training.train.HostSteps`: ``run(batch, seed, lr, guard)`` takes the
    whole global batch (every rank has the data), ``host()`` gives parameters and optimizer state.
    """

    def __init__(self, w: World, model: Model, optimizer: Optimizer, clip: float | None,
                 params: dict[str, np.ndarray], state: OptState, axes: Mapping[str, int]):
        if model.backend.device_resident:
            raise InputError("data-parallel training (mpiexec, --workers) runs on the host targets cpu and interp, "
                             "not cuda", hint="train on one GPU without mpiexec, or use --target cpu")
        self.world, self.model, self.optimizer, self.clip = w, model, optimizer, clip
        self.params, self.state, self.axes = params, state, dict(axes)
        self.dim = batch_dim(model)
        dtype = np.result_type(*params.values()) if params else np.float32
        self.reducer = GradReducer(w, {k: np.shape(v) for k, v in params.items()}, dtype)
        self.reduction: str | None = None

    @property
    def step(self) -> int:
        return self.state.step

    def run(self, batch: Mapping[str, np.ndarray], seed: int, lr: float, guard: Any) -> tuple[float, float]:
        """One optimizer step on this rank's rows of ``batch``; returns (loss, gradient norm before clipping),
        both of the whole batch."""
        w, model = self.world, self.model
        name = next(iter(batch))
        n = batch[name].shape[self.axes[name]]
        if self.reduction is None:
            self.reduction = loss_reduction(model, self.params, batch, self.axes, seed)
        lo, hi = shard(n, w.rank, w.size)
        loss, grads = 0.0, None
        if hi > lo:
            with batch_rows(RowWindow(self.dim, n, lo, hi)), np.errstate(all="ignore"):
                loss, grads = model.value_and_grad(self.params, seed=seed, training=True,
                                                   **take_rows(batch, self.axes, lo, hi))
        weight = (hi - lo) / n if self.reduction == "mean" else 1.0
        loss, grads = self.reducer.reduce(float(loss), grads, weight, self.state.step)
        guard(self.params, np.float32(loss), grads)  # replays the whole batch to find a NaN's equation
        grads, norm = clip_by_global_norm(grads, self.clip)
        self.params, self.state = self.optimizer.update(self.params, grads, self.state, lr)
        return loss, norm

    def host(self) -> tuple[dict[str, np.ndarray], OptState]:
        return self.params, self.state
