"""What-if in a real browser (issue 13, part 5). JupyterLab: on breast-cancer-mlp (notebook 03) a feature value
typed into the what-if slider (sample #3, "worst area" 1009 → 400) makes an edited copy, listed right after its
original and marked "edited", predicted (benign now) and explained live, while the original keeps its own cached
map; on sst2-transformer (notebook 02) an edited text is re-run; on mnist-cnn (notebook 01) a stroke painted with
the mouse on the brush canvas is erased. The app: the brush on mnist-cnn, the text on sst2-lstm, and the slider
on diabetes-mlp (regression). Each Lab test also asks the kernel what the dashboard holds."""
from __future__ import annotations

import json
import re

import pytest
from driver import canvas_digest, kernel_eval, open_dashboard, run_dashboard_notebook, wait_done
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

ROW_ORDER_JS = "(el) => [...el.querySelectorAll('.ek-sample')].map((r) => r.dataset.ekIndex)"

PYTHON_STATE = """
import numpy as np
_w, _n = dash.whatif, {n}
print(dash.selected_index, len(dash.dataset), len(cancer_data), _w.edits[_n].parent,
      float(dash.dataset.raws[_n][{j}]), float(cancer_data.raws[3][{j}]),
      bool(np.allclose(dash.predictions.outputs[_n], cancer.predict([dash.dataset.raws[_n]])[0])),
      dash.last_explanation.sample_index)
"""


def _no_page_errors(page):
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors


def test_slider_edit_makes_an_edited_copy_in_lab(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "03_audit_tabular_and_regression.ipynb", timer)
    wait_done(status, sample=0)
    view = dash.locator(".ek-view[data-ek-ready='1']")
    dash.locator(".ek-grid .ek-sample[data-ek-index='3']").click()   # benign, but predicted malignant (89.7%)
    wait_done(status, sample=3)
    original_key = view.get_attribute("data-ek-key")
    panel = dash.locator(".ek-whatif")
    expect(panel).to_be_visible()
    timer.mark("dashboard_ready")

    panel.locator(".ek-whatif-feature select").select_option(label="worst area")
    lo, hi, j, now = kernel_eval(page, "_w = dash.whatif; _j = _w.feature.value; "
                                       "print(*_w.ranges[_j], _j, _w.slider.value)").split()
    assert float(lo) <= float(now) <= float(hi)
    value = "400"                                                     # what if worst area were 400 (it is 1009)?
    assert float(lo) < float(value) < float(now)
    readout = panel.locator(".ek-whatif-slider .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")
    n = 114                                                           # the first copy: after the 114 held-out rows
    wait_done(status, sample=n)
    expect(view).to_have_attribute("data-ek-key", re.compile(rf"^{n}\|"))
    row = dash.locator(f".ek-grid .ek-sample[data-ek-index='{n}']")
    expect(row).to_have_class(re.compile(r"\bek-edited\b"))
    expect(row).to_have_attribute("data-ek-parent", "3")
    expect(row.locator(".ek-edited-badge")).to_have_text("edited")
    expect(row.locator(".ek-text")).to_contain_text(f"worst area {float(now):.4g} → {float(value):.4g}")
    assert dash.locator(".ek-grid-view").evaluate(ROW_ORDER_JS)[:6] == ["0", "1", "2", "3", str(n), "4"]
    expect(panel.locator(".ek-whatif-status")).to_contain_text(
        f"#{n} edited from #3: worst area 1009 → 400; prediction malignant (89.7%) → benign")
    expect(dash.locator(".ek-prediction .ek-is-pred")).to_contain_text("benign")    # the edit flips it
    got = kernel_eval(page, PYTHON_STATE.format(n=n, j=j)).split()
    assert got[:4] == [str(n), "115", "114", "3"], got                # a new sample; the data passed in unchanged
    assert float(got[4]) == pytest.approx(float(value)) and float(got[5]) == pytest.approx(float(now)), got
    assert got[6:] == ["True", str(n)], got                          # predicted and explained for the copy
    timer.mark("edited")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.locator(".ek-card").first.locator("xpath=..").screenshot(path=str(ARTIFACTS / "lab-whatif-tabular.png"))

    dash.locator(".ek-grid .ek-sample[data-ek-index='3']").click()    # the original: its own map, from the cache
    wait_done(status, "state=cached", sample=3)
    expect(view).to_have_attribute("data-ek-key", original_key)
    expect(panel.locator(".ek-whatif-slider .widget-readout")).to_have_text(f"{float(now):.4g}")
    _no_page_errors(page)
    timer.mark("assertions_done")


