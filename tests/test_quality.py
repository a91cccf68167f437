"""Trust metrics: ground truth on hand-built models, reference loops, the sanity check, stability, CLI."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import explainkit as ek
from explainkit.errors import InputError, ParameterError, UnknownNameError
from explainkit.plugins.registry import Explainer, ExplainerSpec, Registry
from explainkit.plugins.runner import run_explainer
from explainkit.trust.quality import agreement, assess

RELEVANT = (0, 1, 2)


# -- hand-built models with known importance --------------------------------------------------------------
class ThreeOfTen(nn.Module):
    """Output depends on features 0, 1, 2 only (the other 7 input weights are exactly zero)."""

    def __init__(self, n_out: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Linear(10, 8, bias=False)
        self.b = nn.Linear(8, n_out, bias=False)
        with torch.no_grad():
            w = torch.zeros(8, 10)
            w[:, :3] = torch.randn(8, 3, generator=g)
            self.a.weight.copy_(w)
            self.b.weight.copy_(torch.randn(n_out, 8, generator=g) * 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def tabular(task="classification"):
    names = [f"f{i}" for i in range(10)]
    std = {"mean": [0.0] * 10, "std": [1.0] * 10}
    if task == "classification":
        return ek.wrap(ThreeOfTen(2), modality="tabular", classes=["no", "yes"], feature_names=names,
                       standardize=std, name="three-of-ten")
    return ek.wrap(ThreeOfTen(1), modality="tabular", task="regression", feature_names=names,
                   standardize=std, name="three-of-ten-reg")


def rows(n=12, seed=0):
    return list(np.random.default_rng(seed).normal(0, 2, size=(n, 10)))


class Planted(nn.Module):
    """Bag-of-embeddings classifier: the label is 'positive' exactly when the token 'zork' is present."""

    def __init__(self, vocab_size: int, plant: int):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.embedding = nn.Embedding(vocab_size, 4, padding_idx=0)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            e = torch.randn(vocab_size, 4, generator=g) * 0.05
            e[0] = 0
            e[plant] = torch.tensor([1.0, 0, 0, 0])
            self.embedding.weight.copy_(e)
            self.fc.weight.copy_(torch.tensor([[-4.0, 0.3, 0, 0], [4.0, -0.3, 0, 0]]))
            self.fc.bias.copy_(torch.tensor([1.0, -1.0]))

    def forward(self, ids, mask=None):
        m = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
        return self.fc((self.embedding(ids) * m[..., None]).sum(dim=1))


WORDS = "the a film movie was is very quite long plot actors story and of zork".split()
TEXTS = ["the film was zork and long", "a very long movie of the zork story", "zork plot actors",
         "the actors was quite zork", "the story is very long and zork of the plot", "movie zork"]


def text_model():
    tok = ek.Tokenizer(WORDS, max_len=32)
    return ek.wrap(Planted(len(tok), tok.index["zork"]), modality="text", classes=["negative", "positive"],
                   tokenizer=tok, name="planted")


# -- a third-party-style plugin that ignores the model ----------------------------------------------------
class InputMagnitude(Explainer):
    """Scores = the input's own magnitude (pixel brightness, |feature|): model-independent by design."""

    def explain(self, model, samples, targets, *, seed=0):
        out = []
        for s in samples:
            v = s.image if s.image is not None else np.abs(np.asarray(s.feature_values, float))
            out.append(ek.Explanation.from_sample(s, np.asarray(v, float).copy()))
        return out


class EdgeDetector(Explainer):
    """Sobel gradient magnitude of the image: an 'explanation' computed from the input alone."""

    def explain(self, model, samples, targets, *, seed=0):
        out = []
        for s in samples:
            img = np.pad(np.asarray(s.image, float), 1, mode="edge")
            gx = img[1:-1, 2:] - img[1:-1, :-2]
            gy = img[2:, 1:-1] - img[:-2, 1:-1]
            out.append(ek.Explanation.from_sample(s, np.hypot(gx, gy)))
        return out


def plugin_registry():
    """A registry with no discovery: two built-ins plus the model-independent plugins."""
    from explainkit_builtins import declarations as d

    reg = Registry(autoload=False)
    for spec in (d.INTEGRATED_GRADIENTS, d.SALIENCY, d.OCCLUSION):
        reg.register(spec, distribution="explainkit-builtins")
    for name, cls in (("input_magnitude", "InputMagnitude"), ("edge_detector", "EdgeDetector")):
        reg.register(ExplainerSpec(name=name, title=name, description=f"{cls}. Model-independent.",
                                   impl=f"{__name__}:{cls}"), distribution="third-party")
    return reg


