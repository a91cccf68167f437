"""The text-audit notebook (02) in JupyterLab: the transformer dashboard's attention view."""
from __future__ import annotations

import pytest
from driver import canvas_digest, kernel_eval, run_dashboard_notebook, wait_done
from ekserver import ARTIFACTS
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Walks the dashboard's widget tree by the documented CSS hook, then prints what Python holds.
ATTENTION_STATE = """
def _find(w, cls):
    if cls in getattr(w, "_dom_classes", ()):
        return w
    for child in getattr(w, "children", ()):
        found = _find(child, cls)
        if found is not None:
            return found
_att = _find(dash, "ek-attention")
print(dash.selected_index, _att.key, _att.layer, _att.head, _att.rollout, _att.hovered)
"""


def test_attention_view_in_lab(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "02_audit_text_model.ipynb", timer)
    att = dash.locator(".ek-attention[data-ek-ready='1']")
    matrix = att.locator("canvas.ek-att-matrix").first
    wait_done(status, sample=0)
    expect(att).to_have_attribute("data-ek-key", "0|attention")
    pixels = [canvas_digest(matrix)]
    timer.mark("dashboard_ready")

    def repainted(what):
        pixels.append(canvas_digest(matrix))
        assert pixels[-1] != pixels[-2], f"the attention matrix did not change after {what}"

    # another sample: the attention view follows the selection (a Python round trip)
    dash.locator(".ek-grid .ek-sample[data-ek-index='2']").click()
    wait_done(status, sample=2)
    expect(att).to_have_attribute("data-ek-key", "2|attention")
    tokens = att.locator(".ek-att-token")
    assert tokens.count() >= 3
    repainted("selecting sample 2")

    # layer and head dropdowns are linked to the view in the kernel: the view only changes via Python
    dash.locator(".ek-att-layer select").select_option(label="1")
    expect(att).to_have_attribute("data-ek-layer", "1")
    repainted("layer 1")
    dash.locator(".ek-att-head select").select_option(label="0")
    expect(att).to_have_attribute("data-ek-head", "0")
    repainted("head 0")
    dash.locator(".ek-att-rollout input[type=checkbox]").check()
    expect(att).to_have_attribute("data-ek-rollout", "1")
    repainted("rollout")

    # hover a token: its row is highlighted and the kernel receives the index
    att.locator(".ek-att-token[data-ek-token='1']").hover()
    expect(att.locator(".ek-att-token.ek-src")).to_have_attribute("data-ek-token", "1")
    repainted("hovering token 1")
    timer.mark("interactions_done")

    echo = kernel_eval(page, ATTENTION_STATE)
    assert echo.split() == ["2", "2|attention", "1", "0", "True", "1"], echo

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.locator(".ek-attention-panel").screenshot(path=str(ARTIFACTS / "lab-text-attention.png"))
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
    timer.mark("assertions_done")
