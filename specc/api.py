"""The Python API: ``specc.compile`` and the :class:`Model` it returns.

In: a .nn file path or source text, a target and a float dtype.
Out: a Model holding the checked IR, that initialises parameters, checks
run-time inputs against the declared symbolic shapes, and runs the forward
pass (through the reference interpreter until a compiled backend is chosen).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .frontend import elaborate
from .frontend.context import recursion_room
from .frontend.bounds import check_subscripts, symbolic_subscripts
from .training.config import TrainConfig, train_config
from .errors import InputError, ModelError, Source, Span, SpeccError, did_you_mean, read_source
from .training.initializers import initialize, param_rng
from .backends import Backend, backend
from .backends.interp import interpret
from .limits import check_memory, check_param_sizes, checked_values, initialise, too_deep
from .ir.core import NUMPY_DTYPES, Graph, Program, Value, prune
from .ir.verify import verify_program

TARGETS = ("cpu", "cuda", "interp")
DTYPE_NAMES = {"float32": "f32", "float64": "f64", "f32": "f32", "f64": "f64"}


def load_source(spec: str | Path) -> Source:
    """A Path is always a file (the command line passes one); a str is source text when it holds
    a newline or a ``{``, else a file name (``specc.compile("specs/mlp.nn")``)."""
    if isinstance(spec, Path) or (isinstance(spec, str) and "\n" not in spec and "{" not in spec):
        return read_source(spec)
    return Source("<string>", str(spec))


def build_program(source: Source, dtype: str | None = None, model: str | None = None) -> Program:
    mod = elaborate.load_module(source)
    if not mod.models:
        raise ModelError(f"{source.name} defines no model", _file_start(source),
                         hint="add `model name(x: f32[B, 8], ...) { ... loss = ... }`")
    if model is None:
        if len(mod.models) > 1:
            names = ", ".join(m.name for m in mod.models)
            raise ModelError(f"{source.name} defines several models ({names}); choose one", mod.models[1].span,
                             notes=[f"the first is at {mod.models[0].span}"],
                             hint="pass model=NAME (--model NAME on the command line)")
        m = mod.models[0]
    else:
        found = [m for m in mod.models if m.name == model]
        if not found:
            raise ModelError(f"no model named '{model}' in {source.name}", _file_start(source),
                             hint=did_you_mean(model, [m.name for m in mod.models]))
        m = found[0]
    try:
        with recursion_room():
            prog = elaborate.Elaborator(mod, dtype).model(m)
    except RecursionError:
        raise too_deep(m.name, m.span) from None
    verify_program(prog)
    check_param_sizes(prog.params, source)
    return prog


def check_layers(source: Source) -> None:
    """Elaborate every layer of the file itself on symbolic sizes (catches errors in unused layers)."""
    with recursion_room():
        elaborate.check_layers(source)


class Model:
    def __init__(self, program: Program, target: str = "cpu", source: Source | None = None):
        self.program = program
        self.target = target
        self.source = source
        self.dtype = "float64" if program.float_dtype == "f64" else "float32"
        self.allow_nonfinite = False  # True: inputs may hold NaN or infinity (--allow-nonfinite)
        self._grad_programs: dict[bool, Any] = {}
        self._compiled: dict[tuple, tuple[list[int], Any]] = {}

    # -- description -----------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """What this model's target can do (:mod:`specc.backends`)."""
        return backend(self.target)

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def inputs(self) -> dict[str, tuple[str, tuple]]:
        return {i.name: (i.value.dtype, _sym_shape(i.value)) for i in self.program.inputs}

    @property
    def outputs(self) -> dict[str, tuple[str, tuple]]:
        return {n: (v.dtype, _sym_shape(v)) for n, v in zip(self.program.output_names, self.program.graph.outputs)}

    @functools.cached_property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {p.name: tuple(d.value for d in p.value.shape) for p in self.program.params}

    @property
    def n_params(self) -> int:
        return int(sum(np.prod(s) for s in self.param_shapes.values()))

    @functools.cached_property
    def label_classes(self) -> dict[str, int]:
        """Integer inputs used as class ids (cross_entropy labels, embedding ids) and their count."""
        out = {}
        by_uid = {i.value.uid: i.name for i in self.program.inputs}
        for e in self.program.graph.walk():
            pairs = {"cross_entropy": (1, lambda e: e.inputs[0].shape[-1]),
                     "take": (1, lambda e: e.inputs[0].shape[0])}.get(e.op)
            if pairs and e.inputs[pairs[0]].uid in by_uid:
                n = pairs[1](e)
                if n.is_const:
                    out[by_uid[e.inputs[pairs[0]].uid]] = n.value
        return out

    def train_config(self, **overrides: Any) -> TrainConfig:
        return train_config(self.program.train, overrides)

    # -- parameters and inputs -------------------------------------------------------------
    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """The parameters, initialised; too large for memory, or a failing initialiser: a located error."""
        params, source = self.program.params, self.source
        check_memory(params, source)
        out = {}
        for p in params:
            dt = NUMPY_DTYPES[p.value.dtype]
            out[p.name] = initialise(p, params, source, functools.partial(
                initialize, p.init, self.param_shapes[p.name], dt, param_rng(seed, p.name)))
        return out

    def bind_inputs(self, inputs: Mapping[str, Any], *, required: bool = True
                    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Check inputs against their declared dtypes and symbolic shapes; returns arrays and dim sizes."""
        dims: dict[str, int] = dict(self.program.dims)
        origin: dict[str, str] = {}
        arrays: dict[str, np.ndarray] = {}
        unknown = set(inputs) - {i.name for i in self.program.inputs}
        if unknown:
            raise InputError(f"model '{self.name}' has no input '{sorted(unknown)[0]}'",
                             hint=f"its inputs are {', '.join(self.inputs)}")
        for info in self.program.inputs:
            if info.name not in inputs:
                if required:
                    raise InputError(f"missing input '{info.name}': expected {_describe(info.value)}")
                continue
            arrays[info.name] = _coerce(info.name, inputs[info.name], info.value, self.allow_nonfinite)
            _bind_shape(info.name, arrays[info.name], info.value, dims, origin)
            n = self.label_classes.get(info.name)
            a = arrays[info.name]
            if n is not None and a.size and (a.min() < 0 or a.max() >= n):
                bad = a.min() if a.min() < 0 else a.max()
                raise InputError(f"input '{info.name}' holds class id {bad}, outside [0, {n})",
                                 hint=f"'{info.name}' indexes {n} classes")
        check_subscripts(self._symbolic_subscripts, dims)
        return arrays, dims

    @functools.cached_property
    def _symbolic_subscripts(self):
        return symbolic_subscripts(self.program)

    def check_params(self, params: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = []
        for p in self.program.params:
            if p.name not in params:
                raise InputError(f"missing parameter '{p.name}' (shape {self.param_shapes[p.name]})")
            a = np.asarray(params[p.name])
            if a.shape != self.param_shapes[p.name]:
                raise InputError(f"parameter '{p.name}' has shape {a.shape}, expected {self.param_shapes[p.name]}")
            out.append(np.asarray(a, dtype=NUMPY_DTYPES[p.value.dtype], order="C"))
        return out

    # -- running ---------------------------------------------------------------------------
    def forward(self, params: Mapping[str, np.ndarray], *, seed: int = 0, training: bool = False,
                **inputs: Any) -> dict[str, np.ndarray]:
        """Run the model; outputs that need a missing input (usually the loss without labels) are skipped."""
        arrays, dims = self.bind_inputs(inputs, required=False)
        missing = [i.value for i in self.program.inputs if i.name not in arrays]
        wanted = [n for n, v in zip(self.program.output_names, self.program.graph.outputs)
                  if not _depends_on(self.program, v, missing)]
        if not wanted:
            raise InputError(f"missing input '{self.program.inputs[0].name if not arrays else missing[0].name}'"
                             f": every output needs it")
        args = [arrays.get(i.name) for i in self.program.inputs]
        graph = prune(self.program.graph, tuple(self.program.output(n) for n in wanted))
        outs = self._run(("forward", tuple(wanted)), graph, args + self.check_params(params), dims, seed, training)
        return dict(zip(wanted, outs))

    def _run(self, key: tuple, graph: Graph, args: list, dims: Mapping[str, int], seed: int,
             training: bool) -> list[np.ndarray]:
        """Run a graph on this model's target: the reference interpreter, or optimised and compiled code."""
        if not self.backend.compiles:
            return interpret(graph, args, dims, seed=seed, training=training)
        keep, kernel = self._kernel(key, graph)
        return kernel([args[i] for i in keep], dims, seed=seed, training=training)

    def _kernel(self, key: tuple, graph: Graph) -> tuple[list[int], Any]:
        """Optimise and compile a graph once per model (inputs it no longer reads are dropped)."""
        if key not in self._compiled:
            from .transforms import passes
            from .runtime import compile_graph

            opt = passes.optimize(graph)
            used = _used_inputs(opt)
            keep = [i for i, v in enumerate(opt.inputs) if v.uid in used]
            sub = Graph(tuple(opt.inputs[i] for i in keep), opt.eqns, opt.outputs)
            self._compiled[key] = (keep, compile_graph(sub, target=self.target, name=f"{self.name}_{key[0]}"))
        return self._compiled[key]

    def kernel(self, kind: str = "grad"):
        """The compiled kernel of the forward or the forward-and-backward graph (compiled on first use)."""
        if kind == "forward":
            return self._kernel(("forward", self.program.output_names), self.program.graph)[1]
        return self._kernel(("grad", False), self.grad_program().graph)[1]

    def pending_kernels(self) -> list[str]:
        """The kernels a training run calls (``kernel(kind)``) that are not compiled yet in this process."""
        if not self.backend.compiles:
            return []
        keys = {"grad": ("grad", False), "forward": ("forward", tuple(self.program.output_names))}
        return [kind for kind, key in keys.items() if key not in self._compiled]

    def grad_program(self, wrt_inputs: bool = False):
        """The forward-and-backward IR (built once per model)."""
        from .transforms.autodiff import value_and_grad

        key = bool(wrt_inputs)
        if key not in self._grad_programs:
            self._grad_programs[key] = value_and_grad(self.program, wrt_inputs=key)
        return self._grad_programs[key]

    def value_and_grad(self, params: Mapping[str, np.ndarray], *, seed: int = 0, training: bool = True,
                       wrt_inputs: bool = False, states_out: dict[str, np.ndarray] | None = None,
                       **inputs: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The loss and its gradient with respect to every parameter (and float input, if asked).

        Random ops (dropout, normal) draw from ``seed``; the backward pass replays the same draws.
        ``states_out``, if given, receives each ``state``'s new value (``update m = ...``, e.g. batch
        norm's running mean); a state's own gradient is zero while training.
        """
        arrays, dims = self.bind_inputs(inputs)
        gp = self.grad_program(wrt_inputs)
        args = [arrays[i.name] for i in self.program.inputs] + self.check_params(params)
        outs = self._run(("grad", bool(wrt_inputs)), gp.graph, args, dims, seed, training)
        if states_out is not None:
            states_out.update((name, outs[i]) for name, i in self.program.state_updates)
        return outs[0], dict(zip(gp.wrt, outs[gp.n_forward:]))

    def export_onnx(self, params: Mapping[str, np.ndarray], path: str | Path, *, with_loss: bool = False,
                    random: str = "mean", cells: str = "onnx") -> Any:
        """Write this model with ``params`` as an ONNX file; returns the ``onnx.ModelProto`` (docs/export.md)."""
        from .export import export_onnx

        return export_onnx(self, params, path, with_loss=with_loss, random=random, cells=cells)

    def __repr__(self) -> str:
        from .display import model_repr

        return model_repr(self)

    def _repr_html_(self) -> str:
        """Jupyter: a table of the inputs, outputs, parameters and recurrences."""
        from .display import model_html

        return model_html(self)


def compile(spec: str | Path, target: str | None = None, dtype: str | None = None,
            model: str | None = None) -> Model:
    """Compile a .nn spec (a path or source text) into a :class:`Model`.

    ``target``: "cpu" (optimised, Numba-compiled kernels, built on first use and cached on
    disk), "cuda" (the same for an NVIDIA GPU through numba-cuda; see docs/cuda.md) or "interp"
    (the NumPy reference interpreter); default ``$SPECC_TARGET``, else "cpu".
    """
    target = target or os.environ.get("SPECC_TARGET", "cpu")
    if target not in TARGETS:
        raise SpeccError(f"unknown target '{target}'", hint=f"choose one of {', '.join(TARGETS)}")
    if dtype is not None and dtype not in DTYPE_NAMES:
        raise SpeccError(f"unknown dtype '{dtype}'", hint="choose float32 or float64")
    backend(target).require()  # fail now, clearly: cuda without numba-cuda or a GPU (or the simulator)
    source = load_source(spec)
    prog = build_program(source, DTYPE_NAMES.get(dtype) if dtype else None, model)
    compiled = Model(prog, target, source)
    compiled.train_config()  # validate the `train { }` block now: a bad setting is a compile error at its item
    return compiled


# ---- helpers -----------------------------------------------------------------------------
def _file_start(source: Source) -> Span:
    first = source.line(1)
    return Span(source, 1, 1, 1, max(len(first), 1) + 1)


def _sym_shape(v: Value) -> tuple:
    return tuple(d.value if d.is_const else str(d) for d in v.shape)


def _describe(v: Value) -> str:
    return str(v.type)


def _coerce(name: str, x: Any, v: Value, allow_nonfinite: bool = False) -> np.ndarray:
    """The input as the declared dtype, its values checked before the cast (which would wrap or overflow)."""
    a = np.asarray(x)
    if v.type.is_float:
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise InputError(f"input '{name}' has dtype {a.dtype}, expected {v.type}")
    elif not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"input '{name}' has dtype {a.dtype}, expected integers {v.type}",
                         hint="class labels must be integer ids")
    return checked_values(name, a, v, allow_nonfinite)


def _bind_shape(name: str, a: np.ndarray, v: Value, dims: dict[str, int], origin: dict[str, str]) -> None:
    def fail(detail: str) -> InputError:
        bound = ", ".join(f"{k} = {dims[k]} (from {origin[k]})" for k in sorted(origin) if k in _syms(v))
        return InputError(f"input '{name}' has shape {tuple(a.shape)}, expected {v.type}: {detail}",
                          notes=[f"already bound: {bound}"] if bound else [])

    if a.ndim != len(v.shape):
        raise fail(f"rank {a.ndim} instead of {len(v.shape)}")
    later = []
    for axis, (d, n) in enumerate(zip(v.shape, a.shape)):
        sym = d.as_symbol()
        if d.is_const:
            if d.value != n:
                raise fail(f"axis {axis} is {n}, not {d.value}")
        elif sym is not None and sym not in dims:
            if n == 0:
                raise fail(f"axis {axis} ({sym}) is 0; every size must be at least 1")
            dims[sym], origin[sym] = n, f"input '{name}' axis {axis}"
        elif sym is not None:
            if dims[sym] != n:
                raise fail(f"axis {axis} is {n}, but {sym} = {dims[sym]}")
        else:
            later.append((axis, d, n))
    for axis, d, n in later:
        try:
            want = d.evaluate(dims)
        except KeyError as e:
            raise fail(f"cannot bind {e.args[0]} from axis {axis} ({d})") from None
        if want != n:
            raise fail(f"axis {axis} is {n}, but {d} = {want}")


def _syms(v: Value) -> set[str]:
    return {s for d in v.shape for s in d.symbols}


def _depends_on(prog: Program, out: Value, missing: list[Value]) -> bool:
    if not missing:
        return False
    tainted = {m.uid for m in missing}
    for eqn in prog.graph.eqns:
        if any(i.uid in tainted for i in eqn.inputs):
            tainted.update(o.uid for o in eqn.outputs)
    return out.uid in tainted


def _used_inputs(graph: Graph) -> set[int]:
    used = {v.uid for e in graph.eqns for v in e.inputs} | {v.uid for v in graph.outputs}
    return used
