"""kernel_shap, lime, attention and attention_rollout on the shipped sample models and known-answer toys."""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

import explainkit
from explainkit.data import datasets
from explainkit.errors import NotApplicableError, ParameterError

torch = pytest.importorskip("torch")
shap = pytest.importorskip("shap")
lime_tabular = pytest.importorskip("lime.lime_tabular")
lime_image = pytest.importorskip("lime.lime_image")


def _first(load_data, name, i=0):
    raw, label = load_data(name)[i]
    return raw, label


def _f(model, raw, target):
    out = model.predict([raw])[0]
    return float(out[target]) if model.task is explainkit.Task.CLASSIFICATION else float(out)


def _rel(a, b):
    return abs(a - b) / max(1.0, abs(b))


# -- kernel_shap ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [
    ("diabetes-mlp", {}),
    ("breast-cancer-mlp", {"n_samples": 400}),
    ("mnist-cnn", {"patch_size": 7, "n_samples": 500}),
    ("mnist-cnn", {"n_samples": 8}),               # fewer coalitions than patches: still efficient
    ("mnist-mlp", {"segmentation": "superpixels", "n_segments": 20}),
    ("sst2-lstm", {"n_samples": 300}),
    ("sst2-transformer", {"n_samples": 300}),
])
def test_kernel_shap_efficiency(load_model, load_data, name, params):
    model = load_model(name)
    raw, _ = _first(load_data, name, 3)
    e = explainkit.explain(model, raw, "kernel_shap", **params)
    t = e.target if e.target is not None else 0
    fx = _f(model, raw, t)
    total = e.base_value + (e.extras["unit_scores"].sum() if "unit_scores" in e.extras else e.scores.sum())
    assert _rel(total, fx) < 1e-4
    # base value = the model on the all-absent input (the fill baseline)
    s = model.prepare(raw)
    m = e.extras["n_units"]
    groups = e.extras.get("segments")
    absent = model.predict_masked(s, np.zeros((1, m)), groups=groups)
    f0 = float(absent[0, t]) if model.task is explainkit.Task.CLASSIFICATION else float(absent[0])
    assert _rel(e.base_value, f0) < 1e-6
    if groups is not None:          # every pixel carries its segment's value
        assert e.scores.shape == s.image.shape[:2]
        np.testing.assert_array_equal(e.scores, e.extras["unit_scores"][groups])


def _exact_shapley(value, m):
    phi = np.zeros(m)
    for i in range(m):
        for z, f in value.items():
            if z[i]:
                continue
            k = sum(z)
            with_i = z[:i] + (1,) + z[i + 1:]
            phi[i] += math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) * (value[with_i] - f)
    return phi


def test_kernel_shap_exact_enumeration_equals_shapley_values(diabetes, load_data):
    raw, _ = _first(load_data, "diabetes-mlp", 5)
    e = explainkit.explain(diabetes, raw, "kernel_shap")
    assert e.extras["exact"] and e.extras["n_units"] == 10
    s = diabetes.prepare(raw)
    coalitions = list(itertools.product((0, 1), repeat=10))                      # all 1,024
    out = diabetes.predict_masked(s, np.asarray(coalitions, dtype=np.float32))
    phi = _exact_shapley(dict(zip(coalitions, out.astype(np.float64))), 10)
    scale = np.abs(phi).max()
    np.testing.assert_allclose(e.scores, phi, rtol=1e-4, atol=1e-4 * scale)
    # exact: every seed gives the same answer
    e2 = explainkit.explain(diabetes, raw, "kernel_shap", seed=7)
    np.testing.assert_allclose(e2.scores, e.scores, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("l1_ours,l1_shap", [("none", False), ("auto", "aic")])
def test_kernel_shap_matches_shap_called_directly(breast_cancer, load_data, l1_ours, l1_shap):
    model = breast_cancer
    raw, _ = _first(load_data, "breast-cancer-mlp", 2)
    # estimator='shap' is the shap.KernelExplainer path (the default estimator is explainkit's own, checked
    # against exact Shapley values in tests/test_uncertainty.py)
    e = explainkit.explain(model, raw, "kernel_shap", seed=3, n_samples=600, l1_reg=l1_ours, estimator="shap")
    t = e.target
    mean = np.asarray(model.standardize["mean"], dtype=np.float64)    # the fill: the training mean

    def f(rows):
        return model.predict(list(rows))[:, t]

    state = np.random.get_state()
    np.random.seed(3)
    try:
        ke = shap.KernelExplainer(f, mean[None])
        direct = ke.shap_values(np.asarray(raw, dtype=np.float64), nsamples=600, l1_reg=l1_shap, silent=True)
    finally:
        np.random.set_state(state)
    np.testing.assert_allclose(e.base_value, float(ke.expected_value), rtol=1e-5)
    np.testing.assert_allclose(e.scores, direct, rtol=1e-4, atol=1e-5)


def test_kernel_shap_seeded(breast_cancer, load_data):
    raw, _ = _first(load_data, "breast-cancer-mlp", 1)
    a = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=300, seed=1)
    b = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=300, seed=1)
    c = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=300, seed=2)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.allclose(a.scores, c.scores)
    assert not a.extras["exact"]


