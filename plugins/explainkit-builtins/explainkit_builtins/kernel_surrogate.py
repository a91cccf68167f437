"""The control variate of explainkit's Kernel SHAP: a cheap surrogate game whose Shapley values are exact.

Paired Kernel SHAP is exact for every game of degree <= 2 in the coalition (a pair ``z, 1 - z`` cancels the
even part, and the regression fits the linear one), so its error comes from the *odd* part of degree >= 3.
The surrogate models that part, in the sign coordinates ``s = 2z - 1``, with two kinds of terms:

- **single-index powers** ``u^3, u^5, u^7`` with ``u = sum_i d_i s_i`` along the linear fit's direction ``d``
  (a saturating output such as a probability is close to ``h(u)``); their exact Shapley values come from
  :func:`power_shapley`;
- **third-order interactions** ``s_i s_j s_k`` among the leading units (an interaction concentrated on a
  few features); each gives ``2 c / 3`` to each of its three units.

The terms are screened against the pairs' odd parts ``(v(z) - v(1 - z)) / 2`` (largest weighted
correlation with the residual of the linear fit, one term per ``TERMS_PER`` sampled pairs) and fitted by
weighted least squares with the estimator's own weights. The estimator then regresses only the residual
game ``v - g`` (the regression-adjusted estimator of Covert & Lee 2021, with the surrogate as control
variate) and adds ``g``'s exact values back; each pair's residual is scaled by ``(1 - leverage)^-1/2``
(HC2) in the standard errors, for the surrogate was fitted on the same pairs.
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["POWERS", "Surrogate", "fit", "power_shapley", "spd_inverse"]

POWERS = (3, 5, 7)     # odd powers of the single index
TOP_UNITS = 12         # interactions are sought among the triples of this many leading units
TERMS_PER = 8          # sampled pairs per surrogate term
MAX_TERMS = 64
ROWS = 32_768          # pairs per chunk of the fit
TIE_DIGITS = 9         # screening scores equal to this many digits are ties
PIVOT = 1e-6           # Cholesky pivots under this fraction of the largest: rank-deficient, the pseudo-inverse


@dataclass
class Surrogate:
    """An odd surrogate ``g`` (``g(1 - z) = -g(z)``) on the fitted pairs, and what the estimator needs of it."""

    values: np.ndarray        # g(z) for each fitted pair's first coalition
    shapley: np.ndarray       # its exact Shapley values [M]
    full: float               # g(all present) = -g(all absent)
    scale: np.ndarray         # (1 - leverage)^-1/2 of each pair
    terms: int


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive semi-definite matrix: by Cholesky when it is well conditioned (40x
    cheaper than ``pinv``'s eigendecomposition, whose LAPACK threads crawl on small matrices), else ``pinv``."""
    try:
        low = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a, hermitian=True)
    d = np.abs(np.diagonal(low))
    if not d.size or d.min() <= PIVOT * d.max():
        return np.linalg.pinv(a, hermitian=True)
    inv = np.linalg.inv(low)
    return inv.T @ inv


def power_shapley(b: np.ndarray, degrees) -> np.ndarray:
    """Exact Shapley values ``[len(degrees), M]`` of the games ``u(z)^d``, ``u = sum_j b_j (2 z_j - 1)``.

    ``u`` on coalition ``S`` is ``2 b_S - B`` (``B = sum b``), so unit ``i``'s value needs the power sums
    ``sum_{|S|=k, i not in S} b_S^p``: one pass over the units builds them for every ``i``, ``k`` and ``p``
    (``E[c+1, p] += sum_q C(p, q) b_j^(p-q) E[c, q]``), and the binomial expansion finishes it."""
    b = np.asarray(b, dtype=np.float64)
    m, top = len(b), max(degrees)
    binom = np.array([[math.comb(p, q) for q in range(top + 1)] for p in range(top + 1)], dtype=np.float64)
    pw = np.arange(top + 1)
    lower = pw[:, None] >= pw[None, :]
    half = (m - 1) // 2                          # subsets up to this size; the larger ones are complements
    e = np.zeros((m, half + 1, top + 1))          # [i, count, p]: sums over subsets of the units other than i
    e[:, 0, 0] = 1.0
    shift = np.clip(pw[:, None] - pw[None, :], 0, None)
    steps = binom * np.power(b[:, None, None], shift) * lower
    for j in range(m):                            # one (M * half, P) x (P, P) product per unit
        grow = (e[:, :-1].reshape(m * half, top + 1) @ steps[j].T).reshape(m, half, top + 1)
        grow[j] = 0.0                             # unit j is never in i = j's subsets
        e[:, 1:] += grow
    # a k-subset S of the M - 1 others is the complement of an (M-1-k)-subset T: b_S = B_i - b_T, B_i = B - b_i
    flip = binom * np.power((b.sum() - b)[:, None, None], shift) * lower * (-1.0) ** pw
    big = np.arange(half + 1, m)
    e = np.concatenate([e, np.einsum("ipq,ikq->ikp", flip, e[:, m - 1 - big])], axis=1)
    counts = np.array([math.comb(m - 1, k) for k in range(m)], dtype=np.float64)
    mean = (e / counts[None, :, None]).mean(axis=1)   # [i, p]: averaged over k-subsets, then over k
    total = b.sum()
    rest = np.arange(top + 1)                    # (2 b_S + a)^d with a = 2 b_i - B (i joins) or -B
    gap = (2 * b[:, None] - total) ** rest - (-total) ** rest        # [i, d - p]
    out = np.zeros((len(degrees), m))
    for r, d in enumerate(degrees):
        p = np.arange(d + 1)
        coef = np.array([math.comb(d, int(k)) for k in p]) * 2.0 ** p
        out[r] = (gap[:, d - p] * mean[:, p]) @ coef
    return out


