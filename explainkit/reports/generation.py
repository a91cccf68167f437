"""A report on a language model's answers: one section per prompt.

``explainkit.report(lm, prompts=[...], methods=["feature_ablation", "integrated_gradients"], out="r.html")``
explains each prompt's answer with each method and writes, together (staged, then renamed):

- ``r.html``: self-contained; per prompt the answer, per method the heat map (answer tokens x prompt
  units, :mod:`explainkit.views.generation`), the top units and the trust badge (deletion/insertion AUC
  of the answer's log-probability against random orders), and the methods' agreement on that answer;
- ``r.npz``: the attributions (numbers only, no pickles; the layout is documented in the index);
- ``r.json``: the index (model, methods, prompts, answers, top units, trust, agreement, files, timings);
- ``r.explanations.json``: every explanation's ``to_dict()`` (``Report.explanations`` reads it back).
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from explainkit.errors import InputError, ParameterError
from explainkit.reports.result import TEMPLATES, Report

__all__ = ["generation_report", "GenerationReport", "check_prompts"]

TOP_UNITS = 5
FORMAT = "explainkit-generation-report/1"


def check_prompts(prompts) -> list[str]:
    """The prompts as a list of non-empty strings; else one InputError naming the bad one and the fix."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if prompts is None or not isinstance(prompts, (list, tuple)):
        raise InputError(f"prompts must be a list of strings; got {type(prompts).__name__}.",
                         "pass prompts=['What is the capital of France?', ...].")
    if not prompts:
        raise InputError("The prompt list is empty.", "pass at least one prompt (one per line in --prompts FILE).")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise InputError(f"Prompt #{i + 1} is a {type(p).__name__}, not a string.", "pass prompts as strings.")
        if not p.strip():
            raise InputError(f"Prompt #{i + 1} is empty.", "remove it, or write the question to explain.")
    return list(prompts)


class GenerationReport(Report):
    """A written generation report: paths, the attributions per method, the explanations read back."""

    @property
    def explanations_path(self) -> Path:
        return self.path.parent / self.index["files"]["explanations"]

    def attributions(self, method: str) -> list[np.ndarray]:
        """The whole-answer scores of one method, one array of units per prompt."""
        return self._split(method, "scores")

    def matrices(self, method: str) -> list[np.ndarray]:
        """The [answer tokens x units] matrices of one method, one per prompt."""
        with np.load(self.npz_path, allow_pickle=False) as z:
            shapes = z[f"{self._name(method, z)}.shape"]
        flat = self._split(method, "matrix")
        return [m.reshape(tuple(s)) for m, s in zip(flat, shapes)]

    def explanations(self, method: str):
        """The explanations of one method, one per prompt (rebuilt from ``*.explanations.json``)."""
        from explainkit.plugins.explanation import Explanation
        data = json.loads(self.explanations_path.read_text(encoding="utf-8"))
        if method not in data:
            raise ParameterError(f"No method {method!r} in this report.", f"use one of: {', '.join(data)}.")
        for d in data[method]:
            yield Explanation.from_dict(d)

    def _name(self, method, z) -> str:
        if f"{method}.scores" not in z.files:
            raise ParameterError(f"No method {method!r} in this report.",
                                 f"use one of: {', '.join(m['name'] for m in self.index['methods'])}.")
        return method

    def _split(self, method, what) -> list[np.ndarray]:
        with np.load(self.npz_path, allow_pickle=False) as z:
            name = self._name(method, z)
            flat, off = z[f"{name}.{what}"], z[f"{name}.{what}_offsets"]
        return [flat[a:b] for a, b in zip(off[:-1], off[1:])]

    def __repr__(self) -> str:
        names = ",".join(m["name"] for m in self.index["methods"])
        return (f"<GenerationReport {self.path.name!r} model={self.index['model']['name']!r} "
                f"prompts={self.index['counts']['prompts']} methods={names}>")

    def _repr_html_(self) -> str:
        from explainkit.views import render
        return render.template("report_generation_notebook.html", search=[TEMPLATES]).render(
            **self._summary, path=str(self.path))


def _method_view(exp, quality, badge):
    from markupsafe import Markup

    from explainkit.views import generation as gen_view
    return {"method": exp.method, "html": Markup(gen_view.to_html(exp)), "badge": badge, "quality": quality,
            "top": [{"unit": u.strip() or "·", "score": f"{v:+.4g}"} for u, v in exp.top_k(TOP_UNITS)],
            "logprob": None if exp.answer_logprob is None else f"{exp.answer_logprob:.3f}"}


def _agreement_view(exps):
    if len(exps) < 2:
        return None
    from explainkit.trust.generation import agreement
    a = agreement(exps)
    return {"labels": a.labels, "k": a.k,
            "rows": [{"method": lab, "rho": [f"{v:+.2f}" for v in a.matrix[i]],
                      "top": [f"{v:.2f}" for v in a.top_k[i]]} for i, lab in enumerate(a.labels)],
            "spearman": a.matrix.tolist(), "top_k": a.top_k.tolist()}


