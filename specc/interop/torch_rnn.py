"""The standard library's ``lstm`` and ``gru`` parameters as ``torch.nn.LSTM`` / ``torch.nn.GRU``
state dicts, and back.

In: a model's parameters (NumPy arrays keyed by name, e.g. ``h.W_f``) and the name the layer
is bound to in the spec (``h`` in ``h = lstm(x, hidden=64)``).
Out: a dict with PyTorch's keys (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
``bias_hh_l0``) of NumPy arrays: ``torch_lstm.load_state_dict({k: torch.from_numpy(v) ...})``.
No PyTorch is needed to build it.

The layouts (``D`` inputs, ``H`` hidden units; PyTorch multiplies ``W @ x``, specc ``x @ W``):

* ``lstm``: specc's gates read ``z = [h, x]`` through ``W_g: [H + D, H]``; PyTorch keeps the
  gates stacked in the order (i, f, g, o): ``weight_ih = [W_i[H:]^T; W_f[H:]^T; W_c[H:]^T;
  W_o[H:]^T]`` (4H x D), ``weight_hh`` the same with the rows ``[:H]`` (4H x H),
  ``bias_ih = [b_i, b_f, b_c, b_o]``, ``bias_hh = 0``.  Back from PyTorch, specc's bias is
  ``bias_ih + bias_hh`` (the two always add).
* ``gru``: the same equations as ``nn.GRU`` (the reset gate multiplies ``h U_n + c_n``), gates in
  the order (r, z, n): ``weight_ih = [W_r^T; W_z^T; W_n^T]``, ``weight_hh = [U_r^T; U_z^T; U_n^T]``,
  ``bias_ih = [b_r, b_z, b_n]``, ``bias_hh = [0, 0, c_n]``.  Back from PyTorch, ``b_r`` and ``b_z``
  take the sums of the two biases, ``b_n`` and ``c_n`` stay apart.

Both are exact: with ``batch_first=False`` (specc's ``[T, B, D]``) and zero initial states, PyTorch
computes the same ``h`` as the spec (tests/test_interop.py compares them).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError

LSTM_GATES = ("i", "f", "c", "o")  # PyTorch's order (i, f, g, o); specc calls g's weights W_c
GRU_GATES = ("r", "z", "n")


def _names(params: Mapping[str, np.ndarray], layer: str | None, kind: str, wanted: tuple[str, ...]) -> str:
    """The layer's prefix in ``params`` (found when only one layer of this kind is there)."""
    prefixes = sorted({k.rsplit(".", 1)[0] for k in params if "." in k
                       and all(f"{k.rsplit('.', 1)[0]}.{w}" in params for w in wanted)})
    if layer is None:
        if len(prefixes) != 1:
            raise InputError(f"{'no' if not prefixes else 'several'} {kind} layers in these parameters"
                             + (f" ({', '.join(prefixes)})" if prefixes else ""),
                             hint=f"name the layer: layer='{prefixes[0] if prefixes else 'h'}' (the name it is bound "
                                  f"to in the spec)")
        return prefixes[0]
    missing = [w for w in wanted if f"{layer}.{w}" not in params]
    if missing:
        raise InputError(f"no {kind} parameters '{layer}.{missing[0]}'",
                         hint=f"the {kind} layers here: {', '.join(prefixes) or 'none'}")
    return layer


def lstm_state_dict(params: Mapping[str, np.ndarray], layer: str | None = None) -> dict[str, np.ndarray]:
    """The std ``lstm`` bound to ``layer`` as a one-layer ``torch.nn.LSTM(D, H)`` state dict."""
    p = _names(params, layer, "lstm", tuple(f"{a}_{g}" for a in "Wb" for g in LSTM_GATES))
    W = {g: np.asarray(params[f"{p}.W_{g}"]) for g in LSTM_GATES}
    H = W["i"].shape[1]
    b = np.concatenate([np.asarray(params[f"{p}.b_{g}"]) for g in LSTM_GATES])
    return {"weight_ih_l0": np.ascontiguousarray(np.concatenate([W[g][H:].T for g in LSTM_GATES])),
            "weight_hh_l0": np.ascontiguousarray(np.concatenate([W[g][:H].T for g in LSTM_GATES])),
            "bias_ih_l0": b, "bias_hh_l0": np.zeros_like(b)}


def gru_state_dict(params: Mapping[str, np.ndarray], layer: str | None = None) -> dict[str, np.ndarray]:
    """The std ``gru`` bound to ``layer`` as a one-layer ``torch.nn.GRU(D, H)`` state dict."""
    names = tuple(f"{a}_{g}" for a in "WUb" for g in GRU_GATES) + ("c_n",)
    p = _names(params, layer, "gru", names)
    get = lambda n: np.asarray(params[f"{p}.{n}"])  # noqa: E731
    b = np.concatenate([get(f"b_{g}") for g in GRU_GATES])
    zeros = np.zeros_like(get("c_n"))
    return {"weight_ih_l0": np.ascontiguousarray(np.concatenate([get(f"W_{g}").T for g in GRU_GATES])),
            "weight_hh_l0": np.ascontiguousarray(np.concatenate([get(f"U_{g}").T for g in GRU_GATES])),
            "bias_ih_l0": b, "bias_hh_l0": np.concatenate([zeros, zeros, get("c_n")])}


def lstm_from_state_dict(state: Mapping[str, object], layer: str) -> dict[str, np.ndarray]:
    """A one-layer ``torch.nn.LSTM``'s state dict as the std ``lstm``'s parameters named ``layer.*``."""
    w_ih, w_hh, b_ih, b_hh = (_np(state[k]) for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    H = w_hh.shape[1]
    out = {}
    for k, g in enumerate(LSTM_GATES):
        rows = slice(k * H, (k + 1) * H)
        out[f"{layer}.W_{g}"] = np.ascontiguousarray(np.concatenate([w_hh[rows].T, w_ih[rows].T]))
        out[f"{layer}.b_{g}"] = b_ih[rows] + b_hh[rows]
    return out


def gru_from_state_dict(state: Mapping[str, object], layer: str) -> dict[str, np.ndarray]:
    """A one-layer ``torch.nn.GRU``'s state dict as the std ``gru``'s parameters named ``layer.*``."""
    w_ih, w_hh, b_ih, b_hh = (_np(state[k]) for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
    H = w_hh.shape[1]
    out = {}
    for k, g in enumerate(GRU_GATES):
        rows = slice(k * H, (k + 1) * H)
        out[f"{layer}.W_{g}"] = np.ascontiguousarray(w_ih[rows].T)
        out[f"{layer}.U_{g}"] = np.ascontiguousarray(w_hh[rows].T)
    out[f"{layer}.b_r"] = b_ih[:H] + b_hh[:H]
    out[f"{layer}.b_z"] = b_ih[H:2 * H] + b_hh[H:2 * H]
    out[f"{layer}.b_n"] = b_ih[2 * H:]
    out[f"{layer}.c_n"] = b_hh[2 * H:]
    return out


def _np(x: object) -> np.ndarray:
    """A NumPy copy of an array or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.array(x)
