"""What-if in the dashboard (issue 13, part 5): an edited copy of a sample (a tabular feature, a text, an erased
image region) becomes a new sample next to its original, marked "edited", predicted and explained through the
normal path; the original, its cached explanation and the data passed in are untouched. Real sample models on
their shipped data."""
from __future__ import annotations

import base64

import numpy as np
import pytest

import explainkit
from explainkit.data import datasets
from explainkit.errors import ExplainKitError


@pytest.fixture(scope="module")
def diabetes_dash(diabetes):
    data = datasets.sample_data("diabetes-mlp")
    dash = explainkit.Dashboard(diabetes, data, methods=["kernel_shap", "saliency"], quality=False)
    dash.method = "kernel_shap"                     # the what-if speed target's explainer
    dash.wait()
    return dash, data, np.array(data.raws)


def test_tabular_edit_is_a_new_sample_predicted_and_explained(diabetes_dash, diabetes):
    dash, data, given = diabetes_dash
    n0 = len(given)
    dash.select(3)
    dash.wait()
    original = dash.last_explanation
    assert original.sample_index == 3 and dash.method == "kernel_shap"
    j = diabetes.feature_names.index("bmi")
    lo, hi = dash.whatif.ranges[j]
    assert (lo, hi) == (given[:, j].min(), given[:, j].max())
    new = dash.whatif.edit(3, feature="bmi", value=hi)
    assert dash.wait()
    assert new == n0 and len(dash.dataset) == n0 + 1 and dash.selected_index == new
    want = given[3].copy()
    want[j] = hi
    np.testing.assert_array_equal(dash.dataset.raws[new], want)
    np.testing.assert_array_equal(dash.dataset.raws[3], given[3])          # the original is untouched
    np.testing.assert_array_equal(data.raws, given)                       # and so is the data passed in
    assert len(data) == n0 and dash.dataset is not data
    assert dash.dataset.labels[new] == dash.dataset.labels[3]             # the copy keeps its original's label
    pred = float(np.asarray(diabetes.predict([want])).reshape(-1)[0])
    assert dash.predictions.outputs[new] == pytest.approx(pred, rel=1e-6)
    assert dash.predictions.outputs[new] != pytest.approx(dash.predictions.outputs[3])
    # explained through the normal path, for the edited row: Kernel SHAP adds up to the edited prediction
    exp = dash.last_explanation
    assert exp.sample_index == new and dash.view_key.startswith(f"{new}|kernel_shap|")
    assert dash.e.view.key == dash.view_key
    assert exp.base_value + exp.scores.sum() == pytest.approx(pred, abs=1e-3 * max(1.0, abs(pred)))
    assert not np.allclose(exp.scores, original.scores)
    # the list: the copy right after its original, marked "edited" with the change
    page = dash.browser.page_indices()
    assert page[page.index(3) + 1] == new
    item = next(it for it in dash.b.grid.items if it["index"] == new)
    assert item["edited"] == 3 and item["note"].startswith("bmi ") and "bmi" in item["text"]
    assert "edited" in dash.whatif.status.value and "#3" in dash.whatif.status.value
    assert not any("edited" in it for it in dash.b.grid.items if it["index"] != new)
    # the copy is a sample like any other: compare and export work on it
    dash.compare(["kernel_shap", "saliency"])
    assert dash.wait() and [e.sample_index for e in dash.comparison["explanations"]] == [new, new]
    assert dash.export_png()[:8] == b"\x89PNG\r\n\x1a\n"
    # its exports say it is an edited copy, of which sample, and what changed (the PNG's title carries the same)
    said = f"sample #{new} (edited copy of #3: {item['note']}) · kernel_shap"
    assert said in dash.export_html() and dash._provenance(dash.last_explanation).startswith(said)
    # back to the original: its own cached map, never the copy's; its exports name no edit
    dash.select(3)
    assert dash.last_explanation is original and "state=cached" in dash.status.value
    assert "sample #3 · kernel_shap" in dash.export_html() and "edited copy" not in dash.export_html()


