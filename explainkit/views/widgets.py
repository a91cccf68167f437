"""The dashboard's anywidget views (ES modules in ``explainkit/static/``) and their payload builders.

Each view keeps its widget for the dashboard's lifetime: a new sample or result only updates traitlets.
Arrays travel as base64 (uint8 images, float32 scores and attention), so a page or a view is a few kB.
"""
from __future__ import annotations

import base64
import io
import pathlib

import anywidget
import numpy as np
import traitlets

from explainkit.enums import Modality, ResultKind, Task
from explainkit.views.forms import Form, param_form, param_widget, set_form  # noqa: F401 - re-exported
from explainkit.views.state import ViewMode, rollout, thumbnail
from explainkit.views.units import Units, has_words, shown
from explainkit.visible import visible, visible_spans, visible_tree

__all__ = ["SampleGrid", "PredictionView", "ExplanationView", "AttentionView", "explanation_payload",
           "grid_items", "prediction_payload", "units_switch", "Form", "param_form", "param_widget", "set_form"]

STATIC = pathlib.Path(__file__).resolve().parent / "static"
_CSS = STATIC / "dashboard.css"


def b64(arr: np.ndarray | bytes) -> str:
    data = arr if isinstance(arr, (bytes, bytearray)) else np.ascontiguousarray(arr).tobytes()
    return base64.b64encode(data).decode("ascii")


class SampleGrid(anywidget.AnyWidget):
    """One page of samples as tiles (thumbnail or text, true label, prediction, confidence); click selects."""

    _esm = STATIC / "grid.js"
    _css = _CSS
    items = traitlets.List([]).tag(sync=True)
    modality = traitlets.Unicode(Modality.IMAGE.value).tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)


class PredictionView(anywidget.AnyWidget):
    """Class probabilities as bars (true and predicted class marked), or the regression value and target."""

    _esm = STATIC / "prediction.js"
    _css = _CSS
    data = traitlets.Dict({}).tag(sync=True)


class ExplanationView(anywidget.AnyWidget):
    """An attribution for any modality: image overlay (canvas), token highlights, or feature bars/waterfall."""

    _esm = STATIC / "explanation.js"
    _css = _CSS
    key = traitlets.Unicode("").tag(sync=True)          # mirrored to data-ek-key: "<sample>|<method>|<hash>"
    payload = traitlets.Dict({}).tag(sync=True)
    opacity = traitlets.Float(0.6).tag(sync=True)
    mode = traitlets.Unicode(ViewMode.SIGNED.value).tag(sync=True)
    vmax = traitlets.Float(0.0).tag(sync=True)          # 0: the view's own 99th percentile of |score|
    hovered = traitlets.Unicode("").tag(sync=True)      # last unit the pointer was over (JS -> Python)
    units = traitlets.Unicode(Units.PIECES.value).tag(sync=True)   # text: "pieces" or "words"
    has_words = traitlets.Bool(False).tag(sync=True)    # the shown text has words of several pieces
    order = traitlets.List([]).tag(sync=True)           # tabular rows' order, if shared (compare.aligned_rows)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._exp = None
        self.observe(self._redraw, names="units")

    def show(self, exp, key: str, vmax: float = 0.0) -> None:
        self._exp = exp
        with self.hold_sync():
            self.payload = explanation_payload(exp, self.units)
            self.has_words = has_words(exp)
            self.vmax = float(vmax)
            self.key = key

    def _redraw(self, _change) -> None:
        Units.parse(self.units)                          # an unknown value is one clear error
        if self._exp is not None:
            self.payload = explanation_payload(self._exp, self.units)

    def clear(self, message: str = "") -> None:
        self._exp = None
        with self.hold_sync():
            self.payload = {"modality": "", "message": message}
            self.has_words = False
            self.key = ""


