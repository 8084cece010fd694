"""Hoisting loop invariants out of recurrences.

In: a Graph.  Out: the Graph where every scan body computes only what
depends on its states (or on random draws):

* an equation of the consts only (``concat(W_f, W_i)``, ``W[:H]``) runs once
  before the loop and its result enters the body as a new const;
* an equation of the consts and the sequence slices (``x[t] @ W``,
  ``x[t] @ W + b``) runs once on the whole sequences before the loop
  (``[T, B, D] @ [D, H]``) and its result enters the body as a new sequence;
  a per-step output (lag 0) computed that way is no loop output any more.

How an op runs on a whole sequence is a table (:data:`SEQ_RULES`) keyed by
op; an op without a rule stays in the loop.  Elementwise ops broadcast a
const against ``[T, ...]`` as NumPy does (right-aligned), so a sequence
operand of lower rank than the result is first reshaped to ``[T, 1, ..., *]``.
Constants (``full``) stay in the body as well (a copy goes out when a
hoisted equation needs it): they cost next to nothing, and
:func:`~specc.transforms.passes.fold.fold_constants` moves them in anyway.  Nested recurrences are hoisted into their enclosing body
first.  The new equations carry the spans of the equations they come from
and the new values their names.
"""

from __future__ import annotations

from collections.abc import Callable

from ...ir.dims import Dim
from ...ir.core import Eqn, Graph, TensorType, Value
from ...ops import REGISTRY, ShapeRuleError
from ...ir.builder import GraphBuilder
from .rewrite import CONST, SEQ, VARYING, eqn_class, fresh, new_graph, prune_eqns, resolve, substitute, with_inputs, with_params
from ...ir.scan import Scan, unpack_scan


def hoist_scan_invariants(graph: Graph) -> Graph:
    subst: dict[int, Value] = {}
    eqns: list[Eqn] = []
    for e in graph.eqns:
        e = with_inputs(e, [resolve(v, subst) for v in e.inputs])
        if e.op == "scan":
            e = _hoist_nested(e)
            before, e, replaced = _hoist(e)
            eqns.extend(before)
            subst.update(replaced)
            if e is None:
                continue
        eqns.append(e)
    return new_graph(graph, graph.inputs, eqns, [resolve(v, subst) for v in graph.outputs])


def _hoist_nested(e: Eqn) -> Eqn:
    """Hoist the invariants of the recurrences inside ``e``'s body into that body."""
    body = hoist_scan_invariants(e.params["body"])
    return e if body is e.params["body"] else with_params(e, body=body)


# A rule builds, with the emitter, an op on whole sequences: it gets the equation, its
# operands (outer values: [T, ...] for sequences, as-is for consts), which operands are
# sequences, and the length T; it returns the outputs ([T, ...]) or None (stay in the loop).
SeqRule = Callable[[GraphBuilder, Eqn, list[Value], list[bool], Dim], "list[Value] | None"]
SEQ_RULES: dict[str, SeqRule] = {}


def seq_rule(*ops: str) -> Callable[[SeqRule], SeqRule]:
    def register(fn: SeqRule) -> SeqRule:
        for op in ops:
            SEQ_RULES[op] = fn
        return fn

    return register


def _same_op(em: GraphBuilder, e: Eqn, ins: list[Value], **params) -> list[Value]:
    return em.emit(e.op, ins, {**e.params, **params}, names=[v.name for v in e.outputs])


def _elementwise_rule(em: GraphBuilder, e: Eqn, ins: list[Value], is_seq: list[bool], length: Dim) -> list[Value]:
    rank = max(v.type.rank for v in e.outputs)
    args = []
    for v, s in zip(ins, is_seq):
        if s and v.type.rank - 1 < rank:  # [T, *s] -> [T, 1, ..., *s]: right-aligned against the consts
            shape = (length,) + (Dim.const(1),) * (rank - v.type.rank + 1) + tuple(v.shape[1:])
            v = em.emit1("reshape", [v], {"shape": shape}, name=v.name)
        args.append(v)
    return _same_op(em, e, args)


