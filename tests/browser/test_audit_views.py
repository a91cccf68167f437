"""The audit panel's remaining views in a real browser (issue 13, part 4), one opening each.

JupyterLab, a temporary notebook with three dashboards: breast-cancer-mlp (signed global importance computed
in the page with its progress; the bars' names and signed values equal the kernel's accumulator and a fresh
re-explanation; a confusion-cell filter saved as a named slice, listed and clickable), diabetes-mlp (a box
dragged on the residual plot filters the list) and sst2-lstm on 200 sentences (the words' mean signed scores,
each word seen at least twice and punctuation skipped, equal the kernel's).
The app (mnist-cnn): a confusion cell click filters the list, "why A and not B" explains both classes, and
global importance draws the mean map for the explained class.
Screenshots go to artifacts/dashboard-importance-{tabular,text,image}.png (copied into docs/images by hand).
"""
from __future__ import annotations

import json
import re

import pytest
from driver import kernel_eval, open_notebook, run_all, wait_done, write_notebook
from driver import open_dashboard as _open_app
from ekserver import ARTIFACTS, app_running
from playwright.sync_api import expect
from test_lab_audit import BIGGEST_MISTAKE_JS

pytestmark = pytest.mark.browser

NOTEBOOK = "audit_views.ipynb"
CELLS = ["import explainkit as ek\n"
         "cancer = ek.load_sample('breast-cancer-mlp')\n"
         "dash = ek.Dashboard(cancer, ek.datasets.sample_data('breast-cancer-mlp'))\ndash",
         "diabetes = ek.load_sample('diabetes-mlp')\n"
         "reg = ek.Dashboard(diabetes, ek.datasets.sample_data('diabetes-mlp'))\nreg",
         "txt = ek.Dashboard(ek.load_sample('sst2-lstm'),\n"
         "                   ek.datasets.sample_data('sst2-lstm').subset(range(200)))\ntxt",
         'print("ALL CELLS DONE")']
N_IMPORTANCE = 16
N_TEXT = 24

# bars as drawn: name, the value in the tooltip, and the side of the zero line the bar lies on
BARS_JS = """(svg) => {
  const z = Number(svg.querySelector('line').getAttribute('x1'));
  const names = [...svg.querySelectorAll('text')].map((t) => t.querySelector('title').textContent);
  return [...svg.querySelectorAll('rect.ek-audit-bar')].map((r, k) => ({
    name: r.dataset.ekName, value: Number(names[k].slice(names[k].lastIndexOf(': ') + 2)),
    right: Number(r.getAttribute('x')) >= z - 1e-6, fill: r.getAttribute('fill')}));
}"""

# the kernel's accumulator, and the same mean recomputed from fresh explanations of the same samples
KERNEL_IMPORTANCE = """
import json, numpy as np
_a = dash.audit; _m = dash.method; _imp = _a.importance[_m]; _t = _imp.targets()[0]
_names = list(cancer.feature_names); _idx = [int(i) for i in dash.browser.indices[:{n}]]
_fresh = np.mean([ek.explain(cancer, dash.dataset.raws[i], _m, target=int(_t), seed=dash.seed, **dash.params).scores
                  for i in _idx if int(dash.predictions.predicted[i]) == int(_t)], axis=0)
print(json.dumps({{"n": _imp.n, "target": cancer.classes[int(_t)], "n_target": _imp.count(_t),
                  "mean": dict(zip(_names, _imp.mean(_t).tolist())), "fresh": dict(zip(_names, _fresh.tolist()))}}))
"""

KERNEL_WORDS = """
import json
from explainkit.views.aggregate import is_punctuation
_imp = txt.audit.importance[txt.method]; _t = _imp.targets()[0]; _w = _imp.groups[_t]["words"]
print(json.dumps({"n": _imp.n, "min_count": _imp.min_count, "words": _w, "punct": {k: is_punctuation(k) for k in _w},
                  "rare": _imp.words(_t)["rare"], "skipped": _imp.skipped}))
"""


