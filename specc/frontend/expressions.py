"""Expressions: names, arithmetic, subscripts and reads at a time step.

In: the AST of an expression and the frame it is evaluated in.
Out: an IR :class:`~specc.ir.core.Value` emitted into the frame's builder
for a tensor; a Python number, :class:`~specc.ir.dims.Dim`, bool, string or
list for a compile-time value (``3``, ``H + D``, ``[B, H]``). Calls are handed
to :meth:`Context.call <specc.frontend.context.Context.call>`.
"""

from __future__ import annotations

import math
from typing import Any

from . import ast as A
from .context import NESTING_MARGIN, Context, Frame, stack_room
from .diagnostics import describe_static, emit, notes_for, short, too_deep, unknown_name
from .sizes import check_size, fixed_sizes
from .syntax import lag_text, mentions, snippet, time_lag
from ..errors import ArgumentError, DTypeError, RecurrenceError, ShapeError, Span
from ..ir.builder import GraphBuilder
from ..ir.core import TensorType, Value
from ..ir.dims import Dim, as_dim

BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul"}
# comparisons give 0/1 masks of the operands' dtype (specc.ops.select); `&` and `|` combine such masks
COMPARISONS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
MASK_OPS = {"&": "mul", "|": "maximum"}


def expr(cx: Context, e: A.Expr, frame: Frame) -> Any:
    """Evaluate an expression: an IR Value for tensors, else a Python number, Dim, bool, str or list."""
    cx.nesting += 1
    try:
        if cx.nesting % 8 == 0 and stack_room() < NESTING_MARGIN:
            raise too_deep(frame, e.span)
        return _expr(cx, e, frame)
    finally:
        cx.nesting -= 1


def _expr(cx: Context, e: A.Expr, frame: Frame) -> Any:
    if isinstance(e, (A.Num, A.Bool, A.Str)):
        return e.value
    if isinstance(e, A.Name):
        return name(cx, e, frame)
    if isinstance(e, A.ListExpr):
        return [expr(cx, i, frame) for i in e.items]
    if isinstance(e, A.Neg):
        v = expr(cx, e.operand, frame)
        if isinstance(v, Value):
            return emit(cx, frame, "neg", [v], {}, e.span, [(f"operand '{snippet(e.operand.span)}'", v)],
                        display="-", snippets={v.uid: snippet(e.operand.span)})
        return static_arith("-", 0, v, e)
    if isinstance(e, A.BinOp):
        return binop(cx, e, frame)
    if isinstance(e, A.Index):
        tv = time_read(cx, e, frame)
        if tv is not None:
            return tv
        base = tensor(cx, expr(cx, e.base, frame), e.base.span, frame)
        return index_value(cx, base, e.subs, e, frame)
    if isinstance(e, A.Call):
        v = cx.call(e, frame)
        if isinstance(v, tuple):  # only `a, b = f(...)` takes several results (see unpacked)
            tensor(cx, v, e.span, frame)
        return v
    if isinstance(e, A.Unpacked):
        return unpacked(cx, e, frame)
    if isinstance(e, A.TupleExpr):
        raise ArgumentError("`a, b` is only allowed after `return` or before `=`", e.span)
    if isinstance(e, A.EllipsisExpr):
        raise ArgumentError("'...' is only allowed in subscripts and layer signatures", e.span)
    raise AssertionError(e)  # pragma: no cover


def name(cx: Context, e: A.Name, frame: Frame) -> Any:
    rc = frame.recur
    if rc is not None:
        if e.id == rc.var:
            raise RecurrenceError(f"the step index '{rc.var}' can only be used in a subscript, as in x[{rc.var}]",
                                  e.span)
        if e.id in rc.states:
            raise RecurrenceError(
                f"'{e.id}' is a state: say which step, {e.id}[{rc.var}] or {e.id}[{lag_text(rc.var, 1, rc.reverse)}]",
                e.span)
    bound = frame.scope.value(e.id)
    if bound is not None:
        return bound[0]
    info = frame.scope.dim(e.id)
    if info is not None:
        return info.value
    raise unknown_name(cx, e.id, e.span, frame)


