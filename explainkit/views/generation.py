"""Rendering a GenerationExplanation: a heat map of answer tokens x prompt units, and its trust in words.

Red: the unit raised the answer token's log-probability (removing it lowers it); blue: the unit lowered
it. The colour scale is symmetric around 0, in log-probability units (nats), or attention weight for the
attention methods. The same heat map (``heatmap_html``) is used by ``to_html`` and the generation
dashboard; ``payload`` is what the dashboard's answer view (``static/generation.js``) draws.
"""
from __future__ import annotations

import numpy as np

from explainkit.views.render import _figure, data_uri, figure_png, template
from explainkit.visible import visible, visible_spans, visible_tree

__all__ = ["plot", "to_png", "to_html", "heatmap_html", "legend_text", "payload", "quality_words"]

_CMAP = "RdBu_r"
WHOLE = -1           # the row index of "the whole answer" in the views


def _is_weight(exp) -> bool:
    return "attention" in (exp.method or "")


def legend_text(exp) -> str:
    if _is_weight(exp):
        return "Colour: attention weight from the answer position to the unit (darker red: more attention)."
    what = "log-probability of the answer token (nats)"
    if exp.contrast:
        what += f"; the whole-answer row is log p(answer) - log p({exp.contrast!r})"
    return (f"Red: the unit raises the {what}, removing it lowers it. "
            "Blue: the unit lowers it. White: no effect.")


def unit_label(exp) -> str:
    return "attention weight" if _is_weight(exp) else "Δ log-probability (nats)"


def _scale(m) -> float:
    v = float(np.nanmax(np.abs(m))) if m.size else 0.0
    return v if v > 0 else 1.0


def _token_label(t: str) -> str:
    return repr(t)[1:-1] or "·"


def _rows(exp):
    """Rows: each answer token, then the whole answer."""
    m = np.vstack([exp.matrix, exp.scores[None]])
    labels = [_token_label(t) for t in exp.answer_tokens] + ["(whole answer)"]
    return m, labels


def plot(exp, ax=None, **kw):
    """The heat map on a matplotlib figure (returned): y answer tokens, x prompt units, a colour bar."""
    m, rows = _rows(exp)
    cols = [u.strip() or "·" for u in exp.unit_texts]
    vm = float(kw.get("vmax") or _scale(m))
    if ax is None:
        fig = _figure((max(4.0, 0.55 * len(cols) + 2.5), max(2.5, 0.32 * len(rows) + 1.8)))
        ax = fig.add_subplot()
    fig = ax.figure
    im = ax.imshow(m, cmap=_CMAP, vmin=-vm, vmax=vm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), [visible(c) for c in cols], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [visible(r) for r in rows], fontsize=8)
    ax.set_xlabel("prompt units")
    ax.set_ylabel("answer tokens")
    ax.axhline(len(rows) - 1.5, color="black", lw=0.8)
    bar = fig.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(unit_label(exp) + ("" if _is_weight(exp) else "\nred: raises, blue: lowers"))
    ax.set_title(visible(f"{exp.method or '?'}: {exp.answer_text[:60]!r} ({exp.target_mode})"), fontsize=9)
    return fig


def to_png(exp, path=None, dpi: int = 100) -> bytes:
    png = figure_png(plot(exp), dpi=dpi)
    if path is not None:
        from explainkit.atomic import atomic_write
        atomic_write(path, png)
    return png


def _colour(v: float, vm: float) -> str:
    t = max(-1.0, min(1.0, v / vm))
    if t >= 0:
        g = int(255 - 180 * t)
        return f"rgb(255,{g},{g})"
    g = int(255 + 180 * t)
    return f"rgb({g},{g},255)"


