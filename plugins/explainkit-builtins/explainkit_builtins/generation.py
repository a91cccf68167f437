"""Generation explainers: which prompt units produced each token of a language model's answer.

Each receives ``(model, prompts, tasks)``: ``model`` is an ``explainkit`` CausalLM, ``tasks[i]`` a
GenerationTask (the encoded prompt with its units, the answer ids, an optional contrast). Each returns a
GenerationExplanation with ``matrix [answer tokens x units]`` and ``scores [units]`` (the whole answer).

- Perturbation (feature ablation, Shapley value sampling) delete units and read the answer's token
  log-probabilities with ``model.score_masked`` (batched copies, KV cache of the unmasked prefix reused).
- Gradients (input x gradient, integrated gradients) act on the token embeddings of the units (the
  template's tokens stay fixed); one forward per batch of path points (sized by memory), one backward
  per answer token.
- Attention: the last layer's, or the rollout through all layers, from answer positions to prompt tokens.
"""
from __future__ import annotations

import numpy as np

from explainkit.plugins.generation import GenerationExplanation

__all__ = ["FeatureAblation", "ShapleyValueSampling", "InputXGradient", "IntegratedGradients", "LastLayerAttention",
           "AttentionRollout"]


def _result(task, matrix, scores, **extras) -> GenerationExplanation:
    return GenerationExplanation(scores=np.asarray(scores, dtype=np.float64), modality="text",
                                 matrix=np.asarray(matrix, dtype=np.float64), answer_tokens=list(task.answer_tokens),
                                 extras=extras)


class _Perturbation:
    def _evaluate(self, model, task, keeps):
        """Per-copy answer token log-probs ``[M, A]`` and the objective ``[M]`` (contrast subtracted)."""
        lp = model.score_masked(task.encoding, keeps, task.answer_ids)
        c = model.score_masked(task.encoding, keeps, task.contrast_ids) if task.contrast_ids else None
        return lp, task.objective(lp, c)


class FeatureAblation(_Perturbation):
    """Leave one unit out: score = f(prompt) - f(prompt without the unit)."""

    def explain(self, model, prompts, tasks, seed=0, **_):
        out = []
        for task in tasks:
            u = task.encoding.n_units
            keeps = ~np.eye(u, dtype=bool)
            lp, obj = self._evaluate(model, task, np.vstack([np.ones((1, u), bool), keeps]))
            out.append(_result(task, (lp[0][None] - lp[1:]).T, obj[0] - obj[1:], copies=u + 1))
        return out


class ShapleyValueSampling(_Perturbation):
    """Shapley values from random unit orders: each unit's marginal effect when added to those before it
    (the all-removed prompt first); permutations from ``torch.randperm`` seeded with ``seed``."""

    def explain(self, model, prompts, tasks, seed=0, n_samples=25, **_):
        import torch
        out = []
        for task in tasks:
            u = task.encoding.n_units
            g = torch.Generator().manual_seed(int(seed))
            perms = [torch.randperm(u, generator=g).numpy() for _ in range(int(n_samples))]
            rows, index = [np.zeros(u, bool)], {}
            index[rows[0].tobytes()] = 0
            plan = []
            for perm in perms:
                keep, ids = np.zeros(u, bool), []
                for j in perm:
                    keep = keep.copy()
                    keep[j] = True
                    key = keep.tobytes()
                    if key not in index:                  # each distinct copy is evaluated once
                        index[key] = len(rows)
                        rows.append(keep)
                    ids.append(index[key])
                plan.append((perm, ids))
            lp, obj = self._evaluate(model, task, np.vstack(rows))
            matrix, scores = np.zeros((lp.shape[1], u)), np.zeros(u)
            for perm, ids in plan:
                prev = 0
                for j, r in zip(perm, ids):
                    matrix[:, j] += lp[r] - lp[prev]
                    scores[j] += obj[r] - obj[prev]
                    prev = r
            out.append(_result(task, matrix / len(perms), scores / len(perms), copies=len(rows),
                               n_samples=int(n_samples)))
        return out


def _unit_matrix(task, n_tokens):
    """``[T, U]`` 0/1: which sequence position belongs to which unit."""
    m = np.zeros((n_tokens, task.encoding.n_units))
    for u, pos in enumerate(task.encoding.unit_pos):
        m[pos, u] = 1.0
    return m


BASELINES = ("zero", "token0")     # IG's starting point at the unit positions (the template is never moved)


