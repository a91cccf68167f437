"""The audit panel in a real browser. JupyterLab (notebook 01, mnist-cnn on 1,000 digits): clicking a confusion
cell filters the sample list to exactly that cell, a slice row filters it too, and "clear" restores the whole
list. The app (diabetes-mlp, regression): a box dragged on the residual plot filters the list the same way."""
from __future__ import annotations

import re

import pytest
from driver import STATUS, kernel_eval, run_dashboard_notebook, wait_done
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# the off-diagonal cell with the most samples: "i,j" and its count
BIGGEST_MISTAKE_JS = """(el) => {
  let best = null;
  for (const td of el.querySelectorAll('td.ek-audit-cell')) {
    const [i, j] = td.dataset.ekCell.split(',').map(Number); const n = Number(td.textContent);
    if (i !== j && n > 0 && (!best || n > best[1])) best = [td.dataset.ekCell, n];
  }
  return best;
}"""

PYTHON_LIST = """
import numpy as np
_p = dash.predictions
print(len(dash.browser.indices), int(((np.asarray(_p.labels) == {i}) & (_p.predicted == {j})).sum()),
      all(int(_p.labels[k]) == {i} and int(_p.predicted[k]) == {j} for k in dash.browser.indices))
"""


def test_confusion_cell_click_filters_the_sample_list(lab_server, page, timer):
    dash, status = run_dashboard_notebook(page, lab_server, "01_audit_image_model.ipynb", timer)
    wait_done(status, sample=0)
    audit = dash.locator(".ek-audit[data-ek-ready='1']")
    expect(audit.locator("td.ek-audit-cell")).to_have_count(100)           # 10 × 10 classes
    cell, n = audit.evaluate(BIGGEST_MISTAKE_JS)
    i, j = map(int, cell.split(","))
    timer.mark("dashboard_ready")

    audit.locator(f"td.ek-audit-cell[data-ek-cell='{cell}']").click()
    expect(audit).to_have_attribute("data-ek-count", str(n))
    expect(audit).to_have_attribute("data-ek-filter", f"true {i}, predicted {j}")
    tiles = dash.locator(".ek-grid .ek-sample")
    expect(tiles).to_have_count(min(n, 24))
    for k in range(tiles.count()):                                          # every tile: true i → predicted j
        expect(tiles.nth(k).locator(".ek-meta")).to_contain_text(f"{i}→{j}")
    expect(dash.locator(".ek-grid-view")).to_have_attribute("data-ek-count", str(min(n, 24)))
    echo = kernel_eval(page, PYTHON_LIST.format(i=i, j=j))
    assert echo.split() == [str(n), str(n), "True"], echo
    timer.mark("cell_filtered")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.locator(".ek-audit-panel").screenshot(path=str(ARTIFACTS / "lab-audit-confusion.png"))

    # why A and not B: a sample of that cell is misclassified; one click explains both classes side by side
    why = dash.locator(".ek-audit-why")
    expect(why).to_be_disabled()                                            # sample 0 is classified right
    first = tiles.first.get_attribute("data-ek-index")
    tiles.first.click()
    wait_done(status, sample=first)
    expect(why).to_be_enabled()
    why.click()
    for hook, cls in (("ek-why-a", j), ("ek-why-b", i)):                   # left: predicted, right: true
        expect(dash.locator(f".{hook}")).to_have_attribute("data-ek-key", re.compile(rf"^{first}\|.*target={cls}$"),
                                                           timeout=90_000)
    expect(dash.locator(".ek-audit-panel")).to_contain_text(f"why {j} (predicted, left) and not {i} (true, right)")
    dash.locator(".ek-audit-panel").screenshot(path=str(ARTIFACTS / "lab-audit-why.png"))
    timer.mark("why_shown")

    # a slice row filters the same list; "clear" gives the whole data back
    audit.locator("tr.ek-audit-slice[data-ek-slice='true class 3']").click()
    expect(audit).to_have_attribute("data-ek-filter", "true class 3")
    count = int(audit.get_attribute("data-ek-count"))
    assert 50 < count < 200, count
    expect(dash.locator(".ek-grid-view")).to_have_attribute("data-ek-count", "24")
    audit.locator("button.ek-audit-clear").click()
    expect(audit).to_have_attribute("data-ek-filter", "")
    assert kernel_eval(page, "print(len(dash.browser.indices))").strip() == "1000"
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
    timer.mark("assertions_done")


def test_residual_box_filters_the_list_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:diabetes-mlp", timer=timer) as srv:
        page.goto(srv.app_url, wait_until="commit", timeout=120_000)
        dash = page.locator(".ek-dashboard")
        expect(dash).to_be_visible(timeout=120_000)
        wait_done(dash.locator(STATUS), sample=0)
        audit = dash.locator(".ek-audit[data-ek-ready='1']")
        plot = audit.locator("svg.ek-audit-residuals")
        expect(plot.locator("circle")).to_have_count(89)                   # every held-out sample
        expect(audit.locator("td.ek-audit-cell")).to_have_count(0)         # regression: no confusion matrix
        timer.mark("dashboard_ready")
        plot.scroll_into_view_if_needed()                                   # the mouse only reaches the viewport
        box = plot.bounding_box()
        # drag over the upper half (overestimates), across the whole prediction range
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2 - 1, steps=5)
        page.mouse.up()
        expect(audit).to_have_attribute("data-ek-filter", re.compile(r"^prediction .*, residual \+"))
        n = int(audit.get_attribute("data-ek-count"))
        above = plot.evaluate("""(svg) => { const zero = Number(svg.querySelector('line').getAttribute('y1'));
            return [...svg.querySelectorAll('circle')].filter((c) => Number(c.getAttribute('cy')) < zero).length; }""")
        assert n == above > 0, (n, above)                                  # the points drawn above the zero line
        rows = dash.locator(".ek-grid .ek-sample")
        expect(rows).to_have_count(min(n, 24))
        expect(dash.locator(".ek-audit-why")).to_be_disabled()              # no "why A and not B" for regression
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dash.locator(".ek-audit-panel").screenshot(path=str(ARTIFACTS / "app-audit-residuals.png"))
        assert page.ek_blocked == [], page.ek_blocked
        assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors
        timer.mark("assertions_done")
