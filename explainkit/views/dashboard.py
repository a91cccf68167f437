"""The auditor's dashboard: browse samples, see predictions, explain, compare, inspect attention, export.

``Dashboard(model, dataset)`` is an ``ipywidgets.VBox``: make it the last expression of a cell. Its logic
lives in :mod:`explainkit.views.state`, its custom views in :mod:`explainkit.views.widgets`, its trust,
comparison, attention and export panels in :mod:`explainkit.views.panels`; see
docs/dashboard.md for the test hooks (CSS classes) and the Python-side state.
"""
from __future__ import annotations

import threading
import time

import ipywidgets as W
import numpy as np

from explainkit.enums import Task
from explainkit.errors import ExplainKitError, InputError, NotApplicableError, TargetError, UnknownNameError
from explainkit.views import state as st
from explainkit.views import widgets as views
from explainkit.views.audit import AuditPanel
from explainkit.views.panels import _ENV, _T, PanelsMixin
from explainkit.views.whatif import WhatIfPanel
from explainkit.views.widgets import (
    build_attention_panel,
    build_browser,
    build_compare_panel,
    build_explain_panel,
)

__all__ = ["Dashboard"]

FAST_DEFAULTS = ("integrated_gradients", "saliency", "input_x_gradient", "occlusion")

INITIAL_WAIT_S = 30.0     # the first explanation is awaited this long at construction


