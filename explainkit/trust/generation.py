"""Deletion and insertion curves for a language model's answer.

Deletion: remove the top-1, top-2, ... units (by the explanation's whole-answer scores, most positive
first) and measure the answer's log-probability; a faithful explanation makes it fall fast (a low area).
Insertion: start from the prompt with every unit removed and add them back in the same order; it should
rise fast (a high area). Both are compared with random orders (seeded). Areas are the mean log-probability
over the curve's points (k = 0..U), so the units are nats.

Agreement: the Spearman rank correlation of two methods' whole-answer scores on the same prompt, units
and answer. :func:`evaluate` runs methods on prompts and gathers both (``explainkit evaluate``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explainkit.errors import InputError, ParameterError

__all__ = ["GenerationQuality", "GenerationEvaluation", "assess", "curves", "agreement", "evaluate"]


@dataclass
class GenerationQuality:
    deletion: np.ndarray              # [U+1] answer log-prob after removing the top-k units
    insertion: np.ndarray             # [U+1] after adding back the top-k units to the emptied prompt
    random_deletion: np.ndarray       # [U+1] mean over random orders
    random_insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    random_deletion_auc: float
    random_insertion_auc: float
    n_random: int

    @property
    def deletion_gain(self) -> float:
        """How much faster than random the answer's log-probability falls (nats; > 0 is better)."""
        return self.random_deletion_auc - self.deletion_auc

    @property
    def insertion_gain(self) -> float:
        return self.insertion_auc - self.random_insertion_auc

    def __repr__(self) -> str:
        return (f"<GenerationQuality deletion AUC {self.deletion_auc:.3f} (random {self.random_deletion_auc:.3f}) "
                f"insertion AUC {self.insertion_auc:.3f} (random {self.random_insertion_auc:.3f})>")

    def badge(self) -> str:
        """Plain words: e.g. 'deletion AUC -4.1 vs random -2.3 ✓ · insertion AUC -1.0 vs random -2.2 ✓'."""
        def part(name, auc, rnd, gain):
            return f"{name} AUC {auc:.2f} vs random {rnd:.2f} {'✓ better' if gain > 0 else '✗ not better'}"
        return (part("deletion", self.deletion_auc, self.random_deletion_auc, self.deletion_gain) + " · "
                + part("insertion", self.insertion_auc, self.random_insertion_auc, self.insertion_gain)
                + " than random (nats)")

    def to_dict(self) -> dict:
        d = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return {**d, "deletion_gain": self.deletion_gain, "insertion_gain": self.insertion_gain}


def _keeps(order, u, insertion):
    rows = []
    for k in range(u + 1):
        keep = np.zeros(u, bool) if insertion else np.ones(u, bool)
        keep[list(order[:k])] = insertion
        rows.append(keep)
    return rows


def _curves_many(model, exp, orders) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deletion and insertion curves for several unit orders, scored in one batched pass over the
    distinct masked copies (every order shares the full and the empty prompt)."""
    enc = model.set_units(model.encode(exp.prompt), [tuple(s) for s in exp.unit_spans])
    answer = list(exp.answer_ids) or model.target_ids(exp.answer_text)
    u = enc.n_units
    rows = np.vstack([np.vstack(_keeps(o, u, False) + _keeps(o, u, True)) for o in orders])
    distinct, back = np.unique(rows, axis=0, return_inverse=True)
    lp = model.score_masked(enc, distinct, list(answer)).sum(axis=1)[np.ravel(back)]
    n = 2 * (u + 1)
    return [(lp[i * n:i * n + u + 1], lp[i * n + u + 1:(i + 1) * n]) for i in range(len(orders))]


def curves(model, exp, order) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves of the answer's log-probability for one unit order."""
    return _curves_many(model, exp, [order])[0]


def assess(exp, model, n_random: int = 8, seed: int = 0) -> GenerationQuality:
    """Deletion/insertion curves and their areas for ``exp`` against ``n_random`` random orders."""
    if not getattr(model, "generates", False):
        raise ParameterError("A generation explanation's quality needs the language model it explains.",
                             "pass the CausalLM: exp.quality(lm).")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise ParameterError(f"n_random must be a positive integer; got {n_random!r}.", "pass n_random=8.")
    u = len(exp.scores)
    rng = np.random.default_rng(seed)
    orders = [np.argsort(-exp.scores, kind="stable")] + [rng.permutation(u) for _ in range(n_random)]
    (dele, ins), *rand = _curves_many(model, exp, orders)
    rd, ri = np.mean([d for d, _ in rand], axis=0), np.mean([i for _, i in rand], axis=0)
    return GenerationQuality(dele, ins, rd, ri, float(dele.mean()), float(ins.mean()), float(rd.mean()),
                             float(ri.mean()), n_random)


