"""The layered layout keeps the public API: documented names and import paths, old caches, a cheap import."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import explainkit

ROOT = Path(__file__).resolve().parents[1]
OLD_CACHE = Path(__file__).with_name("data") / "report_cache_ca60e77"   # written by explainkit before the layout


def test_every_public_name_resolves_to_its_layer_module():
    for name in explainkit.__all__:
        value = getattr(explainkit, name)
        assert value is not None, name
    assert explainkit.Dashboard.__module__ == "explainkit.views.dashboard"
    assert explainkit.report.__module__ == "explainkit.reports.report"
    assert explainkit.explain.__module__ == "explainkit.plugins.api"
    assert explainkit.wrap.__module__ == "explainkit.models.wrap"


@pytest.mark.parametrize("path, names", [
    ("explainkit.registry", ["registry", "Registry", "run_explainer", "ExplainerSpec", "Param", "Explainer"]),
    ("explainkit.testing", ["check_explainer", "registry_with", "empty_registry", "CheckReport"]),
    ("explainkit.datasets", ["sample_data", "Dataset", "load_mnist", "load_sst2", "from_texts", "load_path"]),
    ("explainkit.quality", ["assess", "agreement", "evaluate", "Quality"]),
    ("explainkit.errors", ["ExplainKitError", "ParameterError", "PluginError"]),
])
def test_documented_module_paths_still_import(path, names):
    mod = importlib.import_module(path)
    for n in names:
        assert hasattr(mod, n), f"{path}.{n}"


def test_registry_module_and_function_are_the_same_thing():
    import explainkit.registry as reg_module
    from explainkit.registry import registry

    assert explainkit.registry() is registry() is reg_module()
    assert "saliency" in [e.name for e in registry().all()]


def test_import_explainkit_is_cheap_and_torch_free():
    code = ("import sys, time; t = time.perf_counter(); import explainkit; dt = time.perf_counter() - t; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules; print(dt)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(3)]
    assert min(times) < 0.1, times


def test_core_refuses_cli_spec_strings_with_the_fix(mnist_cnn):
    from explainkit.errors import CheckpointError, ParameterError

    with pytest.raises(ParameterError, match="load_sample"):
        explainkit.report("sample:mnist-cnn", None, methods=["saliency"])
    with pytest.raises(ParameterError, match="Dataset"):
        explainkit.report(mnist_cnn, "sample", methods=["saliency"])
    with pytest.raises(CheckpointError, match=r"load_sample\('mnist-cnn'\)"):
        explainkit.load("sample:mnist-cnn")


def test_cli_specs_become_objects(mnist_cnn):
    from explainkit.cli.specs import parse_methods, parse_selection, resolve_data, resolve_model

    assert parse_selection("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_selection("Misclassified") == "misclassified"
    assert parse_methods("saliency,occlusion:window=4") == [("saliency", {}), ("occlusion", {"window": "4"})]
    model = resolve_model("sample:mnist-cnn")
    assert model.weights_hash() == mnist_cnn.weights_hash()
    assert len(resolve_data("sample", model)) == 1000


def test_a_report_cache_written_before_the_layout_is_read_back(tmp_path, mnist_cnn, load_data):
    cache = tmp_path / "cache"
    shutil.copytree(OLD_CACHE, cache)
    data = load_data("mnist-cnn")
    rep = explainkit.report(mnist_cnn, data, methods=["saliency"], select=[0, 1], out=tmp_path / "r.html",
                            cache_dir=cache, progress=False)
    counts = rep.index["counts"]
    assert (counts["computed"], counts["cached"], counts["corrupt_recomputed"]) == (0, 2, 0), counts
    old = np.stack([e.scores for e in rep.explanations("saliency")])
    fresh = np.stack([explainkit.explain(mnist_cnn, data[i][0], "saliency").scores for i in (0, 1)])
    np.testing.assert_allclose(old, fresh, rtol=1e-5, atol=1e-7)


def test_no_module_is_longer_than_about_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "explainkit").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 460}
    assert not long, long
