"""BPTT's memory/compute trade: the forward scan saves what the backward step reads.

The gradient itself is checked elsewhere (test_vjp, test_specs, test_torch_grads); these
tests check the shape of the backward program: one forward recurrence, and backward
steps that neither redo the forward's matmuls nor its transcendentals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import specc
from specc.transforms.gradcheck import gradcheck
from specc.ir.verify import verify
from specc.transforms.bptt import merge_scans
from specc.transforms.passes import optimize

SPECS = Path(__file__).resolve().parent.parent / "specs"
TRANSCENDENTAL = {"sigmoid", "tanh", "exp", "log", "softplus"}


def scans(graph):
    return [e for e in graph.eqns if e.op == "scan"]


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "peephole_lstm"])
def test_forward_recurrence_runs_once_and_backward_does_not_recompute(name):
    model = specc.compile(SPECS / f"{name}.nn", target="interp")
    forward_scans = len(scans(model.program.graph))
    graph = model.grad_program().graph
    verify(graph)
    fwd = [e for e in scans(graph) if not e.params["reverse"]]
    bwd = [e for e in scans(graph) if e.params["reverse"]]
    assert len(fwd) == forward_scans and len(bwd) == forward_scans
    for e in bwd:
        ops = {q.op for q in e.params["body"].walk()}
        assert not ops & TRANSCENDENTAL, f"backward step recomputes {ops & TRANSCENDENTAL}"


def test_lstm_backward_reads_saved_gates_not_the_forward_matmul():
    model = specc.compile(SPECS / "lstm.nn", target="interp")
    graph = model.grad_program().graph
    (bwd,) = [e for e in scans(optimize(graph)) if e.params["reverse"]]
    saved = {n for e in scans(graph) if not e.params["reverse"] for n, k in e.params["states"] if k == 0}
    assert {"h.f.saved", "h.i.saved", "h.o.saved", "h.g.saved"} <= saved
    # once optimised, one matmul per backward step: the cotangent of h[t-1] (the weights'
    # gradients are batched over t outside the loop)
    body_matmuls = [q for q in bwd.params["body"].eqns if q.op == "matmul"]
    assert len(body_matmuls) <= 1


def test_merge_scans_is_identity_without_wider_scan():
    model = specc.compile(SPECS / "rnn.nn", target="interp")
    g = model.program.graph
    assert merge_scans(g) is g


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_saved_residual_gradients_match_central_differences(name):
    """float64, small sizes: the saved-residual BPTT against numerical derivatives."""
    src = (SPECS / f"{name}.nn").read_text()
    model = specc.compile(src, target="interp", dtype="float64")
    params = model.init_params(0)
    rng = np.random.default_rng(1)
    inputs = {}
    for k, (dt, shape) in model.inputs.items():
        dims = [{"T": 3, "B": 2}.get(s, s) if isinstance(s, str) else s for s in shape]
        inputs[k] = (rng.integers(0, 10, dims).astype(np.int32) if dt == "i32"
                     else rng.standard_normal(dims))
    checks = gradcheck(model.program, params, inputs, {"T": 3, "B": 2}, directions=3)
    assert checks and all(c.ok(1e-6) for c in checks), [c for c in checks if not c.ok(1e-6)]
