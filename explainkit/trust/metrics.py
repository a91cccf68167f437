"""The trust metrics, batched over samples: deletion/insertion curves, faithfulness correlation,
the model-randomization sanity check, stability across seeds, and rank agreement.

Everything goes through the model adapter's public calls (``predict_masked_many``, ``predict``,
``prepare``) and :func:`explainkit.registry.run_explainer`, so it works for any explainer, built-in
or third party. :mod:`explainkit.quality` wraps these into the ``Quality`` and ``Evaluation`` results.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from explainkit.enums import Modality, Task

__all__ = ["Curve", "Randomization", "Stability", "rank_corr", "unit_counts", "perturbation_curves",
           "faithfulness_correlation", "randomization_check", "stability", "fill_for", "sample_of",
           "FLAG_RHO"]

FLAG_RHO = 0.5      # Spearman above this after randomizing every layer: the explanation ignores the model
_TINY = 1e-12


@dataclass
class Curve:
    """A deletion or insertion curve: output after removing/adding a fraction of the units, and its AUC."""

    fractions: np.ndarray
    values: np.ndarray
    auc: float

    def to_dict(self) -> dict:
        return {"fractions": self.fractions.tolist(), "values": self.values.tolist(), "auc": _f(self.auc)}


@dataclass
class Randomization:
    """Cascading model-parameter randomization (Adebayo et al. 2018): rank correlation per step."""

    applicable: bool
    reason: str = ""
    layers: list = field(default_factory=list)      # cumulative layer names randomized at each step
    rho: list = field(default_factory=list)         # Spearman(original, randomized), signed scores
    rho_abs: list = field(default_factory=list)     # the same on |scores|
    threshold: float = FLAG_RHO

    @staticmethod
    def threshold_for(n_units: int, base: float = FLAG_RHO) -> float:
        """The flag threshold: ``base``, raised to 2/sqrt(n-1) (two null s.d. of Spearman) for few units."""
        return max(base, 2.0 / math.sqrt(max(n_units - 1, 1)))

    @property
    def final_rho(self) -> float | None:
        return self.rho[-1] if self.rho else None

    @property
    def flagged(self) -> bool:
        """True when the explanation barely changes after every layer is randomized."""
        return bool(self.applicable and self.rho and abs(self.rho[-1]) > self.threshold)

    def to_dict(self) -> dict:
        return {"applicable": self.applicable, "reason": self.reason, "layers": self.layers,
                "rho": [_f(r) for r in self.rho], "rho_abs": [_f(r) for r in self.rho_abs],
                "threshold": self.threshold, "flagged": self.flagged}


@dataclass
class Stability:
    """Spread of an explanation over seeds: mean pairwise rank correlation and per-unit std."""

    runs: int
    seeds: list
    mean_rho: float
    std: np.ndarray               # per unit, same shape as the scores (the dashboard's variance band)
    spread: float                 # max per-unit std relative to the largest |score|
    stochastic: bool

    @property
    def zero_spread(self) -> bool:
        return self.spread <= 1e-9

    def to_dict(self) -> dict:
        return {"runs": self.runs, "seeds": self.seeds, "mean_rho": _f(self.mean_rho), "spread": _f(self.spread),
                "zero_spread": self.zero_spread, "stochastic": self.stochastic, "std": self.std.tolist()}


def _f(x):
    return None if x is None or not np.isfinite(x) else float(x)


# -- helpers ---------------------------------------------------------------------------------------------
def rank_corr(a, b) -> float:
    """Spearman rank correlation (ties averaged); identical constants give 1, one constant gives 0."""
    a, b = np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))
    ca, cb = np.ptp(a) <= _TINY, np.ptp(b) <= _TINY
    if ca or cb:
        return 1.0 if ca and cb and np.allclose(a, b) else 0.0
    ra, rb = _rankdata(a), _rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties averaged (scipy.stats.rankdata's default, without importing scipy.stats)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0                       # mean of the 1-based ranks start+1..end
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def sample_of(exp, model):
    """Rebuild the explained sample from an Explanation's rendering context."""
    from explainkit.errors import InputError

    raw = {Modality.IMAGE: exp.image, Modality.TEXT: exp.text, Modality.TABULAR: exp.feature_values}[exp.modality]
    if raw is None:
        raise InputError("The explanation carries no input (image, text or feature values) to re-evaluate.",
                         "pass sample=... (the explained Sample) to assess().")
    return model.prepare(raw, label=exp.label, index=exp.sample_index)


