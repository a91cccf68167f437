"""Kernel SHAP over coalitions of features, tokens or image segments, with standard errors.

Every modality is reduced to the same game: a coalition ``z`` in {0,1}^M keeps the units where
``z == 1`` and replaces the others with the model's fill baseline (``model.predict_masked``), so
``base_value = f(all absent)`` and ``base_value + sum(scores) = f(x)``. The default estimator is
explainkit's own (:mod:`.kernel_estimator`: paired, size-stratified sampling, exact enumeration when the
budget covers every coalition, a standard error per unit in ``exp.errors``); ``estimator="shap"`` runs
shap's ``KernelExplainer`` on the same game instead (the all-absent coalition as background).

Text models whose samples name their units (``sample.meta["units"]``: a Hugging Face model's pieces)
play only those: special tokens ([CLS], [SEP]) are never players, always kept, and score exactly 0.
"""
from __future__ import annotations

import hashlib
import warnings
import weakref
from contextlib import contextmanager

import numpy as np

from explainkit import Explainer, Explanation, Modality, Task
from explainkit.errors import MissingDependencyError, ParameterError

from . import kernel_estimator

__all__ = ["KernelShap", "image_segments", "seeded_numpy", "target_output", "large_image", "LARGE_IMAGE_BUDGET",
           "scored_units", "full_keep", "spread"]

MAX_ENUMERATED = 2 ** 30          # shap's own cap on the coalition space it considers
AUTO_SELECTION_FRACTION = 0.2      # shap's old l1_reg='auto': feature selection below this fraction
PATCHES, SUPERPIXELS, QUICKSHIFT = "patches", "superpixels", "quickshift"
L1_AUTO, L1_NONE = "auto", "none"
_BACKGROUNDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # model -> k-means summary
# Images larger than 64x64: the declared defaults (4-pixel patches, shap's 2M+2048 coalitions) would mean
# thousands of units and masked copies; there the defaults become SLIC superpixels and this many copies.
LARGE_SIDE = 64
LARGE_IMAGE_BUDGET = 500
DEFAULT_PATCH = 4
PAIRED, LEVERAGE, SHAP = "paired", "leverage", "shap"     # the declared choices of 'estimator'
MAX_EXACT_DEFAULT = 14     # the default budget enumerates every coalition up to this many units


def large_image(image) -> bool:
    """An image grid larger than 64x64 pixels (photo-sized: the defaults scale with it)."""
    h, w = np.shape(image)[:2]
    return h * w > LARGE_SIDE * LARGE_SIDE


def scored_units(model, sample) -> np.ndarray | None:
    """The token indices that are players for a text sample (its non-special pieces), or None for all units."""
    units = sample.meta.get("units") if model.modality is Modality.TEXT and isinstance(sample.meta, dict) else None
    if units is None or len(units) == sample.n_units:
        return None
    return np.asarray(units, dtype=np.int64)


def full_keep(z, units, n: int) -> np.ndarray:
    """Keep masks over the players ``[M, U]`` as masks over all ``n`` tokens (the others always kept); boolean
    masks stay boolean (the model's fast path, without a float round trip), others become float32."""
    z = np.asarray(z)
    z = z if z.dtype == np.bool_ else z.astype(np.float32, copy=False)
    if units is None:
        return z
    out = np.ones((len(z), n), dtype=z.dtype)
    out[:, units] = z
    return out


def spread(values, units, n: int) -> np.ndarray:
    """Per-player values at their token indices, 0 at every other token."""
    out = np.zeros(n)
    out[units] = values
    return out


def _import_shap():
    try:
        import shap
    except ImportError:
        raise MissingDependencyError("kernel_shap needs the shap library.",
                                     "pip install 'shap>=0.44' (or explainkit-builtins).") from None
    return shap


@contextmanager
def seeded_numpy(seed: int):
    """Seed numpy's global generator (shap samples with it) and restore the caller's state after."""
    state = np.random.get_state()
    np.random.seed(int(seed) % 2 ** 32)
    try:
        yield
    finally:
        np.random.set_state(state)


def target_output(model, out: np.ndarray, target: int) -> np.ndarray:
    """The explained output column: the target's probability, or the regression value."""
    out = np.asarray(out, dtype=np.float64)
    return out[:, target] if model.task is Task.CLASSIFICATION else out.reshape(len(out))


