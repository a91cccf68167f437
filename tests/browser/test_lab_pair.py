"""Two models side by side in a real browser: sst2-lstm and sst2-transformer on the SST-2 dev set, in JupyterLab
(``ek.Dashboard([a, b], data)`` in a notebook) and in the app (``explainkit app --compare-model``). Both sides explain
the selected sample with one method and target, the "models disagree" filter lists exactly those samples, and
the rank agreement shown is the one the kernel holds."""
from __future__ import annotations

import re

import pytest
from driver import STATUS, kernel_eval, open_notebook, run_all, wait_done, write_notebook
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

NOTEBOOK = "pair_dashboard.ipynb"
CELLS = ["import explainkit as ek\nfrom explainkit.data import datasets\n\n"
         "dash = ek.Dashboard([ek.load_sample('sst2-lstm'), ek.load_sample('sst2-transformer')],\n"
         "                    datasets.sample_data('sst2-lstm').subset(range(300)))\ndash",
         'print("ALL CELLS DONE")']
AGREEMENT = ".ek-pair-agreement .ek-pair-agreement-view"
KERNEL_STATE = """
_r = dash.agreement
print(dash.selected_index, _r["method"], dash.left.last_explanation.method, dash.right.last_explanation.method,
      _r["target"], dash.left.last_explanation.target, dash.right.last_explanation.target, f"{_r['spearman']:.4f}",
      int(dash.disagreement.sum()), len(dash.browser.indices))
"""


def _write_notebook(folder):
    write_notebook(folder / NOTEBOOK, CELLS)


def _both_done(pair, **fields):
    for side in ("left", "right"):
        wait_done(pair.locator(f".ek-pair-{side} {STATUS}"), **fields)


def _check_pair(page, pair, timer, shot: str, kernel: bool, total: int):
    """The checks run in Lab and in the app: first sample, the disagreement filter, a click, the method menu."""
    _both_done(pair, sample=0)
    agreement = pair.locator(AGREEMENT)
    expect(agreement).to_have_attribute("data-ek-state", "done", timeout=60_000)
    expect(agreement).to_have_attribute("data-ek-key", re.compile(r"^0\|integrated_gradients\|target=\d$"))
    for side in ("left", "right"):
        expect(pair.locator(f".ek-pair-{side} .ek-view")).to_have_attribute(
            "data-ek-key", re.compile(r"^0\|integrated_gradients\|"))
    expect(pair.locator(".ek-pair-left .ek-header")).to_contain_text("sst2-lstm")
    expect(pair.locator(".ek-pair-right .ek-header")).to_contain_text("sst2-transformer")
    n = int(pair.locator(".ek-pair-summary").get_attribute("data-ek-disagree"))
    assert 0.05 * total < n < 0.4 * total, n             # two ~80%-accurate models: some disagreement
    timer.mark("pair_ready")

    pair.locator(".ek-pair-filter select").select_option(label="the models disagree")
    grid = pair.locator(".ek-grid-view")
    expect(grid).to_have_attribute("data-ek-count", str(min(n, 10)))         # the pair's page: 10 samples
    expect(pair.locator(".ek-page")).to_contain_text(f"{n} of {total} samples")
    rows = pair.locator(".ek-grid .ek-sample")
    for k in range(rows.count()):                                # every listed sample: the two predictions differ
        expect(rows.nth(k)).to_contain_text("≠")
    first = rows.first.get_attribute("data-ek-index")
    rows.first.click()
    _both_done(pair, sample=first)
    expect(agreement).to_have_attribute("data-ek-key", re.compile(rf"^{first}\|integrated_gradients\|"))
    expect(agreement).to_have_attribute("data-ek-agree", "False")
    expect(agreement).to_contain_text("they disagree")
    expect(pair.locator(".ek-pair-rows .ek-compare-table tr[data-ek-unit]").first).to_be_visible()
    timer.mark("disagreement_selected")

    pair.locator(".ek-pair-method select").select_option(label="Saliency")
    _both_done(pair, sample=first, method="saliency")
    expect(agreement).to_have_attribute("data-ek-key", re.compile(rf"^{first}\|saliency\|target=\d$"))
    rho = agreement.get_attribute("data-ek-spearman")
    if kernel:                                                   # what the page shows is what the kernel holds
        echo = kernel_eval(page, KERNEL_STATE).split()
        target = re.search(r"target=(\d)", agreement.get_attribute("data-ek-key")).group(1)
        assert echo == [first, "saliency", "saliency", "saliency", target, target, target, rho, str(n), str(n)], echo
    timer.mark("method_changed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 2400})      # the whole pair in view: one screenshot
    page.mouse.move(0, 0)                                        # no hover highlight on a row
    pair.screenshot(path=str(ARTIFACTS / shot))
    pair.locator(".ek-pair-compare").screenshot(path=str(ARTIFACTS / shot.replace(".png", "-compare.png")))
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors


def test_two_models_side_by_side_in_lab(lab_server, nb_root, page, timer):
    _write_notebook(nb_root)
    nb = open_notebook(page, lab_server, NOTEBOOK)
    timer.mark("kernel_idle")
    run_all(page, nb)
    timer.mark("notebook_ran")
    _check_pair(page, nb.locator(".ek-pair"), timer, "lab-pair.png", kernel=True, total=300)
    timer.mark("assertions_done")


def test_two_models_side_by_side_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:sst2-lstm", "--compare-model", "sample:sst2-transformer",
                     timer=timer) as srv:
        page.goto(srv.app_url, wait_until="commit", timeout=120_000)
        pair = page.locator(".ek-pair")
        expect(pair).to_be_visible(timeout=120_000)
        _check_pair(page, pair, timer, "app-pair.png", kernel=False, total=872)
        timer.mark("assertions_done")
