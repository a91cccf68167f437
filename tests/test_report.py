"""Reports on the shipped sample models: contents, exports, determinism, cache, selection, escaping, data files."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import explainkit
from explainkit.cli.main import main
from explainkit.data import datasets
from explainkit.data.files import load_path
from explainkit.errors import ExplainKitError
from explainkit.models.zoo import sample_models_dir
from explainkit.reports.cache import Cache

PAYLOADS = ['<script>alert(1)</script>', '"onerror=alert(1) x="', "</textarea><img src=x onerror=alert(2)>"]


class _Audit(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


def assert_self_contained_and_inert(page: str, document: bool = True) -> None:
    a = _Audit()
    a.feed(page)
    assert "script" not in a.tags and "textarea" not in a.tags
    assert not [k for k, _ in a.attrs if k.startswith("on")], "an event-handler attribute survived"
    assert all(v.startswith("data:image/png;base64,") for k, v in a.attrs if k in ("src", "href"))
    assert "url(" not in page and "@import" not in page
    assert not document or "default-src 'none'" in page       # CSP: the browser fetches and runs nothing


@pytest.fixture(scope="module")
def image_report(mnist_cnn, load_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "mnist.html"
    rep = explainkit.report(mnist_cnn, load_data("mnist-cnn"), methods=["saliency", "gradcam"], limit=6,
                            seed=0, out=out, progress=False)
    return rep, out


def test_image_report_contents_and_exports(image_report, mnist_cnn, load_data):
    rep, out = image_report
    data = load_data("mnist-cnn")
    page = out.read_text(encoding="utf-8")
    assert_self_contained_and_inert(page)
    idx = json.loads(out.with_suffix(".json").read_text())
    assert idx == rep.index
    assert idx["counts"] == {"samples": 6, "explanations": 12, "computed": 12, "cached": 0, "corrupt_recomputed": 0}
    for name in idx["files"].values():
        assert (out.parent / name).is_file()
    assert idx["model"]["weights_sha256"] == mnist_cnn.weights_hash()
    assert [m["name"] for m in idx["methods"]] == ["saliency", "gradcam"]
    assert idx["methods"][0]["params"] == {"abs": True} and idx["methods"][0]["plugin"] == "explainkit-builtins"
    # header, summary, agreement, sections
    assert mnist_cnn.weights_hash() in page and "Confusion over the" not in page     # all 10 classes shown
    assert page.count('class="sample') == 6 and page.count('class="ek-exp"') == 12
    assert "Method agreement" in page and "Global importance" in page
    # accuracy and confusion matrix match the model's own predictions on the selection
    probs = mnist_cnn.predict([data.raws[i] for i in range(6)])
    acc = float((probs.argmax(1) == data.labels[:6]).mean())
    assert idx["summary"]["accuracy"] == pytest.approx(acc)
    assert np.trace(np.asarray(idx["summary"]["confusion"])) == round(acc * 6)
    # exports hold the same numbers as explaining directly
    with np.load(out.with_suffix(".npz")) as z:
        assert z["saliency.scores"].shape == (6, 28, 28) and list(z["indices"]) == list(range(6))
        direct = explainkit.explain(mnist_cnn, data.raws[4], "gradcam")
        np.testing.assert_allclose(z["gradcam.scores"][4], direct.scores, rtol=1e-4,
                                   atol=1e-5 * np.abs(direct.scores).max())   # batched vs alone: float noise
        np.testing.assert_array_equal(z["labels"], data.labels[:6])
        np.testing.assert_allclose(z["outputs"], probs, rtol=1e-4, atol=1e-9)
    agree = np.asarray(idx["summary"]["agreement"])
    assert agree.shape == (2, 2) and np.allclose(np.diag(agree), 1) and -1 <= agree[0, 1] <= 1
    # the notebook display: summary plus where the full report is
    nb = rep._repr_html_()
    assert "Summary" in nb and str(out) in nb and "<h3>#" not in nb
    assert repr(rep).startswith("<Report 'mnist.html' model='mnist-cnn' n=6 methods=saliency,gradcam")
    assert rep.attributions("gradcam").shape == (6, 28, 28)
    assert next(rep.explanations("saliency")).method == "saliency"


def test_rerun_is_cached_and_identical_and_corruption_is_recomputed(image_report, mnist_cnn, load_data):
    rep, out = image_report
    before = {k: v for k, v in np.load(out.with_suffix(".npz")).items()}
    rep2 = explainkit.report(mnist_cnn, load_data("mnist-cnn"), methods=["saliency", "gradcam"], limit=6,
                             seed=0, out=out, progress=False)
    assert rep2.index["counts"]["computed"] == 0 and rep2.index["counts"]["cached"] == 12
    after = np.load(out.with_suffix(".npz"))
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)
    # damage one entry: it fails its checksum, is recomputed, and the numbers come back the same
    entry = Cache(rep.index["cache_dir"]).path(rep.index["keys"]["gradcam"][2])
    blob = bytearray(entry.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    entry.write_bytes(bytes(blob))
    rep3 = explainkit.report(mnist_cnn, load_data("mnist-cnn"), methods=["saliency", "gradcam"], limit=6,
                             seed=0, out=out, progress=False)
    assert rep3.index["counts"]["computed"] == 1 and rep3.index["counts"]["corrupt_recomputed"] == 1
    now = np.load(out.with_suffix(".npz"))["gradcam.scores"]
    np.testing.assert_array_equal(np.delete(now, 2, 0), np.delete(before["gradcam.scores"], 2, 0))
    # the recomputed one ran alone instead of in a batch of six: equal up to float rounding
    np.testing.assert_allclose(now[2], before["gradcam.scores"][2], rtol=1e-4,
                               atol=1e-5 * np.abs(before["gradcam.scores"][2]).max())


def test_selection_rules(mnist_cnn, load_data, tmp_path):
    from explainkit.reports.report import _select

    data = load_data("mnist-cnn").subset(range(300))
    out = np.concatenate([mnist_cnn.predict([data.raws[j] for j in range(i, min(i + 100, len(data)))])
                          for i in range(0, len(data), 100)])
    wrong, rule, wrong_out = _select("misclassified", mnist_cnn, data, None)
    np.testing.assert_array_equal(wrong, np.flatnonzero(out.argmax(1) != data.labels))
    np.testing.assert_allclose(wrong_out, out[wrong], rtol=1e-5, atol=1e-6)    # outputs of the chosen rows only
    assert rule == "misclassified"
    low, _, low_out = _select("low-confidence", mnist_cnn, data, 3)
    assert len(low) <= 3 and (out[low].max(1) < 0.7).all() and len(low_out) == len(low)
    assert list(_select([0, 1, 2, 3, 7], mnist_cnn, data, None)[0]) == [0, 1, 2, 3, 7]
    for bad, match in (("worst", "Unknown selection .* list of indices"), ([5, 900], "out of range"),
                       ("0-3", "Unknown selection"), ([1.5, "x"], "sequence of indices")):
        with pytest.raises(ExplainKitError, match=match):
            _select(bad, mnist_cnn, data, None)
    with pytest.raises(ExplainKitError, match="positive integer"):
        _select("all", mnist_cnn, data, 0)
    with pytest.raises(ExplainKitError, match="does not apply"):
        explainkit.report(mnist_cnn, data, methods=["attention"], out=tmp_path / "x.html", progress=False)
    with pytest.raises(ExplainKitError, match="no parameter"):
        explainkit.report(mnist_cnn, data, methods=[("occlusion", {"size": 3})], out=tmp_path / "x.html",
                          progress=False)


def test_text_report_keeps_tokens_and_offsets(sst2_lstm, load_data, tmp_path):
    data = load_data("sst2-lstm").subset(range(4))
    rep = explainkit.report(sst2_lstm, data, methods=["saliency", "occlusion"], out=tmp_path / "t.html", progress=False)
    page = (tmp_path / "t.html").read_text()
    with np.load(tmp_path / "t.npz") as z:
        off = z["occlusion.offsets"]
        assert len(off) == 5 and off[-1] == len(z["occlusion.scores"])
        first = explainkit.explain(sst2_lstm, data.raws[1], "occlusion")
        np.testing.assert_allclose(z["occlusion.scores"][off[1]:off[2]], first.scores, rtol=1e-4,
                                   atol=1e-5 * np.abs(first.scores).max())
    assert "<th>token</th>" in page and page.count('class="ek-tok"') == 2 * (off[-1])
    assert rep.index["arrays"]["occlusion.offsets"].startswith("[n+1]")


def test_regression_report_and_csv_data(diabetes, tmp_path):
    import pandas as pd

    held = datasets.diabetes("heldout").subset(range(8))
    df = pd.DataFrame(held.raws, columns=held.feature_names)
    df["target"] = held.labels
    df = df[df.columns[::-1]]                               # columns in another order than the model's
    df.to_csv(tmp_path / "diab.csv", index=False)
    assert main(["report", "--model", str(Path(sample_models_dir()) / "diabetes-mlp"), "--data",
                 str(tmp_path / "diab.csv"), "--methods", "occlusion", "--select", "misclassified",
                 "--out", str(tmp_path / "d.html")]) == 0
    idx = json.loads((tmp_path / "d.json").read_text())
    pred = diabetes.predict(held.raws)
    err = np.abs(pred - held.labels)
    sel = np.flatnonzero(err > err.mean())
    assert idx["indices"] == sel.tolist()
    assert idx["summary"]["mae"] == pytest.approx(err[sel].mean(), rel=1e-6)
    page = (tmp_path / "d.html").read_text()
    assert "mean absolute error" in page and "disease progression" in page


def test_npz_and_mnist_directory_data(mnist_cnn, load_data, tmp_path):
    from explainkit.data.files import load_path

    data = load_data("mnist-cnn")
    np.savez(tmp_path / "few.npz", images=data.raws[:5], labels=data.labels[:5])
    got = load_path(tmp_path / "few.npz", mnist_cnn)
    assert len(got) == 5 and got.class_names == mnist_cnn.classes
    np.testing.assert_array_equal(got.raws, data.raws[:5])
    shared = Path("/work/shared/data/mnist")
    if shared.is_dir():
        d = load_path(shared, mnist_cnn)
        assert d.modality.value == "image" and len(d) >= 1000
    with pytest.raises(ExplainKitError, match="No data at"):
        load_path(tmp_path / "missing.csv", mnist_cnn)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ExplainKitError, match="not a readable"):
        load_path(tmp_path / "bad.npz", mnist_cnn)


def test_every_user_string_is_escaped(breast_cancer, sst2_lstm, tmp_path):
    held = datasets.breast_cancer("heldout").subset(range(3))
    evil = explainkit.wrap(breast_cancer.module, modality="tabular", classes=PAYLOADS[:2], name=PAYLOADS[2],
                           feature_names=[f"{PAYLOADS[i % 3]}{i}" for i in range(30)],
                           standardize=breast_cancer.standardize)
    folder = tmp_path / PAYLOADS[0].replace("/", "")
    folder.mkdir()
    np.savez(folder / f"{PAYLOADS[1]}.npz", X=held.raws, y=held.labels)
    rep = explainkit.report(evil, load_path(folder / f"{PAYLOADS[1]}.npz", evil), methods=["saliency", "occlusion"],
                            out=tmp_path / "evil.html", progress=False)
    page = (tmp_path / "evil.html").read_text()
    assert_self_contained_and_inert(page)
    assert_self_contained_and_inert(rep._repr_html_(), document=False)
    assert "&lt;script&gt;" in page and "&#34;onerror=" in page and "&lt;/textarea&gt;" in page
    texts = explainkit.datasets.from_texts([" ".join(PAYLOADS), "fine " + PAYLOADS[2]], [0, 1],
                                           class_names=sst2_lstm.classes, name=PAYLOADS[0])
    explainkit.report(sst2_lstm, texts, methods=["saliency"], out=tmp_path / "evil_text.html", progress=False)
    page = (tmp_path / "evil_text.html").read_text()
    assert_self_contained_and_inert(page)
    assert page.count("&lt;/textarea&gt;") >= 2 and not re.search(r"<img src=x", page)


def test_process_pool_matches_serial(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(10))
    a = explainkit.report(mnist_cnn, data, methods=["saliency"], out=tmp_path / "a.html", progress=False,
                          batch_size=3)
    b = explainkit.report(mnist_cnn, data, methods=["saliency"], out=tmp_path / "b.html", progress=False,
                          batch_size=3, workers=2, cache_dir=tmp_path / "other-cache")
    assert b.index["counts"]["computed"] == 10 and b.index["executor"]["workers"] == 2
    # same batches; a worker uses one torch thread, so convolutions may round the last bit differently
    np.testing.assert_allclose(a.attributions("saliency"), b.attributions("saliency"), rtol=1e-5, atol=1e-9)


def test_quality_hook_adds_table_and_badges(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(2))
    rep = explainkit.report(mnist_cnn, data, methods=["gradcam"], out=tmp_path / "q.html", quality=True,
                            progress=False)
    page = (tmp_path / "q.html").read_text()
    assert "Explanation quality" in page and page.count('class="badge"') == 2
    assert rep.index["quality"]["rows"][0]["method"] == "gradcam"


def test_unchanged_rerun_reuses_the_report_and_any_change_rebuilds_it(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(40))
    kw = dict(methods=["saliency", "gradcam"], limit=5, seed=0, out=tmp_path / "r.html", progress=False)
    first = explainkit.report(mnist_cnn, data, **kw)
    html = first.path.read_bytes()
    again = explainkit.report(mnist_cnn, data, **kw)
    assert again.index["counts"].get("up_to_date") and again.index["counts"]["computed"] == 0
    assert again.path.read_bytes() == html and again._repr_html_() == first._repr_html_()
    # an edited report file is rebuilt from the cache, not trusted
    first.path.write_bytes(html.replace(b"</body>", b"<p>edited</p></body>"))
    rebuilt = explainkit.report(mnist_cnn, data, **kw)
    assert not rebuilt.index["counts"].get("up_to_date") and b"edited" not in rebuilt.path.read_bytes()
    # different inputs (one changed label) or options never reuse the old report
    changed = data.subset(range(40))
    changed.labels[0] = (changed.labels[0] + 1) % 10
    assert not explainkit.report(mnist_cnn, changed, **kw).index["counts"].get("up_to_date")
    assert explainkit.report(mnist_cnn, data, **{**kw, "limit": 4}).index["counts"]["samples"] == 4


def test_confusion_matrix_of_many_classes_keeps_only_those_that_occur():
    from explainkit.enums import Task
    from explainkit.reports.stats import prediction_stats

    names = [f"class {i}" for i in range(1000)]                     # ImageNet-size: 1,000 classes
    st = prediction_stats(Task.CLASSIFICATION, names, [281, 967, 5, 5], None, np.array([281, 968, 5, 7]))
    assert st["confusion_classes"] == [5, 7, 281, 967, 968] and np.asarray(st["confusion"]).shape == (5, 5)
    assert st["accuracy"] == 0.5 and np.asarray(st["confusion"])[1, 0] == 1       # a 7 predicted as 5
    small = prediction_stats(Task.CLASSIFICATION, ["a", "b", "c"], [0, 1, 1], None, np.array([0, 1, 2]))
    assert small["confusion_classes"] == [0, 1, 2] and small["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]


# -- the dataset-level audit (issue 13, part 4) ---------------------------------------------------------------
def _between(page: str, start: str, end: str) -> str:
    return page[page.index(start):page.index(end, page.index(start))]


def test_dataset_audit_of_a_tabular_classifier(breast_cancer, tmp_path):
    data = datasets.breast_cancer("heldout")
    slices = {"malignant": {"class": "malignant"}, "unsure": {"confidence": [0.0, 0.9]},
              "large radius": {"feature": "mean radius", "range": [15.0, None]},
              "predicted benign, small": {"predicted": "benign", "feature": "mean radius", "range": [None, 12.0]},
              "user predicate": lambda raw, label: raw[1] > 20 and label == 1}
    rep = explainkit.report(breast_cancer, data, methods=["occlusion"], limit=25, out=tmp_path / "bc.html",
                            progress=False, slices=slices, dependence=("mean radius", "mean texture"), audit="data")
    page = (tmp_path / "bc.html").read_text()
    assert_self_contained_and_inert(page)
    audit = rep.index["audit"]
    # the confusion matrix covers the whole data (114 rows), not the 25 explained ones
    probs = breast_cancer.predict(data.raws)
    pred, conf, y = probs.argmax(1), probs.max(1), data.labels
    cm = np.asarray(audit["whole"]["confusion"])
    assert cm.sum() == len(data) == 114 and np.trace(cm) == int((pred == y).sum())
    assert audit["whole"]["accuracy"] == pytest.approx(float((pred == y).mean()))
    # every slice's numbers, recomputed by hand
    radius, texture = data.raws[:, 0], data.raws[:, 1]
    masks = {"malignant": y == 0, "unsure": conf < 0.9, "large radius": radius >= 15.0,
             "predicted benign, small": (pred == 1) & (radius < 12.0), "user predicate": (texture > 20) & (y == 1)}
    rows = {r["name"]: r for r in audit["slices"]}
    assert list(rows) == list(masks)
    for name, m in masks.items():
        assert rows[name]["n"] == int(m.sum()) > 0, name
        assert rows[name]["accuracy"] == pytest.approx(float((pred[m] == y[m]).mean()))
        assert rows[name]["mean_confidence"] == pytest.approx(float(conf[m].mean()))
    # signed importance per explained class: the table is the mean of the exported scores of that class
    with np.load(tmp_path / "bc.npz") as z:
        scores, outputs = z["occlusion.scores"], z["outputs"]
    groups = {g["target"]: g for g in audit["importance"][0]["groups"]}
    assert set(groups) == {breast_cancer.classes[int(k)] for k in np.unique(outputs.argmax(1))}
    for k, cls in enumerate(breast_cancer.classes):
        if cls not in groups:
            continue
        mine = scores[outputs.argmax(1) == k]
        assert groups[cls]["n"] == len(mine)
        for r in groups[cls]["table"]:
            j = breast_cancer.feature_names.index(r["feature"])
            assert float(r["mean"]) == pytest.approx(mine[:, j].mean(), rel=1e-3, abs=1e-6)
        first = breast_cancer.feature_names.index(groups[cls]["table"][0]["feature"])
        assert np.abs(mine[:, first]).mean() == pytest.approx(np.abs(mine).mean(0).max(), rel=1e-6)
    section = _between(page, 'id="audit"', "<h2>Samples</h2>")
    assert section.count('alt="beeswarm of occlusion"') == len(groups)
    assert "Dependence: the attribution of <b>mean radius</b> against its value, coloured by mean texture" in section
    assert "evidence for the class the sample was explained for" in section and "misclassified" not in section


def test_dataset_audit_of_a_regression_model_is_worded_for_regression(diabetes, tmp_path):
    data = datasets.diabetes("heldout")
    rep = explainkit.report(diabetes, data, methods=["occlusion"], select="misclassified", limit=12,
                            out=tmp_path / "d.html", progress=False, audit="data")
    page = (tmp_path / "d.html").read_text()
    for wrong in ("misclassified", "red supports the predicted class", "accuracy", "confidence"):
        assert wrong not in page.lower(), wrong
    assert "large errors (|error| above the mean absolute error)" in page
    assert "red raises the predicted value, blue lowers it" in page
    assert 'alt="residual plot"' in page and "Residual = prediction − true value (disease progression)" in page
    err = diabetes.predict(data.raws) - data.labels
    whole = rep.index["audit"]["whole"]
    assert whole["mae"] == pytest.approx(float(np.abs(err).mean()), rel=1e-6)
    assert (whole["over"], whole["under"]) == (int((err > 0).sum()), int((err < 0).sum()))
    # default slices: the most important feature's range in thirds, with each third's error
    slices = rep.index["audit"]["slices"]
    assert len(slices) == 3 and sum(r["n"] for r in slices) == len(data)
    top = rep.index["audit"]["importance"][0]["groups"][0]
    assert top["target"] == "disease progression" and slices[0]["name"].startswith(top["table"][0]["feature"])


def test_dataset_audit_of_text_is_signed_per_word_without_punctuation(sst2_lstm, load_data, tmp_path):
    from explainkit.views.aggregate import is_punctuation

    data = load_data("sst2-lstm").subset(range(60))
    rep = explainkit.report(sst2_lstm, data, methods=["occlusion"], limit=24, out=tmp_path / "t.html",
                            progress=False, min_count=2, audit="data")
    groups = rep.index["audit"]["importance"][0]["groups"]
    exps = list(rep.explanations("occlusion"))
    punct = sum(is_punctuation(t) for e in exps for t in e.tokens)
    assert punct > 0 and rep.index["audit"]["importance"][0]["n"] == 24
    for g in groups:
        k = sst2_lstm.classes.index(g["target"])
        sums: dict = {}
        for e in (e for e in exps if e.target == k):
            for t, v in zip(e.tokens, e.scores):
                sums.setdefault(t.lower(), []).append(float(v))
        listed = g["words"]["for"] + g["words"]["against"]
        assert listed and all(not is_punctuation(r["word"]) and r["count"] >= 2 for r in listed)
        for r in listed:
            assert r["count"] == len(sums[r["word"]]) and r["mean"] == pytest.approx(np.mean(sums[r["word"]]))
        assert all(r["mean"] > 0 for r in g["words"]["for"]) and all(r["mean"] < 0 for r in g["words"]["against"])
    slices = {r["name"]: r for r in rep.index["audit"]["slices"]}
    assert sum(r["n"] for n, r in slices.items() if "words" in n) == 60       # three length bands cover the data
    page = (tmp_path / "t.html").read_text()
    assert "punctuation and special tokens skipped" in page and "word (against)" in page


def test_dataset_audit_of_images_has_a_mean_map_per_class(image_report):
    rep, out = image_report
    section = _between(out.read_text(encoding="utf-8"), 'id="audit"', "<h2>Samples</h2>")
    explained = {int(np.argmax(o)) for o in np.load(out.with_suffix(".npz"))["outputs"]}
    assert section.count('alt="mean map for ') == 2 * len(explained)            # saliency and gradcam
    # the default scope: the 6 selected samples (limit and select keep their promise: no other row is predicted)
    assert "one shared scale" in section and sum(r["n"] for r in rep.index["audit"]["slices"][:10]) == 6
    assert np.asarray(rep.index["audit"]["whole"]["confusion"]).sum() == 6 and "of 1000 (pass" in section


def test_bad_audit_options_fail_early_with_one_clear_error(breast_cancer, sst2_lstm, tmp_path):
    data = datasets.breast_cancer("heldout").subset(range(10))
    kw = dict(methods=["occlusion"], out=tmp_path / "x.html", progress=False)
    for slices, match in (({"a": {"colour": "red"}}, "unknown spec"), (["class"], "must be a"),
                          ({"a": {"feature": "mean radius"}}, "go together"),
                          ({"a": {"confidence": [0.9, 0.1]}}, "is empty"),
                          ({"a": {"class": "tumour"}}, "not one of the model's classes"),
                          ({"a": {"feature": "height", "range": [0, 1]}}, "no feature 'height'"),
                          ({"a": {"length": [0, 5]}}, "not text"),
                          ({"a": lambda raw: raw["x"]}, "predicate raised")):
        with pytest.raises(ExplainKitError, match=match):
            explainkit.report(breast_cancer, data, slices=slices, **kw)
    for dep in ("height", ("mean radius", "height"), 3):
        with pytest.raises(ExplainKitError, match="dependence"):
            explainkit.report(breast_cancer, data, dependence=dep, **kw)
    with pytest.raises(ExplainKitError, match="min_count"):
        explainkit.report(sst2_lstm, None, min_count=0, **kw)
    with pytest.raises(ExplainKitError, match="audit='everything' is not one of selection, data"):
        explainkit.report(breast_cancer, data, audit="everything", **kw)


def test_report_pages_share_one_head_and_one_provenance_fragment():
    from explainkit.reports.result import TEMPLATES

    for page, summary in (("report.html", "report_summary.html"),
                          ("report_generation.html", "report_generation_summary.html")):
        assert '{% include "report_head.html" %}' in (TEMPLATES / page).read_text()
        body = (TEMPLATES / summary).read_text()
        assert '{% include "report_provenance.html" %}' in body and "<th>plugin</th>" not in body
