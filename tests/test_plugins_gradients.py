"""The captum-based built-ins (saliency, input_x_gradient, integrated_gradients, smoothgrad, gradient_shap,
gradcam, occlusion) on the shipped sample models: completeness, agreement with captum called directly,
determinism, the model left untouched, clear errors, batch/single consistency, and toy ground truths."""
from __future__ import annotations

import numpy as np
import pytest

import explainkit
from explainkit.errors import NotApplicableError, ParameterError, TargetError

torch = pytest.importorskip("torch")
ca = pytest.importorskip("captum.attr")

DETERMINISTIC = ["saliency", "input_x_gradient", "integrated_gradients", "gradcam", "occlusion"]
STOCHASTIC = {"smoothgrad": {"n_samples": 8}, "gradient_shap": {"n_samples": 8, "n_baselines": 4}}
CHEAP = {"integrated_gradients": {"n_steps": 24}, **STOCHASTIC}
TOL = 1e-5


def _raws(load_data, family, idx):
    data = load_data(family)
    return [data[i][0] for i in idx]


def _targets(model, raws):
    if model.task is explainkit.Task.REGRESSION:
        return [0] * len(raws)
    return [int(t) for t in model.predict(raws).argmax(axis=1)]


def _target_outputs(model, inputs, extra, targets):
    with torch.no_grad():
        out = model.forward(inputs, *extra)
    return out[torch.arange(len(targets)), torch.as_tensor(targets)].double().numpy()


def _close(a, b, tol=TOL):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max(initial=0))))


# -- completeness ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["mnist-mlp", "mnist-cnn", "breast-cancer-mlp", "diabetes-mlp",
                                    "sst2-lstm", "sst2-transformer"])
def test_integrated_gradients_completeness(load_model, load_data, family):
    """Sum of attributions = f(x) - f(baseline) within 1%, with f computed here, not by the explainer."""
    model = load_model(family)
    raws = _raws(load_data, family, range(16))
    samples = [model.prepare(r) for r in raws]
    targets = _targets(model, raws)
    inputs, extra = model.collate(samples)
    if model.modality is explainkit.Modality.TEXT:
        base = torch.full_like(inputs, int(model.tokenizer.pad_id))
    else:
        base = torch.stack([torch.as_tensor(model.baseline_tensor(s)) for s in samples])
    fb = _target_outputs(model, base, extra, targets)
    diff = _target_outputs(model, inputs, extra, targets) - fb
    pick = np.argsort(-np.abs(diff))[:3]            # honest: the samples with the largest |f(x) - f(b)|
    assert np.abs(diff[pick]).min() > 0.05, f"no sample moves the output: {diff}"
    exps = explainkit.explain(model, [raws[i] for i in pick], "integrated_gradients",
                              target=[targets[i] for i in pick], n_steps=200)
    for exp, i in zip(exps, pick):
        assert abs(exp.scores.sum() - diff[i]) <= 0.01 * abs(diff[i]), (family, exp.scores.sum(), diff[i])
        assert exp.base_value == pytest.approx(fb[i], rel=1e-5, abs=1e-6)
        assert exp.extras["output_delta"] == pytest.approx(diff[i], rel=1e-4, abs=1e-5)
        assert abs(exp.extras["convergence_delta"]) <= 0.01 * abs(diff[i])


# -- agreement with captum called directly -----------------------------------------------------------
def _direct_image(model, name, inputs, targets):
    fwd = model.forward
    black = model.prepare(np.zeros((28, 28), np.uint8)).tensor.expand_as(inputs).contiguous()
    if name == "saliency":
        return ca.Saliency(fwd).attribute(inputs.clone().requires_grad_(), target=targets, abs=True)
    if name == "integrated_gradients":
        return ca.IntegratedGradients(fwd).attribute(inputs, baselines=black, target=targets, n_steps=32)
    if name == "occlusion":
        return ca.Occlusion(fwd).attribute(inputs, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                           baselines=black, target=targets, perturbations_per_eval=64)
    cam = ca.LayerGradCam(fwd, model.conv_layer).attribute(inputs, target=targets, relu_attributions=True)
    return ca.LayerAttribution.interpolate(cam, (28, 28), "bilinear")


@pytest.mark.parametrize("name,params", [("saliency", {}), ("integrated_gradients", {"n_steps": 32}),
                                         ("occlusion", {"window": 4, "stride": 2}), ("gradcam", {})])
