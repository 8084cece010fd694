"""Timing, thread settings, targets and the results table shared by the benchmark suite.

In: step functions (one call = one training or forward step) grouped by workload.
Out: :class:`Measurement` records (raw samples, medians), a printed table of
specc / peer ratios with GF/s and target PASS/MISS, and a JSON document.

Thread settings must be made before NumPy, Numba, PyTorch or JAX are imported:
:func:`set_threads` writes the environment, and :func:`configure_torch` sets
PyTorch's pools once it is imported.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent


# ---- threads -------------------------------------------------------------------------------
def set_threads(n: int) -> dict[str, str]:
    """Give every library ``n`` threads; call before importing any of them.

    specc: ``SPECC_NUM_THREADS`` (the threads of its kernels). OpenMP, MKL and
    OpenBLAS pools: their usual variables. JAX has no documented thread-count knob: its
    CPU client sizes its pool from the CPUs this process may run on (jax-ml/jax#1539), so with fewer threads
    than CPUs the whole process is pinned to the first ``n`` CPUs (which bounds every
    library alike), and with one thread Eigen's multi-threading is switched off too.
    """
    env = {
        "SPECC_NUM_THREADS": str(n),
        "OMP_NUM_THREADS": str(n),
        "MKL_NUM_THREADS": str(n),
        "OPENBLAS_NUM_THREADS": str(n),
        "JAX_PLATFORMS": "cpu",
    }
    if n == 1:
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    os.environ.update(env)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus and n < len(cpus):
        os.sched_setaffinity(0, cpus[:n])
        env["affinity"] = ",".join(map(str, cpus[:n]))
    return env


def configure_torch(n: int) -> Any:
    """PyTorch with ``n`` intra-op threads, or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(n)
    return torch


def have(module: str) -> bool:
    """Whether ``module`` imports (call after :func:`set_threads`: it is imported here)."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


# ---- timing --------------------------------------------------------------------------------
@dataclass
class Timing:
    repeats: int = 20
    warmup: int = 3
    rounds: int = 2  # blocks per implementation, in alternating order (drift hits all alike)
    max_seconds: float = 20.0  # per block: stop early (after 3 samples) once spent


@dataclass
class Measurement:
    """One implementation of one workload: raw step times in seconds."""

    family: str  # "LSTM", "GRU", "peephole LSTM", "MLP", "LeNet-5", "compile"
    mode: str  # "train" (forward + backward [+ update]) or "forward"
    shape: str
    impl: str  # "specc", "torch.nn.LSTM", "torch cell", "jax scan", ...
    flops: float = 0.0  # per step, GEMMs / convolutions only
    samples: list[float] = field(default_factory=list)
    first_call_s: float | None = None  # compile (or load from cache) + first step
    error: str | None = None  # why it did not run ("not installed", an exception)
    load_average: float | None = None  # the machine's 1-minute load when the timing ended

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def ms(self) -> float | None:
        m = self.median_s
        return None if m is None else m * 1e3

    @property
    def spread(self) -> float | None:
        """median / minimum: near 1 when the samples agree, larger when something interfered."""
        return self.median_s / min(self.samples) if self.samples and min(self.samples) > 0 else None

    @property
    def gflops(self) -> float | None:
        m = self.median_s
        return self.flops / m / 1e9 if m and self.flops else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d |= {"median_ms": self.ms, "min_ms": min(self.samples) * 1e3 if self.samples else None,
              "spread": self.spread, "gflops": self.gflops}
        return d


Setup = Callable[[], Callable[[], Any]]


def measure_group(family: str, mode: str, shape: str, flops: float, impls: dict[str, Setup | str],
                  timing: Timing, log: Callable[[str], None] = print) -> list[Measurement]:
    """Time every implementation of one workload.

    ``impls`` maps a name to a setup function returning the step, or to a string saying why
    it cannot run. The setup's first step is timed as ``first_call_s`` (compilation); then each
    implementation runs ``timing.rounds`` blocks of warm-up and repeats, the order of the
    implementations reversed every other round, and the median is taken over all samples.
    """
    results = {name: Measurement(family, mode, shape, name, flops) for name in impls}
    steps: dict[str, Callable[[], Any]] = {}
    for name, setup in impls.items():
        if isinstance(setup, str):
            results[name].error = setup
            continue
        try:
            step = setup()
            t = time.perf_counter()
            step()
            results[name].first_call_s = time.perf_counter() - t
            steps[name] = step
        except Exception as e:  # a peer that fails is reported, not fatal
            results[name].error = f"{type(e).__name__}: {e}"[:200]
            log(f"  {name} failed: {results[name].error}")
    order = list(steps)
    per_round = max(1, -(-timing.repeats // timing.rounds))
    for r in range(timing.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            results[name].samples += _block(steps[name], per_round, timing)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for m in results.values():
        m.load_average = load
        if m.samples:
            log(f"  {family} {mode} {shape} {m.impl}: {m.ms:.2f} ms")
    return list(results.values())


def _block(step: Callable[[], Any], repeats: int, timing: Timing) -> list[float]:
    for _ in range(timing.warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
        if len(times) >= 3 and time.perf_counter() - start > timing.max_seconds:
            break
    return times


# ---- targets and the table -----------------------------------------------------------------
# (family, mode, peer) -> the largest ratio specc / peer that passes: issue 16's where it names one
# (LSTM vs oneDNN 1.1, GRU 0.9, custom cell 0.8 of the better of the torch cell and JAX, MLP 1.1), else issue 5's
TARGETS: dict[tuple[str, str, str], float] = {
    ("LSTM", "train", "torch.nn.LSTM"): 1.1,
    ("LSTM", "train", "torch cell"): 0.5,
    ("LSTM", "train", "jax scan"): 0.5,
    ("GRU", "train", "torch.nn.GRU"): 0.9,
    ("peephole LSTM", "train", "torch cell"): 0.8,
    ("peephole LSTM", "train", "jax scan"): 0.8,
    ("MLP", "train", "torch"): 1.1,
    ("LeNet-5", "train", "torch"): 1.5,
}
# compile-time targets in seconds, from `import specc` to the first value_and_grad result (issue 16): cold at
# most 1.5x JAX's first jit of the same model when JAX is installed (COLD_VS_JAX), else 3 s; cached 0.3 s
COMPILE_TARGETS = {"cold": 3.0, "cached": 0.3}
COLD_VS_JAX = 1.5


@dataclass
class Row:
    workload: str
    shape: str
    specc_ms: float | None
    peer: str
    peer_ms: float | None
    ratio: float | None
    specc_gflops: float | None
    peer_gflops: float | None
    target: float | None
    verdict: str  # "PASS", "MISS", "" (no target), or why there is no ratio
    load: float | None = None  # the machine's 1-minute load average when the workload was timed
    spread: float | None = None  # the larger median / minimum of the two sides

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def comparison_rows(measurements: Sequence[Measurement]) -> list[Row]:
    """One row per (workload, shape, peer): specc's median against the peer's."""
    groups: dict[tuple[str, str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.family, m.mode, m.shape), []).append(m)
    rows = []
    for (family, mode, shape), ms in groups.items():
        specc = next((m for m in ms if m.impl == "specc"), None)
        if specc is None:
            continue
        for peer in (m for m in ms if m.impl != "specc"):
            target = TARGETS.get((family, mode, peer.impl))
            ratio = specc.median_s / peer.median_s if specc.median_s and peer.median_s else None
            if ratio is None:
                verdict = _short(peer.error or specc.error or "no result")
            elif target is None:
                verdict = ""
            else:
                verdict = "PASS" if ratio <= target else "MISS"
            rows.append(Row(f"{family} {mode}", shape, specc.ms, peer.impl, peer.ms, ratio, specc.gflops,
                            peer.gflops, target, verdict, specc.load_average,
                            max(specc.spread, peer.spread) if ratio is not None else None))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    head = ["workload", "shape", "load", "specc ms", "peer", "peer ms", "specc/peer", "spread", "specc GF/s",
            "peer GF/s", "target", "result"]
    body = []
    last = None
    for r in rows:
        same = (r.workload, r.shape) == last
        last = (r.workload, r.shape)
        body.append(["" if same else r.workload, "" if same else r.shape, "" if same else _num(r.load, 1),
                     "" if same else _num(r.specc_ms),
                     r.peer, _num(r.peer_ms), _num(r.ratio, 2), _num(r.spread, 2), _num(r.specc_gflops, 1),
                     _num(r.peer_gflops, 1),
                     f"<= {r.target:g}" if r.target is not None else "", r.verdict])
    return _render(head, body)


def load_warning(loads: Sequence[float | None], threads: int) -> str | None:
    """A warning when the machine was busier than the threads asked for (then peers that sync threads suffer)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    worst = max((x for x in loads if x is not None), default=None)
    if worst is None or worst <= cpus + 0.5:
        return None
    return (f"warning: the load average reached {worst:.1f} on {cpus} CPUs: other work took CPU time from these "
            f"{threads}-thread runs (see load and spread); rerun on a quiet machine before quoting ratios")


def format_compile_table(compile_results: Sequence[dict[str, Any]]) -> str:
    head = ["compile (specs/lstm.nn fwd+bwd)", "import s", "specc.compile s", "first call s", "to first result s",
            "target", "result", "cache writes"]
    body = []
    for c in compile_results:
        if c.get("error"):
            body.append([c["name"], "", "", "", "", "", _short(c["error"]), ""])
            continue
        target = c.get("target")
        verdict = "" if target is None else ("PASS" if c["first_result_s"] <= target else "MISS")
        writes = (f"{c['sources_written']} sources, {c['numba_files_written']} Numba files"
                  if "sources_written" in c else "")
        body.append([c["name"], _num(c["import_s"], 2), _num(c.get("build_s"), 2), _num(c["first_call_s"], 2),
                     _num(c["first_result_s"], 2), f"<= {target:g} s" if target is not None else "", verdict,
                     writes])
    return _render(head, body)


def _short(why: str, width: int = 48) -> str:
    """A reason that fits a table cell (the JSON keeps it whole)."""
    return why if len(why) <= width else why[:width - 3] + "..."


def _num(x: float | None, digits: int | None = None) -> str:
    if x is None:
        return "-"
    if digits is None:
        digits = 2 if x < 100 else 1
    return f"{x:.{digits}f}"


def _render(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    numeric = [all(_is_num(row[i]) for row in body) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        cells = [str(c).rjust(w) if n else str(c).ljust(w) for c, w, n in zip(cells, widths, numeric)]
        return "  ".join(cells).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body])


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return s in ("", "-")


# ---- the machine ---------------------------------------------------------------------------
def machine_info(threads: int) -> dict[str, Any]:
    """CPU, thread settings, load and the versions of everything timed."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "threads": threads,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "env": {k: os.environ.get(k) for k in ("SPECC_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS", "XLA_FLAGS", "SPECC_CACHE_DIR")},
        "git": _git(),
        "versions": {},
    }
    for mod in ("specc", "numpy", "numba", "scipy", "torch", "jax", "jaxlib"):
        if mod in sys.modules or (mod not in ("torch", "jax", "jaxlib") and have(mod)):
            try:
                info["versions"][mod] = __import__(mod).__version__
            except Exception as e:  # noqa: BLE001 (a broken install is reported, not fatal)
                info["versions"][mod] = f"error: {e}"
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": run("rev-parse", "HEAD"), "dirty_files": run("status", "--porcelain", "--", "specc").splitlines()}