def agreement(explanations, k: int | None = None):
    """Rank correlation of the whole-answer scores of methods explaining the same answer to the same prompt
    (an :class:`explainkit.trust.quality.Agreement`: Spearman matrix plus top-k overlap)."""
    from explainkit.trust.quality import agreement as _agreement

    exps = list(explanations)
    if len(exps) >= 2:
        first = exps[0]
        for e in exps[1:]:
            if (e.prompt, e.answer_text, e.unit_spans) != (first.prompt, first.answer_text, first.unit_spans):
                raise InputError("The generation explanations differ in prompt, units or answer.",
                                 "compare methods run on one prompt with the same units and max_new_tokens.")
    return _agreement(exps, k=k)


@dataclass
class GenerationEvaluation:
    """Trust metrics of generation explainers over prompts: per method the mean deletion/insertion AUCs
    (and random's), and the mean pairwise agreement between methods."""
    methods: list
    prompts: list
    qualities: dict                   # method -> [GenerationQuality per prompt]
    agreements: list                  # per prompt: Agreement (None with one method)
    answers: list

    def summary(self) -> dict:
        out = {}
        for m, qs in self.qualities.items():
            keys = ("deletion_auc", "random_deletion_auc", "insertion_auc", "random_insertion_auc",
                    "deletion_gain", "insertion_gain")
            out[m] = {k: float(np.mean([getattr(q, k) for q in qs])) for k in keys}
            out[m]["better_than_random"] = int(sum(q.deletion_gain > 0 and q.insertion_gain > 0 for q in qs))
            if len(self.methods) > 1:
                i = self.methods.index(m)
                rhos = [a.matrix[i, j] for a in self.agreements for j in range(len(self.methods)) if j != i]
                out[m]["agreement_rho"] = float(np.mean(rhos))
        return out

    def table(self) -> str:
        head = ["method", "deletion AUC", "random", "insertion AUC", "random", "better than random"]
        if len(self.methods) > 1:
            head.append("mean agreement ρ")
        rows = [head]
        for m, s in self.summary().items():
            row = [m, f"{s['deletion_auc']:.3f}", f"{s['random_deletion_auc']:.3f}", f"{s['insertion_auc']:.3f}",
                   f"{s['random_insertion_auc']:.3f}", f"{s['better_than_random']}/{len(self.prompts)} prompts"]
            rows.append(row + ([f"{s['agreement_rho']:+.3f}"] if "agreement_rho" in s else []))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"methods": self.methods, "prompts": self.prompts, "answers": self.answers,
                "summary": self.summary(),
                "per_prompt": {m: [q.to_dict() for q in qs] for m, qs in self.qualities.items()},
                "agreement": [None if a is None else a.to_dict() for a in self.agreements]}

    def __repr__(self) -> str:
        return f"<GenerationEvaluation {len(self.methods)} methods x {len(self.prompts)} prompts>"


def evaluate(model, prompts, methods=("feature_ablation",), *, seed: int = 0, n_random: int = 8,
             params: dict | None = None, on_step=None, **gen) -> GenerationEvaluation:
    """Explain each prompt with each method (names or aliases; ``params`` per canonical name), assess each
    explanation, and compare the methods per prompt. ``gen``: units=, max_new_tokens=, contrast=."""
    from explainkit.plugins.registry import registry
    from explainkit.plugins.runner import run_explainer

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise InputError("No prompts given.", "pass one prompt or more.")
    reg = registry()
    names = []
    for m in ([methods] if isinstance(methods, str) else list(methods)):
        name = reg.resolve(m, model)
        if name in names:
            raise ParameterError(f"Method {m!r} is listed twice (as {name}).", "list each method once.")
        names.append(name)
    if not names:
        raise ParameterError("No methods given.", "pass methods=['feature_ablation', 'integrated_gradients'].")
    qualities = {n: [] for n in names}
    agreements, answers = [], []
    for p in prompts:
        exps = []
        for n in names:
            e = run_explainer(n, model, [p], None, seed=seed, **{**gen, **(params or {}).get(n, {})})[0]
            qualities[n].append(assess(e, model, n_random=n_random, seed=seed))
            exps.append(e)
            if on_step is not None:
                on_step(n, p)
        answers.append(exps[0].answer_text)
        agreements.append(agreement(exps) if len(exps) > 1 else None)
    return GenerationEvaluation(names, prompts, qualities, agreements, answers)