def test_image_agrees_with_captum(mnist_cnn, load_data, name, params):
    raws = _raws(load_data, "mnist-cnn", range(4))
    targets = [3, 1, 7, 0]
    exps = explainkit.explain(mnist_cnn, raws, name, target=targets, **params)
    inputs, _ = mnist_cnn.collate([mnist_cnn.prepare(r) for r in raws])
    ref = _direct_image(mnist_cnn, name, inputs, targets).detach().double().numpy()
    for exp, r in zip(exps, ref):
        _close(exp.attributions, r)
        _close(exp.scores, r.sum(axis=0))        # one channel: the score is the pixel's attribution


def test_tabular_agrees_with_captum(breast_cancer, load_data):
    raws = _raws(load_data, "breast-cancer-mlp", range(5))
    inputs, _ = breast_cancer.collate([breast_cancer.prepare(r) for r in raws])
    targets = _targets(breast_cancer, raws)
    sal = ca.Saliency(breast_cancer.forward).attribute(inputs.clone().requires_grad_(), target=targets, abs=False)
    ig = ca.IntegratedGradients(breast_cancer.forward).attribute(inputs, baselines=torch.zeros_like(inputs),
                                                                 target=targets, n_steps=40, method="riemann_trapezoid")
    got_sal = explainkit.explain(breast_cancer, raws, "saliency", abs=False)
    got_ig = explainkit.explain(breast_cancer, raws, "integrated_gradients", n_steps=40,
                                integration="riemann_trapezoid", baseline="zero")
    for e_s, e_i, s, i in zip(got_sal, got_ig, sal.detach().numpy(), ig.detach().numpy()):
        _close(e_s.scores, s)
        _close(e_i.scores, i)


def test_text_agrees_with_captum(sst2_lstm, load_data):
    raws = _raws(load_data, "sst2-lstm", range(5))        # different lengths: padding is exercised
    samples = [sst2_lstm.prepare(r) for r in raws]
    ids, extra = sst2_lstm.collate(samples)
    targets = _targets(sst2_lstm, raws)
    layer = sst2_lstm.embedding_layer
    grad = ca.LayerGradientXActivation(sst2_lstm.forward, layer, multiply_by_inputs=False).attribute(
        ids, target=targets, additional_forward_args=extra)
    ig = ca.LayerIntegratedGradients(sst2_lstm.forward, layer).attribute(
        ids, baselines=torch.zeros_like(ids), target=targets, additional_forward_args=extra, n_steps=32)
    occ = ca.Occlusion(sst2_lstm.forward).attribute(ids, sliding_window_shapes=(2,), strides=(1,), baselines=0,
                                                    target=targets, additional_forward_args=extra)
    got = {m: explainkit.explain(sst2_lstm, raws, m, **kw) for m, kw in
           [("saliency", {"abs": True}), ("integrated_gradients", {"n_steps": 32}),
            ("occlusion", {"window": 2, "stride": 1})]}
    for i, s in enumerate(samples):
        n = len(s.tokens)
        _close(got["saliency"][i].scores, grad[i, :n].abs().sum(-1).detach().numpy())
        _close(got["integrated_gradients"][i].scores, ig[i, :n].sum(-1).detach().numpy())
        _close(got["integrated_gradients"][i].attributions, ig[i, :n].detach().numpy())
        _close(got["occlusion"][i].scores, occ[i, :n].detach().numpy())


def test_black_box_occlusion_has_captum_semantics(mnist_cnn, load_data):
    """Occlusion on a predict-only model equals captum.Occlusion on the same probabilities."""
    raws = _raws(load_data, "mnist-cnn", range(2))
    box = explainkit.wrap(lambda imgs: mnist_cnn.predict(list(imgs)), modality="image",
                          classes=mnist_cnn.classes, input_shape=(1, 28, 28))
    targets = [2, 9]
    got = explainkit.explain(box, raws, "occlusion", target=targets, window=5, stride=3)
    inputs, _ = mnist_cnn.collate([mnist_cnn.prepare(r) for r in raws])
    black = mnist_cnn.prepare(np.zeros((28, 28), np.uint8)).tensor
    ref = ca.Occlusion(lambda x: mnist_cnn.forward(x).softmax(-1)).attribute(
        inputs, sliding_window_shapes=(1, 5, 5), strides=(1, 3, 3), baselines=black.expand_as(inputs).contiguous(),
        target=targets, perturbations_per_eval=64)
    for exp, r in zip(got, ref.double().numpy()):
        assert exp.extras["output_space"] == "probability"
        np.testing.assert_allclose(exp.scores, r[0], atol=1e-6)


