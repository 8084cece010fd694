"""Recurrent workloads: LSTM, GRU and the peephole LSTM cell, specc next to PyTorch and JAX.

In: shapes (T, B, In, H), the PyTorch and JAX modules (None where missing), timing settings.
Out: :class:`~harness.Measurement` records, one per implementation and workload.

Every implementation computes the same thing from the same numbers: the loss is
``mean(h)`` over all steps, batch rows and units, float32, and the peers hold
specc's parameters stacked gate by gate (:func:`stack`), so their parameter count
is specc's (``torch.nn.LSTM`` / ``torch.nn.GRU`` add a second bias vector, set to
zero). tests/test_benchmarks.py checks losses and gradients against specc's on
small shapes.

Gate layouts: specc's LSTM has ``W_f, W_i, W_o, W_c`` of shape [H + In, H] over
``concat(h, x)``; stacked, ``W`` is [H + In, 4H] with the gates in that order.
``torch.nn.LSTM`` stacks i, f, g (our c), o over [x] and [h] separately. The GRU
(specc's stdlib, PyTorch's convention) has ``W_r, W_z, W_n`` [In, H], ``U_*`` [H, H],
``b_*`` and ``c_n`` (the bias inside the reset product, torch's ``b_hn``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from harness import REPO, Measurement, Timing, measure_group

SHAPES = [(50, 32, 64, 256), (100, 16, 128, 128), (20, 64, 256, 512), (200, 1, 32, 64)]
QUICK_SHAPES = [SHAPES[0], SHAPES[3]]

CELLS = ("lstm", "gru", "peephole")
FAMILY = {"lstm": "LSTM", "gru": "GRU", "peephole": "peephole LSTM"}
LSTM_GATES = ("f", "i", "o", "c")  # specc's order in the stacked W, b
GRU_GATES = ("r", "z", "n")

SPEC = """{use}dim T, B
model bench(x: f32[T, B, {D}]) {{
  h = {layer}(x, hidden={H})
  loss = mean(h)
}}
"""
LAYER = {"lstm": "lstm", "gru": "gru", "peephole": "peephole_lstm"}


def spec_text(cell: str, D: int, H: int) -> str:
    """A model of one recurrent layer (stdlib lstm/gru, or specs/peephole_lstm.nn's cell) with loss mean(h)."""
    use = f'use "{REPO / "specs" / "peephole_lstm.nn"}"\n' if cell == "peephole" else ""
    return SPEC.format(use=use, layer=LAYER[cell], D=D, H=H)


def gemm_flops(cell: str, T: int, B: int, D: int, H: int, mode: str = "train") -> float:
    """Flops of the products: forward 2 T B (In + H) G H with G gates; backward twice that."""
    gates = 3 if cell == "gru" else 4
    fwd = 2.0 * T * B * (D + H) * gates * H
    return fwd * (3 if mode == "train" else 1)


# ---- parameters: specc's per-gate arrays <-> the peers' stacked ones -------------------------
def stack(cell: str, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if cell == "gru":
        out = {"W": np.concatenate([p[f"h.W_{g}"] for g in GRU_GATES], 1),
               "U": np.concatenate([p[f"h.U_{g}"] for g in GRU_GATES], 1),
               "b": np.concatenate([p[f"h.b_{g}"] for g in GRU_GATES]),
               "c_n": p["h.c_n"]}
    else:
        out = {"W": np.concatenate([p[f"h.W_{g}"] for g in LSTM_GATES], 1),
               "b": np.concatenate([p[f"h.b_{g}"] for g in LSTM_GATES])}
    if cell == "peephole":
        out |= {"p_f": p["h.p_f"], "p_i": p["h.p_i"], "p_o": p["h.p_o"],
                "gain": p["h.ln.gain"], "bias": p["h.ln.bias"]}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def unstack(cell: str, s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gradients of the stacked parameters, keyed like specc's."""
    gates = GRU_GATES if cell == "gru" else LSTM_GATES
    H = s["b"].shape[0] // len(gates)
    out = {}
    for k, g in enumerate(gates):
        cols = slice(k * H, (k + 1) * H)
        out[f"h.W_{g}"], out[f"h.b_{g}"] = s["W"][:, cols], s["b"][cols]
        if cell == "gru":
            out[f"h.U_{g}"] = s["U"][:, cols]
    if cell == "gru":
        out["h.c_n"] = s["c_n"]
    if cell == "peephole":
        out |= {f"h.{k}": s[k] for k in ("p_f", "p_i", "p_o")} | {"h.ln.gain": s["gain"], "h.ln.bias": s["bias"]}
    return out


# ---- PyTorch ------------------------------------------------------------------------------------
def torch_nn(torch: Any, cell: str, s: dict[str, np.ndarray], D: int, H: int) -> Any:
    """torch.nn.LSTM / torch.nn.GRU holding the stacked parameters ``s`` (bias_hh zero, but b_hn = c_n)."""
    W = s["W"] if cell == "gru" else s["W"][H:]  # rows over x
    U = s["U"] if cell == "gru" else s["W"][:H]  # rows over h
    if cell == "lstm":
        order = [1, 0, 3, 2]  # torch's i, f, g, o from our f, i, o, c
        W, U, b = (_regate(a, order, H) for a in (W, U, s["b"]))
        bh = np.zeros_like(b)
        net = torch.nn.LSTM(D, H)
    elif cell == "gru":
        b, bh = s["b"], np.concatenate([np.zeros(2 * H, np.float32), s["c_n"]])
        net = torch.nn.GRU(D, H)
    else:
        raise ValueError(f"torch has no {cell} module")
    with torch.no_grad():
        net.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
        net.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(U.T)))
        net.bias_ih_l0.copy_(torch.from_numpy(b))
        net.bias_hh_l0.copy_(torch.from_numpy(bh))
    return net


def torch_nn_grads(cell: str, net: Any, H: int) -> dict[str, np.ndarray]:
    """The gradients of a torch_nn module, stacked like :func:`stack`."""
    gih, ghh = net.weight_ih_l0.grad.numpy().T, net.weight_hh_l0.grad.numpy().T
    gb = net.bias_ih_l0.grad.numpy()
    if cell == "gru":
        return {"W": gih, "U": ghh, "b": gb, "c_n": net.bias_hh_l0.grad.numpy()[2 * H:]}
    back = [1, 0, 3, 2]  # the same swap undoes itself
    return {"W": np.concatenate([_regate(ghh, back, H), _regate(gih, back, H)]), "b": _regate(gb, back, H)}


def _regate(a: np.ndarray, order: list[int], H: int) -> np.ndarray:
    return np.concatenate([a[..., k * H:(k + 1) * H] for k in order], -1)


def torch_cell_loss(torch: Any, cell: str, P: dict[str, Any], x: Any) -> Any:
    """The cell written by hand in a Python loop over time (one product per step over [h, x])."""
    F = torch.nn.functional
    B = x.shape[1]
    H = P["c_n"].shape[0] if cell == "gru" else P["b"].shape[0] // 4
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    hs = []
    for t in range(x.shape[0]):
        if cell == "gru":
            gx = x[t] @ P["W"] + P["b"]
            gh = h @ P["U"]
            xr, xz, xn = gx.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, u = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * (hn + P["c_n"]))
            h = (1 - u) * n + u * h
        else:
            z = torch.cat([h, x[t]], 1) @ P["W"] + P["b"]
            zf, zi, zo, zc = z.chunk(4, 1)
            if cell == "lstm":
                c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zc)
                h = torch.sigmoid(zo) * torch.tanh(c)
            else:
                f, i = torch.sigmoid(zf + c * P["p_f"]), torch.sigmoid(zi + c * P["p_i"])
                c = f * c + i * torch.tanh(zc)
                o = torch.sigmoid(zo + c * P["p_o"])
                h = o * torch.tanh(F.layer_norm(c, (H,), P["gain"], P["bias"], eps=1e-5))
        hs.append(h)
    return torch.stack(hs).mean()


