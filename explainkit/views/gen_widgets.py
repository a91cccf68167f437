"""The generation dashboard's widgets: the answer view (anywidget, ``static/generation.js``), its
templates, and the controls around it, built once (the dashboard only updates their values).

Every widget has a test hook, a CSS class (``ek-prompt``, ``ek-generate``, ``ek-gen-view``...): see
docs/dashboard.md.
"""
from __future__ import annotations

from types import SimpleNamespace

import anywidget
import ipywidgets as W
import jinja2
import traitlets

from explainkit.views.generation import WHOLE
from explainkit.views.render import visible_markup
from explainkit.views.widgets import STATIC

__all__ = ["GenerationView", "build", "layout", "UNITS"]

UNITS = ("words", "tokens", "sentences")


class GenerationView(anywidget.AnyWidget):
    """The answer as clickable tokens over the prompt's units, coloured by the selected token's scores."""

    _esm = STATIC / "generation.js"
    _css = (STATIC / "dashboard.css").read_text(encoding="utf-8") + (STATIC / "generation.css").read_text(
        encoding="utf-8")
    payload = traitlets.Dict({}).tag(sync=True)
    selected = traitlets.Int(WHOLE).tag(sync=True)     # answer token index; -1: the whole answer (JS <-> Python)
    key = traitlets.Unicode("").tag(sync=True)         # mirrored as data-ek-key


_ENV = jinja2.Environment(autoescape=True, finalize=visible_markup)
T = {k: _ENV.from_string(v) for k, v in {
    "header": "<b>{{ name }}</b> <span class='ek-muted'>causal language model · context {{ context }} tokens · "
              "{{ n }} explainers · explains which prompt units produced each answer token</span>",
    "status": "method={{ method }} units={{ units }} max_new_tokens={{ n }} target={{ target }} "
              "contrast={{ contrast }} params={{ params }} state={{ state }}{% if ms is not none %} "
              "({{ '%.0f' % ms }} ms){% endif %}",
    "error": "<b>{{ what }}</b>: {{ message }}",
    "progress": "{{ what }} · {{ '%.1f' % secs }} s{% if last %} (last run {{ '%.1f' % last }} s){% endif %}",
    "previous": "previous result, for {{ prompt }} — a new answer is being explained",
    "trust": "<span class='ek-trust-{{ level }}'><b>{{ badge }}</b></span> · {{ text }}",
    "trust_wait": "<span class='ek-muted'>trust: {{ text }}</span>",
    "title": "<span class='ek-section-title'>{{ t }}</span>",
}.items()}


def _hook(widget, cls: str):
    widget.add_class(cls)
    return widget


def build(model, specs, prompts, default: str, max_new_tokens: int, units: str) -> SimpleNamespace:
    """Every widget of the generation dashboard, by name."""
    wide = {"style": {"description_width": "110px"}}
    w = SimpleNamespace()
    w.header = _hook(W.HTML(T["header"].render(name=model.name, n=len(specs),
                                               context=getattr(model, "max_context", "?"))), "ek-header")
    w.prompt_box = _hook(W.Textarea(value=prompts[0], placeholder="Type a prompt…", rows=2,
                                    layout=W.Layout(width="100%")), "ek-prompt")
    w.examples = _hook(W.Dropdown(options=prompts, value=prompts[0], description="examples",
                                  layout=W.Layout(width="420px", display=None if len(prompts) > 1 else "none"),
                                  **wide), "ek-prompt-examples")
    w.method_menu = _hook(W.Dropdown(options=[(s.title, s.name) for s in specs], value=default,
                                     description="explainer", layout=W.Layout(width="420px"), **wide), "ek-method")
    w.units_menu = _hook(W.Dropdown(options=list(UNITS), value=units if units in UNITS else UNITS[0],
                                    description="units", layout=W.Layout(width="230px"), **wide), "ek-units")
    w.max_new_box = _hook(W.IntText(value=int(max_new_tokens), description="max new tokens",
                                    layout=W.Layout(width="230px"), **wide), "ek-max-new-tokens")
    w.target_box = _hook(W.Text(value="", placeholder="(none: the model's own greedy answer)",
                                description="forced answer", layout=W.Layout(width="420px"), **wide),
                         "ek-forced-target")
    w.contrast_box = _hook(W.Text(value="", placeholder="(none) e.g. Lyon: why this rather than that",
                                  description="contrast", layout=W.Layout(width="420px"), **wide), "ek-contrast")
    w.params_box = _hook(W.VBox([]), "ek-params")
    w.generate_button = _hook(W.Button(description="Generate", button_style="primary", icon="play",
                                       layout=W.Layout(width="120px")), "ek-generate")
    w.progress = _hook(W.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info",
                                       layout=W.Layout(width="140px", visibility="hidden")), "ek-progress")
    w.progress_label = _hook(W.HTML(""), "ek-progress-label")
    w.cancel_button = _hook(W.Button(description="Cancel", button_style="warning", icon="stop",
                                     layout=W.Layout(width="90px", visibility="hidden")), "ek-cancel")
    w.error = _hook(W.HTML("", layout=W.Layout(display="none")), "ek-error")
    w.status = _hook(W.HTML(""), "ek-status")
    w.previous_label = _hook(W.HTML("", layout=W.Layout(display="none")), "ek-previous-label")
    w.view = _hook(GenerationView(), "ek-gen-view")
    w.heatmap = _hook(W.HTML(""), "ek-heatmap")
    w.trust = _hook(W.HTML(""), "ek-trust")
    w.result = _hook(W.VBox([w.previous_label, w.view, W.HTML(T["title"].render(t="Heat map")), w.heatmap,
                             W.HTML(T["title"].render(t="Trust")), w.trust]), "ek-gen-result")
    return w


def layout(w) -> list:
    """The dashboard's rows: the header, the prompt card (inputs, Generate, errors, status), the result card."""
    row = {"layout": W.Layout(align_items="center", flex_flow="row wrap")}
    ask = W.VBox([W.HTML(T["title"].render(t="Prompt")), _hook(W.Box([w.prompt_box]), "ek-gen-prompt-box"),
                  w.examples, W.HBox([w.method_menu, w.units_menu, w.max_new_box], **row),
                  W.HBox([w.target_box, w.contrast_box], **row), w.params_box,
                  W.HBox([w.generate_button, w.progress, w.progress_label, w.cancel_button], **row),
                  w.error, w.status])
    for box in (ask, w.result):
        box.add_class("ek-card")
    return [w.header, ask, w.result]