class _Gradient:
    def _path_grads(self, model, task, answer, alphas, weights, baseline="zero"):
        """Sum over path points of weight x gradient of each answer token's log-prob w.r.t. the unit
        embeddings, times (input - baseline): ``[A, T]`` per-position attributions. ``baseline`` at the
        unit positions: ``"zero"`` (zero embeddings) or ``"token0"`` (the embedding of token id 0, what
        captum's ``TextTokenInput`` puts there); the template's and the answer's embeddings never move."""
        import torch
        enc = task.encoding
        ids = list(enc.ids) + list(answer)
        emb = model.embed(ids)                                        # [T, D]
        units = [p for pos in enc.unit_pos for p in pos]
        base = emb.clone()
        base[units] = 0.0 if baseline == "zero" else model.embed([0])[0]         # "token0"
        delta = emb - base                                            # zero outside the units
        total = torch.zeros(len(answer), len(ids), dtype=torch.float64)
        rows = model.batch_rows(len(ids), grad=True)                  # path points per pass, by memory
        for i in range(0, len(alphas), rows):
            a = torch.tensor(alphas[i:i + rows], dtype=emb.dtype).view(-1, 1, 1)
            w = torch.tensor(weights[i:i + rows], dtype=emb.dtype).view(-1, 1, 1)
            x = (base + a * delta).detach().requires_grad_(True)
            with torch.enable_grad():
                lp = model.logprobs_from_embeds(x, len(enc.ids), list(answer))   # [B, A]
                for k in range(len(answer)):
                    (g,) = torch.autograd.grad(lp[:, k].sum(), x, retain_graph=k + 1 < len(answer))
                    total[k] += ((g * w).sum(0) * delta).sum(-1).double()
            del lp, x
        return total.numpy()

    def _explain(self, model, tasks, alphas, weights, baseline="zero", extras=None):
        out = []
        for task in tasks:
            per_pos = self._path_grads(model, task, task.answer_ids, alphas, weights, baseline)
            units = _unit_matrix(task, per_pos.shape[1])
            matrix = per_pos @ units
            scores = matrix.sum(0)
            if task.contrast_ids:
                scores = scores - (self._path_grads(model, task, task.contrast_ids, alphas, weights, baseline)
                                   @ _unit_matrix(task, len(task.encoding.ids) + len(task.contrast_ids))).sum(0)
            out.append(_result(task, matrix, scores, **(extras or {})))
        return out


class InputXGradient(_Gradient):
    """Embedding x gradient of each answer token's log-probability, summed over a unit's tokens (captum's
    LayerGradientXActivation on the embedding layer)."""

    def explain(self, model, prompts, tasks, seed=0, **_):
        return self._explain(model, tasks, [1.0], [1.0])


class IntegratedGradients(_Gradient):
    """Integrated gradients (Gauss-Legendre path points, as captum's default) from ``baseline`` at the unit
    positions: ``"zero"`` embeddings (the default: no token at all, so the scores do not depend on which
    token the vocabulary happens to number 0), or ``"token0"``, the embedding of token id 0, captum's
    ``TextTokenInput`` baseline (what ``LLMGradientAttribution(LayerIntegratedGradients)`` integrates from)."""

    def explain(self, model, prompts, tasks, seed=0, n_steps=50, baseline="zero", **_):
        if baseline not in BASELINES:
            from explainkit.errors import ParameterError
            raise ParameterError(f"Unknown IG baseline {baseline!r}.", f"use one of {', '.join(BASELINES)}.")
        x, w = np.polynomial.legendre.leggauss(int(n_steps))
        alphas, weights = list((x + 1) / 2), list(w / 2)
        return self._explain(model, tasks, alphas, weights, baseline,
                             extras={"n_steps": int(n_steps), "baseline": baseline})


class _Attention:
    def _matrix(self, model, task, att):
        """Rows: the positions that predict each answer token; columns: units (attention summed)."""
        n_prompt = len(task.encoding.ids)
        rows = att[n_prompt - 1:n_prompt - 1 + len(task.answer_ids)]
        return rows @ _unit_matrix(task, att.shape[-1])

    def _attn(self, model, task):
        return model.attentions(list(task.encoding.ids) + list(task.answer_ids[:-1]))


class LastLayerAttention(_Attention):
    """The last layer's attention (mean over heads) from each answer position to the units."""

    def explain(self, model, prompts, tasks, seed=0, **_):
        out = []
        for task in tasks:
            m = self._matrix(model, task, self._attn(model, task)[-1])
            out.append(_result(task, m, m.mean(0)))
        return out


class AttentionRollout(_Attention):
    """Attention rollout (Abnar & Zuidema 2020): heads averaged, the residual identity added, rows
    re-normalised, layers multiplied; from each answer position to the units."""

    def explain(self, model, prompts, tasks, seed=0, residual=0.5, **_):
        out = []
        for task in tasks:
            att = self._attn(model, task)
            eye = np.eye(att.shape[-1])
            roll = eye
            for layer in att:
                a = (1 - residual) * layer + residual * eye
                roll = (a / a.sum(-1, keepdims=True)) @ roll
            m = self._matrix(model, task, roll)
            out.append(_result(task, m, m.mean(0)))
        return out
