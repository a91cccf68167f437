"""The generation dashboard: which parts of a prompt produced each token of a language model's answer.

``Dashboard(lm)`` (or :class:`GenerationDashboard` itself) for a causal LM: a prompt box, Generate, the
generation explainers that apply (``registry().applicable(lm)``) with their declared parameters, units,
max new tokens, an optional forced answer and contrast. The answer appears as clickable tokens
(:class:`GenerationView`, ``static/generation.js``): clicking one colours the prompt's units by their score
for it. Below it: the heat map of answer tokens x prompt units (:func:`explainkit.views.generation.heatmap_html`)
and the trust badge (deletion/insertion curves of the answer's log-probability against random orders).
Explanations run in a background :class:`~explainkit.views.state.Job` (progress, cancel); meanwhile the
previous result stays on screen, dimmed and marked "previous". See docs/dashboard.md for the test hooks.
"""
from __future__ import annotations

import atexit
import math
import threading
import time
import weakref

import ipywidgets as W

from explainkit.errors import ExplainKitError, InputError, NotApplicableError, ParameterError, UnknownNameError
from explainkit.views import gen_widgets as gw
from explainkit.views import generation as gv
from explainkit.views import state as st
from explainkit.views.gen_widgets import UNITS, GenerationView
from explainkit.views.gen_widgets import T as _T
from explainkit.views.widgets import param_form, set_form

__all__ = ["GenerationDashboard", "GenerationView", "is_language_model", "DEFAULT_PROMPT", "UNITS"]

DEFAULT_PROMPT = "What is the capital of France?"
DEFAULT_HINT = "feature_ablation"     # the first method offered: cheap and exact (a hint, not a name)
INITIAL_WAIT_S = 60.0                 # the first answer is awaited this long at construction
QUALITY_RANDOM = 4                    # random orders the trust badge compares with


_LIVE: "weakref.WeakSet[GenerationDashboard]" = weakref.WeakSet()


@atexit.register
def _stop_jobs() -> None:
    """At exit, stop the dashboards' running jobs: torch aborts the process if one is mid-op at shutdown."""
    for d in list(_LIVE):
        d._cancel_jobs()
        d.wait(10)


def is_language_model(model) -> bool:
    """The model generates text (a :class:`~explainkit.models.causal_lm.CausalLM`)."""
    return bool(getattr(model, "generates", False))



def _prompts(prompts) -> list[str]:
    if prompts is None:
        return [DEFAULT_PROMPT]
    raws = [prompts] if isinstance(prompts, str) else list(getattr(prompts, "raws", prompts))
    if not raws or not all(isinstance(p, str) for p in raws):
        raise InputError("The sample prompts must be a non-empty list of strings.",
                         "pass prompts=['What is the capital of France?'] (or None for the default).")
    return raws


