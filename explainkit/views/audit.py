"""The dashboard's audit panel: the whole data's confusion matrix (or residual plot) that filters the sample
list, named and savable slices with their metrics, signed global importance accumulated from the cached
explanations as they arrive, and "why A and not B" for a misclassified sample.

The numbers come from :mod:`explainkit.views.aggregate` (shared with the report). Test hooks (CSS classes):
``ek-audit`` (the view; ``data-ek-filter`` = the filter's name, ``data-ek-count`` = samples it keeps),
``ek-audit-cell`` (``data-ek-cell="true,pred"``), ``ek-audit-slices``, ``ek-audit-importance``
(``data-ek-done``/``data-ek-total``), ``ek-audit-why`` (button), ``ek-why-a`` / ``ek-why-b`` (the two views);
tabular ``ek-audit-beeswarm`` (``ek-audit-dot`` dots), ``ek-audit-dependence`` (``ek-audit-dep-dot``) with the
``ek-audit-dep-feature`` / ``ek-audit-dep-color`` pickers; text ``ek-audit-min-count``; images ``ek-audit-map-class``.
"""
from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path

import anywidget
import ipywidgets as W
import numpy as np
import traitlets

from explainkit.enums import Modality, Task
from explainkit.errors import DataError, InputError
from explainkit.views import state as st
from explainkit.views.aggregate import (
    MIN_WORD_COUNT,
    SignedImportance,
    check_slices,
    confusion_cells,
    default_slices,
    slice_mask,
    slice_metrics,
    text_lengths,
)
from explainkit.views.audit_plots import beeswarm_data, dependence_data, mean_map
from explainkit.views.widgets import STATIC, ExplanationView

__all__ = ["AuditView", "AuditPanel"]

MAX_CLASSES = 20             # above this, the matrix keeps the classes that occur as a label or a prediction
MAX_POINTS = 4000            # residual plot: points sent to the browser (a fixed-seed sample above this)
TOP_BARS = 12
PUSH_EVERY_S = 0.25          # importance: the view is refreshed at most this often while a batch runs
CHUNK = 4                    # importance: samples explained per background job


class AuditView(anywidget.AnyWidget):
    """Confusion matrix / residual scatter, slice table and importance bars; clicks come back as traits."""

    _esm = STATIC / "audit.js"
    _css = STATIC / "audit.css"
    confusion = traitlets.Dict({}).tag(sync=True)      # {classes, counts} (classifiers)
    residuals = traitlets.Dict({}).tag(sync=True)      # {x, y, unit} (regression; x = prediction, y = residual)
    cell = traitlets.List([]).tag(sync=True)           # [true, pred] clicked in the browser, [] = none
    region = traitlets.List([]).tag(sync=True)         # [x0, x1, y0, y1] brushed on the residual plot
    filter = traitlets.Unicode("").tag(sync=True)      # the active filter's name ("" = none)
    count = traitlets.Int(-1).tag(sync=True)           # samples the filter keeps
    slices = traitlets.List([]).tag(sync=True)         # [{name, n, share, accuracy|mae, ...}]
    importance = traitlets.Dict({}).tag(sync=True)     # {method, done, total, target, kind, rows}


def _sample(n: int, k: int) -> np.ndarray:
    return np.arange(n) if n <= k else np.sort(np.random.default_rng(0).choice(n, k, replace=False))


def _hooked(widget, cls: str, show: bool):
    widget.add_class(cls)
    widget.layout.display = None if show else "none"
    return widget


