"""The benchmark suite: specc next to PyTorch and JAX, same threads, float32, one process tree.

    python benchmarks/suite.py [--threads 2] [--repeats 20] [--quick] [--only lstm,gru,...] [--json out.json]

Workloads (``--only`` takes these names):

  lstm        LSTM training step (forward + backward, loss = mean(h)) at four (T, B, In, H),
              vs torch.nn.LSTM (oneDNN), a hand-written PyTorch cell, JAX lax.scan + grad + jit
  lstm-fwd    the same, forward only
  gru         GRU training step at the same shapes, vs torch.nn.GRU and JAX
  peephole    the peephole LSTM cell with layer norm of specs/peephole_lstm.nn, vs the same cell
              hand-written in PyTorch and in JAX
  mlp         MLP 784-256-256-10, batch 128 and 1024, one Adam step, vs PyTorch
  lenet       LeNet-5 of specs/lenet5.nn, batch 64, one Adam step, vs PyTorch
  compile     compile time of specs/lstm.nn forward + backward: cold and cached (fresh processes), JAX jit

Peers run only where installed; the table says when one did not. Each implementation
is timed in blocks of warm-up and repeats (two rounds, the order reversed in the
second), and the median over all samples is quoted. Prints one table of ratios
specc / peer (below 1: specc is faster) with GF/s of the products and the targets (issue 16
where it names one, else issue 5: benchmarks/harness.py); --json writes every sample and the
machine. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Timing, comparison_rows, configure_torch, format_compile_table, format_table, have,  # noqa: E402
                     load_warning, machine_info, set_threads)

WORKLOADS = ("lstm", "lstm-fwd", "gru", "peephole", "mlp", "lenet", "compile")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps per implementation (default 20, quick 6)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps before each block (default 3, quick 1)")
    ap.add_argument("--quick", action="store_true",
                    help="the first and last recurrent shape, MLP batch 128, fewer repeats")
    ap.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--shapes", default=None, help="recurrent shapes by index into the four, e.g. 0,3")
    ap.add_argument("--json", help="write all results and the machine to this file")
    args = ap.parse_args(argv)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        ap.error(f"unknown workload {sorted(unknown)[0]!r}; choose from {', '.join(WORKLOADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)  # before numpy, numba, torch or jax are imported
    torch = configure_torch(args.threads)
    has_jax = have("jax")
    from specc.backends.cpu.runtime import tune_allocator

    # the specc command tunes glibc's malloc (specc/backends/cpu/runtime.py); this script does it now, as the
    # command would, so every peer in this process runs with the same allocator settings, whatever order the
    # blocks run in (SPECC_MALLOC_TUNING=0: none of them)
    allocator_tuned = tune_allocator(force=os.environ.get("SPECC_MALLOC_TUNING") != "0")

    import feedforward
    import rnn
    from compile_time import measure as measure_compile

    timing = Timing(repeats=args.repeats or (6 if args.quick else 20), warmup=args.warmup or (1 if args.quick else 3))
    shapes = rnn.QUICK_SHAPES if args.quick else rnn.SHAPES
    if args.shapes:
        shapes = [rnn.SHAPES[int(i)] for i in args.shapes.split(",")]
    peers = ", ".join(p for p, ok in (("torch", torch is not None), ("jax", has_jax)) if ok) or "none"

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    log(f"specc benchmark suite: {args.threads} threads, float32, peers: {peers}; "
        f"median of {timing.repeats} after {timing.warmup} warm-up per block, {timing.rounds} rounds; "
        f"malloc {'tuned for every peer' if allocator_tuned else 'as the system has it'}")
    start = time.perf_counter()
    info = machine_info(args.threads)
    info["allocator_tuned"] = allocator_tuned
    measurements = []
    compile_results: list[dict[str, Any]] = []
    for w in args.only:
        log(f"[{w}]")
        if w in ("lstm", "lstm-fwd", "gru", "peephole"):
            cell = {"lstm-fwd": "lstm"}.get(w, w)
            mode = "forward" if w == "lstm-fwd" else "train"
            measurements += rnn.run(cell, mode, shapes, torch, has_jax, timing, log)
        elif w in ("mlp", "lenet"):
            batches = feedforward.MLP_BATCHES if w == "mlp" else (feedforward.LENET_BATCH,)
            if args.quick and w == "mlp":
                batches = batches[:1]
            measurements += feedforward.run(w, batches, torch, timing, log)
        else:
            compile_results = measure_compile(has_jax, log)

    rows = comparison_rows(measurements)
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    info["wall_s"] = time.perf_counter() - start
    print(f"\nspecc vs peers: {info['cpu']}, {args.threads} threads, float32, median of {timing.repeats} "
          f"(ratio = specc ms / peer ms: below 1 specc is faster; GF/s counts the products only)\n")
    if rows:
        print(format_table(rows))
    warning = load_warning([r.load for r in rows] + [info["load_average"][0], info["load_average_end"][0]],
                           args.threads)
    if compile_results:
        print()
        print(format_compile_table(compile_results))
    verdicts = [r.verdict for r in rows] + [
        ("PASS" if c["first_result_s"] <= c["target"] else "MISS")
        for c in compile_results if c.get("target") is not None and "first_result_s" in c]
    print(f"\ntargets: {verdicts.count('PASS')} pass, {verdicts.count('MISS')} miss; "
          f"load average {info['load_average'][0]:.1f} at start, {info['load_average_end'][0]:.1f} at end; "
          f"{info['wall_s']:.0f} s")
    if warning:
        print(warning)
    if args.json:
        doc = {"machine": info, "settings": {"threads": args.threads, "repeats": timing.repeats,
                                             "warmup": timing.warmup, "rounds": timing.rounds,
                                             "max_seconds_per_block": timing.max_seconds, "quick": args.quick,
                                             "workloads": args.only},
               "rows": [r.to_dict() for r in rows], "measurements": [m.to_dict() for m in measurements],
               "compile": compile_results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
