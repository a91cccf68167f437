"""How far to trust an explanation: deletion/insertion AUC against a random order, faithfulness
correlation, the model-randomization sanity check, stability over seeds, and agreement between methods.

``exp.quality(model)`` (= :func:`assess`) gives a :class:`Quality` for one explanation;
:func:`evaluate` gives dataset-level tables; ``explainkit evaluate`` is the CLI. The metrics are in
:mod:`explainkit.quality_metrics`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from explainkit.enums import _StrEnum
from explainkit.errors import InputError, NotApplicableError, ParameterError, UnknownNameError
from explainkit.trust.metrics import (
    Curve,
    Randomization,
    Stability,
    faithfulness_correlation,
    fill_for,
    perturbation_curves,
    randomization_check,
    rank_corr,
    sample_of,
    stability,
)
from explainkit.trust.separation import Separation, separation

__all__ = ["Metric", "Quality", "Evaluation", "Agreement", "assess", "evaluate", "agreement",
           "DEFAULT_METRICS", "MARGIN"]

MARGIN = 0.05          # deletion must beat the random order by this much AUC to earn the check mark


class Metric(_StrEnum):
    """The trust metrics ``assess`` and ``evaluate`` can compute."""
    DELETION = "deletion"
    INSERTION = "insertion"
    FAITHFULNESS = "faithfulness"
    RANDOMIZATION = "randomization"
    STABILITY = "stability"


DEFAULT_METRICS = tuple(Metric)

_HTML = """<div class="ek-quality" style="font-family:sans-serif;font-size:13px">
<b>{{ q.method }}</b> — {{ q.badge() }}
<table style="border-collapse:collapse;margin-top:4px">
{% for name, value, ref, verdict in rows %}<tr><td style="padding:1px 8px">{{ name }}</td>
<td style="padding:1px 8px;text-align:right">{{ value }}</td><td style="padding:1px 8px;color:#666">{{ ref }}</td>
<td style="padding:1px 8px">{{ verdict }}</td></tr>{% endfor %}
</table>{% for n in q.notes %}<div style="color:#a60">{{ n }}</div>{% endfor %}</div>"""


def _fmt(x, nd: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _curve_badge(name: str, cur: Curve, ref: Curve | None, ok: bool | None) -> str:
    vs = f" vs random {_fmt(ref.auc)}" if ref is not None else ""
    return f"{name} AUC {_fmt(cur.auc)}{vs}" + ("" if ok is None else " ✓" if ok else " ✗")


@dataclass(repr=False, eq=False)
class Quality:
    """Trust metrics for one explanation; ``badge()`` is the one-line verdict."""

    method: str
    n_units: int
    target: int | None = None
    deletion: Curve | None = None
    deletion_random: Curve | None = None
    insertion: Curve | None = None
    insertion_random: Curve | None = None
    faithfulness: float | None = None
    randomization: Randomization | None = None
    stability: Stability | None = None
    separation: Separation | None = None      # the top-k ranking against the explanation's own errors
    timings: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def deletion_ok(self) -> bool | None:
        """Deletion AUC below the random order's by at least MARGIN (None if not computed)."""
        if self.deletion is None or self.deletion_random is None or not np.isfinite(self.deletion.auc):
            return None
        return self.deletion.auc < self.deletion_random.auc - MARGIN

    @property
    def insertion_ok(self) -> bool | None:
        if self.insertion is None or self.insertion_random is None or not np.isfinite(self.insertion.auc):
            return None
        return self.insertion.auc > self.insertion_random.auc + MARGIN

    def badge(self) -> str:
        """Short verdict, e.g. 'deletion AUC 0.21 vs random 0.48 ✓ sanity ok'."""
        parts = []
        if self.deletion is not None:
            parts.append(_curve_badge("deletion", self.deletion, self.deletion_random, self.deletion_ok))
        elif self.insertion is not None:
            parts.append(_curve_badge("insertion", self.insertion, self.insertion_random, self.insertion_ok))
        r = self.randomization
        if r is not None:
            parts.append("sanity n/a" if not r.applicable else
                         f"sanity FAILED (ρ={_fmt(r.final_rho)})" if r.flagged else "sanity ok")
        s = self.stability
        if s is not None:
            rho = _fmt(s.mean_rho)
            parts.append("deterministic" if s.zero_spread and not s.stochastic else
                         f"stable ρ̄={rho}" if s.mean_rho >= 0.8 else f"unstable ρ̄={rho}")
        parts += [self.separation.badge()] if self.separation is not None else []
        return " ".join(parts) or "no metrics"

    def __repr__(self) -> str:
        return f"<Quality {self.method}: {self.badge()}>"

    def _rows(self) -> list[tuple]:
        rows = []
        for name, cur, ref, ok in (("deletion AUC ↓", self.deletion, self.deletion_random, self.deletion_ok),
                                   ("insertion AUC ↑", self.insertion, self.insertion_random, self.insertion_ok)):
            if cur is not None:
                rows.append((name, _fmt(cur.auc), f"random {_fmt(ref.auc)}" if ref else "",
                             "" if ok is None else "✓" if ok else "✗"))
        if self.faithfulness is not None:
            rows.append(("faithfulness correlation ↑", _fmt(self.faithfulness), "", ""))
        r = self.randomization
        if r is not None:
            rows.append(("randomization ρ (all layers)", _fmt(r.final_rho) if r.applicable else "n/a",
                         f"flag if ρ > {r.threshold:.2f}" if r.applicable else r.reason,
                         "" if not r.applicable else "✗" if r.flagged else "✓"))
        s = self.stability
        if s is not None:
            rows.append(("stability ρ̄ over seeds", _fmt(s.mean_rho), f"{s.runs} runs, max std {_fmt(s.spread, 3)}",
                         "✓" if s.mean_rho >= 0.8 else "✗"))
        rows += [self.separation.row()] if self.separation is not None else []
        return rows

    def _repr_html_(self) -> str:
        from jinja2 import Environment
        from markupsafe import Markup

        from explainkit.visible import visible
        env = Environment(autoescape=True, finalize=lambda v: v if isinstance(v, Markup) else visible(v))
        return env.from_string(_HTML).render(q=self, rows=self._rows())

    def to_dict(self) -> dict:
        """JSON-compatible dict (curves as lists)."""
        d = {"method": self.method, "n_units": self.n_units, "target": self.target, "badge": self.badge(),
             "faithfulness": None if self.faithfulness is None or not np.isfinite(self.faithfulness)
             else float(self.faithfulness), "timings": dict(self.timings), "notes": list(self.notes)}
        for k in ("deletion", "deletion_random", "insertion", "insertion_random", "randomization", "stability",
                  "separation"):
            v = getattr(self, k)
            d[k] = None if v is None else v.to_dict()
        return d


