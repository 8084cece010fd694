"""One rank of a data-parallel training run for tests/test_mpi.py (also run alone, as the one-process reference).

    [mpiexec -n N] python tests/mpi/train_rank.py SPEC OUT '{"epochs": 2, ...}'

Trains SPEC on the digits with the given options (train()'s keywords; "target" picks the target,
"stop_after_epoch": [rank, epoch, "kill" | "hang"] kills that rank with SIGKILL, or
makes it hang, after that epoch), then rank 0 writes
OUT.npz (the trained parameters) and OUT.json (the history, the ranks' thread counts, the loss reduction).
"""

import json
import os
import signal
import sys
import time

import numpy as np

from specc import compile
from specc.backends.cpu.runtime import kernel_threads
from specc.training.distributed import world
from specc.training.train import train

spec, out, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
target = options.pop("target", "interp")
stop = options.pop("stop_after_epoch", None)
w = world()


def on_epoch(record):
    if stop is not None and w.rank == stop[0] and record.epoch == stop[1]:
        if stop[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600)


history = train(compile(spec, target=target), "digits", progress=False, on_epoch=on_epoch, **options)
threads = [kernel_threads()]
if w.parallel:
    threads = w.comm.gather(kernel_threads(), root=0)
if w.is_root:
    np.savez(out + ".npz", **history.params)
    with open(out + ".json", "w") as f:
        json.dump({**history.to_dict(), "ranks": w.size, "threads": threads, "local_size": w.local_size}, f)