def test_edits_of_edits_stay_with_the_original_in_every_order(diabetes_dash):
    dash, _, given = diabetes_dash
    a = dash.whatif.edit(5, feature=0, value=float(given[:, 0].min()))
    b = dash.whatif.edit(a, feature="bp", value=float(given[:, 3].max()))
    dash.wait()
    assert dash.whatif.edits[b].parent == a and dash.whatif.edits[b].root == 5
    np.testing.assert_array_equal(dash.dataset.raws[b][[0, 3]], [given[:, 0].min(), given[:, 3].max()])
    for sort in ("index", "loss (high first)"):
        dash.browser.set(sort=sort)
        order = dash.browser.indices.tolist()
        k = order.index(5)
        assert order[k + 1:k + 3] == [a, b], sort
        assert sorted(order) == list(range(len(dash.dataset)))          # nothing lost, nothing twice
    dash.browser.set(sort="index")


def test_the_slider_edits_the_selected_sample_and_bad_values_are_refused(diabetes_dash):
    dash, _, given = diabetes_dash
    w = dash.whatif
    dash.select(7)
    dash.wait()
    w.feature.value = 2                                                  # choosing a feature edits nothing
    assert w.slider.value == given[7, 2] and (w.slider.min, w.slider.max) == w.ranges[2]
    n = len(dash.dataset)
    w.slider.value = float(np.round(w.ranges[2][0] + 0.3 * (w.ranges[2][1] - w.ranges[2][0]), 4))
    assert dash.wait() and len(dash.dataset) == n + 1 and dash.selected_index == n
    assert dash.dataset.raws[n][2] == w.slider.value and dash.last_explanation.sample_index == n
    for kwargs, match in ((dict(feature="nope", value=0.0), "Unknown feature 'nope'"),
                          (dict(feature="bmi", value=5.0), r"outside the data's range \[-0.09"),
                          (dict(feature="bmi", value="big"), "outside the data's range"),
                          (dict(feature=99, value=0.0), "not a feature"),
                          (dict(feature="bmi", value=float(given[7, 2])), "already")):
        with pytest.raises(ExplainKitError, match=match):
            w.edit(7, **kwargs)
    with pytest.raises(ExplainKitError, match="out of range"):
        w.edit(10_000, feature="bmi", value=0.0)
    with pytest.raises(ExplainKitError, match="for a text model"):
        w.edit_text(7, "some text")
    with pytest.raises(ExplainKitError, match="for a image model"):
        w.erase(7, (0, 0, 2, 2))


def test_an_active_audit_filter_keeps_the_copy_with_its_original(diabetes_dash):
    dash, _, given = diabetes_dash
    dash.audit.filter_slice(next(iter(dash.audit._slices())))
    kept = dash.browser.indices.tolist()
    first = kept[0]
    j = 1 if dash.dataset.raws[first][1] != given[:, 1].max() else 0
    new = dash.whatif.edit(first, feature=j, value=float(given[:, j].max()))
    assert dash.wait()
    order = dash.browser.indices.tolist()
    assert order[order.index(first) + 1] == new and len(order) == len(kept) + 1
    dash.audit.clear_filter()


def test_text_edit_re_predicts_and_is_searchable(sst2_lstm):
    data = datasets.sample_data("sst2-lstm")
    dash = explainkit.Dashboard(sst2_lstm, data, methods=["integrated_gradients"], quality=False)
    dash.wait()
    text = data.raws[0]
    assert dash.whatif.text.value == text and "charming" in text
    edited = text.replace("charming", "dreadful") + " awful"
    dash.whatif.text.value = edited
    dash.whatif.run_btn.click()                                         # the button, as in the browser
    assert dash.wait()
    new = len(data)
    assert dash.selected_index == new and dash.dataset.raws[new] == edited and data.raws[0] == text
    probs = sst2_lstm.predict([edited])[0]
    np.testing.assert_allclose(dash.predictions.outputs[new], probs, rtol=1e-5)
    assert dash.predictions.predicted[new] != dash.predictions.predicted[0]    # positive -> negative
    exp = dash.last_explanation
    assert exp.sample_index == new and "dreadful" in "".join(dash._samples[new].tokens)
    assert dash.browser.page_indices()[:2] == [0, new]
    dash.browser.set(search="dreadful")
    assert new in dash.browser.indices.tolist()
    dash.browser.set(search="")
    rows = dash.audit.refresh_slices()                                 # text-length slices count the copy too
    assert sum(r["n"] for r in rows if "words" in r["name"]) == len(dash.dataset)
    dash.whatif.text.value = edited                                     # the selected copy's own text
    dash.whatif.run_btn.click()                                         # unchanged: refused, and shown
    assert len(dash.dataset) == new + 1 and "same as #" in dash.whatif.status.value