class AttentionView(anywidget.AnyWidget):
    """Token-to-token attention on a canvas: layer × head (or mean / all heads), rollout, hover a token."""

    _esm = STATIC / "attention.js"
    _css = _CSS
    tokens = traitlets.List([]).tag(sync=True)
    shape = traitlets.List([0, 0, 0]).tag(sync=True)   # layers, heads, tokens
    matrices = traitlets.Unicode("").tag(sync=True)    # float32 [L,H,T,T], base64
    rolled = traitlets.Unicode("").tag(sync=True)      # float32 [T,T] rollout, base64
    layer = traitlets.Int(0).tag(sync=True)
    head = traitlets.Unicode("mean").tag(sync=True)    # "mean", "all" or a head index
    rollout = traitlets.Bool(False).tag(sync=True)
    hovered = traitlets.Int(-1).tag(sync=True)         # token under the pointer (JS -> Python)
    key = traitlets.Unicode("").tag(sync=True)

    def show(self, tokens, matrices: np.ndarray, key: str) -> None:
        m = np.asarray(matrices, dtype=np.float32)
        with self.hold_sync():
            self.tokens = [visible(str(t)) for t in tokens]
            self.shape = [int(m.shape[0]), int(m.shape[1]), int(m.shape[-1])]
            self.matrices = b64(m)
            self.rolled = b64(rollout(m).astype(np.float32))
            self.layer = min(self.layer, m.shape[0] - 1)
            self.key = key


# -- payloads ---------------------------------------------------------------------------------------
PAYLOAD_SIDE = 320      # a photo's view is subsampled to at most this many pixels a side (a few hundred kB)

def view_scale(scores) -> float:
    """The colour-scale maximum the dashboard draws an image or text view with when none is shared: the 99th
    percentile of |score| (explanation.js ``scaleOf``, the same rule), so that exports can use it too."""
    a = np.sort(np.abs(np.nan_to_num(np.asarray(scores, dtype=np.float64).ravel(), nan=0.0)))
    if not a.size:
        return 1.0
    q = float(a[min(a.size - 1, int(np.floor(0.99 * (a.size - 1))))])
    return q if q > 0 else (float(a[-1]) or 1.0)


def explanation_payload(exp, units="pieces") -> dict:
    """What the JS view needs to draw an Explanation, compactly (no full arrays as JSON lists for images).
    Text shows the scored ``units`` ('pieces' or 'words', :mod:`explainkit.views.units`), never [CLS]/[SEP].
    Every user string in it has its invisible characters made visible (:mod:`explainkit.visible`)."""
    out = _explanation_payload(shown(exp, units))
    if has_words(exp):
        out["units"] = Units.parse(units).value
    return visible_tree(out)


def _explanation_payload(exp) -> dict:
    key = exp.legend()
    base = {"modality": exp.modality.value, "kind": exp.kind.value, "method": exp.method,
            "target": exp.target_label, "task": exp.task.value,
            "prediction": _pred_text(exp), "legend": {
                "unit": key["unit"], "space": key["space"], "baseline": key["baseline"],
                "positive": key["positive"], "negative": key["negative"],
                "text": {v.value: exp.legend(v.value)["text"] for v in ViewMode}}}
    s = np.asarray(exp.scores, dtype=np.float64)
    if exp.modality is Modality.IMAGE:
        from explainkit.views.photo import on_photo
        pic = on_photo(exp, max_side=PAYLOAD_SIDE)       # a photo: drawn on the user's own, at its own shape
        if pic is not None:
            img, s = pic[0], np.nan_to_num(pic[1], nan=0.0)     # outside the crop the model saw nothing
        else:
            img = np.asarray(exp.image if exp.image is not None else np.zeros(s.shape), dtype=np.float64)
        grey = img if pic is not None and img.ndim == 3 else (img.mean(axis=-1) if img.ndim == 3 else img)
        grey8 = np.clip(grey * 255.0 if grey.max(initial=0) <= 1.0 else grey, 0, 255).astype(np.uint8)
        s = s.astype(np.float32)
        return {**base, "h": int(s.shape[0]), "w": int(s.shape[1]), "image": b64(grey8), "c": grey8.size // s.size,
                "scores": b64(s), "scale": view_scale(s)}
    if exp.modality is Modality.TEXT:
        text, offsets = visible_spans(exp.text or " ".join(exp.tokens or []), exp.offsets or [])
        return {**base, "text": text, "tokens": list(exp.tokens or []), "offsets": offsets, "scores": _floats(s),
                "scale": view_scale(s)}
    values = exp.feature_values if exp.feature_values is not None else np.full(len(s), np.nan)
    out = {**base, "names": list(exp.feature_names or [f"x{i}" for i in range(len(s))]),
           "values": _floats(values), "scores": _floats(s), "base_value": None}
    if key["baseline"] is not None:           # the waterfall runs from the method's own baseline
        out["base_value"] = key["baseline"]["base"]
        out["output"] = key["baseline"]["end"]
    return out


