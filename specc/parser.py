"""Text to typed AST.

In: a :class:`~specc.errors.Source` (file name and text of a .nn file).
Out: an :class:`specc.ast.Module`, or a :class:`~specc.errors.ParseError`
pointing at the offending token with what the parser expected there.

The grammar is ``grammar/specc.lark`` (LALR, ``propagate_positions``).  An
installed wheel carries a copy at ``specc/grammar/specc.lark``; a source tree
or an editable install reads the top-level file.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast as A
from .errors import ParseError, Source, Span


def grammar_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "grammar" / "specc.lark", here.parent / "grammar" / "specc.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("specc.lark not found next to the specc package nor in ../grammar")


@functools.cache
def _lark() -> Lark:
    return Lark(grammar_path().read_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(source: Source) -> A.Module:
    try:
        tree = _lark().parse(source.text)
    except UnexpectedInput as e:
        raise _parse_error(source, e) from None
    try:
        return _ToAst(source).transform(tree)
    except VisitError as e:  # an error raised inside a transformer callback
        if isinstance(e.orig_exc, ParseError):
            raise e.orig_exc from None
        raise


# ---- Lark errors to ParseError ---------------------------------------------------------
_TOKEN_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "$END": "end of file",
}


def _describe(terminal: str) -> str:
    if terminal in _TOKEN_WORDS:
        return _TOKEN_WORDS[terminal]
    try:
        pattern = _lark().get_terminal(terminal).pattern
    except KeyError:
        return terminal
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return terminal.lower()


def _expected(names: set[str] | frozenset[str]) -> str:
    words = sorted({_describe(n) for n in names if not n.startswith("__")})
    if not words:
        return ""
    if len(words) > 8:
        words = words[:8] + ["..."]
    return "expected " + ", ".join(words)


def _parse_error(source: Source, e: UnexpectedInput) -> ParseError:
    line, col = max(getattr(e, "line", 1), 1), max(getattr(e, "column", 1), 1)
    if isinstance(e, UnexpectedCharacters):
        ch = source.text[e.pos_in_stream] if e.pos_in_stream < len(source.text) else "?"
        return ParseError(f"unexpected character {ch!r}", Span(source, line, col, line, col + 1))
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        last = source.text.rstrip().splitlines() or [""]
        n = len(last)
        span = Span(source, n, max(len(last[-1]), 1), n, max(len(last[-1]), 1) + 1)
        hint = "a '{' may be missing its '}'" if source.text.count("{") > source.text.count("}") else None
        return ParseError(f"unexpected end of file, {_expected(e.expected)}", span, hint=hint)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    width = max(len(str(tok)), 1)
    message = f"unexpected {_token_text(tok)}"
    exp = _expected(e.expected)
    if exp:
        message += f", {exp}"
    hint = None
    if tok.type == "EQUAL" and "EQUAL" not in e.expected:
        hint = "'=' starts a statement: is the previous statement missing a closing ')' or ']'?"
    return ParseError(message, Span(source, line, col, line, col + width), hint=hint)


def _token_text(tok: Token) -> str:
    if tok.type == "NAME":
        return f"name '{tok}'"
    if tok.type == "NUMBER":
        return f"number {tok}"
    return f"'{tok}'"


# ---- parse tree to AST -----------------------------------------------------------------
def _span(source: Source, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(source, 1, 1, 1, 1)
    return Span(source, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(source: Source, tok: Token) -> Span:
    return Span(source, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True, inline=True)
class _ToAst(Transformer):
    def __init__(self, source: Source):
        super().__init__()
        self.src = source

    def s(self, meta) -> Span:
        return _span(self.src, meta)

    # module level
    def start(self, meta, *items):
        return A.Module(tuple(i for i in items if i is not None), self.s(meta))

    def empty(self, meta, *_):
        return None

    def dim_decl(self, meta, *bindings):
        return A.DimDecl(tuple(bindings), self.s(meta))

    def dim_binding(self, meta, name, value):
        return A.DimBinding(str(name), value, self.s(meta))

    def use_decl(self, meta, path):
        return A.Use(str(path)[1:-1], self.s(meta))

    def layer_def(self, meta, name, *rest):
        *params, ret, body = rest
        params = tuple(p for p in params if p is not None)
        if ret is not None:
            dims, rspan = ret
            ret = A.TypeAnn(None, dims, rspan, None)
        return A.LayerDef(str(name), params, ret, body, self.s(meta), _tok_span(self.src, name))

    def tensor_param(self, meta, name, type_):
        return A.TensorParam(str(name), type_, self.s(meta))

    def size_param(self, meta, keyword, dim, default):
        return A.SizeParam(str(keyword), str(dim), default, self.s(meta))

    def option_param(self, meta, name, default):
        return A.OptionParam(str(name), default, self.s(meta))

    def model_def(self, meta, name, *rest):
        *inputs, body = rest
        return A.ModelDef(str(name), tuple(i for i in inputs if i is not None), body, self.s(meta))

    def type(self, meta, dtype, shape):
        dims, _ = shape
        dspan = _tok_span(self.src, dtype) if dtype is not None else None
        return A.TypeAnn(str(dtype) if dtype is not None else None, dims, self.s(meta), dspan)

    def shape(self, meta, *dims):
        return tuple(d for d in dims if d is not None), self.s(meta)

    def block(self, meta, *stmts):
        return tuple(s for s in stmts if s is not None)

    # statements
    def param_decl(self, meta, name, type_, init):
        return A.ParamDecl(str(name), type_, init, self.s(meta))

    def assign(self, meta, target, value):
        name, time, tspan = target
        return A.Assign(name, time, value, self.s(meta), tspan)

    def target(self, meta, name, time):
        return str(name), time, self.s(meta)

    def output_stmt(self, meta, name, value):
        return A.Output(str(name), value, self.s(meta))

    def return_stmt(self, meta, value):
        return A.Return(value, self.s(meta))

    def init_stmt(self, meta, name, value):
        return A.Init(str(name), value, self.s(meta))

    def recur(self, meta, var, over, reverse, body):
        return A.Recur(str(var), over, reverse is not None, body, self.s(meta))

    def train_block(self, meta, *items):
        return A.TrainBlock(tuple(i for i in items if i is not None), self.s(meta))

    def train_item(self, meta, key, value):
        return A.TrainItem(str(key), value, self.s(meta))

    # expressions
    def _bin(op):  # noqa: N805 - a helper that builds methods
        def method(self, meta, left, right):
            return A.BinOp(op, left, right, self.s(meta))

        return method

    add, sub, mul, div = _bin("+"), _bin("-"), _bin("*"), _bin("/")
    floordiv, matmul, pow = _bin("//"), _bin("@"), _bin("**")

    def neg(self, meta, operand):
        return A.Neg(operand, self.s(meta))

    def unary(self, meta, operand):  # unary plus
        return operand

    def index(self, meta, base, *subs):
        return A.Index(base, tuple(subs), self.s(meta))

    def slice(self, meta, start, stop, step):
        return A.Slice(start, stop, step, self.s(meta))

    def ellipsis(self, meta):
        return A.EllipsisExpr(self.s(meta))

    def number(self, meta, tok):
        text = str(tok)
        is_int = text.isdigit()
        return A.Num(int(text) if is_int else float(text), self.s(meta))

    def name(self, meta, tok):
        return A.Name(str(tok), self.s(meta))

    def string(self, meta, tok):
        return A.Str(str(tok)[1:-1], self.s(meta))

    def true(self, meta):
        return A.Bool(True, self.s(meta))

    def false(self, meta):
        return A.Bool(False, self.s(meta))

    def call(self, meta, func, *args):
        args = [a for a in args if a is not None]
        pos = tuple(a for a in args if not isinstance(a, A.Kwarg))
        kws = tuple(a for a in args if isinstance(a, A.Kwarg))
        seen_kw = False
        for a in args:
            if isinstance(a, A.Kwarg):
                seen_kw = True
            elif seen_kw:
                raise ParseError("positional argument after a keyword argument", a.span)
        return A.Call(str(func), pos, kws, self.s(meta), _tok_span(self.src, func))

    def kwarg(self, meta, name, value):
        return A.Kwarg(str(name), value, self.s(meta))

    def list(self, meta, *items):
        return A.ListExpr(tuple(i for i in items if i is not None), self.s(meta))
