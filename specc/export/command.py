"""``specc export``: its options and its body (``specc.cli`` holds only the wiring).

In: the parsed arguments (a spec, ``--params``, ``-o``, ``--with-loss``, ``--random``).
Out: an ONNX file and one line saying what it holds; exit code 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--params", type=Path, metavar="CKPT",
                   help="a checkpoint or .npz of parameters (default: freshly initialised from --seed)")
    c.add_argument("-o", "--output", type=Path, metavar="FILE", help="the ONNX file (default: SPEC.onnx here)")
    c.add_argument("--with-loss", action="store_true",
                   help="also output the loss (its labels become inputs); default: the declared outputs only")
    c.add_argument("--random", choices=["mean", "input", "sample"], default="mean",
                   help="what a normal/uniform draw becomes: its mean (default; a VAE decodes mu), an extra "
                        "input, or fresh ONNX random draws each run; dropout is the identity in every mode")
    c.add_argument("--cells", choices=["onnx", "scan"], default="onnx",
                   help="a recurrence that is exactly the standard LSTM or GRU: ONNX's LSTM/GRU op (default) "
                        "or, like every other recurrence, a Scan of its own equations")
    c.add_argument("--seed", type=int, default=0, help="seed of the parameters when --params is not given")


def run(args: argparse.Namespace) -> int:
    from ..api import compile
    from ..training.checkpoint import load_params
    from . import export_onnx
    from .onnx_lower import OPSET

    model = compile(args.spec, target="interp", dtype=args.dtype, model=args.model)  # the IR only
    if args.params is not None:
        params = load_params(args.params, model)
    else:
        params = model.init_params(seed=args.seed)
        print(f"note: no --params: exporting freshly initialised parameters (seed {args.seed})")
    path = args.output or Path(Path(args.spec).stem + ".onnx")
    proto = export_onnx(model, params, path, with_loss=args.with_loss, random=args.random, cells=args.cells)
    g = proto.graph
    loops = [n.op_type for n in g.node if n.op_type in ("Scan", "LSTM", "GRU")]
    print(f"wrote {path}: ONNX opset {OPSET}, {len(g.node)} nodes" + (f" ({', '.join(loops)})" if loops else "")
          + f", {len(g.initializer)} parameters")
    print(f"  inputs:  {', '.join(_describe(v) for v in g.input)}")
    print(f"  outputs: {', '.join(_describe(v) for v in g.output)}")
    return 0


def _describe(v) -> str:
    from onnx import helper

    t = v.type.tensor_type
    dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in t.shape.dim]
    return f"{v.name}: {helper.tensor_dtype_to_np_dtype(t.elem_type).name}[{', '.join(dims)}]"