def _write_notebook(folder):
    write_notebook(folder / NOTEBOOK, CELLS)


def _run_importance(panel, n: int):
    """Set the batch size, press Global importance, and wait for the batch's progress to reach n/n."""
    box = panel.locator(".ek-audit-n input")
    box.fill(str(n))
    box.press("Enter")
    panel.locator(".ek-audit-run").click()
    audit = panel.locator(".ek-audit[data-ek-ready='1']")
    expect(audit).to_have_attribute("data-ek-total", str(n), timeout=60_000)
    expect(audit).to_have_attribute("data-ek-done", str(n), timeout=120_000)
    expect(panel.locator(".ek-audit-importance h4").first).to_contain_text(f"(batch {n}/{n})")
    return audit


def _clean(page):
    assert page.ek_blocked == [], page.ek_blocked
    assert not [e for e in page.ek_errors if e.startswith("pageerror")], page.ek_errors


def test_tabular_importance_slices_and_residuals_in_lab(lab_server, nb_root, page, timer):
    _write_notebook(nb_root)
    nb = open_notebook(page, lab_server, NOTEBOOK)
    run_all(page, nb)
    timer.mark("notebook_ran")
    dashes = nb.locator(".ek-dashboard")
    expect(dashes).to_have_count(3)
    dash, reg, txt = dashes.nth(0), dashes.nth(1), dashes.nth(2)
    for d in (dash, reg, txt):
        expect(d.locator(".ek-view[data-ek-ready='1']")).to_be_visible(timeout=120_000)
        wait_done(d.locator(".ek-status .widget-html-content"), sample=0)
    timer.mark("dashboards_ready")

    # signed global importance over the first 16 samples, with progress, equal to what the kernel holds
    panel = dash.locator(".ek-audit-panel")
    audit = _run_importance(panel, N_IMPORTANCE)
    bars = audit.locator("svg.ek-audit-bars").evaluate(BARS_JS)
    assert len(bars) == 12, bars                                          # the top 12 of 30 features
    got = json.loads(kernel_eval(page, KERNEL_IMPORTANCE.format(n=N_IMPORTANCE)))
    assert got["n"] == N_IMPORTANCE, got["n"]
    expect(panel.locator(".ek-audit-importance")).to_contain_text(
        f"toward {got['target']} ({got['n_target']} samples explained for it)")
    mean, fresh = got["mean"], got["fresh"]
    ranked = sorted(mean, key=lambda f: -abs(mean[f]))
    for b in bars:
        assert b["value"] == pytest.approx(mean[b["name"]], rel=1e-3, abs=1e-9), b
        assert b["value"] == pytest.approx(fresh[b["name"]], rel=1e-3, abs=1e-6), (b, fresh[b["name"]])
        assert b["right"] == (b["value"] >= 0) and b["fill"] == ("#b2182b" if b["value"] >= 0 else "#2166ac"), b
    assert ranked[0] in [b["name"] for b in bars[:3]], (ranked[:3], bars[:3])   # the strongest are drawn first
    # beside the bars: a beeswarm (a dot per explained sample per shown feature) and a dependence plot
    expect(audit.locator("svg.ek-audit-beeswarm circle.ek-audit-dot")).to_have_count(got["n_target"] * len(bars))
    expect(audit.locator("svg.ek-audit-dependence circle.ek-audit-dep-dot")).to_have_count(got["n_target"])
    panel.locator(".ek-audit-dep-feature select").select_option("mean texture")
    panel.locator(".ek-audit-dep-color select").select_option("mean radius")
    dep = audit.locator("svg.ek-audit-dependence")
    expect(dep).to_have_attribute("data-ek-feature", "mean texture")
    expect(dep).to_have_attribute("data-ek-colour", "mean radius")
    echo = json.loads(kernel_eval(page, "import json\n_d = dash.audit.view.importance['dependence']\n"
                                        "print(json.dumps([_d['feature'], _d['colour'], len(_d['x'])]))"))
    assert echo == ["mean texture", "mean radius", got["n_target"]], echo
    expect(dep.locator("circle.ek-audit-dep-dot")).to_have_count(got["n_target"])
    timer.mark("importance_checked")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    audit.locator(".ek-audit-importance").screenshot(path=str(ARTIFACTS / "dashboard-importance-tabular.png"))

    # a confusion cell, saved under a name, is listed (★) and filters the list again when clicked
    cell, n = audit.evaluate(BIGGEST_MISTAKE_JS)
    audit.locator(f"td.ek-audit-cell[data-ek-cell='{cell}']").click()
    expect(audit).to_have_attribute("data-ek-count", str(n))
    panel.locator(".ek-audit-name input").fill("missed cases")
    panel.locator(".ek-audit-save").click()
    row = audit.locator("tr.ek-audit-slice[data-ek-slice='missed cases']")
    expect(row).to_contain_text("missed cases ★")
    expect(row.locator("td").nth(1)).to_have_text(str(n))
    expect(row.locator("td").nth(2)).to_have_text("0.000")                 # an off-diagonal cell: all wrong
    audit.locator("button.ek-audit-clear").click()
    expect(audit).to_have_attribute("data-ek-filter", "")
    row.click()
    expect(audit).to_have_attribute("data-ek-filter", "missed cases")
    expect(audit).to_have_attribute("data-ek-count", str(n))
    i, j = map(int, cell.split(","))
    assert kernel_eval(page, "print(dash.audit.saved)").strip() == str({"missed cases": {"class": i, "predicted": j}})
    timer.mark("slice_saved")

    # regression in Lab: a box dragged over the overestimates lists exactly the points drawn above zero
    raudit = reg.locator(".ek-audit[data-ek-ready='1']")
    plot = raudit.locator("svg.ek-audit-residuals")
    expect(plot.locator("circle")).to_have_count(89)
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2 - 1, steps=5)
    page.mouse.up()
    expect(raudit).to_have_attribute("data-ek-filter", re.compile(r"^prediction .*, residual \+"))
    k = int(raudit.get_attribute("data-ek-count"))
    above = plot.evaluate("""(svg) => { const zero = Number(svg.querySelector('line').getAttribute('y1'));
        return [...svg.querySelectorAll('circle')].filter((c) => Number(c.getAttribute('cy')) < zero).length; }""")
    assert k == above > 0, (k, above)
    echo = kernel_eval(page, "import numpy as np\n_p = reg.predictions\n"
                             "_r = _p.outputs - np.asarray(_p.labels, dtype=float)\n"
                             "print(len(reg.browser.indices), bool((_r[reg.browser.indices] > 0).all()))")
    assert echo.split() == [str(k), "True"], echo
    timer.mark("residuals_checked")

    # text: the words with the highest and lowest mean signed score, each seen at least twice, no punctuation
    tpanel = txt.locator(".ek-audit-panel")
    words = _run_importance(tpanel, N_TEXT).locator("svg.ek-audit-bars").evaluate(BARS_JS)
    got = json.loads(kernel_eval(page, KERNEL_WORDS))
    assert got["n"] == N_TEXT and got["min_count"] == 2, got
    assert len(words) > 4 and any(w["value"] > 0 for w in words) and any(w["value"] < 0 for w in words), words
    for w in words:
        total, count = got["words"][w["name"]]
        assert count >= 2 and not got["punct"][w["name"]], (w, count)
        assert w["value"] == pytest.approx(total / count, rel=1e-3, abs=1e-9), w
        assert w["fill"] == ("#b2182b" if w["value"] >= 0 else "#2166ac"), w
    pos, neg = [w["value"] for w in words if w["value"] > 0], [w["value"] for w in words if w["value"] < 0]
    assert [w["value"] for w in words] == pos + neg, words                   # the words for it first
    assert pos == sorted(pos, reverse=True) and neg == sorted(neg), words    # each side strongest first
    assert got["rare"] > 0 and got["skipped"] > 0, got          # rare words and punctuation were left out
    box = tpanel.locator(".ek-audit-min-count input")            # a higher minimum count drops rarer words
    box.fill("3")
    box.press("Enter")
    note = tpanel.locator(".ek-audit-words-note")
    expect(note).to_contain_text("at least 3 times")
    for w in tpanel.locator("svg.ek-audit-bars").evaluate(BARS_JS):
        assert got["words"][w["name"]][1] >= 3, w
    tpanel.locator(".ek-audit-importance").screenshot(path=str(ARTIFACTS / "dashboard-importance-text.png"))
    _clean(page)
    timer.mark("assertions_done")


