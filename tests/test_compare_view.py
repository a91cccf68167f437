"""Issue 13, part 2: compare uses, and shows, the parameters actually applied, with rows aligned by unit."""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import explainkit  # noqa: E402
from explainkit.views import compare as cmp  # noqa: E402


def _dash(model, data, n=6):
    d = explainkit.Dashboard(model, data.subset(range(n)), quality=False)
    assert d.wait(60)
    return d


def _shares(exp):
    s = np.asarray(exp.scores, dtype=np.float64).reshape(-1)
    return s / (np.abs(s).sum() or 1.0)


@pytest.fixture(scope="module")
def cancer(breast_cancer, load_data):
    d = _dash(breast_cancer, load_data("breast-cancer-mlp"))
    d.select(1)
    assert d.wait(60)
    d.method = "integrated_gradients"
    d.set_params(n_steps=16)                   # the user's form value: compare must run with it, and say so
    assert d.wait(60)
    d.compare(["integrated_gradients", "saliency", "kernel_shap"])
    assert d.wait(120) and d.last_error is None
    return d


def test_each_map_shows_the_parameters_it_ran_with(cancer):
    ig, sal, ks = cancer.comparison["explanations"]
    assert ig.params["n_steps"] == 16 and cancer.comparison["params"][0]["n_steps"] == 16
    captions = [c.value for c in cancer.c.captions]
    assert "n_steps=16" in captions[0] and "integration=gausslegendre" in captions[0]
    assert "abs=True" in captions[1]                           # saliency's form was never opened: its defaults
    assert sal.params == cancer.comparison["params"][1]
    # only the parameters that apply: Kernel SHAP's image-only ones are not a tabular model's
    assert "n_background=50" in captions[2] and not re.search("patch_size|n_segments|segmentation", captions[2])
    assert captions[3] == "" and cancer.c.columns[3].layout.display == "none"
    assert [c.layout.display for c in cancer.c.columns[:3]] == [None] * 3
    header = cancer.c.rows.value.split("</thead>")[0]           # the table's columns carry them too
    assert "n_steps=16" in header and "abs=True" in header


def test_feature_rows_are_aligned_across_methods(cancer, breast_cancer):
    exps = cancer.comparison["explanations"]
    table = cancer.comparison["rows"]
    names = list(breast_cancer.feature_names)
    assert table["what"] == "features" and sorted(table["keys"]) == list(range(len(names)))
    shares = [_shares(e) for e in exps]
    for row, key in zip(table["rows"], table["keys"]):           # one row per feature, each method's share of it
        assert row["unit"] == names[key]
        assert np.allclose(row["shares"], [s[key] for s in shares])
    weights = [np.mean([abs(s[k]) for s in shares]) for k in table["keys"]]
    assert weights == sorted(weights, reverse=True)              # one order: mean |share|, largest first
    assert len(table["rows"]) == cmp.ROWS and table["more"] == len(names) - cmp.ROWS
    # every tabular map draws its bars in that same order (explanation.js reads ``order``)
    for view in cancer.c.views[:3]:
        assert view.order == table["keys"] and view.payload["names"] == names
    html = cancer.c.rows.value
    units = re.findall(r"<tr data-ek-unit='([^']*)'>", html)
    assert units == [names[k] for k in table["keys"][:cmp.ROWS]]
    assert html.count("<td ") == 3 * cmp.ROWS and f"{table['more']} other features not shown" in html


def test_text_rows_align_words_by_their_characters(sst2_lstm, load_data):
    d = _dash(sst2_lstm, load_data("sst2-lstm"))
    d.select(2)
    assert d.wait(60)
    d.compare(["saliency", "integrated_gradients"])
    assert d.wait(120) and d.last_error is None
    exps = d.comparison["explanations"]
    table = d.comparison["rows"]
    text = exps[0].text
    assert table["what"] == "tokens" and len(table["keys"]) == len(exps[0].scores)
    shares = [_shares(e) for e in exps]
    spans = [tuple(o) for o in exps[0].offsets]
    for row, key in zip(table["rows"], table["keys"]):
        assert row["unit"] == text[key[0]:key[1]]                 # the word as the user wrote it
        k = spans.index(key)
        assert np.allclose(row["shares"], [s[k] for s in shares])
    assert all(v.order == [] for v in d.c.views)                 # text maps keep the text's own order
    assert "abs=True" in d.c.captions[0].value and "n_steps=" in d.c.captions[1].value


def test_a_unit_one_method_did_not_score_is_a_dash(sst2_lstm, load_data):
    e = explainkit.explain(sst2_lstm, load_data("sst2-lstm")[4][0], "saliency")
    fewer = copy.copy(e)                      # the same text scored on one token fewer (another tokenizer's view)
    fewer.scores, fewer.tokens, fewer.offsets = e.scores[1:], e.tokens[1:], e.offsets[1:]
    table = cmp.aligned_rows([e, fewer])
    first = tuple(e.offsets[0])
    row = next(r for r, k in zip(table["rows"], table["keys"]) if k == first)
    assert row["shares"][1] is None and row["shares"][0] == pytest.approx(_shares(e)[0])
    html = cmp.rows_html(["a", "b"], cmp.aligned_rows([e, fewer], "pieces"), [{}, {}], 0.1)
    assert "not scored by this method" in html and "no parameters" in html


def test_images_have_no_rows_but_captions(mnist_cnn, load_data):
    d = _dash(mnist_cnn, load_data("mnist-cnn"))
    d.select(0)
    assert d.wait(60)
    d.compare(["saliency", "gradcam"])
    assert d.wait(120) and d.last_error is None
    assert d.comparison["rows"] is None and d.c.rows.value == ""
    assert "gradcam" in d.c.captions[1].value and d.c.columns[2].layout.display == "none"
