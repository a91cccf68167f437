"""Issue 13 part 2, "no stale or wrong picture, ever", in a real browser, in JupyterLab and in the app (Voila):

- while a slow job runs the previous map and trust badge are dimmed and marked "previous sample/parameters";
- on a sample change every panel (map, badge, curves, attention) redraws or clears, never shows the old one;
- the attention menus match the model's own tensor after the rollout explainer, and after another method;
- an export uses the colour scale on screen (read from the page);
- compare shows the parameters each map ran with, and its rows are aligned by unit.
"""
from __future__ import annotations

import base64
import json
import re
from contextlib import contextmanager

import pytest
from driver import open_dashboard, wait_done
from ekserver import ARTIFACTS, ROOT, app_running
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TEXT = ("02_audit_text_model.ipynb", "sample:sst2-transformer")        # (Lab notebook, app model)
TABULAR = ("03_audit_tabular_and_regression.ipynb", "sample:breast-cancer-mlp")
HPARAMS = json.loads((ROOT / "sample_models" / "sst2-transformer" / "config.json").read_text())["hparams"]

# Records, on every change inside the dashboard, what is on screen: the main view's key, every element
# marked "previous" (its class, whether it holds the map or the badge, its ::before label and opacity),
# and the trust curves (shown or not, and which image).
WATCH_JS = """(root) => {
  window.__ekSeen = [];
  const view = root.querySelector('.ek-view');
  const snap = () => {
    const plot = root.querySelector('img.ek-quality-plot');
    const marks = Array.from(root.querySelectorAll('.ek-previous-sample, .ek-previous-params')).map((e) => ({
      cls: e.classList.contains('ek-previous-sample') ? 'sample' : 'params',
      map: e.classList.contains('ek-view'), badge: !!e.querySelector('.ek-quality'),
      before: getComputedStyle(e, '::before').content, opacity: Number(getComputedStyle(e).opacity)}));
    window.__ekSeen.push({key: view.dataset.ekKey, marks,
      plot: plot ? {shown: plot.offsetParent !== null, src: plot.src} : null});
  };
  new MutationObserver(snap).observe(root, {subtree: true, attributes: true, childList: true,
                                            attributeFilter: ['class', 'style', 'src', 'data-ek-key']});
  snap();
}"""
SEEN_JS = "() => window.__ekSeen"

# max - min of a canvas's red channel: 0 for a solid square (the heads-1-3 bug drew black)
SPREAD_JS = """(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); }
  return hi - lo; }"""


@contextmanager
def dashboard(where, what, request, tmp_path, page, timer):
    """The dashboard on the ``what`` model, in Lab (its notebook) or in the app."""
    notebook, model = what
    if where == "lab":
        yield open_dashboard(page, request.getfixturevalue("lab_server"), notebook, timer)
    else:
        with app_running(tmp_path, "--model", model, timer=timer) as srv:
            yield open_dashboard(page, srv, timer=timer)
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors


def _trust_done(dash):
    expect(dash.locator(".ek-quality")).to_contain_text("trust: ", timeout=90_000)
    expect(dash.locator(".ek-quality")).not_to_contain_text("computing", timeout=90_000)
    expect(dash.locator(".ek-quality-words .ek-trust-words")).to_be_visible(timeout=90_000)