class AuditPanel:
    """Built by the dashboard (``dash.audit``); every action is also a Python method, for tests and notebooks."""

    def __init__(self, dash):
        self.dash = dash
        m, p = dash.model, dash.predictions
        self.is_cls = m.task is Task.CLASSIFICATION
        self.saved: dict[str, dict] = {}
        # the data never changes under a dashboard: its word counts and default slices are computed once
        self._lengths = text_lengths(dash.dataset.raws) if m.modality is Modality.TEXT else None
        feat = (m.feature_names or [None])[0] if m.modality is Modality.TABULAR else None
        vals = None if feat is None else np.asarray(dash.dataset.raws, dtype=np.float64)[:, 0]
        self._defaults = default_slices(m.modality, m.task, m.classes, lengths=self._lengths, feature=feat,
                                        values=vals, labelled=p.labels is not None)
        self.importance: dict[str, SignedImportance] = {}
        self._counted: set = set()
        self._pushed = 0.0
        self._stamp = 0
        self.job: st.Job | None = None
        self.view = AuditView()
        self.view.add_class("ek-audit")
        if self.is_cls and p.labels is not None:
            lab, k = np.asarray(p.labels).astype(int), len(m.classes)
            shown = np.arange(k) if k <= MAX_CLASSES else np.union1d(lab, p.predicted)   # ImageNet: those seen
            cm = confusion_cells(lab, p.predicted, k)[np.ix_(shown, shown)]
            self.view.confusion = {"classes": [str(m.classes[c]) for c in shown], "index": shown.tolist(),
                                   "counts": cm.tolist()}
        elif p.labels is not None:
            keep = _sample(len(p), MAX_POINTS)
            res = p.outputs - np.asarray(p.labels, dtype=np.float64)
            self.view.residuals = {"x": p.outputs[keep].round(6).tolist(), "y": res[keep].round(6).tolist(),
                                   "unit": m.target_name or "output"}
        self.view.observe(lambda ch: ch["new"] and self.filter_cell(*ch["new"]), names="cell")
        self.view.observe(lambda ch: ch["new"] and self.filter_region(*ch["new"]), names="region")
        self.view.on_msg(self._on_msg)
        self.name = W.Text(placeholder="slice name", layout=W.Layout(width="160px"))
        self.name.add_class("ek-audit-name")
        self.save_btn = W.Button(description="Save filter as slice", layout=W.Layout(width="auto"))
        self.save_btn.add_class("ek-audit-save")
        self.save_btn.on_click(lambda _: self.save_slice(self.name.value or f"slice {len(self.saved) + 1}"))
        self.n_box = W.BoundedIntText(value=min(200, len(p)), min=1, max=max(1, len(p)), description="samples",
                                      layout=W.Layout(width="170px"))
        self.n_box.add_class("ek-audit-n")
        self.run_btn = W.Button(description="Global importance", layout=W.Layout(width="auto"))
        self.run_btn.add_class("ek-audit-run")
        self.run_btn.on_click(lambda _: self.compute_importance(self.n_box.value))
        self.why_btn = W.Button(description="Why A and not B?", disabled=True, layout=W.Layout(width="auto"))
        self.why_btn.add_class("ek-audit-why")
        self.why_btn.on_click(lambda _: self.why())
        self.why_a, self.why_b = ExplanationView(), ExplanationView()
        self.why_a.add_class("ek-why-a")
        self.why_b.add_class("ek-why-b")
        self.why_label = W.HTML("")
        self.why_box = W.VBox([self.why_label, W.HBox([self.why_a, self.why_b])], layout=W.Layout(display="none"))
        row = W.HBox([self.name, self.save_btn, self.n_box, self.run_btn, self.why_btn])
        self._min_count, self._map_target, self._dep, self._quiet = MIN_WORD_COUNT, None, None, False
        names = list(m.feature_names or []) if m.modality is Modality.TABULAR else []
        self.min_box = _hooked(W.BoundedIntText(value=MIN_WORD_COUNT, min=1, max=10**6, description="min count",
                                             layout=W.Layout(width="150px")), "ek-audit-min-count",
                            m.modality is Modality.TEXT)
        self.min_box.observe(lambda ch: self.set_min_count(ch["new"]), names="value")
        self.map_box = _hooked(W.Dropdown(options=[], description="mean map", layout=W.Layout(width="220px")),
                            "ek-audit-map-class", m.modality is Modality.IMAGE)
        self.map_box.observe(lambda ch: self._quiet or ch["new"] is None or self.show_map(ch["new"]), names="value")
        self.dep_box = _hooked(W.Dropdown(options=names, value=None, description="dependence",
                                       layout=W.Layout(width="240px")), "ek-audit-dep-feature", bool(names))
        self.col_box = _hooked(W.Dropdown(options=["(none)", "auto", *names], value="auto", description="colour by",
                                       layout=W.Layout(width="240px")), "ek-audit-dep-color", bool(names))
        for b in (self.dep_box, self.col_box):
            b.observe(lambda ch: self._quiet or self.dep_box.value is None or self.dependence(
                self.dep_box.value, {"(none)": None}.get(self.col_box.value, self.col_box.value)), names="value")
        row2 = W.HBox([self.min_box, self.map_box, self.dep_box, self.col_box])
        self.panel = W.VBox([row, row2, self.view, self.why_box])
        self.panel.add_class("ek-audit-panel")
        self.panel.add_class("ek-card")
        dash.b.grid.observe(lambda ch: self._on_select(ch["new"]), names="selected")
        self.refresh_slices()

    # -- filtering the sample list ----------------------------------------------------------------------
    def _apply(self, mask, name: str) -> int:
        d = self.dash
        d.browser.set(subset=mask)
        d.history.append({"event": "audit-filter", "filter": name})
        d._refresh_page()
        n = len(d.browser.indices)
        with self.view.hold_sync():
            self.view.filter, self.view.count = name, n
        return n

    def filter_cell(self, true: int, pred: int) -> int:
        """Show only the samples of class ``true`` predicted as ``pred``; returns how many."""
        p, classes = self.dash.predictions, self.dash.model.classes
        k = len(classes or [])
        if not self.is_cls or p.labels is None or not (0 <= int(true) < k and 0 <= int(pred) < k):
            raise InputError(f"No confusion cell ({true}, {pred}) for this model and data.",
                             f"pass class indices in 0..{k - 1} of a labelled classifier's data.")
        self._spec = {"class": int(true), "predicted": int(pred)}
        mask = (np.asarray(p.labels).astype(int) == int(true)) & (p.predicted == int(pred))
        return self._apply(mask, f"true {classes[int(true)]}, predicted {classes[int(pred)]}")

    def filter_region(self, x0: float, x1: float, y0: float, y1: float) -> int:
        """Regression: the samples whose (prediction, residual) lies in the brushed rectangle."""
        p = self.dash.predictions
        if self.is_cls or p.labels is None:
            raise InputError("The residual region is for a labelled regression model.", "click a confusion cell.")
        (x0, x1), (y0, y1) = sorted((float(x0), float(x1))), sorted((float(y0), float(y1)))
        res = p.outputs - np.asarray(p.labels, dtype=np.float64)
        self._spec = None
        mask = (p.outputs >= x0) & (p.outputs <= x1) & (res >= y0) & (res <= y1)
        return self._apply(mask, f"prediction {x0:.3g}–{x1:.3g}, residual {y0:+.3g}–{y1:+.3g}")

    def filter_slice(self, name: str) -> int:
        spec = self._slices().get(name)
        if spec is None:
            raise InputError(f"No slice named {name!r}.", "use one of: " + ", ".join(self._slices()) + ".")
        self._spec = spec
        return self._apply(self._mask(name, spec), name)

    def clear_filter(self) -> None:
        self._spec = None
        self._apply(None, "")
        with self.view.hold_sync():
            self.view.cell, self.view.region, self.view.count = [], [], -1

    # -- slices -------------------------------------------------------------------------------------
    def _slices(self) -> dict:
        return {**self._defaults, **self.saved}

    def _mask(self, name, spec) -> np.ndarray:
        d, p = self.dash, self.dash.predictions
        return slice_mask(name, spec, raws=d.dataset.raws, labels=p.labels, predicted=p.predicted,
                          confidence=p.confidence if self.is_cls else None,
                          classes=d.model.classes if self.is_cls else None, feature_names=d.model.feature_names,
                          lengths=self._lengths)

    def save_slice(self, name: str, spec: dict | None = None) -> dict:
        """Save a named slice: ``spec`` (see :mod:`explainkit.views.aggregate`), or the active cell filter."""
        spec = spec if spec is not None else getattr(self, "_spec", None)
        if spec is None:
            raise InputError("There is no filter to save.", "click a confusion cell first, or pass spec={...}.")
        if callable(spec):
            raise InputError("A dashboard slice must be a spec dict, so that it can be saved.",
                             "pass {'class': ...}, {'confidence': [lo, hi]}, ...; predicates go to ek.report.")
        checked = check_slices({name: spec})
        self._mask(name, spec)                 # a bad class or feature fails here, not in the table
        self.saved.update(checked)
        self.refresh_slices()
        return checked[name.strip()]

    def refresh_slices(self) -> list[dict]:
        p = self.dash.predictions
        rows = [{"name": n, "saved": n in self.saved, **slice_metrics(self._mask(n, s), task=self.dash.model.task,
                                                                       outputs=p.outputs, labels=p.labels)}
                for n, s in self._slices().items()]
        self.view.slices = rows
        return rows

    def save(self, path) -> Path:
        """Write the saved slices to a JSON file (``ek.report(..., slices=json.load(f))`` reads them)."""
        from explainkit.atomic import atomic_write
        return atomic_write(Path(path), json.dumps(self.saved, indent=1))     # never half-written

    def load(self, path) -> dict:
        """Read slices saved by :meth:`save` (each one checked as :meth:`save_slice` checks it)."""
        try:
            got = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path} is not a slices file ({type(e).__name__}: {e}).",
                            "pass a file written by dash.audit.save().") from None
        if not isinstance(got, dict):
            raise DataError(f"{path} holds {type(got).__name__}, not {{name: spec}}.",
                            "pass a file written by dash.audit.save().")
        for name, spec in got.items():
            self.save_slice(name, spec)
        return dict(self.saved)

    # -- global importance, incrementally -----------------------------------------------------------------
    def add(self, exp, push: bool = True) -> None:
        """Count one explanation (each sample once per method and parameters) and refresh the bars."""
        key = st.cache_key(exp.sample_index, exp.method, exp.params, exp.target, exp.seed or 0)
        if exp.sample_index is None or key in self._counted:
            return
        self._counted.add(key)
        values = self.dash.dataset.raws[exp.sample_index] if self.dash.model.modality is Modality.TABULAR else None
        self.importance.setdefault(exp.method, SignedImportance(self.dash.model.modality)).add(exp, values)
        if push and time.perf_counter() - self._pushed > PUSH_EVERY_S:
            self.push(exp.method)

    def push(self, method: str, done: int | None = None, total: int | None = None) -> dict:
        imp = self.importance.get(method)
        out = {"method": method, "n": imp.n if imp else 0, "done": done if done is not None else imp.n if imp else 0,
               "total": total if total is not None else self.view.importance.get("total", 0), "rows": []}
        if imp is not None and imp.n:
            t = imp.targets()[0]
            out["target"] = (self.dash.model.target_name or "output") if t is None else \
                str(self.dash.model.classes[int(t)])
            out["sense"] = ["for it", "against it"] if self.is_cls else ["raises the prediction", "lowers it"]
            out["n_target"] = imp.count(t)
            if imp.modality is Modality.TEXT:
                imp.min_count = self._min_count
                w = imp.words(t, k=TOP_BARS // 2)
                out["rows"] = [{"name": r["word"], "value": r["mean"]} for r in w["for"] + w["against"]]
                out["min_count"], out["rare"] = self._min_count, w["rare"]
            elif imp.modality is Modality.TABULAR:
                mean = imp.mean(t)
                names = self.dash.model.feature_names or [f"x{i}" for i in range(len(mean))]
                order = np.argsort(-np.abs(imp.matrix(t)[0]).mean(axis=0), kind="stable")[:TOP_BARS]
                out["rows"] = [{"name": names[i], "value": float(mean[i])} for i in order]
                out["beeswarm"] = beeswarm_data(imp, t, names, order)
                feat, col = self._dep or (names[order[0]], "auto")
                out["dependence"] = dependence_data(imp, t, names, feat, col)
            else:
                mt = self._map_target if self._map_target in imp.groups else t
                out["map"] = mean_map(imp, mt)
                out["map_class"] = str(self.dash.model.classes[int(mt)]) if mt is not None else out["target"]
                self._quiet = True
                try:
                    self.map_box.options = [(f"{self.dash.model.classes[int(c)]} ({imp.count(c)})"
                                             if c is not None else "output", c) for c in imp.targets()]
                    self.map_box.value = mt
                finally:
                    self._quiet = False
        self._pushed = time.perf_counter()
        self._stamp += 1
        out["stamp"] = self._stamp             # a new dict every time: a repeated press redraws too
        self.view.importance = out
        return out

    def _latest(self, method):
        method = method or self.view.importance.get("method") or self.dash.method
        imp = self.importance.get(method)
        if imp is None or not imp.n:
            raise InputError(f"No explanation of {method!r} is counted yet.", "press 'Global importance' first.")
        return method, imp

    def dependence(self, feature: str, color_by: str | None = None, method: str | None = None) -> dict:
        """Tabular: draw ``feature``'s attribution against its value, coloured by ``color_by``'s value (None:
        one colour; "auto": the feature most correlated with the attribution); returns the data it draws."""
        if self.dash.model.modality is not Modality.TABULAR:
            raise InputError("The dependence plot is for tabular models.", "use the bars or the mean map.")
        method, imp = self._latest(method)
        width = imp.matrix(imp.targets()[0])[0].shape[1]
        names = list(self.dash.model.feature_names or [f"x{i}" for i in range(width)])
        dependence_data(imp, imp.targets()[0], names, feature, color_by)   # a bad name fails here, not in push
        self._dep = (feature, color_by)
        self._quiet = True
        try:
            self.dep_box.value, self.col_box.value = feature, "(none)" if color_by is None else color_by
        finally:
            self._quiet = False
        return self.push(method)["dependence"]

    def set_min_count(self, k: int, method: str | None = None) -> dict:
        """Text: show a word's mean signed score only once it occurs at least ``k`` times; returns the view's data."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"min count must be a positive integer; got {k!r}.", "pass 2, 3, ...")
        self._min_count = int(k)
        if self.min_box.value != k:
            self.min_box.value = int(k)
        method = method or self.view.importance.get("method")
        return self.push(method) if method else {}

    def show_map(self, target, method: str | None = None) -> dict:
        """Images: show the mean map of the samples explained for class ``target`` (index); returns it."""
        method, imp = self._latest(method)
        mean_map(imp, target)                        # fails with a clear error for a class not explained
        self._map_target = target
        return self.push(method)["map"]

    def compute_importance(self, n: int | None = None, method: str | None = None) -> st.Job | None:
        """Explain the first ``n`` samples of the current list in the background, a few at a time (between
        chunks the model is free, so a click on a sample is never kept waiting). Samples already counted or
        in the dashboard's cache are added at once; None when nothing is left to explain."""
        d = self.dash
        method = method or d.method
        order = [int(i) for i in d.browser.indices[: n or len(d.browser.indices)]]
        params, seed = dict(d.params), d.seed
        target = (lambda i: int(d.predictions.predicted[i])) if self.is_cls else (lambda i: None)
        todo = []
        for i in order:                        # counted or cached already: no model call, no job
            key = st.cache_key(i, method, params, target(i), seed)
            exp = None if key in self._counted else d.cache.get(key)
            if exp is not None:
                self.add(exp, push=False)
                self._counted.add(key)
            elif key not in self._counted:
                todo.append(i)
        have = len(order) - len(todo)
        self.push(method, done=have, total=len(order))
        if not todo:
            self.job = None
            return None

        def chunk(start: int) -> st.Job:
            def work():
                from explainkit.plugins.runner import run_explainer
                for i in todo[start:start + CHUNK]:
                    key = st.cache_key(i, method, params, target(i), seed)
                    exp = run_explainer(method, d.model, [d._samples[i]], target(i), seed=seed, reg=d.registry,
                                        **params)[0]
                    exp.sample_index = i
                    d.cache.put(key, exp)
                    self.add(exp, push=False)
                    self._counted.add(key)
                return start + CHUNK

            def done(nxt):
                self.push(method, done=have + min(nxt, len(todo)), total=len(order))
                if nxt < len(todo):
                    self.job = d._start(chunk(nxt), f"global importance ({method}, {have + nxt}/{len(order)})")

            return st.Job(work, done, lambda err: d._show_error(method, err), name=f"importance {method}")

        self.job = d._start(chunk(0), f"global importance ({method}, {have}/{len(order)})")
        return self.job

    def wait(self, timeout: float = 120.0) -> bool:
        """Block until the importance batch (all its chunks) and any why-A-not-B job are done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dash.wait(max(0.0, deadline - time.monotonic())) and not any(j.alive for j in self.dash._jobs):
                time.sleep(0.05)                  # a chunk's on_done may be starting the next one
                if not any(j.alive for j in self.dash._jobs):
                    return True
        return False

    # -- why A and not B ----------------------------------------------------------------------------------
    def _on_select(self, index) -> None:
        p = self.dash.predictions
        self.why_btn.disabled = not (self.is_cls and p.correct is not None and 0 <= index < len(p)
                                     and not p.correct[index])

    def why(self, index: int | None = None) -> st.Job:
        """Explain a misclassified sample for its predicted and its true class, side by side."""
        d = self.dash
        index = d.selected_index if index is None else int(index)
        p = d.predictions
        if not self.is_cls or p.correct is None or index is None or p.correct[index]:
            raise InputError(f"Sample {index} is not misclassified: there is no A-versus-B to explain.",
                             "select a sample marked ✗ (filter by incorrect).")
        a, b = int(p.predicted[index]), int(p.labels[index])
        method, params, seed, sample = d.method, dict(d.params), d.seed, d._samples[index]

        def work():
            from explainkit.plugins.runner import run_explainer
            return [run_explainer(method, d.model, [sample], t, seed=seed, reg=d.registry, **params)[0]
                    for t in (a, b)]

        def done(pair):
            names = d.model.classes
            self.why_label.value = (f"<b>#{index}</b>: why <b>{escape(str(names[a]))}</b> (predicted, left) and "
                                    f"not <b>{escape(str(names[b]))}</b> (true, right), {escape(method)}")
            self.why_a.show(pair[0], f"{index}|{method}|target={a}")
            self.why_b.show(pair[1], f"{index}|{method}|target={b}")
            self.why_box.layout.display = None

        return d._start(st.Job(work, done, lambda err: d._show_error(method, err), name="why"),
                        f"why {a} not {b} on #{index}")

    def _on_msg(self, _widget, content, _buffers) -> None:
        if content.get("event") == "clear":
            self.clear_filter()
        elif content.get("event") == "slice":
            self.filter_slice(str(content.get("name", "")))