class GenerationDashboard(W.VBox):
    """Explain a language model's answer, token by token, with any applicable generation explainer."""

    def __init__(self, model, prompts=None, methods=None, *, registry=None, seed: int = 0, auto: bool = True,
                 quality: bool = True, max_new_tokens: int = 16, units: str = "words"):
        from explainkit.plugins.registry import registry as default_registry

        if not is_language_model(model):
            raise NotApplicableError(f"{getattr(model, 'name', model)!r} is not a language model.",
                                     "use explainkit.Dashboard(model, data) for classifiers and regressors.")
        self.model, self.seed, self.quality_enabled = model, int(seed), bool(quality)
        self.registry = registry if registry is not None else default_registry()
        self.prompts = _prompts(prompts)
        self.specs = self._choose_specs(methods)
        self.cache = st.ExplanationCache(maxsize=64)
        self.history: list[dict] = []
        self.explanation = None            # the result on screen
        self.last_error: ExplainKitError | None = None
        self.last_quality = None
        self.job: st.Job | None = None
        self._jobs: list[st.Job] = []
        self._quality_cache: dict = {}
        self._durations: dict = {}
        self._forms: dict = {}
        self._build(max_new_tokens, units)
        super().__init__(children=gw.layout(self.widgets))
        self.add_class("ek-dashboard")
        self.add_class("ek-gen-dashboard")
        self._status(st.JobState.IDLE)
        _LIVE.add(self)
        if auto:
            self.generate()
            if self.job is not None:       # the first answer is part of the initial render: in Voila,
                self.job.join(INITIAL_WAIT_S)   # updates sent while the page still connects can be lost

    @classmethod
    def from_sample(cls, name: str = "smollm2-135m", **kwargs) -> "GenerationDashboard":
        from explainkit.models import zoo
        return cls(zoo.load_sample(name), **kwargs)

    def _choose_specs(self, methods):
        seen, applicable = set(), []
        for s in self.registry.applicable(self.model):
            if s.name not in seen:
                seen.add(s.name)
                applicable.append(s)
        if not applicable:
            raise NotApplicableError(f"No explainer applies to the language model {self.model.name!r}.",
                                     "install explainkit-builtins (pip install -e plugins/explainkit-builtins).")
        if methods is None:
            return applicable
        by_name = {s.name: s for s in applicable}
        names = [methods] if isinstance(methods, str) else list(methods)
        unknown = [n for n in names if n not in by_name]
        if unknown or not names:
            raise UnknownNameError(f"No generation explainer {unknown or names!r} for {self.model.name!r}.",
                                   f"use one of: {', '.join(by_name)}.")
        return [by_name[n] for n in names]

    # -- widgets ----------------------------------------------------------------------------------------
    def _build(self, max_new_tokens, units) -> None:
        names = [s.name for s in self.specs]
        default = next((n for n in names if n.endswith(DEFAULT_HINT)), names[0])
        self.widgets = gw.build(self.model, self.specs, self.prompts, default, max_new_tokens, units)
        for name, widget in vars(self.widgets).items():      # dash.view, dash.heatmap, dash.trust, ...
            setattr(self, name, widget)
        self.generate_button.on_click(lambda _: self.generate())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.method_menu.observe(lambda ch: self._show_form(ch["new"]), names="value")
        self.examples.observe(lambda ch: setattr(self.prompt_box, "value", ch["new"]), names="value")
        self.view.observe(lambda ch: self._on_select(ch["new"]), names="selected")
        self._show_form(default)


    def _show_form(self, name) -> None:
        if name not in self._forms:
            spec = next(s for s in self.specs if s.name == name)
            self._forms[name] = param_form(spec, self.model)
        self.params_box.children = list(self._forms[name].values()) or [
            W.HTML("<i class='ek-muted'>no parameters</i>")]

    # -- state exposed to tests and notebooks -------------------------------------------------------------
    prompt = property(lambda self: self.prompt_box.value, lambda self, v: setattr(self.prompt_box, "value", v))
    method = property(lambda self: self.method_menu.value, lambda self, v: setattr(self.method_menu, "value", v))
    units = property(lambda self: self.units_menu.value, lambda self, v: setattr(self.units_menu, "value", v))
    max_new_tokens = property(lambda self: self.max_new_box.value,
                              lambda self, v: setattr(self.max_new_box, "value", v))
    target = property(lambda self: self.target_box.value.strip() and self.target_box.value or None,
                      lambda self, v: setattr(self.target_box, "value", v or ""))
    contrast = property(lambda self: self.contrast_box.value.strip() and self.contrast_box.value or None,
                        lambda self, v: setattr(self.contrast_box, "value", v or ""))

    @property
    def params(self) -> dict:
        return {n: w.value for n, w in self._forms.get(self.method, {}).items()}

    def set_params(self, **values) -> None:
        """Set parameters of the current method, as the form would (they apply at the next Generate)."""
        set_form(self._forms[self.method], self.method, values)

    @property
    def error_text(self) -> str:
        """The message the error panel shows ('' when there is none)."""
        return "" if self.last_error is None else str(self.last_error)

    @property
    def is_previous(self) -> bool:
        """The result on screen is dimmed and marked "previous" (a new one is being computed)."""
        return "ek-previous" in self.result._dom_classes

    @property
    def selected_token(self) -> int:
        """The answer token whose scores colour the prompt (-1: the whole answer)."""
        return int(self.view.selected)

    @property
    def highlight(self) -> list[tuple[str, float]]:
        """The prompt units and the scores they are coloured by, for the selected token (or whole answer)."""
        exp = self.explanation
        if exp is None:
            return []
        i = self.selected_token
        row = exp.matrix[i] if 0 <= i < len(exp.matrix) else exp.scores
        return [(u, float(v)) for u, v in zip(exp.unit_texts, row)]

    def select_token(self, token=None):
        """Select an answer token (its index or text, as ``for_token``; None or -1: the whole answer), as a
        click on it does; returns its :class:`~explainkit.plugins.generation.TokenScores` (None for the whole)."""
        if self.explanation is None:
            raise InputError("There is no answer to select a token of yet.", "call generate() and wait() first.")
        if token is None or (isinstance(token, int) and not isinstance(token, bool) and token == gv.WHOLE):
            self.view.selected = gv.WHOLE
            return None
        scores = self.explanation.for_token(token)
        self.view.selected = scores.index
        return scores

    def _on_select(self, index) -> None:
        self.history.append({"event": "select_token", "index": int(index)})
        exp = self.explanation
        if exp is not None:
            self.heatmap.value = gv.heatmap_html(exp, selected=index if 0 <= index < len(exp.matrix) else gv.WHOLE)

    # -- generating and explaining -----------------------------------------------------------------------
    def _request(self) -> dict:
        """The current inputs, checked: one clear error for an empty prompt or a bad answer length."""
        from explainkit.models.causal_lm import MAX_NEW_TOKENS
        prompt, n = self.prompt, self.max_new_tokens
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("The prompt is empty.", "type a question or an instruction in the prompt box, "
                                                     "then press Generate.")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS:
            raise ParameterError(f"max new tokens must be a whole number from 1 to {MAX_NEW_TOKENS}; got {n!r}.",
                                 "set max new tokens to 16, say (longer answers take longer to explain).")
        return {"prompt": prompt, "method": self.method, "units": self.units, "max_new_tokens": n,
                "target": self.target, "contrast": self.contrast, "params": self.params}

    def _key(self, req) -> tuple:
        """(method, hash of every input and the seed): the cache key; ``"method|hash"`` is ``data-ek-key``."""
        return (req["method"], st.params_hash(req, req["target"], self.seed))

    def generate(self):
        """Generate the answer to the prompt and explain it with the current method, in the background.

        Returns the cached explanation at once if these inputs were explained before, else None (the result
        arrives via ``wait()`` and the view). Bad input shows one message in the error panel instead."""
        self._cancel_jobs()
        try:
            req = self._request()
        except ExplainKitError as err:
            self._fail("Cannot generate", err)
            return None
        self.history.append({"event": "generate", **{k: v for k, v in req.items() if k != "params"},
                             "params": dict(req["params"])})
        key, t0 = self._key(req), time.perf_counter()
        self._hide_error()
        hit = self.cache.get(key)
        if hit is not None:
            self._show(hit, key)
            self._status(st.JobState.CACHED, (time.perf_counter() - t0) * 1000)
            return hit
        self._mark_previous(self.explanation is not None)
        method = req["method"]

        def work():
            from explainkit.plugins.runner import run_explainer
            return run_explainer(method, self.model, [req["prompt"]], req["target"], seed=self.seed,
                                 reg=self.registry, units=req["units"], max_new_tokens=req["max_new_tokens"],
                                 contrast=req["contrast"], **req["params"])[0]

        def done(exp):
            self.cache.put(key, exp)
            self._durations[method] = job.elapsed
            if self.job is job:
                self._progress(None)
                self._show(exp, key)
                self._status(st.JobState.DONE, job.elapsed * 1000)

        def failed(err):
            if self.job is job:
                self._progress(None)
                self._fail(f"{method} failed", err)

        job = st.Job(work, done, failed, name=method)
        self.job = job
        self._start(job, f"explaining with {method}", self._durations.get(method))
        self._status(st.JobState.RUNNING)
        return None

    def _start(self, job, what: str, last=None) -> None:
        self._jobs = [j for j in self._jobs if j.alive] + [job]
        self._progress(job, what, last)
        job.start()
        self._tick(job, what, last)

    def _show(self, exp, key) -> None:
        self.explanation = exp
        self._mark_previous(False)
        with self.view.hold_sync():
            self.view.payload = gv.payload(exp)
            self.view.key = "|".join(key)
        self.view.selected = gv.WHOLE
        self.heatmap.value = gv.heatmap_html(exp, selected=gv.WHOLE)
        self._schedule_quality(exp, key)

    def _schedule_quality(self, exp, key) -> None:
        if not self.quality_enabled:
            self.trust.value = _T["trust_wait"].render(text="not computed (quality=False)")
            return
        if key in self._quality_cache:
            return self._set_trust(self._quality_cache[key])
        self.last_quality = None
        self.trust.value = _T["trust_wait"].render(
            text=f"computing the deletion and insertion curves of the answer's log-probability "
                 f"against {QUALITY_RANDOM} random orders…")

        def work():
            from explainkit.trust.generation import assess
            return assess(exp, self.model, n_random=QUALITY_RANDOM, seed=self.seed)

        def done(q):
            self._quality_cache[key] = q
            if self.explanation is exp:
                self._set_trust(q)

        def failed(err):
            if self.explanation is exp:
                self.trust.value = _T["trust_wait"].render(text=f"not available ({err})")

        job = st.Job(work, done, failed, name="quality")
        self._jobs = [j for j in self._jobs if j.alive] + [job]
        job.start()

    def _set_trust(self, q) -> None:
        self.last_quality = q
        self.trust.value = _T["trust"].render(**gv.quality_words(q))

    def cancel(self) -> None:
        """Cancel the running work: interrupt it at its next Python step and discard its result."""
        n = self._cancel_jobs()
        self.history.append({"event": "cancel", "jobs": n})
        if self.explanation is not None and self.last_quality is None and self.quality_enabled:
            self.trust.value = _T["trust_wait"].render(text="cancelled (press Generate to compute it again)")
        self._status(st.JobState.CANCELLED)

    def _cancel_jobs(self) -> int:
        running = [j for j in self._jobs if j.alive]
        for j in running:
            j.cancel()
        self.job = None
        self._progress(None)
        self._mark_previous(False)
        return len(running)

    def wait(self, timeout: float = 120.0) -> bool:
        """Block until background work (the explanation, its trust badge) is finished (tests, scripts)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [j for j in self._jobs if j.alive]
            if not alive:
                return True
            if time.monotonic() > deadline:
                return False
            alive[0].join(max(0.0, min(0.5, deadline - time.monotonic())))

    # -- progress, status, errors, dimming ---------------------------------------------------------------
    def _progress(self, job, what: str = "", last=None) -> None:
        if job is None:
            self.progress.layout.visibility = self.cancel_button.layout.visibility = "hidden"
            self.progress.value, self.progress_label.value = 0.0, ""
            return
        self.progress.layout.visibility = self.cancel_button.layout.visibility = "visible"
        self.progress.value = 0.0
        self.progress_label.value = _T["progress"].render(what=what, secs=0.0, last=last)

    def _tick(self, job, what: str, last) -> None:
        """Elapsed time while the job runs; the bar moves towards the last run's time (plugins report no steps)."""
        def tick():
            while job.alive:
                time.sleep(0.25)
                if job.alive and self.job is job:
                    secs = job.elapsed
                    self.progress.value = min(0.95, secs / last) if last else 1.0 - math.exp(-secs / 5.0)
                    self.progress_label.value = _T["progress"].render(what=what, secs=secs, last=last)
        threading.Thread(target=tick, daemon=True, name="explainkit-gen-progress").start()

    def _status(self, state, ms=None) -> None:
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) or "-"
        self.status.value = _T["status"].render(method=self.method, units=self.units, n=self.max_new_tokens,
                                                target=self.target, contrast=self.contrast, params=params,
                                                state=state.value, ms=ms)

    def _mark_previous(self, on: bool) -> None:
        if on:
            p = self.explanation.prompt
            self.previous_label.value = _T["previous"].render(prompt=repr(p if len(p) <= 60 else p[:59] + "…"))
            self.result.add_class("ek-previous")
        else:
            self.result.remove_class("ek-previous")
        self.previous_label.layout.display = None if on else "none"

    def _fail(self, what: str, err) -> None:
        self.last_error = err if isinstance(err, ExplainKitError) else ExplainKitError(f"{type(err).__name__}: {err}")
        self.history.append({"event": "error", "message": str(self.last_error)})
        self.error.value = _T["error"].render(what=what, message=str(self.last_error))
        self.error.layout.display = None
        self._mark_previous(False)
        self._status(st.JobState.FAILED)

    def _hide_error(self) -> None:
        self.last_error = None
        self.error.layout.display = "none"
        self.error.value = ""

    def __repr__(self) -> str:
        return (f"<GenerationDashboard {self.model.name!r} methods={len(self.specs)} "
                f"answer={None if self.explanation is None else self.explanation.answer!r}>")