@pytest.mark.parametrize("where", ["lab", "app"])
def test_text_transitions(where, request, tmp_path, page, timer):
    with dashboard(where, TEXT, request, tmp_path, page, timer) as (dash, status):
        view = dash.locator(".ek-view[data-ek-ready='1']")
        att = dash.locator(".ek-attention[data-ek-ready='1']")
        words = dash.locator(".ek-quality-words .ek-trust-words")
        plot = dash.locator("img.ek-quality-plot")
        wait_done(status, sample=0, method="integrated_gradients")
        key = view.locator(".ek-legend-key")                    # part 1: the highlight's legend and unit
        expect(key).to_contain_text("evidence for ")
        expect(key).to_have_attribute("data-ek-unit", re.compile("^logit"))
        _trust_done(dash)
        dash.locator(".ek-quality").click()                     # open the trust curves: they follow the sample
        expect(plot).to_be_visible(timeout=60_000)
        before = {"key": view.get_attribute("data-ek-key"), "text": view.locator(".ek-tokens").inner_text(),
                  "att": att.locator(".ek-att-tokens").inner_text(), "words": words.get_attribute("title"),
                  "plot": plot.get_attribute("src")}
        expect(att).to_have_attribute("data-ek-key", "0|attention")

        # -- a sample change: map, badge, curves and attention all redraw (or clear first), none stays old
        dash.evaluate(WATCH_JS)
        dash.locator(".ek-grid .ek-sample[data-ek-index='3']").click()
        wait_done(status, sample=3, method="integrated_gradients")
        expect(view).to_have_attribute("data-ek-key", re.compile(r"^3\|integrated_gradients\|"))
        assert view.locator(".ek-tokens").inner_text() != before["text"]
        expect(att).to_have_attribute("data-ek-key", "3|attention")
        assert att.locator(".ek-att-tokens").inner_text() != before["att"]
        _trust_done(dash)
        expect(words).not_to_have_attribute("title", before["words"] or "", timeout=60_000)
        expect(plot).to_be_visible(timeout=60_000)
        expect(plot).not_to_have_attribute("src", before["plot"], timeout=60_000)
        seen = page.evaluate(SEEN_JS)
        # the old curves may stay only while they are dimmed and marked "previous" (the badge's row)
        stale = [s for s in seen if s["key"].startswith("3|") and s["plot"] and s["plot"]["shown"]
                 and s["plot"]["src"] == before["plot"] and not any(m["badge"] for m in s["marks"])]
        assert not stale, "the previous sample's trust curves were on screen, unmarked, beside the new map"
        timer.mark("sample_change_checked")

        # -- the attention panel draws the model's own [layers, heads, T, T]; its menus match, after rollout too
        heads = ["mean", "all"] + [str(h) for h in range(HPARAMS["heads"])]
        for method, title in (("attention_rollout", "Attention rollout"), ("saliency", "Saliency")):
            dash.locator(".ek-method select").select_option(label=title)
            wait_done(status, sample=3, method=method)
            expect(att).to_have_attribute("data-ek-key", "3|attention")
            assert dash.locator(".ek-att-layer select option").all_inner_texts() == \
                [str(i) for i in range(HPARAMS["layers"])]
            assert dash.locator(".ek-att-head select option").all_inner_texts() == heads
            for h in heads[2:]:                                # every head offered draws a real matrix
                dash.locator(".ek-att-head select").select_option(label=h)
                expect(att).to_have_attribute("data-ek-head", h)
                assert att.locator("canvas.ek-att-matrix").evaluate(SPREAD_JS) > 0, f"head {h} after {method}"
        dash.locator(".ek-att-head select").select_option(label="mean")
        timer.mark("attention_checked")

        # -- an export uses the scale on screen: the colour bar's ends, read from the page
        shown_max = float(view.locator(".ek-colorbar span").last.inner_text())
        dash.locator(".ek-export-html").click()
        link = dash.locator(".ek-export-link a")
        expect(link).to_have_attribute("download", re.compile(r"-3-saliency\.html$"))
        html = base64.b64decode(link.get_attribute("href").split(",", 1)[1]).decode("utf-8")
        high = re.search(r"class=\"ek-legend\"><span>[^<]*</span><span class=\"ek-bar\"[^>]*></span><span>([^<]+)<",
                         html)
        assert high is not None, html[:2000]
        assert float(high.group(1)) == pytest.approx(shown_max, rel=5e-3, abs=5e-5), (high.group(1), shown_max)
        assert "sample #3 · saliency (abs=True)" in html and "trust: " in html
        timer.mark("export_checked")

        # -- a slow job: the map and the badge on screen are dimmed and say whose they are
        dash.locator(".ek-method select").select_option(label="Integrated Gradients")
        wait_done(status, sample=3, method="integrated_gradients")
        _trust_done(dash)
        dash.evaluate(WATCH_JS)
        box = dash.locator(".ek-param-n_steps input")
        box.fill("3000")      # slow enough to be seen running (400 steps once ran in 0.86 s and were missed)
        box.press("Enter")
        expect(status).to_contain_text("state=running")
        dash.locator(".ek-grid .ek-sample[data-ek-index='5']").click()    # and a new sample while it runs
        wait_done(status, "n_steps=3000", sample=5)
        seen = page.evaluate(SEEN_JS)
        for cls, label in (("params", "previous parameters"), ("sample", "previous sample")):
            marks = [m for s in seen for m in s["marks"] if m["cls"] == cls]
            assert any(m["map"] for m in marks) and any(m["badge"] for m in marks), (cls, [
                (s["key"], [(m["cls"], m["map"], m["badge"]) for m in s["marks"]]) for s in seen])
            assert all(label in m["before"] and m["opacity"] < 0.75 for m in marks), marks[:3]
        expect(dash.locator(".ek-previous-sample, .ek-previous-params")).to_have_count(0)
        timer.mark("dimming_checked")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dash.screenshot(path=str(ARTIFACTS / f"{where}-transitions-text.png"))


