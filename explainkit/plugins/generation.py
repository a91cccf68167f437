"""Explaining a language model's answer: the result (:class:`GenerationExplanation`) and the run.

``ek.explain(lm, prompt, method=..., units="words", max_new_tokens=16, target=None, contrast=None)``
reaches :func:`run_generation` (through ``run_explainer``): the prompt is chat-templated and split into
units, the answer is the model's greedy one (or the ``target`` text, scored exactly: "forced"), and the
plugin receives one :class:`GenerationTask` per prompt as its target. It returns a
:class:`GenerationExplanation` whose ``matrix[a, u]`` is unit ``u``'s contribution to the log-probability
of answer token ``a`` and whose ``scores[u]`` is its contribution to the whole answer's log-probability
(minus the contrast answer's, when ``contrast`` is given).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from explainkit.enums import Modality, ResultKind
from explainkit.errors import ParameterError, PluginError
from explainkit.plugins.explanation import Explanation

__all__ = ["GenerationExplanation", "GenerationTask", "TokenScores", "run_generation", "GENERATION_ARGS"]

GENERATION_ARGS = ("units", "max_new_tokens", "contrast")   # inputs of every generation explainer
_GEN_ARRAYS = ("matrix", "token_logprobs")


@dataclass
class GenerationTask:
    """What a generation explainer explains: the encoded prompt (with units), the answer and a contrast."""
    encoding: object                    # explainkit.models.causal_lm.PromptEncoding
    answer_ids: list
    answer_tokens: list
    answer: str
    mode: str                           # "greedy" or "forced"
    token_logprobs: np.ndarray
    contrast: str | None = None
    contrast_ids: list | None = None
    contrast_logprob: float | None = None

    def objective(self, token_lp: np.ndarray, contrast_lp: np.ndarray | None = None) -> np.ndarray:
        """The whole-answer quantity explained, per copy: sum of token log-probs (minus the contrast's)."""
        total = np.asarray(token_lp).sum(axis=-1)
        return total if contrast_lp is None else total - np.asarray(contrast_lp).sum(axis=-1)


class TokenScores:
    """One answer token's scores over the prompt units."""

    def __init__(self, token: str, index: int, scores: np.ndarray, units: list[str]):
        self.token, self.index, self.scores, self.units = token, index, np.asarray(scores), list(units)

    def top_k(self, k: int = 5, by: str = "abs") -> list[tuple[str, float]]:
        return _top_k(self.scores, self.units, k, by)

    def __repr__(self) -> str:
        return f"<TokenScores {self.token!r} #{self.index} units={len(self.units)}>"


def _top_k(scores, units, k, by):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ParameterError(f"top_k takes a count of units, not {k!r}.", "pass k=5, say (0 or more).")
    key = {"abs": -np.abs(scores), "positive": -scores, "negative": scores}.get(by) if isinstance(by, str) else None
    if key is None:
        raise ParameterError(f"Unknown ordering {by!r}.", "use by='abs', 'positive' or 'negative'.")
    return [(units[i], float(scores[i])) for i in np.argsort(key, kind="stable")[:k]]


@dataclass(repr=False, eq=False)
class GenerationExplanation(Explanation):
    """Which prompt units produced each answer token. ``tokens``/``offsets`` are the units and their
    character spans in ``text`` (the prompt), so the base class's ``top_k`` ranks units for the whole answer."""

    prompt: str = ""
    templated_prompt: str = ""
    answer_text: str = ""
    answer_tokens: list = field(default_factory=list)
    answer_ids: list = field(default_factory=list)
    matrix: np.ndarray | None = None
    token_logprobs: np.ndarray | None = None
    answer_logprob: float | None = None
    target_mode: str = "greedy"
    contrast: str | None = None
    contrast_logprob: float | None = None

    def __post_init__(self):
        super().__post_init__()
        self.kind = ResultKind.GENERATION
        for k in _GEN_ARRAYS:
            if getattr(self, k) is not None:
                setattr(self, k, np.asarray(getattr(self, k), dtype=np.float64))
        if self.matrix is not None:
            self.matrix = self.matrix.reshape(len(self.answer_tokens), -1)

    @property
    def answer(self) -> str:
        return self.answer_text

    @property
    def unit_texts(self) -> list[str]:
        return list(self.tokens or [])

    @property
    def unit_spans(self) -> list[tuple[int, int]]:
        return [tuple(o) for o in self.offsets or []]

    def for_token(self, token) -> TokenScores:
        """The scores of one answer token: its index, or its text (the first token whose stripped text
        equals it, else the first containing it)."""
        toks = list(self.answer_tokens)
        if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
            if not -len(toks) <= token < len(toks):
                raise ParameterError(f"The answer has {len(toks)} tokens; {token} is out of range.",
                                     f"pass an index from 0 to {len(toks) - 1}, or a token's text.")
            i = int(token) % len(toks)
        else:
            want = str(token).strip()
            hits = [i for i, t in enumerate(toks) if t.strip() == want] or \
                   [i for i, t in enumerate(toks) if want and want in t]
            if not hits:
                raise ParameterError(f"No answer token matches {token!r}.",
                                     f"use one of: {', '.join(repr(t) for t in toks)} (or an index).")
            i = hits[0]
        return TokenScores(toks[i], i, self.matrix[i], self.unit_texts)

    def __repr__(self) -> str:
        ans = self.answer_text if len(self.answer_text) <= 40 else self.answer_text[:39] + "…"
        lp = "?" if self.answer_logprob is None else f"{self.answer_logprob:.3f}"
        return (f"<GenerationExplanation {self.method or '?'} [{len(self.answer_tokens)}x{len(self.tokens or [])}] "
                f"{self.target_mode} answer={ans!r} logprob={lp}>")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["class"] = "GenerationExplanation"
        return d

    # -- rendering and trust (the named upward exceptions, imported at call time) ----------------
    def plot(self, ax=None, view: str = "signed", **kwargs):
        """A heat map answer tokens x prompt units (matplotlib, imported lazily); returns the figure."""
        from explainkit.views import generation
        return generation.plot(self, ax=ax, **kwargs)

    def to_png(self, path=None, view: str = "signed", dpi: int = 100) -> bytes:
        from explainkit.views import generation
        return generation.to_png(self, path=path, dpi=dpi)

    def to_html(self, view: str = "signed") -> str:
        from explainkit.views import generation
        return generation.to_html(self)

    def quality(self, model, **kwargs):
        """Deletion/insertion curves of the answer's log-probability, against random orders."""
        from explainkit.trust import generation
        return generation.assess(self, model, **kwargs)


def _generation_args(model, prompt: str, target, units, max_new_tokens, contrast) -> GenerationTask:
    from explainkit.errors import TargetError
    from explainkit.models.causal_lm import MAX_NEW_TOKENS

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) \
            or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ParameterError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}; "
                             f"got {max_new_tokens!r}.", "pass max_new_tokens=16, say.")
    enc = model.encode(prompt)
    if target is None:
        model.check_length(enc, int(max_new_tokens))
    enc = model.set_units(enc, units)
    if target is None:
        ids, mode = model.generate(enc, int(max_new_tokens)), "greedy"
        if not ids:
            raise TargetError("The model's greedy answer is empty (it ended its turn at once).",
                              "pass the answer to explain as target='...'.")
    else:
        ids, mode = model.target_ids(target), "forced"
        model.check_length(enc, len(ids))
    if not enc.units:
        raise ParameterError("The prompt has no units.", "pass units='tokens' or segments covering the prompt.")
    c_ids = c_lp = None
    if contrast is not None:
        c_ids = model.target_ids(contrast)
        model.check_length(enc, len(c_ids))
        c_lp = float(model.token_logprobs(enc.ids, c_ids).sum())
    tok = model.tokenizer
    return GenerationTask(enc, list(ids), [tok.decode([i]) for i in ids], tok.decode(ids), mode,
                          model.token_logprobs(enc.ids, ids), contrast, c_ids, c_lp)


