"""The dashboard driven from Python, as the browser would: set widget values/traitlets, assert state and views."""
from __future__ import annotations

import base64
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import explainkit  # noqa: E402
from explainkit import Explainer, ExplainerSpec, Param  # noqa: E402
from explainkit.errors import InputError, NotApplicableError, UnknownNameError  # noqa: E402
from explainkit.plugins.registry import Registry  # noqa: E402
from explainkit.views.state import Browser, Correctness, JobState, Predictions, SortKey  # noqa: E402


def _dash(model, data, n=60, **kw):
    d = explainkit.Dashboard(model, data.subset(range(n)), **kw)
    assert d.wait(60)
    return d


@pytest.fixture(scope="module")
def mnist(mnist_cnn, load_data):
    return _dash(mnist_cnn, load_data("mnist-cnn"), quality=False)


# -- browse ----------------------------------------------------------------------------------------------
def test_grid_shows_a_page_with_predictions(mnist, mnist_cnn):
    items = mnist.b.grid.items
    assert len(items) == 24 and [it["index"] for it in items] == list(range(24))
    it = items[3]
    assert it["h"] == it["w"] == 28 and len(base64.b64decode(it["thumb"])) == 28 * 28
    assert it["pred"] == mnist_cnn.classes[int(mnist.predictions.predicted[3])]
    assert 0 < it["conf"] <= 1 and it["correct"] in (True, False)
    assert "page 1 / 3" in mnist.b.page_label.value
    shown = [w for w in (mnist.b.true, mnist.b.pred, mnist.b.correct, mnist.b.conf, mnist.b.sort)
             if w.layout.display != "none"]
    assert len(shown) == 5 and mnist.b.search.layout.display == "none"      # search: text data only


def test_filters_sort_and_paging(mnist):
    b = mnist.b
    b.correct.value = Correctness.INCORRECT.value
    wrong = [it["index"] for it in b.grid.items]
    assert all(not mnist.predictions.correct[i] for i in wrong)
    b.correct.value = Correctness.ALL.value
    b.true.value = 3
    assert b.grid.items and all(it["label"] == "3" for it in b.grid.items)
    b.true.value = -1
    b.pred.value = 7
    assert all(it["pred"] == "7" for it in b.grid.items)
    b.pred.value = -1
    b.conf.value = (0.0, 0.9)
    assert all(it["conf"] <= 0.9 for it in b.grid.items)
    b.conf.value = (0.0, 1.0)
    b.sort.value = SortKey.LOSS_DESC.value
    losses = [mnist.predictions.loss[it["index"]] for it in b.grid.items]
    assert losses == sorted(losses, reverse=True)
    b.sort.value = SortKey.INDEX.value
    b.next.click()
    assert [it["index"] for it in b.grid.items][:2] == [24, 25] and not b.prev.disabled
    b.next.click()
    b.next.click()                                # clamped at the last page
    assert mnist.browser.page == 2 and b.next.disabled and len(b.grid.items) == 60 - 48
    b.prev.click()
    assert mnist.browser.page == 1
    assert {"event": "page", "page": 2} in mnist.history


def test_paging_10000_samples_predicts_once(mnist_mlp, load_data):
    data = load_data("mnist-mlp")
    big = data.subset(np.resize(np.arange(len(data)), 10_000))
    d = explainkit.Dashboard(mnist_mlp, big, methods=["saliency"], quality=False)
    assert d.wait(60) and len(d.predictions) == 10_000 and d.browser.n_pages == 417
    d.page(416)
    assert len(d.b.grid.items) == 10_000 - 416 * 24
    assert d.b.grid.items[-1]["index"] == 9_999


def test_browser_state_without_widgets(mnist_cnn, load_data):
    data = load_data("mnist-cnn").subset(range(100))
    preds = Predictions.compute(mnist_cnn, data, batch_size=32)
    br = Browser(preds, page_size=10)
    br.set(correctness=Correctness.CORRECT, sort=SortKey.CONFIDENCE_ASC)
    conf = preds.confidence[br.indices]
    assert np.all(np.diff(conf) >= 0) and preds.correct[br.indices].all()
    with pytest.raises(InputError):
        br.set(colour="red")


