"""The dataset-level audit shared by the report and the dashboard (issue 13, part 4): confusion cells that filter
the sample list, residual regions, named and savable slices, signed importance as explanations arrive, and
"why A and not B". Real sample models on their shipped data."""
from __future__ import annotations

import json

import numpy as np
import pytest

import explainkit
from explainkit.data import datasets
from explainkit.errors import ExplainKitError
from explainkit.views.aggregate import SignedImportance, confusion_cells, is_punctuation


@pytest.fixture(scope="module")
def bc_dash(breast_cancer):
    dash = explainkit.Dashboard(breast_cancer, datasets.sample_data("breast-cancer-mlp"),
                                methods=["saliency", "occlusion"])
    dash.wait()
    return dash


def test_confusion_cell_filters_the_sample_list(bc_dash, breast_cancer):
    dash, audit = bc_dash, bc_dash.audit
    data, probs = dash.dataset, breast_cancer.predict(dash.dataset.raws)
    pred, y = probs.argmax(1), data.labels.astype(int)
    cm = np.asarray(audit.view.confusion["counts"])
    np.testing.assert_array_equal(cm, confusion_cells(y, pred, 2))
    assert cm.sum() == len(data) and audit.view.confusion["classes"] == breast_cancer.classes
    for i in range(2):
        for j in range(2):
            n = audit.filter_cell(i, j)
            want = np.flatnonzero((y == i) & (pred == j))
            assert n == cm[i, j] == len(want) and audit.view.count == n
            np.testing.assert_array_equal(dash.browser.indices, want)
            assert [it["index"] for it in dash.b.grid.items] == want[:dash.browser.page_size].tolist()
    assert audit.view.filter == "true benign, predicted benign"
    dash.browser.set(correctness="incorrect")           # the cell and the other filters combine
    assert len(dash.browser.indices) == 0
    dash.browser.set(correctness="all")
    audit.clear_filter()
    assert len(dash.browser.indices) == len(data) and audit.view.filter == "" and audit.view.cell == []
    with pytest.raises(ExplainKitError, match="No confusion cell"):
        audit.filter_cell(0, 5)
    with pytest.raises(ExplainKitError, match="one True/False per sample"):
        dash.browser.set(subset=np.ones(3, bool))


def test_slices_are_named_saved_and_reused_by_the_report(bc_dash, breast_cancer, tmp_path):
    audit = bc_dash.audit
    with pytest.raises(ExplainKitError, match="no filter to save"):
        audit.clear_filter() or audit.save_slice("nothing")
    audit.filter_cell(0, 1)
    assert audit.save_slice("missed malignant") == {"class": 0, "predicted": 1}
    audit.save_slice("big", {"feature": "mean radius", "range": [18.0, None]})
    with pytest.raises(ExplainKitError, match="no feature 'radius'"):
        audit.save_slice("bad", {"feature": "radius", "range": [0, 1]})
    with pytest.raises(ExplainKitError, match="spec dict"):
        audit.save_slice("fn", lambda raw: True)
    rows = {r["name"]: r for r in audit.view.slices}
    radius = bc_dash.dataset.raws[:, 0]
    assert rows["big"]["n"] == int((radius >= 18).sum()) and rows["big"]["saved"]
    assert rows["missed malignant"]["n"] == audit.view.confusion["counts"][0][1]
    assert rows["missed malignant"]["accuracy"] == 0.0 and not rows["true class malignant"]["saved"]
    assert audit.filter_slice("big") == rows["big"]["n"]
    audit.clear_filter()
    path = audit.save(tmp_path / "slices.json")
    specs = json.loads(path.read_text())
    rep = explainkit.report(breast_cancer, datasets.breast_cancer("heldout"), methods=["saliency"], limit=4,
                            slices=specs, out=tmp_path / "r.html", progress=False, audit="data")
    got = {r["name"]: r["n"] for r in rep.index["audit"]["slices"]}
    assert got == {"missed malignant": rows["missed malignant"]["n"], "big": rows["big"]["n"]}
    # the CLI reads the same file: explainkit report --slices FILE --audit data --dependence A,B
    from explainkit.cli.main import main
    out = tmp_path / "cli" / "r.html"
    assert main(["report", "--model", "sample:breast-cancer-mlp", "--methods", "saliency", "--limit", "4",
                 "--slices", str(path), "--audit", "data", "--dependence", "mean radius,mean texture",
                 "--out", str(out)]) == 0
    index = json.loads(out.with_suffix(".json").read_text())
    assert {r["name"]: r["n"] for r in index["audit"]["slices"]} == got
    assert "<b>mean radius</b> against its value, coloured by mean texture" in out.read_text(encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["report", "--model", "sample:breast-cancer-mlp", "--slices", str(bad), "--out",
                 str(tmp_path / "bad" / "r.html")]) == 2
    with pytest.raises(ExplainKitError, match="not a slices file"):
        audit.load(bad)


