"""Model(target="cpu") runs optimised, compiled kernels: same results as the interpreter."""

from pathlib import Path

import numpy as np
import pytest

import specc

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.nn"))


@pytest.fixture(scope="module", params=SPECS)
def pair(request):
    path = str(ROOT / "specs" / f"{request.param}.nn")
    return specc.compile(path, target="cpu", dtype="float64"), specc.compile(path, target="interp", dtype="float64")


def _inputs(model, rng):
    from specc.cli import random_inputs

    return random_inputs(model, {"T": 5, "B": 6}, int(rng.integers(1000)))


def test_forward_and_gradients_match_the_interpreter(pair):
    cpu, ref = pair
    rng = np.random.default_rng(0)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in ref.init_params(0).items()}
    inputs = _inputs(ref, rng)
    for training in (False, True):
        got, want = cpu.forward(params, training=training, **inputs), ref.forward(params, training=training, **inputs)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)
    loss, grads = cpu.value_and_grad(params, seed=3, **inputs)
    loss_ref, grads_ref = ref.value_and_grad(params, seed=3, **inputs)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-10)
    for k in grads_ref:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-8, atol=1e-12, err_msg=k)


def test_one_kernel_serves_other_sizes(pair):
    cpu, ref = pair
    params = ref.init_params(1)
    inputs = specc.cli.random_inputs(ref, {"T": 3, "B": 2}, 5)
    np.testing.assert_allclose(cpu.value_and_grad(params, **inputs)[0], ref.value_and_grad(params, **inputs)[0],
                               rtol=1e-10)
    assert len(cpu._compiled) == 2  # forward and grad, compiled once each


# ---- the Backend objects -------------------------------------------------------------------------
def test_backend_objects_say_what_each_target_does() -> None:
    from specc.api import TARGETS
    from specc.backends import BACKENDS, LOWERINGS, backend

    assert set(BACKENDS) == set(TARGETS)
    assert sorted(b.name for b in BACKENDS.values() if b.compiles) == sorted(LOWERINGS) == ["cpu", "cuda"]
    assert backend("cuda").device_resident and not backend("cpu").device_resident
    assert not backend("interp").compiles and backend("interp").lowerings() == {}
    backend("cpu").require()
    backend("interp").require()
    with pytest.raises(ValueError, match="unknown target 'tpu'"):
        backend("tpu")
    model = specc.compile(str(ROOT / "specs" / "mlp.nn"), target="interp")
    assert model.backend is backend("interp")


def test_layers_import_only_downwards() -> None:
    """The CPU back end and the target-neutral modules import nothing from the CUDA back end, and no
    module of specc.backends imports the package itself (its __init__ imports them: no cycle)."""
    import ast

    backends = ROOT / "specc" / "backends"
    for path in backends.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        package = ".".join(path.relative_to(ROOT).parent.parts)  # specc.backends or specc.backends.cpu
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            targets = [module, *(f"{module}.{a.name}" for a in node.names)]
            for target in targets:
                assert target != "specc.backends", f"{path.relative_to(ROOT)} imports its own package"
                if "cuda" not in path.relative_to(backends).parts:
                    assert not target.startswith("specc.backends.cuda"), f"{path.relative_to(ROOT)} imports {target}"