# -- explain ----------------------------------------------------------------------------------------------
def test_click_explains_and_revisit_is_cached(mnist):
    mnist.method = "integrated_gradients"
    mnist.b.grid.selected = 7                    # what the JS tile click sends
    assert mnist.wait(60)
    exp = mnist.last_explanation
    assert mnist.selected_index == 7 and exp.sample_index == 7 and exp.method == "integrated_gradients"
    assert exp.target == int(mnist.predictions.predicted[7]) == mnist.target
    assert mnist.e.view.key == mnist.view_key and mnist.view_key.startswith("7|integrated_gradients|")
    assert mnist.e.view.payload["h"] == 28 and mnist.e.view.payload["modality"] == "image"
    assert "sample=7 method=integrated_gradients" in mnist.status.value and "state=done" in mnist.status.value
    assert mnist.b.prediction.data["index"] == 7 and len(mnist.b.prediction.data["probs"]) == 10
    mnist.b.grid.selected = 8
    assert mnist.wait(60) and mnist.last_explanation.sample_index == 8
    hits = mnist.cache.hits
    mnist.b.grid.selected = 7
    assert mnist.cache.hits == hits + 1 and "state=cached" in mnist.status.value
    assert mnist.last_explanation is exp          # instant: same object, no job started
    assert {"event": "select", "index": 7} in mnist.history


def test_method_params_and_target_drive_the_explanation(mnist, mnist_cnn):
    offered = {v for _, v in mnist.e.method.options}
    assert offered == {s.name for s in explainkit.explainers(mnist_cnn)} and "gradcam" in offered
    mnist.select(2)
    mnist.e.method.value = "integrated_gradients"
    form = {w.description: w for w in mnist.e.params.children}
    steps = form["n_steps"]
    assert "ek-param-n_steps" in steps._dom_classes and (steps.min, steps.max) == (2, 5000)
    assert steps.tooltip == "Number of integration steps. Allowed: [2, 5,000]."     # the range, never clamped
    steps.value = 8
    assert mnist.wait(60)
    assert mnist.params["n_steps"] == 8 and mnist.last_explanation.params["n_steps"] == 8
    mnist.e.target.value = 4
    assert mnist.wait(60) and mnist.last_explanation.target == 4 and "target=4" in mnist.status.value
    mnist.e.method.value = "gradcam"
    assert mnist.wait(60) and mnist.last_explanation.method == "gradcam"
    assert isinstance(mnist.e.params.children[0].value, bool)      # relu -> Checkbox
    mnist.e.mode.value = "absolute"
    mnist.e.opacity.value = 0.3
    assert mnist.e.view.mode == "absolute" and mnist.e.view.opacity == pytest.approx(0.3)
    mnist.e.mode.value = "signed"


def test_auto_off_waits_for_the_button(mnist):
    mnist.e.method.value = "saliency"
    mnist.e.auto.value = False
    try:
        mnist.select(11)
        assert mnist.wait(60) and mnist.last_explanation.sample_index != 11
        mnist.e.explain.click()
        assert mnist.wait(60) and mnist.last_explanation.sample_index == 11
    finally:
        mnist.e.auto.value = True


def test_compare_shared_scale_and_rank_agreement(mnist):
    mnist.select(5)
    mnist.c.methods.value = ("saliency", "input_x_gradient", "gradcam")
    mnist.c.run.click()
    assert mnist.wait(60)
    cmp = mnist.comparison
    assert cmp["methods"] == ["saliency", "input_x_gradient", "gradcam"] and cmp["spearman"].shape == (3, 3)
    assert np.allclose(np.diag(cmp["spearman"]), 1.0)
    shown = [v for v in mnist.c.views if v.layout.display != "none"]
    assert len(shown) == 3 and {v.vmax for v in shown} == {cmp["vmax"]}
    assert "Spearman" in mnist.c.agreement.value and "gradcam" in mnist.c.agreement.value
    with pytest.raises(InputError):
        mnist.compare(["saliency"])