def fill_for(exp, model, sample, fill=None):
    """The value removed units get: ``fill``, else the explainer's baseline param, else the model default."""
    if fill is None:
        fill = exp.params.get("baseline") if isinstance(exp.params, dict) else None
    if fill is None or isinstance(fill, str) and fill in ("default", ""):
        return None
    if isinstance(fill, str):
        if fill == "zero" and model.modality is not Modality.TEXT and getattr(model, "module", None) is not None:
            return np.zeros(tuple(np.shape(sample.tensor)), dtype=np.float32)
        return None          # 'zero' for text/black boxes is the default baseline (pad id 0, black, mean)
    if model.modality is Modality.TEXT:
        return int(fill)
    return np.broadcast_to(np.asarray(fill, dtype=np.float32), tuple(np.shape(sample.tensor))).copy()


def target_of(exp, model, probs) -> int:
    if model.task is Task.REGRESSION:
        return 0
    return int(exp.target) if exp.target is not None else int(np.argmax(probs))


def unit_counts(n_units: int, steps: int) -> np.ndarray:
    """Units removed at each curve point: 0, s, 2s, ... n_units with s = ceil(n_units / steps)."""
    s = max(1, math.ceil(n_units / max(1, int(steps))))
    return np.unique(np.minimum(np.arange(0, n_units + s, s), n_units))


def _order(scores: np.ndarray, direction: float) -> np.ndarray:
    """Units from most to least important (stable for ties)."""
    return np.argsort(-direction * scores.reshape(-1), kind="stable")


def _rows(order: np.ndarray, counts: np.ndarray, insert: bool) -> np.ndarray:
    n = order.size
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    top = rank[None, :] < counts[:, None]         # [S+1, U]: unit among the first k
    return top if insert else ~top                # boolean keep flags


def _track(out: np.ndarray, target: int, task) -> np.ndarray:
    return out[:, target] if task is Task.CLASSIFICATION else np.asarray(out, float).reshape(-1)


def _auc(fractions, values) -> float:
    if not np.all(np.isfinite(values)):
        return float("nan")
    return float(np.trapezoid(values, fractions)) if hasattr(np, "trapezoid") else float(np.trapz(values, fractions))


# -- deletion / insertion ---------------------------------------------------------------------------------
MAX_CURVE_BYTES = 1 << 29      # masks plus masked copies built at once for a batch of samples (512 MiB)