def _pred_text(exp) -> str:
    if exp.task is Task.REGRESSION:
        return "" if exp.prediction is None else f"{float(exp.prediction):.4g}"
    if exp.prediction is None:
        return ""
    name = exp.classes[exp.prediction] if exp.classes else str(exp.prediction)
    p = exp.probabilities[exp.prediction] if exp.probabilities is not None else None
    return name if p is None else f"{name} ({p:.1%})"


def _floats(a) -> list:
    return [None if not np.isfinite(v) else round(float(v), 7) for v in np.asarray(a, dtype=np.float64)]


def grid_items(indices, dataset, preds, classes, modality: Modality) -> list[dict]:
    """The tiles of one page: index, label, prediction, confidence, correctness, and a thumbnail or text."""
    return visible_tree(_grid_items(indices, dataset, preds, classes, modality))


def _grid_items(indices, dataset, preds, classes, modality: Modality) -> list[dict]:
    items = []
    for i in indices:
        raw, label = dataset[i]
        item = {"index": int(i), "label": _label_text(label, classes), "correct": None}
        if preds.task is Task.CLASSIFICATION:
            k = int(preds.predicted[i])
            item["pred"] = classes[k] if classes else str(k)
            item["conf"] = round(float(preds.confidence[i]), 4)
            if preds.correct is not None:
                item["correct"] = bool(preds.correct[i])
        else:
            item["pred"] = f"{float(preds.outputs[i]):.4g}"
            item["conf"] = None
        if modality is Modality.IMAGE:
            h, w, c, data = thumbnail(raw)
            item.update(h=h, w=w, c=c, thumb=b64(data))
        elif modality is Modality.TEXT:
            s = str(raw)
            item["text"] = s if len(s) <= 160 else s[:159] + "…"
        else:
            item["text"] = _row_summary(raw, dataset.feature_names)
        items.append(item)
    return items


def _label_text(label, classes) -> str:
    if label is None:
        return "—"
    if classes is not None and float(label).is_integer() and 0 <= int(label) < len(classes):
        return classes[int(label)]
    return f"{float(label):.4g}"


ROW_FEATURES = 3       # a tabular row in the sample list names its features of largest |value|, whole


def _row_summary(raw, names) -> str:
    """'worst area=2.02e+03, mean area=1e+03, … (+28 more)': the top features by |value|, never cut mid-feature."""
    row = np.asarray(raw, dtype=np.float64)
    names = names or [f"x{i}" for i in range(len(row))]
    top = np.argsort(-np.where(np.isfinite(row), np.abs(row), -1.0), kind="stable")[:ROW_FEATURES]
    parts = [f"{names[i]}={row[i]:.3g}" for i in top]
    return ", ".join(parts) + (f", … (+{len(row) - len(top)} more)" if len(row) > len(top) else "")


def prediction_payload(model, preds, index: int, label) -> dict:
    """The prediction panel's data for one sample."""
    return visible_tree(_prediction_payload(model, preds, index, label))


def _prediction_payload(model, preds, index: int, label) -> dict:
    if model.task is Task.CLASSIFICATION:
        return {"task": Task.CLASSIFICATION.value, "classes": list(model.classes),
                "probs": [round(float(p), 5) for p in preds.outputs[index]],
                "pred": int(preds.predicted[index]), "true": None if label is None else int(label),
                "index": int(index)}
    return {"task": Task.REGRESSION.value, "value": float(preds.outputs[index]),
            "target": None if label is None else float(label), "name": model.target_name,
            "index": int(index)}


