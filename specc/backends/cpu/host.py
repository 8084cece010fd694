"""Data movement at the top level of a CPU kernel, done by its Python entry with NumPy.

In: a ``concat``, ``getitem``, ``getitem_grad`` or ``transpose`` equation at the entry's top level
(not inside a recurrence or a loop), and the :class:`~specc.backends.cpu.emitter.CpuEmitter`.
Out: one NumPy statement of the Python entry between two ``@njit`` parts, and True; or False when
the equation is not a whole-array copy between arrays (an input that is a view or a literal, a
getitem that loops read in place), and the shared loop rule (:mod:`specc.backends.loops`) writes it.

Why: a copy costs NumPy a ``memcpy`` and Numba a loop nest to compile.  Numba compiles each
loop nest in about 0.1 s and each ``@njit`` function in about 0.1 s more, in every process that
meets a new spec; the backward graph of an LSTM has a dozen such copies (the weight gradients cut
out of one product's result, the states shifted by one step, the weights stacked for one product
per step).  The same copies run as fast from NumPy (they are memory-bound), and a spec's compiled
code is left with its arithmetic: fused elementwise loops, reductions, losses and recurrences.
The meaning is the loop rules': NumPy's index rules, checked (an index out of range raises
``IndexError`` from :func:`specc.backends.cpu.runtime.host_index`), and every result a new
C-contiguous array (never a view that a later write could reach through).
"""

from __future__ import annotations

from typing import Any, Callable

from ...ir.core import Eqn, Value

CpuEmitter = Any  # specc.backends.cpu.emitter.CpuEmitter, which takes these rules (not imported: no cycle)
HostRule = Callable[[CpuEmitter, Eqn], bool]
HOST_RULES: dict[str, HostRule] = {}


def host_rule(op: str) -> Callable[[HostRule], HostRule]:
    def register(rule: HostRule) -> HostRule:
        HOST_RULES[op] = rule
        return rule

    return register


def _arrays(e: CpuEmitter, values: tuple[Value, ...]) -> bool:
    """Whether every value is an array variable (not a view, a literal or a loop's scalar)."""
    return all(v.uid in e.arrays and v.uid not in e.dest for v in values)


def _numpy(e: CpuEmitter, v: Value) -> tuple[str, list[str]] | None:
    """``v`` as a NumPy expression of the entry, and the variables it reads: an array variable, or a view of
    one (a getitem or transpose that loops would read in place, see :data:`HOST_VIEWS`); else None."""
    if v.uid in e.arrays and v.uid not in e.dest:
        return e.peek(v), [e.peek(v)]
    view = e.host_views.get(v.uid)
    return view() if view is not None else None


def _index(e: CpuEmitter, x: Value, index, part: Value) -> tuple[str, list[str]]:
    """The NumPy index text of ``x[index]`` (giving ``part``'s shape), and the helpers it calls."""
    items, helpers = _index_items(e, x, index, part)
    return ", ".join(items) or "()", helpers


def _index_items(e: CpuEmitter, x: Value, index, part: Value) -> tuple[list[str], list[str]]:
    """:func:`_index`, one item per indexed axis."""
    items, helpers = [], []
    axis = 0
    for ax, entry in enumerate(index):
        n = x.shape[ax]
        if entry[0] == "int":
            k = entry[1]
            if k.is_const and n.is_const and -n.value <= k.value < n.value:
                items.append(str(k.value % n.value))
            else:
                items.append(f"host_index({e.dim(k)}, {e.dim(n)})")
                helpers.append("host_index")
            continue
        _, lo, _hi, step = entry
        count = part.shape[axis]
        axis += 1
        if lo is None:
            start = "0"
        elif lo.is_const and n.is_const:
            start = str(slice(lo.value, None, step).indices(n.value)[0])
        else:
            start = f"host_slice_start({e.dim(lo)}, {e.dim(n)}, {e.dim(count)}, {step})"
            helpers.append("host_slice_start")
        if start == "0" and count == n and step == 1:
            items.append(":")
            continue
        if not start.isdigit():  # a call: bind it once (its result is the start of the slice)
            name = e.temp("start")
            e.before_part(name, start)
            start = name
        if start.isdigit() and count.is_const:  # all known: the numbers themselves
            stop = str(int(start) + (count.value - 1) * step + 1 if count.value else int(start))
        else:
            length = e.dim_atom(count) if step == 1 else f"({e.dim_atom(count)} - 1) * {step} + 1"
            stop = length if start == "0" else f"{start} + {length}"
        items.append(f"{start}:{stop}" + (f":{step}" if step != 1 else ""))
    return items, helpers


def _done(e: CpuEmitter, out: Value, statement: str, why: str, reads: list[str]) -> bool:
    e.host(statement, why, reads)
    e.host_ready.add(e.peek(out))
    return True


