"""Static renderings shared by every view: matplotlib figures, PNG bytes and escaped HTML fragments.

Colour semantics (the same in the dashboard, reports and PNGs): the ``signed`` view uses a diverging
map centred at 0 (red = evidence for the target, blue = against) with ``vmax = max|s|``; ``positive``
keeps only evidence for the target; ``absolute`` shows magnitude. All HTML comes from jinja2 templates
with autoescape on; images are inline ``data:`` URIs, CSS is inline, and nothing needs JavaScript.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from explainkit.enums import Modality, ResultKind, Task, _StrEnum
from explainkit.errors import ExplainKitError, MissingDependencyError, ParameterError
from explainkit.views import photo
from explainkit.views.templating import TEMPLATES, template, visible_markup  # noqa: F401 - re-exported
from explainkit.views.units import Units, has_words, shown
from explainkit.visible import visible

__all__ = ["View", "colors", "scale", "plot", "waterfall", "image_png", "rgb_png", "to_png", "to_html", "html_page",
           "figure_png", "data_uri", "template", "header"]



class View(_StrEnum):
    """How scores map to colours."""
    SIGNED = "signed"        # diverging, centred at 0
    POSITIVE = "positive"    # evidence for the target only
    ABSOLUTE = "absolute"    # magnitude only


_CMAPS = {View.SIGNED: "RdBu_r", View.POSITIVE: "Reds", View.ABSOLUTE: "Purples"}
# user strings (class and feature names, tokens, method names) are drawn as they are: never parsed as
# mathtext ('$\frac{1}{$' would raise) nor sent through TeX when text.usetex is on
_LITERAL = {"parse_math": False, "usetex": False}
_ERRBAR = {"ecolor": "#222222", "elinewidth": 0.8, "capsize": 2}      # ±2 standard error bars


# -- colour scale -------------------------------------------------------------------------------------
def _values(scores, view: View) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if view is View.POSITIVE:
        return np.clip(s, 0.0, None)
    if view is View.ABSOLUTE:
        return np.abs(s)
    return s


def scale(scores, view="signed") -> float:
    """The colour-scale maximum for these scores in this view (pass it as ``vmax=`` to share a scale)."""
    v = _values(scores, View.parse(view))
    m = float(np.max(np.abs(v))) if v.size else 0.0
    return m if np.isfinite(m) and m > 0 else 1e-12


def _norm(scores, view: View, vmax) -> np.ndarray:
    """Scores mapped to 0..1 on the view's colormap (0.5 is zero for the signed view)."""
    vmax = scale(scores, view) if vmax is None else max(float(vmax), 1e-12)
    v = _values(scores, view)
    if view is View.SIGNED:
        return np.clip(0.5 + 0.5 * v / vmax, 0.0, 1.0)
    return np.clip(v / vmax, 0.0, 1.0)


def _rgba(scores, view: View, vmax=None) -> np.ndarray:
    cmap = _mpl().colormaps[_CMAPS[view]]
    return cmap(_norm(scores, view, vmax))


def colors(scores, view="signed", vmax=None) -> list:
    """Hex colours, one per unit (nested like ``scores``), on one shared scale (``vmax=`` overrides it)."""
    view = View.parse(view)
    rgba = _rgba(scores, view, vmax)
    flat = rgba.reshape(-1, 4)
    hexes = np.array(["#%02x%02x%02x" % tuple(int(round(c * 255)) for c in px[:3]) for px in flat])
    return hexes.reshape(np.shape(scores)).tolist()


def _ink(rgba) -> str:
    """Black or white text, whichever reads better on this background."""
    r, g, b = rgba[:3]
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#ffffff"


def _legend(view: View, vmax: float, units: str | None = None) -> dict:
    """A CSS gradient and its end labels, for HTML colour keys (``units``: 'words' or 'pieces', if a choice)."""
    stops = np.linspace(0, 1, 9)
    cmap = _mpl().colormaps[_CMAPS[view]]
    css = ", ".join("#%02x%02x%02x" % tuple(int(round(c * 255)) for c in cmap(t)[:3]) for t in stops)
    low = f"{-vmax:.3g}" if view is View.SIGNED else "0"
    return {"gradient": f"linear-gradient(to right, {css})", "low": low, "high": f"{vmax:.3g}",
            "view": view.value if units is None else f"{view.value}, {units}"}