def test_confusion_why_and_mean_maps_in_the_app(tmp_path, page, timer):
    with app_running(tmp_path, "--model", "sample:mnist-cnn", timer=timer) as srv:
        dash, status = _open_app(page, srv, timer=timer)
        panel = dash.locator(".ek-audit-panel")
        audit = panel.locator(".ek-audit[data-ek-ready='1']")
        expect(audit.locator("td.ek-audit-cell")).to_have_count(100)
        cell, n = audit.evaluate(BIGGEST_MISTAKE_JS)
        i, j = map(int, cell.split(","))
        audit.locator(f"td.ek-audit-cell[data-ek-cell='{cell}']").click()
        expect(audit).to_have_attribute("data-ek-filter", f"true {i}, predicted {j}")
        expect(audit).to_have_attribute("data-ek-count", str(n))
        tiles = dash.locator(".ek-grid .ek-sample")
        expect(tiles).to_have_count(min(n, 24))
        for k in range(tiles.count()):
            expect(tiles.nth(k).locator(".ek-meta")).to_contain_text(f"{i}→{j}")
        timer.mark("cell_filtered")

        why = panel.locator(".ek-audit-why")
        first = tiles.first.get_attribute("data-ek-index")
        tiles.first.click()
        wait_done(status, sample=first)
        expect(why).to_be_enabled()
        why.click()
        for hook, cls in (("ek-why-a", j), ("ek-why-b", i)):
            expect(dash.locator(f".{hook}")).to_have_attribute(
                "data-ek-key", re.compile(rf"^{first}\|.*target={cls}$"), timeout=90_000)
        expect(panel).to_contain_text(f"why {j} (predicted, left) and not {i} (true, right)")
        timer.mark("why_shown")

        # global importance over the slice "true class 7": its first 8 samples, nearly all predicted 7
        audit.locator("tr.ek-audit-slice[data-ek-slice='true class 7']").click()
        expect(audit).to_have_attribute("data-ek-filter", "true class 7")
        audit = _run_importance(panel, 8)
        imp = panel.locator(".ek-audit-importance")
        expect(imp).to_contain_text(re.compile(r"toward 7 \(\d+ samples explained for it\)"))
        n7 = int(re.search(r"toward 7 \((\d+) samples", imp.inner_text()).group(1))
        assert 7 <= n7 <= 9, n7                      # the batch (and sample 0, a 7, if it is not among them)
        canvas = imp.locator("canvas")
        expect(canvas).to_have_count(1)
        size = canvas.evaluate("""(c) => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let red = 0, blue = 0; for (let p = 0; p < d.length; p += 4) { if (d[p] > d[p + 2] + 40) red++;
            else if (d[p + 2] > d[p] + 40) blue++; } return [c.width, c.height, red, blue]; }""")
        assert size[:2] == [28, 28] and size[2] > 0, size                   # a 28x28 signed map, some evidence for 7
        expect(imp).to_contain_text(re.compile(r"mean map of 7 \(\d+ samples?\), scale ±\d"))
        expect(panel.locator(".ek-audit-map-class select option").first).to_be_attached()   # a map per class
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        imp.screenshot(path=str(ARTIFACTS / "dashboard-importance-image.png"))
        _clean(page)
        timer.mark("assertions_done")
