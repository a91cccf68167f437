"""Issue 13 parts 1 and 3, the items tests/browser/test_lab_forms.py leaves out, in JupyterLab AND the app:
forms show only the parameters that apply (``Param.applies_to``), honest baselines (E[f] over the background
for Kernel SHAP, the surrogate's intercept and R² for LIME), "not meaningful" trust for an unlikely target,
an out-of-range value refused with its range (never clamped), and full labels in tooltips."""
from __future__ import annotations

import re

import pytest
from driver import wait_done
from playwright.sync_api import expect
from test_transitions import TABULAR, dashboard

pytestmark = pytest.mark.browser

# a select shows its chosen label whole: the text fits the box (measured with the select's own font)
WHOLE_JS = """(s) => { const c = document.createElement('canvas').getContext('2d'); const st = getComputedStyle(s);
  c.font = `${st.fontSize} ${st.fontFamily}`;
  const pad = parseFloat(st.paddingLeft) + parseFloat(st.paddingRight) + 20;      // 20: the arrow
  return c.measureText(s.options[s.selectedIndex].text).width + pad <= s.clientWidth; }"""


@pytest.fixture(scope="module")
def unlikely():
    """(sample, class) on the first page of the tabular data whose class the model gives under 5 %."""
    import explainkit
    from explainkit.data import datasets
    model = explainkit.load_sample("breast-cancer-mlp")
    data = datasets.sample_data("breast-cancer-mlp")
    probs = model.predict([data[i][0] for i in range(1, 24)])
    i = next(k for k in range(len(probs)) if probs[k].min() < 0.05)
    return i + 1, int(probs[i].argmin()), list(model.classes)


@pytest.mark.parametrize("where", ["lab", "app"])
def test_forms_baselines_and_trust_words(where, unlikely, request, tmp_path, page, timer):
    index, other, classes = unlikely
    with dashboard(where, TABULAR, request, tmp_path, page, timer) as (dash, status):
        view = dash.locator(".ek-view[data-ek-ready='1']")
        wait_done(status, sample=0, method="integrated_gradients")

        # applies_to: a tabular model's Kernel SHAP and LIME forms have no image-only parameters
        dash.locator(".ek-method select").select_option(label="Kernel SHAP")
        wait_done(status, sample=0, method="kernel_shap")
        expect(dash.locator(".ek-param-n_background")).to_be_visible()
        for name in ("segmentation", "patch_size", "n_segments"):
            expect(dash.locator(f".ek-param-{name}")).to_have_count(0)
        # honest baseline: E[f] over the background, and the waterfall adds up to f(x)
        expect(view.locator(".ek-baseline")).to_contain_text("E[f] over the background = ")
        expect(view).not_to_contain_text("E[f(x)]")

        # an out-of-range value is refused with the range shown, kept as typed
        box = dash.locator(".ek-param-n_background input")
        box.fill("5000")
        box.press("Enter")
        expect(dash.locator(".ek-error")).to_contain_text("outside [1, 2000]", timeout=60_000)
        expect(box).to_have_value("5000")
        expect(dash.locator(".ek-param-n_background")).to_have_class(re.compile("ek-param-invalid"))
        box.fill("50")
        box.press("Enter")
        expect(dash.locator(".ek-error")).to_be_hidden(timeout=60_000)
        timer.mark("kernel_shap_checked")

        dash.locator(".ek-method select").select_option(label="LIME")
        wait_done(status, sample=0, method="lime")
        expect(dash.locator(".ek-param-patch_size")).to_have_count(0)
        expect(view.locator(".ek-baseline")).to_contain_text("surrogate intercept = ")
        expect(view.locator(".ek-waterfall-end").last).to_contain_text("surrogate R²")
        timer.mark("lime_checked")

        # trust in plain words: "not meaningful" for a target the model gives under 5 %
        dash.locator(".ek-method select").select_option(label="Integrated Gradients")
        dash.locator(f".ek-grid .ek-sample[data-ek-index='{index}']").click()
        wait_done(status, sample=index, method="integrated_gradients")
        dash.locator(".ek-target select").select_option(label=f"{other}: {classes[other]}")
        wait_done(status, f"target={other}", sample=index)
        words = dash.locator(".ek-quality-words .widget-html-content")
        expect(words).to_contain_text("not meaningful for this target", timeout=90_000)
        expect(dash.locator(".ek-quality")).to_contain_text("trust: not meaningful")
        expect(view.locator(".ek-legend-key")).to_contain_text(f"evidence for {classes[other]}")
        # nothing truncated without a tooltip: the target's and the method's labels are whole, or have a title
        # (ipywidgets 8.1 drops the tooltip of a Dropdown that has a description, so "whole" is what holds here)
        for hook in (".ek-target", ".ek-method"):
            label = dash.locator(f"{hook} select option:checked").inner_text().replace("\xa0", " ")
            whole = dash.locator(f"{hook} select").evaluate(WHOLE_JS)
            tip = dash.locator(f"{hook} select").get_attribute("title") or ""
            assert label and (whole or label in tip.replace("\xa0", " ")), (hook, label)
        timer.mark("trust_checked")