# -- reference implementations (plain loops) --------------------------------------------------------------
def ref_curve(module, x, order, target, fill, steps, insert=False):
    s = int(np.ceil(len(x) / steps))
    counts = sorted({min(k, len(x)) for k in range(0, len(x) + s, s)})
    vals = []
    for k in counts:
        z = (fill.copy() if insert else x.copy())
        for u in order[:k]:
            z[u] = x[u] if insert else fill[u]
        with torch.no_grad():
            p = torch.softmax(module(torch.tensor(z[None], dtype=torch.float32)), -1)[0, target]
        vals.append(float(p))
    fr = [c / len(x) for c in counts]
    auc = sum((fr[i + 1] - fr[i]) * (vals[i] + vals[i + 1]) / 2 for i in range(len(fr) - 1))
    return np.array(vals), auc


def test_curves_and_faithfulness_match_a_plain_loop():
    m = tabular()
    x = rows(1)[0]
    e = ek.explain(m, x, "integrated_gradients")
    q = e.quality(m, metrics=["deletion", "insertion", "faithfulness"], steps=4, n_random=2, seed=3)
    xs = np.asarray(m.prepare(x).tensor, float)
    fill = np.zeros(10)
    order = list(np.argsort(-e.scores, kind="stable"))
    for curve, insert in ((q.deletion, False), (q.insertion, True)):
        vals, auc = ref_curve(m.module, xs, order, e.target, fill, 4, insert)
        np.testing.assert_allclose(curve.values, vals, atol=1e-6)
        assert curve.auc == pytest.approx(auc, abs=1e-6)
    rng = np.random.default_rng([3, 0])
    perms = [rng.permutation(10) for _ in range(2)]
    rand = np.mean([ref_curve(m.module, xs, list(p), e.target, fill, 4)[0] for p in perms], axis=0)
    np.testing.assert_allclose(q.deletion_random.values, rand, atol=1e-6)
    # faithfulness correlation: Pearson(attribution mass, output drop) over the same random subsets
    rng = np.random.default_rng([3, 0, 7])
    mass, drop = [], []
    with torch.no_grad():
        p0 = float(torch.softmax(m.module(torch.tensor(xs[None], dtype=torch.float32)), -1)[0, e.target])
        for _ in range(50):
            idx = rng.choice(10, size=2, replace=False)    # round(0.25 * 10) units per subset
            z = xs.copy()
            z[idx] = 0.0
            p = float(torch.softmax(m.module(torch.tensor(z[None], dtype=torch.float32)), -1)[0, e.target])
            mass.append(e.scores[idx].sum())
            drop.append(p0 - p)
    assert q.faithfulness == pytest.approx(np.corrcoef(mass, drop)[0, 1], abs=1e-6)


def test_gradient_methods_beat_random_on_three_relevant_features():
    m = tabular()
    ev = ek.evaluate(m, rows(12), ["integrated_gradients", "saliency"], limit=12, n_random=3,
                     metrics=["deletion", "insertion", "faithfulness"])
    for method, s in ev.summary().items():
        assert s["deletion_auc"] < s["deletion_random_auc"] - 0.08, (method, s)
        assert s["insertion_auc"] > s["insertion_random_auc"] + 0.08, (method, s)
    # faithfulness correlation: IG well above the same metric for random scores (tanh makes it < 1)
    faith = np.nanmean([q.faithfulness for q in ev.qualities["integrated_gradients"]])
    noise = []
    for i, x in enumerate(rows(12)):
        e = ek.explain(m, x, "integrated_gradients")
        e.scores = np.random.default_rng(i).normal(size=10)
        noise.append(e.quality(m, metrics=["faithfulness"]).faithfulness)
    assert faith > 0.3 and faith > np.nanmean(noise) + 0.25, (faith, np.nanmean(noise))
    e = ek.explain(m, rows(1)[0], "integrated_gradients")
    assert set(np.argsort(-np.abs(e.scores))[:3]) == set(RELEVANT)


def test_regression_curves_are_normalised_and_beat_random():
    m = tabular("regression")
    ev = ek.evaluate(m, rows(10, seed=1), ["integrated_gradients"], limit=10, n_random=3,
                     metrics=["deletion", "insertion"])
    q = ev.qualities["integrated_gradients"][0]
    assert q.deletion.values[0] == pytest.approx(1.0) and q.deletion.values[-1] == pytest.approx(0.0, abs=1e-9)
    s = ev.summary()["integrated_gradients"]
    assert s["deletion_auc"] < s["deletion_random_auc"] - 0.08