def _npz_bytes(runs, per_prompt) -> bytes:
    arrays = {}
    for m, run in enumerate(runs):
        exps = [row[m] for row in per_prompt]
        for what, get in (("scores", lambda e: e.scores), ("matrix", lambda e: e.matrix.reshape(-1)),
                          ("token_logprobs", lambda e: e.token_logprobs)):
            parts = [np.asarray(get(e), dtype=np.float64) for e in exps]
            arrays[f"{run.name}.{what}"] = np.concatenate(parts) if parts else np.zeros(0)
            arrays[f"{run.name}.{what}_offsets"] = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
        arrays[f"{run.name}.shape"] = np.asarray([e.matrix.shape for e in exps], dtype=np.int64).reshape(-1, 2)
        arrays[f"{run.name}.answer_logprob"] = np.asarray([e.answer_logprob for e in exps], dtype=np.float64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


_ARRAY_DOC = {"<method>.scores": "flat whole-answer scores per unit; prompt i is "
                                 "[scores_offsets[i]:scores_offsets[i+1]]",
              "<method>.matrix": "flat [answer tokens x units] matrices (row-major); prompt i is "
                                 "[matrix_offsets[i]:matrix_offsets[i+1]] reshaped to shape[i]",
              "<method>.token_logprobs": "flat log-probability of each answer token (token_logprobs_offsets)",
              "<method>.shape": "[n_prompts, 2] (answer tokens, units)",
              "<method>.answer_logprob": "[n_prompts] the whole answer's log-probability"}


def generation_report(model, prompts, runs, *, out: Path, target=None, units="words", max_new_tokens: int = 16,
                      contrast=None, quality: bool = True, n_random: int = 8, progress: bool = True,
                      on_progress=None, registry=None) -> GenerationReport:
    """``runs``: resolved ``MethodRun``s (``reports.report._methods``); ``out``: checked, and locked by the caller."""
    from tqdm.auto import tqdm

    from explainkit.atomic import Staging
    from explainkit.plugins.runner import run_explainer
    from explainkit.reports.result import environment
    from explainkit.trust.generation import assess
    from explainkit.views import render

    t_start = time.perf_counter()
    prompts = check_prompts(prompts)
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise ParameterError(f"n_random must be a positive integer; got {n_random!r}.", "pass n_random=8.")
    gen = {"units": units, "max_new_tokens": max_new_tokens, "contrast": contrast}
    total = len(prompts) * len(runs)
    bar = tqdm(total=total, unit="expl", desc="explaining", disable=not progress, leave=False)
    timings = {"explain_s": 0.0, "quality_s": 0.0}
    per_prompt, qualities = [], []
    try:
        for p_i, prompt in enumerate(prompts):
            exps, qs = [], []
            for run in runs:
                t = time.perf_counter()
                e = run_explainer(run.name, model, [prompt], target, seed=run.seed, reg=registry,
                                  **gen, **run.params)[0]
                timings["explain_s"] += time.perf_counter() - t
                t = time.perf_counter()
                qs.append(assess(e, model, n_random=n_random, seed=run.seed) if quality else None)
                timings["quality_s"] += time.perf_counter() - t
                exps.append(e)
                bar.update(1)
                if on_progress is not None:
                    on_progress({"done": p_i * len(runs) + len(exps), "total": total, "prompt": p_i,
                                 "method": run.name})
            per_prompt.append(exps)
            qualities.append(qs)
    finally:
        bar.close()
    t = time.perf_counter()
    sections = []
    for p_i, (prompt, exps, qs) in enumerate(zip(prompts, per_prompt, qualities)):
        agree = _agreement_view(exps)
        sections.append({"pos": p_i, "prompt": prompt, "answer": exps[0].answer_text, "mode": exps[0].target_mode,
                         "units": len(exps[0].unit_texts), "tokens": len(exps[0].answer_tokens),
                         "views": [_method_view(e, q, q.badge() if q is not None else None) for e, q in zip(exps, qs)],
                         "agreement": agree})
    npz_path, json_path = out.with_suffix(".npz"), out.with_suffix(".json")
    exp_path = out.with_suffix(".explanations.json")
    methods = [{"name": r.name, "title": r.title, "params": r.params, "seed": r.seed, "plugin": r.plugin,
                "plugin_version": r.plugin_version, "stochastic": r.stochastic} for r in runs]
    card = model.card()
    files = {"html": out.name, "attributions": npz_path.name, "index": json_path.name, "explanations": exp_path.name}
    summary = {"title": f"explainkit report: {model.name}", "card": card, "methods": methods,
               "generation": {k: (v if v is None or isinstance(v, (int, str)) else str(v)) for k, v in gen.items()},
               "target": target, "quality": bool(quality), "n_random": n_random, "n_prompts": len(prompts),
               "versions": environment(), "timings": timings, "files": files}
    with Staging() as staged:
        staged.write(npz_path, _npz_bytes(runs, per_prompt))
        staged.write(exp_path, json.dumps({r.name: [row[m].to_dict() for row in per_prompt]
                                           for m, r in enumerate(runs)}))
        with staged.open(out, "w", encoding="utf-8") as f:
            render.template("report_generation.html", search=[TEMPLATES]).stream(**summary, sections=sections).dump(f)
        timings["html_s"] = time.perf_counter() - t
        timings["total_s"] = time.perf_counter() - t_start
        index = {"format": FORMAT, "model": card, "methods": methods, "files": files, "versions": summary["versions"],
                 "generation": summary["generation"], "target": target, "timings": timings,
                 "counts": {"prompts": len(prompts), "explanations": total},
                 "arrays": _ARRAY_DOC,
                 "prompts": [{"prompt": s["prompt"], "answer": s["answer"], "mode": s["mode"],
                              "methods": {v["method"]: {"top": v["top"], "answer_logprob": v["logprob"],
                                                        "quality": None if q is None else q.to_dict()}
                                          for v, q in zip(s["views"], qs)},
                              "agreement": None if s["agreement"] is None else
                              {k: s["agreement"][k] for k in ("labels", "spearman", "top_k", "k")}}
                             for s, qs in zip(sections, qualities)]}
        staged.write(json_path, json.dumps(index, indent=1, default=str))
        staged.publish()
    return GenerationReport(out, index, {**summary, "sections_n": len(sections)})