def image_segments(image: np.ndarray, segmentation: str, patch_size: int, n_segments: int,
                   seed: int = 0) -> np.ndarray:
    """Integer segment ids ``[H,W]`` numbered 0..M-1: square patches, SLIC superpixels or quickshift."""
    h, w = image.shape[:2]
    if segmentation == PATCHES:
        cols = -(-w // patch_size)
        rr, cc = np.meshgrid(np.arange(h) // patch_size, np.arange(w) // patch_size, indexing="ij")
        seg = rr * cols + cc
    else:
        try:
            from skimage.segmentation import quickshift, slic
        except ImportError:
            raise MissingDependencyError(f"segmentation={segmentation!r} needs scikit-image.",
                                         "pip install scikit-image, or use segmentation='patches'.") from None
        img = np.asarray(image, dtype=np.float64)
        if segmentation == SUPERPIXELS:
            seg = slic(img, n_segments=n_segments, start_label=0,
                       channel_axis=-1 if img.ndim == 3 else None)
        else:                      # lime's default quickshift settings
            rgb = img if img.ndim == 3 else np.stack([img] * 3, axis=-1)
            seg = quickshift(rgb, kernel_size=4, max_dist=200, ratio=0.2, rng=seed)
    return np.unique(seg, return_inverse=True)[1].reshape(h, w).astype(np.int64)


class _Game:
    """The coalition value function handed to shap: ``z [n,M] -> f(masked x) [n]``; counts evaluations."""

    def __init__(self, model, sample, target, groups=None, fills=None, weights=None, units=None):
        self.model, self.sample, self.target, self.groups, self.units = model, sample, target, groups, units
        self.fills = [None] if fills is None else list(fills)
        self.weights = np.ones(1) if weights is None else np.asarray(weights, dtype=np.float64)
        self.evaluations = 0

    def __call__(self, z) -> np.ndarray:
        z = full_keep(z, self.units, self.sample.n_units)
        total = np.zeros(len(z))
        for fill, w in zip(self.fills, self.weights):
            out = self.model.predict_masked(self.sample, z, groups=self.groups, fill=fill, batch_size=1024)
            total += w * target_output(self.model, out, self.target)
        self.evaluations += len(z) * len(self.fills)
        return total


class KernelShap(Explainer):
    """Kernel SHAP (shap.KernelExplainer) over features, tokens or image patches/superpixels."""

    def explain(self, model, samples, targets, *, seed=0, n_samples=0, segmentation=PATCHES, patch_size=4,
                n_segments=50, n_background=50, l1_reg=L1_AUTO, estimator=PAIRED, tolerance=0.0):
        shap = _import_shap() if estimator == SHAP else None
        fills, weights = self._background(model, n_background)
        out = []
        for sample, target in zip(samples, targets):
            groups, budget, seg, units = None, n_samples, segmentation, None
            if model.modality is Modality.IMAGE:
                if large_image(sample.image):         # the defaults scale with the image
                    if segmentation == PATCHES and patch_size == DEFAULT_PATCH:
                        seg = SUPERPIXELS
                    budget = n_samples or LARGE_IMAGE_BUDGET - 2     # besides f(x) and f(all absent)
                groups = image_segments(sample.image, seg, patch_size, n_segments, seed)
                m = int(groups.max()) + 1
            else:
                units = scored_units(model, sample)
                m = sample.n_units if units is None else len(units)
            game = _Game(model, sample, target, groups, fills, weights, units)
            if estimator == SHAP:
                values, base, exact, nsamples, l1 = self._run(shap, game, m, budget, l1_reg, seed)
                errors, extra = None, {}
            else:
                values, errors, base, exact, nsamples, extra = self._estimate(game, m, budget, estimator, seed,
                                                                              tolerance)
                l1 = False
            if units is not None:                      # players -> tokens; the special tokens score 0
                values = spread(values, units, sample.n_units)
                errors = None if errors is None else spread(errors, units, sample.n_units)
            extras = {"n_units": m, "n_evaluations": game.evaluations, "exact": exact, "n_coalitions": nsamples,
                      "shap_l1_reg": str(l1), "estimator": estimator,
                      "f_x": base + float(values.sum()), "background_rows": len(game.fills), **extra}
            if groups is not None:
                extras.update(segmentation=seg, unit_scores=values, segments=groups)
                if errors is not None:
                    extras["unit_errors"] = errors
                values, errors = values[groups], None if errors is None else errors[groups]
            out.append(Explanation.from_sample(sample, values, base_value=base, extras=extras, errors=errors))
        return out

    @staticmethod
    def _estimate(game, m, n_samples, estimator, seed, tolerance):
        """explainkit's estimator: (values, errors, base value, exact?, coalitions, extras)."""
        budget = n_samples or (kernel_estimator.exact_budget(m) if m <= MAX_EXACT_DEFAULT else 2 * m + 2048)
        sampler = kernel_estimator.LEVERAGE if estimator == LEVERAGE else kernel_estimator.KERNEL

        est = kernel_estimator.estimate(game, m, budget, seed=seed, sampler=sampler, tolerance=float(tolerance))
        extra = {"rounds": est.rounds, "max_error": float(est.errors.max())}
        return est.values, est.errors, est.base, bool(est.exact), int(est.coalitions), extra

    @staticmethod
    def _run(shap, game, m, n_samples, l1_reg, seed):
        """Run shap's KernelExplainer on the game: (values [M], base value, exact?, coalitions, l1_reg)."""
        zeros, ones = np.zeros((1, m)), np.ones(m)
        max_samples = 2 ** m - 2 if m <= 30 else MAX_ENUMERATED
        nsamples = min(n_samples or 2 * m + 2048, max(max_samples, 1))
        exact = m <= 30 and nsamples >= max_samples
        # shap >= 0.45 defaults to l1_reg='num_features(10)' (always selecting); 'auto' is deprecated.
        # Reproduce 'auto' explicitly: AIC selection only when under 20% of the coalitions are evaluated.
        if l1_reg == L1_AUTO and nsamples / max(max_samples, 1) < AUTO_SELECTION_FRACTION:
            # AIC needs more (augmented) rows than features; with fewer coalitions keep as many
            # features as the coalitions can determine
            l1 = "aic" if 2 * nsamples > m + 1 else f"num_features({max(1, min(m, nsamples) - 1)})"
        elif l1_reg in (L1_AUTO, L1_NONE):
            l1 = False
        else:  # pragma: no cover - the declaration's choices are validated by the core
            raise ParameterError(f"Unknown l1_reg {l1_reg!r}.", "use 'auto' or 'none'.")
        with seeded_numpy(seed), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ke = shap.KernelExplainer(game, zeros)
            values = ke.shap_values(ones, nsamples=nsamples, l1_reg=l1, silent=True)
        values = np.asarray(values, dtype=np.float64).reshape(m)
        return values, float(np.asarray(ke.expected_value).reshape(-1)[0]), bool(exact), int(nsamples), l1

    @staticmethod
    def _background(model, n_background):
        """Tabular fills: a k-means summary of the model's background rows (from ``wrap(background=...)``)."""
        rows = getattr(model, "background", None)
        if model.modality is not Modality.TABULAR or rows is None or n_background <= 1:
            return None, None
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or len(rows) < 2:
            return None, None
        key = (n_background, rows.shape, hashlib.sha256(rows.tobytes()).hexdigest())
        cached = _BACKGROUNDS.get(model)
        if cached is None or cached[0] != key:
            if len(rows) > n_background:
                from threadpoolctl import threadpool_limits
                shap = _import_shap()
                with seeded_numpy(0), threadpool_limits(1):   # k-means' threads crawl on a busy machine
                    summary = shap.kmeans(rows, n_background, round_values=False)
                rows, weights = summary.data, summary.weights
            else:
                weights = np.full(len(rows), 1.0 / len(rows))
            # fills are given in the model's input space (standardized for torch models)
            fills = [np.asarray(model.prepare(r).tensor, dtype=np.float64) for r in rows]
            cached = (key, fills, np.asarray(weights, dtype=np.float64) / np.sum(weights))
            _BACKGROUNDS[model] = cached
        return cached[1], cached[2]
