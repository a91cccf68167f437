"""Two models side by side: ``Dashboard([model_a, model_b], data)``.

Both models must be of one modality and task, with the same classes (tabular: the same features). Each side
is a full :class:`~explainkit.views.dashboard.Dashboard` (``d.left``, ``d.right``: predictions, caches, jobs,
forms, legends, trust badge) of which the pair shows the prediction, parameters, map, trust and status; one
sample list selects for both, one explainer menu (the methods that apply to both) and one target drive both.
Below, the rank agreement of the two explanations over the units both scored (Spearman ρ and top-k overlap
from :func:`explainkit.trust.quality.agreement`, Kendall τ-b) and their rows aligned by unit
(:func:`explainkit.views.compare.rows_html`). Test hooks: docs/dashboard.md, "Two models side by side".
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import ipywidgets as W
import jinja2
import numpy as np

from explainkit.enums import Modality, Task, _StrEnum
from explainkit.errors import InputError, NotApplicableError, UnknownNameError
from explainkit.views import state as st
from explainkit.views.render import visible_markup
from explainkit.views.widgets import build_browser, grid_items

__all__ = ["PairDashboard", "PairFilter", "check_pair", "rank_agreement", "kendall_tau", "dispatch"]

TOP_K = 5                # top-k overlap: k = max(TOP_K, units // 10), at most the units both scored
KENDALL_MAX = 2000       # above this many units, Kendall's τ is computed on a fixed-seed sample of them
REGRESSION_TOLERANCE = 0.1   # regression: the models disagree where |a - b| > this × the std of the labels


class PairFilter(_StrEnum):
    ALL = "all samples"
    DISAGREE = "the models disagree"
    AGREE = "the models agree"


def dispatch(cls, model, *args, **kwargs):
    """What ``Dashboard(...)`` builds instead of itself: the pair for a list or tuple of models, the generation
    dashboard for a language model; None for the single-model dashboard."""
    if isinstance(model, (list, tuple)):
        return PairDashboard(model, *args, side=cls, **kwargs)
    from explainkit.views import gen_dashboard as gen
    return gen.GenerationDashboard(model, *args, **kwargs) if gen.is_language_model(model) else None


_FIX = ("pair two models of one modality and task with the same classes (e.g. sst2-lstm and sst2-transformer), "
        "or open each alone with ek.Dashboard(model)")


def check_pair(models) -> tuple:
    """The two models, or one InputError naming what differs (modality, task, classes, features)."""
    models = list(models)
    if len(models) != 2:
        raise InputError(f"Dashboard([...]) shows two models side by side; got {len(models)}.",
                         "pass [model_a, model_b], or a single model for the one-model dashboard.")
    for m in models:
        if not all(hasattr(m, k) for k in ("modality", "task", "classes", "name")):
            raise InputError(f"{type(m).__name__} object is not an explainkit model.",
                             "load each with ek.load_sample(...), ek.load(...) or ek.wrap(...).")
        if getattr(m, "generates", False):
            raise NotApplicableError(f"{m.name!r} is a language model: two models side by side compares "
                                     "classifiers or regressors on one data set.",
                                     "open it alone: ek.Dashboard(model).")
    a, b = models
    if a.modality is not b.modality:
        why = f"{a.name!r} reads {a.modality.value} but {b.name!r} reads {b.modality.value}"
    elif a.task is not b.task:
        why = f"{a.name!r} is a {a.task.value} model but {b.name!r} is a {b.task.value} model"
    elif a.task is Task.CLASSIFICATION and list(a.classes or []) != list(b.classes or []):
        why = f"their classes differ ({_short(a.classes)} vs {_short(b.classes)})"
    elif a.modality is Modality.TABULAR and a.feature_names and b.feature_names \
            and list(a.feature_names) != list(b.feature_names):
        why = f"their features differ ({_short(a.feature_names)} vs {_short(b.feature_names)})"
    else:
        return a, b
    raise InputError(f"Models {a.name!r} and {b.name!r} cannot be shown side by side: {why}.", _FIX + ".")


def _short(names) -> str:
    names = list(names or [])
    return ", ".join(map(str, names[:4])) + (f", … ({len(names)})" if len(names) > 4 else "")


def kendall_tau(a, b, max_units: int = KENDALL_MAX, seed: int = 0) -> float:
    """Kendall's τ-b (ties accounted for) of two score vectors; over ``max_units`` units, of a fixed-seed sample."""
    a, b = np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))
    if a.size > max_units:
        keep = np.random.default_rng(seed).choice(a.size, max_units, replace=False)
        a, b = a[keep], b[keep]
    if a.size < 2:
        return float("nan")
    da = np.sign(a[:, None] - a[None, :]).astype(np.int8)
    db = np.sign(b[:, None] - b[None, :]).astype(np.int8)
    den = np.sqrt(float(np.count_nonzero(da)) * float(np.count_nonzero(db)))
    if den == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.sum(da * db, dtype=np.int64) / den)


