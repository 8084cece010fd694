"""Text to typed AST.

In: a :class:`~specc.errors.Source` (file name and text of a .nn file).
Out: an :class:`specc.frontend.ast.Module`, or a :class:`~specc.errors.ParseError`
pointing at the offending token with what the parser expected there.

The grammar is ``grammar/specc.lark`` (LALR, ``propagate_positions``).  An
installed wheel carries a copy at ``specc/grammar/specc.lark``; a source tree
or an editable install reads the top-level file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import sys
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast as A
from ..errors import ParseError, Source, Span
from ..safefiles import private_dir, read_private, warn_once, write_atomic


def grammar_path() -> Path:
    package = Path(__file__).resolve().parent.parent  # specc/
    for candidate in (package / "grammar" / "specc.lark", package.parent / "grammar" / "specc.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("specc.lark not found next to the specc package nor in ../grammar")


_OPTIONS = {"parser": "lalr", "lexer": "basic", "propagate_positions": True, "maybe_placeholders": True}
MAX_NESTING = 100  # levels of nested expressions; later stages recurse once (or more) per level
# left-associative chains (a + b + c ..., a * b * c ...): the front end walks their left spine in a
# loop, so a long sum or product is not deep; only their right operands nest
_LEFT_CHAINS = {"add", "sub", "mul", "div", "floordiv", "matmul"}
_EXPRESSIONS = {"add", "sub", "mul", "div", "floordiv", "matmul", "pow", "neg", "unary", "index", "slice",
                "call", "kwarg", "list"}


@functools.cache
def _lark() -> Lark:
    """The LALR parser.  Building its tables takes about 0.25 s, loading them about 0.01 s: they are
    kept in specc's own cache directory (checked: only this user can write it, see
    :mod:`specc.safefiles`), never in a shared temp directory (``Lark(cache=True)`` would unpickle
    a predictable name in $TMPDIR, which another user can plant)."""
    text = grammar_path().read_text(encoding="utf-8")
    path = tables_path(text)
    data = read_private(path)
    if data is not None:
        try:
            return Lark.load(io.BytesIO(data))
        except Exception:  # damaged (a full disk, a killed write of an old version): build it again
            warn_once(f"discarded the damaged parser tables {path}; rebuilding them")
    parser = Lark(text, **_OPTIONS)
    buf = io.BytesIO()
    parser.save(buf)
    try:
        write_atomic(path, buf.getvalue())
    except OSError:
        pass  # an unwritable cache: the tables are rebuilt by the next process
    return parser


def tables_path(grammar: str) -> Path:
    """Where the LALR tables of ``grammar`` are kept: keyed by the grammar, Lark's and Python's versions."""
    key = hashlib.sha256(f"{grammar}\0{lark.__version__}\0{sorted(_OPTIONS.items())}\0{sys.version}".encode())
    return private_dir("parser") / f"lalr_{key.hexdigest()[:20]}.pickle"


def parse(source: Source) -> A.Module:
    try:
        tree = _lark().parse(source.text)
    except UnexpectedInput as e:
        raise _parse_error(source, e) from None
    return _ToAst(source).transform(tree)


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
        return "expected " + ", ".join(words[:8]) + ", ..."
    if len(words) == 1:
        return "expected " + words[0]
    return "expected " + ", ".join(words[:-1]) + " or " + words[-1]


_CLOSER = {"(": ")", "[": "]", "{": "}"}
_CLOSER_TERMINAL = {"(": "RPAR", "[": "RSQB", "{": "RBRACE"}
# statements that live in a model or layer body, and items that live at the top of a file
_BODY_KEYWORDS = {"param", "state", "update", "init", "output", "return", "recur"}
_TOP_KEYWORDS = {"dim", "use", "layer", "model"}
_CHAR_HINTS = {
    "'": 'strings use double quotes: "..."',
    "%": "there is no '%' operator; the operators are + - * / // @ **",
    "!": "there are no comparisons or logic operators; the operators are + - * / // @ **",
    "&": "there are no comparisons or logic operators; the operators are + - * / // @ **",
    "|": "there are no comparisons or logic operators; the operators are + - * / // @ **",
    "<": "there are no comparisons; the operators are + - * / // @ **",
    ">": "there are no comparisons; the operators are + - * / // @ **",
}


def _unclosed(text: str, upto: int) -> list[tuple[str, int]]:
    """The brackets still open at offset ``upto`` (skipping comments and strings), innermost last."""
    stack: list[tuple[str, int]] = []
    i = 0
    while i < upto:
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = upto if nl < 0 else nl
            continue
        if c == '"':
            close = text.find('"', i + 1)
            nl = text.find("\n", i + 1)
            i = (close if close >= 0 and (nl < 0 or close < nl) else (nl if nl >= 0 else upto)) + 1
            continue
        if c in _CLOSER:
            stack.append((c, i))
        elif c in ")]}" and stack and _CLOSER[stack[-1][0]] == c:
            stack.pop()
        i += 1
    return stack


def _pos_span(source: Source, pos: int) -> Span:
    line = source.text.count("\n", 0, pos) + 1  # lines end at \n only, as Lark and Source count them
    col = pos - (source.text.rfind("\n", 0, pos) + 1) + 1
    return Span(source, line, col, line, col + 1)


def _parse_error(source: Source, e: UnexpectedInput) -> ParseError:
    line, col = max(getattr(e, "line", 1), 1), max(getattr(e, "column", 1), 1)
    if isinstance(e, UnexpectedCharacters):
        ch = source.text[e.pos_in_stream] if e.pos_in_stream < len(source.text) else "?"
        hint = _CHAR_HINTS.get(ch, "the operators are + - * / // @ **" if ch.isascii() and not ch.isalnum() else None)
        return ParseError(f"unexpected character {ch!r}", Span(source, line, col, line, col + 1), hint=hint)
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        return _eof_error(source, e)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    width = max(len(str(tok)), 1)
    message = f"unexpected {_token_text(tok)}"
    exp = _expected(e.expected)
    if exp:
        message += f", {exp}"
    err = ParseError(message, Span(source, line, col, line, col + width))
    pos = tok.start_pos if tok.start_pos is not None else len(source.text)
    _explain(err, source, tok, set(e.expected), _unclosed(source.text, pos))
    return err


def _eof_error(source: Source, e: UnexpectedInput) -> ParseError:
    n = _last_code_line(source, len(source.text))
    end = max(len(source.line(n).split("#", 1)[0].rstrip()), 1)  # the last character of code, not of a comment
    span = Span(source, n, end, n, end + 1)
    expected = set(getattr(e, "expected", None) or ())
    open_ = _unclosed(source.text, len(source.text))
    message = f"unexpected end of file, {_expected(expected)}".rstrip(", ")
    if not open_:
        return ParseError(message, span)
    ch, pos = open_[-1]
    hint = None
    if _CLOSER_TERMINAL[ch] in expected:
        message, hint = f"unexpected end of file, expected '{_CLOSER[ch]}'", f"add the missing '{_CLOSER[ch]}'"
    err = ParseError(message, span, hint=hint)
    err.related.append((f"this '{ch}' is never closed", _pos_span(source, pos)))
    return err


def _explain(err: ParseError, source: Source, tok: Token, expected: set[str], open_: list[tuple[str, int]]) -> None:
    """Add a note or hint for the common ways a statement goes wrong."""
    word = str(tok) if tok.type != "NAME" else None
    if word is None and tok.start_pos is not None:  # a keyword just before the offending name
        before = re.search(r"(?:^|[\n;{])[ \t]*([A-Za-z_]\w*)[ \t]*$", source.text[:tok.start_pos])
        word = before.group(1) if before and before.group(1) in _TOP_KEYWORDS else None
    depth = sum(1 for ch, _ in open_ if ch == "{")
    if word in _BODY_KEYWORDS and depth == 0:
        err.hint = f"`{word}` belongs inside the {{ }} of a model or layer"
        return
    if word in _TOP_KEYWORDS and depth > 0:
        err.hint = f"`{word}` belongs at the top level of the file, outside any {{ }}"
        return
    if tok.type != "NAME" and str(tok).isidentifier() and "NAME" in expected:  # a keyword where a name may stand
        err.message = f"'{tok}' is a keyword and cannot be used as a name"
        err.args = (err.message,)
        err.hint = f"rename it, e.g. '{tok}_'"
        return
    if open_ and _CLOSER_TERMINAL[open_[-1][0]] in expected:
        ch, pos = open_[-1]
        opener = _pos_span(source, pos)
        if opener.line < tok.line:  # the statement ran on into the next line
            err.related.append((f"this '{ch}' is never closed", opener))
            err.hint = f"add the missing '{_CLOSER[ch]}' at the end of line {_last_code_line(source, tok.start_pos)}"
            return
    if expected == {"OVER"}:
        err.hint = "a recurrence is written `recur t over x { ... }`"
    elif expected == {"COLON"}:
        err.hint = "give it a type, as in `x: f32[B, 8]`"
    elif tok.type == "EQUAL" and "EQUAL" not in expected:
        err.hint = "'=' starts a statement: is the previous statement missing a closing ')' or ']'?"


def _last_code_line(source: Source, pos: int) -> int:
    """The line of the last character before ``pos`` that is neither blank nor in a comment."""
    lines = Source(source.name, source.text[:pos]).lines()
    for i in range(len(lines) - 1, -1, -1):
        code = lines[i].split("#", 1)[0].strip()
        if code:
            return i + 1
    return 1


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


def _depth(node: Tree, children: list[tuple[object, int]]) -> int:
    """How deeply the later stages recurse into ``node`` (the nesting that MAX_NESTING bounds)."""
    depths = [d for _c, d in children]
    if node.data in _LEFT_CHAINS and len(depths) == 2:
        return max(depths[0], 1 + depths[1])
    return (node.data in _EXPRESSIONS) + max(depths, default=0)


@v_args(meta=True, inline=True)
class _ToAst(Transformer):
    def __init__(self, source: Source):
        super().__init__()
        self.src = source

    def transform(self, tree: Tree) -> A.Module:
        """Bottom-up, with an explicit stack rather than recursion (Lark's own transform recurses, so
        a 500-term sum overflowed Python's stack); a node nested deeper than MAX_NESTING is an error
        at its place, so that later stages, which recurse, never meet one."""
        results: list[tuple[object, int]] = []  # (transformed child, its nesting depth)
        stack: list[tuple[object, bool]] = [(tree, False)]
        while stack:
            node, expanded = stack.pop()
            if not isinstance(node, Tree):
                results.append((node, 0))
                continue
            if not expanded:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children))
                continue
            n = len(node.children)
            children = results[len(results) - n:] if n else []
            del results[len(results) - n:]
            depth = _depth(node, children)
            if depth > MAX_NESTING:
                raise ParseError(f"nesting too deep: more than {MAX_NESTING} levels of nested expressions",
                                 _span(self.src, node.meta),
                                 hint="split the expression into several equations (y1 = ...; y = y1 + ...)")
            try:
                value = self._call_userfunc(node, [c for c, _d in children])
            except VisitError as e:  # an error raised inside a callback
                if isinstance(e.orig_exc, ParseError):
                    raise e.orig_exc from None
                raise
            results.append((value, depth))
        return results[0][0]

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
        *params, rets, body = rest
        params = tuple(p for p in params if p is not None)
        rets = tuple(A.TypeAnn(None, dims, rspan, None) for dims, rspan in rets or ())
        return A.LayerDef(str(name), params, rets[0] if rets else None, body, self.s(meta),
                          _tok_span(self.src, name), rets)

    def ret_shapes(self, meta, *shapes):
        return shapes

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
        out = []
        for s in stmts:  # `h, c = f(x)` is one Assign per name
            out.extend(s if isinstance(s, list) else [s] if s is not None else [])
        return tuple(out)

    # statements
    def param_decl(self, meta, name, type_, init):
        return A.ParamDecl(str(name), type_, init, self.s(meta))

    def state_decl(self, meta, name, type_, init):
        return A.ParamDecl(str(name), type_, init, self.s(meta), state=True)

    def update_stmt(self, meta, name, value):
        return A.Update(str(name), value, self.s(meta), _tok_span(self.src, name))

    def assign(self, meta, target, value):
        name, time, tspan = target
        return A.Assign(name, time, value, self.s(meta), tspan)

    def target(self, meta, name, time):
        return str(name), time, self.s(meta)

    def output_stmt(self, meta, name, value):
        return A.Output(str(name), value, self.s(meta))

    def unpack(self, meta, *rest):
        *targets, value = rest
        names = tuple(name for name, _, _ in targets)
        return [A.Assign(name, time, A.Unpacked(value, i, names, value.span), self.s(meta), tspan)
                for i, (name, time, tspan) in enumerate(targets)]

    def return_stmt(self, meta, *values):
        if len(values) == 1:
            return A.Return(values[0], self.s(meta))
        return A.Return(A.TupleExpr(values, values[0].span.merge(values[-1].span)), self.s(meta))

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

    # masks: comparisons, `&`, `|` are binary operators; `not x` / `!x` is the builtin `not`
    or_, and_ = _bin("|"), _bin("&")

    def compare(self, meta, left, op, right):
        return A.BinOp(str(op), left, right, self.s(meta))

    def not_(self, meta, operand):
        return A.Call("not", (operand,), (), self.s(meta), self.s(meta))

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
        try:
            value = int(text) if text.isdigit() else float(text)
        except ValueError:  # more digits than Python converts
            raise ParseError(f"the number {text[:8]}... is too long", self.s(meta)) from None
        return A.Num(value, self.s(meta))

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
