"""The one result type every explainer returns and every view reads."""
from __future__ import annotations

import contextlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from explainkit.enums import Modality, ResultKind, Task
from explainkit.errors import DataError, ExplainKitError, ParameterError
from explainkit.plugins.explanation_schema import ARRAYS as _ARRAYS
from explainkit.plugins.explanation_schema import validate_dict as _validate_dict

__all__ = ["Explanation", "AttentionExplanation", "Explanations", "WordScore", "FORMAT_VERSION"]

FORMAT_VERSION = 1


class WordScore(NamedTuple):
    """One word of a text explanation: its characters ``text[start:end]``, the sum of its pieces' scores."""

    word: str
    start: int
    end: int
    score: float
    pieces: list[int]


@dataclass(repr=False, eq=False)
class Explanation:
    """Scores aligned to the input's human units, with everything needed to render and trust them.

    - ``scores``: one score per human unit: ``[H,W]`` pixels (channels summed), ``[T]`` tokens,
      ``[F]`` features. ``attributions`` keeps the raw input-shaped attribution (e.g. ``[C,H,W]``).
    - The rendering context: ``image``; ``tokens`` + ``offsets`` + ``text``; ``feature_names`` +
      ``feature_values`` (raw units).
    - The prediction: ``target`` (class explained), ``prediction`` (class index or value),
      ``probabilities`` (classification), ``base_value`` where the method has one.
    - Provenance: ``method``, ``params``, ``seed``, ``timings``, ``versions``, ``model_name``, ``model_hash``.
    - Sub-word text (Hugging Face models): ``words`` maps pieces to words, ``[word, start, end, [piece
      indices]]`` with ``word == text[start:end]`` (:meth:`by_words` sums the pieces); ``unscored`` lists the
      tokens the model reads that are never units ([CLS], [SEP]): their score is 0 and no view ranks them.
    - Uncertainty: ``errors``, a standard error per score (same shape) from stochastic methods that
      estimate one (Kernel SHAP, LIME, SmoothGrad, Gradient SHAP); None for deterministic methods.
    """

    scores: np.ndarray
    modality: Modality
    method: str = ""
    kind: ResultKind = ResultKind.ATTRIBUTION
    task: Task = Task.CLASSIFICATION
    attributions: np.ndarray | None = None
    target: int | None = None
    target_name: str | None = None
    prediction: Any = None
    probabilities: np.ndarray | None = None
    label: Any = None
    base_value: float | None = None
    classes: list[str] | None = None
    image: np.ndarray | None = None
    text: str | None = None
    tokens: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None
    feature_names: list[str] | None = None
    feature_values: np.ndarray | None = None
    sample_index: int | None = None
    params: dict = field(default_factory=dict)
    seed: int | None = None
    timings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    model_name: str | None = None
    model_hash: str | None = None
    extras: dict = field(default_factory=dict)
    words: list | None = None
    unscored: list[int] | None = None
    errors: np.ndarray | None = None
    photo: np.ndarray | None = None       # a photo's original pixels (uint8), when extras["transform"] maps to them

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.photo is not None:
            self.photo = _uint8(self.photo)
        if self.errors is not None:
            self.errors = np.asarray(self.errors, dtype=np.float64)
            if self.errors.shape != self.scores.shape:
                raise ParameterError(f"errors of shape {self.errors.shape} do not match scores {self.scores.shape}.",
                                     "give one standard error per score (same shape), or errors=None.")
        self.modality = Modality.parse(self.modality)
        self.kind = ResultKind.parse(self.kind)
        self.task = Task.parse(self.task)
        if self.words is not None:
            self.words = [(str(w), int(a), int(b), [int(k) for k in ks]) for w, a, b, ks in self.words]
        if self.unscored is not None:
            self.unscored = sorted(int(k) for k in self.unscored)

    # -- construction for plugins ----------------------------------------------------------------
    @classmethod
    def from_sample(cls, sample, scores, *, attributions=None, base_value=None, **extra) -> "Explanation":
        """Build a result for a :class:`~explainkit.Sample`, copying its rendering context."""
        text = sample.raw if sample.modality is Modality.TEXT else None
        meta = sample.meta if isinstance(sample.meta, dict) else {}
        words = meta.get("words") if text is not None else None
        special = meta.get("special") if text is not None else None
        unscored = [k for k, f in enumerate(special) if f] if special is not None and any(special) else None
        exp = cls(scores=scores, modality=sample.modality,
                  attributions=None if attributions is None else np.asarray(attributions, dtype=np.float64),
                  base_value=None if base_value is None else float(base_value), label=_plain(sample.label),
                  image=sample.image, text=text, tokens=sample.tokens, offsets=sample.offsets,
                  feature_names=sample.feature_names, feature_values=sample.feature_values,
                  sample_index=sample.index, words=words, unscored=unscored, **extra)
        if sample.modality is Modality.IMAGE and meta.get("transform") is not None:
            exp.extras.setdefault("transform", meta["transform"])    # views draw on the user's own photo
            exp.photo = _uint8(sample.raw)
        if unscored and exp.kind is not ResultKind.ATTENTION and exp.scores.shape == (len(special),):
            exp.scores = exp.scores.copy()        # (the plugin's own array is left alone)
            exp.scores[unscored] = 0.0            # special tokens are never units: no method scores them
            if exp.errors is not None:
                exp.errors = exp.errors.copy()
                exp.errors[unscored] = 0.0
        return exp

    # -- summaries ----------------------------------------------------------------------------------
    @property
    def units(self) -> list[str]:
        """A label per scored unit (token, feature name, or 'row,col' pixel)."""
        if self.modality is Modality.TEXT:
            return list(self.tokens or [])
        if self.modality is Modality.TABULAR:
            return list(self.feature_names or [])
        h, w = self.scores.shape[:2]
        return [f"{r},{c}" for r in range(h) for c in range(w)]

    def top_k(self, k: int = 5, by: str = "abs", words: bool = False) -> list[tuple[str, float]]:
        """The k most important units as (unit, score); ``by`` is 'abs', 'positive' or 'negative'.

        Unscored tokens ([CLS], [SEP]) are never listed; ``words=True`` ranks words (sums of their pieces)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ParameterError(f"top_k takes a count of units, not {k!r}.", "pass k=5, say (0 or more).")
        if words:
            ws = self.by_words()
            units, flat = [w.word for w in ws], np.asarray([w.score for w in ws], dtype=np.float64)
        else:
            units, flat = self.units, self.scores.reshape(-1)
        key = {"abs": -np.abs(flat), "positive": -flat, "negative": flat}.get(by) if isinstance(by, str) else None
        if key is None:
            raise ParameterError(f"Unknown ordering {by!r}.", "use by='abs', 'positive' or 'negative'.")
        order = np.argsort(key, kind="stable")
        if self.unscored and not words:
            order = order[~np.isin(order, self.unscored)]
        return [(units[i], float(flat[i])) for i in order[:k]]

    def flat_errors(self) -> np.ndarray | None:
        """The standard errors in the order of ``scores.reshape(-1)`` (unknown ones, inf, as NaN), or None."""
        e = self.errors
        if e is None or np.shape(e) != self.scores.shape:
            return None
        e = np.asarray(e, np.float64).reshape(-1)
        return np.where(np.isfinite(e), e, np.nan)

    @property
    def has_pieces(self) -> bool:
        """Whether some word of the text is several units (sub-word pieces), so a words view differs."""
        return bool(self.words) and any(len(ks) > 1 for *_, ks in self.words)

    def by_words(self) -> list[WordScore]:
        """Word-level scores: each word's characters ``text[start:end]`` and the sum of its pieces' scores.

        Without a piece-to-word mapping (word-level tokenizers) every scored token is its own word."""
        if self.modality is not Modality.TEXT or self.scores.ndim != 1:
            raise ParameterError(f"by_words() needs a text explanation; this one is {self.modality.value}.",
                                 "call it on a text model's explanation, or use top_k().")
        s = self.scores
        if self.words is not None:
            return [WordScore(w, a, b, float(s[ks].sum()), list(ks)) for w, a, b, ks in self.words]
        skip = set(self.unscored or ())
        offs = self.offsets or [(0, 0)] * len(s)
        toks = self.tokens or [str(k) for k in range(len(s))]
        text = self.text
        return [WordScore(text[a:b] if text is not None and b > a else str(toks[k]), int(a), int(b), float(s[k]),
                          [k]) for k, (a, b) in enumerate(offs[:len(s)]) if k not in skip]

    @property
    def target_label(self) -> str:
        if self.target_name:
            return self.target_name
        if self.classes and self.target is not None:
            return self.classes[self.target]
        return "output" if self.task is Task.REGRESSION else str(self.target)

    @property
    def output_space(self) -> str:
        """What the scores and base value are in: 'logit', 'probability', 'value' (regression output),
        'log-probability' (generation) or 'score' (the plugin does not say); see explainkit.plugins.output_space."""
        from explainkit.plugins.output_space import output_space
        return output_space(self).value

    def legend(self, view: str = "signed") -> dict:
        """What red and blue mean, the unit, and the honest baseline (f(baseline), E[f], LIME's intercept)."""
        from explainkit.plugins.output_space import legend
        return legend(self, view)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.scores.shape)
        pred = self.prediction
        pred_s = f"{pred:.4g}" if isinstance(pred, float) else (
            self.classes[pred] if self.classes and isinstance(pred, (int, np.integer)) else pred)
        return (f"<Explanation {self.method or '?'} {self.modality.value} [{shape}] "
                f"target={self.target_label!s} prediction={pred_s}>")

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-compatible dict (arrays become nested lists)."""
        d = {"format_version": FORMAT_VERSION, "class": type(self).__name__}
        for k, v in self.__dict__.items():
            if k == "errors" and v is not None:      # strict JSON: an unknown standard error (inf) is null
                d[k] = np.where(np.isfinite(v), v, None).tolist()
            elif k != "photo":        # JSON stays small: the photo travels in save()'s npz, not in the dict
                d[k] = _jsonable(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Explanation":
        """The inverse of :meth:`to_dict`; a malformed dict is one DataError naming the field."""
        if isinstance(d, dict) and isinstance(d.get("errors"), list):   # null: a standard error not known (inf)
            d = dict(d)
            with contextlib.suppress(TypeError, ValueError):
                d["errors"] = np.vectorize(lambda x: np.inf if x is None else float(x), otypes=[np.float64])(
                    np.asarray(d["errors"], dtype=object))
        _validate_dict(d)
        d = dict(d)
        version = d.pop("format_version", FORMAT_VERSION)
        if int(version) > FORMAT_VERSION:
            raise DataError(f"Explanation format {version} is newer than this explainkit understands.",
                            "upgrade explainkit.")
        from explainkit.plugins.generation import GenerationExplanation
        klass = {"Explanation": Explanation, "AttentionExplanation": AttentionExplanation,
                 "GenerationExplanation": GenerationExplanation}.get(d.pop("class", "Explanation"), Explanation)
        for k in _ARRAYS:
            if d.get(k) is not None:
                try:
                    d[k] = np.asarray(d[k], dtype=np.float64)
                except (TypeError, ValueError):
                    raise DataError(f"Not a valid explanation: {k!r} is not a rectangular array of numbers.",
                                    "re-create it with Explanation.to_dict().") from None
        if d.get("offsets") is not None:
            d["offsets"] = [tuple(o) for o in d["offsets"]]
        if d.get("words") is not None:
            d["words"] = [(w, a, b, list(ks)) for w, a, b, ks in d["words"]]
        fields = klass.__dataclass_fields__
        try:
            return klass(**{k: v for k, v in d.items() if k in fields})
        except ExplainKitError as e:
            raise DataError(f"Not a valid explanation: {e.problem}",
                            "re-create it with Explanation.to_dict().") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path) -> Path:
        """Write ``.npz`` arrays plus JSON metadata in one file (no pickle), atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        meta = {k: _jsonable(v) for k, v in self.__dict__.items() if k not in _ARRAYS + ("photo",)}
        meta["format_version"] = FORMAT_VERSION
        meta["class"] = type(self).__name__
        arrays = {k: np.asarray(v) for k, v in self.__dict__.items() if k in _ARRAYS + ("photo",) and v is not None}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        from explainkit.atomic import atomic_write

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> "Explanation":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["__meta__"]).decode())
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except FileNotFoundError:
            raise DataError(f"No explanation file at {path}.", "check the path.") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
            raise DataError(f"{path} is not a valid explanation file ({type(e).__name__}).",
                            "re-create it with Explanation.save().") from None
        meta.update(arrays)
        return cls.from_dict(meta)

    # -- rendering ------------------------------------------------------------------------------------
    def plot(self, ax=None, view: str = "signed", **kwargs):
        """Draw with matplotlib (imported lazily); returns the figure."""
        from explainkit.views import render
        return render.plot(self, ax=ax, view=view, **kwargs)

    def to_png(self, path=None, view: str = "signed", dpi: int = 100, units: str = "pieces") -> bytes:
        from explainkit.views import render
        return render.to_png(self, path=path, view=view, dpi=dpi, units=units)

    def to_html(self, view: str = "signed", units: str = "pieces") -> str:
        """A self-contained HTML fragment (inline image/CSS, all strings escaped); text ``units``: 'pieces'
        or 'words' (each word the sum of its pieces, on the text's own characters)."""
        from explainkit.views import render
        return render.to_html(self, view=view, units=units)

    def _repr_html_(self) -> str:
        return self.to_html()

    def quality(self, model, **kwargs):
        """Trust metrics for this explanation (deletion/insertion AUC, randomization check, …)."""
        from explainkit.trust import quality
        return quality.assess(self, model, **kwargs)


