"""Small inputs that claim huge sizes are refused before anything is allocated, under a real memory cap."""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from explainkit.cli.specs import MAX_SELECTION, parse_selection
from explainkit.data.tokenizer import MAX_LEN_CAP, MAX_TEXT_CHARS, Tokenizer
from explainkit.errors import DataError, InputError, ParameterError

CAP_KB = 3_000_000        # ulimit -v for the child: 3 GB of address space (torch itself maps about 1.3 GB)


def run_capped(code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python whose address space is capped at CAP_KB (as `ulimit -v` does)."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    cmd = ["bash", "-c", f"ulimit -v {CAP_KB} && exec {sys.executable} {script}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def fake_npz(path, shape, dtype="<f4", name="images"):
    """A few hundred bytes of .npz whose header claims an array of ``shape`` (the data is missing)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}.npy", buf.getvalue())
    return path


def test_a_huge_select_range_is_refused_before_it_is_built(tmp_path):
    proc = run_capped(f"""
        import sys
        from explainkit.cli.main import main
        sys.exit(main(["report", "--model", "sample:mnist-cnn", "--select", "0-300000000",
                       "--out", "{tmp_path / 'r.html'}"]))
    """, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "over the limit" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.html").exists()


def test_select_ranges_are_checked_in_order_count_and_bounds():
    assert parse_selection("2-4,9") == [2, 3, 4, 9]
    with pytest.raises(ParameterError, match="backwards"):
        parse_selection("9-2")
    with pytest.raises(ParameterError, match="past the data's 10 samples"):
        parse_selection("0-10", n=10)
    with pytest.raises(ParameterError, match=f"{MAX_SELECTION:,}"):
        parse_selection(f"0-{MAX_SELECTION}")
    assert len(parse_selection(f"0-{MAX_SELECTION - 1}")) == MAX_SELECTION


def test_an_npz_header_claiming_a_billion_images_is_a_data_error(tmp_path, mnist_cnn):
    bogus = fake_npz(tmp_path / "bogus.npz", (10**9, 28, 28))
    assert bogus.stat().st_size < 1000
    from explainkit.data.files import load_path

    with pytest.raises(DataError, match="claims shape"):
        load_path(bogus, mnist_cnn)
    proc = run_capped(f"""
        import explainkit as ek
        from explainkit.data.files import load_path
        from explainkit.errors import DataError
        try:
            load_path("{bogus}", ek.load_sample("mnist-cnn"))
        except DataError as e:
            print("refused:", e)
    """, tmp_path)
    assert proc.returncode == 0 and "refused:" in proc.stdout, proc.stderr[-2000:]


def test_a_real_npz_within_the_limit_still_loads(tmp_path, mnist_cnn, load_data):
    from explainkit.data.files import load_path

    data = load_data("mnist-cnn")
    np.savez_compressed(tmp_path / "few.npz", images=data.raws[:4], labels=data.labels[:4])
    got = load_path(tmp_path / "few.npz", mnist_cnn)
    np.testing.assert_array_equal(got.raws, data.raws[:4])


def test_tokenizer_max_len_and_text_length_have_caps():
    with pytest.raises(ParameterError, match=f"1..{MAX_LEN_CAP}"):
        Tokenizer(["a"], max_len=10**7)
    with pytest.raises(ParameterError, match="whole number"):
        Tokenizer(["a"], max_len="abc")
    tok = Tokenizer(["good", "film"], max_len=8)
    with pytest.raises(InputError, match="over the limit"):
        tok.encode("x" * (MAX_TEXT_CHARS + 1))
    enc = tok.encode("good film " * 1000)
    assert len(enc.ids) == 8 and enc.truncated and enc.ids[:2] == [tok.index["good"], tok.index["film"]]


def test_a_megabyte_of_text_stays_small_under_the_cap(tmp_path):
    """1 MB of text through a text model: only max_len tokens are built, so it fits in the capped child."""
    proc = run_capped("""
        import resource, warnings
        import explainkit as ek
        model = ek.load_sample("sst2-lstm")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            sample = model.prepare("a gripping, beautifully acted film. " * 30_000)
            exp = ek.explain(model, sample.raw, "saliency")
        grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(len(sample.tokens), exp.scores.shape[0], round(grew_mb))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n_tokens, n_scores, grew_mb = map(int, proc.stdout.split())
    assert n_tokens == n_scores == 64           # sst2-lstm's max_len
    assert grew_mb < 200, grew_mb
