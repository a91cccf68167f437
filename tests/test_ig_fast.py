"""Integrated gradients through a first affine layer (explainkit_builtins.ig_affine): the same attributions as
captum's IntegratedGradients and as the plain captum path, on the shipped models that qualify, and the plain
path, with the same numbers, on models where the input also reaches the output another way, where the first
module is not affine, or where an activation cannot take channels-last memory."""
from __future__ import annotations

import numpy as np
import pytest

import explainkit

torch = pytest.importorskip("torch")
ca = pytest.importorskip("captum.attr")
nn = torch.nn
TOL = 1e-5          # max |difference| <= TOL * max |reference| (float32 rounding; the sums differ in order)


def _close(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= TOL * np.abs(ref).max(), np.abs(got - ref).max() / np.abs(ref).max()


def _run(model, raws, **params):
    from explainkit.plugins.runner import run_explainer

    return run_explainer("integrated_gradients", model, raws, **params)


def _captum(model, exps, raws, n_steps=50, method="gausslegendre"):
    """captum's IG per sample on the explainer's targets and default baselines: ``[N, ...]``."""
    samples = [model.prepare(r) for r in raws]
    x = torch.stack([torch.as_tensor(s.tensor) for s in samples])
    base = torch.stack([torch.as_tensor(model.baseline_tensor(s)) for s in samples])
    ig = ca.IntegratedGradients(model.forward)
    return ig.attribute(x, baselines=base, target=[e.target or 0 for e in exps], n_steps=n_steps,
                        method=method).detach().numpy()


def _plain(monkeypatch, model, raws, **params):
    """The explainer with the fast path switched off: captum's IntegratedGradients inside explainkit."""
    from explainkit_builtins import gradients

    with monkeypatch.context() as m:
        m.setattr(gradients, "affine_attributions", lambda *a, **k: None)
        return _run(model, raws, **params)


def _plan(model):
    from explainkit_builtins.ig_affine import _PLANS

    plans = list(_PLANS.get(model.module, {}).values())
    assert len(plans) == 1
    return plans[0]


def _variant(mnist_cnn, module):
    """A wrapped image model with mnist-cnn's input handling (normalisation, classes) and weights."""
    return explainkit.wrap(module.eval(), modality="image", input_shape=(1, 28, 28), classes=mnist_cnn.classes,
                           normalize={"mean": [0.1307], "std": [0.3081]}, conv_layer=module.cnn.features[3],
                           name=type(module).__name__)


class _Skip(nn.Module):
    """mnist-cnn plus a fixed linear read of the raw pixels: the input reaches the output past conv1."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn
        self.read = nn.Linear(28 * 28, 10)
        with torch.no_grad():
            self.read.weight.copy_(torch.linspace(-0.05, 0.05, 7840).reshape(10, 784))
            self.read.bias.zero_()

    def forward(self, x):
        return self.cnn(x) + self.read(x.flatten(1))


class _Squashed(nn.Module):
    """mnist-cnn after a tanh of the input: the first module is not affine."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn, self.squash = cnn, nn.Tanh()

    def forward(self, x):
        return self.cnn(self.squash(x))


class _Viewed(nn.Module):
    """mnist-cnn whose head calls ``.view`` on the last activation: channels-last memory cannot pass there."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn

    def forward(self, x):
        h = self.cnn.features(x)
        return self.cnn.head[-1](h.view(h.shape[0], -1))


class _Twice(nn.Module):
    """conv1 applied a second time, on batches of more than one row only (the probe sees one row)."""

    def __init__(self, cnn):
        super().__init__()
        self.cnn = cnn

    def forward(self, x):
        f = self.cnn.features
        h = f[0](x)
        if x.shape[0] > 1:
            h = 0.5 * (h + f[0](x))
        return self.cnn.head(f[1:](h))


def test_an_in_place_relu_after_the_first_layer(mnist_cnn, digits):
    """torchvision-style ``ReLU(inplace=True)`` right after conv1 still gets the gradient at conv1's output."""
    import copy

    cnn = copy.deepcopy(mnist_cnn.module)
    cnn.features[1] = nn.ReLU(inplace=True)
    model = _variant(mnist_cnn, _Squashed(cnn))
    model.module.squash = nn.Identity()         # Identity, then conv1: a pass-through prefix
    exps = _run(model, digits[:3])
    plan = _plan(model)
    assert plan.layer is cnn.features[0] and tuple(type(m) for m in plan.prefix) == (nn.Identity,)
    _close(np.stack([e.attributions for e in exps]), _captum(model, exps, digits[:3]))


@pytest.fixture(scope="module")
def digits(load_data):
    data = load_data("mnist-cnn")
    return [data[i][0] for i in range(4)]


def test_mnist_cnn_fast_path_equals_captum_and_plain_path(mnist_cnn, digits, monkeypatch):
    exps = _run(mnist_cnn, digits)
    plan = _plan(mnist_cnn)
    assert plan.layer is mnist_cnn.module.features[0] and plan.prefix == () and plan.channels_last is None
    got = np.stack([e.attributions for e in exps])
    _close(got, _captum(mnist_cnn, exps, digits))
    plain = _plain(monkeypatch, mnist_cnn, digits)
    _close(got, np.stack([e.attributions for e in plain]))
    for e, p in zip(exps, plain):       # completeness extras from the same f(x), f(baseline)
        assert e.extras["output_delta"] == pytest.approx(p.extras["output_delta"], rel=1e-6, abs=1e-6)
        assert abs(e.extras["convergence_delta"] - p.extras["convergence_delta"]) <= 1e-4 * max(
            1.0, abs(p.extras["output_delta"]))
    conv = mnist_cnn.module.features[0]
    assert "forward" not in conv.__dict__ and all(p.requires_grad for p in mnist_cnn.module.parameters())


@pytest.mark.parametrize("params", [{"n_steps": 7, "integration": "riemann_trapezoid"},
                                    {"n_steps": 20, "internal_batch_size": 3}])
def test_other_rules_and_pass_sizes(mnist_cnn, digits, params):
    """Riemann steps; passes that split one digit's steps (3 steps x 6 digits = 18 rows < 20 steps)."""
    exps = _run(mnist_cnn, digits[:3], **params)
    ref = _captum(mnist_cnn, exps, digits[:3], n_steps=params["n_steps"],
                  method=params.get("integration", "gausslegendre"))
    _close(np.stack([e.attributions for e in exps]), ref)


@pytest.mark.parametrize("family, prefix", [("mnist-mlp", ("Flatten",)), ("diabetes-mlp", ())])
def test_linear_first_layers(load_model, load_data, family, prefix):
    model = load_model(family)
    data = load_data(family)
    raws = [data[i][0] for i in range(5)]
    exps = _run(model, raws)
    plan = _plan(model)
    assert type(plan.layer) is nn.Linear and tuple(type(m).__name__ for m in plan.prefix) == prefix
    _close(np.stack([e.attributions for e in exps]), _captum(model, exps, raws))


@pytest.mark.parametrize("cls, outcome", [(_Skip, "refused"), (_Squashed, "refused"), (_Viewed, "default layout"),
                                          (_Twice, "dropped")])
def test_models_that_do_not_qualify_take_the_plain_path(mnist_cnn, digits, monkeypatch, cls, outcome):
    """No fast path where it would be wrong, with captum's numbers either way: a second route from the input
    and a non-affine first module are refused by the probe; an activation ``.view`` falls back to the default
    memory layout (channels-last is opt-in: switched on here); a layer called twice on real batches (not in the
    probe) falls back to captum's path."""
    import copy

    from explainkit_builtins import ig_affine
    monkeypatch.setattr(ig_affine, "CHANNELS_LAST", True)

    from explainkit_builtins.ig_affine import first_affine

    model = _variant(mnist_cnn, cls(copy.deepcopy(mnist_cnn.module)))
    exps = _run(model, digits[:4])
    got = np.stack([e.attributions for e in exps])
    _close(got, _captum(model, exps, digits[:4]))
    _close(got, np.stack([e.attributions for e in _plain(monkeypatch, model, digits[:4])]))
    plan = first_affine(model, torch.zeros(1, 1, 28, 28))     # as cached by the runs above
    if outcome == "default layout":
        assert plan is not None and plan.layer is model.module.cnn.features[0] and plan.channels_last is False
    else:       # "dropped": the probe qualified it, and the first real pass found two calls
        assert plan is None
    assert all("forward" not in m.__dict__ for m in model.module.modules())
