"""Issue 13 parts 1 and 3 in JupyterLab (the tabular notebook 03): every view says what its colours and
numbers mean, trust is in plain words, a value out of range is refused with the range (never clamped),
and nothing is truncated without its full text."""
from __future__ import annotations

import re

import pytest
from driver import STATUS, kernel_eval, run_dashboard_notebook, wait_done
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TRUNCATED_JS = """(els) => els.filter((e) => e.scrollWidth > e.clientWidth + 1 && !e.title).map((e) => e.textContent)"""


def test_legends_trust_words_and_forms_in_lab(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "03_audit_tabular_and_regression.ipynb", timer)
    wait_done(status, sample=0, method="integrated_gradients")
    view = dash.locator(".ek-view[data-ek-ready='1']")
    timer.mark("dashboard_ready")

    # the legend: red and blue in words, and the unit the plugin declared (IG: logits)
    key = view.locator(".ek-legend-key")
    expect(key).to_have_attribute("data-ek-unit", "logit of malignant")
    expect(key).to_contain_text("evidence for malignant")
    expect(key).to_contain_text("evidence against malignant")
    # the waterfall starts at f(baseline), not "E[f(x)]", and ends at f(x) in logits
    expect(view.locator(".ek-baseline")).to_contain_text("f(baseline) = ")
    expect(view).not_to_contain_text("E[f(x)]")
    expect(view.locator(".ek-waterfall-end").last).to_contain_text("(logit of malignant)")
    dash.locator(".ek-view-mode button", has_text="absolute").click()
    expect(key).to_contain_text("direction not shown")
    dash.locator(".ek-view-mode button", has_text="signed").click()

    # trust in plain words, the numbers on hover, a link to docs/trust.md
    words = dash.locator(".ek-quality-words .widget-html-content")
    expect(words).to_contain_text("Removing the top-ranked features first", timeout=60_000)
    expect(words.locator("a.ek-trust-docs")).to_have_attribute("href", "docs/trust.md")
    expect(dash.locator(".ek-quality")).to_contain_text("trust: ")
    assert "deletion AUC" in (words.locator(".ek-trust-words").get_attribute("title") or "")

    # tabular rows: the top features by value, whole, with the count of the others
    expect(dash.locator(".ek-grid .ek-text").first).to_contain_text("more)")
    # nothing truncated without a tooltip: class names in the prediction panel wrap
    names = dash.locator(".ek-prediction .ek-pred-name, .ek-view .ek-feat-name, .ek-view-mode button")
    assert names.count() >= 5
    assert names.evaluate_all(TRUNCATED_JS) == []
    timer.mark("legends_checked")

    # an out-of-range value is refused with the range shown, and kept as typed (never clamped)
    box = dash.locator(".ek-param-n_steps input")
    box.fill("1")
    box.press("Enter")
    expect(dash.locator(".ek-error")).to_contain_text("outside [2, 5000]", timeout=60_000)
    expect(box).to_have_value("1")
    expect(dash.locator(".ek-param-n_steps")).to_have_class(re.compile("ek-param-invalid"))
    echo = kernel_eval(page, "print(dash.params['n_steps'], dash.last_error.__class__.__name__)")
    assert echo.split() == ["1", "ParameterError"], echo
    box.fill("8")
    box.press("Enter")
    wait_done(status, "n_steps=8", sample=0)
    expect(dash.locator(".ek-param-n_steps")).not_to_have_class(re.compile("ek-param-invalid"))
    timer.mark("forms_checked")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.screenshot(path=str(ARTIFACTS / "lab-forms-legends.png"))
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
    timer.mark("assertions_done")


def test_regression_legend_and_trust_words_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:diabetes-mlp", timer=timer) as srv:
        page.goto(srv.app_url, wait_until="commit", timeout=120_000)
        dash = page.locator(".ek-dashboard")
        expect(dash.locator(".ek-header")).to_contain_text("diabetes-mlp", timeout=120_000)
        wait_done(dash.locator(STATUS), sample=0, method="integrated_gradients")
        timer.mark("dashboard_ready")
        # the regression target's label is shown (a Dropdown shows nothing for the value None)
        expect(dash.locator(".ek-target select")).to_have_value("disease progression (output)")
        key = dash.locator(".ek-view[data-ek-ready='1'] .ek-legend-key")
        expect(key).to_have_attribute("data-ek-unit", "regression output: disease progression")
        expect(key).to_contain_text("raises the predicted disease progression")
        expect(key).to_contain_text("lowers the predicted disease progression")
        expect(dash.locator(".ek-view .ek-baseline")).to_contain_text("f(baseline) = ")
        words = dash.locator(".ek-quality-words .widget-html-content")
        expect(words).to_contain_text("back towards the baseline", timeout=60_000)
        text = words.inner_text()
        assert "probability" not in text and "misclassified" not in text, text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dash.screenshot(path=str(ARTIFACTS / "app-regression-legend.png"))
        assert page.ek_blocked == [], page.ek_blocked
        assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
