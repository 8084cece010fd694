"""The LSTM rows of benchmarks/cuda_rnn.py, kept for old command lines.

    python benchmarks/cuda_lstm.py [options]   ==   python benchmarks/cuda_rnn.py --cells lstm [options]

Issue 6's shapes (see cuda_rnn.py); the CPU issue's shapes this script used to time are in
benchmarks/rnn.py (the CPU suite).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cuda_rnn  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cuda_rnn.main(["--cells", "lstm", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
