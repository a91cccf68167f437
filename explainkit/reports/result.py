"""A written report: the :class:`Report` object (paths, exports, notebook display) and its JSON index."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from explainkit.errors import DataError, ParameterError

__all__ = ["Report", "environment", "check_writable", "TEMPLATES"]

TEMPLATES = Path(__file__).resolve().parent / "templates"   # the report's own jinja2 templates


def environment() -> dict:
    """Versions of explainkit and its main dependencies, for the report header."""
    from explainkit import __version__
    out = {"explainkit": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("torch", "captum", "shap", "lime"):
        try:
            from importlib.metadata import version
            out[mod] = version(mod)
        except Exception:  # noqa: BLE001 - not installed
            pass
    return out


def check_writable(out, suffix: str | None = ".html") -> Path:
    """The output path (``suffix`` enforced), once its folder exists and takes a file; else one DataError.

    Called before any work, so an unwritable ``--out`` fails at once instead of after the explanations."""
    import tempfile

    out = Path(out)
    if suffix and out.suffix.lower() != suffix:
        out = out.with_suffix(suffix)
    fix = "pass an --out in a folder you can write to (or create it, or fix its permissions)."
    if out.is_dir():
        raise DataError(f"The output {out} is a directory.", "pass a file name, e.g. --out report.html.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out.parent, prefix=".explainkit-probe-"):
            pass
    except OSError as e:
        where = "a parent is a regular file" if isinstance(e, (FileExistsError, NotADirectoryError)) \
            else str(out.parent)
        raise DataError(f"Cannot write the output {out}: {e.strerror or type(e).__name__} ({where}).", fix) from None
    return out


class Report:
    """A written report: the HTML path, the exports beside it, and the JSON index; displays in notebooks."""

    def __init__(self, path, index: dict, summary: dict):
        self.path = Path(path)
        self.index = index
        self._summary = summary

    @property
    def npz_path(self) -> Path:
        return self.path.parent / self.index["files"]["attributions"]

    @property
    def json_path(self) -> Path:
        return self.path.parent / self.index["files"]["index"]

    def attributions(self, method: str) -> np.ndarray:
        """The scores of one method, ``[n_samples, ...units]`` (text: flat, split by ``<method>.offsets``)."""
        with np.load(self.npz_path, allow_pickle=False) as z:
            if f"{method}.scores" not in z.files:
                raise ParameterError(f"No method {method!r} in this report.",
                                     f"use one of: {', '.join(m['name'] for m in self.index['methods'])}.")
            return z[f"{method}.scores"]

    def explanations(self, method: str):
        """The report's explanations for one method, read lazily from the cache (None for a failed entry)."""
        from explainkit.reports.cache import Cache
        cache = Cache(self.index["cache_dir"])
        failed = (self.index.get("failures") or {}).get(method, {})
        for i, key in zip(self.index["indices"], self.index["keys"][method]):
            yield None if str(i) in failed else cache.get(key)

    def __repr__(self) -> str:
        s = self.index["summary"]
        acc = f" accuracy={s['accuracy']:.3f}" if s.get("accuracy") is not None else ""
        return (f"<Report {self.path.name!r} model={self.index['model']['name']!r} n={self.index['counts']['samples']}"
                f" methods={','.join(m['name'] for m in self.index['methods'])}{acc}>")

    def _repr_html_(self) -> str:
        from explainkit.views import render
        return render.template("report_notebook.html", search=[TEMPLATES]).render(**self._summary, path=str(self.path))


def _dump(path: Path, index: dict) -> None:
    from explainkit.atomic import atomic_write
    atomic_write(path, json.dumps(index, indent=1, sort_keys=False, default=str))
