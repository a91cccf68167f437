"""The image-audit notebook (01) in JupyterLab: run it, then drive its dashboard like an auditor would."""
from __future__ import annotations

import pytest
from driver import canvas_digest, kernel_eval, run_dashboard_notebook, wait_done
from ekserver import ARTIFACTS
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_image_dashboard_in_lab(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "01_audit_image_model.ipynb", timer)
    view = dash.locator(".ek-view[data-ek-ready='1']")
    canvas = view.locator("canvas").first
    wait_done(status, sample=0, method="integrated_gradients")
    expect(view).to_have_attribute("data-ek-key", "0|integrated_gradients|" + view.get_attribute("data-ek-key")[-10:])
    keys, pixels = [view.get_attribute("data-ek-key")], [canvas_digest(canvas)]
    timer.mark("dashboard_ready")

    def changed(prefix: str):
        expect(view).not_to_have_attribute("data-ek-key", keys[-1])
        key = view.get_attribute("data-ek-key")
        assert key.startswith(prefix), key
        keys.append(key)
        pixels.append(canvas_digest(canvas))
        assert pixels[-1] != pixels[-2], f"the heat map did not change for {key}"

    # 1. another sample in the grid
    dash.locator(".ek-grid .ek-sample[data-ek-index='3']").click()
    wait_done(status, sample=3, method="integrated_gradients")
    changed("3|integrated_gradients|")
    expect(dash.locator(".ek-grid .ek-sample.ek-selected")).to_have_attribute("data-ek-index", "3")

    # 2. a parameter (a bounded int text box commits on Enter)
    box = dash.locator(".ek-param-n_steps input")
    box.fill("4")
    box.press("Enter")
    wait_done(status, "n_steps=4", sample=3, method="integrated_gradients")
    changed("3|integrated_gradients|")

    # 3. another explainer
    dash.locator(".ek-method select").select_option(label="Saliency")
    wait_done(status, "params=abs=True", sample=3, method="saliency")
    changed("3|saliency|")
    timer.mark("interactions_done")

    # the Python side holds what the browser asked for
    echo = kernel_eval(page, "print(dash.selected_index, dash.method, dash.view_key, "
                             "[h['value'] for h in dash.history if h['event'] == 'params'])")
    assert echo.split()[:3] == ["3", "saliency", keys[-1]], echo
    assert "{'n_steps': 4}" in echo, echo

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.screenshot(path=str(ARTIFACTS / "lab-image-dashboard.png"))
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
    timer.mark("assertions_done")