# -- lime ----------------------------------------------------------------------------------------------
def test_lime_tabular_matches_lime_called_directly(breast_cancer, load_data):
    model = breast_cancer
    raw, _ = _first(load_data, "breast-cancer-mlp", 4)
    e = explainkit.explain(model, raw, "lime", seed=5, n_samples=800, num_features=8)
    mean, sd = (np.asarray(model.standardize[k], dtype=np.float64) for k in ("mean", "std"))
    ref = lime_tabular.LimeTabularExplainer(np.stack([mean - sd, mean + sd]), mode="classification",
                                            feature_names=model.feature_names, discretize_continuous=False,
                                            random_state=5)
    r = ref.explain_instance(np.asarray(raw, dtype=np.float64), lambda rows: model.predict(list(rows)),
                             labels=(e.target,), num_features=8, num_samples=800)
    ref_w = dict(r.local_exp[e.target])
    assert [int(i) for i, _ in r.local_exp[e.target]] == e.extras["selected"]
    ours = {i: e.scores[i] for i in range(len(e.scores)) if e.scores[i] != 0}
    assert set(ours) == set(ref_w)
    for i, w in ref_w.items():
        assert abs(ours[i] - w) < 1e-6
    assert abs(e.base_value - r.intercept[e.target]) < 1e-6
    assert abs(e.extras["score"] - r.score) < 1e-6


