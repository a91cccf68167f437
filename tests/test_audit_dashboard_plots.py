"""The dashboard audit panel's dataset-level plots (issue 13, part 4): a tabular beeswarm and a dependence plot,
a text min-count control, and an image mean map per class, each checked against values recomputed from the
dashboard's cached explanations. Real sample models on their shipped data."""
from __future__ import annotations

import numpy as np
import pytest

import explainkit
from explainkit.data import datasets
from explainkit.errors import ExplainKitError
from explainkit.views import state as st
from explainkit.views.aggregate import is_punctuation
from explainkit.views.audit_plots import scaled


def _cached(dash, n, method):
    """The cached explanations of the first n samples, each for its predicted class (as the batch runs them)."""
    out = {}
    for i in range(n):
        t = int(dash.predictions.predicted[i]) if dash.predictions.outputs.ndim == 2 else None
        exp = dash.cache.get(st.cache_key(i, method, dict(dash.params), t, dash.seed))
        assert exp is not None, f"sample {i} was not cached"
        out[i] = exp
    return out


@pytest.fixture(scope="module")
def bc(breast_cancer):
    dash = explainkit.Dashboard(breast_cancer, datasets.sample_data("breast-cancer-mlp").subset(range(40)),
                                methods=["occlusion"], quality=False)
    dash.wait()
    dash.audit.compute_importance(16, method="occlusion")
    assert dash.audit.wait(120)
    return dash


def test_beeswarm_matches_the_cached_explanations(bc, breast_cancer):
    view, names = bc.audit.view.importance, breast_cancer.feature_names
    t = bc.audit.importance["occlusion"].targets()[0]
    exps = [e for i, e in _cached(bc, 16, "occlusion").items() if int(bc.predictions.predicted[i]) == t]
    scores = np.vstack([e.scores for e in exps])
    values = np.vstack([np.asarray(bc.dataset.raws[e.sample_index], dtype=float) for e in exps])
    bee = view["beeswarm"]
    assert bee["n"] == len(exps) == view["n_target"]
    assert [r["name"] for r in bee["rows"]] == [r["name"] for r in view["rows"]]      # beside the bars, same order
    order = np.argsort(-np.abs(scores).mean(0), kind="stable")[:len(bee["rows"])]
    for row, j in zip(bee["rows"], order):
        assert row["name"] == names[j]
        np.testing.assert_allclose(row["s"], scores[:, j], atol=1e-6)
        np.testing.assert_allclose(row["c"], (values[:, j] - values[:, j].min()) / np.ptp(values[:, j]), atol=1e-4)
    assert scaled(np.array([3.0, 3.0])).tolist() == [0.5, 0.5]


def test_dependence_plot_draws_attribution_against_value(bc, breast_cancer):
    audit, names = bc.audit, breast_cancer.feature_names
    t = audit.importance["occlusion"].targets()[0]
    exps = [e for i, e in _cached(bc, 16, "occlusion").items() if int(bc.predictions.predicted[i]) == t]
    j, k = names.index("mean texture"), names.index("mean radius")
    d = audit.dependence("mean texture", color_by="mean radius")
    assert d == audit.view.importance["dependence"] and d["feature"] == "mean texture" and d["colour"] == "mean radius"
    np.testing.assert_allclose(d["y"], [e.scores[j] for e in exps], atol=1e-6)
    np.testing.assert_allclose(d["x"], [bc.dataset.raws[e.sample_index][j] for e in exps], atol=1e-6)
    np.testing.assert_allclose(d["c"], [bc.dataset.raws[e.sample_index][k] for e in exps], atol=1e-6)
    assert audit.dep_box.value == "mean texture" and audit.col_box.value == "mean radius"
    audit.col_box.value = "(none)"                        # the picker in the panel redraws it, one colour
    assert audit.view.importance["dependence"]["c"] is None
    auto = audit.dependence("mean texture", color_by="auto")
    assert auto["colour"] in names and auto["colour"] != "mean texture"
    with pytest.raises(ExplainKitError, match="not one of the model's features"):
        audit.dependence("texture")


def test_min_count_drops_rarer_words(sst2_lstm, load_data):
    dash = explainkit.Dashboard(sst2_lstm, load_data("sst2-lstm").subset(range(24)), methods=["occlusion"],
                                quality=False)
    dash.wait()
    audit = dash.audit
    audit.compute_importance(24, method="occlusion")
    assert audit.wait(120)
    t = audit.importance["occlusion"].targets()[0]
    counts: dict = {}
    for i, e in _cached(dash, 24, "occlusion").items():
        if int(dash.predictions.predicted[i]) == t:
            for w in e.by_words():
                key = w.word.strip().lower()
                if not is_punctuation(key):
                    counts[key] = counts.get(key, 0) + 1
    audit.set_min_count(1)
    every = {r["name"] for r in audit.view.importance["rows"]}
    audit.min_box.value = 3                               # the IntText in the panel feeds the same filter
    view = audit.view.importance
    kept = {r["name"] for r in view["rows"]}
    assert view["min_count"] == 3 and kept and all(counts[w] >= 3 for w in kept)
    assert any(counts[w] < 3 for w in every)               # something rarer was shown before and is dropped now
    assert view["rare"] == sum(1 for c in counts.values() if c < 3)
    with pytest.raises(ExplainKitError, match="positive integer"):
        audit.set_min_count(0)


def test_mean_map_per_class(mnist_cnn, load_data):
    dash = explainkit.Dashboard(mnist_cnn, load_data("mnist-cnn").subset(range(20)), methods=["saliency"],
                                quality=False)
    dash.wait()
    audit = dash.audit
    audit.compute_importance(20, method="saliency")
    assert audit.wait(120)
    exps = _cached(dash, 20, "saliency")
    classes = sorted({int(p) for p in dash.predictions.predicted[:20]})
    assert sorted(v for _, v in audit.map_box.options) == classes
    for c in classes:
        maps = [np.asarray(e.scores, dtype=float) for i, e in exps.items() if int(dash.predictions.predicted[i]) == c]
        want = np.mean(maps, axis=0)
        want = want.mean(axis=-1) if want.ndim == 3 else want
        got = audit.show_map(c)
        assert audit.view.importance["map"] == got and got["n"] == len(maps)
        assert audit.view.importance["map_class"] == str(mnist_cnn.classes[c])
        np.testing.assert_allclose(np.reshape(got["v"], (got["h"], got["w"])), want, atol=1e-5)
    audit.map_box.value = classes[0]                     # the selector in the panel switches the map
    assert audit.view.importance["map_class"] == str(mnist_cnn.classes[classes[0]])
    missing = next((c for c in range(10) if c not in classes), 10)
    with pytest.raises(ExplainKitError, match="No explained sample"):
        audit.show_map(missing)