def is_attention(exp) -> bool:
    return exp.kind is ResultKind.ATTENTION and getattr(exp, "matrices", None) is not None


# -- the ipywidgets panels around the views (built once; the dashboard only updates their values) -----------
def _hook(widget, cls: str):
    widget.add_class(cls)
    return widget


def build_browser(model, dataset, preds, page_size: int):
    from types import SimpleNamespace

    import ipywidgets as W

    from explainkit.views.state import Correctness, SortKey
    classes = model.classes or []
    cls_opts = [("any", -1)] + [(visible(str(c)), i) for i, c in enumerate(classes)]
    def small():          # a Layout per widget: hiding one must not hide the others
        return {"style": {"description_width": "70px"}, "layout": W.Layout(width="200px")}
    true = _hook(W.Dropdown(options=cls_opts, value=-1, description="true", **small()), "ek-filter-true")
    pred = _hook(W.Dropdown(options=cls_opts, value=-1, description="predicted", **small()), "ek-filter-pred")
    correct = _hook(W.Dropdown(options=[c.value for c in Correctness], value=Correctness.ALL.value,
                               description="result", **small()), "ek-filter-correct")
    conf = _hook(W.FloatRangeSlider(value=(0.0, 1.0), min=0.0, max=1.0, step=0.01, description="conf.",
                                    continuous_update=False, readout_format=".2f",
                                    style={"description_width": "70px"}, layout=W.Layout(width="320px")),
                 "ek-conf-range")
    search = _hook(W.Text(value="", placeholder="search text…", description="search", continuous_update=False,
                          **small()), "ek-search")
    sorts = [k.value for k in SortKey if model.task is Task.CLASSIFICATION or "confidence" not in k.value]
    sort = _hook(W.Dropdown(options=sorts, value=SortKey.INDEX.value, description="sort", **small()), "ek-sort")
    classification = model.task is Task.CLASSIFICATION
    for w, show in ((true, classification and dataset.labels is not None), (pred, classification),
                    (correct, classification and dataset.labels is not None), (conf, classification),
                    (search, model.modality is Modality.TEXT)):
        if not show:
            w.layout.display = "none"
    filters = _hook(W.Box([true, pred, correct, conf, search, sort], layout=W.Layout(flex_flow="row wrap")),
                    "ek-gap")
    grid = _hook(SampleGrid(modality=model.modality.value), "ek-grid")
    prev = _hook(W.Button(description="◀ prev", layout=W.Layout(width="80px")), "ek-page-prev")
    nxt = _hook(W.Button(description="next ▶", layout=W.Layout(width="80px")), "ek-page-next")
    label = _hook(W.HTML(""), "ek-page")
    pager = _hook(W.HBox([prev, label, nxt], layout=W.Layout(align_items="center")), "ek-gap")
    prediction = _hook(PredictionView(), "ek-prediction")
    return SimpleNamespace(true=true, pred=pred, correct=correct, conf=conf, search=search, sort=sort,
                           filters=filters, grid=grid, prev=prev, next=nxt, page_label=label, pager=pager,
                           prediction=prediction)


