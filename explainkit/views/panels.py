"""The dashboard's side panels: the trust badge, the method comparison, attention and export.

:class:`PanelsMixin` is a base of :class:`~explainkit.views.dashboard.Dashboard`; it reads the dashboard's
state (``self.model``, ``self.e``, ``self.c``, ``self.a``, the caches and jobs) and adds these panels' calls.
"""
from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup

from explainkit.enums import Capability, Modality
from explainkit.errors import ExplainKitError, InputError, UnknownNameError
from explainkit.plugins.output_space import NORMALIZED
from explainkit.views import state as st
from explainkit.views.render import visible_markup
from explainkit.views.widgets import quality_figure

__all__ = ["PanelsMixin"]

# plain strings (method names, error messages, labels) are shown with invisible characters made visible
_ENV = jinja2.Environment(autoescape=True, finalize=visible_markup)
_T = {k: _ENV.from_string(v) for k, v in {
    "header": "<b>{{ name }}</b> <span class='ek-muted'>{{ family }} · {{ modality }} {{ task }} · "
              "{{ n }} samples{% if acc is not none %} · accuracy {{ '%.1f' % (100 * acc) }}%{% endif %}"
              " · {{ n_methods }} explainers</span>",
    "status": "sample={{ index }} method={{ method }} target={{ target }} params={{ params }} "
              "state={{ state }}{% if ms is not none %} ({{ '%.0f' % ms }} ms){% endif %}",
    "error": "<b>{{ method }}</b>{% if origin %} ({{ origin }}){% endif %} failed: {{ message }}",
    "page": "page {{ page }} / {{ pages }} · {{ n }} of {{ total }} samples",
    "progress": "{{ what }} · {{ '%.1f' % secs }} s",
    "link": "<a download='{{ name }}' href='{{ uri }}'>⬇ {{ name }}</a>",
    "trust": "<div class='ek-trust-words' title='{{ words.numbers }}'>{% for s in words.sentences %}<span>{{ s }}"
             "</span> {% endfor %}<a class='ek-trust-docs' href='{{ words.docs }}' target='_blank' "
             "rel='noopener'>how to read this ({{ words.docs }})</a></div>",
    "agreement": "<table><tr><th>Spearman ρ</th>{% for m in methods %}<th>{{ m }}</th>{% endfor %}</tr>"
                 "{% for m in methods %}{% set i = loop.index0 %}<tr><th>{{ m }}</th>"
                 "{% for v in rho[i] %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>",
}.items()}


