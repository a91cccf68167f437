"""Property-based fuzzing (hypothesis) of what users hand explainkit: checkpoint configs, data files,
--select and --param strings. Each may only succeed or raise an ExplainKitError subclass, never leave a
half-written file, and stay within a memory cap."""
from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import explainkit
from explainkit.errors import ExplainKitError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)
CAP_KB = 3_000_000                       # the capped child's address space (see test_memory_bounds)

json_scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | \
    st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
CONFIG_KEYS = ["family", "format_version", "name", "modality", "task", "classes", "feature_names", "target_name",
               "input_shape", "normalize", "standardize", "hparams", "tokenizer", "weights_file", "weights_sha256"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from explainkit.models.zoo import sample_models_dir

    root = tmp_path_factory.mktemp("ckpt")
    for name in ("breast-cancer-mlp", "sst2-lstm", "mnist-cnn"):
        shutil.copytree(sample_models_dir() / name, root / name)
    return root


@FUZZ
@given(name=st.sampled_from(["breast-cancer-mlp", "sst2-lstm", "mnist-cnn"]),
       edits=st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), json_values), min_size=1, max_size=3),
       drop=st.lists(st.sampled_from(CONFIG_KEYS), max_size=2))
def test_fuzzed_checkpoint_configs_load_or_raise_an_explainkit_error(checkpoints, tmp_path, name, edits, drop):
    src = checkpoints / name
    ck = tmp_path / f"{name}-{abs(hash((str(edits), str(drop)))) % 10**8}"
    shutil.copytree(src, ck, dirs_exist_ok=True)
    cfg = json.loads((src / "config.json").read_text())
    for key, value in edits:
        cfg[key] = value
    for key in drop:
        cfg.pop(key, None)
    (ck / "config.json").write_text(json.dumps(cfg))
    try:
        model = explainkit.load(ck)
    except ExplainKitError:
        return
    assert model.n_outputs >= 1                     # what loads is a working model
    before = sorted(p.name for p in ck.iterdir())
    assert before == sorted(p.name for p in src.iterdir())   # loading writes nothing


@FUZZ
@given(text=st.text(max_size=40) | st.from_regex(r"[0-9,\- ]{1,30}", fullmatch=True))
def test_fuzzed_select_strings_parse_or_raise_an_explainkit_error(text):
    from explainkit.cli.specs import MAX_SELECTION, parse_selection

    try:
        out = parse_selection(text, n=1000)
    except ExplainKitError:
        return
    if isinstance(out, list):
        assert len(out) <= MAX_SELECTION and all(0 <= i < 1000 for i in out)
    else:
        assert isinstance(out, str) and len(out) <= 200


@FUZZ
@given(pairs=st.lists(st.text(max_size=25) | st.from_regex(r"[a-z_]{1,12}=[^\n]{0,12}", fullmatch=True),
                      max_size=3))
def test_fuzzed_params_on_the_command_line_write_all_or_nothing(tmp_path, pairs):
    from explainkit.cli.main import main

    out_dir = tmp_path / f"o{abs(hash(tuple(pairs))) % 10**8}"
    out_dir.mkdir()
    argv = ["explain", "--model", "sample:breast-cancer-mlp", "--method", "occlusion", "--out",
            str(out_dir / "e.json")]
    for p in pairs:
        argv += ["--param", p]
    try:
        rc = main(argv)
    except SystemExit as e:                       # argparse refusing a malformed argv is the CLI's own answer
        rc = e.code
    files = sorted(p.name for p in out_dir.iterdir())
    if rc == 0:
        assert files == ["e.json"] and json.loads((out_dir / "e.json").read_text())["method"] == "occlusion"
    else:
        assert files == [], files                  # no half-written output and no temp file left behind


def _idx(dims, dtype_code=0x08, payload=b""):
    return struct.pack(">BBBB", 0, 0, dtype_code, len(dims)) + b"".join(struct.pack(">i", d) for d in dims) + payload


