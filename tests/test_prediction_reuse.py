"""The runner takes the input's prediction from a perturbation plugin's own unmasked copy.

A plugin that reads a predicted target after its masked pass (occlusion, the example's feature ablation)
costs one pass, not two; one that reads it first gets one prediction pass of its own, as before. Either
way the stamped target and probabilities are the model's prediction (to float rounding), and an input
the model predicts NaN for is the input's fault, not the plugin's.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

import explainkit
from explainkit import Capability, Explainer, ExplainerSpec, Explanation
from explainkit.errors import PluginError, ValueRangeError
from explainkit.plugins.conformance import registry_with
from explainkit.plugins.runner import run_explainer


@contextlib.contextmanager
def counted(model):
    """Rows of every forward call of the model's module, in order."""
    calls = []
    handle = model.module.register_forward_hook(lambda m, args, out: calls.append(int(args[0].shape[0])))
    try:
        yield calls
    finally:
        handle.remove()


@contextlib.contextmanager
def predictions_counted(model):
    """Samples per ``model.predict`` call while the context lasts."""
    calls, real = [], model.predict

    def predict(items, *a, **kw):
        calls.append(len(items))
        return real(items, *a, **kw)
    model.predict = predict
    try:
        yield calls
    finally:
        del model.predict


@pytest.mark.parametrize("name, method", [("sst2-transformer", "occlusion"), ("sst2-lstm", "feature_ablation"),
                                          ("mnist-cnn", "feature_ablation"), ("diabetes-mlp", "occlusion")])
def test_a_perturbation_job_is_one_pass_and_stamps_the_models_prediction(load_model, name, method):
    model = load_model(name)
    from explainkit.data import datasets
    samples = [model.prepare(x) for x, _ in datasets.sample_data(name)[:3]]
    want = model.predict(samples)
    params = {"window": 10} if method == "occlusion" and name == "mnist-cnn" else {}
    with predictions_counted(model) as predicted:
        out = explainkit.explain(model, samples, method, **params)
    assert predicted == [], f"{method} on {name}: the runner predicted {predicted} samples separately"
    for e, p in zip(out, want):
        assert e.timings["predict_s"] == 0.0
        if model.task is explainkit.Task.CLASSIFICATION:
            assert e.target == int(np.argmax(p)) == e.prediction
            np.testing.assert_allclose(e.probabilities, p, atol=1e-6)
            assert abs(e.probabilities.sum() - 1) < 1e-9
        else:
            assert abs(e.prediction - float(p)) < 1e-4 * max(1.0, abs(float(p)))
    # with the targets given (no prediction needed): the same attributions
    given = explainkit.explain(model, samples, method, target=[e.target or 0 for e in out], **params)
    for a, b in zip(out, given):
        np.testing.assert_array_equal(a.scores, b.scores)


class ReadsFirst(Explainer):
    """Reads every target before touching the model: the runner predicts once, in one pass."""

    def explain(self, model, samples, targets, *, seed=0):
        picked = [int(t) for t in targets]
        keep = [np.ones((1, s.n_units), bool) for s in samples]
        outs = model.predict_masked_many(samples, keep)
        return [Explanation.from_sample(s, np.full(s.n_units, float(o[0, t])))
                for s, o, t in zip(samples, outs, picked)]


class Swallows(Explainer):
    """Catches everything around its target read: a NaN prediction must still reach the user."""

    def explain(self, model, samples, targets, *, seed=0):
        try:
            list(targets)
        except Exception:  # noqa: BLE001 - the point of the test
            pass
        return [Explanation.from_sample(s, np.zeros(s.n_units)) for s in samples]


class Crashes(Explainer):
    def explain(self, model, samples, targets, *, seed=0):
        raise RuntimeError("boom")


def _spec(name, impl):
    return ExplainerSpec(name=name, title=name, description="d.", impl=f"{__name__}:{impl}",
                         requires={Capability.PREDICT})


def test_a_plugin_that_reads_targets_first_gets_one_prediction_pass(load_model):
    model = load_model("sst2-transformer")
    from explainkit.data import datasets
    samples = [model.prepare(x) for x, _ in datasets.sample_data("sst2-transformer")[:4]]
    reg = registry_with(_spec("reads_first", "ReadsFirst"))
    with counted(model) as calls:
        out = run_explainer("reads_first", model, samples, reg=reg)
    assert calls == [4, 4]                       # the runner's one prediction pass, then the plugin's
    want = model.predict(samples)
    for e, p in zip(out, want):
        assert e.target == int(np.argmax(p))
        np.testing.assert_allclose(e.scores, p[e.target], atol=1e-6)
        assert e.timings["predict_s"] > 0


def test_a_nan_prediction_is_the_inputs_fault_even_when_found_late(load_model):
    """Finite in float32 once standardised, but the regressor's output overflows. The plugin never reads a
    target (regression), swallows nothing or crashes: either way a ValueRangeError naming the input, and
    the plugin is not struck."""
    model = load_model("diabetes-mlp")
    row = np.full(10, 1e36)
    assert not np.isfinite(model.predict([row])).all()
    reg = registry_with(_spec("swallows", "Swallows"), _spec("crashes", "Crashes"))
    with pytest.raises(ValueRangeError, match="makes the model predict NaN or Inf"):
        run_explainer("swallows", model, [row], reg=reg)
    for _ in range(2):
        with pytest.raises(ValueRangeError, match="makes the model predict NaN or Inf"):
            run_explainer("crashes", model, [row], reg=reg)
    assert reg.entries["crashes"].ok and reg.entries["swallows"].ok
    with pytest.raises(PluginError, match="boom"):             # on a good input the crash is the plugin's
        run_explainer("crashes", model, [np.zeros(10)], reg=reg)