@seq_rule("matmul")
def _matmul_rule(em, e, ins, is_seq, length):
    a, b = e.inputs
    if is_seq == [True, False] and b.type.rank <= 2:
        return _same_op(em, e, ins)  # [T, ..., K] @ [K, N]
    if is_seq == [True, True] and a.type.rank == b.type.rank >= 2:
        return _same_op(em, e, ins)  # batched over T
    return None


@seq_rule("getitem")
def _getitem_rule(em, e, ins, is_seq, length):
    return _same_op(em, e, ins, index=(("slice", None, None, 1),) + tuple(e.params["index"]))


@seq_rule("reshape")
def _reshape_rule(em, e, ins, is_seq, length):
    return _same_op(em, e, ins, shape=(length, *e.params["shape"]))


@seq_rule("transpose")
def _transpose_rule(em, e, ins, is_seq, length):
    return _same_op(em, e, ins, perm=(0, *(p + 1 for p in e.params["perm"])))


@seq_rule("sum", "mean", "max")
def _reduce_rule(em, e, ins, is_seq, length):
    return _same_op(em, e, ins, axes=tuple(a + 1 for a in e.params["axes"]))


@seq_rule("softmax", "log_softmax")
def _axis_rule(em, e, ins, is_seq, length):
    return _same_op(em, e, ins, axis=e.params["axis"] % e.inputs[0].type.rank + 1)


@seq_rule("concat")
def _concat_rule(em, e, ins, is_seq, length):
    if not all(is_seq):
        return None
    return _same_op(em, e, ins, axis=e.params["axis"] % e.inputs[0].type.rank + 1)


@seq_rule("take")
def _take_rule(em, e, ins, is_seq, length):
    return _same_op(em, e, ins) if is_seq == [False, True] else None  # table[ids[t]] -> table[ids]


def _seq_rule(op: str) -> SeqRule | None:
    if op in SEQ_RULES:
        return SEQ_RULES[op]
    spec = REGISTRY[op]
    return _elementwise_rule if spec.elementwise and not spec.random and op != "full" else None


def _hoist(eqn: Eqn, keep: frozenset[int] = frozenset()) -> tuple[list[Eqn], Eqn | None, dict[int, Value]]:
    """(equations before the loop, the new scan or None if nothing is left, outer substitutions).

    ``keep``: ids of sequence-reading elementwise equations to leave in the loop (see
    :func:`_not_worth_hoisting`); the first try finds them and a second one leaves them.
    """
    scan = unpack_scan(eqn)
    length = scan.length
    cls: dict[int, str] = {}
    outer: dict[int, Value] = {}  # body value -> its outer value (consts as they are, sequences [T, ...])
    for o, i in scan.consts:
        cls[i.uid], outer[i.uid] = CONST, o
    for o, i in scan.seqs:
        cls[i.uid], outer[i.uid] = SEQ, o
    for s in scan.states:
        for v in s.lagged:
            cls[v.uid] = VARYING
    em = GraphBuilder(splice=True)
    body: list[Eqn] = []
    local: set[int] = set()  # constants (full): copied out where needed, and also kept in the loop
    for e in scan.eqns:
        c = eqn_class(e, cls)
        outs = _outside(em, e, c, cls, outer, length) if c != VARYING and id(e) not in keep else None
        if outs is None:
            c = VARYING
        else:
            outer.update({v.uid: o for v, o in zip(e.outputs, outs)})
        if c == VARYING or e.op == "full":
            body.append(e)
        if e.op == "full":
            local.add(e.outputs[0].uid)
        for v in e.outputs:
            cls[v.uid] = c
    if len(body) == len(scan.eqns):
        return [], eqn, {}
    if not keep:
        stay = _not_worth_hoisting(scan, cls)
        if stay:
            return _hoist(eqn, stay)

    # what the loop still reads of the hoisted values: each becomes a const or a sequence
    consts = {i.uid: (o, i) for o, i in scan.consts}
    seqs = {i.uid: (o, i) for o, i in scan.seqs}
    inner: dict[int, Value] = {}
    substituted: dict[int, Value] = {}
    states, replaced = [], {}
    for s in scan.states:
        if s.lag == 0 and cls.get(s.out.uid) == SEQ:
            replaced[s.result.uid] = outer[s.out.uid]  # a per-step output computed on the whole sequence
        else:
            states.append(s)
    needed = [v for e in body for v in e.inputs] + [s.out for s in states]
    for v in needed:
        if (cls.get(v.uid) in (CONST, SEQ) and v.uid not in local and v.uid not in consts and v.uid not in seqs
                and v.uid not in inner):
            inner[v.uid] = fresh(v)
            target = consts if cls[v.uid] == CONST else seqs
            target[v.uid] = (outer[v.uid], inner[v.uid])
            substituted[v.uid] = inner[v.uid]
    before = prune_eqns(em.eqns, [o for o, _i in (*consts.values(), *seqs.values())] + list(replaced.values()))
    if not states:
        return before, None, replaced
    for s in states:
        s.out = resolve(s.out, substituted)
    body = substitute(body, substituted)
    used = {v.uid for e in body for v in e.inputs} | {s.out.uid for s in states}
    new = Scan([c for c in consts.values() if c[1].uid in used], [q for q in seqs.values() if q[1].uid in used],
               states, body, scan.params, scan.loc)
    return before, new.pack(), replaced


