"""Incremental inference of masked image copies (explainkit.incremental), checked against plain passes."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import explainkit as ek
from explainkit.models.incremental import IncrementalForward


def plain_probs(model, sample, keep):
    """The reference: build every masked copy by hand and run the module on it."""
    x = torch.as_tensor(sample.tensor)
    base = model.baseline_tensor(sample)
    km = torch.from_numpy(np.asarray(keep, bool).reshape((len(keep),) + tuple(x.shape[1:])))[:, None]
    with torch.no_grad():
        return torch.softmax(model.module(torch.where(km, x[None], base[None])), -1).double().numpy()


def deletion_rows(scores, per_step=1):
    order = np.argsort(-scores.reshape(-1), kind="stable")
    n = order.size
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    counts = np.arange(0, n + per_step, per_step).clip(max=n)
    return ~(rank[None] < counts[:, None])


class Spy:
    """Counts the copies the engine computed incrementally (kids) and in full (roots)."""

    def __init__(self, model):
        self.kids = self.roots = 0
        engine = model._incremental
        orig = engine._prefix

        def prefix(x, parent, box):
            self.kids += int((parent >= 0).sum())
            self.roots += int((parent < 0).sum())
            return orig(x, parent, box)

        engine._prefix = prefix


def fresh_cnn():
    return ek.load_sample("mnist-cnn")


def test_per_pixel_deletion_matches_the_plain_pass(load_data):
    model = fresh_cnn()
    samples = load_data("mnist-cnn").samples(model)
    ss = [samples[i] for i in range(4)]
    exps = ek.explain(model, [s.raw for s in ss], "saliency")
    keeps = [deletion_rows(e.scores) for e in exps]
    model._use_incremental(1000, 1)                      # build the engine now, to spy on it
    assert isinstance(model._incremental, IncrementalForward)
    assert [lay.kind for lay in model._incremental.layers] == ["conv", "point", "max", "conv", "point", "max"]
    spy = Spy(model)
    outs = model.predict_masked_many(ss, keeps)
    assert spy.kids > 10 * spy.roots > 0                # most copies were computed incrementally
    for s, k, o in zip(ss, keeps, outs):
        np.testing.assert_allclose(o, plain_probs(model, s, k), atol=2e-6)
    assert model._incremental_checked and model._incremental is not False


def test_occlusion_patches_around_one_image(load_data):
    model = fresh_cnn()
    s = load_data("mnist-cnn").samples(model)[3]
    keeps = [np.ones(784, bool)]
    for y in range(0, 26, 2):
        for x in range(0, 26, 2):
            k = np.ones((28, 28), bool)
            k[y:y + 3, x:x + 3] = False
            keeps.append(k.reshape(-1))
    keeps = np.stack(keeps)
    model._use_incremental(1000, 1)
    spy = Spy(model)
    out = model.predict_masked_many([s], [keeps])[0]
    assert spy.kids > 0
    np.testing.assert_allclose(out, plain_probs(model, s, keeps), atol=2e-6)


class Odd(nn.Module):
    """Padding, stride, dilation, batch norm, average pooling with padding, several activations."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(3), nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(8, 16, 3, stride=2, padding=2, dilation=2), nn.BatchNorm2d(16), nn.Tanh(),
            nn.AvgPool2d(2, padding=1), nn.Dropout2d(0.3))
        self.fc = nn.Linear(16 * 7 * 8, 5)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def chain_copies(x0, steps, rng, max_px=2):
    """A curve-like chain: every copy changes 1..max_px neighbouring pixels of the previous one."""
    rows, cur = [x0], x0.clone()
    _, h, w = x0.shape
    for _ in range(steps):
        cur = cur.clone()
        y, x = rng.integers(0, h - 1), rng.integers(0, w - 1)
        cur[:, y:y + rng.integers(1, max_px + 1), x:x + rng.integers(1, max_px + 1)] = 0.0
        rows.append(cur)
    return rows