def _metrics(metrics) -> tuple:
    if isinstance(metrics, (str, Metric)):
        metrics = (metrics,)
    return tuple(Metric.parse(m) for m in metrics)


def _check_ints(**kw) -> None:
    for k, v in kw.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ParameterError(f"{k} must be a positive integer; got {v!r}.", f"pass {k}=<int ≥ 1>.")


def _qualities(model, samples, exps, metrics, *, steps, n_random, n_subsets, randomization_steps,
               stability_runs, seed, fill, registry) -> list[Quality]:
    """The shared engine of assess() and evaluate(): every metric batched over the samples."""
    metrics = _metrics(metrics)
    _check_ints(steps=steps, n_subsets=n_subsets, randomization_steps=randomization_steps,
                stability_runs=stability_runs)
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 0:
        raise ParameterError(f"n_random must be an integer ≥ 0; got {n_random!r}.", "pass n_random=3.")
    fills = [fill_for(e, model, s, fill) for e, s in zip(exps, samples)]
    qs = [Quality(method=e.method or "?", n_units=int(np.asarray(e.scores).size), target=e.target,
                  separation=separation(e)) for e in exps]
    curves = {Metric.DELETION, Metric.INSERTION} & set(metrics)
    if curves:
        t0 = time.perf_counter()
        res = perturbation_curves(model, samples, exps, steps=steps, n_random=n_random, seed=seed, fills=fills,
                                  insertion=Metric.INSERTION in curves)
        for q, r in zip(qs, res):
            if Metric.DELETION in curves:
                q.deletion, q.deletion_random = r["deletion"], r.get("deletion_random")
            if Metric.INSERTION in curves:
                q.insertion, q.insertion_random = r["insertion"], r.get("insertion_random")
            if r["note"]:
                q.notes.append(r["note"])
            q.timings["curves_s"] = (time.perf_counter() - t0) / len(qs)
    if Metric.FAITHFULNESS in metrics:
        t0 = time.perf_counter()
        for q, v in zip(qs, faithfulness_correlation(model, samples, exps, n_subsets=n_subsets, seed=seed,
                                                     fills=fills)):
            q.faithfulness = v
            q.timings["faithfulness_s"] = (time.perf_counter() - t0) / len(qs)
    if Metric.RANDOMIZATION in metrics:
        t0 = time.perf_counter()
        for q, v in zip(qs, randomization_check(model, samples, exps, max_steps=randomization_steps,
                                                seed=seed, registry=registry)):
            q.randomization = v
            q.timings["randomization_s"] = (time.perf_counter() - t0) / len(qs)
    if Metric.STABILITY in metrics:
        t0 = time.perf_counter()
        try:
            stab = stability(model, samples, exps, runs=stability_runs, registry=registry)
        except (UnknownNameError, NotApplicableError) as e:      # an explainer that cannot be re-run
            stab = [None] * len(qs)
            for q in qs:
                q.notes.append(f"stability not computed: {e.problem}")
        for q, v in zip(qs, stab):
            q.stability = v
            q.timings["stability_s"] = (time.perf_counter() - t0) / len(qs)
    return qs