def _patches(image, p=7):
    h, w = image.shape[:2]
    rr, cc = np.meshgrid(np.arange(h) // p, np.arange(w) // p, indexing="ij")
    return rr * (-(-w // p)) + cc


def test_lime_image_matches_lime_called_directly(mnist_cnn, load_data):
    raw, _ = _first(load_data, "mnist-cnn", 0)
    e = explainkit.explain(mnist_cnn, raw, "lime", seed=11, n_samples=300, patch_size=7, num_features=16)
    img = np.asarray(mnist_cnn.prepare(raw).image, dtype=np.float64)
    ref = lime_image.LimeImageExplainer(random_state=11, feature_selection="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = ref.explain_instance(img, lambda ims: mnist_cnn.predict(list(np.asarray(ims)[..., 0])),
                                 labels=(e.target,), top_labels=None, hide_color=0, num_features=16,
                                 num_samples=300, batch_size=300, segmentation_fn=_patches, random_seed=11)
    ref_w = np.zeros(16)
    for i, w in r.local_exp[e.target]:
        ref_w[i] = w
    np.testing.assert_allclose(e.extras["unit_scores"], ref_w, atol=1e-6)
    np.testing.assert_allclose(e.base_value, r.intercept[e.target], atol=1e-6)
    np.testing.assert_array_equal(e.extras["segments"], _patches(img))


@pytest.mark.parametrize("name", ["sst2-lstm", "breast-cancer-mlp", "mnist-mlp"])
def test_lime_seeded(load_model, load_data, name):
    model = load_model(name)
    raw, _ = _first(load_data, name, 6)
    a = explainkit.explain(model, raw, "lime", seed=0, n_samples=200)
    b = explainkit.explain(model, raw, "lime", seed=0, n_samples=200)
    c = explainkit.explain(model, raw, "lime", seed=1, n_samples=200)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, c.scores)
    assert 0 < np.count_nonzero(a.extras.get("unit_scores", a.scores)) <= 10
    assert np.isfinite(a.extras["score"]) and np.isfinite(a.extras["local_pred"])


def test_lime_text_keeps_the_samples_tokens(sst2_lstm):
    text = "a gripping , beautifully acted film that never lets up"
    e = explainkit.explain(sst2_lstm, text, "lime", n_samples=300, num_features=20)
    assert e.tokens == sst2_lstm.prepare(text).tokens
    assert np.count_nonzero(e.scores) == len(e.tokens)          # every token kept: num_features >= T
    # the local linear model reproduces the model's output on the full text reasonably
    assert abs(e.extras["local_pred"] - e.probabilities[e.target]) < 0.25


class _RowCounter:
    """Counts the rows that reach a module's forward pass."""

    def __init__(self, module):
        self.rows = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, _module, args):
        self.rows += int(args[0].shape[0])


@pytest.mark.parametrize("name,index", [("sst2-transformer", 0), ("sst2-lstm", 9)])
def test_lime_text_dedupe_keeps_limes_numbers(load_model, load_data, name, index):
    """Repeated masks are run once, and LIME's weights equal lime's own LimeTextExplainer on the same game
    (each token one word, a removed token set to the padding id) that runs every copy."""
    from lime.lime_text import LimeTextExplainer

    model = load_model(name)
    sample = model.prepare(load_data(name)[index][0])
    m, x, pad = sample.n_units, torch.as_tensor(sample.tensor), int(model.tokenizer.pad_id)
    explainkit.explain(model, sample, "lime", n_samples=1000, seed=3)      # first use: sharing checks its bits
    counter = _RowCounter(model.module.fc)          # the head: one row per copy (the LSTM shares prefixes)
    try:
        e = explainkit.explain(model, sample, "lime", n_samples=1000, seed=3)
        ours_rows = counter.rows
    finally:
        counter.handle.remove()

    def classify(strings):
        keep = torch.as_tensor(np.asarray([[w != "_" for w in s.split(" ")] for s in strings]))
        ids = torch.where(keep, x[None], torch.full_like(x, pad)[None])
        with torch.no_grad():
            return model.to_output(model.forward(ids, torch.ones_like(ids, dtype=torch.bool)))

    lime = LimeTextExplainer(split_expression=lambda s: s.split(" "), bow=False, mask_string="_", random_state=3)
    ref = lime.explain_instance(" ".join(f"t{k}" for k in range(m)), classify, labels=(e.target,),
                                num_features=10, num_samples=1000)
    want = np.zeros(m)
    for i, w in ref.local_exp[e.target]:
        want[int(i)] = w
    np.testing.assert_allclose(e.scores, want, rtol=0, atol=1e-10)
    assert abs(e.base_value - ref.intercept[e.target]) < 1e-10
    rs = np.random.RandomState(3)                     # LIME's masks, drawn again: each distinct one ran once
    masks = np.ones((1000, m), bool)
    for i, size in enumerate(rs.randint(1, m + 1, 999), start=1):
        masks[i, rs.permutation(m)[:size]] = False
    assert ours_rows == len(np.unique(masks, axis=0)) + 1          # + the runner's prediction of the input
    assert m > 10 or ours_rows <= 2 ** m + 1 < 1000


def test_predict_masked_runs_each_distinct_copy_once(sst2_transformer, mnist_cnn, load_data):
    """Across the whole request, not per chunk: rows repeated in different chunks are run once, and every
    row gets the output of its own copy."""
    for model, raw, width in ((sst2_transformer, load_data("sst2-transformer")[0][0], None),
                              (mnist_cnn, load_data("mnist-cnn")[0][0], 49)):
        s = model.prepare(raw)
        u = width or s.n_units
        groups = None if width is None else (np.arange(28)[:, None] // 4) * 7 + np.arange(28)[None] // 4
        rng = np.random.default_rng(0)
        distinct = rng.random((6, u)) > 0.5
        keep = distinct[rng.integers(0, 6, 40)]
        counter = _RowCounter(model.module)
        try:
            out = model.predict_masked(s, keep, groups=groups, batch_size=8)     # 5 chunks of 8 rows
        finally:
            counter.handle.remove()
        assert counter.rows <= 6 + (1 if width else 0)     # (+ the incremental engine's one-off check)
        one_by_one = np.concatenate([model.predict_masked(s, k[None], groups=groups) for k in keep])
        np.testing.assert_allclose(out, one_by_one, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method,params", [("kernel_shap", {"n_samples": 300}), ("lime", {"n_samples": 300}),
                                           ("occlusion", {}), ("feature_ablation", {})])
@pytest.mark.parametrize("name", ["sst2-transformer", "mnist-cnn", "breast-cancer-mlp"])
def test_same_seed_gives_the_same_bits(load_model, load_data, name, method, params):
    model = load_model(name)
    raw = load_data(name)[2][0]
    a = explainkit.explain(model, raw, method, seed=5, **params)
    b = explainkit.explain(model, raw, method, seed=5, **params)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert np.isfinite(a.scores).all() and np.abs(a.scores).max() > 0


def test_occlusion_scores_logits_as_captum_does(sst2_transformer, load_data):
    """Torch text: windows over the padded batch, raw outputs, the same numbers as captum's Occlusion."""
    import captum.attr as ca

    raws = [load_data("sst2-transformer")[i][0] for i in (0, 9)]
    got = explainkit.explain(sst2_transformer, raws, "occlusion", window=3, stride=2)
    ids, extra = sst2_transformer.collate(raws)
    targets = [e.target for e in got]
    want = ca.Occlusion(sst2_transformer.forward).attribute(
        ids, sliding_window_shapes=(3,), strides=(2,), baselines=int(sst2_transformer.tokenizer.pad_id),
        target=targets, additional_forward_args=extra).detach().numpy()
    for e, w in zip(got, want):
        np.testing.assert_allclose(e.scores, w[:len(e.scores)], rtol=0, atol=1e-5)
        assert e.extras["output_space"] == "logit"


# -- black-box scikit-learn models ---------------------------------------------------------------------
def test_black_box_linear_regression_has_known_shapley_values():
    from sklearn.linear_model import LinearRegression

    train, held = datasets.diabetes("train"), datasets.diabetes("heldout")
    x_train = np.asarray(train.raws)
    reg = LinearRegression().fit(x_train, train.labels)
    model = explainkit.wrap(reg.predict, modality="tabular", task="regression",
                            feature_names=train.feature_names, background=x_train)
    raw = np.asarray(held.raws[0])
    e = explainkit.explain(model, raw, "kernel_shap", n_background=len(x_train))
    # interventional Shapley values of a linear model: w_i * (x_i - E[x_i]) over the background
    np.testing.assert_allclose(e.scores, reg.coef_ * (raw - x_train.mean(axis=0)), rtol=1e-6, atol=1e-6)
    assert abs(e.base_value - reg.predict(x_train).mean()) < 1e-6
    assert e.extras["exact"] and e.extras["background_rows"] == len(x_train)
    # lime on the same black box ranks the features like the true linear effects (weight * std)
    le = explainkit.explain(model, raw, "lime", n_samples=2000, num_features=10)
    truth = np.abs(reg.coef_ * x_train.std(axis=0))
    assert set(np.argsort(-np.abs(le.scores))[:3]) == set(np.argsort(-truth)[:3])


def test_black_box_predict_proba_classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train, held = datasets.breast_cancer("train"), datasets.breast_cancer("heldout")
    x_train = np.asarray(train.raws)
    with threadpool_limits(1):                 # BLAS threads crawl on a shared machine
        clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_train, train.labels)
    model = explainkit.wrap(clf.predict_proba, modality="tabular", classes=train.class_names,
                            feature_names=train.feature_names, background=x_train)
    raw = np.asarray(held.raws[0])
    e = explainkit.explain(model, raw, "kernel_shap", n_samples=500, n_background=20)
    p = clf.predict_proba(raw[None])[0, e.target]
    assert abs(e.base_value + e.scores.sum() - p) < 1e-6
    one = explainkit.explain(model, raw, "kernel_shap", n_samples=500, n_background=1)
    assert abs(one.base_value - clf.predict_proba(x_train.mean(axis=0)[None])[0, e.target]) < 1e-9
    le = explainkit.explain(model, raw, "lime", n_samples=500)
    assert np.count_nonzero(le.scores) == 10 and 0 <= le.extras["score"] <= 1
    # no background and no standardization: lime cannot know the features' scale
    bare = explainkit.wrap(clf.predict_proba, modality="tabular", classes=train.class_names,
                           feature_names=train.feature_names)
    with pytest.raises(NotApplicableError, match="background"):
        explainkit.explain(bare, raw, "lime")
    with pytest.raises(ParameterError):
        explainkit.explain(model, raw, "kernel_shap", l1_reg="lasso")


