"""Files specc runs or unpickles are only ever its own, from a directory only the user can write.

Each class of attack from issue 12, with a planted file that would leave a marker if it ran:
a kernel module planted in a shared (world- or group-writable) or foreign cache directory; a
module or Numba pickle in a private cache that differs from what specc wrote (damaged or edited);
a symlink at the final name of a cache file; a planted Lark grammar cache in $TMPDIR; a planted or
damaged parser-table pickle.  And the careless cases: an unusable or unwritable cache, a full disk.
Tests that need another user use directory modes (and chown, when running as root).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import specc
from specc import runtime, safefiles
from specc.backends import generator
from specc.runtime import cache

ROOT = Path(__file__).resolve().parent.parent

SMALL = """\
dim B
model small(x: f32[B, 4]) {
  loss = mean(x * x + 1.5)
}
"""


class _Plant:
    """A pickle that, when loaded, creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture()
def fresh(monkeypatch, tmp_path):
    """A fresh cache directory (not created yet), a clean process cache and warning memory."""
    monkeypatch.setenv("SPECC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    cache._LOADED.clear()
    safefiles._WARNED.clear()
    yield tmp_path / "cache"
    cache._LOADED.clear()


def _graph():
    return specc.compile(SMALL, target="interp").program.graph


def _entry_path(directory: Path, graph, name="small") -> Path:
    module = generator("cpu").generate(graph, name)
    key = cache.cache_key(module, [v.dtype for v in graph.inputs])
    return directory / "cpu" / f"{name}_{key}.py"


def _works(kernel) -> None:
    import numpy as np

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (loss,) = kernel([x], {"B": 2})
    assert np.isclose(loss, np.mean(x * x + 1.5))


def _planted_module(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"


# ---- the kernel cache directory ------------------------------------------------------------------
def test_cache_directory_is_created_private(fresh) -> None:
    kernel = runtime.compile_graph(_graph(), name="small")
    _works(kernel)
    assert fresh.stat().st_mode & 0o777 == 0o700
    assert (fresh / "cpu").stat().st_mode & 0o777 == 0o700
    assert kernel.path.parent == fresh / "cpu"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_module_planted_in_a_shared_cache_directory_never_runs(fresh, tmp_path, capsys, mode) -> None:
    graph = _graph()
    marker = tmp_path / "ran"
    planted = _entry_path(fresh, graph)
    planted.parent.mkdir(parents=True)
    planted.write_text(_planted_module(marker))
    fresh.chmod(mode)
    kernel = runtime.compile_graph(graph, name="small")
    _works(kernel)
    assert not marker.exists(), "a module planted in a shared cache directory was executed"
    assert kernel.path.parent != planted.parent
    err = capsys.readouterr().err
    assert "not using the cache directory" in err and "writable by" in err and err.count("\n") == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another user needs root")
def test_cache_directory_of_another_user_is_refused(fresh, tmp_path, capsys) -> None:
    graph = _graph()
    marker = tmp_path / "ran"
    planted = _entry_path(fresh, graph)
    planted.parent.mkdir(parents=True, mode=0o700)
    planted.write_text(_planted_module(marker))
    fresh.chmod(0o700)
    os.chown(fresh, 65534, -1)
    _works(runtime.compile_graph(graph, name="small"))
    assert not marker.exists()
    assert "owned by another user" in capsys.readouterr().err


def test_module_that_differs_from_the_source_is_discarded_and_rebuilt(fresh, tmp_path, capsys) -> None:
    """Edited, planted, truncated or empty: the file is compared with the source before anything runs."""
    graph = _graph()
    marker = tmp_path / "ran"
    path = _entry_path(fresh, graph)
    good = generator("cpu").generate(graph, "small").source
    for damaged in (_planted_module(marker), good[: len(good) // 2], "", "def run(:\n"):
        cache._LOADED.clear()
        safefiles._WARNED.clear()
        fresh.mkdir(mode=0o700, exist_ok=True)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(damaged)
        kernel = runtime.compile_graph(graph, name="small")
        _works(kernel)
        assert not marker.exists()
        assert path.read_text() == good
        assert "discarded the damaged kernel cache entry" in capsys.readouterr().err


def test_symlink_at_the_cache_file_name_is_replaced_not_followed(fresh, tmp_path) -> None:
    graph = _graph()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = _entry_path(fresh, graph)
    path.parent.mkdir(parents=True, mode=0o700)
    fresh.chmod(0o700)
    path.symlink_to(victim)
    _works(runtime.compile_graph(graph, name="small"))
    assert victim.read_text() == "precious"
    assert path.is_file() and not path.is_symlink()


def test_temporary_names_are_unpredictable(fresh, tmp_path, monkeypatch) -> None:
    """A file planted at the old predictable '<name>.<pid>.tmp' is neither followed nor touched."""
    graph = _graph()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = _entry_path(fresh, graph)
    path.parent.mkdir(parents=True, mode=0o700)
    fresh.chmod(0o700)
    old_tmp = path.with_suffix(f".{os.getpid()}.tmp")
    old_tmp.symlink_to(victim)
    _works(runtime.compile_graph(graph, name="small"))
    assert victim.read_text() == "precious" and old_tmp.is_symlink()


# ---- Numba's cache -----------------------------------------------------------------------------
def _numba_cached(fresh) -> Path:
    graph = _graph()
    kernel = runtime.compile_graph(graph, name="small")
    files = cache._numba_files(kernel.path)
    assert {p.suffix for p in files} == {".nbi", ".nbc"}, files
    cache._LOADED.clear()
    return kernel.path


@pytest.mark.parametrize("which,how", [(".nbi", "truncate"), (".nbc", "truncate"), (".nbi", "empty"),
                                       (".nbc", "garbage"), (".nbi", "garbage")])
def test_damaged_numba_cache_is_discarded_and_rebuilt(fresh, capsys, which, how) -> None:
    path = _numba_cached(fresh)
    target = next(p for p in cache._numba_files(path) if p.suffix == which)
    data = target.read_bytes()
    target.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(len(data))}[how])
    kernel = runtime.compile_graph(_graph(), name="small")
    _works(kernel)
    assert "discarded" in capsys.readouterr().err
    cache._LOADED.clear()
    again = runtime.compile_graph(_graph(), name="small")  # rebuilt: loads from Numba's cache again
    _works(again)
    hits = sum(sum(d.stats.cache_hits.values()) for d in again.dispatchers)
    assert hits == len(again.dispatchers) >= 1


def test_planted_numba_pickle_in_a_shared_pycache_never_loads(fresh, tmp_path, capsys) -> None:
    path = _numba_cached(fresh)
    marker = tmp_path / "ran"
    for p in cache._numba_files(path):
        p.write_bytes(pickle.dumps(_Plant(marker)))
    (path.parent / "__pycache__").chmod(0o777)
    _works(runtime.compile_graph(_graph(), name="small"))
    assert not marker.exists()
    assert "pycache" in capsys.readouterr().err


def test_numba_cache_dir_that_is_not_private_is_ignored(fresh, tmp_path, monkeypatch, capsys) -> None:
    import numba

    shared = tmp_path / "shared-numba"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(shared))
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(shared))
    _works(runtime.compile_graph(_graph(), name="small"))
    assert "ignoring NUMBA_CACHE_DIR" in capsys.readouterr().err
    assert not list(shared.rglob("*.nb*"))