# ---- JAX ----------------------------------------------------------------------------------------
def jax_loss(cell: str) -> Callable[[dict, Any], Any]:
    """loss(P, x) = mean(h) of the cell under lax.scan, P stacked like :func:`stack`."""
    import jax
    import jax.numpy as jnp

    sig = jax.nn.sigmoid

    def lstm_step(P, carry, xt):
        h, c = carry
        zf, zi, zo, zc = jnp.split(jnp.concatenate([h, xt], 1) @ P["W"] + P["b"], 4, 1)
        if cell == "lstm":
            c = sig(zf) * c + sig(zi) * jnp.tanh(zc)
            h = sig(zo) * jnp.tanh(c)
        else:
            c = sig(zf + c * P["p_f"]) * c + sig(zi + c * P["p_i"]) * jnp.tanh(zc)
            o = sig(zo + c * P["p_o"])
            mu = jnp.mean(c, -1, keepdims=True)
            var = jnp.mean((c - mu) ** 2, -1, keepdims=True)
            h = o * jnp.tanh((c - mu) / jnp.sqrt(var + 1e-5) * P["gain"] + P["bias"])
        return (h, c), h

    def gru_step(P, h, xt):
        xr, xz, xn = jnp.split(xt @ P["W"] + P["b"], 3, 1)
        hr, hz, hn = jnp.split(h @ P["U"], 3, 1)
        r, u = sig(xr + hr), sig(xz + hz)
        n = jnp.tanh(xn + r * (hn + P["c_n"]))
        h = (1 - u) * n + u * h
        return h, h

    def loss(P, x):
        B = x.shape[1]
        if cell == "gru":
            h0 = jnp.zeros((B, P["c_n"].shape[0]), x.dtype)
            _, hs = jax.lax.scan(lambda h, xt: gru_step(P, h, xt), h0, x)
        else:
            h0 = jnp.zeros((B, P["b"].shape[0] // 4), x.dtype)
            _, hs = jax.lax.scan(lambda carry, xt: lstm_step(P, carry, xt), (h0, h0), x)
        return jnp.mean(hs)

    return loss


# ---- the workloads ------------------------------------------------------------------------------
def _specc_setup(cell: str, T: int, B: int, D: int, H: int, mode: str):
    def setup():
        import specc

        model = specc.compile(spec_text(cell, D, H), target="cpu", dtype="float32")
        params = model.init_params(0)
        x = _input(T, B, D)
        if mode == "train":
            return lambda: model.value_and_grad(params, x=x)
        return lambda: model.forward(params, x=x)

    return setup


def _torch_nn_setup(torch: Any, cell: str, T: int, B: int, D: int, H: int, mode: str):
    def setup():
        import specc

        params = specc.compile(spec_text(cell, D, H), target="interp", dtype="float32").init_params(0)
        net = torch_nn(torch, cell, stack(cell, params), D, H)
        x = torch.from_numpy(_input(T, B, D))
        if mode == "forward":
            def forward():
                with torch.no_grad():
                    return net(x)[0].mean()
            return forward

        def step():
            for p in net.parameters():
                p.grad = None
            net(x)[0].mean().backward()
        return step

    return setup


def _torch_cell_setup(torch: Any, cell: str, T: int, B: int, D: int, H: int, mode: str):
    def setup():
        import specc

        params = specc.compile(spec_text(cell, D, H), target="interp", dtype="float32").init_params(0)
        P = {k: torch.from_numpy(v).requires_grad_(mode == "train") for k, v in stack(cell, params).items()}
        x = torch.from_numpy(_input(T, B, D))
        if mode == "forward":
            def forward():
                with torch.no_grad():
                    return torch_cell_loss(torch, cell, P, x)
            return forward

        def step():
            for p in P.values():
                p.grad = None
            torch_cell_loss(torch, cell, P, x).backward()
        return step

    return setup


def _jax_setup(cell: str, T: int, B: int, D: int, H: int, mode: str):
    def setup():
        import jax

        import specc

        params = specc.compile(spec_text(cell, D, H), target="interp", dtype="float32").init_params(0)
        P = jax.device_put(stack(cell, params))
        x = jax.device_put(_input(T, B, D))
        loss = jax_loss(cell)
        f = jax.jit(jax.value_and_grad(loss) if mode == "train" else loss)
        return lambda: jax.block_until_ready(f(P, x))

    return setup


def _input(T: int, B: int, D: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((T, B, D)).astype(np.float32)


# which peers each (cell, mode) is timed against
PEERS = {
    ("lstm", "train"): ("torch.nn.LSTM", "torch cell", "jax scan"),
    ("lstm", "forward"): ("torch.nn.LSTM", "torch cell", "jax scan"),
    ("gru", "train"): ("torch.nn.GRU", "jax scan"),
    ("peephole", "train"): ("torch cell", "jax scan"),
}


def run(cell: str, mode: str, shapes: list[tuple[int, int, int, int]], torch: Any, has_jax: bool,
        timing: Timing, log: Callable[[str], None] = print) -> list[Measurement]:
    out: list[Measurement] = []
    for T, B, D, H in shapes:
        impls: dict[str, Any] = {"specc": _specc_setup(cell, T, B, D, H, mode)}
        for peer in PEERS[(cell, mode)]:
            if peer.startswith("torch"):
                if torch is None:
                    impls[peer] = "torch not installed"
                elif peer == "torch cell":
                    impls[peer] = _torch_cell_setup(torch, cell, T, B, D, H, mode)
                else:
                    impls[peer] = _torch_nn_setup(torch, cell, T, B, D, H, mode)
            else:
                impls[peer] = _jax_setup(cell, T, B, D, H, mode) if has_jax else "jax not installed"
        out += measure_group(FAMILY[cell], mode, f"{T}x{B}x{D}x{H}", gemm_flops(cell, T, B, D, H, mode),
                             impls, timing, log)
    return out