@dataclass(repr=False, eq=False)
class AttentionExplanation(Explanation):
    """Token-to-token attention: ``matrices`` is ``[layers, heads, T, T]``; ``scores`` is per token."""

    matrices: np.ndarray | None = None
    rollout: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.kind = ResultKind.ATTENTION
        if self.matrices is not None:
            self.matrices = np.asarray(self.matrices, dtype=np.float64)

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in (self.matrices.shape if self.matrices is not None else ()))
        return f"<AttentionExplanation {self.method or '?'} [{shape}] tokens={len(self.tokens or [])}>"

    def head(self, layer: int, head: int | str = "mean") -> np.ndarray:
        """One layer's ``[T,T]`` matrix: a head index, or 'mean' over heads."""
        m = self.matrices[layer]
        return m.mean(axis=0) if head == "mean" else m[int(head)]


class Explanations(list):
    """A list of explanations (a batch), with a one-line repr and a combined notebook view."""

    def __repr__(self) -> str:
        methods = sorted({e.method for e in self})
        return f"<Explanations n={len(self)} methods={','.join(methods)}>"

    def _repr_html_(self) -> str:
        return "\n".join(e.to_html() for e in self)


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (Modality, Task, ResultKind)):
        return v.value
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None                   # strict JSON has no Infinity or NaN: an unknown number is null
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _uint8(a) -> np.ndarray:
    """Pixels as uint8 (floats in 0..1 scaled by 255; anything else clipped to 0..255)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    return np.clip(np.round(a * 255 if a.max(initial=0) <= 1 else a), 0, 255).astype(np.uint8)
