"""Datasets: loaders (MNIST IDX, SST-2 TSV, sklearn), user data, shipped slices, and clear data errors."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from _zoo_helpers import SHARED_DATA, needs_shared, sample

from explainkit.data import datasets
from explainkit.enums import Modality
from explainkit.errors import DataError, InputError, UnknownNameError


def _write_idx(path, magic, arr, gz=True, truncate=0):
    head = struct.pack(">i", magic) + struct.pack(">" + "i" * arr.ndim, *arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    data = data[:len(data) - truncate]
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture()
def tiny_mnist(tmp_path):
    rng = np.random.default_rng(0)
    n = 8010
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", 2051, rng.integers(0, 255, (n, 28, 28)), gz=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, rng.integers(0, 10, n))
    return tmp_path


def test_shipped_slices():
    m, s = datasets.sample_data("mnist"), datasets.sample_data("sst2-lstm")
    assert len(m) == 1000 and m.raws.dtype == np.uint8 and m.raws.shape[1:] == (28, 28)
    assert m.modality is Modality.IMAGE and m.class_names == [str(d) for d in range(10)]
    assert len(s) == 872 and isinstance(s[0][0], str) and s.class_names == ["negative", "positive"]
    b, d = datasets.sample_data("breast-cancer"), datasets.sample_data("diabetes-mlp")
    assert len(b) == 114 and len(b.feature_names) == 30 and len(d) == 89 and d.class_names is None
    assert repr(m).count("\n") == 0 and "1000" in repr(m)
    with pytest.raises(UnknownNameError, match="mnist"):
        datasets.sample_data("cifar")
    size = sum(p.stat().st_size for p in datasets.DATA_DIR.iterdir())
    assert size < 2e6


def test_fixed_tabular_split():
    a, b = datasets.breast_cancer("heldout"), datasets.breast_cancer("heldout")
    assert np.array_equal(a.raws, b.raws)
    assert len(datasets.breast_cancer("train")) + len(a) == 569


def test_dataset_api():
    d = datasets.sample_data("mnist")
    sub = d.subset([3, 1])
    assert len(sub) == 2 and sub[0][1] == d[3][1] and np.array_equal(sub.raws[1], d.raws[1])
    assert len(d[:5]) == 5
    raw, label = d[0]
    assert raw.shape == (28, 28) and isinstance(label, int)
    ss = d.samples(sample("mnist-mlp"))
    assert len(ss) == 1000 and ss[2].index == 2 and ss[2].label == d[2][1] and ss[-1].index == 999


@needs_shared
def test_load_shared_mnist_and_sst2():
    held, train = datasets.load_mnist(SHARED_DATA / "mnist"), datasets.load_mnist(SHARED_DATA, "train")
    assert len(held) == 2000 and len(train) == 8000
    shipped = datasets.sample_data("mnist")
    assert np.array_equal(held.raws[:1000], shipped.raws) and np.array_equal(held.labels[:1000], shipped.labels)
    dev = datasets.load_sst2(SHARED_DATA / "sst2")
    assert len(dev) == 872 and set(np.unique(dev.labels)) == {0, 1}


def test_mnist_protocol_on_t10k_only(tiny_mnist):
    assert len(datasets.load_mnist(tiny_mnist, "train")) == 8000
    assert len(datasets.load_mnist(tiny_mnist, "heldout")) == 10
    assert len(datasets.load_mnist(tiny_mnist, "all")) == 8010


def test_mnist_errors(tmp_path, tiny_mnist):
    with pytest.raises(DataError, match="does not exist"):
        datasets.load_mnist(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No MNIST"):
        datasets.load_mnist(tmp_path / "empty")
    with pytest.raises(UnknownNameError):
        datasets.load_mnist(tiny_mnist, "validation")
    _write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", 2051, np.zeros(8010))       # wrong magic
    with pytest.raises(DataError, match="magic"):
        datasets.load_mnist(tiny_mnist)
    _write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", 2049, np.zeros(8010), truncate=5)
    with pytest.raises(DataError, match="truncated"):
        datasets.load_mnist(tiny_mnist)
    (tiny_mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError):
        datasets.load_mnist(tiny_mnist)


def test_sst2_errors(tmp_path):
    with pytest.raises(DataError):
        datasets.load_sst2(tmp_path)
    bad = tmp_path / "dev.tsv"
    bad.write_text("text\tlabel\nfoo\t1\n")
    with pytest.raises(DataError, match="header"):
        datasets.load_sst2(bad)
    bad.write_text("sentence\tlabel\nfoo\tpositive\n")
    with pytest.raises(DataError, match="line 2"):
        datasets.load_sst2(tmp_path)


def test_user_data():
    import pandas as pd
    import torch

    x = np.random.default_rng(0).normal(size=(5, 3))
    d = datasets.from_arrays(x, [0, 1, 0, 1, 0], modality="tabular", class_names=["a", "b"])
    assert d.feature_names == ["x0", "x1", "x2"] and d.labels.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(InputError):
        datasets.from_arrays(x, [0, 1], modality="tabular")
    with pytest.raises(InputError):
        datasets.from_arrays(np.zeros(3), modality="image")
    df = pd.DataFrame(x, columns=["u", "v", "w"]).assign(y=[1, 2, 3, 4, 5])
    d = datasets.from_dataframe(df, label_column="y")
    assert d.feature_names == ["u", "v", "w"] and d.labels.tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(UnknownNameError):
        datasets.from_dataframe(df, label_column="z")
    t = datasets.from_texts(["good", "bad"], [1, 0])
    assert t.modality is Modality.TEXT and len(t) == 2
    with pytest.raises(InputError):
        datasets.from_texts(["ok", 3])
    tds = torch.utils.data.TensorDataset(torch.rand(4, 1, 28, 28), torch.tensor([1, 2, 3, 4]))
    d = datasets.from_torch(tds)
    assert d.modality is Modality.IMAGE and d.raws.shape == (4, 28, 28) and d.labels.tolist() == [1, 2, 3, 4]
    assert datasets.from_torch(torch.utils.data.TensorDataset(torch.rand(3, 6))).modality is Modality.TABULAR
