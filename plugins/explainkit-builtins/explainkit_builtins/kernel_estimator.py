"""explainkit's own Kernel SHAP estimator: paired, stratified coalition sampling with standard errors.

The game ``v: {0,1}^M -> R`` is solved by the constrained weighted regression of Kernel SHAP
(``sum(phi) = v(1) - v(0)`` exactly), on a design that is cheap to make precise:

- **Paired sampling** (Covert & Lee, "Improving KernelSHAP", AISTATS 2021): every coalition ``z`` comes
  with its complement ``1 - z``, which cancels the even part of the regression error.
- **Strata by coalition size.** The pairs of sizes ``{k, M-k}`` are strata. Each gets a share of the
  budget (``KERNEL``: its Shapley-kernel mass; ``LEVERAGE``: the same for every size, the leverage-score
  distribution of Musco & Witter 2024); a stratum whose share covers all of its coalitions is enumerated
  (no variance: shap's trick), the others are sampled without replacement and weighted by their mass.
- **Regression adjustment** (the default, ``adjust=True``): paired Kernel SHAP is exact for games of degree
  <= 2, so its error is the odd part of degree >= 3. :mod:`.kernel_surrogate` fits a cheap odd surrogate
  ``g`` to the pairs (single-index powers and third-order interactions, with exact Shapley values); the
  regression then estimates only ``v - g``, and ``g``'s values are added back (a control variate).
- **Standard errors** by linearisation (the sandwich estimator of the constrained least squares):
  ``Cov(phi) ~ C [sum_s mu_s^2 (1 - n_s/N_s) Cov_s(h) / n_s] C`` with ``h`` a pair's moment residual
  ``(z r(z) + z' r(z')) / 2`` and ``C`` the constrained inverse of the design matrix. They are 0 when
  every stratum is enumerated (the values are then the exact Shapley values), scaled by ``P / (P - M + 1)``
  for the fitted parameters (``P`` pairs; with the surrogate, each pair's residual is scaled by its
  ``(1 - leverage)^-1/2`` instead), and infinite when ``P <= M`` (an underdetermined fit).
- **Stopping rule**: with a tolerance, the budget doubles (nested designs: each stratum's sample is a
  prefix of its own random stream, and every coalition is evaluated once) until the largest standard
  error is under it, or the budget cap is reached.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import functools
import itertools
import math
import threading
from dataclasses import dataclass

import numpy as np

from . import kernel_surrogate

__all__ = ["KERNEL", "LEVERAGE", "SAMPLERS", "Estimate", "estimate", "exact_budget"]

KERNEL, LEVERAGE = "kernel", "leverage"
SAMPLERS = (KERNEL, LEVERAGE)
LISTED = 4_096         # strata with at most this many pairs are drawn from a shuffled list of all of them
CHUNK = 256            # candidates per draw from a large stratum's random stream, at most
MIN_CHUNK = 16         # and at least
FIRST_ROUND = 256      # coalitions in the first round of a tolerance run (at least 4 per unit)
SERIAL_BLAS = 1 << 22  # designs (pairs x units) up to this size are fitted on one BLAS thread


@dataclass
class Estimate:
    """Shapley values, their standard errors, ``v(0)``, the evaluations spent and whether they are exact."""

    values: np.ndarray
    errors: np.ndarray
    base: float
    full: float
    evaluations: int
    coalitions: int
    exact: bool
    rounds: int


def exact_budget(m: int) -> int:
    """Coalitions (besides the empty and the full one) that enumeration takes: 2^M - 2."""
    return 2 ** m - 2


@functools.lru_cache(maxsize=64)
def _every_pair(m: int, k: int) -> np.ndarray:
    """One coalition of every pair of sizes {k, M-k} (for k = M/2, those holding unit 0), read-only."""
    combos = np.array([c for c in itertools.combinations(range(m), k) if 2 * k != m or c[0] == 0],
                      dtype=np.int64).reshape(-1, k)
    z = np.zeros((len(combos), m), dtype=bool)
    np.put_along_axis(z, combos, True, axis=1)
    z.flags.writeable = False
    return z


@functools.lru_cache(maxsize=64)
def _shuffled(m: int, k: int, seed: int) -> np.ndarray:
    """Every pair of sizes {k, M-k} in the order of a fresh stratum stream's first permutation, read-only
    (a request's strata, and the next request with the same seed, reuse it instead of reshuffling)."""
    z = _every_pair(m, k)
    z = z[np.random.default_rng([seed, m, k]).permutation(len(z))]
    z.flags.writeable = False
    return z


class _Stream:
    """A large stratum's random stream: its distinct random subsets in order of drawing, extended on demand. It
    depends on the seed, M and k alone, so it is kept for the next request with the same seed (a report's
    samples, a benchmark's turns) instead of being drawn again (see :func:`_stream`)."""

    def __init__(self, m: int, k: int, seed: int):
        self.m, self.k, self.half = m, k, 2 * k == m
        self.rng = np.random.default_rng([seed, m, k])
        self.drawn = np.zeros((0, m), dtype=bool)
        self.keys: set = set()
        self.lock = threading.Lock()

    def first(self, n: int) -> np.ndarray:
        """At least the first ``n`` subsets (all drawn so far), read-only."""
        with self.lock:
            rows, have = [self.drawn], len(self.drawn)
            while have < n:                                   # random subsets, duplicates dropped
                # the stream is the same however it is cut (rows of uniforms, one subset per row), so draw
                # about what is missing (a stratum asked for 5 pairs does not sort 256 candidates)
                size = min(CHUNK, max(MIN_CHUNK, 2 * (n - have)))
                idx = np.argsort(self.rng.random((size, self.m)), axis=1)[:, : self.k]
                z = np.zeros((size, self.m), dtype=bool)
                np.put_along_axis(z, idx, True, axis=1)
                if self.half:                                 # one representative per pair: unit 0 present
                    z[~z[:, 0]] ^= True
                fresh = []
                for i, key in enumerate(np.packbits(z, axis=1)):
                    b = key.tobytes()
                    if b not in self.keys:
                        self.keys.add(b)
                        fresh.append(i)
                rows.append(z[fresh])
                have += len(fresh)
            if len(rows) > 1:
                self.drawn = np.concatenate(rows)
                self.drawn.flags.writeable = False
            return self.drawn


_STREAMS: "collections.OrderedDict[tuple, _Stream]" = collections.OrderedDict()
_STREAMS_LOCK = threading.Lock()
MAX_STREAMS = 64             # streams kept between requests (least recently used dropped)
STREAM_BYTES = 1 << 20       # a stream that grew past this is not kept


def _stream(m: int, k: int, seed: int) -> _Stream:
    """The kept stream of (seed, M, k), or a new one."""
    key = (seed, m, k)
    with _STREAMS_LOCK:
        stream = _STREAMS.pop(key, None) or _Stream(m, k, seed)
        if stream.drawn.nbytes <= STREAM_BYTES:
            _STREAMS[key] = stream
            while len(_STREAMS) > MAX_STREAMS:
                _STREAMS.popitem(last=False)
    return stream


class _Stratum:
    """The pairs of coalition sizes {k, M-k}: how many there are, their kernel mass, and a nested sampler."""

    def __init__(self, m: int, k: int, seed: int, shuffle: bool = True):
        self.m, self.k = m, k
        self.half = 2 * k == m
        self.n_pairs = math.comb(m, k) // (2 if self.half else 1)
        w = (m - 1) / (k * (m - k))                           # Shapley-kernel mass of one size
        self.mass = w if self.half else 2 * w
        self.sizes = 1 if self.half else 2
        self.seed, self._stream = int(seed) % 2 ** 32, None
        self.drawn = np.zeros((0, m), dtype=bool)
        self.order, self.shuffle = None, shuffle

    def first(self, n: int) -> np.ndarray:
        """The first ``n`` distinct pairs of this stratum's random stream, one coalition of each: ``[n, M]``."""
        n = min(n, self.n_pairs)
        if n <= len(self.drawn):
            return self.drawn[:n]
        if self.n_pairs <= LISTED or n >= self.n_pairs:      # a shuffled list of every pair
            if self.order is None:
                if self.shuffle and self._stream is None and self.n_pairs <= LISTED:   # the stream's first use
                    z = _shuffled(self.m, self.k, self.seed)
                else:
                    z = _every_pair(self.m, self.k)
                    if self.shuffle:                          # the stream's generator, where it was drawn from
                        rng = np.random.default_rng([self.seed, self.m, self.k])
                        if self._stream is not None:
                            with self._stream.lock:
                                rng = copy.deepcopy(self._stream.rng)
                        z = z[rng.permutation(len(z))]
                if len(self.drawn):                           # a stream's draws stay first (nested designs)
                    old = {r.tobytes() for r in np.packbits(self.drawn, axis=1)}
                    rest = [r.tobytes() not in old for r in np.packbits(z, axis=1)]
                    z = np.concatenate([self.drawn, z[rest]])
                self.order = z
            self.drawn = self.order[:n]
            return self.drawn
        if self._stream is None:
            self._stream = _stream(self.m, self.k, self.seed)
        self.drawn = self._stream.first(n)
        if self.drawn.nbytes > STREAM_BYTES:                  # too big to keep for the next request
            with _STREAMS_LOCK:
                if _STREAMS.get((self.seed, self.m, self.k)) is self._stream:
                    del _STREAMS[(self.seed, self.m, self.k)]
        return self.drawn[:n]


@functools.lru_cache(maxsize=1)
def _blas():
    """numpy's BLAS thread pools (threadpoolctl, which scikit-learn brings), or None without it."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - shap depends on scikit-learn, which depends on threadpoolctl
        return None
    return ThreadpoolController().select(user_api="blas")


_SERIAL = {"lock": threading.Lock(), "depth": 0, "limiter": None}


@contextlib.contextmanager
def _serial_blas(size: int):
    """One BLAS thread for the fit of a design of about ``size`` entries: at these sizes (the regression is
    P x (M + terms)) a second thread only spins, tripling the CPU time, and crawls on a busy machine. The
    limit is process-wide, so overlapping fits (threads) share it: the first sets it, the last restores it."""
    pools = _blas() if size <= SERIAL_BLAS else None
    if not pools:
        yield
        return
    with _SERIAL["lock"]:
        if _SERIAL["depth"] == 0:
            _SERIAL["limiter"] = pools.limit(limits=1)
        _SERIAL["depth"] += 1
    try:
        yield
    finally:
        with _SERIAL["lock"]:
            _SERIAL["depth"] -= 1
            if _SERIAL["depth"] == 0:
                _SERIAL["limiter"].restore_original_limits()
                _SERIAL["limiter"] = None


def _allocate(strata, pairs: int, shares, floor) -> list[int]:
    """Pairs per stratum: proportional to ``shares`` between ``floor`` (pairs already drawn) and the
    stratum's size (then it is enumerated), by water-filling; largest remainders round the rest."""
    lo = [min(f, s.n_pairs) for f, s in zip(floor, strata)]
    alloc = list(lo)
    open_, left = [i for i, s in enumerate(strata) if lo[i] < s.n_pairs], pairs - sum(lo)
    while open_ and left > 0:
        total = sum(shares[i] for i in open_) or 1.0
        want = {i: (left + sum(lo[j] for j in open_)) * shares[i] / total for i in open_}
        fixed = [i for i in open_ if want[i] >= strata[i].n_pairs or want[i] <= lo[i]]
        if not fixed:
            raw = [want[i] - lo[i] for i in open_]
            base = [int(r) for r in raw]
            for j in sorted(range(len(open_)), key=lambda j: (base[j] - raw[j], j))[: max(0, left - sum(base))]:
                base[j] += 1
            for i, b in zip(open_, base):
                alloc[i] = min(lo[i] + b, strata[i].n_pairs)
            break
        for i in fixed:
            alloc[i] = strata[i].n_pairs if want[i] >= strata[i].n_pairs else lo[i]
            left -= alloc[i] - lo[i]
            open_.remove(i)
    return alloc


class _Design:
    """A round's pairs, stacked: the first coalitions ``z [P, M]`` (stratum by stratum), their values and
    complements' values (minus ``v(0)``), and each stratum's row range, mass, draws and size."""

    def __init__(self, strata, alloc, values):
        parts = [(s, n) for s, n in zip(strata, alloc) if n]
        self.mass = np.array([s.mass for s, _ in parts])
        self.n = np.array([n for _, n in parts])
        self.sampled = np.array([n < s.n_pairs for s, n in parts])        # enumerated strata: no variance
        self.fpc = np.array([1.0 - n / s.n_pairs for s, n in parts])
        self.keys = [id(s) for s, _ in parts]
        self.start = np.concatenate([[0], np.cumsum(self.n)[:-1]]).astype(np.int64)
        self.row = np.repeat(np.arange(len(parts)), self.n)                # each pair's stratum
        self.zb = np.concatenate([s.first(n) for s, n in parts])
        self.z = self.zb.astype(np.float64)
        self.y = np.concatenate([values[id(s)][0][:n] for s, n in parts])
        self.yc = np.concatenate([values[id(s)][1][:n] for s, n in parts])
        self.weight = (self.mass / self.n)[self.row]                       # a pair's share of its stratum


def _solve(d: _Design, m, delta, y=None, yc=None, scale=None):
    """The constrained weighted regression and its sandwich standard errors (``y, yc``: the values, by default
    the design's own; ``scale``: each pair's HC2 factor for a fitted surrogate)."""
    y, yc = (d.y, d.yc) if y is None else (y, yc)
    z, zc, w = d.z, 1.0 - d.z, 0.5 * d.weight
    a = (z * w[:, None]).T @ z + (zc * w[:, None]).T @ zc
    b = z.T @ (w * y) + zc.T @ (w * yc)
    ainv = kernel_surrogate.spd_inverse(a)
    one = np.ones(m)
    u = ainv @ one
    c = ainv - np.outer(u, u) / (one @ u)                     # constrained inverse: sum(c @ x) = 0
    phi = c @ b + u * (delta / (one @ u))
    cov, spread = np.zeros((m, m)), {}
    rows = d.sampled[d.row]                                   # pairs of sampled strata
    if rows.any():
        h = 0.5 * (z * (y - z @ phi)[:, None] + zc * (yc - zc @ phi)[:, None])
        if scale is not None:                                 # a fitted surrogate's leverage (HC2)
            h *= scale[:, None]
        many = d.sampled & (d.n >= 2)
        hc = h - (np.add.reduceat(h, d.start, axis=0) / d.n[:, None])[d.row]
        pooled = many[d.row]
        if pooled.any():
            coef = (d.mass ** 2 * d.fpc / (d.n * np.maximum(d.n - 1, 1)))[d.row]
            hw = hc[pooled] * np.sqrt(coef[pooled])[:, None]
            cov += hw.T @ hw
            var = np.add.reduceat(((hc @ c) ** 2).sum(axis=1), d.start) / np.maximum(d.n - 1, 1)
            for i in np.flatnonzero(many):                    # a pair's variance in phi units (Neyman)
                spread[d.keys[i]] = float(var[i])
        singles = d.sampled & (d.n == 1)
        if singles.any():                                     # one pair: borrow the pooled spread
            rest = np.concatenate([hc[pooled], h[singles[d.row]]])
            per = np.cov(rest, rowvar=False).reshape(m, m) if len(rest) > 1 else np.outer(rest[0], rest[0])
            cov += float((d.mass[singles] ** 2 * d.fpc[singles]).sum()) * per
    used = int(d.n.sum())                                     # pairs; m - 1 free parameters were fitted
    if cov.any() and used <= m:                               # residuals of an underdetermined fit say nothing
        return phi, np.full(m, np.inf), spread
    dof = used / (used - (m - 1)) if cov.any() and scale is None else 1.0
    errors = np.sqrt(np.clip(((c @ cov) * c).sum(axis=1) * dof, 0.0, None))     # diag(c cov c), c symmetric
    return phi, errors, spread


def _adjusted(d: _Design, m, delta):
    """The regression-adjusted estimate: :mod:`.kernel_surrogate`'s odd surrogate ``g`` is fitted to the pairs,
    the regression estimates the residual game ``v - g`` alone, and ``g``'s exact Shapley values are added."""
    g = kernel_surrogate.fit(d.zb, 0.5 * (d.y - d.yc), d.weight, int(d.n[d.sampled].sum()))
    if g is None:
        return None
    phi, errors, spread = _solve(d, m, delta - 2.0 * g.full, d.y - g.values, d.yc + g.values, scale=g.scale)
    return phi + g.shapley, errors, spread


def _neyman(strata, spread, sampler: str) -> list[float]:
    """Optimal stratified shares ``mass * sd`` (sd measured by the last round; a floor keeps every stratum)."""
    known = [v for v in spread.values() if v > 0]
    fill = float(np.mean(known)) if known else 1.0
    sd = [math.sqrt(max(spread.get(id(s), fill), 0.01 * fill)) for s in strata]
    return [s.mass * d for s, d in zip(strata, sd)]


def estimate(game, m: int, budget: int, *, seed: int = 0, sampler: str = KERNEL, tolerance: float = 0.0,
             first_round: int = FIRST_ROUND, adjust: bool = True) -> Estimate:
    """Shapley values of ``game`` (``z [n,M] bool -> v(z) [n]``) from at most ``budget`` coalitions."""
    everything = budget // 2 >= 2 ** (m - 1) - 1         # every coalition: canonical order, seed-free bits
    ends = np.array([np.zeros(m, dtype=bool), np.ones(m, dtype=bool)])
    base = full = None
    if m == 1 or everything:                              # sampled runs score the two ends with the first batch
        out = game(ends)
        base, full = float(out[0]), float(out[1])
    if m == 1:
        return Estimate(np.array([full - base]), np.zeros(1), base, full, 2, 0, True, 0)
    strata = [_Stratum(m, k, seed, shuffle=not everything) for k in range(1, m // 2 + 1)]
    values: dict = {id(s): (np.zeros(0), np.zeros(0)) for s in strata}
    budget = max(2, int(budget))
    first = max(int(first_round), 4 * m)
    if tolerance and tolerance > 0:                           # doubling rounds until the errors are small
        rounds = []
        while first < budget:
            rounds.append(first)
            first *= 2
        rounds.append(budget)
    else:                                                     # a pilot quarter, then Neyman allocation
        rounds = [budget // 4, budget] if budget // 4 >= first else [budget]
    shares = [s.mass if sampler == KERNEL else s.sizes for s in strata]
    spent = 2
    for r, size in enumerate(rounds, start=1):
        alloc = _allocate(strata, max(1, size // 2), shares, [len(values[id(s)][0]) for s in strata])
        need = [(s, n) for s, n in zip(strata, alloc) if n > len(values[id(s)][0])]
        if need:
            zs = [s.first(n)[len(values[id(s)][0]):] for s, n in need]
            both = np.concatenate([np.concatenate([z, ~z]) for z in zs])
            if base is None:                                  # the first batch carries the two ends
                out = np.asarray(game(np.concatenate([both, ends])), dtype=np.float64)
                base, full = float(out[-2]), float(out[-1])
                out = out[:-2] - base
            else:
                out = np.asarray(game(both), dtype=np.float64) - base
            pos = 0
            for (s, _), z in zip(need, zs):
                y, yc = out[pos:pos + len(z)], out[pos + len(z):pos + 2 * len(z)]
                pos += 2 * len(z)
                old = values[id(s)]
                values[id(s)] = (np.concatenate([old[0], y]), np.concatenate([old[1], yc]))
            spent += len(both)
        if base is None:                                      # pragma: no cover - round 1 always draws
            out = game(ends)
            base, full = float(out[0]), float(out[1])
        exact = all(n >= s.n_pairs for s, n in zip(strata, alloc))
        design = _Design(strata, alloc, values)
        with _serial_blas(sum(alloc) * m):
            adj = _adjusted(design, m, full - base) if adjust and not exact else None
            phi, errors, spread = adj if adj is not None else _solve(design, m, full - base)
        if exact or r == len(rounds) or float(errors.max()) <= tolerance:
            return Estimate(phi, errors, base, full, spent, sum(2 * n for n in alloc), exact, r)
        shares = _neyman(strata, spread, sampler)
    raise AssertionError("unreachable")  # pragma: no cover
