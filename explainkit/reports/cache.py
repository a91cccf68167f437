"""Content-addressed cache of explanations (checksummed entries).

An entry's key is the sha256 of what determines the result: the model-weights hash, the input hash,
the method, its parameters, the seed and the plugin and explainkit versions. An entry file is
``MAGIC + sha256(payload) + payload`` where the payload is an ``.npz`` (no pickle) holding the
explanation's arrays and its JSON metadata. A truncated or altered entry fails the checksum, is deleted,
and reads as missing, so it is recomputed.

The checksum detects damage, not forgery: anyone who can write the cache folder can rewrite an entry and
its checksum. So an entry is only ever *data* (numbers and strings): it holds no HTML, and a report
re-renders every fragment from the cached scores and metadata through the autoescaped templates. Entries
written by older versions with an ``__html__`` member are still read for their data; that HTML is ignored.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from explainkit.atomic import atomic_write

__all__ = ["atomic_write", "Cache", "input_hash", "entry_key", "pack", "unpack"]

MAGIC = b"EKC1"
_ARRAYS = ("scores", "attributions", "probabilities", "image", "feature_values", "matrices", "errors", "photo")


def input_hash(sample) -> str:
    """sha256 of what the model sees for a sample (its prepared tensor) plus the raw text, if any."""
    t = sample.tensor
    arr = np.ascontiguousarray(t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t))
    h = hashlib.sha256(f"{arr.dtype}|{arr.shape}|".encode())
    h.update(arr.tobytes())
    if isinstance(sample.raw, str):
        h.update(sample.raw.encode("utf-8"))
    return h.hexdigest()


def entry_key(model_hash: str, in_hash: str, method: str, params: dict, seed: int, versions: dict) -> str:
    """The content address of one explanation."""
    ident = {"model": model_hash, "input": in_hash, "method": method, "seed": int(seed),
             "params": {k: params[k] for k in sorted(params)}, "versions": {k: versions[k] for k in sorted(versions)}}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def pack(exp) -> bytes:
    """An explanation as checksummed bytes (arrays + JSON metadata; never HTML)."""
    from explainkit.plugins.explanation import FORMAT_VERSION, _jsonable

    meta = {k: _jsonable(v) for k, v in exp.__dict__.items() if k not in _ARRAYS}
    meta["format_version"] = FORMAT_VERSION
    meta["class"] = type(exp).__name__
    arrays = {k: np.asarray(v) for k, v in exp.__dict__.items() if k in _ARRAYS and v is not None}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)          # uncompressed: reading back is ~2x faster; the PNGs are compressed
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def unpack(blob: bytes):
    """The Explanation in an entry; raises ValueError for a corrupt or unusable blob.

    An ``__html__`` member (written by older versions) is never read: fragments are re-rendered.
    """
    from explainkit.errors import ExplainKitError
    from explainkit.plugins.explanation import Explanation

    if len(blob) < 36 or blob[:4] != MAGIC or hashlib.sha256(blob[36:]).digest() != blob[4:36]:
        raise ValueError("checksum mismatch")
    try:
        with np.load(io.BytesIO(blob[36:]), allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            if not isinstance(meta, dict):
                raise TypeError("metadata is not an object")
            meta.update({k: z[k] for k in z.files if k in _ARRAYS})
        exp = Explanation.from_dict(meta)
    except (OSError, KeyError, TypeError, ValueError, UnicodeDecodeError, zipfile.BadZipFile, ExplainKitError) as e:
        raise ValueError(f"unreadable entry ({type(e).__name__})") from None
    if exp.scores is None:
        raise ValueError("entry has no scores")
    return exp


def _read(p: Path) -> tuple[bytes, int]:
    """An entry's bytes and inode (entries are replaced by rename, so the inode names one version)."""
    with open(p, "rb") as f:
        return f.read(), os.fstat(f.fileno()).st_ino


class Cache:
    """Explanations on disk by content address: ``root/ab/abcdef….ekc``."""

    def __init__(self, root):
        self.root = Path(root)
        self.corrupt = 0           # entries found corrupt (and removed) since this object was made

    def __repr__(self) -> str:
        return f"<Cache {str(self.root)!r}>"

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.ekc"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str):
        """The Explanation, or None when missing; a corrupt entry is removed and reads as None."""
        p = self.path(key)
        try:
            blob, ino = _read(p)
        except FileNotFoundError:
            return None
        try:
            return unpack(blob)
        except ValueError:
            self._drop(p, ino)
            return None

    def valid(self, key: str) -> bool:
        """True if the entry exists and passes its checksum (a corrupt one is removed)."""
        p = self.path(key)
        try:
            blob, ino = _read(p)
        except FileNotFoundError:
            return False
        if blob[:4] == MAGIC and hashlib.sha256(blob[36:]).digest() == blob[4:36]:
            return True
        self._drop(p, ino)
        return False

    def _drop(self, p: Path, ino: int) -> None:
        """Remove a corrupt entry, unless a concurrent run has meanwhile renamed a fresh one over it."""
        self.corrupt += 1
        try:
            if p.lstat().st_ino == ino:
                p.unlink()
        except FileNotFoundError:
            pass

    def write(self, key: str, blob: bytes) -> Path:
        """Store packed bytes atomically (a reader never sees a half-written entry)."""
        return atomic_write(self.path(key), blob)

    def put(self, key: str, exp) -> Path:
        return self.write(key, pack(exp))

    def get(self, key: str):
        """The cached Explanation, or None."""
        return self.read(key)

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*/*.ekc")) if self.root.is_dir() else []
