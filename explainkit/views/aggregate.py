"""Dataset-level audit numbers shared by the report and the dashboard: confusion cells, slices with their
metrics, and signed global importance accumulated from cached local explanations (plain numpy, no widgets).

Slices are named specs (JSON-able, so the dashboard can save them) or Python predicates:

    {"class": "malignant"}                      true class (name or index); {"predicted": ...} for predictions
    {"confidence": [0.5, 0.7]}                  top-class probability in [lo, hi)
    {"length": [0, 10]}                         text length in words, [lo, hi)
    {"feature": "bmi", "range": [0.05, None]}   a tabular feature's value in [lo, hi); None is unbounded
    lambda raw: ...  or  lambda raw, label: ... a user predicate (Python only, not savable)
"""
from __future__ import annotations

import inspect
import unicodedata

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import InputError, ParameterError

__all__ = ["confusion_cells", "slice_mask", "slice_metrics", "default_slices", "check_slices", "SignedImportance",
           "is_punctuation", "LOW_CONFIDENCE", "MIN_WORD_COUNT"]

LOW_CONFIDENCE = 0.7         # the confidence bands: < 0.7, 0.7-0.9, >= 0.9
MIN_WORD_COUNT = 2           # a word's mean signed score is shown once it occurs at least this often
SPECIAL_TOKENS = {"[cls]", "[sep]", "[pad]", "[unk]", "[mask]", "<s>", "</s>", "<pad>", "<unk>", "<bos>", "<eos>"}
_SPEC_KEYS = {"class", "predicted", "confidence", "length", "feature", "range"}
_HOW = ('use {"class": NAME}, {"predicted": NAME}, {"confidence": [lo, hi]}, {"length": [lo, hi]}, '
        '{"feature": NAME, "range": [lo, hi]}, or a function of (raw) or (raw, label) returning True/False.')


def confusion_cells(labels, predicted, k: int) -> np.ndarray:
    """[k, k] counts, rows = true class, columns = predicted class."""
    cm = np.zeros((k, k), dtype=np.int64)
    if len(labels):
        np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return cm


def is_punctuation(token: str) -> bool:
    """True for tokens that carry no word: punctuation or symbols only (',', '.', '--', "'s" is a word)."""
    t = token.strip().removeprefix("##").removeprefix("Ġ").removeprefix("▁")
    return not t or all(unicodedata.category(c)[0] in "PSZ" for c in t)


def _class_index(value, classes, what: str) -> int:
    names = list(classes or [])
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= int(value) < len(names):
        return int(value)
    if isinstance(value, str) and value in names:
        return names.index(value)
    raise InputError(f"Slice {what}={value!r} is not one of the model's classes.",
                     "use one of: " + ", ".join(map(str, names[:20])) + ".")


def _bounds(value, what: str) -> tuple[float, float]:
    try:
        lo, hi = value
        lo = -np.inf if lo is None else float(lo)
        hi = np.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise ParameterError(f"Slice {what}={value!r} is not a [lo, hi] pair.",
                             f'pass {{"{what}": [0.5, 0.7]}}; None leaves a side open.') from None
    if not lo < hi:
        raise ParameterError(f"Slice {what}=[{lo}, {hi}] is empty (lo must be below hi).", "swap the bounds.")
    return lo, hi


def check_slices(slices) -> dict:
    """{name: spec} with every spec checked for shape (the model-dependent checks happen in slice_mask)."""
    if slices is None:
        return {}
    if not isinstance(slices, dict):
        raise ParameterError(f"slices must be a {{name: spec}} dict; got {type(slices).__name__}.", _HOW)
    out = {}
    for name, spec in slices.items():
        if not isinstance(name, str) or not name.strip():
            raise ParameterError(f"Slice name {name!r} is not a non-empty string.", "name each slice, e.g. 'short'.")
        if not callable(spec) and not (isinstance(spec, dict) and spec and set(spec) <= _SPEC_KEYS):
            raise ParameterError(f"Slice {name!r} has an unknown spec {spec!r}.", _HOW)
        if isinstance(spec, dict) and ("range" in spec) != ("feature" in spec):
            raise ParameterError(f"Slice {name!r}: 'feature' and 'range' go together.",
                                 '{"feature": "bmi", "range": [0.05, None]}.')
        out[name.strip()] = spec
    return out