# ---- unusable cache, full disk -------------------------------------------------------------------
def test_cache_that_cannot_be_created_falls_back_with_one_warning(fresh, tmp_path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SPECC_CACHE_DIR", str(blocker / "cache"))  # like a read-only HOME: mkdir fails
    kernel = runtime.compile_graph(_graph(), name="small")
    _works(kernel)
    assert str(kernel.path).startswith(str(safefiles.fallback_dir()))
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "cannot create it" in err


def test_cache_that_cannot_be_written_falls_back(fresh, monkeypatch, capsys) -> None:
    real = safefiles.write_atomic
    calls = []

    def failing(path, data):
        calls.append(path)
        if str(path).startswith(str(fresh)):
            raise OSError(30, "Read-only file system")
        return real(path, data)

    monkeypatch.setattr(cache, "write_atomic", failing)
    kernel = runtime.compile_graph(_graph(), name="small")
    _works(kernel)
    assert not str(kernel.path).startswith(str(fresh))
    assert "Read-only file system" in capsys.readouterr().err


def test_temp_files_of_killed_writes_are_removed(fresh) -> None:
    graph = _graph()
    path = _entry_path(fresh, graph)
    path.parent.mkdir(parents=True, mode=0o700)
    fresh.chmod(0o700)
    old, young = path.parent / ".x.py.abc.tmp", path.parent / ".y.py.def.tmp"
    old.write_text("half")
    young.write_text("being written")
    os.utime(old, (0, 0))
    _works(runtime.compile_graph(graph, name="small"))
    assert not old.exists() and young.exists()  # a write under way in another process is left alone


def test_full_disk_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    def full(_fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safefiles.os, "fsync", full)
    with pytest.raises(OSError):
        safefiles.write_atomic(tmp_path / "x.py", b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


# ---- the parser's tables -----------------------------------------------------------------------
LARK_CACHE = textwrap.dedent("""\
    import sys
    from lark import Lark
    from specc.frontend.parser import grammar_path
    Lark(grammar_path().read_text(), parser="lalr", lexer="basic", propagate_positions=True,
         maybe_placeholders=True, cache=True)
""")


def _run(code_or_args, env, **kw):
    args = [sys.executable, "-c", code_or_args] if isinstance(code_or_args, str) else \
        [sys.executable, "-m", "specc", *code_or_args]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_planted_lark_cache_in_tmpdir_is_never_unpickled(tmp_path) -> None:
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(shared_tmp), "SPECC_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT)}
    assert _run(LARK_CACHE, env).returncode == 0  # what old specc did: Lark's own cache file, in $TMPDIR
    planted = list(shared_tmp.glob(".lark_cache_*"))
    assert planted, "Lark wrote no cache file to plant over"
    marker = tmp_path / "ran"
    for p in planted:
        p.write_bytes(pickle.dumps(_Plant(marker)))
    out = _run(["check", str(ROOT / "specs" / "mlp.nn")], env)
    assert out.returncode == 0, out.stderr
    assert not marker.exists(), "specc unpickled a planted Lark cache from $TMPDIR"
    assert set(shared_tmp.glob(".lark_cache_*")) == set(planted)


def test_parser_tables_are_kept_only_in_the_checked_cache(tmp_path) -> None:
    env = {**os.environ, "SPECC_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    assert _run(["check", str(ROOT / "specs" / "mlp.nn")], env).returncode == 0
    (tables,) = (tmp_path / "cache" / "parser").glob("*.pickle")
    assert tables.stat().st_mode & 0o777 == 0o600
    marker = tmp_path / "ran"
    # damaged: rebuilt with one warning
    tables.write_bytes(b"\x80\x04garbage")
    out = _run(["check", str(ROOT / "specs" / "mlp.nn")], env)
    assert out.returncode == 0 and "discarded the damaged parser tables" in out.stderr
    # planted in a cache directory that others can write: never loaded
    tables.write_bytes(pickle.dumps(_Plant(marker)))
    (tmp_path / "cache").chmod(0o777)
    out = _run(["check", str(ROOT / "specs" / "mlp.nn")], env)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    assert "not using the cache directory" in out.stderr


def test_parser_tables_not_loaded_through_a_symlink(fresh, tmp_path) -> None:
    from specc.frontend import parser

    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps(_Plant(marker)))
    tables = parser.tables_path(parser.grammar_path().read_text())
    tables.unlink(missing_ok=True)
    tables.symlink_to(evil)
    assert safefiles.read_private(tables) is None
    parser._lark.cache_clear()
    try:
        parser._lark()
    finally:
        parser._lark.cache_clear()
    assert not marker.exists()
    assert tables.is_file() and not tables.is_symlink()  # replaced by the rebuilt tables