# -- determinism ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["mnist-cnn", "sst2-transformer"])
@pytest.mark.parametrize("name", sorted(STOCHASTIC))
def test_seeded_methods_are_deterministic(load_model, load_data, family, name):
    model = load_model(family)
    raws = _raws(load_data, family, range(2))
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    a = explainkit.explain(model, raws, name, seed=7, **STOCHASTIC[name])
    b = explainkit.explain(model, raws, name, seed=7, **STOCHASTIC[name])
    c = explainkit.explain(model, raws, name, seed=8, **STOCHASTIC[name])
    assert torch.equal(torch.random.get_rng_state(), torch_state)          # the caller's RNG is untouched
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    for x, y, z in zip(a, b, c):
        assert np.array_equal(x.scores, y.scores)
        assert not np.allclose(x.scores, z.scores)


# -- the model is left as it was -------------------------------------------------------------------------
def _state(model):
    m = model.module
    return ({k: v.clone() for k, v in m.state_dict().items()}, [x.training for x in m.modules()],
            [p.requires_grad for p in m.parameters()], [p.grad for p in m.parameters()],
            sum(len(x._forward_hooks) + len(x._forward_pre_hooks) + len(x._backward_hooks) for x in m.modules()))


@pytest.mark.parametrize("family", ["mnist-cnn", "sst2-lstm"])
def test_model_left_unmodified(load_model, load_data, family):
    model = load_model(family)
    raws = _raws(load_data, family, range(2))
    names = [n for n in DETERMINISTIC + sorted(STOCHASTIC) if not (n == "gradcam" and model.conv_layer is None)]
    model.module.train()                 # a module left in training mode must come back in training mode
    try:
        before = _state(model)
        for name in names:
            explainkit.explain(model, raws, name, **CHEAP.get(name, {}))
            after = _state(model)
            assert all(torch.equal(before[0][k], after[0][k]) for k in before[0]), name
            assert before[1:] == after[1:], name
    finally:
        model.module.eval()
    # and the explanations were computed in eval mode: same as on the eval-mode module
    a = explainkit.explain(model, raws, "saliency")
    assert all(x.scores.sum() != 0 for x in a)


# -- errors ------------------------------------------------------------------------------------------------
def test_gradcam_on_mlp_is_not_applicable(mnist_mlp, load_data):
    with pytest.raises(NotApplicableError, match="conv_layer"):
        explainkit.explain(mnist_mlp, _raws(load_data, "mnist-mlp", [0])[0], "gradcam")


@pytest.mark.parametrize("name,params", [
    ("integrated_gradients", {"n_steps": 1}), ("integrated_gradients", {"n_steps": "many"}),
    ("integrated_gradients", {"integration": "simpson"}), ("integrated_gradients", {"baseline": "mean"}),
    ("smoothgrad", {"stdevs": -0.1}), ("smoothgrad", {"n_samples": 2.5}), ("gradient_shap", {"n_baselines": 0}),
    ("saliency", {"abs": "yes"}), ("saliency", {"bogus": 1}),
    ("occlusion", {"window": 2, "stride": 3}), ("occlusion", {"window": 40})])
def test_bad_params_raise_parameter_error(mnist_cnn, load_data, name, params):
    with pytest.raises(ParameterError) as info:
        explainkit.explain(mnist_cnn, _raws(load_data, "mnist-cnn", [0])[0], name, **params)
    assert info.value.fix                        # the error says how to fix it


@pytest.mark.parametrize("family,target", [("mnist-cnn", 10), ("mnist-cnn", -1), ("sst2-lstm", 2),
                                           ("diabetes-mlp", 1)])
def test_bad_target_raises_target_error(load_model, load_data, family, target):
    with pytest.raises(TargetError):
        explainkit.explain(load_model(family), _raws(load_data, family, [0])[0], "saliency", target=target)


# -- batch vs single ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["mnist-cnn", "breast-cancer-mlp", "diabetes-mlp", "sst2-lstm",
                                    "sst2-transformer"])