def test_planted_token_is_deleted_first_and_beats_random():
    m = text_model()
    ev = ek.evaluate(m, TEXTS, ["integrated_gradients", "input_x_gradient", "saliency"], limit=len(TEXTS),
                     n_random=3, metrics=["deletion"])
    for method in ("integrated_gradients", "input_x_gradient"):
        for q, text in zip(ev.qualities[method], TEXTS):
            assert q.deletion.values[0] > 0.9                    # 'positive' with the token present
            assert q.deletion.values[1] < 0.5, (method, text)     # gone after removing one token
            assert q.n_units == len(text.split())
        s = ev.summary()[method]
        assert s["deletion_auc"] < s["deletion_random_auc"] - 0.15, s
    # plain saliency is the same gradient for every token of a linear bag of embeddings: the metric
    # shows it is no better than a random order here
    s = ev.summary()["saliency"]
    assert s["deletion_auc"] > s["deletion_random_auc"] - 0.1, s


def test_batched_masking_matches_per_sample_calls():
    m = text_model()
    samples = [m.prepare(t) for t in TEXTS]
    rng = np.random.default_rng(0)
    keeps = [(rng.random((5, s.n_units)) > 0.4).astype(float) for s in samples]
    many = m.predict_masked_many(samples, keeps)
    for s, k, out in zip(samples, keeps, many):
        np.testing.assert_allclose(out, m.predict_masked(s, k), atol=1e-6)


# -- randomization sanity check ---------------------------------------------------------------------------
def test_randomization_leaves_the_users_model_untouched():
    m = tabular()
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    h, rng_state = m.weights_hash(), torch.get_rng_state()
    e = ek.explain(m, rows(1)[0], "integrated_gradients")
    q = e.quality(m, metrics=["randomization"], randomization_steps=3)
    assert q.randomization.applicable and len(q.randomization.rho) == 2     # two layers: b, then a
    assert q.randomization.threshold == pytest.approx(2 / 3)               # few units: 2 null s.d.
    assert q.randomization.layers[0] == ["b"] and q.randomization.layers[-1] == ["b", "a"]
    assert m.weights_hash() == h
    for k, v in m.module.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_black_box_model_says_randomization_is_not_applicable():
    inner = tabular()
    fm = ek.wrap(lambda X: inner.predict(list(X)), modality="tabular", classes=["no", "yes"],
                 feature_names=inner.feature_names, name="black-box")
    e = ek.explain(fm, rows(1)[0], "occlusion")
    q = e.quality(fm)
    assert not q.randomization.applicable and "black-box" in q.randomization.reason
    assert "sanity n/a" in q.badge()
    assert q.deletion is not None and q.stability.zero_spread


def test_model_independent_plugins_are_flagged_and_ig_is_not(mnist_cnn, load_data):
    reg = plugin_registry()
    data = load_data("mnist-cnn")
    samples = [data.samples(mnist_cnn)[i] for i in range(4)]
    for name in ("input_magnitude", "edge_detector"):
        exps = run_explainer(name, mnist_cnn, samples, reg=reg)
        for e, s in zip(exps, samples):
            q = e.quality(mnist_cnn, metrics=["randomization"], registry=reg, sample=s)
            assert q.randomization.flagged and q.randomization.final_rho > 0.99, (name, q.randomization)
            assert "sanity FAILED" in q.badge()
    exps = run_explainer("integrated_gradients", mnist_cnn, samples, reg=reg, n_steps=32)
    for e in exps:
        q = e.quality(mnist_cnn, metrics=["randomization"], registry=reg, randomization_steps=3)
        r = q.randomization
        assert not r.flagged and abs(r.final_rho) < 0.3, r
        assert len(r.rho) == 3 and r.layers[-1][-1] == "features.0"   # cascade down to the first conv


# -- stability --------------------------------------------------------------------------------------------
def test_stability_zero_for_deterministic_nonzero_for_lime():
    m = tabular()
    x = rows(1)[0]
    det = ek.explain(m, x, "integrated_gradients").quality(m, metrics=["stability"])
    assert det.stability.runs == 2 and det.stability.zero_spread and det.stability.mean_rho == pytest.approx(1.0)
    assert np.all(det.stability.std == 0)
    lime = ek.explain(m, x, "lime", n_samples=200).quality(m, metrics=["stability"], stability_runs=3)
    st = lime.stability
    assert st.stochastic and st.runs == 3 and not st.zero_spread and st.spread > 1e-4
    assert st.std.shape == (10,) and st.seeds == [0, 1, 2]


