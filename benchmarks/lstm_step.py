"""LSTM training step, specc vs PyTorch and JAX: the suite's ``lstm`` workload (kept for old commands).

    python benchmarks/lstm_step.py [--threads 2] [--repeats 20] [--shapes 0,3] [--json out.json]

is ``python benchmarks/suite.py --only lstm ...``; see benchmarks/suite.py and docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import suite  # noqa: E402

if __name__ == "__main__":
    sys.exit(suite.main(["--only", "lstm", *sys.argv[1:]]))