def test_batch_equals_single(load_model, load_data, family):
    model = load_model(family)
    raws = _raws(load_data, family, range(3))
    # float32: a batch of another size may round f(x) differently by ~1 ulp, i.e. eps * |f(x)|
    inputs, extra = model.collate([model.prepare(r) for r in raws])
    with torch.no_grad():
        scale = max(1.0, float(model.forward(inputs, *extra).abs().max()))
    for name in DETERMINISTIC:
        if name == "gradcam" and model.conv_layer is None:
            continue
        params = CHEAP.get(name, {})
        batch = explainkit.explain(model, raws, name, **params)
        for raw, b in zip(raws, batch):
            one = explainkit.explain(model, raw, name, **params)
            np.testing.assert_allclose(b.scores, one.scores, rtol=1e-6, atol=1e-6 * scale, err_msg=f"{family} {name}")


def test_internal_batch_size_does_not_change_ig(mnist_cnn, load_data):
    raws = _raws(load_data, "mnist-cnn", range(3))
    whole = explainkit.explain(mnist_cnn, raws, "integrated_gradients", n_steps=20)
    chunked = explainkit.explain(mnist_cnn, raws, "integrated_gradients", n_steps=20, internal_batch_size=6)
    for a, b in zip(whole, chunked):
        _close(a.scores, b.scores)