# What the kernel holds after an edit (JSON): the copy, its parent, its prediction against the model's own, the
# explanation's sample, and the data passed in (``{data}``) unchanged; ``{extra}`` adds modality checks.
KERNEL_STATE = """
import json as _json
import numpy as _np
_w, _n, _m, _d = dash.whatif, {n}, {model}, {data}
_p = _m.predict([dash.dataset.raws[_n]])[0]
_p0 = _m.predict([_d.raws[_w.edits[_n].parent]])[0]
_say = lambda p: f"{{(_m.classes or [str(k) for k in range(len(p))])[int(p.argmax())]}} ({{p.max():.1%}})"
print(_json.dumps(dict(
    n=len(dash.dataset), given=len(_d), parent=_w.edits[_n].parent, selected=dash.selected_index,
    explained=dash.last_explanation.sample_index, view_key=dash.view_key, what=_w.edits[_n].what,
    same_prediction=bool(_np.allclose(dash.predictions.outputs[_n], _p)),
    before=_say(_p0), after=_say(_p),
    provenance=dash._provenance(dash.last_explanation), {extra})))
"""


def _kernel_state(page, n: int, model: str, data: str, extra: str) -> dict:
    out = kernel_eval(page, KERNEL_STATE.format(n=n, model=model, data=data, extra=extra))
    assert out.lstrip().startswith("{"), out
    return json.loads(out)


def test_text_edit_makes_an_edited_copy_in_lab(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "02_audit_text_model.ipynb", timer)
    wait_done(status, sample=0)
    view = dash.locator(".ek-view[data-ek-ready='1']")
    att = dash.locator(".ek-attention[data-ek-ready='1']")
    original_key = view.get_attribute("data-ek-key")
    text = dash.locator(".ek-whatif-text textarea")
    expect(text).to_have_value(re.compile(r"\bcharming\b"))
    original = text.input_value()
    n = int(kernel_eval(page, "print(len(data))"))                    # the first copy: after the data's rows
    timer.mark("dashboard_ready")

    edited = original.replace("charming", "dreadful")
    text.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(edited)                                         # typed, as a user does
    text.press("Tab")                                                  # the Textarea syncs on change
    dash.locator(".ek-whatif-run").click()
    wait_done(status, sample=n)
    expect(view).to_have_attribute("data-ek-key", re.compile(rf"^{n}\|"))
    expect(att).to_have_attribute("data-ek-key", f"{n}|attention")    # the attention view follows the copy
    row = dash.locator(f".ek-grid .ek-sample[data-ek-index='{n}']")
    expect(row).to_have_class(re.compile(r"\bek-edited\b"))
    expect(row).to_have_attribute("data-ek-parent", "0")
    expect(row.locator(".ek-edited-badge")).to_have_text("edited")
    expect(row.locator(".ek-text")).to_contain_text("dreadful")
    assert dash.locator(".ek-grid-view").evaluate(ROW_ORDER_JS)[:3] == ["0", str(n), "1"]
    # the map is redrawn for the copy: its tokens carry the new word, and the old one is gone
    tokens = view.locator(".ek-token")
    expect(tokens.filter(has_text="dreadful").first).to_be_visible()
    assert tokens.filter(has_text="charming").count() == 0
    expect(dash.locator(".ek-prediction")).to_have_attribute("data-ek-index", str(n))
    got = _kernel_state(page, n, "transformer", "data",
                        f"text=dash.dataset.raws[_n], kept=_d.raws[0] == {original!r}")
    assert (got["n"], got["given"], got["parent"], got["selected"], got["explained"]) == (n + 1, n, 0, n, n), got
    assert got["text"] == edited and got["kept"] and got["same_prediction"], got
    assert view.get_attribute("data-ek-key") == got["view_key"], got
    expect(dash.locator(".ek-whatif-status")).to_contain_text(
        f"#{n} edited from #0: {got['what']}; prediction {got['before']} → {got['after']}")
    assert "dreadful" in got["what"] and "charming" in got["what"], got
    assert got["provenance"].startswith(f"sample #{n} (edited copy of #0: {got['what']})"), got
    expect(dash.locator(".ek-prediction .ek-is-pred")).to_contain_text(got["after"].split(" (")[0])
    timer.mark("edited")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.locator(".ek-card").first.locator("xpath=..").screenshot(path=str(ARTIFACTS / "lab-whatif-text.png"))

    dash.locator(".ek-grid .ek-sample[data-ek-index='0']").click()    # the original: its own map, from the cache
    wait_done(status, "state=cached", sample=0)
    expect(view).to_have_attribute("data-ek-key", original_key)
    expect(text).to_have_value(original)
    _no_page_errors(page)
    timer.mark("assertions_done")


