"""The conformance checks that fit a generation explainer's output (a :class:`GenerationExplanation`).

``check_explainer`` runs a generation explainer on the sample language model (``check_inputs.LM_SAMPLE``,
when the ``llm`` extra is installed) with one short prompt and a few answer tokens, and checks: one
result per prompt, ``matrix`` of shape [answer tokens x units] with finite numbers, ``scores`` per
unit, a non-empty answer; identical results for the same seed; a JSON round trip that keeps the matrix,
the answer and the units.
"""
from __future__ import annotations

import numpy as np

from explainkit.enums import ResultKind

__all__ = ["GEN_MAX_NEW_TOKENS", "GEN_CHEAP_N", "cheap_generation", "output_problem", "same_generation", "prime"]

GEN_MAX_NEW_TOKENS = 3      # answer tokens during the check
GEN_CHEAP_N = 4             # budget parameters (n_steps, n_samples) during the check: each is a model pass


def cheap_generation(spec, cheap: dict) -> dict:
    """The check's generation inputs and smaller budgets (a language model's pass costs far more)."""
    if spec.result is not ResultKind.GENERATION:
        return cheap
    small = {k: max(min(v, GEN_CHEAP_N), int(np.ceil(p.min or 1))) for p in spec.params
             for k, v in cheap.items() if k == p.name}
    return {**cheap, **small, "max_new_tokens": GEN_MAX_NEW_TOKENS}


def prime(model) -> None:
    """Run one tiny attention pass on a language model before the "model unchanged" snapshot: transformers
    installs its output-capturing forward hooks on the first ``output_attentions=True`` call and keeps them,
    so without this the first attention explainer checked in a process would be blamed for them."""
    from explainkit.enums import Capability

    if getattr(model, "generates", False) and Capability.ATTENTION in model.capabilities:
        model.attentions(model.encode("Hi").ids[:8])


def output_problem(out, samples) -> str | None:
    """Why the results are not one GenerationExplanation per prompt of the declared shape, or None."""
    from explainkit.plugins.generation import GenerationExplanation

    if len(out) != len(samples):
        return f"{len(out)} results for {len(samples)} prompts"
    for e in out:
        if not isinstance(e, GenerationExplanation):
            return f"a {type(e).__name__}, not a GenerationExplanation"
        want = (len(e.answer_tokens), len(e.unit_texts))
        if not e.answer_tokens or not e.unit_texts:
            return "no answer tokens or no prompt units"
        if e.matrix is None or tuple(e.matrix.shape) != want or not np.isfinite(e.matrix).all():
            return f"matrix {None if e.matrix is None else tuple(e.matrix.shape)} (expected {want}) or not finite"
        if tuple(e.scores.shape) != (want[1],) or not np.isfinite(e.scores).all():
            return f"scores {tuple(e.scores.shape)} (expected ({want[1]},)) or not finite"
    return None


def same_generation(a, b) -> bool:
    """The parts of two generation explanations that a seed, or a JSON round trip, must keep identical."""
    if getattr(a, "kind", None) is not ResultKind.GENERATION:
        return True
    return (np.array_equal(a.matrix, b.matrix) and a.answer_text == b.answer_text
            and list(a.answer_ids) == list(b.answer_ids) and a.unit_spans == b.unit_spans
            and a.target_mode == b.target_mode)
