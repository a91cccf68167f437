"""A failing explainer fails only its own entries; --param; prediction bounded by the selection; clear output
and Dask-address errors. Throwaway explainers live on a private Registry (or stand in for the process-wide one)."""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

import explainkit
from explainkit import Capability, Explainer, ExplainerSpec
from explainkit.cli.main import main
from explainkit.errors import DataError, ExplainKitError, ParameterError
from explainkit.plugins.conformance import registry_with

HERE = __name__
FAIL_ON: set = set()        # sample indices RaisesOn refuses (tests set it)


class AlwaysRaise(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        raise RuntimeError("boom on every input")


class RaisesOn(Explainer):
    """A correct leave-one-out explainer, except on the samples in FAIL_ON."""

    def explain(self, model, samples, targets, *, seed=0):
        bad = [s.index for s in samples if s.index in FAIL_ON]
        if bad:
            raise ValueError(f"cannot handle sample {bad[0]}")
        out = []
        for s, t in zip(samples, targets):
            keep = np.vstack([np.ones((1, s.n_units)), 1 - np.eye(s.n_units)])
            y = model.predict_masked(s, keep)
            y = y[:, t] if y.ndim == 2 else y
            scores = (y[0] - y[1:]).reshape(s.image.shape[:2]) if s.image is not None else y[0] - y[1:]
            out.append(explainkit.Explanation.from_sample(s, scores))
        return out


def _spec(impl, name):
    return ExplainerSpec(name=name, title=name, description="A test explainer.", impl=f"{HERE}:{impl}",
                         requires={Capability.PREDICT})


@pytest.fixture
def reg():
    from explainkit.plugins.registry import registry
    FAIL_ON.clear()
    builtin = registry()
    r = registry_with(_spec("AlwaysRaise", "always_raise"), _spec("RaisesOn", "raises_on"))
    for name in ("saliency", "occlusion"):
        e = builtin.get(name)
        r.register(e.spec, distribution=e.distribution, version=e.version)
    yield r
    FAIL_ON.clear()


@pytest.fixture
def as_default(reg, monkeypatch):
    """The private registry stands in for the process-wide one (what the CLI uses)."""
    import explainkit.plugins.registry as registry_module
    monkeypatch.setattr(registry_module, "_default", reg)
    return reg


def test_an_always_failing_explainer_fails_only_its_entries(reg, mnist_cnn, load_data, tmp_path):
    out = tmp_path / "r.html"
    rep = explainkit.report(mnist_cnn, load_data("mnist-cnn"), methods=["saliency", "always_raise"], limit=4,
                            out=out, progress=False, registry=reg)
    idx = json.loads(out.with_suffix(".json").read_text())
    assert idx == rep.index
    assert idx["counts"]["failed"] == 4 and idx["counts"]["computed"] == 4
    assert set(idx["failures"]) == {"always_raise"}
    assert sorted(idx["failures"]["always_raise"]) == sorted(str(i) for i in idx["indices"])
    assert all("boom on every input" in why or "broken" in why for why in idx["failures"]["always_raise"].values())
    good, bad = rep.attributions("saliency"), rep.attributions("always_raise")
    assert good.shape == bad.shape == (4, 28, 28)
    assert np.isfinite(good).all() and np.isnan(bad).all()
    page = out.read_text(encoding="utf-8")
    assert page.count('<div class="ek-failed"') == 4 and page.count(">failed: ") == 4
    assert "boom on every input" in page
    assert [e is None for e in rep.explanations("always_raise")] == [True] * 4
    again = explainkit.report(mnist_cnn, load_data("mnist-cnn"), methods=["saliency", "always_raise"], limit=4,
                              out=out, progress=False, registry=reg)
    c = again.index["counts"]
    assert not c.get("up_to_date") and c["cached"] == 4 and c["computed"] == 0 and c["failed"] == 4


def test_one_bad_sample_fails_only_its_own_entry(reg, mnist_cnn, load_data, tmp_path):
    FAIL_ON.add(3)
    rep = explainkit.report(mnist_cnn, load_data("mnist-cnn"), methods=["saliency", "raises_on"], limit=6,
                            out=tmp_path / "r.html", progress=False, registry=reg)   # one chunk of 6, retried
    assert rep.index["failures"] == {"raises_on": {"3": rep.index["failures"]["raises_on"]["3"]}}
    assert "cannot handle sample 3" in rep.index["failures"]["raises_on"]["3"]
    assert rep.index["counts"]["failed"] == 1 and rep.index["counts"]["computed"] == 11
    scores = rep.attributions("raises_on")
    assert np.isnan(scores[3]).all()
    assert np.isfinite(np.delete(scores, 3, axis=0)).all()
    assert reg.get("raises_on").ok                  # one bad input does not mark the explainer broken


def test_a_rerun_computes_only_what_failed(reg, mnist_cnn, load_data, tmp_path):
    kw = dict(methods=["saliency", "raises_on"], limit=5, out=tmp_path / "r.html", progress=False, registry=reg)
    FAIL_ON.update({1, 4})
    first = explainkit.report(mnist_cnn, load_data("mnist-cnn"), **kw)
    assert set(first.index["failures"]["raises_on"]) == {"1", "4"}
    FAIL_ON.clear()
    second = explainkit.report(mnist_cnn, load_data("mnist-cnn"), **kw)
    assert second.index["failures"] == {}
    c = second.index["counts"]
    assert (c["computed"], c["cached"], c.get("failed", 0)) == (2, 8, 0)
    assert np.isfinite(second.attributions("raises_on")).all()
    third = explainkit.report(mnist_cnn, load_data("mnist-cnn"), **kw)
    assert third.index["counts"]["up_to_date"] is True


def test_evaluate_completes_and_names_the_failed_samples(reg, breast_cancer, load_data):
    FAIL_ON.add(1)
    ev = explainkit.evaluate(breast_cancer, load_data("breast-cancer-mlp"), ["raises_on", "always_raise"], limit=3,
                             metrics=("deletion",), registry=reg)
    assert set(ev.failures["always_raise"]) == {"0", "1", "2"}
    assert set(ev.failures["raises_on"]) == {"1"} and "cannot handle sample 1" in ev.failures["raises_on"]["1"]
    assert len(ev.qualities["raises_on"]) == 2 and ev.qualities["always_raise"] == []
    assert ev.summary()["raises_on"]["n"] == 2


def test_cli_exit_codes_and_allow_failures(as_default, tmp_path, capsys):
    base = ["report", "--model", "sample:mnist-cnn", "--methods", "saliency,always_raise", "--limit", "2"]
    assert main([*base, "--out", str(tmp_path / "a.html")]) == 3
    err = capsys.readouterr().err
    assert "always_raise failed on 2 sample(s)" in err and "--allow-failures" in err
    idx = json.loads((tmp_path / "a.json").read_text())
    assert idx["counts"]["failed"] == 2 and (tmp_path / "a.html").is_file() and (tmp_path / "a.npz").is_file()
    assert main([*base, "--out", str(tmp_path / "b.html"), "--allow-failures"]) == 0
    ev = ["evaluate", "--model", "sample:breast-cancer-mlp", "--methods", "occlusion,always_raise", "--limit", "2"]
    assert main([*ev, "--out", str(tmp_path / "e.json")]) == 3
    assert set(json.loads((tmp_path / "e.json").read_text())["failures"]["always_raise"]) == {"0", "1"}
    assert main([*ev, "--allow-failures"]) == 0


def test_param_flag_is_coerced_per_method_and_unknowns_are_one_error(as_default, tmp_path, capsys):
    from explainkit.cli.specs import parse_method_params
    runs = parse_method_params(["occlusion.window=4", "occlusion.stride=2"], [("occlusion", {}), ("saliency", {})])
    assert runs == [("occlusion", {"window": 4, "stride": 2}), ("saliency", {})]
    with pytest.raises(ParameterError, match="not in --methods"):
        parse_method_params(["lime.n_samples=3"], [("occlusion", {})])
    with pytest.raises(ParameterError, match="no parameter"):
        parse_method_params(["occlusion.nope=3"], [("occlusion", {})])
    with pytest.raises(ParameterError, match="METHOD.KEY=VALUE"):
        parse_method_params(["window=3"], [("occlusion", {})])
    out = tmp_path / "p.html"
    args = ["report", "--model", "sample:breast-cancer-mlp", "--methods", "occlusion", "--limit", "2"]
    assert main([*args, "--param", "occlusion.window=2", "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["methods"][0]["params"]["window"] == 2
    capsys.readouterr()
    assert main([*args, "--param", "occlusion.window=lots", "--out", str(out)]) == 2
    assert main([*args, "--param", "lime.n_samples=300", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "must be int" in err and "not in --methods" in err and "Traceback" not in err
    assert main(["evaluate", "--model", "sample:breast-cancer-mlp", "--methods", "occlusion", "--limit", "2",
                 "--param", "occlusion.bogus=1"]) == 2


def _count_rows(model, monkeypatch):
    seen = []
    real = type(model).predict

    def counting(self, inputs, *a, **k):
        seen.append(len(inputs))
        return real(self, inputs, *a, **k)
    monkeypatch.setattr(type(model), "predict", counting)
    return seen


@pytest.mark.parametrize("select", ["all", [5, 7, 9]])
def test_limit_and_select_apply_before_prediction(select, reg, mnist_cnn, load_data, tmp_path, monkeypatch):
    data = load_data("mnist-cnn")
    seen = _count_rows(mnist_cnn, monkeypatch)
    rep = explainkit.report(mnist_cnn, data, methods=["saliency"], select=select, limit=3, out=tmp_path / "r.html",
                            progress=False, registry=reg)
    assert rep.index["counts"]["samples"] == 3
    assert sum(seen) < 3 * 10 < len(data)           # the chosen rows (and the explainer's own calls) only


def test_misclassified_streams_and_stops_at_the_limit(reg, mnist_cnn, load_data, tmp_path, monkeypatch):
    from explainkit.reports.report import PREDICT_BATCH
    data = load_data("mnist-cnn")
    probs = np.concatenate([mnist_cnn.predict([data.raws[j] for j in range(i, min(i + 256, len(data)))])
                            for i in range(0, len(data), 256)])
    wrong = np.flatnonzero(probs.argmax(axis=1) != data.labels)
    assert len(wrong) >= 2
    seen = _count_rows(mnist_cnn, monkeypatch)
    rep = explainkit.report(mnist_cnn, data, methods=["saliency"], select="misclassified", limit=2,
                            out=tmp_path / "r.html", progress=False, registry=reg)
    assert rep.index["indices"] == [int(i) for i in wrong[:2]]
    batches_needed = (int(wrong[1]) // PREDICT_BATCH + 1) * PREDICT_BATCH
    assert sum(seen) <= min(batches_needed, len(data)) + 20
    got = np.load(rep.npz_path)["outputs"]
    np.testing.assert_allclose(got, probs[wrong[:2]], rtol=1e-5, atol=1e-6)


def test_cli_refuses_out_of_range_select_before_any_work(monkeypatch, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "--model", "sample:mnist-cnn", "--select", "998-1005", "--out", str(out)]) == 2
    assert "goes past the data's 1000 samples" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_an_unwritable_out_is_one_error_before_any_work(monkeypatch, tmp_path, capsys, mnist_cnn):
    import os

    import explainkit.cli.report as cli_report

    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(cli_report, "resolve_model", lambda spec: pytest.fail("work started before --out checked"))
    targets = [tmp_path / "file" / "r.html"]
    if os.geteuid() != 0:                    # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        targets.append(ro / "r.html")
    for target in targets:
        assert main(["report", "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert "Cannot write the output" in err and "Traceback" not in err
        assert main(["evaluate", "--out", str(target.with_suffix(".json"))]) == 2
        assert "Cannot write the output" in capsys.readouterr().err
    with pytest.raises(DataError, match="Cannot write the output"):
        explainkit.report(mnist_cnn, None, methods=["saliency"], out=targets[0], progress=False)


def test_an_unreachable_dask_address_is_one_clear_error(reg, breast_cancer, tmp_path):
    pytest.importorskip("distributed")
    from explainkit.reports.executors import CONNECT_TIMEOUT_S
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                # closed once the block ends: nothing listens there
    t = time.monotonic()
    with pytest.raises(ExplainKitError, match=f"Cannot reach the Dask scheduler .* within {CONNECT_TIMEOUT_S} s"):
        explainkit.report(breast_cancer, None, methods=["occlusion"], limit=1, executor="dask",
                          address=f"tcp://127.0.0.1:{port}", out=tmp_path / "r.html", progress=False, registry=reg)
    assert time.monotonic() - t < 3 * CONNECT_TIMEOUT_S        # an upper bound, not a timing