def test_brush_erase_makes_an_edited_copy_in_lab(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "01_audit_image_model.ipynb", timer)
    wait_done(status, sample=0)
    view = dash.locator(".ek-view[data-ek-ready='1']")
    original_key = view.get_attribute("data-ek-key")
    brush = dash.locator(".ek-whatif-brush[data-ek-ready='1']")
    expect(brush).to_have_attribute("data-ek-index", "0")
    erase = brush.locator(".ek-whatif-erase")
    expect(erase).to_be_disabled()                                     # nothing painted yet
    n = int(kernel_eval(page, "print(len(data))"))
    timer.mark("dashboard_ready")

    canvas = brush.locator("canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2)
    page.mouse.down()                                                  # a vertical stroke through the digit
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.8, steps=8)
    page.mouse.up()
    expect(erase).to_be_enabled()
    painted = int(brush.get_attribute("data-ek-painted"))
    assert painted > 20, painted
    map_canvas = view.locator("canvas").first
    before = canvas_digest(map_canvas)
    erase.click()
    wait_done(status, sample=n)
    expect(view).to_have_attribute("data-ek-key", re.compile(rf"^{n}\|"))
    expect(brush).to_have_attribute("data-ek-index", str(n))           # the editor shows the copy now
    assert brush.get_attribute("data-ek-painted") == "0"
    tile = dash.locator(f".ek-grid .ek-sample[data-ek-index='{n}']")
    expect(tile).to_have_class(re.compile(r"\bek-edited\b"))
    expect(tile).to_have_attribute("data-ek-parent", "0")
    expect(tile.locator(".ek-edited-badge")).to_have_text("edited")
    assert dash.locator(".ek-grid-view").evaluate(ROW_ORDER_JS)[:3] == ["0", str(n), "1"]
    assert canvas_digest(map_canvas) != before, "the map was not redrawn for the copy"
    expect(dash.locator(".ek-prediction")).to_have_attribute("data-ek-index", str(n))
    got = _kernel_state(page, n, "model", "data",
                        "erased=int((dash.dataset.raws[_n] != _d.raws[0]).sum()), "
                        "black=int((dash.dataset.raws[_n][dash.dataset.raws[_n] != _d.raws[0]] == 0).all()), "
                        "kept=int(_d.raws[0].max())")
    assert (got["n"], got["given"], got["parent"], got["selected"], got["explained"]) == (n + 1, n, 0, n, n), got
    assert got["what"].startswith(f"{painted} pixels erased"), got     # every painted pixel, at full size
    assert 0 < got["erased"] <= painted and got["black"] == 1 and got["kept"] > 0, got   # ink gone, data intact
    assert got["same_prediction"] and view.get_attribute("data-ek-key") == got["view_key"], got
    expect(dash.locator(".ek-whatif-status")).to_contain_text(
        f"#{n} edited from #0: {got['what']}; prediction {got['before']} → {got['after']}")
    assert got["provenance"].startswith(f"sample #{n} (edited copy of #0: {painted} pixels erased"), got
    timer.mark("edited")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.locator(".ek-card").first.locator("xpath=..").screenshot(path=str(ARTIFACTS / "lab-whatif-brush.png"))

    dash.locator(".ek-grid .ek-sample[data-ek-index='0']").click()    # the original: its own map, from the cache
    wait_done(status, "state=cached", sample=0)
    expect(view).to_have_attribute("data-ek-key", original_key)
    expect(brush).to_have_attribute("data-ek-index", "0")
    _no_page_errors(page)
    timer.mark("assertions_done")