def assess(exp, model, *, metrics=DEFAULT_METRICS, steps: int = 50, n_random: int = 3, n_subsets: int = 50,
           randomization_steps: int = 2, stability_runs: int = 3, seed: int = 0, fill=None, sample=None,
           registry=None) -> Quality:
    """Trust metrics for one explanation (cheap defaults: a badge in well under a second for small models).

    ``metrics``: any of deletion, insertion, faithfulness, randomization, stability. ``steps``: curve
    points (units removed per step = ceil(units/steps)). ``n_random``: random orders averaged for the
    reference curve. ``fill``: replacement value (default: the explainer's baseline, else the model's).
    ``sample``: the explained Sample, if the explanation cannot rebuild it.
    """
    from explainkit.plugins.explanation import Explanation

    if not isinstance(exp, Explanation):
        raise InputError(f"assess() takes an Explanation; got {type(exp).__name__}.",
                         "pass one explanation (e.g. explainkit.explain(model, x)), or use evaluate() for data.")
    if exp.modality is not model.modality:
        raise InputError(f"The explanation is of a {exp.modality.value} input but the model takes "
                         f"{model.modality.value} inputs.", "assess an explanation with the model that produced it.")
    t0 = time.perf_counter()
    sample = model.prepare(sample) if sample is not None else sample_of(exp, model)
    if int(np.asarray(exp.scores).size) != sample.n_units:
        raise InputError(f"The explanation has {np.asarray(exp.scores).size} scores but the sample has "
                         f"{sample.n_units} units.", "assess an explanation with the model that produced it.")
    q = _qualities(model, [sample], [exp], metrics, steps=steps, n_random=n_random, n_subsets=n_subsets,
                   randomization_steps=randomization_steps, stability_runs=stability_runs, seed=seed,
                   fill=fill, registry=registry)[0]
    q.timings["total_s"] = time.perf_counter() - t0
    return q


# -- dataset level ----------------------------------------------------------------------------------------
_COLUMNS = ("deletion_auc", "deletion_random_auc", "insertion_auc", "insertion_random_auc", "faithfulness",
            "randomization_rho", "stability_rho")


