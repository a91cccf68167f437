"""Atomic file writes and output locks.

Every write goes to a temp file created exclusively (``tempfile.mkstemp``: ``O_CREAT | O_EXCL``, a random
name, mode 0600) in the target's folder, is fsynced, then published by ``os.replace``. No fixed temp name
is ever used, so a file or symlink planted beside the target is never opened or followed, and two writers
never share a temp file. ``output_lock`` serializes writers of the same output (``<target>.lock``).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from explainkit.errors import DataError, MissingDependencyError

__all__ = ["atomic_write", "atomic_open", "output_lock", "Staging"]


def atomic_write(path, data) -> Path:
    """Write bytes or str to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", encoding: str | None = "utf-8"):
    """A file object to stream into; on a clean exit it is fsynced and renamed onto ``path``.

    On an exception the temp file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only ('w' or 'wb'), not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Staging:
    """Several files published together: each is written to its own exclusive temp file beside its
    target, and only :meth:`publish` renames them onto their targets; :meth:`discard` (or an exception
    inside ``with``) removes them all, so a failed run leaves no new file behind."""

    def __init__(self):
        self._staged: list[tuple[Path, Path]] = []

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.discard()                  # after publish() there is nothing left to remove

    def add(self, tmp, path) -> None:
        """Adopt an already written temp file ``tmp`` as the next version of ``path``."""
        self._staged.append((Path(tmp), Path(path)))

    @contextlib.contextmanager
    def open(self, path, mode: str = "w", encoding: str | None = "utf-8"):
        """A file to stream ``path``'s new content into (mkstemp in its folder; fsynced on a clean exit)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self._staged.append((Path(tmp), path))
        with os.fdopen(fd, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())

    def write(self, path, data) -> None:
        with self.open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)

    def publish(self) -> None:
        """Rename every staged file onto its target, in the order they were staged."""
        for tmp, path in self._staged:
            os.replace(tmp, path)
        self._staged = []

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []


def output_lock(path, timeout: float = -1):
    """A ``filelock.FileLock`` on ``<path>.lock``, beside ``path``: one writer of that output at a time.

    ``timeout=-1`` waits as long as another run holds it.
    """
    try:
        import filelock
    except ImportError:
        raise MissingDependencyError("Serializing writers of a report needs the filelock package.",
                                     "pip install filelock") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _Lock(filelock.FileLock(str(path) + ".lock", timeout=timeout), path)


class _Lock:
    """Context manager around a FileLock that turns a timeout into a DataError with the fix."""

    def __init__(self, lock, path: Path):
        self.lock, self.path = lock, path

    def __enter__(self):
        import filelock
        try:
            self.lock.acquire()
        except filelock.Timeout:
            raise DataError(f"Another explainkit run is writing {self.path} (it holds {self.lock.lock_file}).",
                            "wait for it to finish, or write to another --out.") from None
        except OSError as e:          # e.g. ELOOP: a symlink planted at the lock's name is never followed
            raise DataError(f"Cannot open the lock file {self.lock.lock_file} ({e.strerror or e}).",
                            "remove that path if it is not a regular file, or write to another --out.") from None
        return self

    def __exit__(self, *exc):
        self.lock.release()
        return False