def _heatmap_context(exp, selected=None) -> dict:
    m, labels = _rows(exp)
    vm = _scale(m)
    units = [u.strip() or "·" for u in exp.unit_texts]
    sel = None if selected is None else (len(labels) - 1 if selected == WHOLE else int(selected))
    rows = [{"index": WHOLE if r == len(labels) - 1 else r, "label": label, "whole": r == len(labels) - 1,
             "selected": r == sel,
             "cells": [{"unit": units[c], "value": f"{m[r, c]:+.4g}", "bg": _colour(m[r, c], vm)}
                       for c in range(m.shape[1])]} for r, label in enumerate(labels)]
    scale = {"low": f"{-vm:+.3g}", "high": f"{vm:+.3g}", "low_bg": _colour(-vm, vm), "high_bg": _colour(vm, vm),
             "unit": "attention weight" if _is_weight(exp) else "log-probability (nats)"}
    return {"units": units, "rows": rows, "scale": scale, "legend": legend_text(exp)}


def heatmap_html(exp, selected=None) -> str:
    """The heat map as an HTML table (every string escaped): both axes labelled, a colour scale, the
    red/blue legend; ``selected`` (an answer token index, or -1 for the whole answer) outlines that row."""
    return template("generation_heatmap.html").render(**_heatmap_context(exp, selected))


def to_html(exp) -> str:
    """A self-contained HTML fragment: the prompt and answer, the heat map table, its scale and legend,
    the top units, and the PNG heat map."""
    lp = None if exp.answer_logprob is None else f"{exp.answer_logprob:.3f}"
    top = [(u.strip(), f"{v:+.3g}") for u, v in exp.top_k(3)]
    return template("generation.html").render(
        method=exp.method or "?", prompt=exp.prompt, mode=exp.target_mode, answer=exp.answer_text, logprob=lp,
        top=top, image=data_uri(to_png(exp)), **_heatmap_context(exp))


def _floats(a) -> list:
    return [round(float(v), 6) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def payload(exp) -> dict:
    """What the dashboard's answer view draws: the prompt with its unit spans, the answer tokens, every
    row of scores (per token, and the whole answer), the legend. Invisible characters are made visible."""
    text, spans = visible_spans(exp.prompt or "", exp.unit_spans)
    lp = exp.token_logprobs if exp.token_logprobs is not None else np.full(len(exp.answer_tokens), np.nan)
    return {"prompt": text, "spans": spans, "units": visible_tree(list(exp.unit_texts)),
            "tokens": visible_tree([str(t) for t in exp.answer_tokens]),
            "matrix": [_floats(r) for r in exp.matrix], "scores": _floats(exp.scores),
            "token_logprobs": [None if not np.isfinite(v) else round(float(v), 4) for v in lp],
            "method": visible(exp.method or "?"), "mode": exp.target_mode,
            "contrast": visible(exp.contrast) if exp.contrast else None,
            "unit": unit_label(exp), "legend": visible(legend_text(exp)), "weights": _is_weight(exp)}


def quality_words(q) -> dict:
    """A GenerationQuality in plain words: ``level`` ("good", "mixed", "poor"), a short ``badge`` and the
    ``text`` that says what was measured and what it means."""
    dele, ins = q.deletion_gain > 0, q.insertion_gain > 0
    level = "good" if dele and ins else "mixed" if dele or ins else "poor"
    verdict = {"good": "better than random on both tests", "mixed": "better than random on one test of two",
               "poor": "no better than random"}[level]
    text = (f"Removing the top-ranked prompt units first {'lowers' if dele else 'does not lower'} the answer's "
            f"log-probability faster than removing them in random order (deletion AUC {q.deletion_auc:.2f} vs "
            f"{q.random_deletion_auc:.2f} nats, lower is better). Adding them back first to the emptied prompt "
            f"{'restores' if ins else 'does not restore'} it faster than random (insertion AUC "
            f"{q.insertion_auc:.2f} vs {q.random_insertion_auc:.2f} nats, higher is better; "
            f"{q.n_random} random orders).")
    advice = {"good": "The ranking of the units can be relied on for this answer.",
              "mixed": "Use the ranking with care.", "poor": "Do not rely on this ranking for this answer."}[level]
    return {"level": level, "badge": f"trust: {verdict}", "text": f"{text} {advice}"}
