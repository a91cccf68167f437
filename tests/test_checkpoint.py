"""Checkpoints: bit-exact round trips, atomic saves, and a clear error for every broken checkpoint."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import explainkit
from explainkit.data.tokenizer import Tokenizer
from explainkit.errors import CheckpointError, ExplainKitError, UnknownNameError
from explainkit.models import checkpoint, zoo


@pytest.fixture(scope="module")
def tab_model():
    return zoo.train("breast-cancer-mlp", epochs=2, progress=False)


@pytest.fixture(scope="module")
def text_model():
    texts = ["a great film", "a dull , boring film", "great acting", "boring plot"]
    tok = Tokenizer.build(texts, max_len=16)
    fam = zoo.get_family("sst2-transformer")
    cfg = {"family": fam.name, "hparams": {**fam.hparams, "vocab_size": len(tok), "max_len": 16}}
    torch.manual_seed(0)
    module = fam.build(cfg)
    return explainkit.wrap(module, modality="text", classes=["negative", "positive"], tokenizer=tok,
                           name="tiny-transformer"), cfg


@pytest.fixture()
def saved(tab_model, tmp_path):
    return checkpoint.save(tab_model, tmp_path / "ck")


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_is_bit_exact(tab_model, saved):
    loaded = explainkit.load(saved)
    assert _same_state(tab_model.module, loaded.module)
    x = np.random.default_rng(0).normal(size=(8, 30))
    rows = explainkit.datasets.breast_cancer("heldout").raws[:8]
    assert np.array_equal(tab_model.predict(rows), loaded.predict(rows))
    assert loaded.feature_names == tab_model.feature_names and loaded.classes == tab_model.classes
    assert loaded.standardize == tab_model.standardize
    assert loaded.weights_hash() == tab_model.weights_hash()
    assert x.shape == (8, 30)
    cfg = json.loads((saved / "config.json").read_text())
    for key in ("family", "hparams", "classes", "feature_names", "standardize", "metrics", "versions",
                "format_version", "weights_sha256"):
        assert key in cfg
    assert set(os.listdir(saved)) == {"model.safetensors", "config.json"}


def test_text_round_trip_keeps_tokenizer(text_model, tmp_path):
    model, cfg = text_model
    path = checkpoint.save(model, tmp_path / "txt", config=cfg)
    loaded = explainkit.load(path)
    assert _same_state(model.module, loaded.module)
    assert loaded.tokenizer.vocab == model.tokenizer.vocab and loaded.tokenizer.max_len == 16
    assert np.array_equal(model.predict(["a great film"]), loaded.predict(["a great film"]))


def test_save_replaces_existing_checkpoint(tab_model, saved):
    checkpoint.save(tab_model, saved)           # overwrite in place
    assert explainkit.load(saved).weights_hash() == tab_model.weights_hash()
    assert [p for p in saved.parent.iterdir() if p.name.startswith(".")] == []


def test_interrupted_save_leaves_nothing_and_keeps_previous(tab_model, saved, tmp_path, monkeypatch):
    import safetensors.torch

    before = {p.name: p.read_bytes() for p in saved.iterdir()}

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)              # half-written...
        raise OSError("disk full")              # ...then the write fails

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    with pytest.raises(OSError):
        checkpoint.save(tab_model, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(OSError):
        checkpoint.save(tab_model, saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]       # no temp dirs left behind


def test_load_never_unpickles(saved, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    import pickle
    monkeypatch.setattr(pickle, "loads", forbidden)
    explainkit.load(saved)


def test_missing_dir_and_files(saved, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        explainkit.load(tmp_path / "nope")
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights"):
        explainkit.load(saved)
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        explainkit.load(saved)


def test_invalid_json(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        explainkit.load(saved)


def test_newer_format_version(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["format_version"] = checkpoint.FORMAT_VERSION + 1
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="upgrade explainkit"):
        explainkit.load(saved)


def test_tampered_weights(saved):
    w = saved / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF                            # same size, valid header, one weight changed
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        explainkit.load(saved)


@pytest.mark.parametrize("cut", [4, 60, -7])
def test_truncated_or_corrupt_weights(saved, cut):
    w = saved / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        explainkit.load(saved)


def test_unknown_family(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["family"] = "resnet-9000"
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnknownNameError, match="mnist-cnn"):
        explainkit.load(saved)


def test_weights_that_do_not_fit_the_architecture(saved):
    cfg = json.loads((saved / "config.json").read_text())
    cfg["hparams"]["hidden"] = [8]
    (saved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit"):
        explainkit.load(saved)


def test_save_refuses_to_clobber_a_non_checkpoint(tab_model, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("precious")
    with pytest.raises(CheckpointError):
        checkpoint.save(tab_model, d)
    assert (d / "notes.txt").read_text() == "precious"


def test_save_module_needs_family(tmp_path):
    with pytest.raises(ExplainKitError, match="family"):
        checkpoint.save(torch.nn.Linear(2, 2), tmp_path / "x")
