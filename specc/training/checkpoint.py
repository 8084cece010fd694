"""Checkpoints: a training run's whole state in one ``.npz`` file.

In: parameters, optimizer state and what the run needs to continue (its
training configuration, the epoch and step reached, the seed that every
random stream is derived from, the history so far).
Out: a file written atomically (a temporary file in the same directory, then
``os.replace``), so a crash mid-write leaves the previous checkpoint intact;
and, reading it back, a :class:`Checkpoint` whose parameters are checked
against a model's parameter shapes.

Layout: ``param/NAME`` per parameter, ``opt/SLOT/NAME`` per optimizer slot,
and ``meta``, a JSON string (format version, spec hash, model name, config,
epoch, step, rng, history).  The random state is (seed, epoch, step): the
shuffling of epoch e and the random draws of step s are derived from them
alone, so that is all a resumed run needs to draw the same numbers.
A plain ``.npz`` of parameters (``NAME`` per parameter) is read too, by
:func:`load_params`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, Span, did_you_mean
from .optim import OptState

if TYPE_CHECKING:
    from ..api import Model

FORMAT = "specc-checkpoint/1"


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    opt_state: OptState
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))


def spec_hash(model: Model) -> str:
    """sha256 of the spec's source text and the model's name (the IR text when there is no source)."""
    if model.source is not None:
        text = model.source.text
    else:  # pragma: no cover - Model is always built from a source by specc.compile
        from ..ir.printer import format_program

        text = format_program(model.program)
    return hashlib.sha256(f"{model.name}\n{text}".encode()).hexdigest()[:16]


def save(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in ckpt.params.items()}
    for slot, values in ckpt.opt_state.slots.items():
        arrays.update({f"opt/{slot}/{k}": v for k, v in values.items()})
    meta = {"format": FORMAT, **ckpt.meta, "opt_step": ckpt.opt_state.step}
    arrays["meta"] = np.array(json.dumps(meta))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read checkpoint '{path}': no such file")
    with np.load(path, allow_pickle=False) as f:
        if "meta" not in f.files:
            raise InputError(f"'{path}' is not a specc checkpoint (it has no 'meta')",
                             hint="a plain .npz of parameters works with --params, not with --resume")
        meta = json.loads(str(f["meta"]))
        params = {k[len("param/"):]: f[k] for k in f.files if k.startswith("param/")}
        slots: dict[str, dict[str, np.ndarray]] = {}
        for k in f.files:
            if k.startswith("opt/"):
                _, slot, name = k.split("/", 2)
                slots.setdefault(slot, {})[name] = f[k]
    if meta.get("format") != FORMAT:
        raise InputError(f"'{path}' has checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    return Checkpoint(params, OptState(int(meta.pop("opt_step", 0)), slots), meta)


def load_params(path: str | Path, model: Model) -> dict[str, np.ndarray]:
    """Parameters from a checkpoint or a plain .npz of parameters, checked against ``model``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read parameters '{path}': no such file")
    with np.load(path, allow_pickle=False) as f:
        files = list(f.files)
    if "meta" in files:
        params = load(path).params
    else:
        with np.load(path, allow_pickle=False) as f:
            params = {k: f[k] for k in files}
    check_fit(params, model, str(path))
    return params


def check_fit(params: Mapping[str, np.ndarray], model: Model, where: str = "the checkpoint") -> None:
    """Every parameter of the model present with its shape, and nothing else: else name the first misfit."""
    shapes = model.param_shapes
    for name, shape in shapes.items():
        if name not in params:
            raise InputError(f"{where} has no parameter '{name}' (shape {list(shape)}) of model '{model.name}'",
                             hint=did_you_mean(name, params)
                             or "was it saved from another spec? `specc check` lists the parameters")
        got = tuple(np.shape(params[name]))
        if got != shape:
            loc, related = _param_site(model, name)
            raise InputError(f"parameter '{name}' in {where} has shape {list(got)}, but the spec gives it "
                             f"{list(shape)}", loc, related=related)
    extra = [k for k in params if k not in shapes]
    if extra:
        raise InputError(f"{where} has a parameter '{extra[0]}' that model '{model.name}' does not have",
                         hint=did_you_mean(extra[0], shapes) or "was it saved from another spec?")


def _param_site(model: Model, name: str) -> tuple[Span | None, list[tuple[str, Span]]]:
    """Where to point for a parameter: its declaration when the spec's own file has it; for a
    library layer's parameter (``h2.dense.W``), the spec's line that binds ``h2``, noting the declaration."""
    info = next(p for p in model.program.params if p.name == name)
    if info.loc is None or model.source is None or info.loc.source is model.source:
        return info.loc, []
    binding = re.compile(rf"^(\s*(?:output\s+)?){re.escape(name.split('.')[0])}\s*=")
    for n, line in enumerate(model.source.lines(), 1):
        m = binding.match(line)
        if m:
            return Span(model.source, n, len(m.group(1)) + 1, n, len(line.rstrip()) + 1), [("declared here", info.loc)]
    return info.loc, []
