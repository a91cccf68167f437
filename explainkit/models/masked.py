"""Distinct masked copies, built a bounded chunk at a time: the core of ``TorchModel.predict_masked_many``.

Explainers ask for many masked copies of one sample: Kernel SHAP's coalitions, LIME's perturbations,
occlusion's windows, ablation's one-unit removals. Two keep masks give the same input when they differ only
on units that already equal the fill, and random masks repeat (LIME's 1,000 draws on a 9-token sentence hold
about 400 distinct copies), so each distinct copy is run once over the whole request, not once per chunk of
it. The copies are then built and run a chunk at a time (at most ``BUILD_BYTES`` of inputs, or the caller's
row cap), so that a photo's hundreds of copies never sit in memory together.

A model takes part through two methods (see :class:`explainkit.models.torch_model.TorchModel`):
``_masked_setup(sample, keep, fill, groups) -> (x, base, keep, active)`` (the sample's tensor, the fill
tensor, the keep mask as booleans where it is 0/1, and which units differ from the fill) and
``_masked_rows(sample, x, base, keep, groups, width) -> tuple of tensors`` (the model-ready copies and their
extra forward arguments).
"""
from __future__ import annotations

import numpy as np

__all__ = ["as_keep", "unique_rows", "plan", "run_plan", "BUILD_BYTES"]

BUILD_BYTES = 64 << 20      # masked copies held in memory at once, at most (about 110 photos at 224x224)


def as_keep(k) -> np.ndarray:
    """A keep mask as ``[M, U]``: boolean stays boolean, anything else becomes float32."""
    k = np.asarray(k)
    k = k if k.dtype == np.bool_ else k.astype(np.float32, copy=False)
    return k.reshape(len(k) if k.ndim > 1 else 1, -1)


def binary(k: np.ndarray) -> np.ndarray:
    """A float mask of only 0s and 1s as booleans (the faster select path; same values), else unchanged."""
    if k.dtype == np.bool_ or not ((k == 0) | (k == 1)).all():
        return k
    return k == 1


def unique_rows(key: np.ndarray):
    """Indices of the first copy of each distinct row, and each row's index into them."""
    key = np.ascontiguousarray(key)
    if key.ndim != 2 or key.shape[1] == 0:
        return np.zeros(min(len(key), 1), dtype=np.int64), np.zeros(len(key), dtype=np.int64)
    rows = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # distinct rows in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64)


def plan(model, samples, keeps, fills, groups):
    """Per sample ``(sample, x, base, distinct keep rows, groups)``, and the map from every requested row
    (all samples, in order) to its distinct copy."""
    parts, inverse, offset = [], [], 0
    for s, k, f, g in zip(samples, keeps, fills, groups):
        x, base, k, active = model._masked_setup(s, k, f, g)
        first, inv = unique_rows(k[:, active])
        inverse.append(inv + offset)
        offset += len(first)
        parts.append((s, x, base, k[first], g))
    return parts, np.concatenate(inverse)


def run_plan(parts, build, run, row_bytes: int, max_rows: int | None = None) -> np.ndarray:
    """Outputs of every distinct copy in ``parts``, in order: ``build(part, keep_rows)`` makes a tuple of
    tensors, ``run(tensors, owners)`` evaluates a chunk (``owners``: the part index of each row)."""
    import torch

    cap = max(1, BUILD_BYTES // max(1, int(row_bytes)))
    cap = min(cap, max(1, int(max_rows))) if max_rows else cap
    outs, pending, owners, size = [], [], [], 0

    def flush():
        tensors = tuple(torch.cat(t) if len(t) > 1 else t[0] for t in zip(*pending))
        outs.append(run(tensors, np.concatenate(owners)))
        pending.clear()
        owners.clear()

    for i, part in enumerate(parts):
        k, a = part[3], 0
        while a < len(k):
            take = min(cap - size, len(k) - a)
            pending.append(build(part, k[a:a + take]))
            owners.append(np.full(take, i, dtype=np.int64))
            size, a = size + take, a + take
            if size >= cap:
                flush()
                size = 0
    if pending:
        flush()
    return np.concatenate(outs, axis=0)