# -- agreement --------------------------------------------------------------------------------------------
def test_agreement_matrix():
    m = tabular()
    x = rows(1)[0]
    exps = [ek.explain(m, x, meth) for meth in ("integrated_gradients", "saliency", "occlusion")]
    a = agreement(exps, k=3)
    mat = np.asarray(a)
    assert mat.shape == (3, 3) and np.allclose(mat, mat.T) and np.allclose(np.diag(mat), 1)
    assert a.labels == ["integrated_gradients", "saliency", "occlusion"]
    assert a.top_k[0, 2] == pytest.approx(1.0)     # IG and occlusion both put the 3 relevant features first
    other = ek.explain(m, rows(2)[1], "saliency")
    with pytest.raises(InputError):
        agreement([exps[0], other])


# -- the result object and errors -------------------------------------------------------------------------
def test_quality_repr_badge_html_and_dict():
    m = tabular()
    e = ek.explain(m, rows(1)[0], "integrated_gradients")
    q = e.quality(m)
    assert repr(q).startswith("<Quality integrated_gradients: deletion AUC ") and "\n" not in repr(q)
    assert "vs random" in q.badge() and "deterministic" in q.badge()
    d = json.loads(json.dumps(q.to_dict()))
    assert d["deletion"]["auc"] == pytest.approx(q.deletion.auc)
    e2 = copy.copy(e)
    e2.method = "<script>x</script>"
    q.method = e2.method
    html = q._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_bad_input_gives_one_clear_error():
    m = tabular()
    e = ek.explain(m, rows(1)[0], "saliency")
    with pytest.raises(UnknownNameError, match="deletion"):
        e.quality(m, metrics=["deleton"])
    with pytest.raises(ParameterError, match="steps"):
        e.quality(m, steps=0)
    with pytest.raises(InputError, match="Explanation"):
        assess(np.zeros(10), m)
    with pytest.raises(InputError, match="tabular input"):
        e.quality(text_model())
    with pytest.raises(ParameterError):
        ek.evaluate(m, rows(3), [], limit=3)


# -- shipped sample models, dataset level and CLI ---------------------------------------------------------
def test_badges_on_sample_models(mnist_cnn, sst2_lstm, load_data):
    for model, name in ((mnist_cnn, "mnist-cnn"), (sst2_lstm, "sst2-lstm")):
        raw, label = load_data(name)[0]
        e = ek.explain(model, raw, "integrated_gradients", n_steps=32)
        q = e.quality(model)
        assert q.deletion.auc < q.deletion_random.auc, (name, q)
        assert q.randomization.applicable and not q.randomization.flagged, (name, q.randomization)
        assert q.stability.zero_spread


def test_evaluate_tables_and_cli(tmp_path, breast_cancer):
    from explainkit.cli.main import main

    ev = ek.evaluate(breast_cancer, ek.datasets.sample_data("breast-cancer-mlp"),
                     ["integrated_gradients", "occlusion"], limit=6)
    df = ev.to_dataframe()
    assert list(df.index) == ["integrated_gradients", "occlusion"] and (df["n"] == 6).all()
    assert len(ev.to_dataframe(per_sample=True)) == 12
    out = tmp_path / "q.json"
    rc = main(["evaluate", "--model", "sample:breast-cancer-mlp", "--methods", "integrated_gradients,saliency",
               "--limit", "4", "--out", str(out)])
    d = json.loads(out.read_text())
    assert rc == 0 and d["n_samples"] == 4 and set(d["summary"]) == {"integrated_gradients", "saliency"}
    assert d["summary"]["saliency"]["deletion_auc"] is not None


def test_curves_split_into_batches_that_fit_memory_and_refuse_what_never_fits(mnist_cnn, load_data, monkeypatch):
    from explainkit.trust import metrics as qm

    ss = [load_data("mnist-cnn").samples(mnist_cnn)[i] for i in range(3)]
    exps = ek.explain(mnist_cnn, [s.raw for s in ss], "saliency")
    whole = qm.perturbation_curves(mnist_cnn, ss, exps, steps=20, n_random=1)
    per_sample = 2 * 2 * len(qm.unit_counts(784, 20)) * (784 + 4 * 784)
    monkeypatch.setattr(qm, "MAX_CURVE_BYTES", per_sample + 1)            # one sample per batch now
    assert qm._curve_batches(ss, exps, 20, 4, 16) == [(0, 1), (1, 2), (2, 3)]
    split = qm.perturbation_curves(mnist_cnn, ss, exps, steps=20, n_random=1)
    for a, b in zip(whole, split):
        np.testing.assert_allclose(a["deletion"].values, b["deletion"].values, atol=1e-9)
        np.testing.assert_allclose(a["insertion_random"].values, b["insertion_random"].values, atol=1e-9)
    monkeypatch.setattr(qm, "MAX_CURVE_BYTES", 1 << 20)
    with pytest.raises(ParameterError, match="curve steps over 784 units") as err:
        exps[0].quality(mnist_cnn, metrics=["deletion"], steps=784)
    assert "pass steps=" in err.value.fix
