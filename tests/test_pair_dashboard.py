"""Two models side by side (``Dashboard([model_a, model_b], data)``), driven from Python as the browser would."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import explainkit  # noqa: E402
from explainkit.errors import InputError, TargetError, UnknownNameError  # noqa: E402
from explainkit.trust.metrics import rank_corr  # noqa: E402
from explainkit.views.dashboard import Dashboard  # noqa: E402
from explainkit.views.pair import PairDashboard, PairFilter, kendall_tau, rank_agreement  # noqa: E402


@pytest.fixture(scope="module")
def sst2_pair(load_model, load_data):
    d = explainkit.Dashboard([load_model("sst2-lstm"), load_model("sst2-transformer")],
                             load_data("sst2-lstm").subset(range(80)), quality=False)
    assert d.wait(60)
    return d


def _aligned(d):
    """The two current explanations' scores over the tokens both scored, recomputed here from the raw results."""
    a, b = d.left.last_explanation, d.right.last_explanation
    spans = {tuple(o): s for o, s in zip(a.offsets, a.scores)}
    both = [(spans[tuple(o)], s) for o, s in zip(b.offsets, b.scores) if tuple(o) in spans]
    return np.array([x for x, _ in both]), np.array([y for _, y in both])


def test_a_list_of_two_models_opens_the_pair(sst2_pair, load_model):
    d = sst2_pair
    assert isinstance(d, PairDashboard) and isinstance(d.left, Dashboard) and isinstance(d.right, Dashboard)
    assert (d.left.model.name, d.right.model.name) == ("sst2-lstm", "sst2-transformer")
    assert d.left.dataset is d.right.dataset is d.dataset
    # the menu offers the explainers that apply to both (attention applies to the transformer only)
    offered = [v for _, v in d.method_menu.options]
    assert "integrated_gradients" in offered and "attention" not in offered
    assert [s.name for s in d.left.specs] == [s.name for s in d.right.specs] == offered
    assert "ek-pair" in d._dom_classes and "sst2-lstm" in repr(d)
    assert isinstance(explainkit.Dashboard(load_model("sst2-lstm"), d.dataset.subset(range(3)), quality=False),
                      Dashboard)              # one model: still the single dashboard


def test_disagreement_filter_lists_exactly_the_samples_the_models_disagree_on(sst2_pair):
    d = sst2_pair
    pa, pb = d.left.predictions.predicted, d.right.predictions.predicted
    expected = np.flatnonzero(pa != pb)
    assert 0 < len(expected) < 80               # two real models: some disagreement, not all
    assert d.disagree_only(True) == len(expected)
    assert d.filter.value == PairFilter.DISAGREE.value
    assert list(d.browser.indices) == list(expected)
    for it in d.b.grid.items:                   # every tile: both predictions, "≠"
        i = it["index"]
        assert it["pred"] == f"{d.left.model.classes[pa[i]]} ≠ {d.right.model.classes[pb[i]]}"
    assert f"data-ek-disagree='{len(expected)}'" in d.header.value
    d.filter.value = PairFilter.AGREE.value
    assert list(d.browser.indices) == list(np.flatnonzero(pa == pb))
    assert d.disagree_only(False) == 80


def test_select_explains_both_models_with_the_same_method_and_target(sst2_pair):
    d = sst2_pair
    i = int(np.flatnonzero(d.disagreement)[0])          # a sample they disagree on
    d.select(i)
    assert d.wait(60)
    a, b = d.left.last_explanation, d.right.last_explanation
    target = int(d.left.predictions.predicted[i])       # the left model's prediction, for both
    assert (a.sample_index, b.sample_index) == (i, i) and a.method == b.method == d.method
    assert a.target == b.target == target == d.target and d.target_menu.value == target
    assert a.model_name == "sst2-lstm" and b.model_name == "sst2-transformer"
    r = d.agreement
    assert r is not None and r["index"] == i and r["predictions_agree"] is False and "disagree" in r["verdict"]
    va, vb = _aligned(d)
    assert r["n_units"] == len(va) >= 2 and r["units"] == "tokens"
    assert r["spearman"] == pytest.approx(rank_corr(va, vb))
    k = r["k"]
    top = len(set(np.argsort(-np.abs(va), kind="stable")[:k]) & set(np.argsort(-np.abs(vb), kind="stable")[:k]))
    assert r["top_k"] == pytest.approx(top / k)
    stats = pytest.importorskip("scipy.stats")
    assert r["kendall"] == pytest.approx(stats.kendalltau(va, vb).statistic)
    html = d.agreement_view.value
    assert f"data-ek-key='{i}|{d.method}|target={target}'" in html and "data-ek-state='done'" in html
    assert "ek-compare-table" in d.rows.value and "sst2-transformer" in d.rows.value