def test_report_batched_ig_equals_per_sample(mnist_cnn, load_data):
    """A report's chunk (8 digits, steps x samples per pass) gives each digit's own IG and completeness extras."""
    from explainkit.plugins.runner import run_explainer

    raws = _raws(load_data, "mnist-cnn", range(8))
    batch = run_explainer("integrated_gradients", mnist_cnn, raws)
    for raw, b in zip(raws, batch):
        one = run_explainer("integrated_gradients", mnist_cnn, [raw])[0]
        _close(b.scores, one.scores, tol=1e-6)
        ulp = 1e-6 * max(1.0, abs(one.extras["output"]), abs(one.extras["baseline_output"]))     # float32 sums
        for key in ("output", "baseline_output", "output_delta", "convergence_delta"):
            assert b.extras[key] == pytest.approx(one.extras[key], rel=1e-5, abs=10 * ulp), key
        assert b.base_value == pytest.approx(one.base_value, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("family", ["sst2-transformer", "sst2-lstm"])
def test_text_ig_completeness_costs_no_extra_forward(load_model, load_data, family):
    """On text, f(x) and f(baseline) come from captum's own no-grad passes: the runner's prediction (N rows),
    captum's passes on the inputs and on the baselines (N each) and the path (N x n_steps), nothing more;
    and the completeness extras equal the outputs computed here."""
    model = load_model(family)
    raws = _raws(load_data, family, range(3))
    rows = []
    handle = model.module.register_forward_pre_hook(lambda _m, args: rows.append(int(args[0].shape[0])))
    try:
        exps = explainkit.explain(model, raws, "integrated_gradients", n_steps=12)
    finally:
        handle.remove()
    assert sum(rows) == 3 * (1 + 2 + 12), rows
    inputs, extra = model.collate([model.prepare(r) for r in raws])
    targets = [e.target for e in exps]
    fx = _target_outputs(model, inputs, extra, targets)
    fb = _target_outputs(model, torch.full_like(inputs, int(model.tokenizer.pad_id)), extra, targets)
    for e, x, b in zip(exps, fx, fb):
        assert e.extras["output"] == pytest.approx(x, rel=1e-5, abs=1e-6)
        assert e.base_value == pytest.approx(b, rel=1e-5, abs=1e-6)
        assert e.extras["convergence_delta"] == pytest.approx(e.scores.sum() - (x - b), rel=1e-4, abs=1e-5)


def test_zero_noise_smoothgrad_is_saliency(mnist_cnn, load_data):
    raws = _raws(load_data, "mnist-cnn", range(2))
    smooth = explainkit.explain(mnist_cnn, raws, "smoothgrad", stdevs=0.0, n_samples=3)
    plain = explainkit.explain(mnist_cnn, raws, "saliency")
    for a, b in zip(smooth, plain):
        _close(a.scores, b.scores)


# -- shapes and units -----------------------------------------------------------------------------------------
def test_units_and_extras(mnist_cnn, sst2_transformer, load_data):
    img = explainkit.explain(mnist_cnn, _raws(load_data, "mnist-cnn", [0])[0], "input_x_gradient")
    assert img.scores.shape == (28, 28) and img.attributions.shape == (1, 28, 28)
    texts = _raws(load_data, "sst2-transformer", range(3))
    for exp in explainkit.explain(sst2_transformer, texts, "gradient_shap", n_samples=4, n_baselines=2):
        assert exp.scores.shape == (len(exp.tokens),)
        assert exp.attributions.shape[0] == len(exp.tokens)            # padding dropped
        _close(exp.scores, exp.attributions.sum(axis=1))
    cam = explainkit.explain(mnist_cnn, _raws(load_data, "mnist-cnn", [0])[0], "gradcam")
    assert cam.extras["layer_shape"] == [11, 11] and cam.scores.min() >= 0    # ReLU'd, upsampled


def test_smoothgrad_noise_is_relative_to_input_range(breast_cancer, load_data):
    raws = _raws(load_data, "breast-cancer-mlp", range(6))
    inputs, _ = breast_cancer.collate([breast_cancer.prepare(r) for r in raws])
    exps = explainkit.explain(breast_cancer, raws, "smoothgrad", stdevs=0.2, n_samples=4)
    assert exps[0].extras["noise_stdev"] == pytest.approx(0.2 * float(inputs.max() - inputs.min()), rel=1e-6)


# -- ground truth on a linear model ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear(load_data):
    """f(x) = w.x + b on standardized breast-cancer rows: every method has a closed form."""
    data = load_data("breast-cancer-mlp")
    X = np.stack([np.asarray(r, float) for r in data.raws])
    mean, std = X.mean(0), X.std(0)
    lin = torch.nn.Linear(X.shape[1], 2)
    with torch.no_grad():
        lin.weight.copy_(torch.linspace(-1.5, 1.5, 2 * X.shape[1]).reshape(2, -1))
        lin.bias.copy_(torch.tensor([0.3, -0.2]))
    model = explainkit.wrap(lin, modality="tabular", classes=data.class_names, feature_names=data.feature_names,
                            standardize={"mean": mean.tolist(), "std": std.tolist()})
    return model, [X[i] for i in range(3)], lin.weight.detach().double().numpy(), mean, std


@pytest.mark.parametrize("name,params", [
    ("saliency", {}), ("input_x_gradient", {}), ("integrated_gradients", {"baseline": "zero", "n_steps": 2}),
    ("smoothgrad", {"stdevs": 1.0, "n_samples": 5}), ("gradient_shap", {"n_baselines": 1, "n_samples": 3}),
    ("occlusion", {})])
def test_linear_ground_truth(linear, name, params):
    model, rows, w, mean, std = linear
    for row in rows:
        z = (row - mean) / std
        exp = explainkit.explain(model, row, name, target=1, **params)
        want = {"saliency": np.abs(w[1]), "smoothgrad": np.abs(w[1])}.get(name, w[1] * z)
        np.testing.assert_allclose(exp.scores, want, rtol=1e-5, atol=1e-5)


def test_black_box_tabular_occlusion_ground_truth(load_data):
    """A predict-only linear regressor: occluding feature i (fill = background mean) moves f by w_i (x_i - m_i)."""
    data = load_data("diabetes-mlp")
    X = np.stack([np.asarray(r, float) for r in data.raws])
    w = np.linspace(-2.0, 3.0, X.shape[1])
    box = explainkit.wrap(lambda rows: np.asarray(rows) @ w + 1.0, modality="tabular", task="regression",
                          feature_names=data.feature_names, background=X[:20])
    mean = X[:20].mean(axis=0)
    for exp, row in zip(explainkit.explain(box, X[:3], "occlusion"), X[:3]):
        np.testing.assert_allclose(exp.scores, w * (row - mean), rtol=1e-9, atol=1e-9)
        assert exp.extras["output_space"] == "value"


# -- the plugin conformance harness -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DETERMINISTIC + sorted(STOCHASTIC))
def test_conformance_harness(load_model, name):
    from explainkit.plugins.conformance import check_explainer

    tab = load_model("breast-cancer-mlp")
    box = explainkit.wrap(lambda rows: tab.predict(list(rows)), modality="tabular", classes=tab.classes,
                          feature_names=tab.feature_names, name="breast-cancer (black box)")
    models = [load_model(n) for n in ("mnist-cnn", "sst2-transformer")] + [tab, box]
    check_explainer(name, models=models).raise_on_failure()
