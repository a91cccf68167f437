"""Standard errors of the stochastic explainers (Kernel SHAP, LIME, SmoothGrad, Gradient SHAP), Kernel SHAP's
convergence and stopping rule, and the views and badge that read ``exp.errors``; on the shipped sample models."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import explainkit
from explainkit.errors import DataError

torch = pytest.importorskip("torch")
pytest.importorskip("shap")
pytest.importorskip("lime")


def _target(model, raw) -> int:
    return int(np.argmax(model.predict([raw])[0])) if model.task is explainkit.Task.CLASSIFICATION else 0


def _f(model, raw, target) -> float:
    out = np.asarray(model.predict([raw])[0], dtype=np.float64)
    return float(out[target]) if model.task is explainkit.Task.CLASSIFICATION else float(out.reshape(-1)[0])


def _exact_shapley(model, raw, target) -> np.ndarray:
    """Shapley values of the masking game by the formula, over all 2^M coalitions (M = 10 here)."""
    s = model.prepare(raw)
    m = s.n_units
    z = np.asarray(list(itertools.product((0, 1), repeat=m)), dtype=np.float32)
    out = np.asarray(model.predict_masked(s, z), dtype=np.float64)
    v = dict(zip(map(tuple, z.astype(int)), out[:, target] if out.ndim == 2 else out.reshape(-1)))
    phi = np.zeros(m)
    for coalition, value in v.items():
        k = sum(coalition)
        for i in range(m):
            if not coalition[i]:
                w = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
                phi[i] += w * (v[coalition[:i] + (1,) + coalition[i + 1:]] - value)
    return phi


@pytest.fixture(scope="module")
def diabetes_case(load_model, load_data):
    model = load_model("diabetes-mlp")
    raw = load_data("diabetes-mlp")[5][0]
    return model, raw, _exact_shapley(model, raw, 0)


def test_kernel_shap_error_shrinks_with_budget_and_errors_are_honest(diabetes_case):
    model, raw, phi = diabetes_case
    scale = np.abs(phi).max()
    median = {}
    for budget in (60, 200, 800):         # all under 2^10 - 2: the sampled path, not enumeration
        runs = [explainkit.explain(model, raw, "kernel_shap", n_samples=budget, seed=s) for s in range(20)]
        assert not any(e.extras["exact"] for e in runs)
        median[budget] = np.median([np.abs(e.scores - phi).max() / scale for e in runs])
        if budget == 200:                  # the reported errors against the spread over 20 seeds
            values, errors = np.array([e.scores for e in runs]), np.array([e.errors for e in runs])
            ratio = errors.mean(axis=0) / values.std(axis=0, ddof=1)
            assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
            assert np.mean(np.abs(values - phi) <= 3 * errors) >= 0.97
    assert median[60] > median[200] > median[800], median
    assert median[800] < 0.01


def test_surrogate_control_variate_cuts_the_error_and_keeps_efficiency(diabetes_case):
    """The default (regression-adjusted) estimator against the same design without its surrogate."""
    from explainkit_builtins import kernel_estimator, kernel_surrogate
    from explainkit_builtins.shap_plugin import _Game

    model, raw, phi = diabetes_case
    s = model.prepare(raw)
    game = _Game(model, s, 0)

    def value(z):
        return game(np.asarray(z, dtype=np.float32))

    err = {}
    for adjust in (False, True):
        runs = [kernel_estimator.estimate(value, 10, 160, seed=k, adjust=adjust) for k in range(20)]
        err[adjust] = np.median([np.abs(e.values - phi).max() for e in runs])
        for e in runs:
            assert not e.exact and abs(e.values.sum() - (e.full - e.base)) < 1e-6 * abs(e.full - e.base) + 1e-9
    assert err[True] < 0.5 * err[False], err
    assert err[True] / np.abs(phi).max() < 0.01                  # 1% at 160 evaluations (KernelExplainer: 1,024)
    # the single-index powers' Shapley values, in closed form, against the formula over all 2^M coalitions
    b = phi / np.abs(phi).sum()
    z = np.asarray(list(itertools.product((0, 1), repeat=10)), dtype=np.float64)
    size = z.sum(axis=1).astype(int)
    w = np.array([math.factorial(k) * math.factorial(10 - k - 1) / math.factorial(10) for k in range(10)])
    got = kernel_surrogate.power_shapley(b, (3, 5, 7))
    for r, d in enumerate((3, 5, 7)):
        v = ((2 * z - 1) @ b) ** d
        out = [np.nonzero(z[:, i] == 0)[0] for i in range(10)]            # row r is r in binary, unit 0 first
        want = [np.sum(w[size[o]] * (v[o + (1 << (9 - i))] - v[o])) for i, o in enumerate(out)]
        np.testing.assert_allclose(got[r], want, rtol=1e-9, atol=1e-12)


def test_kernel_shap_exact_path_has_zero_errors(diabetes_case):
    model, raw, phi = diabetes_case
    e = explainkit.explain(model, raw, "kernel_shap", seed=4)
    assert e.extras["exact"] and e.extras["n_evaluations"] == 2 ** 10
    np.testing.assert_allclose(e.scores, phi, rtol=1e-6, atol=1e-6 * np.abs(phi).max())
    np.testing.assert_array_equal(e.errors, np.zeros(10))


def test_kernel_shap_30_features_efficiency_seed_and_calibration(breast_cancer, load_data):
    raw = load_data("breast-cancer-mlp")[3][0]
    t = _target(breast_cancer, raw)
    ref = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=100_000, seed=99)
    errs = []
    for budget in (500, 8000):
        e = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=budget, seed=1)
        assert e.extras["n_evaluations"] == budget + 2 and e.errors.shape == (30,)
        assert abs(e.base_value + e.scores.sum() - _f(breast_cancer, raw, t)) < 1e-6       # efficiency
        within = np.abs(e.scores - ref.scores) <= 3 * np.hypot(e.errors, ref.errors) + 1e-12
        assert within.mean() >= 0.9
        errs.append(np.abs(e.scores - ref.scores).max())
    assert errs[1] < errs[0] / 2
    a = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=600, seed=5)
    b = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=600, seed=5)
    c = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=600, seed=6)
    assert a.scores.tobytes() == b.scores.tobytes() and a.errors.tobytes() == b.errors.tobytes()
    assert not np.array_equal(a.scores, c.scores)
    lev = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=600, estimator="leverage")
    assert abs(lev.base_value + lev.scores.sum() - _f(breast_cancer, raw, t)) < 1e-6
    assert np.abs(lev.scores - ref.scores).max() < 5 * lev.errors.max()


def test_kernel_shap_tolerance_stops_early_and_meets_it(breast_cancer, load_data):
    raw = load_data("breast-cancer-mlp")[3][0]
    cap = 200_000
    e = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=cap, tolerance=0.003, seed=2)
    assert e.extras["max_error"] == e.errors.max() <= 0.003
    assert e.extras["rounds"] > 1 and e.extras["n_evaluations"] < cap / 4
    looser = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=cap, tolerance=0.01, seed=2)
    assert looser.extras["n_evaluations"] < e.extras["n_evaluations"] and looser.errors.max() <= 0.01


def test_kernel_shap_images_and_text_carry_errors(mnist_cnn, sst2_lstm, load_data):
    raw = load_data("mnist-cnn")[0][0]
    e = explainkit.explain(mnist_cnn, raw, "kernel_shap", patch_size=7, n_samples=300)
    seg = e.extras["segments"]
    assert e.errors.shape == e.scores.shape == (28, 28)
    np.testing.assert_array_equal(e.errors, e.extras["unit_errors"][seg])
    assert np.all(e.extras["unit_errors"] > 0)
    text = "a gripping , beautifully acted film that never lets up , with a ending that is far too long"
    t = explainkit.explain(sst2_lstm, text, "kernel_shap", n_samples=400)
    assert not t.extras["exact"] and t.errors.shape == t.scores.shape and np.isfinite(t.errors).all()


def test_errors_round_trip_through_json_and_npz(breast_cancer, load_data, tmp_path):
    raw = load_data("breast-cancer-mlp")[0][0]
    e = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=300)
    back = explainkit.Explanation.from_dict(json.loads(e.to_json()))
    np.testing.assert_array_equal(back.errors, e.errors)
    loaded = explainkit.Explanation.load(e.save(tmp_path / "e.npz"))
    np.testing.assert_array_equal(loaded.errors, e.errors)
    d = e.to_dict()
    d["errors"] = d["errors"][:-1]
    with pytest.raises(DataError, match="errors"):
        explainkit.Explanation.from_dict(d)
    ig = explainkit.explain(breast_cancer, raw, "integrated_gradients")
    assert ig.errors is None and explainkit.Explanation.from_dict(ig.to_dict()).errors is None
    # too few coalitions for 30 features: the errors are unknown (inf), written as strict JSON's null
    few = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=40)
    assert np.isinf(few.errors).all()
    text = few.to_json()
    assert "Infinity" not in text and json.loads(text, parse_constant=lambda c: pytest.fail(c))["errors"][0] is None
    np.testing.assert_array_equal(explainkit.Explanation.from_dict(json.loads(text)).errors, few.errors)


def _mean_error(model, raw, method, n, **kw) -> float:
    e = explainkit.explain(model, raw, method, n_samples=n, seed=3, **kw)
    assert e.errors is not None and e.errors.shape == e.scores.shape and np.isfinite(e.errors).all()
    return float(e.errors.mean())


def test_lime_smoothgrad_gradient_shap_errors_shrink_with_more_samples(breast_cancer, mnist_cnn, load_data):
    tab, img = load_data("breast-cancer-mlp")[1][0], load_data("mnist-cnn")[1][0]
    assert _mean_error(breast_cancer, tab, "lime", 1600, num_features=30) < \
        0.6 * _mean_error(breast_cancer, tab, "lime", 200, num_features=30)
    assert _mean_error(mnist_cnn, img, "smoothgrad", 64) < 0.6 * _mean_error(mnist_cnn, img, "smoothgrad", 8)
    assert _mean_error(breast_cancer, tab, "gradient_shap", 160) < \
        0.6 * _mean_error(breast_cancer, tab, "gradient_shap", 20)
    # SmoothGrad's errors against its spread over seeds
    runs = [explainkit.explain(mnist_cnn, img, "smoothgrad", n_samples=16, seed=s) for s in range(8)]
    spread, reported = np.array([e.scores for e in runs]).std(axis=0, ddof=1), np.mean([e.errors for e in runs], 0)
    ok = spread > 1e-3 * spread.max()
    assert 0.6 < np.median(reported[ok] / spread[ok]) < 1.6


def test_gradient_shap_is_captums_for_the_same_seed(mnist_cnn, load_data):
    from explainkit_builtins.gradients import BASELINE_NOISE, Batch, captum_attr, guarded

    raw = load_data("mnist-cnn")[2][0]
    e = explainkit.explain(mnist_cnn, raw, "gradient_shap", seed=3, n_samples=12, n_baselines=4)
    ca = captum_attr()
    with guarded(mnist_cnn, 3):
        b = Batch(mnist_cnn, [mnist_cnn.prepare(raw)], [e.target])
        base = b.baselines()[:1]
        noise = torch.randn((3,) + tuple(base.shape[1:]), dtype=base.dtype)
        dist = torch.cat([base, base + BASELINE_NOISE * b.value_range(b.inputs) * noise])
        attr = ca.GradientShap(mnist_cnn.forward).attribute(b.inputs, baselines=dist, n_samples=12,
                                                            stdevs=0.0, target=b.targets)
    np.testing.assert_array_equal(attr[0].sum(0).double().numpy(), e.scores)


def test_waterfall_and_bars_draw_error_bars(breast_cancer, load_data):
    from matplotlib.collections import LineCollection

    from explainkit.views import render

    raw = load_data("breast-cancer-mlp")[3][0]
    e = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=400)
    fig = render.waterfall(e, max_features=8)
    bars = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(bars) == 9                                     # 8 features + "22 other features"
    half = [np.ptp(seg[:, 0]) / 2 for c in bars for seg in c.get_segments()]
    top = np.argsort(-np.abs(e.scores), kind="stable")[:8]
    np.testing.assert_allclose(half[:8], 2 * e.errors[top])              # ±2 SE, in the waterfall's order
    assert render.figure_png(fig).startswith(b"\x89PNG")
    barfig = render.plot(e, max_features=10)
    assert any(isinstance(c, LineCollection) for c in barfig.axes[0].collections)
    plain = explainkit.explain(breast_cancer, raw, "integrated_gradients")
    assert not any(isinstance(c, LineCollection) for c in render.plot(plain).axes[0].collections)


def test_badge_reads_the_errors(breast_cancer, load_data):
    from explainkit.trust.separation import Z, separation

    raw = load_data("breast-cancer-mlp")[3][0]
    for n in (40, 20_000):
        e = explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=n, seed=1)
        q = e.quality(breast_cancer, metrics=["deletion"], steps=10)
        a = np.abs(e.scores)
        order = np.argsort(-a)
        gap = (a[order[4]] - a[order[5]]) / np.hypot(e.errors[order[4]], e.errors[order[5]])
        stable = gap >= Z and np.all(a[order[:5]] >= Z * e.errors[order[:5]])
        assert q.separation.stable == stable == separation(e).stable
        assert ("top-5 stable" if stable else "top-5 unstable") in q.badge()
        assert q.to_dict()["separation"]["stable"] == stable
    assert not explainkit.explain(breast_cancer, raw, "kernel_shap", n_samples=40, seed=1).quality(
        breast_cancer, metrics=["deletion"], steps=10).separation.stable
    plain = explainkit.explain(breast_cancer, raw, "integrated_gradients").quality(breast_cancer,
                                                                                  metrics=["deletion"], steps=10)
    assert plain.separation is None and "top-5" not in plain.badge()