def build_explain_panel(model, specs, default: str):
    from types import SimpleNamespace

    import ipywidgets as W
    method = _hook(W.Dropdown(options=[(s.title, s.name) for s in specs], value=default, description="explainer",
                              style={"description_width": "70px"}, layout=W.Layout(width="300px")), "ek-method")
    method.tooltip = "Only the explainers that apply to this model are offered."
    if model.task is Task.CLASSIFICATION:
        target = W.Dropdown(options=[(visible(f"{i}: {c}"), i) for i, c in enumerate(model.classes)], value=0,
                            description="target", style={"description_width": "50px"},
                            layout=W.Layout(width="220px"))
    else:
        # value 0, not None: a Dropdown shows no label for None (Dashboard.target is None for regression)
        target = W.Dropdown(options=[(visible(f"{model.target_name} (output)"), 0)], value=0, disabled=True,
                            description="target", style={"description_width": "50px"},
                            layout=W.Layout(width="220px"))
    _hook(target, "ek-target")
    _full_label_tooltip(target)
    _full_label_tooltip(method)
    params = _hook(W.VBox([]), "ek-params")
    explain = _hook(W.Button(description="Explain", button_style="primary", icon="play",
                             layout=W.Layout(width="100px")), "ek-explain")
    auto = _hook(W.Checkbox(value=True, description="auto re-explain", indent=False,
                            layout=W.Layout(width="140px")), "ek-auto")
    progress = _hook(W.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                     layout=W.Layout(width="120px", visibility="hidden")), "ek-progress")
    progress_label = _hook(W.HTML(""), "ek-progress-label")
    cancel = _hook(W.Button(description="Cancel", button_style="warning", icon="stop",
                            layout=W.Layout(width="90px", visibility="hidden")), "ek-cancel")
    mode = _hook(W.ToggleButtons(options=[m.value for m in ViewMode], value=ViewMode.SIGNED.value,
                                 style={"button_width": "84px"}), "ek-view-mode")     # "absolute" in full
    opacity = _hook(W.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="opacity",
                                  style={"description_width": "50px"}, layout=W.Layout(width="220px")),
                    "ek-opacity")
    view = _hook(ExplanationView(), "ek-view")
    units = units_switch(view)
    custom = _hook(W.Box([]), "ek-view-custom")
    quality = _hook(W.Button(description="trust: …", tooltip="Deletion AUC vs random and the sanity check; "
                             "click for the curves", layout=W.Layout(width="auto")), "ek-quality")
    quality_words = _hook(W.HTML("", layout=W.Layout(max_width="560px")), "ek-quality-words")
    quality_plot = _hook(W.Image(format="png", layout=W.Layout(display="none", max_width="420px")),
                         "ek-quality-plot")
    export_png = _hook(W.Button(description="PNG", icon="download", layout=W.Layout(width="80px")), "ek-export-png")
    export_html = _hook(W.Button(description="HTML", icon="download", layout=W.Layout(width="80px")),
                        "ek-export-html")
    export_link = _hook(W.HTML(""), "ek-export-link")
    def row():
        return dict(layout=W.Layout(align_items="center", flex_flow="row wrap"), _dom_classes=("ek-gap",))
    return SimpleNamespace(
        method=method, target=target, params=params, explain=explain, auto=auto, progress=progress,
        progress_label=progress_label, cancel=cancel, mode=mode, units=units, opacity=opacity, view=view,
        custom=custom, quality=quality, quality_words=quality_words, quality_plot=quality_plot,
        export_png=export_png, export_html=export_html,
        export_link=export_link, controls=W.HBox([method, target], **row()),
        run_row=W.HBox([explain, auto, progress, progress_label, cancel], **row()),
        view_controls=W.HBox([mode, units, opacity], **row()),
        quality_row=W.VBox([quality, quality_words, quality_plot], layout=W.Layout(align_items="flex-start")),
        export_row=W.HBox([W.HTML("export"), export_png, export_html, export_link], **row()))


def _full_label_tooltip(dropdown) -> None:
    """A dropdown's tooltip is its selected option's full text (the box may be too narrow to show it)."""
    base = dropdown.tooltip or ""

    def update(_change=None) -> None:
        label = next((str(k) for k, v in dropdown.options if v == dropdown.value), "")
        dropdown.tooltip = f"{label} · {base}" if base else label
    dropdown.observe(update, names="value")
    update()