def test_image_erase_by_box_mask_and_brush_message(mnist_cnn):
    data = datasets.sample_data("mnist-cnn")
    dash = explainkit.Dashboard(mnist_cnn, data, methods=["saliency"], quality=False)
    dash.wait()
    w = dash.whatif
    img = w.brush.image
    assert (img["index"], img["h"], img["w"], img["c"]) == (0, 28, 28, 1)
    assert base64.b64decode(img["data"]) == np.ascontiguousarray(data.raws[0]).tobytes()
    top = w.erase(0, (0, 0, 28, 14))
    assert dash.wait()
    assert dash.dataset.raws[top][:14].max() == 0 and data.raws[0][:14].max() > 0
    np.testing.assert_array_equal(dash.dataset.raws[top][14:], data.raws[0][14:])
    np.testing.assert_allclose(dash.predictions.outputs[top], mnist_cnn.predict([dash.dataset.raws[top]])[0],
                               rtol=1e-5)
    assert dash.last_explanation.sample_index == top and w.brush.image["index"] == top
    mask = np.zeros((28, 28), np.uint8)
    mask[8:20, 8:20] = 1
    w._on_msg(w.brush, {"event": "erase", "index": 0, "mask": base64.b64encode(mask.tobytes()).decode()}, [])
    assert "does not match" in w.status.value and len(dash.dataset) == top + 1     # #0 is not the one shown
    dash.select(0)
    assert dash.wait() and w.brush.image["index"] == 0
    w._on_msg(w.brush, {"event": "erase", "index": 0, "mask": base64.b64encode(mask.tobytes()).decode()}, [])
    assert dash.wait()
    brushed = top + 1
    assert dash.selected_index == brushed and w.edits[brushed].parent == 0
    assert (dash.dataset.raws[brushed][mask.astype(bool)] == 0).all()
    assert "144 pixels erased" in w.edits[brushed].what
    assert dash.browser.page_indices()[:3] == [0, top, brushed]
    items = {it["index"]: it for it in dash.b.grid.items}
    assert items[top]["edited"] == items[brushed]["edited"] == 0 and "edited" not in items[0]
    w._on_msg(w.brush, {"event": "erase", "index": 0, "mask": base64.b64encode(b"\x01" * 5).decode()}, [])
    assert "does not match" in w.status.value and len(dash.dataset) == brushed + 1
    for region, match in (((40, 40, 50, 50), "erases no pixel"), (np.ones((3, 3), bool), "shape"),
                          (np.zeros((28, 28), bool), "erases no pixel")):
        with pytest.raises(ExplainKitError, match=match):
            w.erase(0, region)
    with pytest.raises(ExplainKitError, match="fill"):
        w.erase(0, (0, 0, 4, 4), fill=300)
    with pytest.raises(ExplainKitError, match="for a tabular model"):
        w.edit(0, feature=0, value=0.0)


def test_a_large_image_is_brushed_subsampled_and_erased_at_full_size(mnist_cnn, monkeypatch):
    from explainkit.views import whatif
    monkeypatch.setattr(whatif, "BRUSH_MAX_SIDE", 14)            # as a photo over 256 pixels is: every 2nd pixel
    data = datasets.sample_data("mnist-cnn")
    dash = explainkit.Dashboard(mnist_cnn, data, methods=["saliency"], quality=False)
    dash.wait()
    w = dash.whatif
    img = w.brush.image
    assert (img["h"], img["w"], img["step"]) == (14, 14, 2)
    assert base64.b64decode(img["data"]) == np.ascontiguousarray(data.raws[0][::2, ::2]).tobytes()
    small = np.zeros((14, 14), np.uint8)
    small[3:5, 4:7] = 1                                            # 2 × 3 brush pixels = 4 × 6 image pixels
    w._on_msg(w.brush, {"event": "erase", "index": 0, "mask": base64.b64encode(small.tobytes()).decode()}, [])
    assert dash.wait()
    new = len(data)
    want = np.zeros((28, 28), bool)
    want[6:10, 8:14] = True
    assert (dash.dataset.raws[new][want] == 0).all() and w.edits[new].what.startswith("24 pixels erased")
    np.testing.assert_array_equal(dash.dataset.raws[new][~want], data.raws[0][~want])