def test_fuzzed_data_files_load_or_raise_within_a_memory_cap(tmp_path):
    """Random headers and bytes for MNIST IDX, .npz, .csv and SST-2 files, loaded in a child capped at 3 GB."""
    script = tmp_path / "fuzz_data.py"
    script.write_text(textwrap.dedent(f"""
        import gzip, io, struct, sys, zipfile, tempfile, pathlib
        import numpy as np
        from hypothesis import given, settings, strategies as st
        import explainkit as ek
        from explainkit.data.files import load_path
        from explainkit.errors import ExplainKitError

        models = {{"image": ek.load_sample("mnist-cnn"), "tabular": ek.load_sample("breast-cancer-mlp"),
                  "text": ek.load_sample("sst2-lstm")}}
        root = pathlib.Path(tempfile.mkdtemp(dir={str(tmp_path)!r}))
        seen = {{"ok": 0, "refused": 0}}

        def attempt(path, kind):
            try:
                data = load_path(path, models[kind])
                assert len(data) >= 0
                seen["ok"] += 1
            except ExplainKitError:
                seen["refused"] += 1

        def idx(dims, code, payload):
            return struct.pack(">BBBB", 0, 0, code, len(dims)) + b"".join(struct.pack(">i", d) for d in dims) \\
                + payload

        @settings(max_examples=60, deadline=None, derandomize=True)
        @given(dims=st.lists(st.integers(-2**31, 2**31 - 1) | st.integers(0, 40), min_size=0, max_size=4),
               code=st.sampled_from([0x08, 0x09, 0x0B, 0x0D, 0x0E, 0x01]), payload=st.binary(max_size=3000),
               ldims=st.lists(st.integers(-5, 2**31 - 1), max_size=2), gz=st.booleans())
        def fuzz_idx(dims, code, payload, ldims, gz):
            d = root / "mnist"
            d.mkdir(exist_ok=True)
            for f in d.iterdir():
                f.unlink()
            img, lab = idx(dims, code, payload), idx(ldims, 0x08, payload[:64])
            suffix = ".gz" if gz else ""
            (d / f"t10k-images-idx3-ubyte{{suffix}}").write_bytes(gzip.compress(img) if gz else img)
            (d / f"t10k-labels-idx1-ubyte{{suffix}}").write_bytes(gzip.compress(lab) if gz else lab)
            attempt(d, "image")

        @settings(max_examples=60, deadline=None, derandomize=True)
        @given(shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=4),
               dtype=st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|O", "<U5"]),
               data=st.binary(max_size=2000), name=st.sampled_from(["images", "X", "texts", "labels", "junk"]),
               kind=st.sampled_from(["image", "tabular", "text"]))
        def fuzz_npz(shape, dtype, data, name, kind):
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {{"descr": dtype, "fortran_order": False,
                                                       "shape": tuple(shape)}})
            p = root / "x.npz"
            with zipfile.ZipFile(p, "w") as z:
                z.writestr(f"{{name}}.npy", buf.getvalue() + data)
            attempt(p, kind)

        @settings(max_examples=60, deadline=None, derandomize=True)
        @given(body=st.binary(max_size=3000) | st.text(max_size=800).map(lambda t: t.encode("utf-8")),
               suffix=st.sampled_from([".csv", ".tsv"]), kind=st.sampled_from(["tabular", "text"]))
        def fuzz_tables(body, suffix, kind):
            p = root / f"t{{suffix}}"
            p.write_bytes(body)
            attempt(p, kind)

        for fuzz in (fuzz_idx, fuzz_npz, fuzz_tables):
            fuzz()
        print(seen["ok"], seen["refused"])
    """))
    cmd = ["bash", "-c", f"ulimit -v {CAP_KB} && exec {sys.executable} {script}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    ok, refused = map(int, proc.stdout.split()[-2:])
    assert ok + refused >= 180 and refused > 0


def test_a_valid_idx_pair_still_loads_after_fuzzing_style_writes(tmp_path, mnist_cnn):
    """The fuzzer's IDX writer makes files the loader accepts when the header is honest."""
    from explainkit.data.files import load_path

    imgs = (np.arange(3 * 28 * 28) % 256).astype(np.uint8)
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx([3, 28, 28], payload=imgs.tobytes())))
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx([3], payload=bytes([1, 2, 3]))))
    data = load_path(d, mnist_cnn)
    assert len(data) == 3 and list(data.labels) == [1, 2, 3]


@pytest.fixture(scope="module")
def explanation_dicts(load_model, load_data):
    """Real explanations of three modalities (and an attention result), as to_dict() gives them."""
    out = []
    for name, method in (("mnist-cnn", "saliency"), ("sst2-transformer", "occlusion"),
                         ("breast-cancer-mlp", "integrated_gradients"), ("sst2-transformer", "attention")):
        raw, _ = load_data(name)[1]
        out.append(json.loads(explainkit.explain(load_model(name), raw, method).to_json()))
    return out


@FUZZ
@given(which=st.integers(0, 3), edits=st.lists(st.tuples(st.sampled_from(
    ["scores", "modality", "kind", "task", "target", "classes", "tokens", "offsets", "text", "probabilities",
     "feature_names", "base_value", "format_version", "class", "params", "matrices", "image"]), json_values),
    min_size=1, max_size=3))
def test_fuzzed_explanation_json_loads_or_raises_an_explainkit_error(explanation_dicts, which, edits):
    d = json.loads(json.dumps(explanation_dicts[which]))
    for key, value in edits:
        d[key] = value
    try:
        exp = explainkit.Explanation.from_dict(d)
    except ExplainKitError:
        return
    assert repr(exp).startswith("<")              # what loads can be summarised
    assert isinstance(exp.scores, np.ndarray)


def test_a_real_explanation_round_trips_and_bad_top_k_is_one_error(explanation_dicts):
    from explainkit.errors import DataError, ParameterError

    for d in explanation_dicts:
        back = explainkit.Explanation.from_dict(d)
        assert json.loads(back.to_json())["scores"] == d["scores"]
    exp = explainkit.Explanation.from_dict(explanation_dicts[1])
    for bad in ("x", -1, True, 2.5):
        with pytest.raises(ParameterError, match="count of units"):
            exp.top_k(bad)
    with pytest.raises(ParameterError, match="Unknown ordering"):
        exp.top_k(3, by=None)
    with pytest.raises(DataError, match="target 7"):
        explainkit.Explanation.from_dict({**explanation_dicts[1], "target": 7})
    with pytest.raises(DataError, match="dict of fields"):
        explainkit.Explanation.from_dict(None)
