"""Is an explanation's top-k ranking resolved by its own standard errors? (``exp.errors``; no model calls)

A ranking is **stable** when the k units ranked highest by |score| are told apart from the rest and from
zero by about two standard errors: with ``gap = (|s_(k)| - |s_(k+1)|) / sqrt(se_(k)^2 + se_(k+1)^2)``
(the k-th and the (k+1)-th units by |score|) and ``z_min = min over the top k of |s| / se``, it is stable
when ``gap >= Z`` and ``z_min >= Z``, with ``Z = 2``. Segmented images are ranked by segment
(``extras["unit_scores"]`` / ``["unit_errors"]``), since all the pixels of a segment share a score; the
order inside the top k is not required to be resolved. Unknown errors (inf: an underdetermined Kernel SHAP
fit) make the ranking unstable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Separation", "separation", "Z", "TOP_K"]

Z = 2.0          # standard errors that separate the top k from the rest and from zero
TOP_K = 5


@dataclass(repr=False, eq=False)
class Separation:
    """The top-k ranking against the standard errors: the boundary gap and the weakest top unit, in SE."""

    k: int
    gap: float            # (|s_k| - |s_k+1|) in combined standard errors; inf when all units are in the top k
    z_min: float          # smallest |s| / se among the top k

    @property
    def stable(self) -> bool:
        return bool(self.gap >= Z and self.z_min >= Z)

    def badge(self) -> str:
        word = "stable" if self.stable else "unstable"
        return f"top-{self.k} {word} (gap {_fmt(self.gap)} SE)"

    def row(self) -> tuple:
        return (f"top-{self.k} ranking vs its errors", f"{_fmt(self.gap)} SE",
                f"stable if gap ≥ {Z:g} SE and every |score| ≥ {Z:g} SE (min {_fmt(self.z_min)})",
                "✓" if self.stable else "✗")

    def to_dict(self) -> dict:
        return {"k": self.k, "gap": _json(self.gap), "z_min": _json(self.z_min), "stable": self.stable}


def _fmt(x: float) -> str:
    return "∞" if np.isinf(x) else f"{x:.1f}"


def _json(x: float):
    return None if not np.isfinite(x) else float(x)


def _ratio(num, den) -> float:
    if den > 0:
        return float(num / den)
    return float("inf") if num > 0 else 0.0


def separation(exp, k: int = TOP_K) -> Separation | None:
    """The :class:`Separation` of an explanation with standard errors, or None without them."""
    errors = exp.flat_errors() if hasattr(exp, "flat_errors") else None
    if errors is None:
        return None
    scores = np.asarray(exp.scores, dtype=np.float64).reshape(-1)
    extras = exp.extras if isinstance(exp.extras, dict) else {}
    if extras.get("unit_scores") is not None and extras.get("unit_errors") is not None:
        scores = np.asarray(extras["unit_scores"], dtype=np.float64).reshape(-1)
        errors = np.asarray(extras["unit_errors"], dtype=np.float64).reshape(-1)
    keep = np.ones(len(scores), dtype=bool)
    if exp.unscored and len(scores) == np.asarray(exp.scores).size:
        keep[[u for u in exp.unscored if u < len(keep)]] = False
    scores, errors = np.abs(scores[keep]), np.where(np.isfinite(errors[keep]), errors[keep], np.inf)
    if not len(scores):
        return None
    order = np.argsort(-scores, kind="stable")
    k = max(1, min(int(k), len(order)))
    top = order[:k]
    z_min = min(_ratio(scores[i], errors[i]) for i in top)
    if len(order) == k:
        return Separation(k, float("inf"), z_min)
    a, b = order[k - 1], order[k]
    gap = _ratio(scores[a] - scores[b], float(np.hypot(errors[a], errors[b])))
    return Separation(k, gap, z_min)
