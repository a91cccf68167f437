"""The top-level calls: ``explain()`` and ``explainers()``, plus model/data resolution for the CLI."""
from __future__ import annotations

import numpy as np

from explainkit.data.samples import Sample
from explainkit.enums import Modality
from explainkit.errors import InputError

__all__ = ["explain", "explainers"]


def explainers(model) -> list:
    """The explainer declarations that apply to this model, read from the declarations alone."""
    from explainkit.plugins.registry import registry
    return registry().applicable(model)


def _is_batch(model, x) -> bool:
    if isinstance(x, Sample):
        return False
    if isinstance(x, (list, tuple)):
        if model.modality is Modality.TABULAR and x and np.isscalar(x[0]):
            return False
        return True
    if hasattr(x, "__len__") and not isinstance(x, str) and hasattr(x, "samples") and hasattr(x, "raws"):
        return True          # an explainkit Dataset
    if isinstance(x, np.ndarray) or hasattr(x, "detach"):
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
        if model.modality is Modality.TABULAR:
            return arr.ndim == 2
        if model.modality is Modality.IMAGE:
            c = model.input_shape[0] if model.input_shape else 1
            return arr.ndim == 4 or (arr.ndim == 3 and c == 1 and arr.shape[0] != 1)
    return False


def explain(model, x, method: str = "integrated_gradients", target=None, *, seed: int = 0, **params):
    """Explain a sample, a raw input (image array, string, feature row) or a batch.

    Returns one :class:`~explainkit.Explanation` for a single input, an
    :class:`~explainkit.Explanations` list for a batch.
    """
    from explainkit.plugins.runner import run_explainer

    if getattr(model, "generates", False):     # a language model: the prompt string is the raw input
        prompts = [x] if isinstance(x, str) else list(x) if isinstance(x, (list, tuple)) else [x]
        out = run_explainer(method, model, prompts, target, seed=seed, **params)
        return out[0] if isinstance(x, str) or not isinstance(x, (list, tuple)) else out
    if _is_batch(model, x):
        if hasattr(x, "samples") and hasattr(x, "raws"):
            samples = list(x.samples(model))
        else:
            samples = [model.prepare(item, index=i) for i, item in enumerate(x)]
        if not samples:
            raise InputError("The batch is empty.", "pass at least one input.")
        return run_explainer(method, model, samples, target, seed=seed, **params)
    sample = model.prepare(x)
    return run_explainer(method, model, [sample], target, seed=seed, **params)[0]