def test_brush_erase_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:mnist-cnn", timer=timer) as srv:
        dash, status = open_dashboard(page, srv)
        wait_done(status, sample=0)
        brush = dash.locator(".ek-whatif-brush[data-ek-ready='1']")
        expect(brush).to_have_attribute("data-ek-index", "0")
        erase = brush.locator(".ek-whatif-erase")
        expect(erase).to_be_disabled()                                 # nothing painted yet
        timer.mark("dashboard_ready")

        canvas = brush.locator("canvas")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5, steps=8)
        page.mouse.up()
        painted = int(brush.get_attribute("data-ek-painted"))
        assert painted > 20, painted
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dash.locator(".ek-whatif").screenshot(path=str(ARTIFACTS / "app-whatif-brush-painted.png"))
        view = dash.locator(".ek-view[data-ek-ready='1']")
        before = canvas_digest(view.locator("canvas").first)
        erase.click()
        wait_done(status, sample=1000)
        expect(view).to_have_attribute("data-ek-key", re.compile(r"^1000\|"))
        expect(brush).to_have_attribute("data-ek-index", "1000")       # the editor shows the copy now
        assert brush.get_attribute("data-ek-painted") == "0"
        tile = dash.locator(".ek-grid .ek-sample[data-ek-index='1000']")
        expect(tile).to_have_class(re.compile(r"\bek-edited\b"))
        expect(tile).to_have_attribute("data-ek-parent", "0")
        assert dash.locator(".ek-grid-view").evaluate(ROW_ORDER_JS)[:3] == ["0", "1000", "1"]
        expect(dash.locator(".ek-whatif-status")).to_contain_text(f"{painted} pixels erased")
        assert canvas_digest(view.locator("canvas").first) != before, "the map was not redrawn for the copy"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dash.locator(".ek-card").first.locator("xpath=..").screenshot(path=str(ARTIFACTS / "app-whatif-brush.png"))
        _no_page_errors(page)
        timer.mark("assertions_done")


def test_text_edit_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:sst2-lstm", timer=timer) as srv:
        dash, status = open_dashboard(page, srv)
        wait_done(status, sample=0)
        text = dash.locator(".ek-whatif-text textarea")
        expect(text).to_have_value(re.compile("charming"))
        text.fill(text.input_value().replace("charming", "dreadful"))
        text.press("Tab")                                              # the Textarea syncs on change
        dash.locator(".ek-whatif-run").click()
        wait_done(status, sample=872)
        row = dash.locator(".ek-grid .ek-sample[data-ek-index='872']")
        expect(row).to_have_class(re.compile(r"\bek-edited\b"))
        expect(row.locator(".ek-text")).to_contain_text("dreadful")
        expect(dash.locator(".ek-whatif-status")).to_contain_text("prediction positive")
        expect(dash.locator(".ek-view .ek-token", has_text="dreadful").first).to_be_visible()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dash.locator(".ek-card").first.locator("xpath=..").screenshot(path=str(ARTIFACTS / "app-whatif-text.png"))
        _no_page_errors(page)
        timer.mark("assertions_done")


def test_slider_edit_of_a_regression_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:diabetes-mlp", timer=timer) as srv:
        dash, status = open_dashboard(page, srv)
        wait_done(status, sample=0)
        panel = dash.locator(".ek-whatif")
        panel.locator(".ek-whatif-feature select").select_option(label="bmi")
        readout = panel.locator(".ek-whatif-slider .widget-readout")
        before = dash.locator(".ek-prediction .ek-reg-value").inner_text()
        timer.mark("dashboard_ready")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0.15")                                     # bmi of #0 is -0.0062; the data's max 0.1706
        page.keyboard.press("Enter")
        wait_done(status, sample=89)
        expect(dash.locator(".ek-view[data-ek-ready='1']")).to_have_attribute("data-ek-key", re.compile(r"^89\|"))
        row = dash.locator(".ek-grid .ek-sample[data-ek-index='89']")
        expect(row).to_have_attribute("data-ek-parent", "0")
        expect(row.locator(".ek-text")).to_contain_text("bmi -0.006206 → 0.15")
        assert dash.locator(".ek-grid-view").evaluate(ROW_ORDER_JS)[:3] == ["0", "89", "1"]
        expect(panel.locator(".ek-whatif-status")).to_contain_text("#89 edited from #0: bmi -0.006206 → 0.15")
        expect(dash.locator(".ek-prediction .ek-reg-value")).not_to_have_text(before)   # re-predicted
        _no_page_errors(page)
        timer.mark("assertions_done")
