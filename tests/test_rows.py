"""Row independence of recurrences (specc.backends.cpu.rows) and the CPU code built on it.

A recurrence whose steps treat batch rows independently runs one block of rows per
thread; one that mixes rows (a batch statistic, a product over the batch axis) must stay
sequential, or the blocks would each see only part of the batch and compute wrong values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import specc
from specc.backends import generator
from specc.backends.cpu.rows import ROW, SHARED, row_plan
from specc.backends.interp import interpret
from specc.transforms.passes import optimize

SPECS = Path(__file__).resolve().parent.parent / "specs"

MIXING = """\
dim T, B
model m(x: f64[T, B, 3]) {
  param W: [3, 4] = glorot
  recur t over x {
    init h = zeros([B, 4])
    h[t] = tanh(x[t] @ W + h[t-1] - mean(h[t-1], axis=0, keepdims=true))
  }
  loss = mean(h)
}
"""

ROWWISE = """\
dim T, B
model m(x: f64[T, B, 3]) {
  param W: [3, 4] = glorot
  param U: [4, 4] = orthogonal
  recur t over x {
    init h = zeros([B, 4])
    h[t] = tanh(x[t] @ W + h[t-1] @ U + sum(h[t-1], axis=1, keepdims=true))
  }
  loss = mean(h)
}
"""


def scans(graph):
    return [e for e in graph.walk() if e.op == "scan"]


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "peephole_lstm"])
def test_shipped_recurrences_are_rowwise_forward_and_backward(name):
    model = specc.compile(SPECS / f"{name}.nn", target="interp")
    for graph in (model.program.graph, optimize(model.grad_program().graph)):
        for e in scans(graph):
            plan = row_plan(e)
            assert plan is not None and plan.batch == "B"
            body = e.params["body"]
            for v, kind in zip(body.inputs, plan.inputs):  # weights shared, per-example values by rows
                assert kind == (ROW if v.shape and v.shape[0] == body.outputs[0].shape[0] else SHARED)


def test_a_batch_statistic_keeps_the_recurrence_sequential():
    model = specc.compile(MIXING, target="interp")
    for graph in (model.program.graph, optimize(model.grad_program().graph)):
        assert all(row_plan(e) is None for e in scans(graph))


def test_a_feature_reduction_is_rowwise():
    model = specc.compile(ROWWISE, target="interp")
    assert all(row_plan(e) is not None for e in scans(model.program.graph))


@pytest.mark.parametrize("spec,blocks", [(MIXING, False), (ROWWISE, True)])
def test_compiled_matches_the_interpreter_with_and_without_row_blocks(spec, blocks, monkeypatch, tmp_path):
    monkeypatch.setenv("SPECC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SPECC_NUM_THREADS", "2")
    model = specc.compile(spec, target="cpu")
    graph = optimize(model.grad_program().graph)
    source = generator("cpu").generate(graph, "m").source
    assert ("run_row_blocks(" in source) == blocks
    params = model.init_params(0)
    x = np.random.default_rng(0).standard_normal((5, 12, 3))  # 12 rows: blocks of 6 on two threads
    loss, grads = model.value_and_grad(params, x=x)
    ref = interpret(model.grad_program().graph, [x, *(params[p.name] for p in model.program.params)],
                    {"T": 5, "B": 12})
    np.testing.assert_allclose(loss, ref[0], rtol=1e-10)
    for k, want in zip(model.grad_program().wrt, ref[1:]):
        np.testing.assert_allclose(grads[k], want, rtol=1e-9, atol=1e-12)