def _predicate(fn, name, raws, labels) -> np.ndarray:
    try:
        arity = len([p for p in inspect.signature(fn).parameters.values()
                     if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    except (TypeError, ValueError):
        arity = 1
    try:
        if arity >= 2:
            vals = [fn(raws[i], None if labels is None else labels[i].item()) for i in range(len(raws))]
        else:
            vals = [fn(raws[i]) for i in range(len(raws))]
    except Exception as e:  # noqa: BLE001 - the user's code: one clear error naming the slice
        raise InputError(f"Slice {name!r}: the predicate raised {type(e).__name__}: {e}",
                         "make it take (raw) or (raw, label) and return True or False.") from None
    return np.asarray([bool(v) for v in vals], dtype=bool)


def slice_mask(name, spec, *, raws, labels, predicted, confidence, classes=None, feature_names=None,
               lengths=None) -> np.ndarray:
    """Boolean mask over the data for one slice (all conditions of a dict spec must hold)."""
    n = len(raws)
    if callable(spec):
        return _predicate(spec, name, raws, labels)
    keep = np.ones(n, dtype=bool)
    if "class" in spec:
        if labels is None:
            raise InputError(f"Slice {name!r} selects a true class, and this data has no labels.",
                             'slice by {"predicted": NAME} instead.')
        keep &= np.asarray(labels).astype(np.int64) == _class_index(spec["class"], classes, "class")
    if "predicted" in spec:
        if classes is None:
            raise InputError(f"Slice {name!r} selects a predicted class of a regression model.",
                             'slice by {"feature": ..., "range": ...} or a predicate.')
        keep &= np.asarray(predicted).astype(np.int64) == _class_index(spec["predicted"], classes, "predicted")
    if "confidence" in spec:
        if confidence is None or not np.isfinite(confidence).any():
            raise InputError(f"Slice {name!r} selects a confidence band; a regression model has none.",
                             "slice by a feature range or a predicate.")
        lo, hi = _bounds(spec["confidence"], "confidence")
        keep &= (confidence >= lo) & ((confidence < hi) | ((hi >= 1.0) & (confidence >= 1.0)))
    if "length" in spec:
        if lengths is None:
            raise InputError(f"Slice {name!r} selects a text length; this data is not text.",
                             "slice by class, confidence, a feature range or a predicate.")
        lo, hi = _bounds(spec["length"], "length")
        keep &= (lengths >= lo) & (lengths < hi)
    if "feature" in spec:
        names = list(feature_names or [])
        if spec["feature"] not in names:
            raise InputError(f"Slice {name!r}: no feature {spec['feature']!r}.",
                             "use one of: " + ", ".join(names[:30]) + ".")
        j = names.index(spec["feature"])
        lo, hi = _bounds(spec["range"], "range")
        v = np.asarray([np.asarray(raws[i], dtype=np.float64)[j] for i in range(n)]) if n else np.zeros(0)
        keep &= (v >= lo) & (v < hi)
    return keep


def text_lengths(raws) -> np.ndarray:
    return np.asarray([len(str(r).split()) for r in raws], dtype=np.int64)


def default_slices(modality: Modality, task: Task, classes, *, lengths=None, feature=None, values=None,
                   labelled: bool = True) -> dict:
    """By class (true, or predicted on unlabelled data) and confidence band (classifiers), text length in
    thirds, and one feature's range in thirds."""
    out: dict = {}
    if task is Task.CLASSIFICATION:
        for c in (classes or [])[:20]:
            out.update({f"true class {c}": {"class": c}} if labelled else {f"predicted {c}": {"predicted": c}})
        out[f"confidence < {LOW_CONFIDENCE:g}"] = {"confidence": [0.0, LOW_CONFIDENCE]}
        out[f"confidence {LOW_CONFIDENCE:g}-0.9"] = {"confidence": [LOW_CONFIDENCE, 0.9]}
        out["confidence ≥ 0.9"] = {"confidence": [0.9, 1.0]}
    if modality is Modality.TEXT and lengths is not None and len(lengths):
        a, b = (int(q) for q in np.quantile(lengths, [1 / 3, 2 / 3]))
        b = max(b, a + 1)
        out[f"shorter than {a} words"] = {"length": [0, a]}
        out[f"{a}-{b - 1} words"] = {"length": [a, b]}
        out[f"{b} words or more"] = {"length": [b, None]}
    if modality is Modality.TABULAR and feature is not None and values is not None and len(values):
        a, b = (float(q) for q in np.quantile(values, [1 / 3, 2 / 3]))
        if a < b:
            out[f"{feature} < {a:.3g}"] = {"feature": feature, "range": [None, a]}
            out[f"{feature} {a:.3g}-{b:.3g}"] = {"feature": feature, "range": [a, b]}
            out[f"{feature} ≥ {b:.3g}"] = {"feature": feature, "range": [b, None]}
    return out


def slice_metrics(mask, *, task: Task, outputs, labels) -> dict:
    """count, share, and accuracy + mean confidence (classifiers) or mean absolute error + bias (regression)."""
    mask = np.asarray(mask, dtype=bool)
    n = int(mask.sum())
    row = {"n": n, "share": float(n / max(len(mask), 1))}
    out = np.asarray(outputs, dtype=np.float64)[mask]
    if task is Task.CLASSIFICATION:
        row["mean_confidence"] = float(out.max(axis=1).mean()) if n else None
        row["accuracy"] = (float((out.argmax(axis=1) == np.asarray(labels)[mask].astype(np.int64)).mean())
                           if n and labels is not None else None)
    else:
        err = out - np.asarray(labels, dtype=np.float64)[mask] if n and labels is not None else None
        row["mae"] = None if err is None else float(np.abs(err).mean())
        row["bias"] = None if err is None else float(err.mean())
    return row


class SignedImportance:
    """Signed global importance from local explanations, kept per explained class (a score's sign means
    "for" or "against" the class it was computed for, so classes are never averaged together).

    tabular: every sample's scores and feature values (bar, beeswarm, dependence); text: per word, the sum
    and count of its signed scores, punctuation and special tokens skipped; image: the sum map per class."""

    def __init__(self, modality: Modality, min_count: int = MIN_WORD_COUNT):
        if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise ParameterError(f"min_count must be a positive integer; got {min_count!r}.", "pass min_count=2.")
        self.modality, self.min_count = Modality.parse(modality), int(min_count)
        self.n = 0
        self.skipped = 0                 # text: punctuation and special tokens left out
        self.groups: dict = {}           # target -> accumulator

    def add(self, exp, values=None) -> None:
        s = np.asarray(exp.scores, dtype=np.float64)
        if not np.isfinite(s).all():
            return
        self.n += 1
        g = self.groups.setdefault(exp.target, {"n": 0})
        g["n"] += 1
        if self.modality is Modality.TEXT:
            words = g.setdefault("words", {})
            for w in exp.by_words():
                key = w.word.strip().lower()
                if is_punctuation(key) or key in SPECIAL_TOKENS:
                    self.skipped += 1
                    continue
                acc = words.setdefault(key, [0.0, 0])
                acc[0] += w.score
                acc[1] += 1
        elif self.modality is Modality.TABULAR:
            v = exp.feature_values if values is None else values
            g.setdefault("scores", []).append(s)
            g.setdefault("values", []).append(np.asarray(v, dtype=np.float64) if v is not None
                                              else np.full(s.shape, np.nan))
        else:
            if "sum" not in g or g["sum"].shape != s.shape:
                g["sum"] = s.copy()
            else:
                g["sum"] += s

    def targets(self) -> list:
        """Explained classes (None for regression), the most frequent first."""
        return sorted(self.groups, key=lambda t: (-self.groups[t]["n"], -1 if t is None else t))

    def count(self, target) -> int:
        return self.groups.get(target, {"n": 0})["n"]

    def matrix(self, target) -> tuple[np.ndarray, np.ndarray]:
        """tabular: ([n, F] signed scores, [n, F] feature values) of the samples explained for ``target``."""
        g = self.groups[target]
        return np.vstack(g["scores"]), np.vstack(g["values"])

    def mean(self, target) -> np.ndarray:
        """tabular: mean signed score per feature; image: the mean map."""
        g = self.groups[target]
        return self.matrix(target)[0].mean(axis=0) if self.modality is Modality.TABULAR else g["sum"] / g["n"]

    def words(self, target, k: int = 15) -> dict:
        """text: the ``k`` words with the highest and the lowest mean signed score, among words seen at least
        ``min_count`` times; 'rare' counts the words left out for occurring less often."""
        words = self.groups[target].get("words", {})
        rows = [(w, s / c, c) for w, (s, c) in words.items() if c >= self.min_count]
        rows.sort(key=lambda r: (-r[1], r[0]))
        fmt = [{"word": w, "mean": float(m), "count": int(c)} for w, m, c in rows]
        pos = [r for r in fmt if r["mean"] > 0][:k]
        neg = [r for r in reversed(fmt) if r["mean"] < 0][:k]
        return {"for": pos, "against": neg, "rare": len(words) - len(rows), "shown_words": len(rows)}
