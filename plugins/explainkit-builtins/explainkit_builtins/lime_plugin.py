"""LIME through the lime library: tabular rows, text tokens, image segments; seeded everywhere.

- Tabular: ``LimeTabularExplainer`` (continuous features, no discretization) fed the model's training
  statistics: the rows given to ``wrap(..., background=...)``, else the standardization the model was
  trained with (``model.standardize``: a two-row stand-in with exactly that mean and std).
- Text: lime's own recipe (``LimeTextExplainer``: random token removals, cosine distance x 100, kernel
  width 25) run by ``LimeBase`` on binary token masks, so the units are exactly the sample's tokens and
  the masked copies go through ``model.predict_masked``. Where a sample names its units
  (``sample.meta["units"]``: a Hugging Face model's pieces) only those are removed and weighted; special
  tokens ([CLS], [SEP]) stay in every copy and score exactly 0.
- Images: lime's image recipe (``LimeImageExplainer``: random segment switches, cosine distance, kernel
  width 0.25, hidden segments black) run by ``LimeBase`` on patch or quickshift segment masks.

Standard errors (``exp.errors``) are the surrogate's coefficient standard errors: the heteroskedasticity-
robust sandwich of lime's weighted ridge fit, ``B^-1 (sum_i (w_i r_i)^2 x_i x_i^T) B^-1`` with
``B = X'WX + alpha I`` on the weighted-centred selected columns, which estimates how much the weights vary
from one random set of perturbations to the next. Units not selected get 0 (selection is not included).
"""
from __future__ import annotations

import numpy as np

from explainkit import Explainer, Explanation, Modality, Task
from explainkit.errors import MissingDependencyError, NotApplicableError

from .shap_plugin import (
    DEFAULT_PATCH,
    LARGE_IMAGE_BUDGET,
    PATCHES,
    SUPERPIXELS,
    full_keep,
    image_segments,
    large_image,
    scored_units,
)

__all__ = ["Lime"]

TEXT_KERNEL_WIDTH = 25.0     # LimeTextExplainer's default
IMAGE_KERNEL_WIDTH = 0.25    # LimeImageExplainer's default
COSINE = "cosine"
BATCH = 512
DEFAULT_SAMPLES = 1000       # the declared default; on images larger than 64x64 it means LARGE_IMAGE_BUDGET
LARGE_SEGMENTS = 50          # SLIC superpixels per large image at the default segmentation
RIDGE_ALPHA = 1.0            # LimeBase's default model_regressor: Ridge(alpha=1, fit_intercept=True)


def _import_lime():
    try:
        import lime.lime_base
        import lime.lime_tabular
    except ImportError:
        raise MissingDependencyError("lime needs the lime library.",
                                     "pip install 'lime>=0.2.0.1' (or explainkit-builtins).") from None
    return lime


def _kernel(width: float):
    def kernel(d):
        return np.sqrt(np.exp(-(d ** 2) / width ** 2))
    return kernel


def _record(base) -> dict:
    """Keep the data that ``base.explain_instance_with_data`` fits (for the standard errors)."""
    seen, fit = {}, base.explain_instance_with_data

    def recorded(data, labels, distances, label, *args, **kwargs):
        seen.update(data=data, y=np.asarray(labels)[:, label], weights=base.kernel_fn(distances))
        return fit(data, labels, distances, label, *args, **kwargs)

    base.explain_instance_with_data = recorded
    return seen


def coef_errors(data, y, weights, used, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Sandwich standard errors of a weighted ridge fit's coefficients on the ``used`` columns (lime's
    ``Ridge(alpha=1)`` with an intercept), HC1-scaled."""
    x = np.asarray(data, dtype=np.float64)[:, list(used)]
    y, w = np.asarray(y, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    sw = w.sum()
    xc, yc = x - (w @ x) / sw, y - (w @ y) / sw
    b_inv = np.linalg.pinv(xc.T @ (w[:, None] * xc) + alpha * np.eye(x.shape[1]))
    r = yc - xc @ (b_inv @ (xc.T @ (w * yc)))
    meat = xc.T @ (((w * r) ** 2)[:, None] * xc)
    n, p = x.shape
    cov = b_inv @ meat @ b_inv * (n / max(n - p - 1, 1))
    return np.sqrt(np.clip(np.diag(cov), 0.0, None))


def _selection(num_features: int, n_units: int) -> str:
    """lime's 'auto' selection when fewer features are kept than exist, else every feature."""
    return "auto" if num_features < n_units else "none"


