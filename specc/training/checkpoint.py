"""Checkpoints: a training run's whole state in one ``.npz`` file.

In: parameters, optimizer state and what the run needs to continue (its
training configuration, the epoch and step reached, the seed that every
random stream is derived from, the history so far).
Out: a file written atomically (a temporary file in the same directory, then
``os.replace``), so a crash mid-write leaves the previous checkpoint intact;
and, reading it back, a :class:`Checkpoint` checked completely on load (every array's name,
dtype and finiteness; the metadata against a pydantic schema; optimizer slots
against the parameters' shapes), then against a model's parameters, with one
error saying exactly what is wrong.  Temporary files of interrupted writes
are removed by the next run that writes the same checkpoint.

Layout: ``param/NAME`` per parameter, ``opt/SLOT/NAME`` per optimizer slot,
and ``meta``, a JSON string (format version, spec hash, model name, config,
epoch, step, rng, history).  The random state is (seed, epoch, step): the
shuffling of epoch e and the random draws of step s are derived from them
alone, so that is all a resumed run needs to draw the same numbers.
A plain ``.npz`` of parameters (``NAME`` per parameter) is read too, by
:func:`load_params`.  A path ending in ``.safetensors`` holds the same in that format
(:mod:`specc.training.safetensors_io`).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError, Span, did_you_mean, param_site
from ..safefiles import atomic_open
from . import safetensors_io
from .config import TrainConfig
from .npzfile import first_nonfinite, read_npz
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


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary files that interrupted writes of checkpoint ``path`` left beside it."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def save(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write atomically: readers see the old file or the new one, never half of one.

    A path ending in ``.safetensors`` is written in that format (:mod:`.safetensors_io`)."""
    path = Path(path)
    if safetensors_io.is_safetensors(path):
        return safetensors_io.save(path, ckpt, FORMAT)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {f"param/{k}": v for k, v in ckpt.params.items()}
    for slot, values in ckpt.opt_state.slots.items():
        arrays.update({f"opt/{slot}/{k}": v for k, v in values.items()})
    meta = {"format": FORMAT, **ckpt.meta, "opt_step": ckpt.opt_state.step}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_open(path) as f:
        np.savez(f, **arrays)
    return path


