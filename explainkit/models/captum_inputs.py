"""captum inputs that describe the same prompt and units as an explainkit :class:`PromptEncoding`, so that
explainkit's language-model numbers can be checked against captum's ``LLMAttribution`` and
``LLMGradientAttribution`` called directly (the tests and ``benchmarks/bench_llm.py`` do)."""
from __future__ import annotations

import numpy as np

__all__ = ["template_input", "token_input"]


def template_input(enc):
    """captum's ``TextTemplateInput`` over the chat template, one value per unit (each with the text up to
    the next unit, so that the values join to the prompt): what ``LLMAttribution(FeatureAblation)`` and
    ``(ShapleyValueSampling)`` perturb; its baseline "" deletes a unit, as explainkit does."""
    from captum.attr import TextTemplateInput

    prompt = enc.prompt
    ends = [0] + [e for _, e in enc.unit_spans]
    values = [prompt[ends[i]:ends[i + 1]] for i in range(enc.n_units)]
    values[-1] += prompt[ends[-1]:]
    esc = lambda s: s.replace("{", "{{").replace("}", "}}")  # noqa: E731
    tpl = esc(enc.templated[:enc.start]) + "{}" * len(values) + esc(enc.templated[enc.start + len(prompt):])
    return TextTemplateInput(tpl, values=values)


def token_input(lm, enc):
    """captum's ``TextTokenInput`` of the templated prompt whose interpretable tokens are exactly the units'
    (``skip_tokens`` works by token id, and the system message shares ids such as "You" with prompts), and
    the ``[tokens, units]`` 0/1 matrix that sums its per-token columns into explainkit's units."""
    import torch
    from captum.attr import TextTokenInput

    tin = TextTokenInput(enc.templated, lm.tokenizer)
    pos = sorted(p for u in enc.unit_pos for p in u)
    mask = torch.zeros_like(tin.inp_tensor, dtype=torch.bool)
    mask[0, pos] = True
    tin.itp_mask, tin.itp_tensor = mask, tin.inp_tensor[mask].unsqueeze(0)
    tin.values = lm.tokenizer.convert_ids_to_tokens(tin.itp_tensor[0].tolist())
    tin.n_itp_features = len(tin.values)
    to_units = np.zeros((len(pos), enc.n_units))
    for u, ps in enumerate(enc.unit_pos):
        to_units[[pos.index(q) for q in ps], u] = 1.0
    return tin, to_units
