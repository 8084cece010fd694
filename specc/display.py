"""Short text and HTML summaries of a model and of a training history (for the REPL and Jupyter).

In: a :class:`~specc.api.Model` or a :class:`~specc.training.train.History`.
Out: a one-line ``repr`` and a small HTML table (``_repr_html_``): a model's inputs, outputs,
parameters and recurrences; a run's epochs, final numbers, best epoch and files.
Every piece of user text (names from the spec, paths) is escaped here, in :func:`_e`.
"""

from __future__ import annotations

import html
from typing import Any

# Model and History are duck-typed here (no import of specc.api or specc.training.train, which
# import this module): a Model has name, inputs, outputs, param_shapes, n_params, program, source,
# target, dtype; a History has model, records, final(), best_epoch, stopped, seconds, files...
Model = History = Any


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{_e(k)}</th><td style='text-align:left'>{v}</td></tr>"
                   for k, v in rows)
    return f"<table><caption style='text-align:left'><b>{_e(title)}</b></caption>{body}</table>"


def _recurrences(model: Model) -> list[str]:
    out = []
    for e in model.program.graph.walk():
        if e.op == "scan":
            states = ", ".join(n for n, _k in e.params["states"])
            where = f"line {e.loc.line}" if e.loc is not None else "?"
            out.append(f"{where}: over {e.params['length']} steps ({states})")
    return out


def model_repr(model: Model) -> str:
    ins = ", ".join(f"{n}: {dt}{_shape(s)}" for n, (dt, s) in model.inputs.items())
    outs = ", ".join(model.outputs)
    rec = len(_recurrences(model))
    return (f"<specc.Model {model.name}({ins}) -> {outs}; {len(model.param_shapes)} params "
            f"({model.n_params:,} numbers){f', {rec} recurrence' + ('s' if rec > 1 else '') if rec else ''}; "
            f"target={model.target}, dtype={model.dtype}>")


def model_html(model: Model) -> str:
    def typed(items):
        return "<br>".join(f"<code>{_e(n)}: {_e(dt)}{_e(_shape(s))}</code>" for n, (dt, s) in items.items())

    shapes = model.param_shapes
    params = "<br>".join(f"<code>{_e(n)} {_e(_shape(s))}</code>" for n, s in shapes.items())
    rows = [("inputs", typed(model.inputs)), ("outputs", typed(model.outputs)),
            ("parameters", f"{len(shapes)} tensors, {model.n_params:,} numbers<br>{params}")]
    rec = _recurrences(model)
    rows.append(("recurrences", "<br>".join(_e(r) for r in rec) if rec else "none"))
    rows.append(("target", f"{_e(model.target)}, {_e(model.dtype)}"))
    source = model.source.name if model.source is not None else "?"
    return _table(f"specc model {model.name} ({source})", rows)


def _fmt(key: str, value: float) -> str:
    return f"{value:.2%}" if key.endswith("accuracy") else f"{value:.4g}"


def history_repr(h: History) -> str:
    final = ", ".join(f"{k} {_fmt(k, v)}" for k, v in h.final().items())
    extra = f"; best epoch {h.best_epoch}" if h.best_epoch is not None else ""
    stopped = "; stopped early" if h.stopped else ""
    n = len(h.records)
    return f"<specc.History {h.model}: {n} epoch{'s' if n != 1 else ''}{stopped}{extra}; {final or 'no epochs'}>"


def history_html(h: History) -> str:
    rows = [("epochs", f"{len(h.records)}" + (f" ({_e(h.stopped)})" if h.stopped else "")),
            ("time", f"{h.seconds:.1f} s" + (f" (+{h.compile_seconds:.1f} s compiling)" if h.compile_seconds else ""))]
    rows += [(k, _e(_fmt(k, v))) for k, v in h.final().items()]
    if h.best_epoch is not None:
        rows.append(("best epoch", str(h.best_epoch)))
    for label, path in (("checkpoint", h.checkpoint), ("best checkpoint", h.best_checkpoint), *h.files.items()):
        if path:
            rows.append((label, f"<code>{_e(path)}</code>"))
    cols = ["epoch", "lr", "train loss", *(f"train {k}" for k in (h.records[0].train if h.records else {})),
            *(f"val {k}" for k in (h.records[0].val if h.records else {}))]
    lines = []
    for r in h.records:
        cells = [str(r.epoch), f"{r.lr:.3g}", f"{r.train_loss:.4f}", *(_fmt(k, v) for k, v in r.train.items()),
                 *(_fmt(k, v) for k, v in r.val.items())]
        lines.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    curve = ("<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>" + "".join(lines) + "</table>"
             if lines else "")
    return _table(f"specc training run: {h.model}", rows) + curve
