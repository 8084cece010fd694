"""The profiling tools of benchmarks/ run and print what they say (smoke tests, tiny sizes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_gemm_step_prints_both_and_the_ratio() -> None:
    out = run("benchmarks/gemm_step.py", "--shapes", "4x256x8,1x8x8", "--samples", "1")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["4x256x8", "1x8x8"] and all(len(r) == 6 for r in rows)
    assert all(float(v) > 0 for r in rows for v in r[1:])


def test_parts_times_each_part_of_a_split_kernel() -> None:
    out = run("benchmarks/parts.py", "--cell", "lstm", "--shape", "3,8,4,5", "--threads", "2", "--repeats", "2")
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert any(n.startswith("run_part") for n in names) and any(n.startswith("scan_") for n in names), out
    assert "sum of parts" in out and "the rest" in out and "whole step" in out
