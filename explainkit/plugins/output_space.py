"""What an explanation's numbers are: its output space, what red and blue mean, and its honest baseline.

Every view (PNG, static HTML, dashboard) reads these two functions, so they all say the same thing:

- :func:`output_space`: ``extras["output_space"]`` when the plugin states it (``"logit"``, ``"probability"``,
  ``"value"`` (a regression output), ``"log-probability"`` (generation), or ``"prediction"``: the model's
  own prediction, a probability for a classifier); else, for a result with a ``base_value`` (the completeness
  contract of docs/plugins.md reads those in the prediction's space), the prediction's space; else
  ``"score"``.
- :func:`legend`: the colour key's words ("evidence for <target>" / "against"; "raises" / "lowers" for
  regression), the unit, and the baseline stated as what the method really used: f(baseline) for
  integrated gradients, E[f] over the background for SHAP, the surrogate's intercept and R² for LIME, with
  the sum of the scores, so the shown values add up where the method is additive.
"""
from __future__ import annotations

import numpy as np

from explainkit.enums import ResultKind, Task, _StrEnum

__all__ = ["OutputSpace", "output_space", "legend", "unit_label"]

NORMALIZED = "normalized"      # extras key of a comparison copy: scores divided by their total |score|


class OutputSpace(_StrEnum):
    """The space an explanation's scores and base value are in."""
    LOGIT = "logit"
    PROBABILITY = "probability"
    VALUE = "value"                       # a regression model's output
    LOG_PROBABILITY = "log-probability"   # a language model's answer tokens (nats)
    SCORE = "score"                       # the plugin does not say


_ALIASES = {"logits": "logit", "prob": "probability", "probabilities": "probability", "regression": "value",
            "output": "value", "logprob": "log-probability", "log_probability": "log-probability",
            "log-prob": "log-probability", "nats": "log-probability"}


def _parse(value, task) -> OutputSpace:
    v = str(value).strip().lower()
    if v == "prediction":
        return OutputSpace.VALUE if task is Task.REGRESSION else OutputSpace.PROBABILITY
    try:
        return OutputSpace(_ALIASES.get(v, v))
    except ValueError:
        return OutputSpace.SCORE


def output_space(exp) -> OutputSpace:
    """The explanation's output space (see the module doc for the order it is read in)."""
    stated = (exp.extras or {}).get("output_space")
    if stated is not None:
        return _parse(stated, exp.task)
    if exp.kind is ResultKind.GENERATION:
        return OutputSpace.LOG_PROBABILITY
    if exp.base_value is not None:
        return _parse("prediction", exp.task)
    return OutputSpace.SCORE


def unit_label(exp, space: OutputSpace | None = None) -> str:
    """'logit of malignant', 'probability of 7', 'regression output: progression', 'score'."""
    space = output_space(exp) if space is None else space
    if (exp.extras or {}).get(NORMALIZED):
        return "share of the method's total |attribution|"
    if exp.kind is ResultKind.ATTENTION:
        return "attention weight"
    t = exp.target_label
    return {OutputSpace.LOGIT: f"logit of {t}", OutputSpace.PROBABILITY: f"probability of {t}",
            OutputSpace.VALUE: f"regression output: {t}", OutputSpace.LOG_PROBABILITY: "log-probability (nats)",
            OutputSpace.SCORE: "score"}[space]


def _sum(exp) -> float:
    """The sum over the method's own units (image segments count once, not once per pixel)."""
    units = (exp.extras or {}).get("unit_scores")
    s = np.asarray(units if units is not None else exp.scores, dtype=np.float64)
    return float(np.nansum(s))


def _model_output(exp, space):
    """f(x) for the target, in the explanation's space, where the explanation knows it."""
    ex = exp.extras or {}
    if "output" in ex:
        return float(ex["output"])
    if space is OutputSpace.PROBABILITY and exp.probabilities is not None and exp.target is not None:
        return float(np.asarray(exp.probabilities)[exp.target])
    if space is OutputSpace.VALUE and exp.prediction is not None and exp.task is Task.REGRESSION:
        return float(exp.prediction)
    return None


def _g(v) -> str:
    return "—" if v is None else f"{v:.4g}"


def _baseline(exp, space, unit) -> dict | None:
    ex = exp.extras or {}
    if ex.get(NORMALIZED) or (exp.base_value is None and "baseline_output" not in ex):
        return None
    total, fx = _sum(exp), _model_output(exp, space)
    if "local_pred" in ex:                                     # LIME: a weighted linear surrogate
        r2 = ex.get("score")
        base = float(exp.base_value)
        text = (f"LIME surrogate: intercept {_g(base)} + sum of weights {total:+.4g} = {_g(base + total)} at x"
                + (f" (R² {r2:.2f})" if r2 is not None else "") + "; the surrogate is not the model"
                + (f", whose {unit} is {_g(fx)}" if fx is not None else ""))
        return {"name": "surrogate intercept", "base": base, "sum": total, "end": base + total,
                "end_name": "surrogate at x", "output": fx, "r2": None if r2 is None else float(r2),
                "adds_up": False, "text": text}
    if "baseline_output" in ex:                                # integrated gradients: f at the baseline input
        name, base = "f(baseline)", float(ex["baseline_output"])
    elif "n_baselines" in ex:
        name, base = "E[f] over the baselines", float(exp.base_value)
    elif "n_coalitions" in ex or "exact" in ex or exp.method == "kernel_shap":
        name, base = ("E[f] over the background" if exp.modality.value == "tabular"
                      else "f(every unit masked)"), float(exp.base_value)
    else:
        name, base = "base value", float(exp.base_value)
    end = base + total
    text = f"{name} = {_g(base)}, + sum of attributions {total:+.4g} = {_g(end)}"
    if fx is not None:
        text += f"; the model's f(x) = {_g(fx)}"
        gap = abs(end - fx)
        if gap > 0.05 * max(abs(fx - base), 1e-12) and gap > 1e-6:
            text += f" (the method is approximate here: off by {gap:.3g})"
    return {"name": name, "base": base, "sum": total, "end": end, "end_name": "f(x)", "output": fx,
            "r2": None, "adds_up": True, "text": f"{text} ({unit})"}


def legend(exp, view: str = "signed") -> dict:
    """What the colours and numbers of this explanation mean, for every view.

    ``{"positive", "negative", "unit", "space", "text", "baseline"}``: ``positive``/``negative`` say what red
    and blue mean (``negative`` is None where the view shows no direction); ``text`` is the one-line key;
    ``baseline`` is :func:`_baseline`'s dict or None."""
    space = output_space(exp)
    unit = unit_label(exp, space)
    t = exp.target_label
    unsigned = exp.kind is ResultKind.ATTENTION or exp.params.get("abs") is True
    if exp.task is Task.REGRESSION:
        pos, neg = f"raises the predicted {t}", f"lowers the predicted {t}"
    else:
        pos, neg = f"evidence for {t}", f"evidence against {t}"
    if unsigned or str(view) == "absolute":
        what = "attention received" if exp.kind is ResultKind.ATTENTION else "magnitude |score|"
        pos, neg = f"{what}, direction not shown", None
        text = f"colour: {what} (larger is stronger; not for or against {t}) · unit: {unit}"
    elif str(view) == "positive":
        neg = None
        text = f"red: {pos} (evidence against is not shown) · unit: {unit}"
    else:
        text = f"red: {pos} · blue: {neg} · unit: {unit}"
    return {"positive": pos, "negative": neg, "unit": unit, "space": space.value, "text": text,
            "baseline": _baseline(exp, space, unit)}