# ---- reading: every array and every metadata field checked ----------------------------------------
class _Rng(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = Field(ge=0)
    epoch: int = Field(ge=0)
    step: int = Field(ge=0)


class Meta(BaseModel):
    """The ``meta`` record of a checkpoint.  Keys written by newer versions are kept, not checked."""

    model_config = ConfigDict(extra="allow")
    format: Literal["specc-checkpoint/1"]
    model: str
    config: TrainConfig
    epoch: int = Field(ge=0)
    step: int = Field(ge=0)
    opt_step: int = Field(ge=0)
    history: list[dict[str, Any]]
    spec_hash: str | None = None
    rng: _Rng | None = None
    test: dict[str, float] | None = None
    seconds: float = Field(0.0, ge=0)


_ARRAY_NAME = re.compile(r"^(?:meta|param/[^/]+|opt/[^/]+/[^/]+)$")


def _bad(path: Path, what: str, hint: str | None = None) -> InputError:
    return InputError(f"checkpoint '{path}' is not usable: {what}", hint=hint or "it is damaged or was not written by "
                      "specc; resume from an earlier checkpoint or start again")


def _check_array(path: Path, key: str, a: np.ndarray) -> None:
    if a.dtype not in (np.float32, np.float64):
        raise _bad(path, f"array '{key}' has dtype {a.dtype}, expected float32 or float64")
    bad = first_nonfinite(a)
    if bad is not None:
        raise _bad(path, f"array '{key}' holds {bad[1]} at index {list(bad[0])}",
                   hint="a checkpoint holds only finite numbers; resume from an earlier one")


def _meta(path: Path, raw: np.ndarray, record: type | None) -> Meta:
    if raw.dtype.kind != "U" or raw.shape != ():
        raise _bad(path, f"'meta' is an array of {raw.dtype} {list(raw.shape)}, expected one JSON string")
    try:
        data = json.loads(str(raw))
    except ValueError as e:
        raise _bad(path, f"'meta' is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise _bad(path, "'meta' is not a JSON object")
    if data.get("format") != FORMAT:
        raise _bad(path, f"checkpoint format {data.get('format')!r}, expected {FORMAT!r}")
    try:
        meta = Meta.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "meta"
        got = f", got {err['input']!r}" if err["type"] != "missing" else ""
        raise _bad(path, f"metadata '{where}': {err['msg'].lower()}{got}") from None
    for i, rec in enumerate(meta.history):  # numbers, and one dict of numbers (val)
        if not all(_number(v) or (isinstance(v, dict) and all(_number(x) for x in v.values())) for v in rec.values()):
            raise _bad(path, f"history record {i + 1} holds a value that is not a number")
    if record is None:
        return meta
    fields = [f.name for f in dataclasses.fields(record)]
    mappings = {f.name for f in dataclasses.fields(record) if str(f.type).startswith(("dict", "Mapping"))}
    for i, rec in enumerate(meta.history):
        unknown = sorted(set(rec) - set(fields))
        missing = [f for f in fields if f not in rec]
        if unknown or missing:
            problem = f"an unknown key '{unknown[0]}'" if unknown else f"no '{missing[0]}'"
            raise _bad(path, f"history record {i + 1} has {problem} (its keys are {', '.join(fields)})")
        wrong = [k for k in fields if isinstance(rec[k], dict) != (k in mappings)]
        if wrong:
            raise _bad(path, f"history record {i + 1}: '{wrong[0]}' is not "
                             f"{'a mapping' if wrong[0] in mappings else 'a number'}")
    return meta


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def load(path: str | Path, history_record: type | None = None) -> Checkpoint:
    """Read and check a whole checkpoint: its arrays (names, dtypes, finite values) and its metadata
    (each history record against the dataclass ``history_record``, when given)."""
    path = Path(path)
    arrays, names = _read_arrays(path, "checkpoint")
    if "meta" not in names:
        raise InputError(f"'{path}' is not a specc checkpoint (it has no 'meta')",
                         hint="a plain .npz of parameters works with --params, not with --resume")
    strange = [k for k in names if not _ARRAY_NAME.match(k)]
    if strange:
        raise _bad(path, f"it holds an array '{strange[0]}', which is neither 'meta', 'param/NAME' nor "
                         f"'opt/SLOT/NAME'")
    meta = _meta(path, arrays.pop("meta"), history_record)
    params: dict[str, np.ndarray] = {}
    slots: dict[str, dict[str, np.ndarray]] = {}
    for k, a in arrays.items():
        _check_array(path, k, a)
        if k.startswith("param/"):
            params[k[len("param/"):]] = a
        else:
            _, slot, name = k.split("/", 2)
            slots.setdefault(slot, {})[name] = a
    if not params:
        raise _bad(path, "it holds no parameters")
    for slot, values in slots.items():
        for name, a in values.items():
            if name not in params:
                raise _bad(path, f"optimizer slot '{slot}' has an array for '{name}', which is not a parameter")
            if a.shape != params[name].shape:
                raise _bad(path, f"optimizer slot '{slot}' of '{name}' has shape {list(a.shape)}, but the "
                                 f"parameter has {list(params[name].shape)}")
        missing = [n for n in params if n not in values]
        if missing:
            raise _bad(path, f"optimizer slot '{slot}' has no array for parameter '{missing[0]}'")
    data = meta.model_dump(exclude={"opt_step"})
    data["config"] = meta.config.model_dump()
    return Checkpoint(params, OptState(meta.opt_step, slots), data)


def check_state(ck: Checkpoint, slots: tuple[str, ...], optimizer: str, where: str = "the checkpoint") -> None:
    """The optimizer state of ``ck`` is what ``optimizer`` (with ``slots``) needs: every slot, no other."""
    have = set(ck.opt_state.slots)
    if have == set(slots):
        return
    saved = ck.meta["config"]["optimizer"]
    missing = sorted(set(slots) - have)
    if saved != optimizer:
        raise InputError(f"{where} holds optimizer state for {saved}, not {optimizer}",
                         hint="resume with the optimizer it was trained with")
    what = f"has no optimizer slot '{missing[0]}'" if missing else \
        f"has an optimizer slot '{sorted(have - set(slots))[0]}' that {optimizer} does not use"
    raise InputError(f"{where} is not usable: it {what} (optimizer {optimizer} keeps {', '.join(slots) or 'none'})",
                     hint="it is damaged; resume from an earlier checkpoint or start again")


def load_params(path: str | Path, model: Model) -> dict[str, np.ndarray]:
    """Parameters from a checkpoint or a plain .npz/.safetensors file of parameters, checked against ``model``."""
    path = Path(path)
    arrays, names = _read_arrays(path, "parameters")
    if "meta" in names:
        params = load(path).params
    else:
        params = arrays
        for k, a in params.items():
            _check_array(path, k, a)
    check_fit(params, model, str(path))
    return params


def _read_arrays(path: Path, what: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """(every array by name, their names) of an .npz or .safetensors file; a checkpoint's metadata is
    the array 'meta' (one JSON string) in both, so that one validation serves both formats."""
    if not safetensors_io.is_safetensors(path):
        return read_npz(path, what)
    if not path.is_file():
        raise InputError(f"cannot read {what} '{path}': no such file")
    arrays, meta = safetensors_io.read(path)
    arrays = dict(arrays)
    if meta is not None:
        arrays["meta"] = np.array(json.dumps(meta))
    return arrays, list(arrays)


def check_fit(params: Mapping[str, np.ndarray], model: Model, where: str = "the checkpoint") -> None:
    """Every parameter of the model present with its shape, and nothing else: else name the first misfit."""
    shapes = model.param_shapes
    for name, shape in shapes.items():
        if name not in params:
            raise InputError(f"{where} has no parameter '{name}' (shape {list(shape)}) of model '{model.name}'",
                             hint=did_you_mean(name, params)
                             or "was it saved from another spec? `specc check` lists the parameters")
        got = tuple(np.shape(params[name]))
        dtype = np.asarray(params[name]).dtype
        if dtype not in (np.float32, np.float64):
            raise InputError(f"parameter '{name}' in {where} has dtype {dtype}, expected float32 or float64")
        if got != shape:
            loc, related = _param_site(model, name)
            raise InputError(f"parameter '{name}' in {where} has shape {list(got)}, but the spec gives it "
                             f"{list(shape)}", loc, related=related)
    extra = [k for k in params if k not in shapes]
    if extra:
        raise InputError(f"{where} has a parameter '{extra[0]}' that model '{model.name}' does not have",
                         hint=did_you_mean(extra[0], shapes) or "was it saved from another spec?")


def _param_site(model: Model, name: str) -> tuple[Span | None, list[tuple[str, Span]]]:
    return param_site(model.program.params, model.source, name)
