"""Deletion and insertion curves for a language model's answer.

Deletion: remove the top-1, top-2, ... units (by the explanation's whole-answer scores, most positive
first) and measure the answer's log-probability; a faithful explanation makes it fall fast (a low area).
Insertion: start from the prompt with every unit removed and add them back in the same order; it should
rise fast (a high area). Both are compared with random orders (seeded). Areas are the mean log-probability
over the curve's points (k = 0..U), so the units are nats.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explainkit.errors import ParameterError

__all__ = ["GenerationQuality", "assess", "curves"]


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

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def _keeps(order, u, insertion):
    rows = []
    for k in range(u + 1):
        keep = np.zeros(u, bool) if insertion else np.ones(u, bool)
        keep[list(order[:k])] = insertion
        rows.append(keep)
    return rows


def curves(model, exp, order) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves of the answer's log-probability for one unit order."""
    enc = model.set_units(model.encode(exp.prompt), [tuple(s) for s in exp.unit_spans])
    answer = list(exp.answer_ids) or model.target_ids(exp.answer_text)
    u = enc.n_units
    rows = _keeps(order, u, False) + _keeps(order, u, True)
    lp = model.score_masked(enc, np.vstack(rows), list(answer)).sum(axis=1)
    return lp[:u + 1], lp[u + 1:]


def assess(exp, model, n_random: int = 8, seed: int = 0) -> GenerationQuality:
    """Deletion/insertion curves and their areas for ``exp`` against ``n_random`` random orders."""
    if not getattr(model, "generates", False):
        raise ParameterError("A generation explanation's quality needs the language model it explains.",
                             "pass the CausalLM: exp.quality(lm).")
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise ParameterError(f"n_random must be a positive integer; got {n_random!r}.", "pass n_random=8.")
    u = len(exp.scores)
    order = np.argsort(-exp.scores, kind="stable")
    dele, ins = curves(model, exp, order)
    rng = np.random.default_rng(seed)
    rd, ri = [], []
    for _ in range(n_random):
        d, i = curves(model, exp, rng.permutation(u))
        rd.append(d)
        ri.append(i)
    rd, ri = np.mean(rd, axis=0), np.mean(ri, axis=0)
    return GenerationQuality(dele, ins, rd, ri, float(dele.mean()), float(ins.mean()), float(rd.mean()),
                             float(ri.mean()), n_random)