def _triples(order) -> np.ndarray:
    return _combinations(tuple(int(i) for i in np.sort(np.asarray(order)[:TOP_UNITS])))


@functools.lru_cache(maxsize=256)
def _combinations(top: tuple) -> np.ndarray:
    out = np.array(list(itertools.combinations(top, 3)), dtype=np.int64).reshape(-1, 3)
    out.flags.writeable = False
    return out


def _chunks(n: int):
    return [slice(i, min(i + ROWS, n)) for i in range(0, n, ROWS)]


def fit(z: np.ndarray, odd: np.ndarray, weight: np.ndarray, sampled: int) -> Surrogate | None:
    """Fit the surrogate to the pairs ``z [P, M]`` (bool), their odd parts and weights; None when the
    ``sampled`` pairs (those of strata not enumerated) are too few for one term. Rows go ``ROWS`` at a time
    (normal equations), so memory stays bounded for millions of pairs."""
    n_terms = min(sampled // TERMS_PER, MAX_TERMS)
    p, m = z.shape
    if n_terms < 1 or p <= m + n_terms:
        return None
    wt = np.sqrt(weight)
    target = odd * wt
    parts = _chunks(p)

    keep = len(parts) == 1                          # one chunk: its columns are made once
    memo: dict = {}

    def sign(c):                                    # weighted sign columns of a chunk
        if keep and "sign" in memo:
            return memo["sign"]
        out = (2.0 * z[c] - 1.0) * wt[c, None]
        memo["sign"] = out
        return out

    lin = spd_inverse(sum(sign(c).T @ sign(c) for c in parts)) @ sum(
        sign(c).T @ target[c] for c in parts)
    direction = lin / max(float(np.abs(lin).sum()), 1e-300)          # |u| <= 1 on every coalition
    triples = _triples(np.argsort(-np.abs(lin), kind="stable"))

    def candidates(c, cols=None):                   # unweighted candidate columns of a chunk (or some of them)
        if keep and "cand" in memo:
            return memo["cand"] if cols is None else memo["cand"][:, cols]
        zc = z[c]
        u = (2.0 * zc - 1.0) @ direction
        cols = np.arange(len(POWERS) + len(triples)) if cols is None else cols
        tri = triples[cols[cols >= len(POWERS)] - len(POWERS)]
        out = np.empty((len(cols), len(u)))          # built column by column: [P, terms] in Fortran order
        npow = int((cols < len(POWERS)).sum())
        for j, i in enumerate(cols[:npow]):
            out[j] = u ** POWERS[i]
        # s_i s_j s_k = +1 exactly when an odd number of the three units is present (XOR on the booleans)
        zt = np.ascontiguousarray(zc.T)
        np.multiply(zt[tri[:, 0]] ^ zt[tri[:, 1]] ^ zt[tri[:, 2]], 2.0, out=out[npow:])
        out[npow:] -= 1.0
        out = out.T
        if keep:                                    # only the full set is ever made for a single chunk
            memo["cand"] = out
        return out

    corr, norm = 0.0, np.zeros(len(POWERS) + len(triples))
    for c in parts:                                # screening: correlation with the linear fit's residual
        cand = candidates(c)
        corr = corr + cand.T @ (wt[c] * (target[c] - sign(c) @ lin))
        norm[:len(POWERS)] += weight[c] @ cand[:, :len(POWERS)] ** 2
    norm[len(POWERS):] = weight.sum()              # the interactions are +-1
    score = corr ** 2 / np.maximum(norm, 1e-300)
    # ties (columns equal on these pairs) go to the first: rounding-level noise must not choose the triple
    score = np.round(score / max(float(score.max()), 1e-300), TIE_DIGITS)
    pick = np.sort(np.argsort(-score, kind="stable")[:n_terms])

    def design(c):
        if keep and "design" in memo:
            return memo["design"]
        out = np.concatenate([sign(c), candidates(c, pick) * wt[c, None]], axis=1)
        memo["design"] = out
        return out

    gram, rhs = 0.0, 0.0
    for c in parts:
        d = design(c)
        gram, rhs = gram + d.T @ d, rhs + d.T @ target[c]
    inv = spd_inverse(gram)
    coef = (inv @ rhs)[m:]
    values, lev = np.empty(p), np.empty(p)
    for c in parts:
        d = design(c)
        lev[c] = ((d @ inv) * d).sum(axis=1)
        values[c] = candidates(c, pick) @ coef
    scale = np.clip(1.0 - lev, 1e-3, 1.0) ** -0.5
    shapley, full = np.zeros(m), 0.0
    powers = pick < len(POWERS)
    if powers.any():
        degrees = [POWERS[i] for i in pick[powers]]
        shapley += coef[powers] @ power_shapley(direction, degrees)
        full += float(coef[powers] @ (direction.sum() ** np.asarray(degrees, dtype=np.float64)))
    inter = triples[pick[~powers] - len(POWERS)]
    np.add.at(shapley, inter.ravel(), np.repeat(2.0 * coef[~powers] / 3.0, 3))
    full += float(coef[~powers].sum())
    return Surrogate(values, shapley, full, scale, len(pick))