# -- attention -----------------------------------------------------------------------------------------
def test_attention_rows_sum_to_one_over_real_tokens(sst2_transformer):
    texts = ["a masterpiece .", "the plot is thin , the acting wooden and the ending far too long"]
    batch = explainkit.explain(sst2_transformer, texts, "attention")
    for text, e in zip(texts, batch):
        t = len(sst2_transformer.prepare(text).tokens)
        assert e.matrices.shape[-2:] == (t, t) and e.matrices.shape[:2] == (2, 4)
        np.testing.assert_allclose(e.matrices.sum(axis=-1), 1.0, atol=1e-5)
        assert abs(e.scores.sum() - 1.0) < 1e-5 and e.scores.shape == (t,)
        alone = explainkit.explain(sst2_transformer, text, "attention")      # padding changes nothing
        np.testing.assert_allclose(alone.matrices, e.matrices, atol=1e-5)
    r = explainkit.explain(sst2_transformer, texts[1], "attention_rollout")
    assert r.rollout and r.matrices.shape[:2] == (2, 1)
    np.testing.assert_allclose(r.matrices.sum(axis=-1), 1.0, atol=1e-5)


class _ToyTransformer(torch.nn.Module):
    """Two layers, two heads, known attention: fixed positive logits, padding masked, rows normalized."""

    def __init__(self, logits):
        super().__init__()
        self.embedding = torch.nn.Embedding(8, 3)
        self.fc = torch.nn.Linear(3, 2)
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float64))

    def forward(self, ids, mask=None):
        return self.fc(self.embedding(ids).mean(dim=1))

    def attention_weights(self, ids, mask):
        n, t = ids.shape
        a = self.logits[:, :, :t, :t].exp()[None].repeat(n, 1, 1, 1, 1) * mask[:, None, None, None, :]
        return a / a.sum(dim=-1, keepdim=True)