class Lime(Explainer):
    """LIME (the lime library) with a fixed random state: tabular, text and image."""

    def explain(self, model, samples, targets, *, seed=0, n_samples=1000, num_features=10, kernel_width=0.0,
                segmentation=PATCHES, patch_size=4):
        lime = _import_lime()
        run = {Modality.TABULAR: self._tabular, Modality.TEXT: self._text, Modality.IMAGE: self._image}[
            model.modality]
        out = []
        for sample, target in zip(samples, targets):
            ns, seg = self._scaled(model, sample, n_samples, segmentation, patch_size)
            weights, intercept, score, local_pred, n_units, extras = run(
                lime, model, sample, target, seed=seed, n_samples=ns, num_features=num_features,
                kernel_width=kernel_width or None, segmentation=seg, patch_size=patch_size)
            fit, columns = extras.pop("fit"), extras.pop("columns", None)
            unit_scores, unit_errors = np.zeros(n_units), np.zeros(n_units)
            used = [int(i) for i, _ in weights]
            se = coef_errors(fit["data"], fit["y"], fit["weights"], used if columns is None else
                             [columns[i] for i in used]) if used else []
            for (i, w), e in zip(weights, se):
                unit_scores[int(i)], unit_errors[int(i)] = w, e
            extras.update(score=float(score), local_pred=float(np.asarray(local_pred).reshape(-1)[0]),
                          n_units=n_units, n_evaluations=ns,
                          selected=[int(i) for i, _ in weights])
            scores, errors = unit_scores, unit_errors
            if model.modality is Modality.IMAGE:
                scores, errors = unit_scores[extras["segments"]], unit_errors[extras["segments"]]
                extras.update(unit_scores=unit_scores, unit_errors=unit_errors)
            out.append(Explanation.from_sample(sample, scores, base_value=float(intercept), extras=extras,
                                               errors=errors))
        return out

    @staticmethod
    def _scaled(model, sample, n_samples, segmentation, patch_size):
        """Images larger than 64x64 at the defaults: SLIC superpixels and LARGE_IMAGE_BUDGET samples."""
        if model.modality is not Modality.IMAGE or not large_image(sample.image):
            return n_samples, segmentation
        if n_samples in (0, DEFAULT_SAMPLES):
            n_samples = LARGE_IMAGE_BUDGET
        if segmentation == PATCHES and patch_size == DEFAULT_PATCH:
            segmentation = SUPERPIXELS
        return n_samples, segmentation

    # -- tabular ---------------------------------------------------------------------------------------
    @staticmethod
    def training_rows(model) -> np.ndarray:
        """Rows (raw units) whose mean and std lime samples from: the background, or the standardization."""
        rows = getattr(model, "background", None)
        if rows is not None and np.ndim(rows) == 2 and len(rows) >= 2:
            return np.asarray(rows, dtype=np.float64)
        std = getattr(model, "standardize", None)
        if std:
            mean, sd = np.asarray(std["mean"], np.float64), np.asarray(std["std"], np.float64)
            return np.stack([mean - sd, mean + sd])      # population mean = mean, std = sd, exactly
        raise NotApplicableError(
            f"lime on tabular model {model.name!r} needs the training data's scale, and the model has none.",
            "wrap the model with background=X_train (raw training rows), or with standardize={'mean','std'}.")

    def _tabular(self, lime, model, sample, target, *, seed, n_samples, num_features, kernel_width, **_):
        mode = "classification" if model.task is Task.CLASSIFICATION else "regression"
        m = sample.n_units
        explainer = lime.lime_tabular.LimeTabularExplainer(
            self.training_rows(model), mode=mode, feature_names=sample.feature_names,
            discretize_continuous=False, kernel_width=kernel_width, random_state=seed,
            feature_selection=_selection(num_features, m))
        fit = _record(explainer.base)

        def predict_rows(rows):
            return model.predict([np.asarray(r, dtype=np.float64) for r in rows], batch_size=BATCH)

        label = target if mode == "classification" else 0
        exp = explainer.explain_instance(np.asarray(sample.feature_values, dtype=np.float64), predict_rows,
                                         labels=(label,), num_features=num_features, num_samples=n_samples)
        if mode == "regression":          # lime stores the regression explanation under key 1
            label = 1
        return exp.local_exp[label], exp.intercept[label], exp.score, exp.local_pred, m, {"fit": fit}

    # -- text ------------------------------------------------------------------------------------------
    @staticmethod
    def _text(lime, model, sample, target, *, seed, n_samples, num_features, kernel_width, **_):
        from sklearn.metrics import pairwise_distances
        from sklearn.utils import check_random_state

        rs = check_random_state(seed)
        units = scored_units(model, sample)
        d = sample.n_units if units is None else len(units)
        # LimeTextExplainer.__data_labels_distances, on masks instead of strings; rs.permutation(d)[:size]
        # is what rs.choice(range(d), size, replace=False) draws (the same numbers), without its overhead.
        # Repeated masks (1,000 draws of a 9-token sentence hold about 400 distinct ones) are run once.
        sizes = rs.randint(1, d + 1, n_samples - 1)
        data = np.ones((n_samples, d))
        for i, size in enumerate(sizes, start=1):
            data[i, rs.permutation(d)[:size]] = 0
        # all copies in one request (token rows are small): an LSTM shares their common prefixes across all
        labels = model.predict_masked(sample, full_keep(data, units, sample.n_units) > 0.5,
                                      batch_size=max(BATCH, n_samples))
        yss = labels if model.task is Task.CLASSIFICATION else np.asarray(labels)[:, None]
        distances = pairwise_distances(data, data[:1], metric=COSINE).ravel() * 100
        base = lime.lime_base.LimeBase(_kernel(kernel_width or TEXT_KERNEL_WIDTH), random_state=rs)
        fit = _record(base)
        label = target if model.task is Task.CLASSIFICATION else 0
        intercept, weights, score, local_pred = base.explain_instance_with_data(
            data, yss, distances, label, num_features, feature_selection=_selection(num_features, d))
        if units is not None:                         # players -> token indices (the specials weigh 0)
            columns = {int(units[i]): int(i) for i, _ in weights}
            weights = [(int(units[i]), w) for i, w in weights]
            return weights, intercept, score, local_pred, sample.n_units, {"n_players": d, "fit": fit,
                                                                           "columns": columns}
        return weights, intercept, score, local_pred, d, {"fit": fit}

    # -- images ----------------------------------------------------------------------------------------
    @staticmethod
    def _image(lime, model, sample, target, *, seed, n_samples, num_features, kernel_width, segmentation,
               patch_size):
        from sklearn.metrics import pairwise_distances
        from sklearn.utils import check_random_state

        segments = image_segments(np.asarray(sample.image, dtype=np.float64), segmentation, patch_size,
                                  LARGE_SEGMENTS, seed)
        n_seg = int(segments.max()) + 1
        rs = check_random_state(seed)
        # LimeImageExplainer.data_labels (hide_color=0: black pixels), on segment masks: the masked
        # copies go through model.predict_masked in big batches instead of one image at a time
        data = rs.randint(0, 2, n_samples * n_seg).reshape((n_samples, n_seg))
        data[0, :] = 1
        labels = model.predict_masked(sample, data, groups=segments, batch_size=BATCH)
        yss = labels if model.task is Task.CLASSIFICATION else np.asarray(labels)[:, None]
        distances = pairwise_distances(data, data[:1], metric=COSINE).ravel()
        base = lime.lime_base.LimeBase(_kernel(kernel_width or IMAGE_KERNEL_WIDTH), random_state=rs)
        fit = _record(base)
        label = target if model.task is Task.CLASSIFICATION else 0
        intercept, weights, score, local_pred = base.explain_instance_with_data(
            data, yss, distances, label, num_features, feature_selection=_selection(num_features, n_seg))
        return weights, intercept, score, local_pred, n_seg, {"segments": segments, "segmentation": segmentation,
                                                              "fit": fit}