# -- matplotlib -------------------------------------------------------------------------------------
def _mpl():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("Rendering needs matplotlib, which is not installed.",
                                     "pip install matplotlib") from None
    return matplotlib


def _figure(size, layout="constrained"):
    _mpl()
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout=layout)


def _axes(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig = _figure(size)
    return fig, fig.add_subplot()


def title_of(exp) -> str:
    """A figure's default title: method → target (shortened to 60 characters)."""
    t = visible(f"{exp.method or 'explanation'} → {exp.target_label}")
    return t if len(t) < 60 else t[:59] + "…"



def _output_label(exp) -> str:
    """The unit: 'logit of malignant', 'probability of 7', 'regression output: progression', or 'score'."""
    return exp.legend()["unit"]


def _key(exp, view: View) -> str:
    """The colour key in words: what red and blue mean, and the unit (explainkit.plugins.output_space)."""
    return exp.legend(view.value)["text"]


def plot(exp, ax=None, view="signed", **kw):
    """Draw an explanation with matplotlib; returns the Figure.

    Options: ``alpha`` (image overlay, 0.7), ``vmax`` (shared colour scale), ``max_features``
    (tabular bars, 20; ±2 standard error bars where ``exp.errors`` is set), ``layer``/``head`` (attention),
    ``title``, ``units`` (text: 'pieces' or 'words', each word the sum of its pieces; see views.units).
    """
    view = View.parse(view)
    exp = shown(exp, kw.get("units", Units.PIECES))
    if exp.kind is ResultKind.ATTENTION and getattr(exp, "matrices", None) is not None:
        return _plot_attention(exp, ax, layer=kw.get("layer", -1), head=kw.get("head", "mean"),
                               title=kw.get("title"))
    if exp.modality is Modality.IMAGE:
        return _plot_image(exp, ax, view, alpha=kw.get("alpha", 0.7), vmax=kw.get("vmax"), title=kw.get("title"))
    if exp.modality is Modality.TEXT:
        return _plot_text(exp, ax, view, vmax=kw.get("vmax"), title=kw.get("title"))
    return _plot_bars(exp, ax, view, max_features=kw.get("max_features", 20), vmax=kw.get("vmax"),
                      title=kw.get("title"))


def _plot_image(exp, ax, view, alpha, vmax, title):
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = None
    if ax is None:       # fixed geometry: a layout engine would double the drawing time
        fig = _figure((3.4, 3.0), layout=None)           # the colour key in words along the bottom
        ax, cax = fig.add_axes((0.03, 0.1, 0.74, 0.77)), fig.add_axes((0.8, 0.14, 0.04, 0.69))
        fig.text(0.02, 0.015, visible(_key(exp, view)), fontsize=5.5, wrap=True, **_LITERAL)
    fig = ax.figure
    bg, s = photo.drawn(exp)         # a photo: the user's original, in colour, with the scores mapped onto it
    if bg is not None:
        ax.imshow(bg, cmap="gray", vmin=0.0, vmax=max(1.0, float(bg.max(initial=0))), interpolation="nearest")
    vm = scale(s, view) if vmax is None else float(vmax)
    rgba = _overlay(s, view, vm, alpha)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(visible(title) or title_of(exp), fontsize=9, **_LITERAL)
    norm = Normalize(-vm if view is View.SIGNED else 0.0, vm)
    sm = ScalarMappable(norm=norm, cmap=_CMAPS[view])
    cb = fig.colorbar(sm, cax=cax) if cax is not None else fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.04)
    cb.ax.tick_params(labelsize=7)
    cb.set_label(visible(_output_label(exp)), fontsize=6, **_LITERAL)
    return fig