def tensor(cx: Context, v: Any, span: Span, frame: Frame, dtype: str | None = None) -> Value:
    """Coerce a number (or a fixed size) to a constant tensor; reject other statics."""
    if isinstance(v, Value):
        return v
    if isinstance(v, tuple):  # the results of a layer returning several tensors
        names = ", ".join("abcdefgh"[i] if i < 8 else f"v{i}" for i in range(len(v)))
        raise ArgumentError(f"this call returns {len(v)} tensors, not one", span,
                            hint=f"name each of them: `{names} = {snippet(span)}`")
    if isinstance(v, Dim):
        if not v.is_const:  # its run-time value, a float in a float context (`x / T`, `sqrt(D)`)
            return emit(cx, frame, "size", [], {"dim": v, "dtype": dtype or cx.float_dtype}, span)
        v = v.value
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ArgumentError(f"expected a tensor here, got {describe_static(v)}", span)
    dt = dtype or (cx.float_dtype if isinstance(v, float) or dtype is None else "i32")
    try:
        value = float(v)
    except OverflowError:
        raise ArgumentError(f"the number {short(v)} is too large for a tensor", span) from None
    return emit(cx, frame, "full", [], {"shape": (), "value": value, "dtype": dt}, span)


def static_arith(op: str, a: Any, b: Any, e: A.Expr) -> Any:
    """Arithmetic on compile-time numbers and sizes."""
    if op not in ("+", "-", "*", "/", "//", "**") and op not in COMPARISONS and op not in MASK_OPS:  # '@' needs tensors
        raise ArgumentError(f"'{op}' needs tensors, not {describe_static(a)} and {describe_static(b)}", e.span)
    for x in (a, b):
        if isinstance(x, bool) or not isinstance(x, (int, float, Dim)):
            raise ArgumentError(f"'{op}' cannot combine {describe_static(a)} and {describe_static(b)}", e.span)
    if op not in ("+", "-", "*", "//") or isinstance(a, float) or isinstance(b, float):
        # a fixed size is an ordinary number here (`D / 2`, `D ** 0.5`)
        a, b = (x.value if isinstance(x, Dim) and x.is_const else x for x in (a, b))
    if op in COMPARISONS or op in MASK_OPS:
        if isinstance(a, Dim) or isinstance(b, Dim):
            raise ShapeError(f"'{op}' of sizes known only at run time: compare tensors instead", e.span)
        if op in MASK_OPS:
            raise ArgumentError(f"'{op}' combines masks (tensors), not numbers", e.span)
        return int({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op])
    if isinstance(a, Dim) or isinstance(b, Dim):
        if isinstance(a, float) or isinstance(b, float) or op not in ("+", "-", "*", "//"):
            raise ShapeError(f"sizes only combine with integers through + - * //, not '{op}'", e.span)
        a, b = as_dim(a), as_dim(b)
        if op == "//":
            if not b.is_const or b.value <= 0:
                raise ShapeError("sizes can only be divided by a positive integer", e.span)
        return {"+": a + b, "-": a - b, "*": a * b, "//": a // b if op == "//" else None}[op]
    if op in ("/", "//") and b == 0 or op == "**" and a == 0 and b < 0:
        raise ArgumentError("division by zero", e.span)
    if op == "**" and abs(a) > 1 and b > 0 and b * math.log2(abs(a)) > 1024:
        raise ArgumentError(f"'{op}' overflows", e.span)
    try:
        out = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
               "//": lambda: a // b, "**": lambda: a ** b}[op]()
    except OverflowError:
        raise ArgumentError(f"'{op}' overflows", e.span) from None
    if isinstance(out, complex):
        raise ArgumentError(f"'{op}' gives a complex number", e.span)
    return out


def binop(cx: Context, e: A.BinOp, frame: Frame) -> Any:
    """``a + b + c + ...``: the left spine is walked in a loop, so that a long sum is not deep recursion."""
    spine = [e]
    while isinstance(spine[-1].left, A.BinOp):
        spine.append(spine[-1].left)
    acc = expr(cx, spine[-1].left, frame)
    for node in reversed(spine):
        acc = apply_binop(cx, node, acc, expr(cx, node.right, frame), frame)
    return acc


def apply_binop(cx: Context, e: A.BinOp, a: Any, b: Any, frame: Frame) -> Any:
    """``a op b`` for the evaluated operands of ``e``."""
    if not isinstance(a, Value) and not isinstance(b, Value):
        if not _sizes_as_numbers(e.op, a, b):
            return static_arith(e.op, a, b, e)
        a = tensor(cx, a, e.left.span, frame)  # `T / 2`, `D ** 0.5` of a run-time size: a float tensor
    if e.op == "//":
        raise ArgumentError("'//' is integer division of sizes; use '/' for tensors", e.span)
    texts = (snippet(e.left.span), snippet(e.right.span))
    for t, t_text, c in ((a, texts[0], b), (b, texts[1], a)):
        if isinstance(t, Value) and not t.type.is_float and isinstance(c, float):  # 2.5 would become 2
            raise DTypeError(f"'{e.op}' mixes the {t.dtype} tensor '{t_text}' with the float {c}", e.span,
                             notes=notes_for(cx, frame, [(f"'{t_text}'", t)]),
                             hint=f"convert it with float({t_text})")
    a = tensor(cx, a, e.left.span, frame, b.dtype if isinstance(b, Value) else None)
    b = tensor(cx, b, e.right.span, frame, a.dtype)
    operands = [(f"left operand '{texts[0]}'", a), (f"right operand '{texts[1]}'", b)]
    if a.dtype != b.dtype:
        i = 0 if not a.type.is_float else 1
        raise DTypeError(f"'{e.op}' mixes {a.dtype} and {b.dtype}", e.span, notes=notes_for(cx, frame, operands),
                         hint=f"convert the {(a, b)[i].dtype} operand with float({texts[i]})")
    if e.op in COMPARISONS:
        return emit(cx, frame, "compare", [a, b], {"cmp": COMPARISONS[e.op]}, e.span, operands, display=e.op,
                    snippets={a.uid: texts[0], b.uid: texts[1]})
    return emit(cx, frame, BINOPS.get(e.op) or MASK_OPS[e.op], [a, b], {}, e.span, operands, display=e.op,
                snippets={a.uid: texts[0], b.uid: texts[1]})


def _sizes_as_numbers(op: str, a: Any, b: Any) -> bool:
    """Whether static operands hold a run-time size that must become a number: ``T / 2``, ``2.0 * T``."""
    sym = [x for x in (a, b) if isinstance(x, Dim) and not x.is_const]
    if not sym or any(isinstance(x, bool) or not isinstance(x, (int, float, Dim)) for x in (a, b)):
        return False
    return op in ("/", "**") or any(isinstance(x, float) for x in (a, b))


def index_value(cx: Context, x: Value, subs, e: A.Expr, frame: Frame) -> Value:
    """``x[i, a:b, ...]``: a getitem op (nothing for subscripts that select everything)."""
    entries: list[tuple] = []
    n_real = sum(1 for s in subs if not isinstance(s, A.EllipsisExpr))
    ell = [s for s in subs if isinstance(s, A.EllipsisExpr)]
    if len(ell) > 1:
        raise ArgumentError("at most one '...' in a subscript", ell[1].span)
    if n_real > x.type.rank:
        base = snippet(e.base.span) if isinstance(e, A.Index) else "x"
        raise ShapeError(f"{n_real} subscript{'s' * (n_real != 1)} for a tensor of rank {x.type.rank}", e.span,
                         notes=notes_for(cx, frame, [(f"'{base}'", x)]))
    for s in subs:
        if isinstance(s, A.EllipsisExpr):
            entries.extend([("slice", None, None, 1)] * (x.type.rank - n_real))
        elif isinstance(s, A.Slice):
            lo = None if s.start is None else index_dim(cx, s.start, frame)
            hi = None if s.stop is None else index_dim(cx, s.stop, frame)
            step = Dim.const(1) if s.step is None else index_dim(cx, s.step, frame)
            if not step.is_const or step.value <= 0:
                raise ShapeError("a slice step must be a positive integer", s.step.span)
            entries.append(("slice", lo, hi, step.value))
        else:
            entries.append(("int", index_dim(cx, s, frame)))
    while entries and entries[-1] == ("slice", None, None, 1):
        entries.pop()
    if not entries:
        return x
    return emit(cx, frame, "getitem", [x], {"index": tuple(entries)}, e.span,
                [(f"'{snippet(e.base.span) if isinstance(e, A.Index) else 'x'}'", x)])


def index_dim(cx: Context, s: A.Expr, frame: Frame) -> Dim:
    v = expr(cx, s, frame)
    if isinstance(v, Value):
        raise ArgumentError("subscripts must be integers or sizes, not tensors", s.span,
                            hint="use take(table, ids) to select by integer tensors")
    if isinstance(v, bool) or not isinstance(v, (int, Dim)):
        raise ArgumentError(f"a subscript must be an integer, got {describe_static(v)}", s.span)
    return check_size(as_dim(v), s.span, "a subscript")


def time_read(cx: Context, e: A.Index, frame: Frame) -> Value | None:
    """``h[t-1]``, ``h[t]`` or ``x[t]`` inside a recurrence; None if ``e`` is not one."""
    rc = frame.recur
    if rc is None or not isinstance(e.base, A.Name) or not e.subs or not mentions(e.subs[0], rc.var):
        return None
    name_, sub = e.base.id, e.subs[0]
    rest = e.subs[1:]
    if name_ in rc.states:
        k = time_lag(sub, rc.var, rc.reverse, fixed_sizes(frame.scope))
        if k is None:
            raise RecurrenceError(f"a state is read as {name_}[{rc.var}] or at an earlier step, "
                                  f"{name_}[{lag_text(rc.var, 1, rc.reverse)}]", sub.span)
        v = rc.current[name_] if k == 0 else rc.lag_inputs[(name_, k)]
    else:
        shift = input_offset(sub, rc.var)
        if shift is None:
            raise RecurrenceError(f"a sequence is read at [{rc.var}], or a fixed number of steps away "
                                  f"([{rc.var}-1], [{rc.var}+2]); '{name_}' is read at [{snippet(sub.span)}]",
                                  sub.span, hint=f"shift it outside the recurrence, e.g. "
                                                 f"{name_}_prev = concat(zeros_like({name_}[0:1]), "
                                                 f"{name_}[0:-1], axis=0), then read {name_}_prev[{rc.var}]")
        bound = frame.scope.value(name_)
        if bound is None:
            raise unknown_name(cx, name_, e.base.span, frame)
        outer = bound[0]
        if not isinstance(outer, Value):
            raise RecurrenceError(f"'{name_}' is a constant, not a sequence", e.base.span)
        if frame.builder.owns(outer) and not frame.builder.captures.get(outer.uid):
            raise RecurrenceError(f"'{name_}' is computed at this step; write {name_}, not {name_}[{rc.var}]",
                                  e.span)
        if outer.type.rank == 0 or outer.shape[0] != rc.length:
            raise ShapeError(f"'{name_}' is read at [{rc.var}], so its leading dim must be the recurrence "
                             f"length {rc.length}", e.span, notes=notes_for(cx, frame, [(name_, outer)]))
        key = outer.uid if shift == 0 else (outer.uid, shift)
        if key not in rc.seq_inputs:
            outer_b = frame.builder.parent
            seq = outer if shift == 0 else shifted(outer_b, outer_b.use(outer), shift, rc.length)
            rc.seq_inputs[key] = (seq, frame.builder.add_input(
                Value(TensorType(outer.dtype, outer.shape[1:]), f"{name_}[{snippet(sub.span)}]")))
        v = rc.seq_inputs[key][1]
    if rest:
        return index_value(cx, v, rest, e, frame)
    return v


def input_offset(sub: A.Expr, var: str) -> int | None:
    """0 for ``x[t]``, -k for ``x[t-k]``, +k for ``x[t+k]`` (k an integer literal); None otherwise."""
    if isinstance(sub, A.Name) and sub.id == var:
        return 0
    if isinstance(sub, A.BinOp) and sub.op in "+-" and isinstance(sub.left, A.Name) and sub.left.id == var \
            and isinstance(sub.right, A.Num) and isinstance(sub.right.value, int) and not isinstance(sub.right.value, bool):
        return sub.right.value if sub.op == "+" else -sub.right.value
    return None


def shifted(b: GraphBuilder, seq: Value, shift: int, length: Dim) -> Value:
    """The sequence whose row t is ``seq[t + shift]``, zeros where that falls outside ``seq``, emitted into
    ``b``, the builder around the recurrence: ``x[t-1]`` reads the row before, ``x[t+1]`` the next."""
    k = abs(shift)
    pad = b.emit1("full", [], {"shape": (Dim.const(k), *seq.shape[1:]), "value": 0.0, "dtype": seq.dtype})
    if shift < 0:
        rows = b.emit1("getitem", [seq], {"index": (("slice", None, length - k, 1),)})
        return b.emit1("concat", [pad, rows], {"axis": 0})
    rows = b.emit1("getitem", [seq], {"index": (("slice", Dim.const(k), None, 1),)})
    return b.emit1("concat", [rows, pad], {"axis": 0})


def unpacked(cx: Context, e: A.Unpacked, frame: Frame) -> Value:
    """One result of ``h, c = f(...)``: ``f(...)`` is evaluated once per scope, for its first name."""
    key = (id(frame.scope), id(e.value))
    hit = cx.unpacked.get(key)
    if hit is None:
        frame.stmt_target = e.names[0]
        frame.primary_call = e.value if isinstance(e.value, A.Call) and e.value.func in cx.mod.layers else None
        vals = cx.call(e.value, frame) if isinstance(e.value, A.Call) else expr(cx, e.value, frame)
        if not isinstance(vals, tuple):
            what = f"layer '{e.value.func}' returns" if frame.primary_call is not None else "this is"
            raise ArgumentError(f"{what} one value, but {len(e.names)} names are given", e.value.span,
                                hint=f"write {e.names[0]} = {snippet(e.value.span)}")
        if len(vals) != len(e.names):
            raise ArgumentError(f"this call returns {len(vals)} tensors, but {len(e.names)} names are given",
                                e.value.span)
        hit = cx.unpacked[key] = (frame.scope, e.value, vals)  # holding scope and node keeps their ids unique
    return hit[2][e.index]


def equation(cx: Context, target: str, e: A.Expr, frame: Frame, *, primary: bool = True) -> Value:
    """The tensor that ``target = e`` defines. A layer called as the whole of ``e`` names its parameters
    ``target.W`` (``primary``); other layer calls in ``e`` get ``target.layer.W``."""
    frame.stmt_target = target
    frame.primary_call = e if primary and isinstance(e, A.Call) and e.func in cx.mod.layers else None
    return tensor(cx, expr(cx, e, frame), e.span, frame)


def named(v: Value, frame: Frame, name: str) -> Value:
    """Give a value its spec name (SSA: a new value only if it already has another name)."""
    if v.name is None and frame.builder.owns(v) and not any(v is i for i in frame.builder.inputs):
        object.__setattr__(v, "name", frame.prefix + name)  # naming a fresh temporary; the IR is not yet published
    return v
