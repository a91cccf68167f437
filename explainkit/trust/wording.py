"""A :class:`~explainkit.trust.quality.Quality` in plain words, for people who do not read AUCs.

``plain(q, exp)`` returns the sentences the dashboard shows, with the numbers kept for a tooltip:

- deletion: "Removing the top-ranked pixels first lowers the probability of 7 5.0x faster than random:
  faithful." The speed is the area the curve loses below its start, ``values[0] - AUC``, against the
  random order's; the verdict is the badge's (``deletion AUC < random AUC - MARGIN``).
- under :data:`MEANINGFUL_P` target probability there is almost nothing to lower: "not meaningful".
- regression: the curve is the share of the prediction's change left (docs/trust.md), so it reads
  "takes the prediction back towards the baseline 3.0x faster than random".
- randomization: ``|ρ|`` (Spearman, original against fully randomized weights) is read as its size
  whatever its sign: near 0 is good (the map depends on the learned weights); above the threshold
  it is flagged (the map barely changed, so it shows the input or the architecture).
"""
from __future__ import annotations

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.trust.quality import MARGIN

__all__ = ["plain", "MEANINGFUL_P", "DOCS"]

MEANINGFUL_P = 0.05        # below this target probability a deletion test has nothing to lower
DOCS = "docs/trust.md"     # where the dashboard's "how to read this" link points
_UNITS = {Modality.IMAGE: "pixels", Modality.TEXT: "tokens", Modality.TABULAR: "features"}


def _speed(cur, ref) -> float | None:
    """How much faster the ranked order loses the output than the random one (area below the start)."""
    if cur is None or ref is None or not len(cur.values) or not np.isfinite(cur.auc) or not np.isfinite(ref.auc):
        return None
    start = float(cur.values[0])
    lost, lost_random = start - float(cur.auc), start - float(ref.auc)
    if lost_random <= 1e-9:
        return None if lost <= 1e-9 else float("inf")
    return lost / lost_random


def _times(x: float) -> str:
    return "∞" if not np.isfinite(x) else f"{x:.1f}×"


def _deletion(q, exp, units: str) -> tuple[str, str]:
    regression = exp is not None and exp.task is Task.REGRESSION
    p = None
    if exp is not None and not regression and exp.probabilities is not None and exp.target is not None:
        p = float(np.asarray(exp.probabilities)[exp.target])
    target = exp.target_label if exp is not None else "the target"
    if p is not None and p < MEANINGFUL_P:
        return (f"The model gives {target} only {p:.1%}: below {MEANINGFUL_P:.0%} there is almost nothing to "
                f"lower, so the deletion test is not meaningful for this target.", "not meaningful")
    speed, ok = _speed(q.deletion, q.deletion_random), q.deletion_ok
    if speed is None or ok is None:
        return ("The deletion test could not be scored (the output did not move under either order).", "n/a")
    verdict = "faithful" if ok else "weak" if speed > 1.0 else "not faithful"
    if regression:
        what = f"takes the predicted {target} back towards the baseline"
    else:
        what = f"lowers the probability of {target}"
    pace = f"{_times(speed)} faster than random" if speed >= 1.0 else f"slower than random ({_times(speed)})"
    return f"Removing the top-ranked {units} first {what} {pace}: {verdict}.", verdict


def _randomization(r) -> tuple[str, str] | None:
    if r is None:
        return None
    if not r.applicable:
        return f"The weight-randomization check does not apply: {r.reason}", "n/a"
    rho = r.final_rho
    if r.flagged:
        return (f"Randomizing the model's weights barely changes the map (|ρ| = {abs(rho):.2f}, over "
                f"{r.threshold:.2f}): it may show the input, not what the model learned.", "sanity failed")
    return (f"Randomizing the model's weights changes the map (|ρ| = {abs(rho):.2f}, at most {r.threshold:.2f} "
            f"passes): it depends on what the model learned.", "sanity ok")


def _stability(s) -> str | None:
    if s is None:
        return None
    if s.zero_spread and not s.stochastic:
        return "Deterministic: every run gives the same map."
    how = "the same" if s.mean_rho >= 0.8 else "a different"
    return f"Re-run with other seeds, it gives {how} ranking (mean ρ {s.mean_rho:.2f} over {s.runs} runs)."


def plain(q, exp=None) -> dict:
    """``{"text", "verdict", "sentences", "numbers", "docs"}`` for a Quality (``exp``: the explanation it
    judges, for the target's probability, the task and the unit names)."""
    units = _UNITS.get(exp.modality, "units") if exp is not None else "units"
    sentences, verdicts = [], []
    if q.deletion is not None:
        s, v = _deletion(q, exp, units)
        sentences.append(s)
        verdicts.append(v)
    r = _randomization(q.randomization)
    if r is not None:
        sentences.append(r[0])
        verdicts.append(r[1])
    st = _stability(q.stability)
    if st is not None:
        sentences.append(st)
    numbers = q.badge() + f" (deletion ✓ needs an AUC at least {MARGIN:g} below random's; lower is better)"
    if exp is not None and exp.task is Task.REGRESSION:
        numbers += "; regression curves are the share of the prediction's change left (1 = the full input)"
    return {"text": " ".join(sentences) or "No trust metric was computed.",
            "verdict": ", ".join(verdicts) or "n/a", "sentences": sentences, "numbers": numbers, "docs": DOCS}