@dataclass(repr=False, eq=False)
class Evaluation:
    """Dataset-level trust metrics: one Quality per (method, sample), summarised per method."""

    model_name: str
    n_samples: int
    qualities: dict           # method -> list[Quality]
    seed: int = 0
    timings: dict = field(default_factory=dict)

    @staticmethod
    def _row(q: Quality) -> dict:
        r = q.randomization
        return {"deletion_auc": q.deletion.auc if q.deletion else None,
                "deletion_random_auc": q.deletion_random.auc if q.deletion_random else None,
                "insertion_auc": q.insertion.auc if q.insertion else None,
                "insertion_random_auc": q.insertion_random.auc if q.insertion_random else None,
                "faithfulness": q.faithfulness,
                "randomization_rho": r.final_rho if r is not None and r.applicable else None,
                "randomization_flagged": r.flagged if r is not None and r.applicable else None,
                "stability_rho": q.stability.mean_rho if q.stability else None}

    def summary(self) -> dict:
        """Per method: mean of each metric over samples, and the share of samples passing."""
        out = {}
        for m, qs in self.qualities.items():
            rows = [self._row(q) for q in qs]
            d = {"n": len(qs)}
            for c in _COLUMNS:
                vals = np.array([r[c] for r in rows if r[c] is not None], float)
                vals = vals[np.isfinite(vals)]
                d[c] = float(vals.mean()) if vals.size else None
            beats = [q.deletion_ok for q in qs if q.deletion_ok is not None]
            d["deletion_beats_random"] = float(np.mean(beats)) if beats else None
            flags = [r["randomization_flagged"] for r in rows if r["randomization_flagged"] is not None]
            d["randomization_flagged"] = float(np.mean(flags)) if flags else None
            out[m] = d
        return out

    def to_dataframe(self, per_sample: bool = False):
        """pandas table: one row per method (means), or per (method, sample) with per_sample=True."""
        import pandas as pd

        if per_sample:
            rows = [{"method": m, "sample": i, **self._row(q)} for m, qs in self.qualities.items()
                    for i, q in enumerate(qs)]
            return pd.DataFrame(rows)
        return pd.DataFrame.from_dict(self.summary(), orient="index").rename_axis("method")

    def to_dict(self) -> dict:
        return {"model": self.model_name, "n_samples": self.n_samples, "seed": self.seed,
                "timings": self.timings, "summary": self.summary(),
                "samples": {m: [q.to_dict() for q in qs] for m, qs in self.qualities.items()}}

    def table(self) -> str:
        """Plain-text summary table (the CLI's output)."""
        cols = ("n", "deletion_auc", "deletion_random_auc", "deletion_beats_random", "insertion_auc",
                "insertion_random_auc", "faithfulness", "randomization_rho", "randomization_flagged",
                "stability_rho")
        cells = [["method", *cols]]
        for m, d in self.summary().items():
            cells.append([m] + [str(d[c]) if c == "n" else _fmt(d[c]) for c in cols])
        widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
        return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells)

    def __repr__(self) -> str:
        return f"<Evaluation {self.model_name!r} n={self.n_samples} methods={','.join(self.qualities)}>"

    def _repr_html_(self) -> str:
        return self.to_dataframe()._repr_html_()


def _samples_from(model, data, limit):
    if hasattr(data, "samples") and hasattr(data, "raws"):
        n = len(data) if limit is None else min(int(limit), len(data))
        return [data.samples(model)[i] for i in range(n)]
    items = list(data)[: limit]
    return [model.prepare(x, index=i) for i, x in enumerate(items)]


def evaluate(model, data, methods=("integrated_gradients",), *, limit: int | None = 20, seed: int = 0,
             metrics=DEFAULT_METRICS, steps: int = 50, n_random: int = 1, n_subsets: int = 50,
             randomization_steps: int = 3, stability_runs: int = 3, registry=None, params: dict | None = None,
             **method_params) -> Evaluation:
    """Trust metrics over a data set, batched across samples, for each method.

    ``data``: a Dataset (first ``limit`` items) or a list of inputs. ``method_params``: parameters
    passed to every method (e.g. n_steps=32), so they must be valid for each; ``params``: per method,
    ``{name: {key: value}}``. A method that raises fails only its own samples (retried one by one): the
    evaluation completes, and ``ev.failures`` = {method: {sample position: reason}}.
    """
    from explainkit.plugins.registry import registry as default_registry

    if isinstance(methods, str):
        methods = [methods]
    if not methods:
        raise ParameterError("No methods to evaluate.", "pass methods=['integrated_gradients', ...].")
    if set(params or {}) - set(methods):
        raise ParameterError(f"params names method(s) {sorted(set(params) - set(methods))} that are not evaluated.",
                             f"use only: {', '.join(methods)}.")
    if limit is not None:
        _check_ints(limit=limit)
    samples = _samples_from(model, data, limit)
    if not samples:
        raise InputError("The data set is empty.", "pass at least one input.")
    reg = registry or default_registry()
    for m in methods:                    # unknown names and bad parameters: one clear error, before any work
        entry = reg.entries.get(m)
        (entry if entry is not None and entry.spec is not None else reg.get(m, model)).spec.validate_params(
            {**method_params, **(params or {}).get(m, {})})
    out, timings, failures = {}, {}, {}
    for m in methods:
        kw = {**method_params, **(params or {}).get(m, {})}
        t0, spent = time.perf_counter(), {"explain_s": 0.0}

        def quals(part, m=m, kw=kw, spent=spent):
            from explainkit.plugins.runner import run_explainer
            t = time.perf_counter()
            exps = run_explainer(m, model, part, None, seed=seed, reg=registry, **kw)
            spent["explain_s"] += time.perf_counter() - t
            return _qualities(model, part, list(exps), metrics, steps=steps, n_random=n_random, n_subsets=n_subsets,
                              randomization_steps=randomization_steps, stability_runs=stability_runs, seed=seed,
                              fill=None, registry=registry)
        try:
            out[m] = quals(samples)
        except Exception:  # noqa: BLE001 - a failing method fails only its own samples: retry one by one
            reg.succeeded(m)
            out[m] = []
            for pos, s in enumerate(samples):
                try:
                    out[m].extend(quals([s]))
                except Exception as e:  # noqa: BLE001
                    text = e.problem if hasattr(e, "problem") else f"{type(e).__name__}: {e}"
                    failures.setdefault(m, {})[str(pos)] = " ".join(str(text).split())[:500]
        timings[m] = {"explain_s": spent["explain_s"], "metrics_s": time.perf_counter() - t0 - spent["explain_s"]}
    ev = Evaluation(model.name, len(samples), out, seed=seed, timings=timings)
    ev.failures = failures                # {method: {str(sample position): reason}}
    return ev


