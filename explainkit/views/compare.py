"""What the method comparison shows: the parameters each method ran with, and rows aligned by unit.

Each compared map is drawn on one shared scale (every map divided by its total |attribution|). Above each
map its caption names the method and the parameters it actually ran with (``Explanation.params``, the
validated values: the form's where it was opened, else the declaration's defaults). Below, one table has a
row per unit (a feature, a word or token) and a column per method: the same unit on the same row, rows in
one order (mean |share| over the methods, largest first); the tabular maps draw their bars in that order.
The panel's widgets are built by :func:`explainkit.views.widgets.build_compare_panel`.
"""
from __future__ import annotations

import jinja2
import numpy as np

from explainkit.enums import Modality
from explainkit.views.render import visible_markup
from explainkit.views.units import shown

__all__ = ["applied", "applied_params", "caption_html", "rows_html", "aligned_rows", "ROWS"]

ROWS = 20                # the aligned table and the tabular maps show this many units (the rest: one line)

_ENV = jinja2.Environment(autoescape=True, finalize=visible_markup)
_CAPTION = _ENV.from_string(
    "<div class='ek-compare-caption' data-ek-method='{{ method }}'><b>{{ method }}</b> "
    "<span class='ek-compare-applied' title='the parameters this map was computed with'>{{ params }}</span></div>")
_TABLE = _ENV.from_string(
    "<table class='ek-compare-table' data-ek-units='{{ what }}'><thead><tr><th>{{ what }}</th>"
    "{% for m in methods %}<th data-ek-method='{{ m.name }}'>{{ m.name }}<br><small>{{ m.params }}</small></th>"
    "{% endfor %}</tr></thead><tbody>{% for r in rows %}<tr data-ek-unit='{{ r.unit }}'><th title='{{ r.unit }}'>"
    "{{ r.unit }}</th>{% for c in r.cells %}<td style='background:{{ c.bg }}' title='{{ c.title }}'>{{ c.text }}"
    "</td>{% endfor %}</tr>{% endfor %}</tbody></table>"
    "{% if more %}<div class='ek-muted'>{{ more }} other {{ what }} not shown</div>{% endif %}")


def applied(exp, spec, model) -> dict:
    """The parameters an explanation was computed with, less those that do not apply to this model
    (``Param.applies_to``: an image-only ``patch_size`` is not a tabular model's parameter)."""
    names = None if spec is None else {p.name for p in spec.params_for(model)}
    return {k: v for k, v in (exp.params or {}).items() if names is None or k in names}


def applied_params(params: dict) -> str:
    """``"baseline=zeros, n_steps=50"``: parameters as one line, sorted by name."""
    return ", ".join(f"{k}={_short(v)}" for k, v in sorted(params.items())) or "no parameters"


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _units_of(exp, units: str) -> list[tuple]:
    """(key, label, score) per unit a view draws: a feature by index, a word or token by its characters'
    span (its position when there are no offsets), so that the methods' units meet on one row."""
    s = shown(exp, units)
    scores = np.asarray(s.scores, dtype=np.float64).reshape(-1)
    if exp.modality is Modality.TEXT:
        toks = s.tokens or [str(k) for k in range(len(scores))]
        offs = s.offsets or [None] * len(scores)
        text = s.text or ""
        out = []
        for k, (tok, off) in enumerate(zip(toks, offs)):
            label = text[off[0]:off[1]] if off is not None and text[off[0]:off[1]] else str(tok)
            out.append(((tuple(off) if off is not None else k), label, float(scores[k])))
        return out
    names = exp.feature_names or [f"x{i}" for i in range(len(scores))]
    return [(i, str(names[i]), float(scores[i])) for i in range(len(scores))]


def aligned_rows(exps, units: str = "pieces", limit: int = ROWS) -> dict | None:
    """One row per unit across the compared explanations (None for images: the maps are aligned already).

    Scores are each method's share of its total |attribution| (the maps' scale). Returns
    ``{"what", "keys", "rows": [{"unit", "shares": [float | None per method]}], "more"}``, rows ordered
    by mean |share| over the methods that scored the unit, largest first."""
    if not exps or exps[0].modality is Modality.IMAGE:
        return None
    per = []
    for e in exps:
        us = _units_of(e, units)
        total = sum(abs(v) for _, _, v in us if np.isfinite(v)) or 1.0
        per.append({key: (label, v / total) for key, label, v in us})
    keys = list(dict.fromkeys(k for d in per for k in d))           # first seen first (ties keep it)
    weight = [float(np.mean([abs(d[k][1]) for d in per if k in d and np.isfinite(d[k][1])] or [0.0]))
              for k in keys]
    order = sorted(range(len(keys)), key=lambda i: (-weight[i], i))
    rows = [{"unit": next(d[keys[i]][0] for d in per if keys[i] in d),
             "shares": [d[keys[i]][1] if keys[i] in d else None for d in per]} for i in order[:limit]]
    what = "words" if exps[0].modality is Modality.TEXT and units == "words" else (
        "tokens" if exps[0].modality is Modality.TEXT else "features")
    return {"what": what, "keys": [keys[i] for i in order], "rows": rows, "more": max(0, len(keys) - limit)}


def _cell(share, vmax: float) -> dict:
    if share is None or not np.isfinite(share):
        return {"text": "—", "bg": "transparent", "title": "not scored by this method"}
    t = max(-1.0, min(1.0, share / (vmax or 1.0)))
    rgb = (178, 24, 43) if t >= 0 else (33, 102, 172)          # explanation.js POS / NEG
    return {"text": f"{share:+.3f}", "bg": f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.08 + 0.5 * abs(t):.3f})",
            "title": f"{share:+.4f} of the method's total |attribution|"}


def rows_html(names, table: dict | None, params, vmax: float) -> str:
    """The aligned table (:func:`aligned_rows`) as HTML (autoescaped), or "" for images (``table`` None)."""
    if table is None:
        return ""
    rows = [{"unit": r["unit"], "cells": [_cell(s, vmax) for s in r["shares"]]} for r in table["rows"]]
    methods = [{"name": n, "params": applied_params(p)} for n, p in zip(names, params)]
    return _TABLE.render(what=table["what"], methods=methods, rows=rows, more=table["more"])


def caption_html(exp, params: dict) -> str:
    return _CAPTION.render(method=exp.method, params=applied_params(params))