def rank_agreement(exp_a, exp_b, units: str = "pieces", k: int | None = None) -> dict:
    """How far two explanations of one sample rank its units alike, over the units both scored (a text's
    words or tokens by their characters, so different tokenizers meet): Spearman ρ, Kendall τ-b, top-k overlap."""
    from explainkit.trust.quality import agreement
    from explainkit.views.compare import aligned_rows
    table = aligned_rows([exp_a, exp_b], units, limit=10**9)
    if table is None:                              # images: pixel maps, aligned when their shapes are
        if np.shape(exp_a.scores) != np.shape(exp_b.scores):
            raise InputError(f"The two maps have different shapes ({np.shape(exp_a.scores)} vs "
                             f"{np.shape(exp_b.scores)}).", "pair two models that read images of one size.")
        va, vb = (np.ravel(np.asarray(e.scores, float)) for e in (exp_a, exp_b))
    else:
        both = [r["shares"] for r in table["rows"] if None not in r["shares"]]
        va, vb = (np.array([s[i] for s in both], float) for i in (0, 1))
    n = int(va.size)
    if n < 2:
        raise InputError(f"The two explanations share {n} scored unit(s).", "explain a longer sample.")
    k = max(1, min(n, int(k) if k is not None else max(TOP_K, n // 10)))
    copies = []
    for e, v in ((exp_a, va), (exp_b, vb)):
        c = st.with_scores(e, v)
        c.image = c.feature_values = None          # the aligned vectors stand for the same units of one sample
        c.text = "aligned"
        copies.append(c)
    ag = agreement(copies, k=k)
    return {"spearman": float(ag.matrix[0, 1]), "kendall": kendall_tau(va, vb), "top_k": float(ag.top_k[0, 1]),
            "k": k, "n_units": n, "units": "pixels" if table is None else table["what"]}


_ENV = jinja2.Environment(autoescape=True, finalize=visible_markup)
_HEADER = _ENV.from_string(
    "<b>{{ a }}</b> <span class='ek-muted'>vs</span> <b>{{ b }}</b> <span class='ek-muted'>· {{ modality }} "
    "{{ task }} · {{ n }} samples</span> · <span class='ek-pair-summary' data-ek-disagree='{{ d }}'>the models "
    "disagree on {{ d }} of {{ n }} ({{ '%.1f' % (100 * d / n) }}%){% if tol %}, |difference| over {{ tol }}"
    "{% endif %}</span>")
_AGREEMENT = _ENV.from_string(
    "<div class='ek-pair-agreement-view' data-ek-state='{{ state }}' data-ek-key='{{ key }}'"
    "{% if r %} data-ek-spearman='{{ '%.4f' % r.spearman }}' data-ek-kendall='{{ '%.4f' % r.kendall }}'"
    " data-ek-topk='{{ '%.4f' % r.top_k }}' data-ek-k='{{ r.k }}' data-ek-agree='{{ r.predictions_agree }}'"
    "{% endif %}>{% if r %}<div class='ek-pair-verdict'>{{ r.verdict }}</div>"
    "<table class='ek-pair-agreement-table'><tr><th>Spearman ρ</th><td>{{ '%+.2f' % r.spearman }}</td><td "
    "class='ek-muted'>rank correlation of the two models' scores over the {{ r.n_units }} {{ r.units }} both scored "
    "(+1: same order, 0: unrelated, −1: reversed)</td></tr><tr><th>Kendall τ</th><td>{{ '%+.2f' % r.kendall }}"
    "</td><td class='ek-muted'>share of concordant minus discordant pairs of {{ r.units }}</td></tr><tr><th>"
    "top-{{ r.k }} overlap</th><td>{{ '%.0f' % (100 * r.top_k) }}%</td><td class='ek-muted'>of the {{ r.k }} "
    "{{ r.units }} with the largest |score|, the share both models rank there</td></tr></table>"
    "{% else %}<i class='ek-muted'>{{ message }}</i>{% endif %}</div>")


class PairDashboard(W.VBox):
    """Two models on one data set: the same sample's predictions and explanations side by side, a filter for
    the samples where they disagree, and the rank agreement of their explanations."""

    def __init__(self, models, dataset=None, methods=None, *, side=None, registry=None, page_size: int = 10,
                 seed: int = 0, auto: bool = True, quality: bool = True, tolerance: float | None = None,
                 k: int | None = None):
        from explainkit.plugins.registry import registry as default_registry
        if side is None:                           # the one-model Dashboard class (views import no cycle)
            raise InputError("PairDashboard was built without its one-model dashboard class.",
                             "build it with explainkit.Dashboard([model_a, model_b], data).")
        a, b = check_pair(models)
        self.registry = registry if registry is not None else default_registry()
        self.dataset = st.as_dataset(a, dataset)
        if methods is None:                        # the explainers that apply to both
            right = {s.name for s in self.registry.applicable(b)}
            methods = [s.name for s in self.registry.applicable(a) if s.name in right]
            if not methods:
                raise NotApplicableError(f"No explainer applies to both {a.name!r} and {b.name!r}.",
                                         "install explainkit-builtins, or pass methods= that apply to both.")
        kw = dict(registry=self.registry, page_size=page_size, seed=seed, auto=auto, quality=quality)
        self.left, self.right = side(a, self.dataset, methods, **kw), side(b, self.dataset, methods, **kw)
        self.sides = (self.left, self.right)
        self.k, self.selected_index, self._agreement, self._shown = k, None, None, None
        self._quiet, self._lock = False, threading.Lock()
        self.disagreement, self.tolerance = self._disagreement(tolerance)
        self.browser = st.Browser(self.left.predictions, st.texts_of(self.dataset, a.modality), page_size)
        self._build()
        super().__init__(children=self._layout())
        self.add_class("ek-dashboard")
        self.add_class("ek-pair")
        self._refresh_page()
        first = self.browser.page_indices()
        if first:
            self.select(first[0])
            self.wait(30.0)                        # as the single dashboard: the first result is in the first render

    def _disagreement(self, tolerance):
        pa, pb = self.left.predictions, self.right.predictions
        if pa.task is Task.CLASSIFICATION:
            return pa.predicted != pb.predicted, None
        if tolerance is None:
            ref = np.asarray(pa.labels if pa.labels is not None else pa.outputs, float)
            tolerance = REGRESSION_TOLERANCE * float(np.std(ref)) if ref.size else 0.0
        return np.abs(pa.outputs - pb.outputs) > float(tolerance), float(tolerance)

    def _build(self) -> None:
        a = self.left.model
        self.b = build_browser(a, self.dataset, self.left.predictions, page_size=self.browser.page_size)
        for w in (self.b.pred, self.b.correct, self.b.conf, self.b.sort):    # they would speak for one model only
            w.layout.display = "none"
        self.filter = W.Dropdown(options=[f.value for f in PairFilter], value=PairFilter.ALL.value,
                                 description="models", style={"description_width": "70px"},
                                 layout=W.Layout(width="260px"))
        self.filter.add_class("ek-pair-filter")
        self.b.filters.children = [self.filter, *self.b.filters.children]
        e = self.left.e
        self.method_menu = W.Dropdown(options=e.method.options, value=e.method.value, description="explainer",
                                      style={"description_width": "70px"}, layout=W.Layout(width="300px"))
        self.method_menu.add_class("ek-pair-method")
        self.target_menu = W.Dropdown(options=e.target.options, value=e.target.value, description="target",
                                      style={"description_width": "50px"}, layout=W.Layout(width="220px"),
                                      disabled=a.task is not Task.CLASSIFICATION)
        self.target_menu.add_class("ek-pair-target")
        self.header = W.HTML(_HEADER.render(a=a.name, b=self.right.model.name, modality=a.modality.value,
                                            task=a.task.value, n=len(self.dataset), d=int(self.disagreement.sum()),
                                            tol=None if self.tolerance is None else f"{self.tolerance:.3g}"))
        self.header.add_class("ek-header")
        self.header.add_class("ek-pair-header")
        self.agreement_view = W.HTML("")
        self.agreement_view.add_class("ek-pair-agreement")
        self.rows = W.HTML("")
        self.rows.add_class("ek-pair-rows")
        b = self.b
        b.true.observe(lambda ch: self._on_filter(true_class=None if ch["new"] == -1 else int(ch["new"])), "value")
        b.search.observe(lambda ch: self._on_filter(search=ch["new"]), "value")
        self.filter.observe(lambda ch: self._on_filter(subset=self._mask(ch["new"])), "value")
        b.next.on_click(lambda _: self.page(self.browser.page + 1))
        b.prev.on_click(lambda _: self.page(self.browser.page - 1))
        b.grid.observe(lambda ch: None if self._quiet or ch["new"] < 0 else self.select(ch["new"]), "selected")
        self.method_menu.observe(lambda ch: None if self._quiet else setattr(self, "method", ch["new"]), "value")
        self.target_menu.observe(lambda ch: None if self._quiet else setattr(self, "target", ch["new"]), "value")
        for s in self.sides:                       # a side's result (new, cached, failed) may complete the pair
            s.status.observe(lambda _ch: self._refresh_agreement(), "value")
            s.e.view.observe(lambda _ch: self._refresh_agreement(), "key")

    def _layout(self):
        def title(text):
            w = W.HTML(_ENV.from_string("{{ t }}").render(t=text))
            w.add_class("ek-section-title")
            return w

        samples = W.VBox([title("Samples"), self.b.filters, self.b.grid, self.b.pager])
        controls = W.HBox([self.method_menu, self.target_menu], layout=W.Layout(align_items="center"))
        cols = []
        for s, hook in ((self.left, "ek-pair-left"), (self.right, "ek-pair-right")):
            col = W.VBox([s.header, s.b.prediction, s.e.params, s.e.run_row, s.error, s.e.view_controls, s.e.view,
                          s.e.custom, s.e.quality_row, s.status], layout=W.Layout(width="50%", padding="0 6px"))
            for cls in ("ek-card", "ek-pair-side", hook):
                col.add_class(cls)
            cols.append(col)
        agreement = W.VBox([title("Rank agreement of the two explanations"), self.agreement_view, self.rows])
        for box in (samples, agreement):
            box.add_class("ek-card")
        both = W.VBox([controls, W.HBox(cols, layout=W.Layout(width="100%", align_items="flex-start")), agreement])
        both.add_class("ek-pair-compare")
        return [self.header, samples, title("Explain both"), both]

    # -- browsing -------------------------------------------------------------------------------------------
    def _mask(self, which):
        which = PairFilter(which)
        return None if which is PairFilter.ALL else (self.disagreement if which is PairFilter.DISAGREE
                                                     else ~self.disagreement)

    def _on_filter(self, **change) -> None:
        self.browser.set(**change)
        self._refresh_page()

    def disagree_only(self, on: bool = True) -> int:
        """List only the samples where the two models disagree (or all again); returns how many are listed."""
        self.filter.value = (PairFilter.DISAGREE if on else PairFilter.ALL).value
        return len(self.browser.indices)

    def page(self, n: int) -> int:
        """Show page ``n`` (clamped); returns the page shown."""
        shown = self.browser.go(n)
        self._refresh_page()
        return shown

    def _refresh_page(self) -> None:
        br, b = self.browser, self.b
        items = grid_items(br.page_indices(), self.dataset, self.left.predictions, self.left.model.classes,
                           self.left.model.modality)
        pb = self.right.predictions
        for it in items:                          # "A ≠ B" (or "A = B"): both models' predictions on the tile
            i = it["index"]
            other = (self.right.model.classes[int(pb.predicted[i])] if pb.task is Task.CLASSIFICATION
                     else f"{float(pb.outputs[i]):.4g}")
            it["pred"] = f"{it['pred']} {'≠' if self.disagreement[i] else '='} {other}"
            it["conf"], it["correct"] = None, None
        with b.grid.hold_sync():
            b.grid.items = items
            with self._silent():
                b.grid.selected = self.selected_index if self.selected_index is not None else -1
        b.page_label.value = _ENV.from_string("page {{ p }} / {{ n }} · {{ k }} of {{ t }} samples").render(
            p=br.page + 1, n=br.n_pages, k=len(br.indices), t=len(self.dataset))
        b.prev.disabled, b.next.disabled = br.page == 0, br.page >= br.n_pages - 1

    @contextmanager
    def _silent(self):
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    # -- both sides -------------------------------------------------------------------------------------------
    def select(self, index: int) -> None:
        """Select a sample for both models and explain it with both (the same method and target)."""
        index = st.check_index(index, len(self.dataset))
        self.selected_index = index
        target = None
        if self.left.model.task is Task.CLASSIFICATION:    # the left model's prediction, for both
            target = int(self.left.predictions.predicted[index])
        with self._silent():
            self.b.grid.selected = index
            if target is not None:
                self.target_menu.value = target
        for s in self.sides:
            auto, s.e.auto.value = s.e.auto.value, False   # select, set the shared target, then explain once
            try:
                s.select(index)
            finally:
                s.e.auto.value = auto
            if target is not None:
                s._quiet = True
                try:
                    s.e.target.value = target
                finally:
                    s._quiet = False
            s.explain()
        self._refresh_agreement()

    @property
    def method(self) -> str:
        return self.left.method

    @method.setter
    def method(self, name: str) -> None:
        offered = [v for _, v in self.method_menu.options]
        if name not in offered:
            raise UnknownNameError(f"{name!r} is not in this pair's menu (the explainers that apply to both).",
                                   f"use one of: {', '.join(offered)}.")
        with self._silent():
            self.method_menu.value = name
        for s in self.sides:
            s.method = name

    @property
    def target(self):
        return self.left.target

    @target.setter
    def target(self, value) -> None:
        self.left.target = value                  # TargetError names the classes
        self.right.target = value
        if self.left.model.task is Task.CLASSIFICATION:
            with self._silent():
                self.target_menu.value = int(value)

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until both sides' background work is finished (tests, scripts)."""
        import time
        deadline = time.monotonic() + timeout
        ok = all(s.wait(max(0.0, deadline - time.monotonic())) for s in self.sides)
        self._refresh_agreement()
        return ok

    # -- agreement -----------------------------------------------------------------------------------------
    @property
    def agreement(self) -> dict | None:
        """The shown sample's rank agreement (spearman, kendall, top_k, k, n_units, units, predictions, ...),
        None until both current explanations are in."""
        return self._agreement

    def _key(self) -> str:
        return f"{self.selected_index}|{self.method}|target={self.target}"

    def _refresh_agreement(self) -> None:
        with self._lock:
            units = self.left._units()
            views = (*(s.e.view.key for s in self.sides), units)
            current = all(s.last_explanation is not None and s.e.view.key == s.view_key   # the view is current
                          and s.selected_index == self.selected_index and s.method == self.method
                          and s.target == self.target for s in self.sides)
            if not current:
                if self._shown != "waiting":
                    self._agreement, self._shown = None, "waiting"
                    self.agreement_view.value = _AGREEMENT.render(state="waiting", key=self._key(), r=None,
                                                                  message="waiting for both explanations…")
                return
            if self._shown == views:
                return
            self._shown = views
            exps = [s.last_explanation for s in self.sides]
            try:
                r = rank_agreement(*exps, units=units, k=self.k)
            except InputError as err:
                self._agreement = None
                self.agreement_view.value = _AGREEMENT.render(state="failed", key=self._key(), r=None, message=err)
                self.rows.value = ""
                return
            r.update(index=self.selected_index, method=self.method, target=self.target,
                     models=[s.model.name for s in self.sides], predictions=[self._said(s) for s in self.sides],
                     predictions_agree=not bool(self.disagreement[self.selected_index]))
            r["verdict"] = (f"{r['models'][0]} says {r['predictions'][0]}, {r['models'][1]} says "
                            f"{r['predictions'][1]}: they {'agree' if r['predictions_agree'] else 'disagree'}.")
            self._agreement = r
            self.agreement_view.value = _AGREEMENT.render(state="done", key=self._key(), r=r, message="")
            self.rows.value = self._rows_html(exps, units)

    def _said(self, side) -> str:
        p, i = side.predictions, self.selected_index
        if p.task is Task.CLASSIFICATION:
            return f"{side.model.classes[int(p.predicted[i])]} ({p.confidence[i]:.1%})"
        return f"{float(p.outputs[i]):.4g}"

    def _rows_html(self, exps, units) -> str:
        from explainkit.views import compare as cmp
        table = cmp.aligned_rows(exps, units)
        if table is None:
            return ""
        vmax = max((abs(v) for r in table["rows"] for v in r["shares"] if v is not None), default=1.0)
        return cmp.rows_html([s.model.name for s in self.sides], table, [dict(e.params or {}) for e in exps], vmax)

    def __repr__(self) -> str:
        return (f"<PairDashboard {self.left.model.name!r} vs {self.right.model.name!r} n={len(self.dataset)} "
                f"disagree={int(self.disagreement.sum())} selected={self.selected_index}>")
