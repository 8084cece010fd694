"""``specc train --workers N``: start the same command on N MPI ranks with ``mpiexec``.

In: the command line of ``specc train`` (as typed), the number of workers and,
for several machines, ``--hosts a,b`` or ``--hostfile FILE``.
Out: the ``mpiexec`` command line (:func:`mpiexec_command`) and its exit code
(:func:`launch`): ``mpiexec -n N [hosts] python -m specc train ...`` without
the launcher's own options, so each rank runs exactly what
``mpiexec -n N specc train ...`` would (:mod:`specc.training.distributed`).

Which ``mpiexec``: ``$SPECC_MPIEXEC``, else the one installed next to this
Python (``pip install 'specc[mpi]'`` puts MPICH's there), else the first on
``PATH``.  Host options are spelled for the launcher found: MPICH's Hydra
takes ``-hosts a,b`` and ``-f FILE``, Open MPI ``--host a,b`` and
``--hostfile FILE`` (asked with ``mpiexec --version``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError

# the launcher's own options: (option, takes a value)
LAUNCH_OPTIONS = {"--workers": True, "--hosts": True, "--hostfile": True}


def find_mpiexec() -> str:
    """The mpiexec to run (see the module docstring); an error with the install hint if there is none."""
    env = os.environ.get("SPECC_MPIEXEC")
    if env:
        return env
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise InputError("--workers starts the ranks with mpiexec, and none is installed",
                         hint="pip install 'specc[mpi]' (mpi4py with MPICH), or use your cluster's MPI")
    return found


def flavour(mpiexec: str) -> str:
    """``hydra`` (MPICH, Intel MPI), ``openmpi`` or ``unknown`` (then Hydra's spelling is used)."""
    try:
        text = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if "Open MPI" in text or "OpenRTE" in text or "open-mpi" in text.lower():
        return "openmpi"
    return "hydra" if "HYDRA" in text.upper() or "Intel" in text else "unknown"


def rank_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without the launcher's options (``--workers 2``, ``--hosts=a,b``, ...)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = LAUNCH_OPTIONS[name] and "=" not in a
            continue
        out.append(a)
    return out


def mpiexec_command(workers: int, argv: Sequence[str], *, hosts: str | None = None,
                    hostfile: Path | None = None, mpiexec: str | None = None) -> list[str]:
    """The command that runs ``specc <argv>`` (launcher options removed) on ``workers`` ranks."""
    if workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    mpiexec = mpiexec or find_mpiexec()
    kind = flavour(mpiexec)
    cmd = [mpiexec, "-n", str(workers)]
    if hosts:
        cmd += ["--host" if kind == "openmpi" else "-hosts", hosts]
    if hostfile is not None:
        if not Path(hostfile).is_file():
            raise InputError(f"cannot read hostfile '{hostfile}': no such file")
        cmd += ["--hostfile" if kind == "openmpi" else "-f", str(hostfile)]
    return cmd + [sys.executable, "-m", "specc", *rank_argv(argv)]


def launch(workers: int | None, argv: Sequence[str], *, hosts: str | None = None,
           hostfile: Path | None = None) -> int:
    """Run the ranks and wait; their exit code (rank 0 prints; the others are quiet)."""
    if workers is None:
        raise InputError("--hosts and --hostfile say where to start the ranks of --workers N",
                         hint="add --workers N (the number of ranks, over all the hosts)")
    cmd = mpiexec_command(workers, argv, hosts=hosts, hostfile=hostfile)
    try:
        return subprocess.call(cmd)  # the ranks inherit the environment ($PYTHONPATH, $SPECC_* settings)
    except KeyboardInterrupt:  # mpiexec passes Ctrl-C to the ranks; they say where the last checkpoint is
        return 130