def _not_worth_hoisting(scan: Scan, cls: dict[int, str]) -> frozenset[int]:
    """Elementwise equations on sequences that only feed the loop: better left in it.

    Run on whole sequences, ``f * (1 - f)`` or ``x[t] @ W + b``'s ``+ b`` would write a
    [T, ...] array that the loop then reads back: two passes over memory, and one more loop
    nest to compile, for work the loop does in its own pass.  Hoisting pays for what feeds
    an op that batches better over the whole sequence (a matmul, a reduction, ...) and for a
    per-step output the loop no longer has to produce.
    """
    made_by = {v.uid: e for e in scan.eqns for v in e.outputs}
    wanted: set[int] = set()  # ids of sequence equations whose results are needed outside
    todo = [s.out for s in scan.states if s.lag == 0 and cls.get(s.out.uid) == SEQ]
    todo += [v for e in scan.eqns if cls.get(e.outputs[0].uid) == SEQ and not _elementwise(e) for v in e.inputs]
    todo += [e.outputs[0] for e in scan.eqns if cls.get(e.outputs[0].uid) == SEQ and not _elementwise(e)]
    while todo:
        v = todo.pop()
        e = made_by.get(v.uid)
        if e is None or id(e) in wanted or cls.get(v.uid) != SEQ:
            continue
        wanted.add(id(e))
        todo.extend(e.inputs)
    return frozenset(id(e) for e in scan.eqns
                     if cls.get(e.outputs[0].uid) == SEQ and _elementwise(e) and id(e) not in wanted)


def _elementwise(e: Eqn) -> bool:
    return REGISTRY[e.op].elementwise and e.op != "full"


def _outside(em: GraphBuilder, e: Eqn, c: str, cls: dict[int, str], outer: dict[int, Value], length: Dim
             ) -> list[Value] | None:
    """Emit ``e`` before the loop (on whole sequences if it reads any); its outer outputs, or None."""
    ins = [outer[v.uid] for v in e.inputs]
    if c == CONST:
        return em.emit(e.op, ins, e.params, loc=e.loc, names=[v.name for v in e.outputs])
    rule = _seq_rule(e.op)
    if rule is None:
        return None
    is_seq = [cls[v.uid] == SEQ for v in e.inputs]
    trial = GraphBuilder(loc=e.loc, splice=True)
    try:
        outs = rule(trial, e, ins, is_seq, length)
    except ShapeRuleError:
        return None
    if outs is None or [o.type for o in outs] != [TensorType(v.dtype, (length, *v.shape)) for v in e.outputs]:
        return None
    em.extend(trial.eqns)
    return outs
