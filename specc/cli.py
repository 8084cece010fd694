"""The ``specc`` command line.

In: argv.  Out: an exit code (0 ok, 1 a spec or input error, 2 a usage error)
and text on stdout/stderr.  Spec errors print as ``file:line:col: error: ...``
with the source line underlined; a Python traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .errors import SpeccError

EPILOG = {
    "check": "example:\n  specc check specs/lstm.nn",
    "ir": "examples:\n  specc ir specs/lstm.nn\n  specc ir specs/lstm.nn --json > lstm.ir.json\n"
          "  specc ir specs/lstm.nn --optimized\n  specc ir specs/lstm.nn --dump-after hoist_scan_invariants",
    "gradcheck": "examples:\n  specc gradcheck specs/lstm.nn\n  specc gradcheck specs/vae.nn --dim B=5 --inputs",
    "run": "examples:\n  specc run specs/lstm.nn                       # random inputs, T=B=4 unless --dim\n"
           "  specc run specs/lstm.nn --dim T=8 --dim B=16 -o out.npz\n"
           "  specc run specs/mlp.nn --data batch.npz --params params.npz\n"
           "  specc run specs/mlp.nn --data digits.csv --params mlp.ckpt.npz -o probs.npz",
    "predict": "examples:\n  specc predict specs/mlp.nn --params mlp.ckpt.npz --data digits.csv -o preds.csv\n"
               "  specc predict specs/lstm.nn --params lstm.ckpt.npz --data batch.npz -o preds.npz\n"
               "(classifiers: a column `label`, then the class probabilities; other models: their outputs)",
    "train": "examples:\n  specc train specs/lstm.nn --dataset digits\n"
             "  specc train specs/mlp.nn --data train.npz --epochs 5 --optimizer sgd --lr 0.1 -o mlp.ckpt.npz\n"
             "  specc train specs/lstm.nn --dataset digits --resume lstm.ckpt.npz --epochs 20\n"
             "  specc train specs/rnn.nn --dataset digits --grad-flow --plots plots/\n"
             "  specc train specs/mlp.nn --dataset digits --patience 5 --monitor val_accuracy --log-csv log.csv\n"
             "  (the best epoch's checkpoint is kept beside -o's: mlp.best.ckpt.npz)",
    "eval": "examples:\n  specc eval specs/lstm.nn --params lstm.ckpt.npz --dataset digits\n"
            "  specc eval specs/mlp.nn --params mlp.ckpt.npz --data test.npz --json",
    "emit": "examples:\n  specc emit specs/lstm.nn | less               # the Numba source of the forward pass\n"
            "  specc emit specs/lstm.nn --optimized -o kernels/   # writes kernels/classify.py\n"
            "  specc emit specs/mlp.nn --backward",
    "export": "examples:\n  specc export specs/lstm.nn --params lstm.ckpt.npz -o lstm.onnx\n"
              "  specc export specs/vae.nn --params vae.ckpt.npz --random input   # feed the noise yourself",
    "cache": "examples:\n  specc cache info\n  SPECC_CACHE_DIR=/tmp/k specc cache clear",
    "bench": "examples:\n  specc bench specs/lstm.nn --dim T=50 --dim B=32\n"
             "  SPECC_NUM_THREADS=1 specc bench specs/gru.nn --dim B=256 --repeats 50 --json\n"
             "  specc bench specs/lstm.nn --target cuda     # on a GPU\n"
             "(the peers, PyTorch and JAX, side by side: python benchmarks/suite.py)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="specc",
        description="specc: compile neural networks written as equations (.nn files).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  specc check specs/lstm.nn && specc run specs/lstm.nn\n"
               "run `specc COMMAND --help` for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"specc {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.add_argument("spec", help="the .nn file")
        c.add_argument("--model", help="which model, if the file defines several")
        c.add_argument("--dtype", choices=["float32", "float64"], help="float precision (default: the spec's)")
        c.add_argument("--debug", action="store_true", help="show Python tracebacks")
        return c

    command("check", "check a spec: names, types, shapes; print its inputs, outputs and parameters")
    ir = command("ir", "print the checked IR of a spec")
    ir.add_argument("--json", action="store_true", help="export the IR as JSON")
    ir.add_argument("--backward", action="store_true",
                    help="print the forward-and-backward IR and what each recurrence saves per step")
    ir.add_argument("--optimized", action="store_true", help="print the IR after the optimisation passes")
    ir.add_argument("--dump-after", metavar="PASS",
                    help="print the IR after the optimisation pass PASS (several: a,b; every pass: all)")
    ir.add_argument("--list-passes", action=ListPasses, help="list the optimisation passes in order and exit")
    gc = command("gradcheck", "compare every gradient with central finite differences on random inputs")
    gc.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                    help="size of a symbolic dim for the random inputs (repeatable; default 3)")
    gc.add_argument("--seed", type=int, default=0, help="seed for parameters, inputs and random ops")
    gc.add_argument("--tol", type=float, default=None, help="relative tolerance (default 1e-6 in float64)")
    gc.add_argument("--inputs", action="store_true", help="also check gradients with respect to float inputs")
    gc.add_argument("--target", choices=TARGET_CHOICES, default="interp",
                    help="where the analytic gradients run: interp (default), cpu or cuda")
    run = command("run", "run the forward pass (compiled kernels; --target interp: the reference interpreter) "
                         "and summarise the outputs")
    run.add_argument("--data", type=Path, help="inputs: .npz (one array per input), .npy or .csv")
    run.add_argument("--params", type=Path,
                     help="a checkpoint or an .npz file of parameters (default: initialised from --seed)")
    run.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                     help="size of a symbolic dim for random inputs (repeatable)")
    run.add_argument("--seed", type=int, default=0, help="seed for parameters and random inputs")
    run.add_argument("-o", "--output", type=Path, metavar="OUT",
                     help="save the outputs: .npz (one array per output) or .csv (one row per example)")
    run.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    run.add_argument("--target", choices=TARGET_CHOICES, default=None,
                     help="where to run: interp, cpu or cuda; default $SPECC_TARGET or cpu")
    run.add_argument("--allow-nonfinite", action="store_true", help="accept NaN or infinity in the inputs")
    bench = command("bench", "time the compiled forward pass and training step of a spec on random inputs")
    bench.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                       help="size of a symbolic dim (repeatable; default 32 each)")
    bench.add_argument("--repeats", type=int, default=20, help="timed calls after warm-up (default 20)")
    bench.add_argument("--seed", type=int, default=0, help="seed for parameters and inputs")
    bench.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    bench.add_argument("--target", choices=TARGET_CHOICES, default=None,
                       help="where to run: cpu, cuda or interp; default $SPECC_TARGET or cpu")
    add_train_commands(command)
    add_codegen_commands(sub, command)
    from .export.command import add_arguments as add_export_arguments

    add_export_arguments(command("export", "export a model to ONNX (its declared outputs; run it with onnxruntime)"))
    return p


def add_codegen_commands(sub, command) -> None:
    """``specc emit`` (the generated kernel source) and ``specc cache`` (the compiled-kernel cache)."""
    from .backends import backend

    emit = command("emit", "print (or write) the generated kernel source of a model's forward pass")
    emit.add_argument("--target", choices=[t for t in TARGET_CHOICES if backend(t).compiles], default="cpu",
                      help="code generator (default cpu: Numba; cuda: numba-cuda kernels)")
    emit.add_argument("--optimized", action="store_true", help="generate from the optimised IR, as training runs it")
    emit.add_argument("--backward", action="store_true", help="the forward-and-backward graph instead")
    emit.add_argument("-o", "--output", type=Path, metavar="DIR", help="write DIR/MODEL.py instead of printing")
    cache = sub.add_parser("cache", help="show or clear the cache of compiled kernels",
                           description="show or clear the cache of compiled kernels ($SPECC_CACHE_DIR, "
                                       "default: the platform's cache directory, ~/.cache/specc on Linux)",
                           epilog=EPILOG["cache"], formatter_class=argparse.RawDescriptionHelpFormatter)
    cache.add_argument("action", choices=["info", "clear"], help="info: where and how big; clear: delete it all")
    cache.add_argument("--debug", action="store_true", help="show Python tracebacks")


def add_train_commands(command) -> None:
    """``specc train`` and ``specc eval``: options override the spec's train block, which overrides defaults."""
    from .training.data import AUGMENTATIONS, DATASETS

    def data_options(c):
        src = c.add_mutually_exclusive_group(required=True)
        src.add_argument("--data", type=Path, help="a data file: .npz (one array per input), .npy or .csv")
        src.add_argument("--dataset", choices=DATASETS, help="a built-in dataset (its held-out test split for eval)")
        c.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
        c.add_argument("--allow-nonfinite", action="store_true", help="accept NaN or infinity in the inputs")

    t = command("train", "train a model; progress per epoch, checkpoints, a final table")
    data_options(t)
    t.add_argument("--epochs", type=int, help="number of epochs")
    t.add_argument("--batch", type=int, help="examples per batch")
    t.add_argument("--optimizer", choices=["adam", "sgd", "momentum", "adamw"])
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--schedule", choices=["constant", "step", "cosine", "plateau"],
                   help="learning-rate schedule (plateau: lr *= gamma when --monitor stops improving)")
    t.add_argument("--warmup", type=int, metavar="EPOCHS", help="rise linearly to lr over these first epochs")
    t.add_argument("--patience", type=int, metavar="EPOCHS",
                   help="stop early after this many epochs without improvement of --monitor")
    t.add_argument("--monitor", choices=["val_loss", "val_accuracy", "val_mse", "train_loss", "train_accuracy",
                                         "train_mse"],
                   help="the metric early stopping, the best checkpoint and plateau watch (default val_loss)")
    t.add_argument("--mode", choices=["auto", "min", "max"], help="is --monitor better lower or higher (default "
                                                                 "auto: higher for accuracy)")
    t.add_argument("--weight-decay", type=float, help="weight decay (decoupled for adamw)")
    t.add_argument("--clip", type=float, help="clip gradients to this global norm")
    t.add_argument("--seed", type=int, help="seed of the parameters, the shuffling and random ops")
    t.add_argument("--val-split", type=float, help="fraction of the training data held out for validation")
    t.add_argument("--augment", choices=AUGMENTATIONS, help="shift: move each training image by up to 1 pixel")
    t.add_argument("--target", choices=TARGET_CHOICES, default=None,
                   help="where to run: cpu (compiled kernels), cuda (GPU kernels) or interp (reference "
                        "interpreter); default $SPECC_TARGET or cpu")
    t.add_argument("-o", "--output", type=Path, metavar="CKPT",
                   help="checkpoint file, written every epoch (default: SPEC.ckpt.npz here); the best epoch's "
                        "is kept beside it (SPEC.best.ckpt.npz)")
    t.add_argument("--resume", type=Path, metavar="CKPT", help="continue the run saved in this checkpoint")
    t.add_argument("--format", choices=["npz", "safetensors"],
                   help="checkpoint format (default: from -o's extension, else npz; safetensors needs "
                        "pip install 'specc[safetensors]')")
    t.add_argument("--log-csv", type=Path, metavar="FILE", help="write a CSV row per epoch (loss, metrics, lr, time)")
    t.add_argument("--tensorboard", type=Path, metavar="DIR",
                   help="write TensorBoard event files here (needs: pip install 'specc[tensorboard]')")
    t.add_argument("--grad-flow", action="store_true",
                   help="report ||dL/dS_t|| per time step for each recurrent state, before and after training")
    t.add_argument("--plots", type=Path, metavar="DIR", help="write loss/metric curves (and more) as PNG here")
    t.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    t.add_argument("--workers", type=int, metavar="N",
                   help="train data-parallel on N MPI ranks (runs mpiexec -n N; needs the mpi extra)")
    t.add_argument("--hosts", metavar="A,B", help="with --workers: the machines to start ranks on")
    t.add_argument("--hostfile", type=Path, metavar="FILE", help="with --workers: mpiexec's host file")
    pr = command("predict", "predictions of trained parameters on a data file: class labels and "
                            "probabilities, or the outputs")
    pr.add_argument("--params", type=Path, required=True, metavar="CKPT",
                    help="a checkpoint, an .npz or .safetensors file of parameters")
    pr.add_argument("--data", type=Path, required=True, help="inputs: .npz, .npy or .csv (labels not needed)")
    pr.add_argument("-o", "--output", type=Path, metavar="OUT",
                    help="write the predictions: .csv (a row per example, with a header) or .npz")
    pr.add_argument("--batch", type=int, default=256, help="examples per forward pass (default 256)")
    pr.add_argument("--seed", type=int, default=0, help="seed of random ops (a VAE's noise)")
    pr.add_argument("--target", choices=TARGET_CHOICES, default=None,
                    help="where to run: cpu, cuda or interp; default $SPECC_TARGET or cpu")
    e = command("eval", "loss and metric of trained parameters on held-out data")
    data_options(e)
    e.add_argument("--params", type=Path, required=True, metavar="CKPT", help="a checkpoint or .npz of parameters")
    e.add_argument("--batch", type=int, default=256, help="examples per forward pass (default 256)")
    e.add_argument("--seed", type=int, default=0, help="seed of random ops (a VAE's noise)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed: --workers starts it again on N ranks
    if isinstance(getattr(args, "spec", None), str):
        args.spec = Path(args.spec)  # a path on the command line is always a path, never spec text
    try:
        if args.command in COMPUTING and os.environ.get("SPECC_MALLOC_TUNING") != "0":
            from .backends.cpu.runtime import tune_allocator

            tune_allocator(force=True)  # this process is specc's own: keep freed kernel memory for reuse
        return COMMANDS[args.command](args)
    except SpeccError as e:
        if args.debug:
            traceback.print_exc()
        print(e.render(), file=sys.stderr)
        return _stop_ranks(1)
    except (OSError, ValueError) as e:
        if args.debug:
            raise
        print(f"specc: error: {e}", file=sys.stderr)
        return _stop_ranks(1)
    except Exception as e:  # a bug in specc: one line, not a traceback (the fuzz tests look for these)
        if args.debug:
            raise
        print(f"specc: internal error: {type(e).__name__}: {e}\n"
              f"  this is a bug in specc; run again with --debug for the traceback and report it", file=sys.stderr)
        return _stop_ranks(3)


def _stop_ranks(code: int) -> int:
    """Under mpiexec the other ranks may be waiting for this one: an error stops them all."""
    from .training.distributed import abort_if_parallel

    abort_if_parallel(code)
    return code


TARGET_CHOICES = ["cpu", "cuda", "interp"]
COMPUTING = {"run", "train", "eval", "predict", "bench", "gradcheck"}  # commands that call kernels


def _compile(args):
    from .api import compile

    model = compile(args.spec, target=getattr(args, "target", None), dtype=args.dtype, model=args.model)
    model.allow_nonfinite = getattr(args, "allow_nonfinite", False)
    return model


def cmd_check(args) -> int:
    from .api import check_layers, load_source

    model = _compile(args)
    check_layers(load_source(args.spec))
    prog = model.program
    print(f"{args.spec}: ok: model {prog.name} ({model.dtype})")
    print("  inputs:")
    for name, (dt, shape) in model.inputs.items():
        print(f"    {name}: {dt}{_shape(shape)}")
    print("  outputs:")
    for name, (dt, shape) in model.outputs.items():
        print(f"    {name}: {dt}{_shape(shape)}")
    shapes = model.param_shapes
    print(f"  parameters: {len(shapes)} tensors, {model.n_params:,} numbers")
    width = max((len(n) for n in shapes), default=0)
    for p in prog.params:
        print(f"    {p.name:<{width}}  {_shape(shapes[p.name])}  {p.init}" + ("  (state, not trained)" if p.state else ""))
    scans = [e for e in prog.graph.walk() if e.op == "scan"]
    if scans:
        print(f"  recurrences: {len(scans)}")
        for e in scans:
            states = ", ".join(f"{n} (lag {k})" if k else f"{n} (per step)" for n, k in e.params["states"])
            direction = "reversed" if e.params["reverse"] else "forward"
            print(f"    {e.loc}: over {e.params['length']} steps, {direction}; states {states}")
    cfg = model.train_config()
    print(f"  training: {cfg.optimizer}, lr {cfg.lr:g}, {cfg.epochs} epochs, batch {cfg.batch}")
    return 0


def cmd_ir(args) -> int:
    model = _compile(args)
    if args.backward:
        from .ir.printer import format_program

        gp = model.grad_program()
        names = model.program.output_names + tuple(f"d_{n}" for n in gp.wrt)
        prog = optimized(args, dataclasses.replace(model.program, graph=gp.graph, output_names=names))
        if prog is None:
            return 0
        print(format_program(prog))
        for line in saved_per_step(model.program):
            print(line)
        return 0
    prog = optimized(args, model.program)
    if prog is None:
        return 0
    if args.json:
        from .ir.serialize import program_to_json

        print(program_to_json(prog))
    else:
        from .ir.printer import format_program

        print(format_program(prog))
    return 0


def optimized(args, prog):
    """The program after the optimisation passes if asked (None once --dump-after has printed)."""
    if not (args.optimized or args.dump_after):
        return prog
    from .transforms.passes import optimize_program
    from .ir.printer import format_program

    def dump(name, p):
        print(f"# after {name}\n{format_program(p)}")

    if args.dump_after:
        optimize_program(prog, dump_after=args.dump_after, dump=dump)
        return None
    return optimize_program(prog)


class ListPasses(argparse.Action):
    """``--list-passes``: print the pipeline and exit (no spec needed)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from .transforms.passes import PIPELINE

        width = max(len(p.name) for p in PIPELINE)
        for p in PIPELINE:
            print(f"{p.name:<{width}}  {p.description}")
        parser.exit()


def saved_per_step(prog) -> list[str]:
    """What the backward pass of each recurrence keeps from the forward pass."""
    lines = []
    for e in prog.graph.walk():
        if e.op != "scan":
            continue
        body = e.params["body"]
        kept = ", ".join(f"{n}: {o.type.dtype}{_shape(o.shape[1:])}"
                         for (n, _k), o in zip(e.params["states"], e.outputs))
        lines.append(f"# recurrence at {e.loc}: saves per step only its states ({kept}); "
                     f"the backward step recomputes the other {len(body.eqns)} equations of the step")
    return lines


def cmd_gradcheck(args) -> int:
    from .api import compile
    from .errors import SpeccError
    from .transforms.gradcheck import gradcheck

    dtype = args.dtype or "float64"
    model = compile(args.spec, target=args.target, dtype=dtype, model=args.model)
    tol = args.tol if args.tol is not None else (1e-6 if dtype == "float64" else 2e-2)
    dims = {"T": 3, "B": 3, **_parse_dims(args.dim)}
    inputs = random_inputs(model, dims, args.seed)
    arrays, bound = model.bind_inputs(inputs)
    rng = np.random.default_rng(args.seed + 7)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
              for k, v in model.init_params(args.seed).items()}  # away from zero biases
    eps = 1e-6 if dtype == "float64" else 1e-2
    names = list(model.inputs) + [p.name for p in model.program.params]

    def grad_fn(values):  # the analytic gradients through the same path as users (checks included)
        kw = dict(zip(names, values))
        params_now = {p.name: kw.pop(p.name) for p in model.program.params}
        loss, grads = model.value_and_grad(params_now, seed=args.seed, wrt_inputs=args.inputs, **kw)
        return loss, grads

    checks = gradcheck(model.program, params, arrays, bound, eps=eps, seed=args.seed, wrt_inputs=args.inputs,
                       grad_fn=grad_fn)
    if not checks:
        raise SpeccError(f"model '{model.name}' has nothing to differentiate: no parameters"
                         + ("" if args.inputs else " (and --inputs not given)"),
                         hint="add a param, or pass --inputs to check the gradients of its float inputs")
    width = max(len(c.name) for c in checks)
    worst: dict[str, object] = {}
    for c in checks:
        if c.name not in worst or c.error > worst[c.name].error:
            worst[c.name] = c
    bad = [c for c in worst.values() if not c.ok(tol)]
    for c in worst.values():
        mark = "ok " if c.ok(tol) else "BAD"
        print(f"  {mark} {c.name:<{width}}  analytic {c.analytic: .6e}  numeric {c.numeric: .6e}  rel.err {c.error:.1e}")
    sizes = ", ".join(f"{k}={v}" for k, v in sorted(bound.items()))
    print(f"{len(worst) - len(bad)}/{len(worst)} gradients agree with central differences "
          f"({dtype}, tol {tol:g}, {sizes})")
    if bad:
        c = bad[0]
        raise SpeccError(f"the gradient of '{c.name}' disagrees with finite differences "
                         f"(analytic {c.analytic:.6e}, numeric {c.numeric:.6e})", c.loc)
    return 0


def cmd_run(args) -> int:
    import time

    from .errors import InputError

    if args.output:
        from .training.predict import output_format

        output_format(args.output)  # an unknown extension fails before any work
    model = _compile(args)
    if args.params:
        from .training.checkpoint import load_params

        params = load_params(args.params, model)
    else:
        params = model.init_params(args.seed)
    if args.data:
        from .training.data import load

        inputs = dict(load(args.data, model, required=False).arrays)
    else:
        inputs = random_inputs(model, _parse_dims(args.dim), args.seed)
        sizes = ", ".join(f"{k}={v}" for k, v in sorted(model.bind_inputs(inputs)[1].items()))
        print(f"random inputs ({sizes or 'no symbolic dims'}); pass --data FILE.npz for real ones")
    if not inputs:
        raise InputError(f"{args.data} holds none of the model's inputs ({', '.join(model.inputs)})")
    t0 = time.perf_counter()
    outs = model.forward(params, **inputs)
    elapsed = time.perf_counter() - t0
    for name, a in outs.items():
        a = np.asarray(a)
        stats = f"mean {a.mean():.4g}  std {a.std():.4g}  min {a.min():.4g}  max {a.max():.4g}" if a.size else ""
        print(f"  {name}: {a.dtype}{list(a.shape)}  {stats}")
    where = model.backend.label
    print(f"forward: {elapsed * 1e3:.1f} ms ({where}, first call includes compiling)"
          if model.backend.compiles else f"forward: {elapsed * 1e3:.1f} ms ({where})")
    if args.output:
        from .training.predict import batch_axis_of_outputs, write_outputs

        written = write_outputs(args.output, outs, batch_axis_of_outputs(model))
        print(f"saved {', '.join(written)} to {args.output}")
    if args.json:
        summary = {"outputs": {n: list(np.shape(a)) for n, a in outs.items()}, "time_s": elapsed}
        if "loss" in outs:
            summary["loss"] = float(outs["loss"])
        print(json.dumps(summary))
    return 0


def random_inputs(model, dims: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Inputs of the declared shapes: floats ~ N(0, 1); integer labels in [0, classes)."""
    rng = np.random.default_rng(seed)
    env = {**model.program.dims, **dims}
    out = {}
    classes = model.label_classes
    for info in model.program.inputs:
        v = info.value
        for d in v.shape:
            for s in d.symbols:
                env.setdefault(s, 4)
        shape = tuple(d.evaluate(env) for d in v.shape)
        if v.type.is_float:
            out[info.name] = rng.standard_normal(shape).astype(np.float64)
        else:
            out[info.name] = rng.integers(0, classes.get(info.name, 2), shape)
    return out


def _parse_dims(items: list[str]) -> dict[str, int]:
    out = {}
    for it in items:
        name, _, value = it.partition("=")
        if not name or not value.isdigit() or int(value) <= 0:
            raise ValueError(f"--dim expects NAME=N with N > 0, got '{it}'")
        out[name] = int(value)
    return out


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def cmd_train(args) -> int:
    from .api import compile
    from .training.train import Trainer

    if args.workers is not None or args.hosts or args.hostfile:
        from .training.launch import launch

        return launch(args.workers, args.argv, hosts=args.hosts, hostfile=args.hostfile)
    model = compile(args.spec, target=args.target, dtype=args.dtype, model=args.model)
    model.allow_nonfinite = args.allow_nonfinite
    out = args.output or Path(f"{Path(args.spec).stem}.ckpt.{args.format or 'npz'}")
    if args.format and out.suffix != f".{args.format}":
        raise ValueError(f"--format {args.format} writes a .{args.format} file, but -o is {out}")
    overrides = {"epochs": args.epochs, "batch": args.batch, "optimizer": args.optimizer, "lr": args.lr,
                 "schedule": args.schedule, "weight_decay": args.weight_decay, "clip": args.clip,
                 "seed": args.seed, "val_split": args.val_split, "augment": args.augment, "warmup": args.warmup,
                 "patience": args.patience, "monitor": args.monitor, "mode": args.mode}
    trainer = Trainer(model, args.dataset or args.data, checkpoint=out, resume=args.resume,
                      progress=not args.quiet, plots=args.plots, grad_flow=args.grad_flow,
                      log_csv=args.log_csv, tensorboard=args.tensorboard, **overrides)
    try:
        history = trainer.fit()
    except KeyboardInterrupt:
        if trainer.world.is_root:
            print(f"interrupted; the last finished epoch is in {out} (continue with --resume {out})", file=sys.stderr)
        return 130
    if args.json and trainer.world.is_root:
        print(json.dumps({k: v for k, v in history.to_dict().items() if k != "config"}))
    return 0


def cmd_eval(args) -> int:
    import time

    from .training.checkpoint import load_params
    from .training.data import load_any
    from .training.distributed import world
    from .training.metrics import choose_metric
    from .training.train import blas_threads

    model = _compile(args)
    params = load_params(args.params, model)
    splits = load_any(model, data=args.data, dataset_name=args.dataset)
    data = splits.test or splits.train
    metric = choose_metric(model)
    t0 = time.perf_counter()
    with blas_threads():  # as in training, so the numbers match the training run's to the bit
        result = world().evaluate(model, params, data, metric, batch=args.batch, seed=args.seed)  # sharded under MPI
    elapsed = time.perf_counter() - t0
    if not world().is_root:
        return 0
    shown = f"{metric.name} {metric.format(result[metric.name])}, " if metric else ""
    print(f"{data.name}: {len(data)} examples: {shown}loss {result['loss']:.4f} ({elapsed:.2f} s)")
    if args.json:
        print(json.dumps({**result, "examples": len(data), "data": data.name, "time_s": elapsed}))
    return 0


def cmd_predict(args) -> int:
    from .training.checkpoint import load_params
    from .training.data import load
    from .training.predict import output_format, predict, write_outputs
    from .training.train import blas_threads

    if args.output:
        output_format(args.output)
    model = _compile(args)
    params = load_params(args.params, model)
    data = load(args.data, model, required=False)
    with blas_threads():
        preds = predict(model, params, data, batch=args.batch, seed=args.seed)
    shown = {k: v for k, v in preds.arrays.items()}
    print(f"{data.name}: {len(preds)} examples ({preds.kind})")
    if "label" in shown:
        counts = np.bincount(shown["label"])
        print("  predicted classes: " + ", ".join(f"{c}: {n}" for c, n in enumerate(counts) if n))
    for name, a in shown.items():
        print(f"  {name}: {a.dtype}{list(a.shape)}")
    if args.output:
        write_outputs(args.output, preds.arrays)
        print(f"saved {', '.join(preds.arrays)} to {args.output}")
    return 0


def cmd_emit(args) -> int:
    from .api import compile
    from .backends import generator

    model = compile(args.spec, target="interp", dtype=args.dtype, model=args.model)  # the IR only: no GPU needed
    graph = model.grad_program().graph if args.backward else model.program.graph
    if args.optimized:
        from .transforms.passes import optimize

        graph = optimize(graph)
    name = f"{model.name}_grad" if args.backward else model.name
    module = generator(args.target).generate(graph, name)
    if args.output is None:
        print(module.source, end="")
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{module.name}.py"
    path.write_text(module.source)
    threads = ("threads",) if module.threads else ()
    print(f"wrote {path}: {module.entry}({', '.join(module.inputs + module.dims + threads)})")
    return 0


def cmd_export(args) -> int:
    from .export.command import run

    return run(args)


def cmd_cache(args) -> int:
    from .runtime import cache_dir, cache_info, clear_cache

    if args.action == "clear":
        print(f"removed {clear_cache()} files from {cache_dir()}")
    else:
        info = cache_info()
        print(f"{info['directory']}: {info['modules']} kernel modules, {info['files']} files, "
              f"{info['bytes'] / 1e6:.1f} MB")
    return 0


def cmd_bench(args) -> int:
    """First call (compile, or load from the cache) and median time of forward and training step."""
    import json
    import statistics
    import time

    from .backends.cpu.runtime import kernel_threads

    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    model = _compile(args)
    free = _free_dims(model)
    asked = _parse_dims(args.dim)
    unknown = sorted(set(asked) - free)
    if unknown:
        raise ValueError(f"--dim {unknown[0]}: model {model.name} has no free dim of that name "
                         f"(its inputs' dims: {', '.join(sorted(free)) or 'none'})")
    dims = {s: 32 for s in free} | asked
    arrays, bound = model.bind_inputs(random_inputs(model, dims, args.seed))
    params = model.init_params(args.seed)
    calls = {"forward": lambda: model.forward(params, **arrays),
             "train step": lambda: model.value_and_grad(params, **arrays)}
    sizes = ", ".join(f"{k}={v}" for k, v in sorted(bound.items()))
    print(f"{model.name} on {model.target} ({model.dtype}, {sizes}, {kernel_threads()} threads), "
          f"median of {args.repeats} after 3 warm-up calls")
    print(f"  {'':<12} {'first call':>11} {'median':>10} {'min':>10}")
    rows = {}
    for name, call in calls.items():
        t = time.perf_counter()
        call()
        first = time.perf_counter() - t
        for _ in range(3):
            call()
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        med, low = statistics.median(times), min(times)
        rows[name] = {"first_call_s": first, "median_ms": med * 1e3, "min_ms": low * 1e3}
        print(f"  {name:<12} {first:>9.2f} s {med * 1e3:>7.3f} ms {low * 1e3:>7.3f} ms")
    if args.json:
        print(json.dumps({"model": model.name, "target": model.target, "dtype": model.dtype, "dims": bound,
                          "threads": kernel_threads(), "repeats": args.repeats, **rows}))
    return 0


def _free_dims(model) -> set[str]:
    """The symbolic dims of the inputs that the spec leaves free."""
    fixed = set(model.program.dims)
    return {s for info in model.program.inputs for d in info.value.shape for s in d.symbols} - fixed


COMMANDS = {"check": cmd_check, "ir": cmd_ir, "run": cmd_run, "gradcheck": cmd_gradcheck,
            "train": cmd_train, "eval": cmd_eval, "predict": cmd_predict}
COMMANDS.update({"emit": cmd_emit, "cache": cmd_cache, "bench": cmd_bench, "export": cmd_export})

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
