"""Bidi overrides and other invisible characters in user strings are shown visibly in every view."""
from __future__ import annotations

import re

import pytest

import explainkit
from explainkit.visible import has_hidden, visible, visible_spans, visible_tree

RLO = "\u202e"                                    # RIGHT-TO-LEFT OVERRIDE: "\u202egnp.exe" reads "exe.png"
HIDDEN = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff\x00-\x08]")


def test_visible_marks_each_hidden_character_and_keeps_the_rest():
    assert visible(f"{RLO}gnp.exe") == "⟨U+202E⟩gnp.exe"
    assert visible("zero\u200bwidth\u2066iso\u2069") == "zero⟨U+200B⟩width⟨U+2066⟩iso⟨U+2069⟩"
    assert visible("tabs\tand\nnewlines, ünïcödé, 中文") == "tabs\tand\nnewlines, ünïcödé, 中文"
    assert visible(3) == 3 and not has_hidden("plain") and has_hidden(f"a{RLO}b")
    assert visible_tree({"a": [f"x{RLO}", ("y\u200f", 1)], "n": None}) == \
        {"a": ["x⟨U+202E⟩", ("y⟨U+200F⟩", 1)], "n": None}


def test_visible_spans_move_the_offsets_with_the_text():
    text = f"good {RLO}film\u200b ok"
    spans = [(0, 4), (5, 10), (12, 14)]            # "good", "\u202efilm", "ok"
    shown, moved = visible_spans(text, spans)
    assert [shown[a:b] for a, b in moved] == [visible(text[a:b]) for a, b in spans]
    assert not HIDDEN.search(shown)


@pytest.fixture(scope="module")
def evil_tabular(load_model):
    base = load_model("breast-cancer-mlp")
    names = [f"{RLO}gnp{i}.exe" for i in range(30)]
    return explainkit.wrap(base.module, modality="tabular", classes=[f"benign{RLO}", "malig\u2066nant"],
                           feature_names=names, name="evil", standardize=base.standardize)


def test_html_fragments_and_pngs_show_the_markers(evil_tabular):
    from explainkit import datasets
    from explainkit.views import render

    row = datasets.breast_cancer("heldout").raws[0]
    exp = explainkit.explain(evil_tabular, row, "saliency")
    html = exp.to_html()
    assert not HIDDEN.search(html)
    assert "⟨U+202E⟩gnp" in html
    fig = render.plot(exp, max_features=30)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()] + [fig.axes[0].get_title()]
    assert sum("⟨U+202E⟩gnp" in t for t in labels) == 30, labels
    assert not any(HIDDEN.search(t) for t in labels)


def test_reports_show_the_markers(evil_tabular, tmp_path):
    from explainkit import datasets

    data = datasets.breast_cancer("heldout").subset(range(3))
    data.class_names = list(evil_tabular.classes)
    data.feature_names = list(evil_tabular.feature_names)
    explainkit.report(evil_tabular, data, methods=["saliency"], out=tmp_path / "r.html", progress=False)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert not HIDDEN.search(page)
    assert "⟨U+202E⟩gnp" in page and "benign⟨U+202E⟩" in page


def test_dashboard_payloads_show_the_markers(evil_tabular, sst2_lstm):
    from explainkit import datasets
    from explainkit.views.widgets import explanation_payload

    row = datasets.breast_cancer("heldout").raws[0]
    tab = explanation_payload(explainkit.explain(evil_tabular, row, "saliency"))
    assert tab["names"][0] == "⟨U+202E⟩gnp0.exe" and not HIDDEN.search(str(tab))
    text = f"a {RLO}gripping film"
    exp = explainkit.explain(sst2_lstm, text, "saliency")
    p = explanation_payload(exp)
    assert not HIDDEN.search(str(p))
    assert [p["text"][a:b] for a, b in p["offsets"]] == [visible(text[a:b]) for a, b in exp.offsets]


def test_dashboard_panels_and_trust_badges_show_the_markers():
    from explainkit.views.panels import _T

    html = _T["error"].render(method=f"evil{RLO}", origin=None, message="bad \u2066input\u2069")
    assert not HIDDEN.search(html) and "evil⟨U+202E⟩" in html and "⟨U+2066⟩input⟨U+2069⟩" in html
