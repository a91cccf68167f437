"""wrap() for user models of each modality and black boxes; bad inputs give explainkit errors, not tracebacks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from _zoo_helpers import sample
from torch import nn

import explainkit
from explainkit.data.tokenizer import Tokenizer
from explainkit.errors import InputError, ShapeError, TextLengthWarning, ValueRangeError


class TinyText(nn.Module):
    def __init__(self, vocab=20, k=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab, 8, padding_idx=0)
        self.fc = nn.Linear(8, k)

    def forward(self, ids, mask):
        e = self.embedding(ids) * mask.unsqueeze(-1)
        return self.fc(e.sum(1) / mask.sum(1, keepdim=True).clamp(min=1))


def test_wrap_user_modules_of_each_modality():
    torch.manual_seed(0)
    img = explainkit.wrap(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)),
                          modality="image", classes=list("0123456789"))
    p = img.predict([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    assert p.shape == (2, 10) and np.allclose(p.sum(1), 1) and img.provides("conv_layer")

    tok = Tokenizer.build(["good movie", "bad movie"], max_len=8)
    txt = explainkit.wrap(TinyText(len(tok)), modality="text", classes=["neg", "pos"], tokenizer=tok)
    assert txt.predict(["good movie", "bad"]).shape == (2, 2) and txt.provides("embeddings")

    tab = explainkit.wrap(nn.Linear(3, 1), modality="tabular", task="regression", feature_names=["a", "b", "c"])
    assert tab.predict([[1.0, 2.0, 3.0]]).shape == (1,)


def test_wrap_black_box_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, held = explainkit.datasets.breast_cancer("train"), explainkit.datasets.breast_cancer("heldout")
    clf = make_pipeline(StandardScaler(), LogisticRegression()).fit(train.raws, train.labels)
    model = explainkit.wrap(clf.predict_proba, modality="tabular", classes=held.class_names,
                            feature_names=held.feature_names, background=train.raws)
    acc = (model.predict(held.raws).argmax(1) == held.labels).mean()
    assert acc > 0.95 and model.provides("probabilities") and not model.provides("gradients")
    keep = np.ones((2, 30))
    keep[1, :10] = 0
    assert model.predict_masked(model.prepare(held.raws[0]), keep).shape == (2, 2)


def test_wrap_catches_mismatches_at_wrap_time():
    with pytest.raises(ShapeError, match="probe"):          # expects 3 channels, declared 1
        explainkit.wrap(nn.Conv2d(3, 4, 3), modality="image", classes=list("0123456789"))
    with pytest.raises(ShapeError):                          # wrong number of features
        explainkit.wrap(nn.Linear(5, 2), modality="tabular", classes=["a", "b"], feature_names=list("abc"))
    with pytest.raises(ShapeError, match="classes"):         # 3 outputs, 2 classes
        explainkit.wrap(nn.Linear(3, 3), modality="tabular", classes=["a", "b"], feature_names=list("abc"))
    with pytest.raises(ShapeError):                          # black box returning the wrong shape
        explainkit.wrap(lambda x: np.zeros(len(x)), modality="tabular", classes=["a", "b"],
                        feature_names=list("abc"))

    class IntOut(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2, dtype=torch.long)

    with pytest.raises(ShapeError, match="dtype"):
        explainkit.wrap(IntOut(), modality="tabular", classes=["a", "b"], feature_names=list("abc"))


def test_image_bad_inputs():
    m = sample("mnist-cnn")
    with pytest.raises(ShapeError):
        m.prepare(np.zeros((32, 32), np.uint8))
    with pytest.raises(ShapeError):
        m.prepare(np.array([["a"] * 28] * 28))
    bad = np.zeros((28, 28), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ValueRangeError):
        m.prepare(bad)
    bad[3, 3] = np.inf
    with pytest.raises(ValueRangeError):
        m.predict([bad])
    with pytest.raises(ValueRangeError):
        m.prepare(np.full((28, 28), 300, np.int32))


@pytest.mark.parametrize("name", ["sst2-lstm", "sst2-transformer"])
def test_text_bad_inputs(name):
    m = sample(name)
    with pytest.raises(InputError):
        m.prepare("   ")
    with pytest.raises(ShapeError):
        m.prepare(123)
    long_text = " ".join(["good"] * 200)
    with pytest.warns(TextLengthWarning):
        s = m.prepare(long_text)
    assert len(s.tokens) == m.max_len
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextLengthWarning)
        assert m.predict([long_text]).shape == (1, 2)


def test_tabular_bad_inputs():
    m = sample("breast-cancer-mlp")
    with pytest.raises(ShapeError):
        m.prepare(np.zeros(29))
    with pytest.raises(ShapeError):
        m.prepare(["x"] * 30)
    row = np.zeros(30)
    row[0] = np.nan
    with pytest.raises(ValueRangeError):
        m.predict([row])
