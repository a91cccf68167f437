"""The data the dashboard's audit panel draws beyond the bar plot, from the cached explanations accumulated in a
:class:`~explainkit.views.aggregate.SignedImportance` (plain numpy, JSON-able, no widgets):

- tabular: a beeswarm (one dot per explained sample per feature: x = signed attribution, colour = the feature's
  value scaled to 0 (low) .. 1 (high) over the explained samples) and a dependence plot (a feature's attribution
  against its value, optionally coloured by a second feature's value);
- images: the mean map of one explained class (a map per class, never classes averaged together).
"""
from __future__ import annotations

import numpy as np

from explainkit.errors import InputError

__all__ = ["beeswarm_data", "dependence_data", "mean_map", "colour_feature", "scaled"]

ROUND = 6


def scaled(v: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] over the explained samples (0.5 for a constant or all-missing feature)."""
    v = np.asarray(v, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if not finite.size or finite.max() <= finite.min():
        return np.full(v.shape, 0.5)
    out = (v - finite.min()) / (finite.max() - finite.min())
    return np.where(np.isfinite(out), out, 0.5)


def beeswarm_data(imp, target, names, order) -> dict:
    """{rows: [{name, s: attributions, c: scaled values}], n}: one row per feature index in ``order``."""
    scores, values = imp.matrix(target)
    rows = [{"name": names[j], "s": scores[:, j].round(ROUND).tolist(), "c": scaled(values[:, j]).round(4).tolist()}
            for j in order]
    return {"rows": rows, "n": int(scores.shape[0])}


def colour_feature(scores, values, j) -> int | None:
    """The feature whose values move most with feature j's attribution (|Pearson r|), j itself excluded."""
    best, which = -1.0, None
    a = scores[:, j] - scores[:, j].mean()
    for k in range(values.shape[1]):
        v = values[:, k] - np.nanmean(values[:, k]) if np.isfinite(values[:, k]).any() else np.zeros(len(a))
        v = np.nan_to_num(v)
        den = float(np.sqrt((a * a).sum() * (v * v).sum()))
        r = abs(float((a * v).sum()) / den) if k != j and den > 0 else -1.0
        if r > best:
            best, which = r, k
    return which


def _feature(names, name, what: str) -> int:
    if name not in names:
        raise InputError(f"{what} {name!r} is not one of the model's features.",
                         "use one of: " + ", ".join(map(str, names[:30])) + ".")
    return list(names).index(name)


def dependence_data(imp, target, names, feature, color_by=None) -> dict:
    """{feature, colour, x: values, y: attributions, c: the colour feature's raw values or None}.
    ``color_by="auto"`` picks the feature most correlated with the attribution (as the report does)."""
    j = _feature(names, feature, "dependence feature")
    scores, values = imp.matrix(target)
    k = colour_feature(scores, values, j) if color_by == "auto" else \
        None if color_by is None else _feature(names, color_by, "color_by feature")
    return {"feature": names[j], "colour": None if k is None else names[k],
            "x": values[:, j].round(ROUND).tolist(), "y": scores[:, j].round(ROUND).tolist(),
            "c": None if k is None else values[:, k].round(ROUND).tolist(),
            "cs": None if k is None else scaled(values[:, k]).round(4).tolist()}


def mean_map(imp, target) -> dict:
    """images: the mean signed map of the samples explained for ``target`` (channels averaged) as {h, w, v}."""
    if target not in imp.groups:
        raise InputError(f"No explained sample has class {target!r} yet.",
                         "explain a batch first, or pick a class from the mean-map selector.")
    mp = imp.mean(target)
    mp = mp.mean(axis=-1) if mp.ndim == 3 else mp
    return {"h": int(mp.shape[0]), "w": int(mp.shape[1]), "v": mp.round(5).ravel().tolist(),
            "n": imp.count(target)}
