"""Feature ablation through ``model.predict_masked``: one masked copy per unit, all in one batch."""
from __future__ import annotations

import numpy as np

from explainkit import Explainer, Explanation, Modality


def patch_groups(height: int, width: int, size: int) -> np.ndarray:
    """An [H, W] int array numbering square patches of side ``size`` row by row."""
    rows = np.arange(height) // size
    cols = np.arange(width) // size
    n_cols = -(-width // size)
    return rows[:, None] * n_cols + cols[None, :]


class FeatureAblation(Explainer):
    """score(unit) = f(x)[target] - f(x with that unit replaced by the model's baseline)[target]."""

    def explain(self, model, samples, targets, *, seed=0, patch_size=2):
        out = []
        for i, sample in enumerate(samples):
            groups = None
            if sample.modality is Modality.IMAGE:
                groups = patch_groups(*sample.image.shape[:2], patch_size)
                n_units = int(groups.max()) + 1
            else:
                n_units = sample.n_units
            keep = np.ones((n_units + 1, n_units), dtype=np.float32)   # row 0: the untouched input
            keep[1:][np.diag_indices(n_units)] = 0.0
            outputs = model.predict_masked(sample, keep, groups=groups)
            # read the target after the masked pass: explainkit then takes the prediction it needs for a
            # predicted target from row 0 here instead of running a pass of its own
            y = outputs[:, targets[i]] if outputs.ndim == 2 else outputs
            drop = y[0] - y[1:]
            scores = drop[groups] if groups is not None else drop
            out.append(Explanation.from_sample(sample, scores, base_value=float(y[0]),
                                               extras={"n_units": n_units}))
        return out
