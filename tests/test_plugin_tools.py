"""The tools for plugin authors: the conformance harness, the registry fixtures and the scaffold.

The harness is exercised on small real torch models (and a black box) with explainers defined here,
some correct and some broken in one specific way, to show each check catches exactly its fault.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import explainkit
from explainkit import Capability, Explainer, ExplainerSpec, Explanation, Param, ResultKind
from explainkit.errors import DataError, PluginError, UnknownNameError
from explainkit.plugins.conformance import CheckReport, Status, check_explainer, empty_registry, registry_with

HERE = __name__


# -- small real models ------------------------------------------------------------------------------
@pytest.fixture
def tiny_models():
    """A tabular MLP, a tiny CNN, a text model with embeddings, and a black box: (model, inputs) pairs."""
    import torch
    from torch import nn

    from explainkit.data.tokenizer import Tokenizer

    torch.manual_seed(0)

    class TinyText(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.embedding = nn.Embedding(vocab, 4, padding_idx=0)
            self.fc = nn.Linear(4, 2)

        def forward(self, ids, mask):
            e = self.embedding(ids) * mask.unsqueeze(-1)
            return self.fc(e.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))

    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    tab = explainkit.wrap(mlp, modality="tabular", classes=["a", "b", "c"], feature_names=list("wxyz"), name="tab")
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    img = explainkit.wrap(cnn, modality="image", classes=["a", "b", "c"], input_shape=(1, 8, 8), name="img")
    tok = Tokenizer(["good", "bad", "film", "plot"])
    txt = explainkit.wrap(TinyText(len(tok)), modality="text", classes=["neg", "pos"], tokenizer=tok, name="txt")
    box = explainkit.wrap(lambda rows: tab.predict(list(rows)), modality="tabular", classes=["a", "b", "c"],
                          feature_names=list("wxyz"), name="box")
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=4) for _ in range(2)]
    return {"tab": (tab, rows), "box": (box, rows),
            "img": (img, [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(2)]),
            "txt": (txt, ["good film", "bad plot , bad film"])}


def pool(tiny_models, *names):
    return [tiny_models[n] for n in (names or ("tab", "img", "txt", "box"))]


# -- explainers: one correct, the others each broken in one way ---------------------------------------
class LeaveOneOut(Explainer):
    """Correct: drop in the target probability when each unit is masked (any model with predictions)."""

    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        out = []
        for s, t in zip(samples, targets):
            u = s.n_units
            keep = np.vstack([np.ones((1, u)), 1 - np.eye(u)])
            y = model.predict_masked(s, keep)
            y = y[:, t] if y.ndim == 2 else y
            scores = (y[0] - y[1:]).reshape(s.image.shape[:2]) if s.image is not None else y[0] - y[1:]
            out.append(Explanation.from_sample(s, scores))
        return out


class ModifiesWeights(LeaveOneOut):
    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        import torch
        with torch.no_grad():
            next(model.module.parameters()).add_(1e-3)
        return super().explain(model, samples, targets, seed=seed)


class LeavesHook(LeaveOneOut):
    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        model.module.register_forward_hook(lambda *a: None)
        return super().explain(model, samples, targets, seed=seed)


class LeavesTrainMode(LeaveOneOut):
    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        model.module.train()
        try:
            return super().explain(model, samples, targets, seed=seed)
        finally:
            pass                                            # forgets model.module.eval()


class IgnoresSeed(LeaveOneOut):
    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        res = super().explain(model, samples, targets, seed=seed)
        for e in res:
            e.scores = e.scores + np.random.default_rng().normal(size=e.scores.shape)   # unseeded noise
        return res


class WrongShape(LeaveOneOut):
    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        return [Explanation.from_sample(s, np.zeros(3)) for s in samples]


class UnserialisableExtras(LeaveOneOut):
    def explain(self, model, samples, targets, *, seed=0, n_samples=100):
        res = super().explain(model, samples, targets, seed=seed)
        for e in res:
            e.extras["handle"] = object()
        return res


def spec(impl: str, name: str = "probe", **kw) -> ExplainerSpec:
    kw.setdefault("requires", {Capability.PREDICT})
    kw.setdefault("params", (Param("n_samples", "int", 100, min=1, max=1000, help="Budget."),))
    return ExplainerSpec(name=name, title="Probe", description="A test explainer.", impl=f"{HERE}:{impl}", **kw)


def statuses(report: CheckReport, check: str) -> set:
    return {r.status for r in report.rows if r.check == check}


# -- the harness --------------------------------------------------------------------------------------
def test_a_correct_explainer_passes_every_check(tiny_models):
    report = check_explainer(spec("LeaveOneOut"), models=pool(tiny_models))
    assert report.ok, str(report)
    assert {r.model for r in report.rows if r.check == "output"} == {"tab", "img", "txt", "box"}
    assert statuses(report, "model unchanged") == {Status.PASS, Status.SKIP}    # SKIP: the black box
    assert statuses(report, "parameter validation") == {Status.PASS}
    assert report.raise_on_failure() is report
    text = str(report)
    assert "check" in text.splitlines()[0] and "probe: OK" in text
    assert repr(report).startswith("<CheckReport probe ok")


def test_budget_parameters_are_capped_for_the_check(tiny_models):
    report = check_explainer(spec("LeaveOneOut"), models=pool(tiny_models, "tab"))
    from explainkit.plugins.conformance import CHEAP_N, _cheap_params
    assert _cheap_params(spec("LeaveOneOut")) == {"n_samples": CHEAP_N}
    assert report.ok


@pytest.mark.parametrize("impl, check, words", [
    ("ModifiesWeights", "model unchanged", "weights"),
    ("LeavesHook", "model unchanged", "module hooks"),
    ("LeavesTrainMode", "model unchanged", "train/eval flag"),
    ("IgnoresSeed", "determinism", "different results"),
    ("WrongShape", "output", "scores of shape"),
    ("UnserialisableExtras", "to_dict/from_dict", "TypeError"),
])
def test_each_fault_is_caught_by_its_check(tiny_models, impl, check, words):
    report = check_explainer(spec(impl), models=pool(tiny_models, "tab"))
    assert not report.ok
    failed = [r for r in report.failures if r.check == check]
    assert failed and words in failed[0].detail, str(report)
    with pytest.raises(AssertionError, match=check):
        report.raise_on_failure()


def test_a_stochastic_explainer_that_ignores_its_seed_is_a_warning(tiny_models):
    report = check_explainer(spec("LeaveOneOut", stochastic=True), models=pool(tiny_models, "tab"))
    assert statuses(report, "seed sensitivity") == {Status.WARN}
    assert report.ok


def test_wrong_result_kind_fails_the_output_check(tiny_models):
    report = check_explainer(spec("LeaveOneOut", result=ResultKind.ATTENTION), models=pool(tiny_models, "txt"))
    assert statuses(report, "output") == {Status.FAIL}


def test_not_applicable_is_checked_on_a_model_it_does_not_support(tiny_models):
    report = check_explainer(spec("LeaveOneOut", requires={Capability.GRADIENTS}), models=pool(tiny_models))
    row = next(r for r in report.rows if r.check == "not applicable")
    assert row.status is Status.PASS and row.model == "box" and "gradients" in row.detail
    everywhere = check_explainer(spec("LeaveOneOut"), models=pool(tiny_models, "tab"))
    assert statuses(everywhere, "not applicable") == {Status.SKIP}


def test_quick_checks_one_model_per_modality(tiny_models):
    report = check_explainer(spec("LeaveOneOut"), models=pool(tiny_models), quick=True)
    assert {r.model for r in report.rows if r.check == "output"} == {"tab", "img", "txt"}


def test_an_import_error_is_a_failed_check_not_a_crash(tiny_models):
    report = check_explainer(spec("NoSuchClass"), models=pool(tiny_models, "tab"))
    assert [r.check for r in report.failures] == ["import"]


def test_unknown_name_and_bad_models_raise_clear_errors(tiny_models):
    with pytest.raises(UnknownNameError, match="Unknown explainer"):
        check_explainer("no_such_explainer", registry=empty_registry())
    with pytest.raises(explainkit.errors.ModelError, match="models"):
        check_explainer(spec("LeaveOneOut"), models=[42])


def test_by_name_through_a_given_registry(tiny_models):
    reg = registry_with(spec("LeaveOneOut", name="loo"))
    report = check_explainer("loo", registry=reg, models=pool(tiny_models, "tab"))
    assert report.ok and report.rows[0].detail.startswith("local 0")
    assert reg.get("loo").ok                  # the harness never marks the caller's entry broken


def test_empty_registry_discovers_nothing():
    reg = empty_registry()
    assert reg.all() == [] and reg.specs() == []
    reg2 = registry_with(spec("LeaveOneOut", name="a"), spec("LeaveOneOut", name="b"))
    assert [s.name for s in reg2.specs()] == ["a", "b"]


# -- the scaffold -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["My-Plugin", "2fast", "has space", "", "Caps"])
def test_scaffold_rejects_names_that_are_not_snake_case(bad, tmp_path):
    from explainkit.plugins.scaffold import scaffold
    with pytest.raises(PluginError, match="snake_case"):
        scaffold(bad, tmp_path / "p")


def test_scaffold_names_and_refusals(tmp_path):
    from explainkit.plugins.scaffold import names_for, scaffold

    n = names_for("grad_norm")
    assert (n["dist"], n["package"], n["class_name"]) == ("explainkit-grad-norm", "explainkit_grad_norm", "GradNorm")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty directory"):
        scaffold("grad_norm", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(PluginError, match="already exists"):
        scaffold("saliency", tmp_path / "clash")          # a built-in's name would clash


def test_scaffolded_package_does_no_work_at_import(tmp_path):
    from explainkit.plugins.scaffold import scaffold

    files = scaffold("probe_tool", tmp_path / "d", check_clash=False)
    assert {f.relative_to(tmp_path / "d").as_posix() for f in files} == {
        "pyproject.toml", "README.md", "explainkit_probe_tool/__init__.py", "tests/test_probe_tool.py",
        "explainkit_probe_tool/declarations.py", "explainkit_probe_tool/explainer.py"}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import explainkit_probe_tool.declarations as d; "
            "assert d.SPEC.name == 'probe_tool'; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], check=True)
    pyproject = (tmp_path / "d" / "pyproject.toml").read_text()
    assert '[project.entry-points."explainkit.explainers"]' in pyproject
    assert 'probe_tool = "explainkit_probe_tool.declarations:SPEC"' in pyproject


def _cli(*args, **kw):
    exe = Path(sys.executable).with_name("explainkit")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, **kw)


def test_scaffold_install_list_check_end_to_end(tmp_path):
    """The documented workflow: new -> pip install -e (offline) -> plugins list -> plugins check."""
    name = f"scaffold_probe_{uuid.uuid4().hex[:6]}"
    dist = "explainkit-" + name.replace("_", "-")
    target = tmp_path / "plugin"
    made = _cli("plugins", "new", name, "--dir", str(target))
    assert made.returncode == 0, made.stderr
    pip = [sys.executable, "-m", "pip"]
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}   # prove: no network
    try:
        inst = subprocess.run(pip + ["install", "-q", "--no-deps", "--no-build-isolation", "-e", str(target)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert inst.returncode == 0, inst.stdout + inst.stderr
        listed = _cli("plugins", "list")
        line = next((ln for ln in listed.stdout.splitlines() if ln.startswith(name + " ")), "")
        assert dist in line and line.rstrip().endswith("ok"), listed.stdout
        checked = _cli("plugins", "check", name, "--quick")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"{name}: OK" in checked.stdout and "FAIL" not in checked.stdout
    finally:
        subprocess.run(pip + ["uninstall", "-y", "-q", dist], capture_output=True, env=env, timeout=120)
    assert name not in _cli("plugins", "list").stdout       # the environment is left clean
