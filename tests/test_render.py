"""Static renderings: colour scale, image/text/tabular/attention views, escaping, self-contained HTML."""
from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from explainkit.data import datasets
from explainkit.data.tokenizer import Tokenizer
from explainkit.plugins.explanation import AttentionExplanation, Explanation
from explainkit.views import render

PAYLOADS = ['<script>alert(1)</script>', '"onerror=alert(1) x="', "</textarea><img src=x onerror=alert(2)>"]


class _Audit(HTMLParser):
    """Collects the elements and attributes a browser would build from the markup."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def audit(markup: str) -> _Audit:
    a = _Audit()
    a.feed(markup)
    return a


def assert_inert(markup: str) -> None:
    a = audit(markup)
    assert "script" not in a.tags and "textarea" not in a.tags
    assert not [k for k, _ in a.attrs if k.startswith("on")], "an event-handler attribute survived"
    srcs = [v for k, v in a.attrs if k in ("src", "href")]
    assert all(v.startswith("data:image/png;base64,") for v in srcs), srcs


@pytest.fixture(scope="module")
def mnist_image():
    data = datasets.sample_data("mnist")
    raw, label = data[0]
    return raw.astype(np.float64) / 255.0, label


def test_colors_are_centred_and_share_a_scale():
    neg, zero, pos = render.colors([-1.0, 0.0, 1.0], "signed")
    assert zero == "#f7f6f6"                       # RdBu_r's white centre
    r, b = int(pos[1:3], 16), int(pos[5:7], 16)
    assert r > b and int(neg[5:7], 16) > int(neg[1:3], 16)
    # a shared, larger vmax makes the same score paler (closer to white)
    alone, shared = render.colors([1.0], vmax=None)[0], render.colors([1.0], vmax=4.0)[0]
    assert sum(int(shared[i:i + 2], 16) for i in (1, 3, 5)) > sum(int(alone[i:i + 2], 16) for i in (1, 3, 5))
    # the positive view ignores evidence against; absolute treats both signs alike
    p = render.colors([-2.0, 0.0, 2.0], "positive")
    assert p[0] == p[1] != p[2]
    a = render.colors([-2.0, 2.0], "absolute")
    assert a[0] == a[1]
    assert np.array(render.colors(np.zeros((3, 4)))).shape == (3, 4)
    with pytest.raises(Exception, match="Unknown view"):
        render.colors([1.0], "rainbow")


def test_image_overlay_puts_colour_where_the_scores_are(mnist_image):
    img, label = mnist_image
    scores = np.zeros_like(img)
    scores[4:10, 4:10] = 1.0                        # evidence in the top-left corner only
    exp = Explanation(scores=scores, modality="image", method="occlusion", image=img,
                      classes=[str(i) for i in range(10)], target=label, prediction=label,
                      probabilities=np.eye(10)[label], label=label)
    fig = render.plot(exp, alpha=0.9)
    overlay = fig.axes[0].images[-1].get_array()
    assert overlay.shape == (28, 28, 4)
    assert overlay[6, 6, 3] == pytest.approx(0.9) and overlay[20, 20, 3] == 0.0
    assert overlay[6, 6, 0] > overlay[6, 6, 2]      # red = evidence for the target
    assert len(fig.axes) == 2                       # image + colorbar
    png = render.to_png(exp)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread
    assert imread(io.BytesIO(png)).shape[:2] == (300, 340)
    with pytest.raises(Exception, match="alpha"):
        render.plot(exp, alpha=3)
    # the HTML's figure-free overlay: 8x nearest upscaling, red over the evidence, the input elsewhere
    px = imread(io.BytesIO(render.image_png(exp, alpha=0.9)))
    assert px.shape[:2] == (224, 224)
    r, g, b = px[6 * 8 + 4, 6 * 8 + 4, :3]
    assert r > 0.3 and r > 2 * b
    np.testing.assert_allclose(px[20 * 8, 20 * 8, :3], np.round(img[20, 20] * 255) / 255, atol=1 / 255)
    frag = render.to_html(exp)
    assert "(signed view)" in frag and frag.count("data:image/png;base64,") == 1


def test_text_html_preserves_the_original_text():
    data = datasets.sample_data("sst2")
    text = data.raws[3] + "  --  it's   (truly) \"odd\"!"
    enc = Tokenizer([]).encode(text)
    scores = np.linspace(-1, 1, len(enc.tokens))
    exp = Explanation(scores=scores, modality="text", method="saliency", text=text, tokens=enc.tokens,
                      offsets=enc.offsets, classes=["negative", "positive"], target=1, prediction=1,
                      probabilities=np.array([0.3, 0.7]))
    frag = render.to_html(exp, css=False)
    body = re.search(r'<div class="ek-text">(.*?)</div>', frag, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == text
    spans = re.findall(r'<span class="ek-tok" style="background:(#[0-9a-f]{6});color:(#[0-9a-f]{6})" '
                       r'title="([^"]*)">', body)
    assert len(spans) == len(enc.tokens)
    assert [s[0] for s in spans] == render.colors(scores)
    assert spans[0][2].endswith("-1.0000") and spans[-1][2].endswith("+1.0000")
    assert "prediction <b>positive</b> (p = 0.700)" in frag
    fig = render.plot(exp)                          # the PNG version draws every token
    assert [t.get_text() for t in fig.axes[0].texts] == enc.tokens


def test_tabular_bars_sorted_by_magnitude_with_raw_values():
    data = datasets.breast_cancer("heldout")
    row = data.raws[0]
    scores = np.array([(-1) ** i * (i + 1) for i in range(len(row))], dtype=float) / 10
    exp = Explanation(scores=scores, modality="tabular", method="kernel_shap", feature_names=data.feature_names,
                      feature_values=row, classes=data.class_names, target=1, prediction=1,
                      probabilities=np.array([0.1, 0.9]), base_value=0.4)
    fig = render.plot(exp, max_features=5)
    ticks = sorted(zip(fig.axes[0].get_yticks(), fig.axes[0].get_yticklabels()), key=lambda p: -p[0])
    labels = [t.get_text() for _, t in ticks]       # top bar first
    order = np.argsort(-np.abs(scores))[:5]
    assert labels == [f"{data.feature_names[i]} = {row[i]:.4g}" for i in order]
    wf = render.waterfall(exp)
    assert f"f(x) {0.4 + scores.sum():.4g}" in wf.axes[0].get_xlabel()
    frag = render.to_html(exp)
    assert frag.count("data:image/png;base64,") == 2           # bars + waterfall
    no_base = Explanation(scores=scores, modality="tabular", method="saliency", feature_names=data.feature_names,
                          feature_values=row, classes=data.class_names, target=1, prediction=1)
    with pytest.raises(Exception, match="no base value"):
        render.waterfall(no_base)
    assert render.to_html(no_base).count("data:image/png;base64,") == 1


def test_regression_header_in_output_units():
    data = datasets.diabetes("heldout")
    exp = Explanation(scores=np.arange(10.0), modality="tabular", task="regression", method="occlusion",
                      feature_names=data.feature_names, feature_values=data.raws[0], prediction=151.25,
                      label=float(data.labels[0]), target_name="disease progression")
    frag = render.to_html(exp)
    assert "prediction <b>151.2 (disease progression)</b>" in frag
    assert "disease progression" in render.plot(exp).axes[0].get_xlabel()


def test_attention_heatmap_is_one_layer_and_head():
    text = "a gripping , funny and moving film"
    enc = Tokenizer([]).encode(text)
    t = len(enc.tokens)
    m = np.random.default_rng(0).random((2, 4, t, t))
    m /= m.sum(-1, keepdims=True)
    exp = AttentionExplanation(scores=m[-1].mean(0).mean(0), modality="text", method="attention", text=text,
                               tokens=enc.tokens, offsets=enc.offsets, matrices=m, classes=["neg", "pos"],
                               target=1, prediction=1, probabilities=np.array([0.4, 0.6]))
    fig = render.plot(exp)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), m[-1].mean(0))
    fig = render.plot(exp, layer=0, head=2)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), m[0, 2])
    assert [x.get_text() for x in fig.axes[0].get_xticklabels()] == enc.tokens
    frag = render.to_html(exp)
    assert "data:image/png;base64," in frag and "(positive view)" in frag


def test_every_user_string_is_escaped(mnist_image):
    img, _ = mnist_image
    bad = " ".join(PAYLOADS)
    enc = Tokenizer([]).encode(bad)
    common = dict(method=PAYLOADS[0], classes=PAYLOADS, target=1, prediction=2, label=0,
                  probabilities=np.array([0.2, 0.3, 0.5]), model_name=PAYLOADS[1])
    exps = [Explanation(scores=np.ones(len(enc.tokens)), modality="text", text=bad, tokens=enc.tokens,
                        offsets=enc.offsets, **common),
            Explanation(scores=np.arange(3.0), modality="tabular", feature_names=PAYLOADS,
                        feature_values=np.arange(3.0), base_value=0.1, **common),
            Explanation(scores=img, modality="image", image=img, **common)]
    for exp in exps:
        for view in render.View:
            frag = render.to_html(exp, view=view)
            assert_inert(frag)
            assert "&lt;script&gt;" in frag           # shown to the user, as text
    page = render.html_page(render.to_html(exps[0]), title=PAYLOADS[2])
    assert_inert(page)
    assert "&lt;/textarea&gt;" in page


def test_page_is_self_contained(mnist_image, tmp_path):
    img, label = mnist_image
    exp = Explanation(scores=img - img.mean(), modality="image", method="integrated_gradients", image=img,
                      classes=[str(i) for i in range(10)], target=label, prediction=label,
                      probabilities=np.eye(10)[label])
    page = render.html_page(exp.to_html(), title="ig")
    assert page.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in page             # CSP: the browser may fetch nothing
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "url(" not in page and "@import" not in page and "<script" not in page
    out = tmp_path / "ig.png"
    png = exp.to_png(out, view="absolute", dpi=50)
    assert out.read_bytes() == png and not list(tmp_path.glob(".*tmp"))
