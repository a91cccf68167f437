"""Attention explainers: the raw per-head weights, and attention rollout (Abnar & Zuidema 2020).

Both read ``model.attention(samples)``: one ``[layers, heads, T, T]`` array per sample over its real
tokens (row = query, column = key; rows sum to 1).
"""
from __future__ import annotations

import numpy as np

from explainkit import AttentionExplanation, Capability, Explainer
from explainkit.errors import NotApplicableError, PluginError

__all__ = ["Attention", "AttentionRollout", "rollout", "fuse_heads"]

MEAN, MAX, MIN = "mean", "max", "min"
CLS = "cls"
_FUSE = {MEAN: np.mean, MAX: np.max, MIN: np.min}


def _attention(model, samples) -> list[np.ndarray]:
    """The model's attention per sample, checked: ``[L,H,T,T]`` with T the sample's token count."""
    if Capability.ATTENTION not in model.capabilities:
        raise NotApplicableError(f"Model {model.name!r} lacks attention weights (it is not a transformer "
                                 "exposing attention_weights).",
                                 "use a model with attention, or a gradient or perturbation explainer.")
    mats = model.attention(samples)
    for a, s in zip(mats, samples):
        t = s.n_units
        if np.ndim(a) != 4 or a.shape[-2:] != (t, t):
            raise PluginError(f"The model's attention has shape {np.shape(a)}; expected [layers, heads, {t}, {t}].",
                              "make attention_weights(ids, mask) return [N, L, H, T, T].")
    return [np.asarray(a, dtype=np.float64) for a in mats]


def fuse_heads(att: np.ndarray, how: str = MEAN) -> np.ndarray:
    """Fuse the heads of ``[L,H,T,T]`` attention into ``[L,T,T]`` (mean, max or min)."""
    return _FUSE[how](att, axis=1)


def rollout(att: np.ndarray, head_fusion: str = MEAN) -> np.ndarray:
    """Cumulative rollout after each layer ``[L,T,T]``: fuse heads, add I, renormalize rows, multiply."""
    fused = fuse_heads(att, head_fusion)
    t = fused.shape[-1]
    out = np.empty_like(fused)
    acc = np.eye(t)
    for layer, a in enumerate(fused):
        a = a + np.eye(t)
        a = a / a.sum(axis=-1, keepdims=True)
        acc = a @ acc
        out[layer] = acc
    return out


def _pooled(model, matrix: np.ndarray) -> np.ndarray:
    """Per-token scores from a final ``[T,T]`` matrix: the pooled query rows (first row if CLS pooling)."""
    pooling = str(model.config.get("pooling", MEAN)).lower()
    return matrix[0] if pooling == CLS else matrix.mean(axis=0)


class Attention(Explainer):
    """Raw attention weights per layer and head; scores = attention received in the last layer."""

    def explain(self, model, samples, targets, *, seed=0):
        out = []
        for sample, att in zip(samples, _attention(model, samples)):
            last = att[-1].mean(axis=0)                      # [T,T], heads averaged
            scores = last.mean(axis=0)                       # attention received, averaged over queries
            out.append(AttentionExplanation.from_sample(sample, scores, matrices=att, rollout=False))
        return out


class AttentionRollout(Explainer):
    """Attention rollout across layers; scores = rollout flowing into the pooled representation."""

    def explain(self, model, samples, targets, *, seed=0, head_fusion=MEAN):
        out = []
        for sample, att in zip(samples, _attention(model, samples)):
            roll = rollout(att, head_fusion)                 # [L,T,T]
            out.append(AttentionExplanation.from_sample(sample, _pooled(model, roll[-1]),
                                                        matrices=roll[:, None], rollout=True,
                                                        extras={"head_fusion": head_fusion}))
        return out