def run_generation(name, model, samples, target, *, seed, reg, entry, params):
    """``run_explainer`` for a language model: resolve prompt, units and answer, run, check, stamp."""
    from explainkit import __version__
    from explainkit.errors import ExplainKitError, InputError, NotApplicableError
    from explainkit.plugins.explanation import Explanations
    from explainkit.plugins.registry import _reason

    spec = entry.spec
    if spec.result is not ResultKind.GENERATION:
        gen = [s.name for s in reg.applicable(model) if s.result is ResultKind.GENERATION]
        raise NotApplicableError(f"{name} explains classifiers; {model.name!r} is a language model.",
                                 "choose one of: " + ", ".join(gen) + ".")
    gen_args = {"units": params.pop("units", "words"), "max_new_tokens": params.pop("max_new_tokens", 16),
                "contrast": params.pop("contrast", None)}
    values = spec.validate_params(params, model=model)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ParameterError(f"seed must be an integer; got {seed!r}.", "pass seed=0 (or any int).")
    prompts = [s.raw if hasattr(s, "raw") else s for s in samples]
    if not prompts:
        raise InputError("No prompt given.", "pass a prompt string.")
    impl = reg.implementation(name)
    from explainkit.concurrency import MODEL_LOCK
    with MODEL_LOCK:
        t0 = time.perf_counter()
        tasks = [_generation_args(model, p, target, **gen_args) for p in prompts]
        t_pred = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            out = impl.explain(model, prompts, tasks, seed=int(seed), **values)
        except ExplainKitError:
            raise
        except Exception as e:  # noqa: BLE001 - a plugin's crash is one clear error
            reg.strike(name, f"raised while explaining: {_reason(e)}")
            raise PluginError(f"Explainer {name!r} ({entry.distribution} {entry.version}) failed: {_reason(e)}",
                              "report it to the plugin's author; other explainers still work.") from None
        elapsed = time.perf_counter() - t1
    problem = _check(out, tasks)
    if problem:
        reg.mark_broken(name, f"returned invalid output: {problem}")
        raise PluginError(f"Explainer {name!r} ({entry.distribution}) returned invalid output: {problem}",
                          "return one GenerationExplanation per prompt with matrix [answer tokens x units].")
    reg.succeeded(name)
    import torch
    result = Explanations()
    for e, t in zip(out, tasks):
        enc = t.encoding
        e.modality, e.method, e.params, e.seed = Modality.TEXT, name, {**values, **gen_args}, int(seed)
        e.text, e.prompt, e.templated_prompt = enc.prompt, enc.prompt, enc.templated
        e.tokens, e.offsets = list(enc.units), [tuple(s) for s in enc.unit_spans]
        e.answer_text, e.answer_tokens, e.target_mode = t.answer, list(t.answer_tokens), t.mode
        e.answer_ids = [int(i) for i in t.answer_ids]
        e.token_logprobs = np.asarray(t.token_logprobs, dtype=np.float64)
        e.answer_logprob = float(e.token_logprobs.sum())
        e.contrast, e.contrast_logprob = t.contrast, t.contrast_logprob
        e.target_name, e.prediction = t.answer, t.answer
        e.timings = {"explain_s": elapsed / len(tasks), "batch_s": elapsed, "predict_s": t_pred, **e.timings}
        e.versions = {"explainkit": __version__, "plugin": entry.distribution, "plugin_version": entry.version,
                      "torch": torch.__version__, **e.versions}
        e.model_name, e.model_hash = model.name, model.weights_hash()
    result.extend(out)
    return result


def _check(out, tasks) -> str | None:
    if not isinstance(out, (list, tuple)) or len(out) != len(tasks):
        return f"expected {len(tasks)} GenerationExplanation(s), got {type(out).__name__}"
    for e, t in zip(out, tasks):
        if not isinstance(e, GenerationExplanation):
            return f"an item is a {type(e).__name__}, not a GenerationExplanation"
        want = (len(t.answer_ids), t.encoding.n_units)
        if e.matrix is None or tuple(e.matrix.shape) != want:
            return f"matrix of shape {None if e.matrix is None else e.matrix.shape}; expected {want}"
        if e.scores.shape != (want[1],):
            return f"scores of shape {e.scores.shape}; expected ({want[1]},)"
        if not (np.isfinite(e.matrix).all() and np.isfinite(e.scores).all()):
            return "scores contain NaN or Inf"
    return None