def _overlay(s, view: View, vm: float, alpha: float) -> np.ndarray:
    """RGBA heat map whose opacity grows with |score|, so the input stays visible where it is silent."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ParameterError(f"alpha must be in [0, 1]; got {alpha!r}.", "pass alpha=0.7, for example.")
    rgba = _rgba(s, view, vm)
    mag = np.abs(_norm(s, view, vm) - (0.5 if view is View.SIGNED else 0.0)) * (2 if view is View.SIGNED else 1)
    rgba[..., 3] = float(alpha) * np.sqrt(np.clip(mag, 0, 1))
    return rgba


def image_png(exp, view="signed", vmax=None, alpha: float = 0.7, size: int = 224) -> bytes:
    """The image overlay alone as PNG, composited in numpy (no figure: ~100x faster than plot())."""
    view = View.parse(view)
    bg, s = photo.drawn(exp)
    vm = scale(s, view) if vmax is None else float(vmax)
    over = _overlay(s, view, vm, alpha)
    bg = np.clip(np.ones(s.shape[:2]) if bg is None else bg, 0.0, 1.0)
    a = over[..., 3:]
    return rgb_png((bg if bg.ndim == 3 else bg[..., None]) * (1 - a) + over[..., :3] * a, size)


def rgb_png(rgb: np.ndarray, size: int) -> bytes:
    """An ``[H, W, 3]`` array of 0..1 colours as PNG, upscaled by whole pixels (nearest) to about ``size``."""
    from PIL import Image

    k = max(1, int(size) // max(rgb.shape[:2]))
    rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    buf = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _plot_text(exp, ax, view, vmax, title, width: int = 64):
    tokens = list(exp.tokens or [])
    rgba = _rgba(exp.scores, view, vmax)
    lines, x, line = [], 0, []
    for tok, c in zip(tokens, rgba):
        if x + len(tok) > width and line:
            lines.append(line)
            line, x = [], 0
        line.append((x, tok, c))
        x += len(tok) + 1
    if line:
        lines.append(line)
    fig, ax = _axes(ax, (7.0, 0.75 + 0.32 * max(1, len(lines))))
    ax.set_xlim(0, width)
    ax.set_ylim(len(lines) + 0.2, -0.3)
    for r, ln in enumerate(lines):
        for x, tok, c in ln:
            ax.text(x, r + 0.5, visible(tok), family="monospace", fontsize=9, color=_ink(c), va="center", **_LITERAL,
                    bbox={"facecolor": c, "edgecolor": "none", "pad": 1.5})
    ax.axis("off")
    ax.set_title(visible(title) or title_of(exp), fontsize=9, **_LITERAL)
    fig.supxlabel(visible(_key(exp, view)), fontsize=7, color="#444444", **_LITERAL)
    return fig


def _bar_labels(exp) -> list[str]:
    names = [visible(str(n)) for n in (exp.feature_names or [f"x{i}" for i in range(len(exp.scores))])]
    if exp.feature_values is None:
        return names
    return [f"{n} = {v:.4g}" for n, v in zip(names, np.asarray(exp.feature_values, dtype=np.float64))]


def _plot_bars(exp, ax, view, max_features, vmax, title):
    s = np.asarray(exp.scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-np.abs(s), kind="stable")[: int(max_features)]
    labels = _bar_labels(exp)
    fig, ax = _axes(ax, (6.0, 0.9 + 0.26 * len(order)))
    vals = _values(s[order], view)
    cols = _rgba(s[order], view, vmax if vmax is not None else scale(s, view))
    cols[:, :3] = np.where(np.abs(vals)[:, None] > 0, cols[:, :3], 0.8)
    y = np.arange(len(order))[::-1]
    err = exp.flat_errors()
    ax.barh(y, vals, color=cols, edgecolor="#555555", linewidth=0.4,
            **({} if err is None else {"xerr": 2 * err[order], "error_kw": _ERRBAR}))   # ±2 SE
    ax.set_yticks(y, [labels[i] for i in order], fontsize=8, **_LITERAL)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_xlabel(visible(_key(exp, view)), fontsize=7, **_LITERAL)
    ax.set_title(visible(title) or title_of(exp), fontsize=9, **_LITERAL)
    return fig


def waterfall(exp, ax=None, max_features: int = 12):
    """SHAP-style waterfall from the base value to the output, biggest first (±2 SE bars if ``exp.errors``)."""
    key = exp.legend()
    base_of = key["baseline"]
    if base_of is None:
        raise ExplainKitError(f"The {exp.method} explanation has no base value, so it has no waterfall.",
                              "use a method with a base value (kernel_shap), or plot() instead.")
    s = np.asarray(exp.scores, dtype=np.float64).reshape(-1)
    order = list(np.argsort(-np.abs(s), kind="stable"))
    labels = _bar_labels(exp)
    head, rest = order[: int(max_features)], order[int(max_features):]
    err = exp.flat_errors()
    steps = [(labels[i], s[i], None if err is None else err[i]) for i in head]
    if rest:           # the others' error as if independent (root sum of squares)
        steps.append((f"{len(rest)} other features", float(s[rest].sum()),
                      None if err is None else float(np.sqrt(np.sum(err[rest] ** 2)))))
    fig, ax = _axes(ax, (6.4, 1.4 + 0.3 * len(steps)))
    base = float(base_of["base"])
    start = base
    for row, (_name, v, e) in enumerate(steps):
        y, e = len(steps) - row, e if e is not None and np.isfinite(e) else None      # unknown (NaN): no bar
        ax.barh(y, v, left=start, color="#d6604d" if v >= 0 else "#4393c3", edgecolor="#555555", linewidth=0.4)
        if e is not None:                              # ±2 standard errors at the bar's end
            ax.errorbar(start + v, y, xerr=2 * e, fmt="none", **_ERRBAR)
        tip = start + v + (0.0 if e is None else 2 * e if v >= 0 else -2 * e)       # the label clears the bar
        ax.text(tip, y, f" {v:+.3g} ", va="center", ha="left" if v >= 0 else "right", fontsize=7)
        start += v
    ends = np.cumsum([0.0] + [v for _, v, _ in steps]) + base
    pad = 0.15 * max(float(np.ptp(ends)), 1e-9)
    ax.set_xlim(float(ends.min()) - pad, float(ends.max()) + pad)
    ax.set_yticks(range(len(steps), 0, -1), [n for n, *_ in steps], fontsize=8, **_LITERAL)
    ax.axvline(base, color="#777777", linestyle=":", linewidth=0.8)
    ax.axvline(start, color="#222222", linewidth=0.8)
    end = f"{base_of['end_name']} {start:.4g}"
    if base_of["r2"] is not None:
        end += f" (R² {base_of['r2']:.2f}; the model: {_fmt_out(base_of['output'])})"
    ax.set_xlabel(visible(f"{key['unit']}: {base_of['name']} {base:.4g} → {end}\n"
                          f"red: {key['positive']} · blue: {key['negative']}"), fontsize=7, **_LITERAL)
    ax.set_title(visible(f"{exp.method} waterfall"), fontsize=9, **_LITERAL)
    return fig


def _fmt_out(v) -> str:
    return "?" if v is None else f"{v:.4g}"


def _plot_attention(exp, ax, layer, head, title):
    m = exp.head(int(layer), head)
    toks = [visible(str(t)) for t in (exp.tokens or [str(i) for i in range(m.shape[0])])][: m.shape[0]]
    n = len(toks)
    side = min(9.0, 1.6 + 0.22 * n)
    fig, ax = _axes(ax, (side + 0.8, side))
    im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=max(float(m.max(initial=0)), 1e-12), interpolation="nearest")
    fs = max(4, min(9, int(240 / max(n, 1))))
    ax.set_xticks(range(n), toks, rotation=90, fontsize=fs, **_LITERAL)
    ax.set_yticks(range(n), toks, fontsize=fs, **_LITERAL)
    ax.set_xlabel("attended token (key)", fontsize=8)
    ax.set_ylabel("attending token (query)", fontsize=8)
    nl = exp.matrices.shape[0]
    which = f"layer {int(layer) % nl + 1}/{nl}, head {head if head == 'mean' else int(head) + 1}"
    ax.set_title(title or f"{exp.method}: {which}", fontsize=9, **_LITERAL)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


# -- bytes ----------------------------------------------------------------------------------------------
def figure_png(fig, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (deterministic: no timestamp metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def to_png(exp, path=None, view="signed", dpi: int = 100, **kw) -> bytes:
    """PNG bytes of :func:`plot`; also written atomically to ``path`` when given."""
    png = figure_png(plot(exp, view=view, **kw), dpi=dpi)
    if path is not None:
        from explainkit.atomic import atomic_write
        atomic_write(Path(path), png)
    return png


# -- HTML --------------------------------------------------------------------------------------------------
def _fmt_p(p) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def header(exp) -> dict:
    """The facts of the header line: method, target, prediction (with probability), true label."""
    out = {"method": exp.method or "explanation", "target": exp.target_label, "label": None,
           "prediction": None, "probability": None, "model": exp.model_name}
    if exp.task is Task.REGRESSION:
        if exp.prediction is not None:
            out["prediction"] = f"{float(exp.prediction):.4g} ({exp.target_label})"
        if exp.label is not None:
            out["label"] = f"{float(exp.label):.4g}"
        return out
    names = exp.classes or []
    if exp.prediction is not None:
        k = int(exp.prediction)
        out["prediction"] = names[k] if k < len(names) else str(k)
        if exp.probabilities is not None and k < len(exp.probabilities):
            out["probability"] = _fmt_p(float(exp.probabilities[k]))
    if exp.label is not None:
        try:
            out["label"] = names[int(exp.label)]
        except (ValueError, IndexError, TypeError):
            out["label"] = str(exp.label)
    return out


def _text_pieces(exp, view: View, vmax) -> list[dict]:
    """Tokens with their colours, interleaved with the original text between them (via offsets)."""
    tokens = list(exp.tokens or [])
    s = np.asarray(exp.scores, dtype=np.float64).reshape(-1)
    rgba = _rgba(s, view, vmax)
    text, offsets = exp.text, exp.offsets
    pieces, pos = [], 0
    for i, tok in enumerate(tokens):
        if text is not None and offsets is not None and i < len(offsets):
            a, b = int(offsets[i][0]), int(offsets[i][1])
            if a > pos:
                pieces.append({"gap": text[pos:a]})
            tok, pos = text[a:b] or tok, max(pos, b)     # zero-width specials ([CLS]) show their name
        elif i:
            pieces.append({"gap": " "})
        c = rgba[i]
        pieces.append({"token": tok, "score": f"{s[i]:+.4f}", "bg": "#%02x%02x%02x" % tuple(
            int(round(v * 255)) for v in c[:3]), "fg": _ink(c)})
    if text is not None and offsets is not None and pos < len(text):
        pieces.append({"gap": text[pos:]})
    return pieces


def to_html(exp, view="signed", css: bool = True, units="pieces", **kw) -> str:
    """A self-contained HTML fragment: header line, then the rendering (inline image or token spans).

    ``css=False`` leaves out the style block (a page that already includes it, like reports); ``units``
    is 'pieces' or 'words' for sub-word text (highlights on the original characters either way).
    """
    view, units, split = View.parse(view), Units.parse(units), has_words(exp)
    exp = shown(exp, units)
    vmax = kw.pop("vmax", None)
    key = exp.legend(view.value)
    ctx = {"h": header(exp), "view": view.value, "css": css, "image": None, "waterfall": None,
           "pieces": None, "legend": None, "top": None, "key": key,
           "baseline": None if key["baseline"] is None else key["baseline"]["text"]}
    if exp.modality is Modality.TEXT and exp.kind is not ResultKind.ATTENTION:
        vm = scale(exp.scores, view) if vmax is None else float(vmax)
        ctx["pieces"] = _text_pieces(exp, view, vm)
        ctx["legend"] = _legend(view, vm, units.value if split else None)
    elif exp.modality is Modality.IMAGE and exp.kind is not ResultKind.ATTENTION:
        vm = scale(exp.scores, view) if vmax is None else float(vmax)
        ctx["image"] = data_uri(image_png(exp, view, vm, alpha=kw.get("alpha", 0.7)))
        ctx["legend"] = _legend(view, vm)
    else:
        ctx["image"] = data_uri(figure_png(plot(exp, view=view, vmax=vmax, **kw)))
        if exp.kind is ResultKind.ATTENTION and exp.tokens:
            vm = scale(exp.scores, View.POSITIVE)
            ctx["pieces"] = _text_pieces(exp, View.POSITIVE, vm)
            ctx["legend"] = _legend(View.POSITIVE, vm)
        if exp.modality is Modality.TABULAR and exp.base_value is not None:
            ctx["waterfall"] = data_uri(figure_png(waterfall(exp, max_features=kw.get("max_features", 12))))
    if exp.modality is not Modality.IMAGE:
        ctx["top"] = [{"unit": u, "score": f"{v:+.4g}"} for u, v in exp.top_k(5)]
    return template("explanation.html").render(**ctx)


def html_page(fragment: str, title: str = "explainkit") -> str:
    """A full HTML document around a fragment made by :func:`to_html` (the fragment is trusted markup)."""
    from markupsafe import Markup
    return template("page.html").render(title=title, body=Markup(fragment))
