"""The plugin contract: cheap discovery, applicability from declarations, containment of broken
plugins, the ways out (disable/block), clear errors for bad input, and the explain API and CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import explainkit
from explainkit import Capability, Explainer, ExplainerSpec, Explanation, Param
from explainkit.errors import NotApplicableError, ParameterError, PluginError, TargetError, UnknownNameError
from explainkit.plugins.registry import BUILTIN_DISTRIBUTION, ENV_BLOCK, ENV_NO_AUTOLOAD, Registry
from explainkit.plugins.runner import run_explainer

HERE = __name__
GRADIENT = {"saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap"}
AGNOSTIC = {"occlusion", "kernel_shap", "lime"}
APPLICABLE = {
    "mnist-mlp": GRADIENT | AGNOSTIC,
    "mnist-cnn": GRADIENT | AGNOSTIC | {"gradcam"},
    "sst2-lstm": GRADIENT | AGNOSTIC,
    "sst2-transformer": GRADIENT | AGNOSTIC | {"attention", "attention_rollout"},
    "breast-cancer-mlp": GRADIENT | AGNOSTIC,
    "diabetes-mlp": GRADIENT | AGNOSTIC,
}
IG_FAST = {"n_steps": 8}


def _exe() -> str:
    return str(Path(sys.executable).with_name("explainkit"))


def _cli(*args, env=None, cwd=None):
    return subprocess.run([_exe(), *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


# -- fake entry points (what importlib.metadata yields) --------------------------------------------
class FakeEP:
    def __init__(self, name, target, dist="explainkit-thirdparty", version="1.0"):
        self.name, self._target = name, target
        self.value = f"fake.module:{name.upper()}"
        self.dist = SimpleNamespace(name=dist, version=version)

    def load(self):
        return self._target() if callable(self._target) and not isinstance(self._target, ExplainerSpec) \
            else self._target


def make_spec(name="good", impl="Good", **kw):
    kw.setdefault("requires", {Capability.PREDICT})
    return ExplainerSpec(name=name, title=name, description=f"{name} explainer.", impl=f"{HERE}:{impl}", **kw)


class Good(Explainer):
    """Leave-one-out on the target output via predict_masked."""

    def explain(self, model, samples, targets, *, seed=0):
        out = []
        for s, t in zip(samples, targets):
            keep = np.vstack([np.ones((1, s.n_units)), 1 - np.eye(s.n_units)])
            y = model.predict_masked(s, keep)
            y = y[:, t] if y.ndim == 2 else y
            out.append(Explanation.from_sample(s, y[0] - y[1:]))
        return out


class Crashes(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        raise RuntimeError("boom inside the plugin")


class WrongShape(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        return [Explanation.from_sample(s, np.zeros(s.n_units + 1)) for s in samples]


class ReturnsNaN(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        return [Explanation.from_sample(s, np.full(s.n_units, np.nan)) for s in samples]


class WrongCount(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        return [Explanation.from_sample(samples[0], np.zeros(samples[0].n_units))]


def _raise(exc):
    def load():
        raise exc
    return load


@pytest.fixture
def tabular():
    """A small real tabular classifier (torch) and its black-box twin."""
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    model = explainkit.wrap(net, modality="tabular", classes=["a", "b", "c"], feature_names=list("wxyz"))
    box = explainkit.wrap(lambda rows: model.predict(list(rows)), modality="tabular", classes=["a", "b", "c"],
                          feature_names=list("wxyz"), name="box")
    return model, box


# -- discovery ---------------------------------------------------------------------------------------
def test_discovery_reads_declarations_without_importing_heavy_dependencies():
    code = ("import sys; from explainkit.registry import Registry; r = Registry(); "
            "names = [s.name for s in r.specs()]; assert 'integrated_gradients' in names, names; "
            "print(','.join(m for m in ('torch', 'captum', 'shap', 'lime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"discovery imported {out.stdout.strip()}"


def test_builtins_are_discovered_through_entry_points_like_any_plugin():
    reg = Registry()
    builtins = {e.name for e in reg.all() if e.distribution == BUILTIN_DISTRIBUTION}
    generation = {"lm_feature_ablation", "lm_shapley_value_sampling", "lm_input_x_gradient",
                  "lm_integrated_gradients", "lm_attention", "lm_attention_rollout"}
    assert builtins == GRADIENT | AGNOSTIC | {"gradcam", "attention", "attention_rollout"} | generation
    assert all(e.ok for e in reg.all() if e.distribution == BUILTIN_DISTRIBUTION)


@pytest.mark.parametrize("name", sorted(APPLICABLE))
def test_explainers_lists_exactly_the_applicable_ones(load_model, name):
    model = load_model(name)
    got = {s.name for s in explainkit.explainers(model) if s.distribution == BUILTIN_DISTRIBUTION}
    assert got == APPLICABLE[name]


def test_a_black_box_gets_no_gradient_methods(tabular):
    _, box = tabular
    reg = Registry()
    got = {s.name for s in reg.applicable(box) if s.distribution == BUILTIN_DISTRIBUTION}
    assert got == AGNOSTIC


def test_name_clash_is_reported_never_silently_shadowed():
    reg = Registry(entry_points=[FakeEP("dup", make_spec("dup"), dist="explainkit-zeta", version="2.0"),
                                 FakeEP("dup", make_spec("dup"), dist="explainkit-alpha", version="1.0")])
    rows = [(e.distribution, e.status) for e in reg.all() if e.name == "dup"]
    assert sorted(rows) == [("explainkit-alpha", "ok"), ("explainkit-zeta", "broken")]
    loser = next(e for e in reg.all() if e.distribution == "explainkit-zeta")
    assert "name clash" in loser.reason and "explainkit-alpha" in loser.reason and ENV_BLOCK in loser.reason
    assert "explainkit-zeta" in reg.get("dup").reason         # the winner says it was contested too


def test_a_builtin_keeps_its_name_against_a_third_party():
    reg = Registry(entry_points=[FakeEP("occlusion", make_spec("occlusion"), dist="explainkit-aaa"),
                                 FakeEP("occlusion", make_spec("occlusion"), dist=BUILTIN_DISTRIBUTION)])
    assert reg.get("occlusion").distribution == BUILTIN_DISTRIBUTION
    assert [e.distribution for e in reg.problems] == ["explainkit-aaa"]


def test_disable_autoload_keeps_only_the_builtins(monkeypatch):
    eps = [FakeEP("good", make_spec("good")), FakeEP("saliency_b", make_spec("saliency_b"), dist=BUILTIN_DISTRIBUTION)]
    monkeypatch.setenv(ENV_NO_AUTOLOAD, "1")
    assert [e.name for e in Registry(entry_points=eps).all()] == ["saliency_b"]
    real = Registry()
    assert real.specs() and {s.distribution for s in real.specs()} == {BUILTIN_DISTRIBUTION}
    monkeypatch.setenv(ENV_NO_AUTOLOAD, "0")
    assert {e.name for e in Registry(entry_points=eps).all()} == {"good", "saliency_b"}


def test_block_plugins_by_explainer_or_distribution_name(monkeypatch):
    eps = [FakeEP("good", make_spec("good")), FakeEP("other", make_spec("other"), dist="explainkit-other")]
    monkeypatch.setenv(ENV_BLOCK, "good")
    assert [e.name for e in Registry(entry_points=eps).all()] == ["other"]
    monkeypatch.setenv(ENV_BLOCK, " explainkit-other , nothing")
    assert [e.name for e in Registry(entry_points=eps).all()] == ["good"]
    monkeypatch.setenv(ENV_BLOCK, "lime")
    assert "lime" not in {s.name for s in Registry().specs()}


# -- broken plugins are contained --------------------------------------------------------------------
BROKEN_DECLARATIONS = {
    "import_error": (_raise(ModuleNotFoundError("No module named 'fancy_dep'")), "fancy_dep"),
    "bad_name": (lambda: make_spec("Bad-Name"), "snake_case"),
    "bad_default": (lambda: make_spec("bad_default", params=(Param("n", "int", -1, min=0),)), "default of 'n'"),
    "no_colon": (lambda: ExplainerSpec(name="no_colon", title="t", description="d.", impl="pkg.module.Class"),
                 "package.module:Class"),
    "not_a_spec": (lambda: {"name": "not_a_spec"}, "not an ExplainerSpec"),
}


def test_broken_declarations_are_listed_with_their_reason_and_others_still_work(tabular):
    model, _ = tabular
    eps = [FakeEP(n, load) for n, (load, _) in BROKEN_DECLARATIONS.items()] + [FakeEP("good", make_spec("good"))]
    reg = Registry(entry_points=eps)
    status = {e.name: (e.status, e.reason) for e in reg.all()}
    for name, (_, words) in BROKEN_DECLARATIONS.items():
        assert status[name][0] == "broken" and words in status[name][1], status[name]
    assert [s.name for s in reg.specs()] == ["good"]
    with pytest.raises(PluginError, match="broken"):
        reg.get("bad_name")
    exp = run_explainer("good", model, [np.arange(4.0)], reg=reg)[0]
    assert exp.scores.shape == (4,) and exp.method == "good"


@pytest.mark.parametrize("impl, words, reason", [
    ("Crashes", "boom inside the plugin", "raised while explaining"), ("WrongShape", "shape", "invalid output"),
    ("ReturnsNaN", "NaN", "invalid output"), ("WrongCount", "1 results for 2 samples", "invalid output"),
    ("NoSuchClass", "failed to import", "no attribute 'NoSuchClass'")])
def test_a_failing_implementation_is_marked_broken_and_others_still_work(tabular, impl, words, reason):
    model, _ = tabular
    reg = Registry(entry_points=[FakeEP("bad", make_spec("bad", impl)), FakeEP("good", make_spec("good"))])
    rows = [np.arange(4.0), np.ones(4)]
    with pytest.raises(PluginError, match=words):
        run_explainer("bad", model, rows, reg=reg)
    if impl == "Crashes":       # one raise may be the input's fault: raising again on valid input is broken
        with pytest.raises(PluginError, match="now marked broken"):
            run_explainer("bad", model, rows, reg=reg)
    entry = next(e for e in reg.all() if e.name == "bad")
    assert entry.status == "broken" and reason in entry.reason
    assert len(run_explainer("good", model, rows, reg=reg)) == 2


def test_plugins_list_cli_shows_every_column_and_broken_plugins(tmp_path):
    dist = tmp_path / "explainkit_fakebroken-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: explainkit-fakebroken\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[explainkit.explainers]\nfake_broken = no_such_pkg.decl:SPEC\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = _cli("plugins", "list", env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["name", "modalities", "requires", "distribution", "version", "status"]
    ig = next(ln for ln in lines if ln.startswith("integrated_gradients "))
    assert ig.split()[1:] == ["image,tabular,text", "gradients", BUILTIN_DISTRIBUTION, "0.1.0", "ok"]
    gc = next(ln for ln in lines if ln.startswith("gradcam "))
    assert "conv_layer,gradients" in gc
    bad = next(ln for ln in lines if ln.startswith("fake_broken "))
    assert "explainkit-fakebroken" in bad and "0.3" in bad and "BROKEN" in bad and "no_such_pkg" in bad


# -- bad input: one clear error each -----------------------------------------------------------------
def test_unknown_method_lists_the_applicable_ones(load_model, load_data):
    model = load_model("mnist-mlp")
    with pytest.raises(UnknownNameError) as info:
        explainkit.explain(model, load_data("mnist-mlp")[0][0], method="integrated_gradient")
    fix = info.value.fix
    assert "integrated_gradients" in fix and "occlusion" in fix and "gradcam" not in fix


@pytest.mark.parametrize("model_name, method, words", [
    ("mnist-mlp", "gradcam", "conv_layer"),
    ("sst2-lstm", "attention", "attention"),
    ("diabetes-mlp", "attention_rollout", "text"),
])
def test_a_method_that_does_not_apply_says_why(load_model, load_data, model_name, method, words):
    model = load_model(model_name)
    with pytest.raises(NotApplicableError, match=words) as info:
        explainkit.explain(model, load_data(model_name)[0][0], method=method)
    assert "choose one of" in str(info.value)


def test_gradients_on_a_black_box_function_say_why(tabular):
    _, box = tabular
    with pytest.raises(NotApplicableError, match="requires gradients"):
        explainkit.explain(box, np.zeros(4), method="integrated_gradients")


@pytest.mark.parametrize("params, words", [
    ({"n_steps": 1}, "outside"), ({"n_steps": 10**6}, "outside"), ({"n_steps": "many"}, "must be int"),
    ({"n_steps": 2.5}, "integer"), ({"internal_batch_size": -1}, "outside"),
    ({"baseline": "random"}, "one of"), ({"n_stepz": 8}, "no parameter"),
])
def test_bad_parameters_raise_parameter_error(tabular, params, words):
    model, _ = tabular
    with pytest.raises(ParameterError, match=words):
        explainkit.explain(model, np.zeros(4), method="integrated_gradients", **params)


def test_bad_seed_and_targets(tabular, load_model, load_data):
    model, _ = tabular
    for target in (3, -1, 1.5, [0, 1]):
        with pytest.raises(TargetError):
            explainkit.explain(model, np.zeros(4), method="occlusion", target=target)
    with pytest.raises(ParameterError, match="seed"):
        explainkit.explain(model, np.zeros(4), method="occlusion", seed="0")
    reg_model = load_model("diabetes-mlp")
    with pytest.raises(TargetError, match="regression"):
        explainkit.explain(reg_model, load_data("diabetes-mlp")[0][0], method="occlusion", target=2)


# -- the explain API ---------------------------------------------------------------------------------
def test_explain_a_sample_a_raw_image_and_a_batch(load_model, load_data):
    model = load_model("mnist-cnn")
    data = load_data("mnist-cnn")
    raw, label = data[7]
    s = model.prepare(raw, label=label, index=7)
    e1 = explainkit.explain(model, s, method="integrated_gradients", **IG_FAST)
    e2 = explainkit.explain(model, np.asarray(raw), method="integrated_gradients", **IG_FAST)
    assert isinstance(e1, Explanation) and e1.scores.shape == (28, 28)
    np.testing.assert_array_equal(e1.scores, e2.scores)
    assert e1.method == "integrated_gradients" and e1.params["n_steps"] == 8 and e1.seed == 0
    assert e1.target == e1.prediction == int(np.argmax(e1.probabilities)) and e1.label == label
    assert e1.sample_index == 7 and e1.model_name == model.name and e1.model_hash == model.weights_hash()
    batch = explainkit.explain(model, np.stack([data[i][0] for i in range(3)]), method="saliency", target=3)
    assert isinstance(batch, explainkit.Explanations) and len(batch) == 3
    assert [e.target for e in batch] == [3, 3, 3] and [e.sample_index for e in batch] == [0, 1, 2]
    listed = explainkit.explain(model, [data[i][0] for i in range(2)], method="saliency")
    assert len(listed) == 2


def test_explain_a_string_and_a_row(load_model, load_data):
    lstm = load_model("sst2-lstm")
    e = explainkit.explain(lstm, "a gripping , beautifully made film", method="integrated_gradients", **IG_FAST)
    assert e.tokens == ["a", "gripping", ",", "beautifully", "made", "film"] and e.scores.shape == (6,)
    assert e.text == "a gripping , beautifully made film"
    bc = load_model("breast-cancer-mlp")
    row = load_data("breast-cancer-mlp")[0][0]
    r = explainkit.explain(bc, row, method="integrated_gradients", **IG_FAST)
    assert r.scores.shape == (30,) and r.feature_names == bc.feature_names
    np.testing.assert_allclose(r.feature_values, row)


# -- the explain CLI ---------------------------------------------------------------------------------
def test_explain_cli_writes_png_html_and_json(tmp_path):
    base = ["explain", "--model", "sample:mnist-cnn", "--index", "7", "--method", "integrated_gradients"]
    for suffix in ("png", "html", "json"):
        out = _cli(*base, "--out", str(tmp_path / f"ig.{suffix}"))
        assert out.returncode == 0, out.stderr
        assert "wrote" in out.stdout
    assert (tmp_path / "ig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "ig.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "integrated_gradients" in html
    exp = Explanation.from_dict(json.loads((tmp_path / "ig.json").read_text()))
    assert exp.method == "integrated_gradients" and exp.sample_index == 7 and exp.scores.shape == (28, 28)
    assert not list(tmp_path.glob(".*.tmp"))                  # written atomically, no leftovers


def test_explain_cli_bad_input_is_one_clear_error(tmp_path):
    out = _cli("explain", "--model", "sample:mnist-mlp", "--method", "gradcam", "--out", str(tmp_path / "x.png"))
    assert out.returncode == 2 and "does not apply" in out.stderr and "Traceback" not in out.stderr
    out = _cli("explain", "--model", "sample:mnist-mlp", "--method", "integrated_gradients",
               "--param", "n_steps=1", "--out", str(tmp_path / "x.png"))
    assert out.returncode == 2 and "n_steps" in out.stderr and not (tmp_path / "x.png").exists()