@pytest.mark.parametrize("where", ["lab", "app"])
def test_compare_shows_parameters_and_aligned_rows(where, request, tmp_path, page, timer):
    with dashboard(where, TABULAR, request, tmp_path, page, timer) as (dash, status):
        wait_done(status, sample=0, method="integrated_gradients")
        box = dash.locator(".ek-param-n_steps input")
        box.fill("8")
        box.press("Enter")
        wait_done(status, "n_steps=8", sample=0)
        dash.locator(".ek-compare-methods select").select_option(
            label=["Integrated Gradients", "Saliency", "Kernel SHAP"])
        dash.locator(".ek-compare-run").click()
        table = dash.locator(".ek-compare-rows table.ek-compare-table")
        expect(table).to_be_visible(timeout=120_000)
        timer.mark("compared")

        # each map says the parameters it ran with: the form's n_steps=8, saliency's defaults; only what applies
        captions = dash.locator(".ek-compare-params .ek-compare-caption")
        expect(captions).to_have_count(3)
        texts = captions.all_inner_texts()
        by = {t.split()[0]: t for t in texts}                  # the menu's order: one map per method
        assert set(by) == {"integrated_gradients", "saliency", "kernel_shap"}, texts
        assert "n_steps=8" in by["integrated_gradients"] and "abs=True" in by["saliency"], texts
        assert "n_background=50" in by["kernel_shap"], texts
        assert not re.search("patch_size|n_segments|segmentation", " ".join(texts)), texts
        assert "n_steps=8" in table.locator("thead").inner_text()

        # the same feature on the same row: the table, and every map's bars, in one order, at one height
        units = table.locator("tbody tr").evaluate_all("rs => rs.map((r) => r.dataset.ekUnit)")
        assert len(units) == 20
        maps = dash.locator(".ek-compare-view[data-ek-ready='1']:visible")
        expect(maps).to_have_count(3)
        ys = []
        for k in range(3):
            rows = maps.nth(k).locator(".ek-feat")
            names = rows.locator(".ek-feat-name").evaluate_all("ns => ns.map((n) => n.title)")
            assert names == units, (k, names[:5], units[:5])
            ys.append(rows.evaluate_all("rs => rs.map((r) => Math.round(r.getBoundingClientRect().top))"))
        assert ys[0] == ys[1] == ys[2], ys
        shares = table.locator("tbody tr").first.locator("td").all_inner_texts()
        assert len(shares) == 3 and all(re.fullmatch(r"[+-]\d\.\d{3}", s) for s in shares), shares
        timer.mark("compare_checked")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 2400})      # the whole panel painted at once
        dash.locator(".ek-compare").screenshot(path=str(ARTIFACTS / f"{where}-compare-params.png"))