def _toy():
    logits = np.random.default_rng(0).normal(size=(2, 2, 6, 6))
    tok = explainkit.Tokenizer(["the", "film", "is", "good", "bad"])
    model = explainkit.wrap(_ToyTransformer(logits), modality="text", tokenizer=tok, classes=["neg", "pos"])
    return model, logits


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_attention_rollout_equals_hand_computation(fusion):
    model, logits = _toy()
    e = explainkit.explain(model, "the film is good", "attention_rollout", head_fusion=fusion)
    t = 4
    a = np.exp(logits[:, :, :t, :t])
    a = a / a.sum(-1, keepdims=True)                                   # [L,H,T,T] as the model returns it
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[fusion]
    layers = []
    for layer in range(2):
        m = fuse(a[layer], axis=0) + np.eye(t)
        layers.append(m / m.sum(-1, keepdims=True))
    np.testing.assert_allclose(e.matrices[0, 0], layers[0], atol=1e-12)
    np.testing.assert_allclose(e.matrices[1, 0], layers[1] @ layers[0], atol=1e-12)
    np.testing.assert_allclose(e.scores, (layers[1] @ layers[0]).mean(axis=0), atol=1e-12)
    raw = explainkit.explain(model, "the film is good", "attention")
    np.testing.assert_allclose(raw.matrices, a, atol=1e-12)
    np.testing.assert_allclose(raw.scores, a[-1].mean(axis=0).mean(axis=0), atol=1e-12)


def test_attention_rollout_cls_pooling_reads_the_first_row():
    model, _ = _toy()
    model.config["pooling"] = "cls"
    e = explainkit.explain(model, "the film is bad", "attention_rollout")
    np.testing.assert_allclose(e.scores, e.matrices[-1, 0, 0], atol=1e-12)


def test_attention_on_lstm_is_not_applicable(sst2_lstm):
    with pytest.raises(NotApplicableError, match="attention"):
        explainkit.explain(sst2_lstm, "a fine film", "attention")
    from explainkit_builtins.attention import AttentionRollout
    with pytest.raises(NotApplicableError, match="lacks attention"):
        AttentionRollout().explain(sst2_lstm, [sst2_lstm.prepare("a fine film")], [0])