def _curve_batches(samples, exps, steps: int, curves: int, chunk: int) -> list[tuple[int, int]]:
    """Runs of at most ``chunk`` samples whose masks and masked copies fit ``MAX_CURVE_BYTES``; one
    sample that alone needs more than four times that is refused with the steps that would fit."""
    from explainkit.errors import ParameterError

    sizes = []
    for s, e in zip(samples, exps):
        n = int(np.asarray(e.scores).size)
        t = getattr(s, "tensor", None)
        per_row = n + 4 * (int(np.prod(tuple(t.shape))) if hasattr(t, "shape") else n)   # bool mask + float copy
        need = curves * len(unit_counts(n, steps)) * per_row
        if need > 4 * MAX_CURVE_BYTES:
            fit = max(1, 4 * MAX_CURVE_BYTES // (curves * per_row) - 1)
            raise ParameterError(f"{steps} curve steps over {n} units would build {need / 2**30:.1f} GiB of masked "
                                 "copies for one sample.", f"pass steps={min(fit, 50)} (at most {fit} fits).")
        sizes.append(need)
    out, lo, used = [], 0, 0
    for i, need in enumerate(sizes):
        if i > lo and (i - lo >= chunk or used + need > MAX_CURVE_BYTES):
            out.append((lo, i))
            lo, used = i, 0
        used += need
    if sizes:
        out.append((lo, len(sizes)))
    return out


CURVE_LARGE_SIDE = 64          # images larger than 64x64 are removed in square patches, not single pixels
CURVE_PATCHES_PER_SIDE = 28    # (a 224x224 image: 8x8-pixel patches, 784 units)


def curve_units(exp):
    """``(unit scores, groups)``: a large image's pixel scores averaged over square patches and the
    ``[H,W]`` patch id of each pixel; other explanations keep their own units (groups None)."""
    scores = np.asarray(exp.scores, float)
    if exp.modality is not Modality.IMAGE or scores.ndim != 2 or scores.size <= CURVE_LARGE_SIDE ** 2:
        return scores.reshape(-1), None
    h, w = scores.shape
    p = max(1, math.ceil(min(h, w) / CURVE_PATCHES_PER_SIDE))
    cols = -(-w // p)
    groups = (np.arange(h)[:, None] // p) * cols + np.arange(w)[None, :] // p
    flat = groups.reshape(-1)
    n = int(flat.max()) + 1
    sums = np.bincount(flat, weights=scores.reshape(-1), minlength=n)
    return sums / np.maximum(np.bincount(flat, minlength=n), 1), groups


def perturbation_curves(model, samples: Sequence, exps: Sequence, *, steps: int = 50, n_random: int = 3,
                        seed: int = 0, fills=None, insertion: bool = True, chunk: int = 16) -> list[dict]:
    """Deletion and insertion curves (Petsiuk et al. 2018) plus the random-order reference, per sample.

    Units are removed (deletion) or added (insertion) from most to least important, with the fill.
    Classification tracks the target's probability. Regression tracks the output rescaled so that
    the full input is 1 and the all-removed input is 0 (AUCs then compare across samples); units are
    ranked by score times the sign of that change. All masked copies of up to ``chunk`` samples
    (fewer where they would pass ``MAX_CURVE_BYTES``) are evaluated together in batched passes;
    copies of an image through a conv net use incremental inference (:mod:`explainkit.incremental`).
    Images larger than 64x64 step in square patches (:func:`curve_units`), not single pixels.
    """
    fills = [None] * len(samples) if fills is None else list(fills)
    kinds = (False, True) if insertion else (False,)
    regression = model.task is Task.REGRESSION
    out: list[dict] = []
    for lo, hi in _curve_batches(samples, exps, steps, len(kinds) * (1 + n_random), chunk):
        ss, es, fs = samples[lo:hi], exps[lo:hi], fills[lo:hi]
        plans = []
        for _s, e in zip(ss, es):
            unit_scores, groups = curve_units(e)
            n = int(unit_scores.size)
            counts = unit_counts(n, steps)
            rng = np.random.default_rng([int(seed), int(e.sample_index or 0)])
            perms = [rng.permutation(n) for _ in range(n_random)]
            plans.append((n, counts, perms, unit_scores, groups))
        # Regression ranks units by the output change between the endpoints (all kept, none kept).
        # Classification needs no separate pass: the deletion curve's first row is the full input.
        ends = model.predict_masked_many(ss, [np.stack([np.ones(n, bool), np.zeros(n, bool)])
                                              for n, *_ in plans], fills=fs) if regression else [None] * len(ss)
        keeps = []
        for (_n, counts, perms, unit_scores, groups), end in zip(plans, ends):
            direction = 1.0
            if regression:
                direction = 1.0 if float(end[0]) >= float(end[1]) else -1.0
            order = _order(unit_scores, direction)
            rows = np.concatenate([_rows(o, counts, ins) for ins in kinds for o in [order] + perms])
            keeps.append(rows if groups is None else rows[:, groups.reshape(-1)])     # patches -> pixels
        outs = model.predict_masked_many(ss, keeps, fills=fs)
        for (n, counts, perms, _u, _g), _s, e, end, o in zip(plans, ss, es, ends, outs):
            probs = None if regression else o[0]             # deletion, nothing removed yet
            t = target_of(e, model, probs)
            y = _track(o, t, model.task)
            note = ""
            if regression:
                f_full, f_base = float(end[0]), float(end[1])
                span = f_full - f_base
                if abs(span) <= 1e-6 * (1.0 + abs(f_full)):
                    y = np.full_like(y, np.nan)
                    note = "the baseline gives the same output as the input: regression curves are undefined"
                else:
                    y = (y - f_base) / span
            y = y.reshape(len(kinds), 1 + len(perms), len(counts))
            fr = counts / float(n)
            res = {"note": note, "target": t}
            for ki, ins in enumerate(kinds):
                name = "insertion" if ins else "deletion"
                res[name] = Curve(fr, y[ki, 0], _auc(fr, y[ki, 0]))
                if perms:
                    mean = y[ki, 1:].mean(axis=0)
                    res[name + "_random"] = Curve(fr, mean, _auc(fr, mean))
            out.append(res)
    return out


# -- faithfulness correlation -----------------------------------------------------------------------------
def faithfulness_correlation(model, samples, exps, *, n_subsets: int = 50, subset_frac: float = 0.25,
                             seed: int = 0, fills=None) -> list[float]:
    """Bhatt et al. 2020: Pearson correlation, over random unit subsets, of the attribution mass in the
    subset and the drop of the target output when the subset is removed (one batched pass)."""
    fills = [None] * len(samples) if fills is None else list(fills)
    keeps, subsets = [], []
    for _s, e in zip(samples, exps):
        n = int(np.asarray(e.scores).size)
        k = max(1, min(n - 1, int(round(subset_frac * n)))) if n > 1 else 1
        rng = np.random.default_rng([int(seed), int(e.sample_index or 0), 7])
        idx = np.stack([rng.choice(n, size=k, replace=False) for _ in range(n_subsets)])
        keep = np.ones((n_subsets + 1, n), np.float32)
        keep[1 + np.arange(n_subsets)[:, None], idx] = 0.0
        keeps.append(keep)
        subsets.append(idx)
    outs = model.predict_masked_many(samples, keeps, fills=fills)
    result = []
    for e, idx, o in zip(exps, subsets, outs):
        t = target_of(e, model, o[0] if model.task is Task.CLASSIFICATION else None)
        y = _track(o, t, model.task)
        drop = y[0] - y[1:]
        mass = np.asarray(e.scores, float).reshape(-1)[idx].sum(axis=1)
        if np.ptp(drop) <= _TINY or np.ptp(mass) <= _TINY:
            result.append(float("nan"))
        else:
            result.append(float(np.corrcoef(mass, drop)[0, 1]))
    return result


# -- model-parameter randomization ------------------------------------------------------------------------
def _param_layers(module) -> list[tuple[str, object]]:
    """Modules that own parameters, output side first (reverse registration order)."""
    layers = [(n or type(m).__name__, m) for n, m in module.named_modules()
              if any(True for _ in m.parameters(recurse=False))]
    return layers[::-1]


def _support(a, b):
    """The units scored non-zero by either map. Units that are exactly 0 in both (pixels the network
    cannot see, inputs equal to the baseline) say nothing about the model but tie in the ranks."""
    a, b = np.ravel(np.asarray(a, float)), np.ravel(np.asarray(b, float))
    keep = (a != 0) | (b != 0)
    return (a[keep], b[keep]) if keep.sum() >= 3 else (a, b)


def _randomize(layer, seed: int) -> None:
    import torch

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        if callable(getattr(layer, "reset_parameters", None)):
            layer.reset_parameters()
        else:
            for p in layer.parameters(recurse=False):
                p.normal_(0.0, float(p.detach().std()) if p.numel() > 1 else 0.02)


def randomization_check(model, samples, exps, *, max_steps: int = 3, seed: int = 0, registry=None,
                        threshold: float = FLAG_RHO) -> list[Randomization]:
    """Cascading randomization on a deep copy of the model: re-run the same explainer (same params,
    seed and target) after randomizing layers from the output down; Spearman per step and sample."""
    from explainkit.errors import ExplainKitError
    from explainkit.plugins.registry import registry as default_registry
    from explainkit.plugins.runner import run_explainer

    n = len(exps)
    if getattr(model, "module", None) is None:
        why = "not applicable: a black-box model has no parameters to randomize"
        return [Randomization(False, why) for _ in range(n)]
    method = exps[0].method
    reg = registry or default_registry()
    try:
        reg.get(method, model)
    except ExplainKitError as e:
        return [Randomization(False, f"not applicable: explainer {method!r} cannot be re-run ({e.problem})")
                for _ in range(n)]
    twin = copy.deepcopy(model)
    if hasattr(twin, "_hash"):
        twin._hash = None              # the cached weights hash belongs to the original weights
    layers = _param_layers(twin.module)
    if not layers:
        return [Randomization(False, "not applicable: the model has no parameters") for _ in range(n)]
    points = sorted({int(round(p)) for p in np.linspace(1, len(layers), min(max_steps, len(layers)))})
    params = dict(exps[0].params)
    targets = [e.target if model.task is Task.CLASSIFICATION else None for e in exps]
    targets = None if any(t is None for t in targets) else targets
    results = []
    for e in exps:
        th = Randomization.threshold_for(int(np.asarray(e.scores).size), threshold)
        why = "" if th < 1.0 else f"too few units ({np.asarray(e.scores).size}) to tell a model-independent map by rank"
        results.append(Randomization(True, why, threshold=th))
    done = 0
    for p in points:
        for i in range(done, p):
            _randomize(layers[i][1], seed * 1000 + i)
        done = p
        names = [name for name, _ in layers[:p]]
        rand = run_explainer(method, twin, samples, targets, seed=int(exps[0].seed or 0), reg=reg, **params)
        for r, e, x in zip(results, exps, rand):
            r.layers.append(names)
            a, b = _support(e.scores, x.scores)
            r.rho.append(rank_corr(a, b))
            r.rho_abs.append(rank_corr(np.abs(a), np.abs(b)))
    return results


# -- stability across seeds -------------------------------------------------------------------------------
def stability(model, samples, exps, *, runs: int = 3, registry=None) -> list[Stability]:
    """Re-run the explainer with other seeds (twice in all for deterministic methods, to check that
    they are) and report the mean pairwise rank correlation and per-unit std over the runs."""
    from explainkit.plugins.registry import registry as default_registry
    from explainkit.plugins.runner import run_explainer

    reg = registry or default_registry()
    method = exps[0].method
    stochastic = bool(reg.get(method, model).spec.stochastic)
    k = max(2, int(runs)) if stochastic else 2
    base = int(exps[0].seed or 0)
    seeds = [base] + [base + 1 + i for i in range(k - 1)]
    targets = [e.target for e in exps] if model.task is Task.CLASSIFICATION else None
    reruns = [run_explainer(method, model, samples, targets, seed=sd, reg=reg, **dict(exps[0].params))
              for sd in seeds[1:]]
    out = []
    for i, e in enumerate(exps):
        maps = [np.asarray(e.scores, float)] + [np.asarray(r[i].scores, float) for r in reruns]
        rhos = [rank_corr(maps[a], maps[b]) for a in range(k) for b in range(a + 1, k)]
        std = np.std(np.stack(maps), axis=0)
        scale = max(float(np.abs(np.stack(maps)).max()), _TINY)
        out.append(Stability(k, seeds, float(np.mean(rhos)), std, float(std.max() / scale), stochastic))
    return out
