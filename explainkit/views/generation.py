"""Rendering a GenerationExplanation: a heat map of answer tokens x prompt units.

Red: the unit raised the answer token's log-probability (removing it lowers it); blue: the unit lowered
it. The colour scale is symmetric around 0, in log-probability units (nats), or attention weight for the
attention methods.
"""
from __future__ import annotations

import html

import numpy as np

from explainkit.views.render import _figure, data_uri, figure_png

__all__ = ["plot", "to_png", "to_html", "legend_text"]

_CMAP = "RdBu_r"


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


def _scale(m) -> float:
    v = float(np.nanmax(np.abs(m))) if m.size else 0.0
    return v if v > 0 else 1.0


def _rows(exp):
    """Rows: each answer token, then the whole answer."""
    m = np.vstack([exp.matrix, exp.scores[None]])
    labels = [repr(t)[1:-1] or "·" for t in exp.answer_tokens] + ["(whole answer)"]
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
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("prompt units")
    ax.set_ylabel("answer tokens")
    ax.axhline(len(rows) - 1.5, color="black", lw=0.8)
    unit = "attention weight" if _is_weight(exp) else "Δ log-probability (nats)"
    bar = fig.colorbar(im, ax=ax, shrink=0.9)
    bar.set_label(unit + "\nred: raises, blue: lowers" if not _is_weight(exp) else unit)
    ax.set_title(f"{exp.method or '?'}: {exp.answer_text[:60]!r} ({exp.target_mode})", fontsize=9)
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


def to_html(exp) -> str:
    """A self-contained HTML fragment: a table heat map (every string escaped), its scale and legend."""
    m, rows = _rows(exp)
    vm = _scale(m)
    esc = html.escape
    head = "".join(f'<th scope="col" style="writing-mode:vertical-rl;font-weight:normal">{esc(u.strip() or "·")}</th>'
                   for u in exp.unit_texts)
    body = []
    for r, label in enumerate(rows):
        cells = "".join(f'<td title="{m[r, c]:+.4g}" style="background:{_colour(m[r, c], vm)};'
                        f'min-width:1.6em;height:1.3em"></td>' for c in range(m.shape[1]))
        sep = ' style="border-top:2px solid #000"' if r == len(rows) - 1 else ""
        body.append(f'<tr{sep}><th scope="row" style="text-align:right;font-weight:normal">{esc(label)}</th>'
                    f"{cells}</tr>")
    unit = "attention weight" if _is_weight(exp) else "log-probability (nats)"
    scale_bar = (f'<div class="ek-scale"><span style="background:{_colour(-vm, vm)}">&nbsp;{-vm:+.3g}&nbsp;</span>'
                 f'<span style="background:#fff">&nbsp;0&nbsp;</span>'
                 f'<span style="background:{_colour(vm, vm)}">&nbsp;{vm:+.3g}&nbsp;</span> {esc(unit)}</div>')
    lp = "" if exp.answer_logprob is None else f", log p(answer) = {exp.answer_logprob:.3f}"
    top = ", ".join(f"{esc(u.strip())} ({v:+.3g})" for u, v in exp.top_k(3))
    return (f'<div class="ek-generation"><p><b>{esc(exp.method or "?")}</b> · prompt: {esc(exp.prompt)}'
            f"<br>answer ({esc(exp.target_mode)}): {esc(exp.answer_text)}{esc(lp)}</p>"
            f'<table style="border-collapse:collapse;font-size:12px"><caption>answer tokens (rows) × '
            f'prompt units (columns)</caption><tr><th scope="col">answer token \\ unit</th>{head}</tr>'
            f'{"".join(body)}</table>{scale_bar}<p class="ek-legend">{esc(legend_text(exp))}</p>'
            f"<p>top units for the whole answer: {top}</p>"
            f'<img alt="heat map" src="{data_uri(to_png(exp))}" style="max-width:100%"></div>')