def test_export_png_and_html(mnist, tmp_path):
    mnist.select(1)
    assert mnist.wait(60)
    png = mnist.export_png(tmp_path / "x.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "x.png").read_bytes() == png
    html = mnist.export_html(tmp_path / "x.html")
    assert "<" in html and (tmp_path / "x.html").stat().st_size > 0
    mnist.e.export_png.click()
    assert "data:image/png;base64," in mnist.e.export_link.value and "download=" in mnist.e.export_link.value
    # the exports use the scale the dashboard draws with (issue 13: they used max|s|, the view its 99th pct)
    from explainkit.views.render import scale
    from explainkit.views.widgets import view_scale
    exp = mnist.last_explanation
    shown = mnist._shown_scale()["vmax"]
    assert shown == mnist.e.view.payload["scale"] == view_scale(np.asarray(exp.scores, np.float32))
    assert shown < scale(exp.scores)                                   # an outlier pixel no longer sets it
    assert f"{shown:.3g}" in html and f"{scale(exp.scores):.3g}" not in html
    # and they carry the sample, method, parameters, seed, model hash and trust result
    prov = mnist._provenance(exp)
    assert prov in html and f"sample #{exp.sample_index} · {exp.method} (" in prov and exp.params
    assert all(f"{k}={v}" in prov for k, v in exp.params.items())
    assert exp.model_hash[:12] in prov and "trust: not computed" in prov          # quality=False here


# -- text, attention, tabular, regression -------------------------------------------------------------------
def test_text_view_search_and_attention(sst2_transformer, load_data):
    d = _dash(sst2_transformer, load_data("sst2-transformer"), n=80,
              methods=["saliency", "attention", "attention_rollout"], quality=False)
    d.b.search.value = "the"
    assert d.b.grid.items and all("the" in d.dataset[it["index"]][0].lower() for it in d.b.grid.items)
    idx = d.b.grid.items[0]["index"]
    d.b.grid.selected = idx
    assert d.wait(60)
    p = d.e.view.payload
    text = d.dataset[idx][0]
    assert p["modality"] == "text" and p["text"] == text and len(p["tokens"]) == len(p["scores"])
    assert all(text[a:b].lower() == t for t, (a, b) in zip(p["tokens"], p["offsets"]) if t != "<unk>")
    att = d.a.view
    L, H, T = att.shape
    assert T == len(p["tokens"]) and att.key.startswith(f"{idx}|")
    m = np.frombuffer(base64.b64decode(att.matrices), dtype=np.float32).reshape(L, H, T, T)
    assert np.allclose(m.sum(-1), 1.0, atol=1e-4)
    d.a.head.value = "all"
    d.a.layer.value = L - 1
    d.a.rollout.value = True
    assert (att.head, att.layer, att.rollout) == ("all", L - 1, True)
    # issue 13: after an attention explainer the panel still draws the model's own tensor, menus to match
    d.method = "attention_rollout"                                 # its matrices have one "head"
    assert d.wait(60) and d.last_explanation.method == "attention_rollout"
    assert att.shape == [L, H, T] and len(d.a.head.options) == 2 + H
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(att.matrices), dtype=np.float32).reshape(L, H, T, T),
                                  m)


def test_tabular_shap_waterfall(breast_cancer, load_data):
    d = _dash(breast_cancer, load_data("breast-cancer-mlp"), n=40, methods=["kernel_shap", "saliency"],
              quality=False)
    d.method = "kernel_shap"
    d.set_params(n_samples=100, n_background=5)
    assert d.wait(60)
    p = d.e.view.payload
    assert p["modality"] == "tabular" and len(p["names"]) == 30 and p["base_value"] is not None
    assert p["output"] == pytest.approx(p["base_value"] + sum(p["scores"]), rel=1e-6)
    assert p["values"][0] == pytest.approx(float(d.dataset[d.selected_index][0][0]))


def test_regression_prediction_and_target(diabetes, load_data):
    d = _dash(diabetes, load_data("diabetes-mlp"), n=30, methods=["integrated_gradients"], quality=False)
    pred = d.b.prediction.data
    assert pred["task"] == "regression" and pred["target"] is not None
    assert d.e.target.disabled and d.target is None
    assert d.last_explanation.task.value == "regression" and d.e.view.payload["prediction"]
    assert d.b.conf.layout.display == "none"