def test_signed_importance_grows_as_explanations_arrive(bc_dash, breast_cancer):
    dash, audit = bc_dash, bc_dash.audit
    dash.method = "occlusion"
    dash.wait()
    before = audit.importance["occlusion"].n
    for i in (5, 6, 7):
        dash.select(i)
        dash.wait()
    assert audit.importance["occlusion"].n == before + 3
    dash.select(5)                       # cached: not counted twice
    dash.wait()
    assert audit.importance["occlusion"].n == before + 3
    audit.compute_importance(12, method="occlusion")
    assert audit.wait(120)
    imp = audit.importance["occlusion"]
    view = audit.view.importance
    assert view["done"] == view["total"] == 12 and view["method"] == "occlusion"
    t = imp.targets()[0]
    scores = imp.matrix(t)[0]
    direct = [explainkit.explain(breast_cancer, dash.dataset.raws[i], "occlusion").scores
              for i in range(12) if int(dash.predictions.predicted[i]) == t]
    assert direct and all(np.isclose(scores, d, rtol=1e-5, atol=1e-8).all(axis=1).any() for d in direct)
    top = view["rows"][0]
    j = breast_cancer.feature_names.index(top["name"])
    assert top["value"] == pytest.approx(scores[:, j].mean())
    assert np.abs(scores[:, j]).mean() == pytest.approx(np.abs(scores).mean(0).max())


def test_why_a_and_not_b_explains_both_classes(bc_dash, breast_cancer):
    dash, audit = bc_dash, bc_dash.audit
    p = dash.predictions
    right, wrong = int(np.flatnonzero(p.correct)[0]), int(np.flatnonzero(~p.correct)[0])
    dash.select(right)
    dash.wait()
    assert audit.why_btn.disabled
    with pytest.raises(ExplainKitError, match="not misclassified"):
        audit.why()
    dash.select(wrong)
    dash.wait()
    assert not audit.why_btn.disabled
    audit.why()
    assert audit.wait(60)
    a, b = int(p.predicted[wrong]), int(p.labels[wrong])
    assert audit.why_a.key.endswith(f"target={a}") and audit.why_b.key.endswith(f"target={b}")
    for view, t in ((audit.why_a, a), (audit.why_b, b)):
        direct = explainkit.explain(breast_cancer, dash.dataset.raws[wrong], dash.method, target=t)
        assert view._exp.target == t
        np.testing.assert_allclose(view._exp.scores, direct.scores, rtol=1e-5, atol=1e-8)
    assert "not <b>" in audit.why_label.value and audit.why_box.layout.display is None


def test_residual_region_filters_a_regression_list(diabetes):
    dash = explainkit.Dashboard(diabetes, datasets.sample_data("diabetes-mlp"), methods=["saliency"])
    dash.wait()
    audit = dash.audit
    assert audit.view.confusion == {} and len(audit.view.residuals["x"]) == len(dash.dataset)
    pred = diabetes.predict(dash.dataset.raws)
    res = pred - dash.dataset.labels
    n = audit.filter_region(150, 400, 0, 1e9)            # predicted above 150 and overestimated
    want = np.flatnonzero((pred >= 150) & (res >= 0))
    assert n == len(want) > 0
    np.testing.assert_array_equal(dash.browser.indices, want)
    assert audit.why_btn.disabled and "residual" in audit.view.filter
    with pytest.raises(ExplainKitError, match="confusion cell"):
        audit.filter_cell(0, 0)
    rows = audit.view.slices
    assert rows and all("mae" in r and "accuracy" not in r for r in rows)


def test_text_importance_skips_punctuation_and_rare_words(sst2_lstm, load_data):
    data = load_data("sst2-lstm").subset(range(30))
    imp = SignedImportance("text", min_count=3)
    exps = [explainkit.explain(sst2_lstm, data.raws[i], "occlusion") for i in range(30)]
    for e in exps:
        imp.add(e)
    assert imp.skipped == sum(is_punctuation(t) for e in exps for t in e.tokens) > 0
    for t in imp.targets():
        w = imp.words(t)
        listed = w["for"] + w["against"]
        assert listed and all(r["count"] >= 3 and not is_punctuation(r["word"]) for r in listed)
        assert w["rare"] > 0
    assert is_punctuation("--") and is_punctuation("'") and not is_punctuation("n't") and not is_punctuation("film")
    with pytest.raises(ExplainKitError, match="min_count"):
        SignedImportance("text", min_count=0)


def test_unlabelled_data_gets_slices_by_predicted_class(sst2_lstm, tmp_path):
    """Texts with no labels: the default slices are by predicted class (a true-class slice would be an error)."""
    texts = ["a gripping, beautifully acted film", "dull and far too long", "an utter mess", "warm and funny"]
    dash = explainkit.Dashboard(sst2_lstm, datasets.from_texts(texts), methods=["saliency"], quality=False)
    assert dash.wait(60)
    rows = {r["name"]: r for r in dash.audit.view.slices}
    pred = sst2_lstm.predict(texts).argmax(1)
    for k, c in enumerate(sst2_lstm.classes):
        assert rows[f"predicted {c}"]["n"] == int((pred == k).sum())
        assert rows[f"predicted {c}"]["accuracy"] is None        # no labels: no accuracy, and no error
    assert not any(n.startswith("true class") for n in rows)