def units_switch(view: ExplanationView):
    """The text view's "pieces | words" switch, linked to ``view.units``; shown only while the view's
    text has a word of several pieces (a word-level tokenizer's view has nothing to switch)."""
    import ipywidgets as W
    switch = _hook(W.ToggleButtons(options=[u.value for u in Units], value=view.units,
                                   tooltip="pieces: the model's sub-word tokens; words: each word the sum of its "
                                   "pieces", style={"button_width": "64px"}), "ek-units")
    traitlets.link((switch, "value"), (view, "units"))

    def toggle(change) -> None:
        switch.layout.display = None if change["new"] else "none"
    view.observe(toggle, names="has_words")
    toggle({"new": view.has_words})
    return switch


def build_compare_panel(specs, default: str):
    """Methods, Compare, up to 4 maps captioned with their parameters, rows aligned by unit, rank agreement."""
    from types import SimpleNamespace

    import ipywidgets as W
    names = [s.name for s in specs]
    pre = [default] + [n for n in ("saliency", "input_x_gradient", "occlusion") if n in names and n != default]
    methods = _hook(W.SelectMultiple(options=[(s.title, s.name) for s in specs], value=tuple(pre[:2]) if len(names) > 1
                                     else (), rows=min(6, len(names)), description="methods",
                                     style={"description_width": "60px"}), "ek-compare-methods")
    run = _hook(W.Button(description="Compare", icon="columns", layout=W.Layout(width="110px")), "ek-compare-run")
    cviews = [_hook(ExplanationView(), "ek-compare-view") for _ in range(4)]
    captions = [_hook(W.HTML(""), "ek-compare-params") for _ in range(4)]
    columns = [_hook(W.VBox([c, v], layout=W.Layout(display="none", width="24%")), "ek-compare-col")
               for c, v in zip(captions, cviews)]
    rows, agreement = _hook(W.HTML(""), "ek-compare-rows"), _hook(W.HTML(""), "ek-agreement")
    title = W.HTML("<span class='ek-section-title'>Compare 2–4 explainers · shared color scale (each map normalized "
                   "to unit total |attribution|) · parameters applied · rows aligned by unit · rank agreement</span>")
    maps = _hook(W.HBox(columns, layout=W.Layout(flex_flow="row wrap", align_items="flex-start")), "ek-gap")
    panel = _hook(W.VBox([title, _hook(W.HBox([methods, run], layout=W.Layout(align_items="center")), "ek-gap"),
                          maps, rows, agreement]), "ek-compare")
    panel.add_class("ek-card")
    return SimpleNamespace(methods=methods, run=run, views=cviews, captions=captions, columns=columns, rows=rows,
                           agreement=agreement, panel=panel)


def build_attention_panel():
    from types import SimpleNamespace

    import ipywidgets as W
    layer = _hook(W.Dropdown(options=[0], value=0, description="layer", style={"description_width": "40px"},
                             layout=W.Layout(width="130px")), "ek-att-layer")
    head = _hook(W.Dropdown(options=["mean", "all"], value="mean", description="head",
                            style={"description_width": "40px"}, layout=W.Layout(width="130px")), "ek-att-head")
    roll = _hook(W.Checkbox(value=False, description="rollout", indent=False, layout=W.Layout(width="90px")),
                 "ek-att-rollout")
    view = _hook(AttentionView(), "ek-attention")
    title = W.HTML("<span class='ek-section-title'>Attention (transformer)</span>")
    panel = _hook(W.VBox([title, _hook(W.HBox([layer, head, roll]), "ek-gap"), view]),
                  "ek-attention-panel")
    panel.add_class("ek-card")
    return SimpleNamespace(layer=layer, head=head, rollout=roll, view=view, panel=panel)


def quality_figure(result) -> bytes | None:
    """PNG of a Quality result's deletion/insertion curves against the random order."""
    if result is None:
        return None
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.4, 2.8), dpi=90)
    for name, style in (("deletion", "-"), ("deletion_random", ":"), ("insertion", "-"), ("insertion_random", ":")):
        c = getattr(result, name, None)
        if c is not None:
            ax.plot(c.fractions, c.values, style, label=f"{name.replace('_', ' ')} (AUC {c.auc:.2f})")
    ax.set_xlabel("fraction of units removed / inserted")
    ax.set_ylabel("target output")
    ax.set_title(result.badge(), fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