# -- agreement between methods ----------------------------------------------------------------------------
@dataclass(repr=False, eq=False)
class Agreement:
    """Pairwise agreement of methods on one sample: Spearman rank and top-k overlap (Krishna et al. 2022)."""

    labels: list
    matrix: np.ndarray           # Spearman rank correlation of the signed scores
    top_k: np.ndarray            # share of the k most important units (by |score|) in common
    k: int

    def __array__(self, dtype=None, copy=None):
        return self.matrix if dtype is None else self.matrix.astype(dtype)

    def __repr__(self) -> str:
        off = self.matrix[~np.eye(len(self.labels), dtype=bool)]
        return f"<Agreement {len(self.labels)} methods mean ρ={_fmt(off.mean() if off.size else None)}>"

    def to_dataframe(self):
        import pandas as pd
        return pd.DataFrame(self.matrix, index=self.labels, columns=self.labels)

    def _repr_html_(self) -> str:
        return self.to_dataframe().round(2)._repr_html_()

    def to_dict(self) -> dict:
        return {"labels": self.labels, "spearman": self.matrix.tolist(), "top_k": self.top_k.tolist(), "k": self.k}


def _same_input(a, b) -> bool:
    if np.shape(a.scores) != np.shape(b.scores) or a.text != b.text:
        return False
    for k in ("image", "feature_values"):
        x, y = getattr(a, k), getattr(b, k)
        if (x is None) != (y is None) or x is not None and not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return True


def agreement(explanations: Sequence, k: int | None = None) -> Agreement:
    """Rank correlation between methods explaining the same sample: the matrix, plus top-k overlap."""
    exps = list(explanations)
    if len(exps) < 2:
        raise InputError(f"Agreement needs at least two explanations; got {len(exps)}.",
                         "pass explanations of one sample from two or more methods.")
    if not all(_same_input(exps[0], e) for e in exps[1:]):
        raise InputError("The explanations are not of the same sample (their shapes, indices or texts differ).",
                         "pass explanations of one sample, e.g. [explain(model, x, m) for m in methods].")
    n = len(exps)
    units = int(np.asarray(exps[0].scores).size)
    k = max(1, min(units, int(k) if k is not None else max(1, units // 10)))
    labels, seen = [], {}
    for e in exps:
        name = e.method or "?"
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    mat, top = np.eye(n), np.eye(n)
    tops = [set(np.argsort(-np.abs(np.asarray(e.scores, float).reshape(-1)), kind="stable")[:k]) for e in exps]
    for i in range(n):
        for j in range(i + 1, n):
            mat[i, j] = mat[j, i] = rank_corr(exps[i].scores, exps[j].scores)
            top[i, j] = top[j, i] = len(tops[i] & tops[j]) / k
    return Agreement(labels, mat, top, k)
