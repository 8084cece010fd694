"""User text in generated source is inert, on every target (specc.backends.text: one escape function).

A spec's file name is written in the comment over each equation's code and the module docstring names
the module; value and dim names become identifiers.  Hostile versions of them (line breaks of every
kind, quotes, backslashes, Python keywords and the generated code's own names) must leave the source
compiling with exactly the syntax tree of the same graph under harmless names: no extra statement.
"""

from __future__ import annotations

import ast
import itertools

import pytest

import specc
from specc.backends import BACKENDS, generator
from specc.backends.text import escape
from specc.ir.core import Eqn, Graph, Value
from specc.transforms.passes import optimize

SPEC = """\
dim T, B

model hostile(x: f32[T, B, 4], y: i32[B]) {
  param W: [4, 6] = glorot
  param U: [6, 6] = orthogonal
  u = x @ W
  recur t over x {
    init h = zeros([B, 6])
    h[t] = tanh(u[t] + h[t-1] @ U)
  }
  loss = cross_entropy(dense(h[-1], 3), y)
  output h
}
"""
PAYLOAD = "__import__('os').system('echo pwned')"
HOSTILE_FILES = [
    f"a\r{PAYLOAD}\r#.nn",  # a carriage return ends a comment for Python's tokenizer
    f"a\n{PAYLOAD}\n#.nn",
    f'a"""\\N{PAYLOAD}\x0c\x0b\u2028\x85.nn',  # docstring quotes, an escape, other line breaks
]
HOSTILE_NAMES = [f"x\n{PAYLOAD}", f"x\r{PAYLOAD}#", '"""', "\\N", "np", "run", "threads", "cuda", "tid", "lambda",
                 "i0", "1x", "", "__import__", "math"]
TARGETS = [name for name, b in BACKENDS.items() if b.compiles]


def rename(graph: Graph, names) -> Graph:
    """The same graph with every value renamed by ``names`` (an iterator), bodies included."""
    new: dict[int, Value] = {}

    def value(v: Value) -> Value:
        if v.uid not in new:
            new[v.uid] = Value(v.type, next(names))
        return new[v.uid]

    def walk(g: Graph) -> Graph:
        ins = tuple(value(v) for v in g.inputs)
        eqns = []
        for e in g.eqns:
            params = {k: walk(p) if isinstance(p, Graph) else p for k, p in e.params.items()}
            eqns.append(Eqn(e.op, tuple(value(v) for v in e.inputs), tuple(value(v) for v in e.outputs), params,
                            e.loc))
        return Graph(ins, tuple(eqns), tuple(value(v) for v in g.outputs))

    return walk(graph)


def graphs(path) -> list[Graph]:
    model = specc.compile(path, target="interp", dtype="float32")  # a Path: a file name with a newline too
    return [model.program.graph, optimize(model.grad_program().graph)]


def shape_of(source: str) -> list[str]:
    """The syntax tree's node types in order: equal trees up to names, strings and comments."""
    return [type(n).__name__ for n in ast.walk(ast.parse(source))]


def assert_inert(hostile: str, benign: str) -> None:
    compile(hostile, "<generated>", "exec")
    assert shape_of(hostile) == shape_of(benign)
    tree = ast.parse(hostile)
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not {"__import__", "os.system"} & calls


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("file_name", HOSTILE_FILES, ids=["cr", "lf", "quotes"])
def test_hostile_file_name_stays_in_its_comment(tmp_path, target: str, file_name: str) -> None:
    (tmp_path / "benign.nn").write_text(SPEC)
    (tmp_path / file_name).write_text(SPEC)
    for hostile, benign in zip(graphs(tmp_path / file_name), graphs(tmp_path / "benign.nn")):
        h = generator(target).generate(hostile, "hostile").source
        b = generator(target).generate(benign, "hostile").source
        assert PAYLOAD in h  # shown, escaped, in the comment over each equation
        assert_inert(h, b)


@pytest.mark.parametrize("target", TARGETS)
def test_hostile_identifiers_become_identifiers(tmp_path, target: str) -> None:
    (tmp_path / "spec.nn").write_text(SPEC)
    for graph in graphs(tmp_path / "spec.nn"):
        hostile = rename(graph, itertools.cycle(HOSTILE_NAMES))
        benign = rename(graph, (f"v{k}" for k in itertools.count()))
        h = generator(target).generate(hostile, f'mod"""\r{PAYLOAD}').source  # a hostile module name too
        b = generator(target).generate(benign, "mod").source
        assert_inert(h, b)
        args = ast.parse(h).body[-1].args.args  # the entry's parameters: every name an identifier, none twice
        assert len({a.arg for a in args}) == len(args)


def test_escape_keeps_printable_text_and_escapes_the_rest() -> None:
    assert escape('lstm.nn:3 h[t] = f(x, name="ln")  # \\ ok') == 'lstm.nn:3 h[t] = f(x, name="ln")  # \\ ok'
    assert escape("a\rb\nc\x00d\x0ce\u2028f\x85") == "a\\rb\\nc\\x00d\\x0ce\\u2028f\\x85"
    assert escape('"""\\N', quoted=True) == '\\"\\"\\"\\\\N'
    for text in ("a\rb", '"""', "\\", "\u2029\x1c"):
        line = escape(text, quoted=True)
        assert len(line.splitlines()) == 1 and line.isprintable()
        assert ast.literal_eval(f'"""{line}"""') == text  # inside a docstring it reads back as the text