# -- slow explainers, errors, plugins' views ---------------------------------------------------------------
def test_cancel_interrupts_a_slow_explainer(breast_cancer, load_data):
    d = _dash(breast_cancer, load_data("breast-cancer-mlp"), n=10, methods=["lime", "saliency"], quality=False)
    d.method = "saliency"
    assert d.wait(60)
    before = d.last_explanation
    d.e.auto.value = False
    d.method = "lime"
    d.set_params(n_samples=100_000)
    d.e.explain.click()
    job = d.job
    assert job.state is JobState.RUNNING and d.e.cancel.layout.visibility == "visible"
    # issue 13: meanwhile the saliency map and its badge are dimmed and labelled as the previous parameters'
    assert "ek-previous-params" in d.e.view._dom_classes and "ek-previous-params" in d.e.quality_row._dom_classes
    time.sleep(0.3)
    t0 = time.perf_counter()
    d.e.cancel.click()
    assert job.join(10) and job.state is JobState.CANCELLED
    assert time.perf_counter() - t0 < 10
    assert d.last_explanation is before and "state=cancelled" in d.status.value
    assert not {"ek-previous-params", "ek-previous-sample"} & set(d.e.view._dom_classes)
    d.method = "saliency"
    assert d.explain(force=True) is before         # still usable, cache intact


class Broken(Explainer):
    def explain(self, model, samples, targets, *, seed=0, scale=1.0):
        raise RuntimeError("deliberately broken for the test")


class ConstantExplainer(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        return [explainkit.Explanation.from_sample(s, np.ones(s.n_units)) for s in samples]


class TableView:
    """A plugin's own view: any ipywidgets widget built from the Explanation."""

    def __new__(cls, explanation):
        import ipywidgets as W
        return W.HTML(f"{len(explanation.scores)} scores")


def test_plugin_error_panel_and_custom_view(breast_cancer, load_data):
    reg = Registry()
    reg.register(ExplainerSpec(name="broken", title="Broken", description="Always fails.", impl="test_dashboard:Broken",
                               params=(Param("scale", "float", 1.0, min=0.0, max=2.0),)))
    reg.register(ExplainerSpec(name="constant", title="Constant", description="Ones.",
                               impl="test_dashboard:ConstantExplainer", view="test_dashboard:TableView"))
    d = _dash(breast_cancer, load_data("breast-cancer-mlp"), n=10, registry=reg,
              methods=["saliency", "broken", "constant"], quality=False)
    d.method = "broken"
    assert d.wait(60)
    assert d.error.layout.display != "none"
    assert "broken" in d.error.value and "deliberately broken for the test" in d.error.value
    assert "state=failed" in d.status.value and d.last_error is not None
    d.method = "constant"
    assert d.wait(60) and d.error.layout.display == "none"
    assert d.e.custom.children and d.e.custom.children[0].value == "30 scores"
    assert d.e.view.layout.display == "none"
    d.method = "saliency"
    assert d.wait(60) and d.last_explanation.method == "saliency" and not d.e.custom.children


def test_quality_badge(breast_cancer, load_data):
    quality = pytest.importorskip("explainkit.quality")
    d = _dash(breast_cancer, load_data("breast-cancer-mlp"), n=10, methods=["saliency"])
    assert d.wait(60)
    assert d.last_quality is not None and d.e.quality.description.startswith("trust: ")     # plain words (13)
    assert d.last_quality.badge() in d.e.quality.tooltip and isinstance(d.last_quality, quality.Quality)
    assert "Removing the top-ranked features first" in d.e.quality_words.value
    d.e.quality.click()
    assert d.e.quality_plot.value[:4] == b"\x89PNG" and d.e.quality_plot.layout.display != "none"
    first = d.e.quality_plot.value
    d.select(3)                                # issue 13: the curves never show the previous sample
    assert d.e.quality_plot.layout.display == "none" or d.last_quality is not None
    assert d.wait(60) and d.last_quality is not None
    assert d.e.quality_plot.layout.display != "none" and d.e.quality_plot.value != first    # redrawn for #3


def test_bad_input_gives_one_clear_error(mnist_cnn, breast_cancer, load_data):
    with pytest.raises(InputError, match="text"):
        explainkit.Dashboard(mnist_cnn, load_data("sst2-lstm"))
    with pytest.raises(UnknownNameError, match="nope"):
        explainkit.Dashboard(breast_cancer, load_data("breast-cancer-mlp").subset(range(5)), methods=["nope"])
    with pytest.raises(NotApplicableError, match="gradcam"):
        explainkit.Dashboard(breast_cancer, load_data("breast-cancer-mlp").subset(range(5)), methods=["gradcam"])
    d = _dash(breast_cancer, load_data("breast-cancer-mlp"), n=5, methods=["saliency"], quality=False)
    with pytest.raises(InputError, match="out of range"):
        d.select(99)


def test_import_explainkit_does_not_import_widgets():
    code = "import sys, explainkit; print('ipywidgets' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