class Dashboard(PanelsMixin, W.VBox):
    """Browse a data set's predictions and explain any sample with any applicable explainer."""

    def __new__(cls, model=None, *args, **kwargs):      # a language model or [model_a, model_b]: another dashboard
        from explainkit.views import pair
        return pair.dispatch(cls, model, *args, **kwargs) or super().__new__(cls)

    def __init__(self, model, dataset=None, methods=None, *, registry=None, page_size: int = 24,
                 seed: int = 0, auto: bool = True, quality: bool = True):
        from explainkit.plugins.registry import registry as default_registry

        self.model = model
        self.registry = registry if registry is not None else default_registry()
        self.dataset = st.as_dataset(model, dataset)
        self.seed = int(seed)
        self.specs = self._choose_specs(methods)
        self.cache = st.ExplanationCache()
        self.history: list[dict] = []
        self.selected_index: int | None = None
        self.last_explanation = None
        self.last_error: ExplainKitError | None = None
        self.last_quality = None
        self.comparison: dict | None = None
        self.job: st.Job | None = None
        self._jobs: list[st.Job] = []
        self._quality_cache: dict = {}
        self._attention_cache: dict = {}
        self._quiet = False
        self._samples = self.dataset.samples(model)
        t0 = time.perf_counter()
        self.predictions = st.Predictions.compute(model, self.dataset)
        self.timings = {"predict_all_s": time.perf_counter() - t0}
        self.browser = st.Browser(self.predictions, st.texts_of(self.dataset, model.modality), page_size)
        self._quality_mod = st.quality_module() if quality else None
        self._build()
        super().__init__(children=self._layout())
        self.add_class("ek-dashboard")
        self._refresh_page()
        first = self.browser.page_indices()
        if first:
            self.select(first[0])
            # The first explanation finishes before the widget is displayed, so its state is part of the
            # initial render: in Voila, updates sent while the page is still connecting can be lost.
            if self.job is not None:
                self.job.join(INITIAL_WAIT_S)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_sample(cls, name: str, **kwargs) -> "Dashboard":
        """A dashboard on a shipped sample model and its held-out data (e.g. ``"mnist-cnn"``)."""
        from explainkit.data import datasets
        from explainkit.models import zoo
        model = zoo.load_sample(name)          # a language model has no data set: the generation dashboard
        return cls(model, *(() if getattr(model, "generates", False) else (datasets.sample_data(name),)), **kwargs)

    def _choose_specs(self, methods):
        applicable = self.registry.applicable(self.model)
        if methods is None:
            if not applicable:
                raise NotApplicableError(f"No explainer applies to model {self.model.name!r}.",
                                         "install explainkit-builtins (pip install -e plugins/explainkit-builtins).")
            return applicable
        names = [methods] if isinstance(methods, str) else list(methods)
        by_name = {s.name: s for s in applicable}
        out = []
        for n in names:
            if n not in by_name:
                entry = self.registry.entries.get(n)
                if entry is None or entry.spec is None:
                    raise UnknownNameError(f"Unknown explainer {n!r}.",
                                           f"use one of: {', '.join(sorted(by_name))}.")
                raise NotApplicableError(f"{n} does not apply: {entry.spec.why_not(self.model)}",
                                         f"use one of: {', '.join(sorted(by_name))}.")
            out.append(by_name[n])
        if not out:
            raise InputError("methods is empty.", "pass at least one explainer name, or methods=None for all.")
        return out

    def _build(self) -> None:
        m, names = self.model, [s.name for s in self.specs]
        self.b = build_browser(m, self.dataset, self.predictions, page_size=self.browser.page_size)
        default = next((n for n in FAST_DEFAULTS if n in names), names[0])    # never start on a slow one
        self.e = build_explain_panel(m, self.specs, default)
        self.c = build_compare_panel(self.specs, default)
        self.a = build_attention_panel() if self._has_attention() else None
        self._forms = {}
        acc = None if self.predictions.correct is None else float(self.predictions.correct.mean())
        self.header = W.HTML(_T["header"].render(
            name=m.name, family=m.config.get("family", "custom"), modality=m.modality.value, task=m.task.value,
            n=len(self.dataset), acc=acc, n_methods=len(self.specs)))
        self.header.add_class("ek-header")
        self.error = W.HTML("", layout=W.Layout(display="none"))
        self.error.add_class("ek-error")
        self.status = W.HTML("")
        self.status.add_class("ek-status")
        self._wire()
        self.audit = AuditPanel(self)          # the dataset-level audit (explainkit.views.audit)
        self.whatif = WhatIfPanel(self)        # edit a sample, re-predict, re-explain (explainkit.views.whatif)
        self._show_form(default)

    def _layout(self):
        left = W.VBox([_title("Samples"), self.b.filters, self.b.grid, self.b.pager],
                      layout=W.Layout(width="46%", min_width="360px"))
        right = W.VBox([_title("Prediction"), self.b.prediction, self.whatif.panel, _title("Explain"),
                        self.e.controls, self.e.params, self.e.run_row, self.error, self.e.view_controls,
                        self.e.view, self.e.custom, self.e.quality_row, self.e.export_row, self.status],
                       layout=W.Layout(width="54%", padding="0 0 0 12px"))
        for box in (left, right):
            box.add_class("ek-card")
        rows = [self.header, W.HBox([left, right], layout=W.Layout(width="100%", align_items="flex-start")),
                self.c.panel, self.audit.panel]
        if self.a is not None:
            rows.append(self.a.panel)
        return rows

    def _wire(self) -> None:
        b, e, c = self.b, self.e, self.c
        for w, key in ((b.true, "true_class"), (b.pred, "pred_class"), (b.correct, "correctness"),
                       (b.conf, "conf_range"), (b.search, "search"), (b.sort, "sort")):
            w.observe(lambda ch, key=key: self._on_filter(key, ch["new"]), names="value")
        b.next.on_click(lambda _: self.page(self.browser.page + 1))
        b.prev.on_click(lambda _: self.page(self.browser.page - 1))
        b.grid.observe(lambda ch: None if self._quiet else self.select(ch["new"]), names="selected")
        e.method.observe(lambda ch: self._on_method(ch["new"]), names="value")
        e.target.observe(lambda ch: self._on_change("target", ch["new"]), names="value")
        e.explain.on_click(lambda _: self.explain(force=True))
        e.cancel.on_click(lambda _: self.cancel())
        W.link((e.mode, "value"), (e.view, "mode"))
        W.link((e.opacity, "value"), (e.view, "opacity"))
        e.quality.on_click(lambda _: self._show_quality_plot())
        e.export_png.on_click(lambda _: self._export_link("png"))
        e.export_html.on_click(lambda _: self._export_link("html"))
        c.run.on_click(lambda _: self.compare())
        if self.a is not None:
            for name in ("layer", "head", "rollout"):
                W.link((getattr(self.a, name), "value"), (self.a.view, name))

    # -- state exposed to tests and notebooks -----------------------------------------------------------
    @property
    def method(self) -> str:
        return self.e.method.value

    @method.setter
    def method(self, name: str) -> None:
        self.e.method.value = name

    @property
    def params(self) -> dict:
        return {n: w.value for n, w in self._forms.get(self.method, {}).items()}

    def set_params(self, **values) -> None:
        """Set parameters of the current method (as the form would); re-explains once."""
        self._quiet = True
        try:
            views.set_form(self._forms[self.method], self.method, values)
        finally:
            self._quiet = False
        self._on_change("params", dict(values))

    @property
    def target(self):
        return self.e.target.value if self.model.task is Task.CLASSIFICATION else None

    @target.setter
    def target(self, value) -> None:
        if self.model.task is not Task.CLASSIFICATION:
            if value is not None:
                self.model.check_target(value)       # TargetError: a regression model has no target classes
            return
        n = len(self.model.classes)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < n:
            raise TargetError(f"Target {value!r} is not a class of model {self.model.name!r} ({n} classes).",
                              f"set target to an integer in 0..{n - 1} "
                              f"({', '.join(f'{i}={c}' for i, c in enumerate(self.model.classes))}).")
        self.e.target.value = int(value)

    @property
    def view_key(self) -> str:
        """``"<sample>|<method>|<hash of params, target, seed>"``, mirrored as ``data-ek-key`` on ek-view."""
        return f"{self.selected_index}|{self.method}|{st.params_hash(self.params, self.target, self.seed)}"

    def _key(self):
        return st.cache_key(self.selected_index, self.method, self.params, self.target, self.seed)

    # -- browsing --------------------------------------------------------------------------------------
    def _on_filter(self, key, value) -> None:
        if key in ("true_class", "pred_class"):
            value = None if value == -1 else int(value)
        self.browser.set(**{key: value})
        self.history.append({"event": "filter", key: value})
        self._refresh_page()

    def page(self, n: int) -> int:
        """Show page ``n`` (clamped); returns the page shown."""
        shown = self.browser.go(n)
        self.history.append({"event": "page", "page": shown})
        self._refresh_page()
        return shown

    def _refresh_page(self) -> None:
        br, b = self.browser, self.b
        idx = br.page_indices()
        with b.grid.hold_sync():
            b.grid.items = self.whatif.mark(views.grid_items(idx, self.dataset, self.predictions,
                                                             self.model.classes, self.model.modality))
            self._quiet = True
            b.grid.selected = self.selected_index if self.selected_index is not None else -1
            self._quiet = False
        b.page_label.value = _T["page"].render(page=br.page + 1, pages=br.n_pages, n=len(br.indices),
                                               total=len(self.predictions))
        b.prev.disabled, b.next.disabled = br.page == 0, br.page >= br.n_pages - 1

    def select(self, index: int) -> None:
        """Select a sample: prediction, target (default: the predicted class), attention, explanation."""
        index = st.check_index(index, len(self.dataset))
        self.selected_index = index
        self.history.append({"event": "select", "index": index})
        _, label = self.dataset[index]
        self.b.prediction.data = views.prediction_payload(self.model, self.predictions, index, label)
        self._quiet = True
        try:
            self.b.grid.selected = index
            if self.model.task is Task.CLASSIFICATION:
                self.e.target.value = int(self.predictions.predicted[index])
        finally:
            self._quiet = False
        if self.a is not None:
            if self.job is not None and self.job.alive:
                self.job.cancel()          # the previous sample's: its hooks hold the model until it stops
            self._show_attention(index)
        self.explain()

    # -- explaining --------------------------------------------------------------------------------------
    def _on_method(self, name) -> None:
        self._show_form(name)
        self._on_change("method", name)

    def _show_form(self, name) -> None:
        if name not in self._forms:
            spec = next(s for s in self.specs if s.name == name)
            self._forms[name] = views.param_form(spec, self.model)
            for w in self._forms[name].values():
                w.observe(lambda ch, n=w: self._on_change("params", {n.description: ch["new"]}), names="value")
        self.e.params.children = list(self._forms[name].values()) or [W.HTML("<i class='ek-muted'>no parameters</i>")]

    def _on_change(self, what, value) -> None:
        if self._quiet:
            return
        self.history.append({"event": what, "value": value})
        if self.selected_index is not None:
            self.explain()

    def explain(self, force: bool = False):
        """Explain the selected sample with the current method, params and target (cached, in the background).

        Returns the cached Explanation at once, else None (the result arrives via ``wait()``/the view).
        """
        if self.selected_index is None or (not force and not self.e.auto.value):
            self._status(st.JobState.IDLE)
            return None
        self.history.append({"event": "explain", "index": self.selected_index, "method": self.method,
                             "target": self.target, "params": dict(self.params), "forced": force})
        key, vkey = self._key(), self.view_key
        t0 = time.perf_counter()
        hit = self.cache.get(key)
        if self.job is not None and self.job.alive:
            self.job.cancel()
        if hit is not None:
            self.last_error = None
            self._hide_error()
            self._show(hit, vkey)
            self._status(st.JobState.CACHED, (time.perf_counter() - t0) * 1000)
            return hit
        self._hide_error()
        index, method, target, params = self.selected_index, self.method, self.target, self.params
        sample = self._samples[index]

        def work():
            from explainkit.plugins.runner import run_explainer
            return run_explainer(method, self.model, [sample], target, seed=self.seed, reg=self.registry,
                                 **params)[0]

        def done(exp):
            self.cache.put(key, exp)
            self.audit.add(exp)                # signed global importance grows as explanations arrive
            self.last_error = None             # a success clears the previous failure
            try:
                if vkey == self.view_key:
                    self._show(exp, vkey)
                    self._status(st.JobState.DONE, exp.timings.get("explain_s", 0) * 1000)
            finally:
                self._progress(None)

        def failed(err):
            self._show_error(method, err)
            self._sync_menu()
            self._status(st.JobState.FAILED)
            self._progress(None)

        self._status(st.JobState.RUNNING)
        self.job = self._start(st.Job(work, done, failed, name=method), f"{method} on #{index}")
        return None

    def _start(self, job: st.Job, what: str) -> st.Job:
        self._jobs = [j for j in self._jobs if j.alive] + [job]
        self._progress(job, what)          # shown before the start: a fast job hides it again when done
        job.start()
        self._tick(job, what)
        return job

    def cancel(self) -> None:
        """Cancel the running explanation: interrupt it at its next Python step and discard its result."""
        running = [j for j in self._jobs if j.alive]
        for j in running:
            j.cancel()
        self.history.append({"event": "cancel", "jobs": len(running)})
        self._progress(None)
        self._status(st.JobState.CANCELLED)

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until background work (explanations, comparisons, quality) is finished (tests, scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [j for j in self._jobs if j.alive]
            if not alive:
                return True
            if time.monotonic() > deadline:
                return False
            alive[0].join(max(0.0, deadline - time.monotonic()))

    def _show(self, exp, vkey: str) -> None:
        self.last_explanation = exp
        spec = next((s for s in self.specs if s.name == exp.method), None)
        if spec is not None and spec.view:
            self._custom_view(spec, exp)
        else:
            self.e.custom.children = []
            self.e.view.layout.display = None
            self.e.view.show(exp, vkey)
        # the attention panel keeps the model's own [layers, heads, T, T] (its menus are built for that shape);
        # an attention explainer's result (e.g. a rollout, one "head") is drawn in the main view
        self.e.export_link.value = ""
        self._schedule_quality(exp, vkey)

    def _custom_view(self, spec, exp) -> None:
        import importlib
        try:
            mod, _, attr = spec.view.partition(":")
            widget = getattr(importlib.import_module(mod), attr)(exp)
        except Exception as err:  # noqa: BLE001 - a plugin's view failing is contained like its explainer
            self._show_error(spec.name, err, origin=f"view {spec.view}")
            return
        widget.add_class("ek-view-custom-content")
        self.e.view.layout.display = "none"
        self.e.custom.children = [widget]

    # -- panels: progress, status, errors ---------------------------------------------------------------
    def _progress(self, job, what: str = "") -> None:
        e = self.e
        if job is None:
            e.progress.layout.visibility = e.cancel.layout.visibility = "hidden"
            e.progress.value, e.progress_label.value = 0.0, ""
            return
        e.progress.layout.visibility = e.cancel.layout.visibility = "visible"
        e.progress.value = 0.0
        e.progress_label.value = _T["progress"].render(what=what, secs=0.0)

    def _tick(self, job, what: str) -> None:
        """Update the elapsed time while the job runs (plugins report no finer progress)."""
        def tick():
            while job.alive:
                time.sleep(0.25)
                if job.alive:
                    self.e.progress_label.value = _T["progress"].render(what=what, secs=job.elapsed)
        threading.Thread(target=tick, daemon=True, name="explainkit-progress").start()

    def _status(self, state, ms=None) -> None:
        self._mark_previous(state is st.JobState.RUNNING)
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) or "-"
        self.status.value = _T["status"].render(index=self.selected_index, method=self.method, target=self.target,
                                                params=params, state=state.value, ms=ms)

    def _show_error(self, method, err, origin=None) -> None:
        entry = self.registry.entries.get(method)
        origin = origin or (f"{entry.distribution} {entry.version}" if entry else "")
        self.last_error = err if isinstance(err, ExplainKitError) else ExplainKitError(str(err))
        self.history.append({"event": "error", "method": method, "message": str(err)})
        self.error.value = _T["error"].render(method=method, origin=origin, message=str(err))
        self.error.layout.display = None

    def _sync_menu(self) -> None:
        """Drop explainers the registry now reports broken, so the menu agrees with ``ek.explainers()``."""
        ok = {s.name for s in self.registry.applicable(self.model)}
        kept = [s for s in self.specs if s.name in ok]
        if len(kept) == len(self.specs):
            return
        self.specs = kept
        self._quiet = True                     # changing the menu must not start another explanation
        try:
            self.e.method.options = [(s.title, s.name) for s in kept]
            chosen = tuple(v for v in self.c.methods.value if v in ok)
            self.c.methods.options = [(s.title, s.name) for s in kept]
            self.c.methods.value = chosen
        finally:
            self._quiet = False
        self.history.append({"event": "menu", "methods": [s.name for s in kept]})

    def _hide_error(self) -> None:
        self.error.layout.display = "none"
        self.error.value = ""

    def __repr__(self) -> str:
        return (f"<Dashboard {self.model.name!r} n={len(self.dataset)} methods={len(self.specs)} "
                f"selected={self.selected_index}>")


# -- helpers -----------------------------------------------------------------------------------------
def _title(text: str) -> W.HTML:
    w = W.HTML(_ENV.from_string("{{ t }}").render(t=text))
    w.add_class("ek-section-title")
    return w
