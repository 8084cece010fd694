"""Checkpoints as ``.safetensors`` files (``--format safetensors``), through the optional
``safetensors`` package's NumPy API (``pip install 'specc[safetensors]'``).

In: a :class:`~specc.training.checkpoint.Checkpoint` (parameters, optimizer state, meta).
Out: one ``.safetensors`` file, written atomically, laid out as the ``.npz`` checkpoint is:
tensors ``param/NAME`` and ``opt/SLOT/NAME``; the header's metadata (strings only) holds
``format`` (``specc-checkpoint/1``), ``model``, ``spec_hash``, ``epoch`` for a quick look, and
``specc`` (the whole meta as JSON: config, history, rng...).  Reading gives the same
Checkpoint back; a ``.safetensors`` file of bare parameters (``NAME`` per tensor, as other
tools write them) is read by :func:`load_params`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .optim import OptState

SUFFIX = ".safetensors"


def is_safetensors(path: str | Path) -> bool:
    return Path(path).suffix.lower() == SUFFIX


def _numpy_api():
    try:
        from safetensors import numpy as st
    except ImportError:
        raise InputError("the safetensors format needs the safetensors package, which is not installed",
                         hint="pip install 'specc[safetensors]'") from None
    return st


def save(path: str | Path, ckpt: Any, format_name: str) -> Path:
    """``ckpt``: a :class:`~specc.training.checkpoint.Checkpoint` (which imports this module)."""
    st = _numpy_api()  # written atomically: a temporary file in the same directory, then a rename
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"param/{k}": np.asarray(v, order="C") for k, v in ckpt.params.items()}
    for slot, values in ckpt.opt_state.slots.items():
        tensors.update({f"opt/{slot}/{k}": np.asarray(v, order="C") for k, v in values.items()})
    meta = {"format": format_name, **ckpt.meta, "opt_step": ckpt.opt_state.step}
    header = {"format": format_name, "model": str(meta.get("model", "")), "spec_hash": str(meta.get("spec_hash", "")),
              "epoch": str(meta.get("epoch", "")), "specc": json.dumps(meta)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        st.save_file(tensors, tmp, metadata=header)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | Path) -> tuple[dict[str, np.ndarray], dict | None]:
    """(every tensor by name, the specc meta or None for a file of bare tensors)."""
    st = _numpy_api()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
        tensors = st.load_file(str(path))
    except Exception as e:  # the package raises its own errors for a damaged header
        raise InputError(f"cannot read '{path}' as safetensors: {e}") from None
    meta = json.loads(header["specc"]) if "specc" in header else None
    return tensors, meta


def load(path: str | Path) -> tuple[dict[str, np.ndarray], OptState, dict]:
    """A whole checkpoint's (parameters, optimizer state, meta), for ``--resume``."""
    tensors, meta = read(path)
    if meta is None:
        raise InputError(f"'{path}' is not a specc checkpoint (its header has no 'specc' metadata)",
                         hint="a .safetensors file of parameters works with --params, not with --resume")
    params = {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
    slots: dict[str, dict[str, np.ndarray]] = {}
    for k, v in tensors.items():
        if k.startswith("opt/"):
            _, slot, name = k.split("/", 2)
            slots.setdefault(slot, {})[name] = v
    return params, OptState(int(meta.pop("opt_step", 0)), slots), meta


def load_params(path: str | Path) -> dict[str, np.ndarray]:
    """The parameters of a checkpoint, or every tensor of a file of bare parameters."""
    tensors, meta = read(path)
    if meta is None:
        return tensors
    return {k[len("param/"):]: v for k, v in tensors.items() if k.startswith("param/")}
