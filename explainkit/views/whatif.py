"""The dashboard's what-if panel: edit a sample (a tabular feature on a slider inside its data range, the text, or
a region of an image erased with a brush), and the edited copy is predicted and explained live.

An edit never changes the original. It adds a new sample at the end of the dashboard's data (``dash.dataset``,
a private copy made at the first edit; the data passed in is untouched) with its original's label, a prediction
and a new index, so it is selected and explained through the dashboard's normal path, and its cache keys (which
start with the index) can never meet the original's. The sample list shows each copy right after its original,
marked "edited". Test hooks (CSS classes): ``ek-whatif`` (the panel), ``ek-whatif-feature`` (Dropdown),
``ek-whatif-slider`` (FloatSlider), ``ek-whatif-text`` (Textarea), ``ek-whatif-run`` (button),
``ek-whatif-brush`` (the brush view: ``data-ek-index``, ``data-ek-painted``, ``data-ek-ready``; inside it
``canvas``, ``.ek-whatif-erase``, ``.ek-whatif-clear``), ``ek-whatif-status``; in the sample list
``.ek-sample.ek-edited[data-ek-parent=i]`` with a ``.ek-edited-badge``.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import anywidget
import ipywidgets as W
import jinja2
import numpy as np
import traitlets

from explainkit.data.datasets import Dataset
from explainkit.enums import Modality, Task
from explainkit.errors import ExplainKitError, InputError
from explainkit.views import state as st
from explainkit.views.aggregate import text_lengths
from explainkit.views.templating import visible_markup
from explainkit.views.widgets import STATIC, b64

__all__ = ["BrushView", "Edit", "WhatIfPanel"]

SLIDER_STEPS = 200                 # a feature's data range is cut into this many slider steps
BRUSH_MAX_SIDE = 256               # the brush paints on the image subsampled to this side (a photo stays light)
_STATUS = jinja2.Environment(autoescape=True, finalize=visible_markup).from_string(
    "{% if e %}<b>#{{ e.index }}</b> <span class='ek-edited-badge'>edited</span> from <b>#{{ e.parent }}</b>: "
    "{{ e.what }}; prediction {{ e.before }} → <b>{{ e.after }}</b>{% else %}{{ hint }}{% endif %}"
    "{% if error %}<div class='ek-whatif-error'>{{ error }}</div>{% endif %}")


class BrushView(anywidget.AnyWidget):
    """The selected image at full resolution; paint a region with the brush, then erase it (sent to Python)."""

    _esm = STATIC / "whatif.js"
    _css = STATIC / "whatif.css"
    image = traitlets.Dict({}).tag(sync=True)          # {index, h, w, c, step, data (base64 uint8)}
    brush = traitlets.Int(2).tag(sync=True)            # brush radius in image pixels


@dataclass(frozen=True)
class Edit:
    """One edited copy: its index, the sample it was made from, its original in the data, and what changed."""

    index: int
    parent: int
    root: int
    what: str
    before: str
    after: str


class WhatIfPanel:
    """Built by the dashboard (``dash.whatif``); every edit is also a Python method returning the new index."""

    def __init__(self, dash):
        self.dash = dash
        self.modality = dash.model.modality
        self.edits: dict[int, Edit] = {}
        self._n0 = len(dash.dataset)             # the data as given: indices below this are originals
        self._owned = False
        self._quiet = False
        self.status = W.HTML("")
        self.status.add_class("ek-whatif-status")
        controls = self._build_controls()
        title = W.HTML("What-if")
        title.add_class("ek-section-title")
        self.panel = W.VBox([title, *controls, self.status])
        self.panel.add_class("ek-whatif")
        dash.b.grid.observe(lambda ch: self._load(ch["new"]), names="selected")
        self._say(None)

    # -- the editors -----------------------------------------------------------------------------------------
    def _build_controls(self) -> list:
        m, raws = self.dash.model, self.dash.dataset.raws
        if self.modality is Modality.TABULAR:
            x = np.asarray(raws, dtype=np.float64)
            self.names = list(m.feature_names or [f"x{i}" for i in range(x.shape[1])])
            self.ranges = [(float(lo), float(hi)) for lo, hi in zip(x.min(axis=0), x.max(axis=0))]
            self.feature = W.Dropdown(options=[(n, j) for j, n in enumerate(self.names)], value=0,
                                      description="feature", layout=W.Layout(width="260px"))
            self.feature.add_class("ek-whatif-feature")
            self.slider = W.FloatSlider(continuous_update=False, readout_format=".4g", description="value",
                                        layout=W.Layout(width="100%", max_width="420px"))
            self.slider.add_class("ek-whatif-slider")
            self.feature.observe(lambda ch: self._load(self.dash.selected_index), names="value")
            self.slider.observe(lambda ch: self._on_slider(ch["new"]), names="value")
            return [self.feature, self.slider]
        if self.modality is Modality.TEXT:
            self.text = W.Textarea(layout=W.Layout(width="100%", height="72px"))
            self.text.add_class("ek-whatif-text")
            self.run_btn = W.Button(description="Re-run edited text", layout=W.Layout(width="auto"))
            self.run_btn.add_class("ek-whatif-run")
            self.run_btn.on_click(lambda _: self._guard(self.edit_text, self.dash.selected_index, self.text.value))
            return [self.text, self.run_btn]
        self.brush = BrushView()
        self.brush.add_class("ek-whatif-brush")
        self.brush.on_msg(self._on_msg)
        return [self.brush]

    def _load(self, index) -> None:
        """Show the selected sample in the editor (its value, text or image); nothing is edited."""
        d = self.dash
        if index is None or not 0 <= int(index) < len(d.dataset):
            return
        raw = d.dataset.raws[int(index)]
        self._quiet = True
        try:
            if self.modality is Modality.TABULAR:
                j = self.feature.value
                lo, hi = self.ranges[j]
                s, v = self.slider, float(np.asarray(raw, dtype=np.float64)[j])
                with s.hold_trait_notifications():
                    s.min, s.max = min(s.min, lo), max(s.max, hi)     # never clamp on the way
                    s.value, s.step = v, (hi - lo) / SLIDER_STEPS or 1.0
                    s.min, s.max = lo, hi
            elif self.modality is Modality.TEXT:
                self.text.value = str(raw)
            else:
                h, w, c, data = st.thumbnail(raw, max_side=BRUSH_MAX_SIDE)
                step = -(-max(self._image_shape(int(index))) // max(h, w))        # image pixels per brush pixel
                self.brush.image = {"index": int(index), "h": h, "w": w, "c": c, "step": step, "data": b64(data)}
                self.brush.brush = max(1, round(min(h, w) / 14))
        finally:
            self._quiet = False
        if int(index) not in self.edits:
            self._say(None)

    def _on_slider(self, value) -> None:
        if not self._quiet and self.dash.selected_index is not None:
            self._guard(self.edit, self.dash.selected_index, feature=self.feature.value, value=value)

    def _on_msg(self, _widget, content, _buffers) -> None:
        if content.get("event") == "erase":
            index, shape = int(content.get("index", -1)), self._image_shape(int(content.get("index", -1)))
            mask = np.frombuffer(base64.b64decode(content.get("mask", "")), dtype=np.uint8)
            img = self.brush.image
            if shape is None or img.get("index") != index or mask.size != img["h"] * img["w"]:
                self._say(None, error="The brushed region does not match the image; select the sample again.")
                return
            step = int(img.get("step", 1))             # back to the image's own pixels
            mask = mask.reshape(img["h"], img["w"]).repeat(step, 0).repeat(step, 1)[:shape[0], :shape[1]]
            self._guard(self.erase, index, mask.astype(bool))

    def _guard(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ExplainKitError as err:           # shown under the editor, as the form shows a bad value
            self._say(None, error=str(err))
            return None

    def _say(self, edit: Edit | None, error: str = "") -> None:
        hint = {Modality.TABULAR: "Move the slider to edit the selected sample's feature (within the data's range).",
                Modality.TEXT: "Edit the text, then re-run: the copy is predicted and explained."}.get(
            self.modality, "Paint a region over the image (red), then erase it: the copy is predicted and explained.")
        self.status.value = _STATUS.render(e=edit, hint=hint, error=error)

    # -- edits (Python API) -------------------------------------------------------------------------------
    def edit(self, index: int, feature, value: float) -> int:
        """A copy of tabular sample ``index`` with ``feature`` (name or position) set to ``value``; its index."""
        self._need(Modality.TABULAR, "edit(index, feature=..., value=...)")
        index = self._index(index)
        if isinstance(feature, str):
            if feature not in self.names:
                raise InputError(f"Unknown feature {feature!r}.", f"use one of: {', '.join(self.names)}.")
            j = self.names.index(feature)
        elif isinstance(feature, (int, np.integer)) and not isinstance(feature, bool) and \
                0 <= int(feature) < len(self.names):
            j = int(feature)
        else:
            raise InputError(f"Feature {feature!r} is not a feature of this model.",
                             f"pass a name ({self.names[0]!r}, ...) or a position in 0..{len(self.names) - 1}.")
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        lo, hi = self.ranges[j]
        if not lo <= v <= hi:
            raise InputError(f"{self.names[j]} = {value!r} is outside the data's range [{lo:.6g}, {hi:.6g}].",
                             "pass a value in that range (the slider's).")
        row = np.array(self.dash.dataset.raws[index], dtype=np.float64)
        if row[j] == v:
            raise InputError(f"{self.names[j]} of #{index} is already {v:.6g}.", "pass a different value.")
        what = f"{self.names[j]} {row[j]:.4g} → {v:.4g}"
        row[j] = v
        return self._add(index, row, what)

    def edit_text(self, index: int, text: str) -> int:
        """A copy of text sample ``index`` with the text ``text``; returns its index."""
        self._need(Modality.TEXT, "edit_text(index, text)")
        index = self._index(index)
        if not isinstance(text, str) or not text.strip():
            raise InputError("The edited text is empty.", "pass a non-empty string.")
        if text == str(self.dash.dataset.raws[index]):
            raise InputError(f"The text is the same as #{index}'s.", "change the text first.")
        old, new = set(str(self.dash.dataset.raws[index]).split()), set(text.split())
        changed = [w for w in text.split() if w not in old][:3] + [f"−{w}" for w in old - new][:2]
        return self._add(index, text, "text edited" + (f" ({', '.join(changed)})" if changed else ""))

    def erase(self, index: int, region, fill: float = 0) -> int:
        """A copy of image sample ``index`` with ``region`` set to ``fill`` (0: black): a box ``(x0, y0, x1, y1)``
        in pixels (end excluded) or a boolean mask of the image's height × width; returns its index."""
        self._need(Modality.IMAGE, "erase(index, region)")
        index = self._index(index)
        raw = np.array(self.dash.dataset.raws[index])
        h, w = self._image_shape(index)
        if isinstance(region, (tuple, list)) and len(region) == 4 and not isinstance(region[0], (list, tuple)):
            x0, y0, x1, y1 = (int(round(float(v))) for v in region)
            mask = np.zeros((h, w), dtype=bool)
            mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
        else:
            mask = np.asarray(region)
            if mask.shape != (h, w):
                raise InputError(f"The region has shape {mask.shape}; the image is {h} × {w}.",
                                 "pass a box (x0, y0, x1, y1) or a boolean mask of the image's height × width.")
            mask = mask.astype(bool)
        if not mask.any():
            raise InputError(f"The region erases no pixel of #{index} ({h} × {w}).",
                             "pass a box inside the image, or paint over it with the brush.")
        lo, hi = (0, 255) if raw.dtype == np.uint8 else (-np.inf, np.inf)
        if not lo <= float(fill) <= hi:
            raise InputError(f"fill={fill!r} is outside the image's value range [{lo}, {hi}].",
                             "pass a fill value in that range (0 is black).")
        if raw.ndim == 3 and raw.shape[:2] != (h, w):          # channels first
            raw[:, mask] = fill
        else:
            raw[mask] = fill
        return self._add(index, raw, f"{int(mask.sum())} pixels erased ({mask.mean():.0%})")

    # -- the new sample ---------------------------------------------------------------------------------------
    def _add(self, parent: int, raw, what: str) -> int:
        d = self.dash
        ds = self._own_data()
        n = len(ds)
        out = np.asarray(d.model.predict([raw]), dtype=np.float64)
        if isinstance(ds.raws, np.ndarray):
            ds.raws = np.concatenate([ds.raws, np.asarray(raw, dtype=ds.raws.dtype)[None]])
        else:
            ds.raws.append(raw)
        if ds.labels is not None:
            ds.labels = np.append(ds.labels, ds.labels[parent])          # the original's label
        p = d.predictions
        grown = st.Predictions(np.concatenate([p.outputs, out.reshape((1, *p.outputs.shape[1:]))]), ds.labels, p.task)
        p.__dict__.update(grown.__dict__)         # in place: the browser and the panels hold this object
        br = d.browser
        if br._texts is not None:
            br._texts.append(str(raw).lower())
        if br.subset is not None:                 # an active audit filter keeps the copy where it keeps the original
            br.subset = np.append(br.subset, br.subset[parent])
        if self.modality is Modality.TEXT and d.audit._lengths is not None:
            d.audit._lengths = np.append(d.audit._lengths, text_lengths([raw]))   # the text-length slices
        root = self.edits[parent].root if parent in self.edits else parent
        br.follow[n] = root
        br._indices = None
        edit = Edit(n, parent, root, what, self._pred_text(parent), self._pred_text(n))
        self.edits[n] = edit
        d.history.append({"event": "whatif", "index": n, "parent": parent, "edit": what})
        where = np.flatnonzero(br.indices == n)
        if len(where):
            br.go(int(where[0]) // br.page_size)
        d._refresh_page()
        d.select(n)                               # predicted above; explained through the normal path
        self._say(edit)
        return n

    def _own_data(self) -> Dataset:
        """The dashboard's own copy of the data (made at the first edit): the caller's Dataset never grows."""
        d = self.dash
        if not self._owned:
            ds = d.dataset
            raws = np.array(ds.raws) if isinstance(ds.raws, np.ndarray) else list(ds.raws)
            d.dataset = Dataset(raws, None if ds.labels is None else ds.labels.copy(), modality=ds.modality,
                                class_names=ds.class_names, feature_names=ds.feature_names, name=ds.name,
                                target_name=ds.target_name)
            d._samples = d.dataset.samples(d.model)
            self._owned = True
        return d.dataset

    def mark(self, items: list[dict]) -> list[dict]:
        """Grid items with the edited copies marked (``edited`` = the original's index, ``note`` = the edit)."""
        for it in items:
            e = self.edits.get(it["index"])
            if e is not None:
                it["edited"], it["note"] = e.parent, e.what
                if self.modality is Modality.TABULAR:
                    it["text"] = f"{e.what} · {it['text']}"
        return items

    # -- helpers --------------------------------------------------------------------------------------------------
    def _pred_text(self, i: int) -> str:
        d = self.dash
        p = d.predictions
        if p.task is Task.CLASSIFICATION:
            k = int(p.predicted[i])
            name = d.model.classes[k] if d.model.classes else str(k)
            return f"{name} ({p.confidence[i]:.1%})"
        return f"{float(p.outputs[i]):.4g}"

    def _need(self, modality: Modality, call: str) -> None:
        if self.modality is not modality:
            fix = {Modality.TABULAR: "edit(index, feature=..., value=...)", Modality.TEXT: "edit_text(index, text)",
                   Modality.IMAGE: "erase(index, region)"}.get(self.modality, "no what-if edit")
            raise InputError(f"{call} is for a {modality.value} model; this one is {self.modality.value}.",
                             f"use dash.whatif.{fix}.")

    def _index(self, index) -> int:
        n = len(self.dash.dataset)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
            raise InputError(f"Sample index {index!r} is out of range for {n} samples.",
                             f"pass an index between 0 and {n - 1}.")
        return int(index)

    def _image_shape(self, index: int):
        if not 0 <= index < len(self.dash.dataset):
            return None
        shape = np.shape(self.dash.dataset.raws[index])
        if len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3):
            return shape[1], shape[2]
        return shape[0], shape[1]

    def is_edited(self, index: int) -> bool:
        return int(index) in self.edits