def test_padding_stride_dilation_batchnorm_and_avg_pool_are_exact():
    torch.manual_seed(0)
    net = Odd()
    with torch.no_grad():
        for bn in (net.body[0], net.body[5]):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
            bn.bias.normal_()
    net.eval()
    engine = IncrementalForward.build(net)
    assert engine is not None and len(engine.layers) == 9      # the whole body, then flatten + fc
    rng = np.random.default_rng(0)
    rows, groups = [], []
    for g in range(3):
        chain = chain_copies(torch.randn(3, 52, 60), 40, rng)
        rows += chain
        groups += [g] * len(chain)
    x = torch.stack(rows)
    with torch.no_grad():
        out = engine(x, np.array(groups))
        ref = net(x)
    assert out is not None
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_spread_out_changes_run_the_plain_pass():
    """Copies that each change pixels all over the image gain nothing: the engine declines."""
    model = fresh_cnn()
    engine = IncrementalForward.build(model.module)
    rng = np.random.default_rng(1)
    x0 = torch.randn(1, 28, 28)
    rows = [x0]
    for _ in range(20):
        z = rows[-1].clone().reshape(-1)
        z[torch.from_numpy(rng.choice(784, 16, replace=False))] = 0.0
        rows.append(z.reshape(1, 28, 28))
    with torch.no_grad():
        assert engine(torch.stack(rows), np.zeros(len(rows), int)) is None


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 3)

    def forward(self, x):
        if x.sum() > 0:                         # data-dependent control flow: torch.fx cannot trace it
            x = x * 1.0
        return self.fc(self.conv(x).relu().view(x.shape[0], -1))


class Viewer(nn.Module):
    """The PyTorch-tutorial style: ``.view`` on a conv activation (fails on channels-last memory)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 8, 3)
        self.fc = nn.Linear(8 * 10 * 10, 3)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        return self.fc(torch.relu(self.conv2(x)).view(-1, 8 * 10 * 10))


@pytest.mark.parametrize("cls", [Branchy, Viewer])
def test_other_modules_fall_back_and_stay_correct(cls, load_data):
    torch.manual_seed(0)
    net = cls().eval()
    model = ek.wrap(net, modality="image", classes=["a", "b", "c"], input_shape=(1, 28, 28))
    s = load_data("mnist-cnn").samples(model)[0]
    keeps = deletion_rows(np.asarray(s.tensor).reshape(-1))
    out = model.predict_masked_many([s], [keeps])[0]
    np.testing.assert_allclose(out, plain_probs(model, s, keeps), atol=2e-6)
    p = model.predict([s.raw])[0]
    np.testing.assert_allclose(p, plain_probs(model, s, keeps[:1])[0], atol=2e-6)
    if cls is Branchy:
        assert model._incremental is False                  # untraceable: never tried again
    else:
        assert model._channels_last is False                # .view rejected channels-last once


def test_changed_weights_are_seen_and_the_original_is_untouched(load_data):
    model = fresh_cnn()
    ss = [load_data("mnist-cnn").samples(model)[i] for i in range(2)]
    keeps = [deletion_rows(np.asarray(s.tensor)) for s in ss]
    before = model.predict_masked_many(ss, keeps)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.module.features[3].reset_parameters()
    after = twin.predict_masked_many(ss, keeps)
    for s, k, o in zip(ss, keeps, after):
        np.testing.assert_allclose(o, plain_probs(twin, s, k), atol=2e-6)
    for s, k, o in zip(ss, keeps, model.predict_masked_many(ss, keeps)):
        np.testing.assert_allclose(o, plain_probs(model, s, k), atol=2e-6)
    assert not np.allclose(before[0], after[0], atol=1e-3)


def test_an_engine_that_disagrees_is_dropped(load_data):
    """A forward hook changes what the module computes; the engine's check notices and steps aside."""
    model = fresh_cnn()
    model.module.features[3].register_forward_hook(lambda mod, inp, out: out + 0.5)
    s = load_data("mnist-cnn").samples(model)[1]
    keeps = deletion_rows(np.asarray(s.tensor))
    out = model.predict_masked_many([s], [keeps])[0]
    assert model._incremental is False
    np.testing.assert_allclose(out, plain_probs(model, s, keeps), atol=2e-6)


def test_calls_cut_inside_a_sample_stay_exact(load_data, monkeypatch):
    from explainkit.models import torch_model

    model = fresh_cnn()
    s = load_data("mnist-cnn").samples(model)[2]
    keeps = deletion_rows(np.asarray(s.tensor))
    monkeypatch.setattr(torch_model, "INCREMENTAL_ROWS_PER_CALL", 37)      # cuts inside the sample's chain
    model._use_incremental(1000, 1)
    spy = Spy(model)
    out = model.predict_masked_many([s], [keeps])[0]
    assert spy.roots >= 3 and spy.kids > spy.roots
    np.testing.assert_allclose(out, plain_probs(model, s, keeps), atol=2e-6)