def test_method_and_target_drive_both_sides(sst2_pair):
    d = sst2_pair
    d.select(3)
    d.method_menu.value = "saliency"                    # as the browser would
    assert d.wait(60)
    assert d.left.method == d.right.method == "saliency"
    assert d.left.last_explanation.method == d.right.last_explanation.method == "saliency"
    assert d.agreement["method"] == "saliency"
    other = 1 - int(d.left.predictions.predicted[3])
    d.target = other
    assert d.wait(60)
    assert d.left.last_explanation.target == d.right.last_explanation.target == other == d.agreement["target"]
    with pytest.raises(TargetError, match="0..1"):
        d.target = 5
    with pytest.raises(UnknownNameError, match="integrated_gradients"):
        d.method = "attention"                          # the transformer's only: not offered for the pair
    with pytest.raises(InputError, match="out of range"):
        d.select(80)
    d.method = "integrated_gradients"
    assert d.wait(60)


def test_the_same_model_twice_agrees_with_itself(load_model, load_data):
    m = load_model("diabetes-mlp")                      # regression, tabular
    d = explainkit.Dashboard([m, m], load_data("diabetes-mlp"), methods=["integrated_gradients"], quality=False)
    assert d.wait(60) and not d.disagreement.any() and d.tolerance > 0
    r = d.agreement
    assert r["spearman"] == pytest.approx(1.0) and r["kendall"] == pytest.approx(1.0) and r["top_k"] == 1.0
    assert r["units"] == "features" and r["n_units"] == 10 and d.disagree_only(True) == 0


def test_two_image_models_agree_over_pixels(load_model, load_data):
    d = explainkit.Dashboard([load_model("mnist-mlp"), load_model("mnist-cnn")],
                             load_data("mnist-cnn").subset(range(30)), methods=["saliency", "integrated_gradients"],
                             quality=False)
    assert d.wait(60)
    r = d.agreement
    assert r["units"] == "pixels" and r["n_units"] == 784 and r["k"] == 78
    a, b = d.left.last_explanation.scores, d.right.last_explanation.scores
    assert r["spearman"] == pytest.approx(rank_corr(a, b)) and -1 <= r["kendall"] <= 1
    assert d.rows.value == ""                           # images: the two maps are aligned already


@pytest.mark.parametrize("other, problem", [("mnist-cnn", "reads text but 'mnist-cnn' reads image"),
                                            ("breast-cancer-mlp", "reads text but 'breast-cancer-mlp' reads tabular")])
def test_models_of_different_modalities_are_one_clear_error(load_model, other, problem):
    with pytest.raises(InputError, match="cannot be shown side by side") as err:
        explainkit.Dashboard([load_model("sst2-lstm"), load_model(other)])
    assert problem in str(err.value) and "sst2-transformer" in str(err.value)       # the fix names a pair


def test_different_tasks_classes_or_counts_are_one_clear_error(load_model):
    with pytest.raises(InputError, match="'breast-cancer-mlp' is a classification model but 'diabetes-mlp' is a "
                                         "regression model"):
        explainkit.Dashboard([load_model("breast-cancer-mlp"), load_model("diabetes-mlp")])
    mlp = load_model("mnist-mlp")
    letters = explainkit.wrap(mlp.module, modality="image", input_shape=(1, 28, 28), classes=list("abcdefghij"),
                              name="letters")
    with pytest.raises(InputError, match=r"their classes differ \(0, 1, 2, 3, … \(10\) vs a, b, c, d, … \(10\)\)"):
        explainkit.Dashboard([mlp, letters])
    with pytest.raises(InputError, match="got 3"):
        explainkit.Dashboard([mlp, mlp, mlp])
    with pytest.raises(InputError, match="not an explainkit model"):
        explainkit.Dashboard([mlp, "sample:mnist-cnn"])


def test_app_refuses_an_incompatible_pair_before_starting(capsys):
    from explainkit.cli.main import main
    rc = main(["app", "--model", "sample:sst2-lstm", "--compare-model", "sample:mnist-cnn", "--no-browser"])
    assert rc == 2 and "cannot be shown side by side" in capsys.readouterr().err


def test_kendall_tau_and_rank_agreement_edge_cases(sst2_pair):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 300).astype(float), rng.normal(size=300)      # ties in a
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    assert kendall_tau(a, a) == pytest.approx(1.0) and kendall_tau(a, -a) == pytest.approx(-1.0)
    big = rng.normal(size=5000)
    assert kendall_tau(big, big + 0.01 * rng.normal(size=5000)) > 0.9          # a fixed-seed sample of units
    e = sst2_pair.left.last_explanation
    r = rank_agreement(e, e)
    assert r["spearman"] == r["kendall"] == r["top_k"] == pytest.approx(1.0)