@host_rule("concat")
def concat(e: CpuEmitter, eqn: Eqn) -> bool:
    (out,) = eqn.outputs
    parts = [_numpy(e, v) for v in eqn.inputs]
    if any(p is None for p in parts) or out.uid in e.dest:
        return False
    o = e.host_define(out)
    axis = eqn.params["axis"] % out.type.rank
    if out.type.rank == 2 and all(v.uid in e.host_t for v in eqn.inputs):  # (concat_0 a_i.T).T = concat_1 a_i
        makes = [e.host_t[v.uid] for v in eqn.inputs]
        e.host_t[out.uid] = lambda: f"np.concatenate(({', '.join(m() for m in makes)}), axis={1 - axis})"
    reads = [name for _, names in parts for name in names]
    texts = [text for text, _ in parts]
    # into a C array made before: NumPy would give the parts' own order (F for transposes)
    e.before_part(o, f"np.empty({e.host_expr(lambda: e.shape(out.shape))}, {e.np_dtype(out.dtype)})")
    return _done(e, out, f"np.concatenate(({', '.join(texts)}{',' * (len(texts) == 1)}), axis={axis}, out={o})",
                 "concat: one NumPy copy per part", [*reads, o])


def _view_of(e: CpuEmitter, x: Value, out: Value, make: Callable[[str], str]) -> None:
    """Note how the entry would write the view ``out`` of ``x`` (built only if a NumPy copy reads it)."""
    if x.uid in e.arrays or x.uid in e.host_views:
        def view() -> tuple[str, list[str]]:
            src, reads = _numpy(e, x)
            return make(src if src.isidentifier() else f"({src})"), reads

        e.host_views[out.uid] = view


@host_rule("getitem")
def getitem(e: CpuEmitter, eqn: Eqn) -> bool:
    (x,), (out,) = eqn.inputs, eqn.outputs
    if out.uid not in e.materialize:  # a view that loops read in place (no code)
        def view(src: str) -> str:
            index, helpers = e.host_expr(lambda: _index(e, x, eqn.params["index"], out))
            e.runtime_calls.update(helpers)
            return f"{src}[{index}]"

        _view_of(e, x, out, view)
        return False
    if not _arrays(e, (x,)) or out.uid in e.dest:
        return False  # a copy into a recurrence's row
    src = e.peek(x)
    items, helpers = e.host_expr(lambda: _index_items(e, x, eqn.params["index"], out))
    index = ", ".join(items) or "()"
    e.runtime_calls.update(helpers)
    o = e.host_define(out)
    made = e.host_t.get(x.uid)
    if made is not None and x.type.rank == out.type.rank == 2 and len(items) <= 2:  # x[i, j].T = x.T[j, i]
        rows, cols = (items + [":"])[:2]
        e.host_t[out.uid] = lambda: f"({made()})[{cols}, {rows}]"
    copy = f"{src}[{index}].copy()" if out.type.rank else f"np.array({src}[{index}])"
    return _done(e, out, f"{o} = {copy}", "getitem: a NumPy copy of the selected elements", [src])


@host_rule("getitem_grad")
def getitem_grad(e: CpuEmitter, eqn: Eqn) -> bool:
    (dy,), (out,) = eqn.inputs, eqn.outputs
    if not _arrays(e, (dy,)) or out.uid in e.dest:
        return False
    src = e.peek(dy)
    shape = e.host_expr(lambda: e.shape(out.shape))
    index, helpers = e.host_expr(lambda: _index(e, out, eqn.params["index"], dy))
    e.runtime_calls.update(helpers)
    o = e.host_define(out)
    e.before_part(o, f"np.zeros({shape}, {e.np_dtype(out.dtype)})")
    return _done(e, out, f"{o}[{index}] = {src}", "getitem_grad: the cotangent copied into zeros", [src, o])


@host_rule("transpose")
def transpose(e: CpuEmitter, eqn: Eqn) -> bool:
    (x,), (out,) = eqn.inputs, eqn.outputs
    perm = ", ".join(map(str, eqn.params["perm"])) + ("," if len(eqn.params["perm"]) == 1 else "")
    if out.uid in e.product_transposes:
        return False  # x.T, a view for BLAS
    if out.uid not in e.materialize:  # a view that loops read in place
        _view_of(e, x, out, lambda src: f"{src}.transpose(({perm}))")
        if out.type.rank == 2 and (x.uid in e.arrays or x.uid in e.host_views):  # its transpose is x itself
            e.host_t[out.uid] = lambda: _numpy(e, x)[0]
        return False
    if not _arrays(e, (x,)) or out.uid in e.dest:
        return False
    src = e.peek(x)
    o = e.host_define(out)
    return _done(e, out, f"{o} = {src}.transpose(({perm})).copy()", "transpose: a NumPy copy", [src])


def transpose_text(e: CpuEmitter, v: Value) -> str | None:
    """A NumPy expression of ``v.T`` from what ``v`` was made of (``concat`` of transposes, a slice of such),
    reading only arrays the entry already holds; None when there is none.  The LSTM's backward recurrence
    needs ``W_h`` (to multiply by ``W_h.T`` with matmul_nt) where the graph holds ``concat(W_i.T)[:, :H]``:
    one row-contiguous copy instead of a strided concatenation, a copy and a transposition."""
    make = e.host_t.get(v.uid)
    return make() if make is not None else None


__all__ = ["HOST_RULES", "transpose_text"]
