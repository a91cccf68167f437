"""Plugin faults are contained: declarations that exit, hang or raise; sys.exit inside explain(); one bad
spec per module; input-caused NaN/Inf; errors that name the author's file; the declaration-import and
completeness checks; and the dashboard's state after a plugin fails."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

import explainkit
from explainkit import Capability, Explainer, ExplainerSpec, Explanation
from explainkit.errors import ExplainKitError, InputError, PluginError, TargetError, UnknownNameError
from explainkit.plugins.conformance import Status, check_explainer, registry_with
from explainkit.plugins.registry import Registry
from explainkit.plugins.registry import registry as default_registry
from explainkit.plugins.runner import run_explainer

HERE = __name__
ENV_DEBUG = "EXPLAINKIT_DEBUG"
HEADER = "from explainkit import Capability, ExplainerSpec, Modality, Param, Task\n"


def _spec_src(name, extra=""):
    return (f"ExplainerSpec(name={name!r}, title={name!r}, description='d.', "
            f"impl='{HERE}:Good', requires={{Capability.PREDICT}}{extra})")


def make_dist(root: Path, dist: str, modules: dict, eps: dict, version="0.1") -> Path:
    """A throwaway installed distribution: a dist-info with entry points, plus its package modules."""
    pkg = dist.replace("-", "_")
    info = root / f"{pkg}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[explainkit.explainers]\n"
                                           + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    (root / pkg).mkdir()
    (root / pkg / "__init__.py").write_text("")
    for mod, src in modules.items():
        (root / pkg / f"{mod}.py").write_text(textwrap.dedent(src))
    return root


def _env(root: Path, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["XDG_CACHE_HOME"] = str(root / "cache")
    env.pop(ENV_DEBUG, None)
    env.update(extra)
    return env


def _cli(*args, env):
    exe = str(Path(sys.executable).with_name("explainkit"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, env=env)


class Good(Explainer):
    """Leave-one-out on the target output."""

    def explain(self, model, samples, targets, *, seed=0):
        out = []
        for s, t in zip(samples, targets):
            keep = np.vstack([np.ones((1, s.n_units)), 1 - np.eye(s.n_units)])
            y = model.predict_masked(s, keep)
            y = y[:, t] if y.ndim == 2 else y
            out.append(Explanation.from_sample(s, y[0] - y[1:]))
        return out


class Exits(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        sys.exit(3)


class Interrupted(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        raise KeyboardInterrupt


class Crashes(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        raise RuntimeError("boom in the author's code")


class WrongShape(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        return [Explanation.from_sample(s, np.zeros(s.n_units + 1)) for s in samples]


class HalfIG(Explainer):
    """DeepLift-like: gradient x (x - baseline) at the input, halved: completeness does not hold."""

    def explain(self, model, samples, targets, *, seed=0):
        import torch

        out = []
        for s, t in zip(samples, targets):
            x, extra = model.collate([s])
            base = model.baseline_tensor(s).reshape(x.shape).to(x.dtype)
            xi = x.clone().requires_grad_(True)
            y = model.forward(xi, *extra)[0, t]
            (g,) = torch.autograd.grad(y, xi)
            with torch.no_grad():
                fb = float(model.forward(base, *extra)[0, t])
            scores = (0.5 * g * (x - base)).detach().reshape(-1).double().numpy()
            out.append(Explanation.from_sample(s, scores, base_value=fb, extras={"output_space": "logit"}))
        return out


def spec(name, impl="Good", **kw):
    kw.setdefault("requires", {Capability.PREDICT})
    return ExplainerSpec(name=name, title=name, description=f"{name}.", impl=f"{HERE}:{impl}", **kw)


@pytest.fixture(scope="module")
def tabular(load_model):
    return load_model("breast-cancer-mlp")


# -- 1. discovery survives a declaration that exits, hangs or raises ------------------------------------
FAULTY = {
    "ekfault-exit": ("import sys\nsys.exit(7)\n", "exit_plugin"),
    "ekfault-hang": ("import time\ntime.sleep(600)\n", "hang_plugin"),
    "ekfault-raise": ("raise RuntimeError('declaration blew up')\n", "raise_plugin"),
}


def test_plugins_list_and_explain_survive_declarations_that_exit_hang_or_raise(tmp_path):
    for dist, (src, name) in FAULTY.items():
        make_dist(tmp_path / dist, dist, {"declarations": src}, {name: f"{dist.replace('-', '_')}.declarations:SPEC"})
    roots = [str(tmp_path / d) for d in FAULTY]
    env = _env(tmp_path, PYTHONPATH=os.pathsep.join(roots + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    res = _cli("plugins", "list", env=env)
    assert res.returncode == 0, res.stderr
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines()[1:] if ln.strip()}
    assert "BROKEN" not in rows["saliency"] and "feature_ablation" in rows
    assert "BROKEN" in rows["exit_plugin"] and "exit" in rows["exit_plugin"] and "7" in rows["exit_plugin"]
    assert "BROKEN" in rows["hang_plugin"] and "within" in rows["hang_plugin"]
    assert "BROKEN" in rows["raise_plugin"] and "declaration blew up" in rows["raise_plugin"]
    out = tmp_path / "sal.png"
    res = _cli("explain", "--model", "sample:breast-cancer-mlp", "--method", "saliency", "--out", str(out),
               env=_env(tmp_path / "ekfault-exit"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.is_file() and out.stat().st_size > 0


def test_discovery_never_imports_third_party_declarations_in_the_host_and_caches(tmp_path, monkeypatch):
    from explainkit.plugins import discovery

    make_dist(tmp_path, "ekfault-two", {"declarations": HEADER + f"A = {_spec_src('two_a')}\n"
                                        + "raise SystemExit(5)\n"},
              {"two_a": "ekfault_two.declarations:A"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []
    real = discovery._isolated
    monkeypatch.setattr(discovery, "_isolated", lambda *a: calls.append(a) or real(*a))
    reg = Registry()
    entry = next(e for e in reg.all() if e.name == "two_a")
    assert entry.status == "broken" and "sys.exit(5)" in entry.reason
    assert "ekfault_two.declarations" not in sys.modules and "ekfault_two" not in sys.modules
    assert reg.get("saliency").ok and discovery.cache_path().is_file()
    n = len(calls)
    again = Registry()                     # warm: the cache answers, no subprocess
    assert len(calls) == n and next(e for e in again.all() if e.name == "two_a").reason == entry.reason
    (tmp_path / "ekfault_two" / "declarations.py").write_text(HEADER + f"A = {_spec_src('two_a')}\n")
    fixed = Registry()                     # the file changed: its stamp invalidates the cache entry
    assert len(calls) == n + 1 and fixed.get("two_a").ok and fixed.get("two_a").spec.name == "two_a"


def test_disable_and_block_still_skip_third_party_declarations(tmp_path, monkeypatch):
    make_dist(tmp_path, "ekfault-skip", {"declarations": "import sys\nsys.exit(9)\n"},
              {"skip_me": "ekfault_skip.declarations:SPEC"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("EXPLAINKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "skip_me" not in {e.name for e in Registry().all()}
    monkeypatch.delenv("EXPLAINKIT_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("EXPLAINKIT_BLOCK_PLUGINS", "ekfault-skip")
    names = {e.name for e in Registry().all()}
    assert "skip_me" not in names and "saliency" in names


# -- 2. sys.exit inside explain() is a PluginError; Ctrl-C still cancels ---------------------------------
def test_system_exit_in_explain_is_a_plugin_error_and_keyboard_interrupt_propagates(tabular):
    reg = registry_with(spec("exits", "Exits"), spec("interrupted", "Interrupted"), spec("good"))
    rows = [np.arange(30.0)]
    with pytest.raises(PluginError, match=r"exits.*sys\.exit\(3\)"):
        run_explainer("exits", tabular, rows, reg=reg)
    with pytest.raises(KeyboardInterrupt):
        run_explainer("interrupted", tabular, rows, reg=reg)
    assert len(run_explainer("good", tabular, rows, reg=reg)) == 1


# -- 3. one bad spec never breaks another in the same module ---------------------------------------------
def test_each_spec_of_a_module_is_validated_on_its_own(tmp_path, monkeypatch):
    bad_param = ", params=(Param('n', 'int', -1, min=0),)"
    src = HEADER + f"GOOD = {_spec_src('mod_good')}\nBAD = {_spec_src('mod_bad', bad_param)}\n"
    make_dist(tmp_path, "ekfault-pair", {"declarations": src},
              {"mod_good": "ekfault_pair.declarations:GOOD", "mod_bad": "ekfault_pair.declarations:BAD"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for reg in (Registry(),                                   # through the isolated discovery
                Registry(entry_points=[EntryPoint(n, f"ekfault_pair.declarations:{a}", "explainkit.explainers")
                                       for n, a in (("mod_good", "GOOD"), ("mod_bad", "BAD"))])):   # in-process
        status = {e.name: e for e in reg.all()}
        assert status["mod_good"].ok, status["mod_good"].reason
        assert status["mod_bad"].status == "broken" and "default of 'n'" in status["mod_bad"].reason
        assert "declarations.py:3" in status["mod_bad"].reason
    with pytest.raises(PluginError, match="default of 'n'"):       # built directly, it still raises
        spec("direct_bad", params=(explainkit.Param("n", "int", -1, min=0),))


# -- 4. NaN/Inf caused by the input is an InputError, not a broken plugin -------------------------------
def test_an_extreme_input_is_an_input_error_and_the_explainer_stays_usable(tabular):
    good_row = np.asarray(tabular.standardize["mean"]) if tabular.standardize else np.zeros(30)
    with pytest.raises(InputError, match="sample contains NaN or Inf"):
        explainkit.explain(tabular, np.full(30, 1e308), "integrated_gradients", n_steps=8)
    rows = [good_row, np.full(30, 1e37)]                  # finite in float32, but the output overflows
    try:
        explainkit.explain(tabular, rows, "input_x_gradient")
    except InputError as e:
        assert "Sample #1" in str(e)                      # names the sample that caused it
    exp = explainkit.explain(tabular, good_row, "integrated_gradients", n_steps=8)
    assert np.isfinite(exp.scores).all()
    assert default_registry().get("integrated_gradients").ok


def test_broken_is_kept_for_the_plugins_own_faults(tabular):
    reg = registry_with(spec("shape", "WrongShape"), spec("crash", "Crashes"))
    rows = [np.arange(30.0)]
    with pytest.raises(PluginError, match="invalid output"):
        run_explainer("shape", tabular, rows, reg=reg)
    assert not reg.entries["shape"].ok                         # wrong shape: broken at once
    with pytest.raises(PluginError, match="boom") as first:
        run_explainer("crash", tabular, rows, reg=reg)
    assert reg.entries["crash"].ok and "now marked broken" not in str(first.value)
    with pytest.raises(PluginError, match="now marked broken"):
        run_explainer("crash", tabular, rows, reg=reg)         # raising on valid input again: broken
    assert not reg.entries["crash"].ok


# -- 5. errors for authors name their file, the value and the choices -----------------------------------
def test_enum_and_requirement_errors_name_the_authors_file_value_and_choices(tmp_path, monkeypatch):
    make_dist(tmp_path, "ekfault-enum", {
        "picture": HEADER + "\n\nSPEC = ExplainerSpec(name='pic', title='p', description='d.', impl='a:B',\n"
                            "    modalities={Modality.PICTURE})\n",
        "needs": HEADER + f"\nSPEC = {_spec_src('needs_gpu').replace('Capability.PREDICT', repr('gpu'))}\n"},
        {"pic": "ekfault_enum.picture:SPEC", "needs_gpu": "ekfault_enum.needs:SPEC"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    status = {e.name: e.reason for e in Registry().all()}
    pic = status["pic"]
    assert str(tmp_path / "ekfault_enum" / "picture.py") + ":5" in pic, pic
    assert "PICTURE" in pic and "Modality.IMAGE" in pic and "Modality.TABULAR" in pic
    gpu = status["needs_gpu"]
    assert str(tmp_path / "ekfault_enum" / "needs.py") + ":3" in gpu, gpu
    assert "'gpu'" in gpu and "gradients" in gpu and "predict" in gpu


def test_debug_keeps_the_plugins_original_exception_as_cause(tabular, monkeypatch):
    rows = [np.arange(30.0)]
    monkeypatch.delenv(ENV_DEBUG, raising=False)
    with pytest.raises(PluginError) as plain:
        run_explainer("crash", tabular, rows, reg=registry_with(spec("crash", "Crashes")))
    assert plain.value.__cause__ is None and "EXPLAINKIT_DEBUG=1" in str(plain.value)
    assert "test_plugin_containment.py" in str(plain.value)       # the author's file, not explainkit's
    monkeypatch.setenv(ENV_DEBUG, "1")
    with pytest.raises(PluginError) as debug:
        run_explainer("crash", tabular, rows, reg=registry_with(spec("crash", "Crashes")))
    cause = debug.value.__cause__
    assert isinstance(cause, RuntimeError) and "boom" in str(cause)
    import traceback
    frames = traceback.extract_tb(cause.__traceback__)
    assert any(f.name == "explain" and f.filename.endswith("test_plugin_containment.py") for f in frames)


# -- 6. plugins check: declaration import cost, and completeness for additive specs ---------------------
def test_check_fails_a_declaration_that_imports_a_heavy_stack(tmp_path, monkeypatch):
    make_dist(tmp_path, "ekfault-heavy", {"declarations": "import torch  # noqa\n" + HEADER
                                          + f"SPEC = {_spec_src('heavy_decl')}\n"},
              {"heavy_decl": "ekfault_heavy.declarations:SPEC"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    report = check_explainer("heavy_decl", registry=Registry(), models=["breast-cancer-mlp"], quick=True)
    row = next(r for r in report.rows if str(r.check) == "declaration import")
    assert row.status is Status.FAIL and "torch" in row.detail and not report.ok
    good = check_explainer("saliency", models=["breast-cancer-mlp"], quick=True)
    row = next(r for r in good.rows if str(r.check) == "declaration import")
    assert row.status is Status.PASS and "no heavy imports" in row.detail


def test_completeness_is_checked_for_additive_explainers(tmp_path):
    half = spec("half_deeplift", "HalfIG", requires={Capability.GRADIENTS}, additive=True)
    bad = check_explainer(half, models=["breast-cancer-mlp", "diabetes-mlp"])
    rows = [r for r in bad.rows if str(r.check) == "completeness"]
    assert rows and all(r.status is Status.FAIL for r in rows) and not bad.ok, bad
    assert default_registry().get("integrated_gradients").spec.additive
    ig = check_explainer("integrated_gradients", models=["breast-cancer-mlp", "diabetes-mlp"])
    rows = [r for r in ig.rows if str(r.check) == "completeness"]
    assert len(rows) == 2 and all(r.status is Status.PASS for r in rows), ig


# -- 7. the dashboard after a plugin fails --------------------------------------------------------------
def test_dashboard_menu_last_error_system_exit_and_target(tabular, load_data):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from explainkit.views.state import JobState

    reg = registry_with(spec("good"), spec("shape", "WrongShape"), spec("exits", "Exits"))
    d = explainkit.Dashboard(tabular, load_data("breast-cancer-mlp").subset(range(8)), registry=reg,
                             methods=["good", "shape", "exits"], quality=False)
    assert d.wait(60) and d.last_error is None
    d.method = "shape"
    assert d.wait(60) and d.last_error is not None
    menu = [v for _, v in d.e.method.options]
    assert sorted(menu) == sorted(s.name for s in reg.applicable(tabular)) and "shape" not in menu
    assert "shape" not in [v for _, v in d.c.methods.options]          # the compare menu agrees too
    with pytest.raises(UnknownNameError, match="shape"):
        d.compare(["good", "shape"])
    assert d.method == "good"              # the broken one left the menu; the error stays on show
    assert d.error.layout.display != "none"
    d.explain(force=True)
    assert d.wait(60) and d.last_error is None and d.last_explanation.method == "good"
    d.select(1)                            # a fresh (uncached) success clears it too
    assert d.wait(60) and d.last_error is None
    d.method = "exits"
    assert d.wait(60)
    assert d.job.state is JobState.FAILED and "state=failed" in d.status.value
    assert isinstance(d.last_error, PluginError) and "sys.exit" in str(d.last_error)
    with pytest.raises(TargetError, match="99") as bad:
        d.target = 99
    assert isinstance(bad.value, ExplainKitError) and "0.." in str(bad.value)


@pytest.mark.parametrize("bad", ["n steps", "n-steps", "1st", "_hidden", "class", "ünï", "a.b", "", 3])
def test_parameter_names_must_be_plain_identifiers(bad):
    from explainkit import Param
    from explainkit.errors import PluginError

    with pytest.raises(PluginError, match="plain Python identifier"):
        Param(bad, "int", 1)
    assert Param("n_steps2", "int", 1).name == "n_steps2"
