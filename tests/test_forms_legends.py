"""Issue 13 parts 1 and 3: forms show only the parameters that apply, refuse (never clamp) bad values,
and every view says what its colours and numbers mean."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

import explainkit  # noqa: E402
from explainkit import ExplainerSpec, Modality, Param  # noqa: E402
from explainkit.errors import ParameterError, PluginError  # noqa: E402
from explainkit.plugins.check_inputs import applies_to_rows  # noqa: E402
from explainkit.plugins.registry import registry  # noqa: E402
from explainkit.views.forms import INVALID, param_form, set_form  # noqa: E402

IMAGE_ONLY = {"kernel_shap": {"segmentation", "patch_size", "n_segments"}, "lime": {"segmentation", "patch_size"}}


# module-level predicates (a rule is stored by name in the discovery cache)
def wide_models(model) -> bool:
    return len(model.feature_names or []) > 10


def broken_rule(model) -> bool:
    raise RuntimeError("no such attribute")


def vague_rule(model):
    return "yes"


def _spec(rule, name="ruled"):
    return ExplainerSpec(name=name, title="Ruled", description="A test explainer.", impl="x.y:Z",
                         params=(Param("width", "int", 3, min=1, max=9, applies_to=rule),))


# -- Param.applies_to on the built-ins --------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(IMAGE_ONLY))
def test_image_only_parameters_apply_to_image_models_only(method, mnist_cnn, breast_cancer, sst2_lstm):
    spec = registry().get(method).spec
    every = {p.name for p in spec.params}
    assert {p.name for p in spec.params_for(mnist_cnn)} >= IMAGE_ONLY[method]
    for model in (breast_cancer, sst2_lstm):
        shown = {p.name for p in spec.params_for(model)}
        assert not shown & IMAGE_ONLY[method] and shown, (model.name, shown)
        tabular_only = {"n_background"} if model is sst2_lstm and method == "kernel_shap" else set()
        assert shown | IMAGE_ONLY[method] | tabular_only == every
    assert "n_background" in {p.name for p in registry().get("kernel_shap").spec.params_for(breast_cancer)}
    assert ExplainerSpec.from_json(spec.to_json()).params == spec.params      # the discovery cache keeps the rules


def test_a_parameter_that_does_not_apply_is_one_error_naming_it_and_the_modality(breast_cancer, sst2_lstm):
    spec = registry().get("kernel_shap").spec
    with pytest.raises(ParameterError) as e:
        spec.validate_params({"patch_size": 8, "n_samples": 100}, model=breast_cancer)
    msg = str(e.value)
    assert "'patch_size'" in msg and "tabular model" in msg and "image models only" in msg
    assert "n_background" in msg and "patch_size, " not in msg.split("Fix:")[1]     # the fix lists what applies
    with pytest.raises(ParameterError, match="'n_background'.*text model"):
        spec.validate_params({"n_background": 5}, model=sst2_lstm)
    full = spec.validate_params({"n_samples": 100}, model=breast_cancer)
    assert full["n_samples"] == 100 and full["patch_size"] == 4       # the plugin still gets every keyword
    assert spec.validate_params({"patch_size": 8})["patch_size"] == 8   # without a model: the old contract
    # at its default a parameter that does not apply is the same as left out: trust re-runs pass full dicts
    assert spec.validate_params(full, model=breast_cancer) == full


def test_cli_param_check_refuses_what_does_not_apply(breast_cancer, mnist_cnn):
    from explainkit.cli.specs import parse_method_params
    with pytest.raises(ParameterError, match="'segmentation' of lime does not apply.*tabular"):
        parse_method_params(["lime.segmentation=quickshift"], [("lime", {})], model=breast_cancer)
    assert parse_method_params(["lime.segmentation=quickshift"], [("lime", {})], model=mnist_cnn) == \
        [("lime", {"segmentation": "quickshift"})]


# -- the rule itself ----------------------------------------------------------------------------------------
def test_modalities_and_predicates_as_rules(breast_cancer, diabetes, mnist_cnn):
    assert _spec(("image",)).params[0].applies_to == (Modality.IMAGE,)
    assert _spec("tabular").params[0].applies(breast_cancer) and not _spec("tabular").params[0].applies(mnist_cnn)
    by_fn = _spec(wide_models)
    assert by_fn.params[0].applies_to == "test_forms_legends:wide_models"
    assert by_fn.params_for(breast_cancer) and not by_fn.params_for(diabetes)       # 30 features vs 10
    back = ExplainerSpec.from_json(by_fn.to_json())                 # the discovery cache keeps it by name
    assert back.params[0].applies_to == "test_forms_legends:wide_models" and back.params_for(breast_cancer)
    with pytest.raises(ParameterError, match="'width' of ruled does not apply.*diabetes-mlp.*tabular.*rule"):
        by_fn.validate_params({"width": 2}, model=diabetes)


@pytest.mark.parametrize("rule, match", [(broken_rule, "raised RuntimeError: no such attribute"),
                                         (vague_rule, "returned 'yes', not True or False"),
                                         ("no_such_module_xyz:rule", "raised ModuleNotFoundError")])
def test_a_failing_predicate_is_a_plugin_error_naming_the_plugin(rule, match, breast_cancer):
    spec = _spec(rule, name="shaky")
    with pytest.raises(PluginError, match=f"Explainer 'shaky'.*parameter 'width'.*{match}"):
        spec.params_for(breast_cancer)
    rows = applies_to_rows(spec, [(breast_cancer, [])])              # `explainkit plugins check` reports it
    assert [(label, status) for label, status, _ in rows] == [("breast-cancer-mlp", "fail")]
    assert "shaky" in rows[0][2]


@pytest.mark.parametrize("rule, match", [(lambda m: True, "module-level function"), ((), "applies to no model"),
                                         (("imaeg",), "imaeg"), (("image",), "none of the explainer's")])
def test_bad_rules_are_refused_at_declaration(rule, match):
    with pytest.raises(PluginError, match=match):
        ExplainerSpec(name="bad", title="Bad", description="d.", impl="x.y:Z", modalities={Modality.TEXT},
                      params=(Param("width", "int", 3, applies_to=rule),))


def test_conformance_reports_the_rules(breast_cancer, mnist_cnn, sst2_lstm):
    spec = registry().get("lime").spec
    rows = applies_to_rows(spec, [(m, []) for m in (breast_cancer, mnist_cnn, sst2_lstm)])
    assert [s for _, s, _ in rows] == ["pass"] * 3
    assert "form shows segmentation, patch_size" in rows[1][2] and "form shows none" in rows[0][2]
    assert [s for _, s, _ in applies_to_rows(spec, [(breast_cancer, [])])] == ["pass", "warn"]
    plain = dataclasses.replace(registry().get("occlusion").spec)
    assert applies_to_rows(plain, [(breast_cancer, [])])[0][1] == "skip"
    report = explainkit.testing.check_explainer("lime", models=["breast-cancer-mlp", "mnist-cnn"])
    checked = [r for r in report.rows if r.check.value == "applies_to"]
    assert [r.status.value for r in checked] == ["pass", "pass"], report


# -- the form ----------------------------------------------------------------------------------------------
def test_the_form_shows_only_what_applies_and_refuses_the_rest(breast_cancer, mnist_cnn):
    spec = registry().get("kernel_shap").spec
    form = param_form(spec, breast_cancer)
    assert "patch_size" not in form and "segmentation" not in form and "n_background" in form
    assert set(param_form(spec, mnist_cnn)) >= IMAGE_ONLY["kernel_shap"]
    with pytest.raises(ParameterError, match="'patch_size'.*tabular model"):
        set_form(form, "kernel_shap", {"n_samples": 200, "patch_size": 8})
    assert form["n_samples"].value == 0                       # nothing was set: all values or none
    set_form(form, "kernel_shap", {"n_samples": "200", "estimator": "leverage"})
    assert form["n_samples"].value == 200 and form["estimator"].value == "leverage"


def test_out_of_range_values_are_refused_with_the_range_never_clamped(breast_cancer):
    spec = registry().get("lime").spec
    form = param_form(spec, breast_cancer)
    box = form["n_samples"]
    assert type(box).__name__ == "IntText" and (box.min, box.max) == (10, 100_000)   # not a Bounded (clamping) box
    assert "Allowed: [10, 100,000]" in box.tooltip
    with pytest.raises(ParameterError, match=r"is 5, outside \[10, 100000\]"):
        set_form(form, "lime", {"n_samples": 5})
    assert box.value == 1000
    box.value = 5                                            # as typed in the browser: kept, marked, explained
    assert box.value == 5 and INVALID in box._dom_classes
    assert box.tooltip.startswith("Refused: Parameter 'n_samples' of lime is 5, outside [10, 100000].")
    with pytest.raises(ParameterError, match=r"outside \[10, 100000\]"):     # and the run it starts is refused
        spec.validate_params({"n_samples": box.value}, model=breast_cancer)
    box.value = 50
    assert INVALID not in box._dom_classes and "Allowed" in box.tooltip
    width = form["kernel_width"]
    width.value = 2000.5
    assert width.value == 2000.5 and INVALID in width._dom_classes


def test_tabular_rows_show_the_top_features_whole(breast_cancer, load_data):
    from explainkit.views.widgets import _row_summary
    data = load_data("breast-cancer-mlp")
    raw, _ = data[0]
    row = np.asarray(raw, dtype=float)
    text = _row_summary(raw, data.feature_names)
    top = np.argsort(-np.abs(row))[:3]
    assert text.split(", … ")[0] == ", ".join(f"{data.feature_names[i]}={row[i]:.3g}" for i in top)
    assert text.endswith(f"(+{len(row) - 3} more)")
    assert _row_summary([1.0, -7.0], ["a", "b"]) == "b=-7, a=1"


def test_dropdowns_carry_the_full_label_as_tooltip(breast_cancer):
    from explainkit.views.widgets import build_explain_panel
    specs = registry().applicable(breast_cancer)
    e = build_explain_panel(breast_cancer, specs, "saliency")
    e.target.value = 1
    assert e.target.tooltip == f"1: {breast_cancer.classes[1]}"
    assert e.method.tooltip.startswith("Saliency · ")


# -- part 1: declared output space, legends and honest baselines -------------------------------------------
@pytest.fixture(scope="module")
def cancer_row(load_data):
    return load_data("breast-cancer-mlp")[0][0]


def test_integrated_gradients_states_logits_and_f_of_the_baseline(breast_cancer, cancer_row):
    e = explainkit.explain(breast_cancer, cancer_row, "integrated_gradients")
    key = e.legend()
    assert e.output_space == "logit" and key["unit"] == f"logit of {e.target_label}"
    t = e.target_label
    assert (key["positive"], key["negative"]) == (f"evidence for {t}", f"evidence against {t}")
    b = key["baseline"]
    assert b["name"] == "f(baseline)" and b["base"] == pytest.approx(e.extras["baseline_output"])
    assert b["end"] == pytest.approx(b["base"] + e.scores.sum()) and b["adds_up"]
    assert b["end"] == pytest.approx(e.extras["output"], rel=0.01)          # completeness: the values add up
    assert "E[f" not in b["text"] and "logit of" in b["text"]


def test_shap_states_the_expectation_and_adds_up_in_the_regression_output(diabetes, load_data):
    e = explainkit.explain(diabetes, load_data("diabetes-mlp")[0][0], "kernel_shap")     # 10 features: exact
    key = e.legend()
    assert e.extras["exact"] and e.output_space == "value" and key["unit"].startswith("regression output")
    assert key["positive"].startswith("raises the predicted") and key["negative"].startswith("lowers")
    b = key["baseline"]
    assert b["name"] == "E[f] over the background" and b["base"] == pytest.approx(e.base_value)
    assert b["end"] == pytest.approx(float(e.prediction), rel=1e-4) and "approximate" not in b["text"]


def test_lime_shows_its_intercept_and_r2_not_a_model_output(breast_cancer, cancer_row):
    e = explainkit.explain(breast_cancer, cancer_row, "lime", n_samples=300)
    b = e.legend()["baseline"]
    assert b["name"] == "surrogate intercept" and b["base"] == pytest.approx(e.base_value)
    assert b["r2"] == pytest.approx(e.extras["score"]) and not b["adds_up"]
    assert b["end"] == pytest.approx(e.base_value + e.scores.sum())
    assert b["output"] == pytest.approx(e.probabilities[e.target])        # the model's own probability
    assert "R²" in b["text"] and "the surrogate is not the model" in b["text"]


def test_a_plugin_that_does_not_say_gets_score():
    e = explainkit.Explanation(scores=np.array([0.5, -0.2]), modality="tabular", method="mine",
                               feature_names=["a", "b"], classes=["no", "yes"], target=1)
    assert e.output_space == "score" and e.legend()["unit"] == "score" and e.legend()["baseline"] is None
    e.extras["output_space"] = "log-probability"
    assert e.output_space == "log-probability"
    e.extras["output_space"] = "prediction"
    assert e.output_space == "probability"


def test_the_dashboard_payload_carries_the_legend_and_the_honest_waterfall(breast_cancer, cancer_row):
    from explainkit.views.widgets import explanation_payload
    e = explainkit.explain(breast_cancer, cancer_row, "integrated_gradients")
    p = explanation_payload(e)
    assert p["base_value"] == pytest.approx(e.extras["baseline_output"])
    assert p["output"] == pytest.approx(e.extras["output"], rel=0.01)      # not E[f(x)], not normalised
    assert p["legend"]["unit"] == "logit of malignant" and p["legend"]["baseline"]["name"] == "f(baseline)"
    assert set(p["legend"]["text"]) == {"signed", "positive", "absolute"}
    assert "blue: evidence against malignant" in p["legend"]["text"]["signed"]
    assert "magnitude |score|" in p["legend"]["text"]["absolute"]


@pytest.mark.parametrize("sample, method", [("mnist-cnn", "integrated_gradients"), ("sst2-lstm", "saliency"),
                                            ("breast-cancer-mlp", "kernel_shap")])
def test_png_and_html_carry_the_key(sample, method, load_model, load_data):
    from explainkit.views import render
    model = load_model(sample)
    e = explainkit.explain(model, load_data(sample)[0][0], method)
    key = e.legend()
    html = e.to_html()
    assert f'data-ek-unit="{key["unit"]}"' in html and f"unit: {key['unit']}" in html
    fig = render.plot(e)
    words = " ".join(t.get_text() for t in fig.texts) + " ".join(a.get_xlabel() + a.get_ylabel() for a in fig.axes)
    assert key["unit"] in words and (key["positive"] in words or "magnitude" in words)
    if method == "kernel_shap":
        assert "E[f] over the background" in html
        wf = render.waterfall(e)
        assert "E[f] over the background" in wf.axes[0].get_xlabel()


def test_compare_maps_are_normalised_shares_without_f_of_x(breast_cancer, load_data):
    d = explainkit.Dashboard(breast_cancer, load_data("breast-cancer-mlp").subset(range(6)), quality=False)
    assert d.wait(60)
    d.select(1)
    d.compare(["integrated_gradients", "kernel_shap"])
    assert d.wait(120)
    for view in d.c.views[:2]:
        p = view.payload
        assert p["base_value"] is None and "output" not in p
        assert p["legend"]["unit"] == "share of the method's total |attribution|"


# -- part 1: trust in plain words ---------------------------------------------------------------------------
def test_trust_in_plain_words(breast_cancer, cancer_row):
    from explainkit.trust.wording import plain
    e = explainkit.explain(breast_cancer, cancer_row, "integrated_gradients")
    q = e.quality(breast_cancer, metrics=("deletion", "randomization"))
    w = plain(q, e)
    assert w["sentences"][0].startswith(f"Removing the top-ranked features first lowers the probability of "
                                        f"{e.target_label}")
    assert "faster than random" in w["sentences"][0] or "slower than random" in w["sentences"][0]
    assert w["verdict"].split(", ")[0] in {"faithful", "weak", "not faithful"}
    assert "|ρ| = " in w["sentences"][1] and q.badge() in w["numbers"] and w["docs"] == "docs/trust.md"


def test_trust_is_not_meaningful_for_an_unlikely_target(breast_cancer, load_data):
    from explainkit.trust.wording import plain
    data = load_data("breast-cancer-mlp")
    probs = breast_cancer.predict([data[i][0] for i in range(20)])
    i = int(np.argmax(probs.max(axis=1)))                # a confident sample: the other class is under 5 %
    other = int(np.argmin(probs[i]))
    assert probs[i, other] < 0.05
    e = explainkit.explain(breast_cancer, data[i][0], "saliency", target=other)
    w = plain(e.quality(breast_cancer, metrics=("deletion",)), e)
    assert w["verdict"] == "not meaningful" and f"only {probs[i, other]:.1%}" in w["text"]


def test_regression_trust_has_its_own_wording(diabetes, load_data):
    from explainkit.trust.wording import plain
    e = explainkit.explain(diabetes, load_data("diabetes-mlp")[0][0], "integrated_gradients")
    w = plain(e.quality(diabetes, metrics=("deletion",)), e)
    assert "back towards the baseline" in w["text"] and "probability" not in w["text"]
    assert "share of the prediction's change left" in w["numbers"]


def test_randomization_is_read_by_the_size_of_rho():
    from explainkit.trust.metrics import Randomization
    from explainkit.trust.quality import Quality
    from explainkit.trust.wording import plain
    turned = Randomization(True, layers=["fc"], rho=[-0.52], rho_abs=[0.5], threshold=0.5)
    assert turned.flagged                                             # the code reads |ρ| ...
    w = plain(Quality(method="m", n_units=30, randomization=turned))
    assert w["verdict"] == "sanity failed" and "|ρ| = 0.52, over 0.50" in w["text"]
    ok = plain(Quality(method="m", n_units=30, randomization=Randomization(True, rho=[0.07], threshold=0.5)))
    assert ok["verdict"] == "sanity ok" and "|ρ| = 0.07" in ok["text"]
    import pathlib
    doc = (pathlib.Path(__file__).parents[1] / "docs" / "trust.md").read_text()
    assert "`|rho|` after all layers" in doc                           # ... and so do the docs