class PanelsMixin:
    """Trust badge, comparison, attention and export: the panels beside the dashboard's main view."""

    # -- no stale pictures -----------------------------------------------------------------------------------
    def _mark_previous(self, running: bool) -> None:
        """While a job runs, the map and the trust badge on screen are dimmed and labelled as the previous
        sample's or the previous parameters' (dashboard.css: ``ek-previous-sample`` / ``-params``)."""
        exp = getattr(self, "last_explanation", None)
        which = None if not running or exp is None else (
            "ek-previous-sample" if exp.sample_index != self.selected_index else "ek-previous-params")
        for w in (self.e.view, self.e.quality_row):        # one update: never both labels at once
            kept = tuple(c for c in w._dom_classes if c not in ("ek-previous-sample", "ek-previous-params"))
            w._dom_classes = kept + ((which,) if which else ())

    # -- trust badge ----------------------------------------------------------------------------------------
    def _schedule_quality(self, exp, vkey) -> None:
        e, q = self.e, self._quality_mod
        if q is None:
            e.quality_row.layout.display = "none"
            return
        # never the previous sample's curves: hidden until this result is in (redrawn then if they were open)
        e.quality_plot.layout.display, self.last_quality = "none", None
        if vkey in self._quality_cache:
            self._set_badge(self._quality_cache[vkey])
            return
        e.quality.description, e.quality.disabled = "trust: computing…", True
        e.quality_words.value = ""

        def done(result):
            self._quality_cache[vkey] = result
            if vkey == self.view_key:
                self._set_badge(result)

        def failed(err):
            e.quality.description, e.quality.tooltip = "trust: n/a", str(err)[:300]
            e.quality_words.value = ""
            self._curves_open = False

        # the sanity check re-runs the explainer: only when that is cheap
        metrics = ("deletion", "randomization") if exp.timings.get("explain_s", 0) < 0.5 else ("deletion",)
        sample = self._samples[exp.sample_index] if exp.sample_index is not None else None
        self._jobs.append(st.Job(lambda: q.assess(exp, self.model, metrics=metrics, sample=sample,
                                                  registry=self.registry), done, failed, name="quality").start())

    def _set_badge(self, result) -> None:
        """The trust verdict in plain words (trust.wording); the numbers on hover; a link to docs/trust.md."""
        from explainkit.trust.wording import plain
        self.last_quality = result
        words = plain(result, self.last_explanation)
        self.e.quality.description = f"trust: {words['verdict']}"
        self.e.quality.tooltip = f"{words['numbers']}. Click for the curves."
        self.e.quality_words.value = _T["trust"].render(words=words)
        self.e.quality.disabled = False
        if getattr(self, "_curves_open", False):
            self._draw_curves()

    def _show_quality_plot(self) -> None:
        self._curves_open = True           # and they follow the sample: each new result redraws them
        self._draw_curves()
        self.history.append({"event": "quality_plot"})

    def _draw_curves(self) -> None:
        png = None if self.last_quality is None else quality_figure(self.last_quality)
        if png is not None:
            self.e.quality_plot.value = png
            self.e.quality_plot.layout.display = None

    # -- comparison -------------------------------------------------------------------------------------
    def compare(self, methods=None):
        """Explain the selected sample with 2-4 methods side by side (same target; each with its form's values
        where its form was opened, else its defaults): each map's caption shows the parameters it ran with."""
        names = list(methods) if methods is not None else list(self.c.methods.value)
        if not 2 <= len(names) <= 4:
            raise InputError(f"{len(names)} methods chosen for comparison.", "choose 2 to 4 explainers.")
        if self.selected_index is None:
            raise InputError("No sample is selected.", "select a sample first.")
        offered = {s.name for s in self.specs}
        unknown = [n for n in names if n not in offered]
        if unknown:
            raise UnknownNameError(f"{', '.join(map(repr, unknown))} not in this dashboard's menu "
                                   "(unknown, not applicable, or broken).",
                                   f"choose 2 to 4 of: {', '.join(sorted(offered))}.")
        index, target = self.selected_index, self.target
        sample = self._samples[index]
        self.history.append({"event": "compare", "index": index, "methods": names})

        def work():
            from explainkit.plugins.runner import run_explainer
            out = []
            for k, name in enumerate(names):
                spec = next(s for s in self.specs if s.name == name)
                form = self._forms.get(name)       # the user's values where its form was opened, else defaults
                params = ({n: w.value for n, w in form.items()} if form is not None
                          else {p.name: p.default for p in spec.params_for(self.model)})
                key = st.cache_key(index, name, params, target, self.seed)
                exp = self.cache.get(key)
                if exp is None:
                    exp = run_explainer(name, self.model, [sample], target, seed=self.seed, reg=self.registry,
                                        **params)[0]
                    self.cache.put(key, exp)
                out.append(exp)
                self.e.progress.value = (k + 1) / len(names)
            return out

        def done(exps):
            self.last_error = None
            self._show_comparison(index, names, exps)
            self._progress(None)

        def failed(err):
            self._show_error("compare", err)
            self._sync_menu()
            self._progress(None)

        self._start(st.Job(work, done, failed, name="compare"), f"comparing {len(names)} methods on #{index}")

    def _show_comparison(self, index, names, exps) -> None:
        from explainkit.views import compare as cmp
        normed, vmax, rho = st.shared_scale(exps)
        units = self._units()                             # the main view's pieces | words choice
        table = cmp.aligned_rows(exps, units, limit=cmp.ROWS)
        specs = {s.name: s for s in self.specs}
        params = [cmp.applied(e, specs.get(e.method), self.model) for e in exps]
        order = [int(k) for k in table["keys"]] if table is not None and exps[0].modality is Modality.TABULAR \
            else []
        for k, view in enumerate(self.c.views):
            view.units = units
            column = self.c.columns[k]
            if k < len(exps):
                shown = st.with_scores(exps[k], normed[k])
                # normalised scores have no f(x): no baseline, no waterfall; the legend names the unit
                shown.extras, shown.base_value = {**(exps[k].extras or {}), NORMALIZED: True}, None
                view.order = order                        # tabular: every map's bars in the aligned rows' order
                view.show(shown, f"{index}|{names[k]}|compare", vmax=vmax)
                self.c.captions[k].value = cmp.caption_html(exps[k], params[k])     # the parameters it ran with
                view.layout.display = column.layout.display = None
            else:
                view.layout.display = column.layout.display = "none"
                self.c.captions[k].value = ""
        self.c.rows.value = cmp.rows_html(names, table, params, vmax)
        cells = [["—" if not np.isfinite(v) else f"{v:+.2f}" for v in row] for row in rho]
        self.c.agreement.value = _T["agreement"].render(methods=names, rho=cells)
        self.comparison = {"index": index, "methods": names, "explanations": exps, "spearman": rho,
                           "vmax": vmax, "params": params,
                           "rows": table}

    # -- attention -------------------------------------------------------------------------------------------
    def _has_attention(self) -> bool:
        return self.model.modality is Modality.TEXT and self.model.provides(Capability.ATTENTION)

    def _show_attention(self, index: int) -> None:
        if index not in self._attention_cache:
            try:
                self._attention_cache[index] = self.model.attention([self._samples[index]])[0]
            except ExplainKitError as err:
                self._show_error("attention", err)
                return
        m = self._attention_cache[index]
        a = self.a
        a.layer.options = list(range(m.shape[0]))
        a.head.options = ["mean", "all"] + [str(h) for h in range(m.shape[1])]
        a.view.show(self._samples[index].tokens, m, f"{index}|attention")

    # -- export -------------------------------------------------------------------------------------------
    def export_png(self, path=None) -> bytes:
        """The current explanation as PNG bytes (render.to_png); also written to ``path`` if given."""
        from explainkit.views import render
        exp = self._require_explanation()
        self.history.append({"event": "export", "format": "png", "path": None if path is None else str(path)})
        title = render.title_of(exp) + "\n" + "\n".join(textwrap.wrap(self._provenance(exp), 90))
        return render.to_png(exp, path=path, view=self.e.mode.value, units=self._units(), title=title,
                             **self._shown_scale())

    def export_html(self, path=None) -> str:
        """The current explanation as a self-contained HTML fragment (render.to_html); written if ``path``."""
        from explainkit.views import render
        exp = self._require_explanation()
        html = render.to_html(exp, view=self.e.mode.value, units=self._units(), **self._shown_scale()) \
            + str(Markup("<p class='ek-provenance'>{}</p>").format(self._provenance(exp)))
        self.history.append({"event": "export", "format": "html", "path": None if path is None else str(path)})
        if path is not None:
            page = render.html_page(html, title=f"{exp.method} — {self.model.name}") \
                if hasattr(render, "html_page") else html
            Path(path).write_text(page, encoding="utf-8")
        return html

    def _units(self) -> str:
        """The text views' units ('pieces' or 'words'), as the main view's switch shows them."""
        return getattr(self.e.view, "units", "pieces")

    def _require_explanation(self):
        if self.last_explanation is None:
            raise InputError("There is no explanation to export yet.", "select a sample and wait for its view.")
        return self.last_explanation

    def _provenance(self, exp) -> str:
        """What an export carries besides the picture: sample, method, parameters, seed, model and hash, trust."""
        from explainkit.trust.wording import plain
        params = ", ".join(f"{k}={v}" for k, v in sorted((exp.params or {}).items())) or "no parameters"
        q = self.last_quality
        trust = plain(q, exp)["verdict"] if q is not None else "not computed"
        edit = getattr(getattr(self, "whatif", None), "edits", {}).get(exp.sample_index)   # a what-if copy
        edited = f" (edited copy of #{edit.parent}: {edit.what})" if edit is not None else ""
        return (f"sample #{exp.sample_index}{edited} · {exp.method} ({params}) · seed {exp.seed} · "
                f"model {exp.model_name} {(exp.model_hash or '')[:12]} · trust: {trust}")

    def _shown_scale(self) -> dict:
        """``vmax=`` of the view on screen (a shared scale, or the view's own), so the export matches it."""
        view = self.e.view
        vmax = float(view.vmax or (view.payload or {}).get("scale") or 0.0)
        return {"vmax": vmax} if vmax > 0 else {}

    def _export_link(self, fmt: str) -> None:
        try:
            if fmt == "png":
                data, mime = self.export_png(), "image/png"
            else:
                data, mime = self.export_html().encode("utf-8"), "text/html"
        except ExplainKitError as err:
            self._show_error("export", err)
            return
        exp = self.last_explanation
        name = f"{self.model.name}-{exp.sample_index}-{exp.method}.{fmt}"
        uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        self.e.export_link.value = _T["link"].render(name=name, uri=uri)
