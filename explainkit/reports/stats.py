"""Streaming statistics for reports: global importance, method agreement, and .npz exports that never
hold all attributions in memory."""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from explainkit.enums import Modality, Task

__all__ = ["Importance", "Agreement", "NpzStream", "prediction_stats", "spearman"]

TOP_TOKENS = 20


def spearman(a, b) -> float:
    """Rank correlation of two score vectors (average ranks for ties); NaN if either is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def _ranks(x) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank (like scipy.stats.rankdata, minus one)."""
    x = np.ravel(np.asarray(x, dtype=np.float64))
    order = np.argsort(x, kind="mergesort")
    _, inv, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    ranks = np.empty(len(x))
    ranks[order] = (starts + (counts - 1) / 2.0)[inv]
    return ranks


class Importance:
    """Mean |attribution| per pixel (image), token string (text) or feature (tabular), accumulated."""

    def __init__(self, modality: Modality):
        self.modality = modality
        self.n = 0
        self.total = None                 # image / tabular: running sum of |scores|
        self.tokens: dict[str, list] = {}   # text: token -> [sum |s|, count]

    def add(self, exp) -> None:
        s = np.abs(np.asarray(exp.scores, dtype=np.float64))
        self.n += 1
        if self.modality is Modality.TEXT:
            for tok, v in zip(exp.tokens or [], s):
                acc = self.tokens.setdefault(tok.lower(), [0.0, 0])
                acc[0] += float(v)
                acc[1] += 1
        elif self.total is None or self.total.shape != s.shape:
            self.total = s.copy()
        else:
            self.total += s

    def mean(self):
        return None if self.total is None or not self.n else self.total / self.n

    def top_tokens(self, k: int = TOP_TOKENS) -> list[dict]:
        min_count = 2 if sum(c >= 2 for _, c in self.tokens.values()) >= k else 1
        rows = [(t, s / c, c) for t, (s, c) in self.tokens.items() if c >= min_count]
        rows.sort(key=lambda r: (-r[1], r[0]))
        return [{"unit": t, "value": f"{v:.4g}", "count": c} for t, v, c in rows[:k]]

    def figure_png(self, method: str, feature_names=None) -> bytes | None:
        """A picture of the global importance (pixel map or feature bars); None for text."""
        from explainkit.views import render

        m = self.mean()
        if m is None or self.modality is Modality.TEXT:
            return None
        if self.modality is Modality.IMAGE:       # numpy + PIL: a figure would cost ~0.3 s per method
            v = m.mean(axis=-1) if m.ndim == 3 else m
            return render.rgb_png(render._mpl().colormaps["magma"](v / max(float(v.max()), 1e-12))[..., :3], 196)
        names = list(feature_names or [f"x{i}" for i in range(len(m))])
        order = np.argsort(-m, kind="stable")[:20]
        fig = render._figure((5.6, 0.9 + 0.24 * len(order)))
        ax = fig.add_subplot()
        y = np.arange(len(order))[::-1]
        ax.barh(y, m[order], color="#8073ac")
        ax.set_yticks(y, [names[i] for i in order], fontsize=8)
        ax.set_xlabel("mean |attribution|", fontsize=8)
        ax.set_title(f"{method}: global importance", fontsize=9)
        return render.figure_png(fig)

    def table(self, feature_names=None, k: int = 15) -> list[dict]:
        if self.modality is Modality.TEXT:
            return self.top_tokens()
        m = self.mean()
        if m is None:
            return []
        if self.modality is Modality.IMAGE:    # 4x4 pixel regions, the most important first
            h, w = m.shape[:2]
            hb, wb = h // 4 * 4, w // 4 * 4
            pooled = m[:hb, :wb].reshape(hb // 4, 4, wb // 4, 4).mean(axis=(1, 3))
            order = np.argsort(-pooled.ravel(), kind="stable")[:8]
            return [{"unit": f"rows {r * 4}-{r * 4 + 3}, cols {c * 4}-{c * 4 + 3}",
                     "value": f"{pooled.ravel()[i]:.4g}", "count": self.n}
                    for i in order for r, c in [divmod(int(i), pooled.shape[1])]]
        names = list(feature_names or [f"x{i}" for i in range(len(m))])
        order = np.argsort(-m, kind="stable")[:k]
        return [{"unit": names[i], "value": f"{m[i]:.4g}", "count": self.n} for i in order]


class Agreement:
    """Mean pairwise rank correlation between methods, over the samples where both are defined."""

    def __init__(self, methods: list[str]):
        self.methods = list(methods)
        k = len(methods)
        self.sum = np.zeros((k, k))
        self.count = np.zeros((k, k), dtype=np.int64)

    def add(self, exps: list) -> None:
        for i in range(len(exps)):
            for j in range(i + 1, len(exps)):
                if exps[i] is None or exps[j] is None:      # a failed entry: this pair has no value here
                    continue
                r = spearman(exps[i].scores, exps[j].scores)
                if np.isfinite(r):
                    self.sum[i, j] += r
                    self.sum[j, i] += r
                    self.count[i, j] += 1
                    self.count[j, i] += 1

    def matrix(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.sum / self.count
        np.fill_diagonal(m, 1.0)
        return m

    def rows(self) -> list[dict]:
        m = self.matrix()
        return [{"method": a, "values": ["" if not np.isfinite(v) else f"{v:+.2f}" for v in m[i]]}
                for i, a in enumerate(self.methods)]

    def mean(self) -> float | None:
        m = self.matrix()
        iu = np.triu_indices(len(self.methods), 1)
        vals = m[iu][np.isfinite(m[iu])]
        return float(vals.mean()) if vals.size else None


class NpzStream:
    """Write arrays row by row to temp files, then pack them into one .npz (atomically) at the end."""

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = Path(tempfile.mkdtemp(prefix=".npz-", dir=self.path.parent))
        self.files: dict[str, tuple] = {}      # name -> (file, dtype, row shape, rows)

    def append(self, name: str, row) -> None:
        row = np.ascontiguousarray(row)
        if name not in self.files:
            self.files[name] = [open(self.tmp / f"{name}.bin", "wb"), row.dtype, row.shape, 0]
        f = self.files[name]
        if row.shape != f[2] or row.dtype != f[1]:
            raise ValueError(f"{name}: row {row.shape}/{row.dtype} differs from {f[2]}/{f[1]}")
        f[0].write(row.tobytes())
        f[3] += 1

    def extend(self, name: str, values) -> None:
        """Append a 1-D array as that many scalar rows (variable-length data: text tokens)."""
        values = np.ascontiguousarray(values).reshape(-1)
        if name not in self.files:
            self.files[name] = [open(self.tmp / f"{name}.bin", "wb"), values.dtype, (), 0]
        f = self.files[name]
        f[0].write(values.astype(f[1], copy=False).tobytes())
        f[3] += len(values)

    def close(self, extra: dict | None = None, publish: bool = True) -> Path:
        """Pack the arrays into one .npz; renamed onto ``path`` unless ``publish=False``, which returns the
        finished temp file for the caller to publish together with the files that go with it."""
        fd, part = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        done = False
        try:
            with os.fdopen(fd, "w+b") as dst, \
                    zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                for name, arr in (extra or {}).items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                        np.lib.format.write_array(out, np.asarray(arr), allow_pickle=False)
                for name, (fh, dtype, shape, rows) in self.files.items():
                    fh.close()
                    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                              "shape": (rows,) + tuple(shape)}
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as out, \
                            open(self.tmp / f"{name}.bin", "rb") as src:
                        np.lib.format.write_array_header_1_0(out, header)
                        shutil.copyfileobj(src, out, 1 << 20)
                zf.close()
                dst.flush()
                os.fsync(dst.fileno())
            if not publish:
                done = True
                return Path(part)
            os.replace(part, self.path)
        finally:
            if not done:
                Path(part).unlink(missing_ok=True)
            self.discard()
        return self.path

    def discard(self) -> None:
        for f in self.files.values():
            f[0].close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def prediction_stats(task: Task, classes, preds, probs_or_values, labels) -> dict:
    """Accuracy and a confusion matrix (classification), or error statistics (regression), on a selection."""
    if labels is None or len(labels) == 0:
        return {"n": int(len(preds)), "labelled": False}
    labels = np.asarray(labels)
    if task is Task.REGRESSION:
        err = np.asarray(probs_or_values, dtype=np.float64) - labels.astype(np.float64)
        return {"n": int(len(err)), "labelled": True, "mae": float(np.abs(err).mean()),
                "rmse": float(np.sqrt((err ** 2).mean())), "bias": float(err.mean()),
                "max_abs_error": float(np.abs(err).max())}
    k = len(classes)
    labels, preds = labels.astype(np.int64), np.asarray(preds, dtype=np.int64)
    # many classes (ImageNet: 1,000): only those that occur as a label or a prediction, else the matrix is
    # a million mostly-zero cells, megabytes in the JSON and the HTML
    shown = np.arange(k) if k <= MAX_CONFUSION_CLASSES else np.union1d(labels, preds)
    where = np.full(k, -1, dtype=np.int64)
    where[shown] = np.arange(len(shown))
    cm = np.zeros((len(shown), len(shown)), dtype=np.int64)
    np.add.at(cm, (where[labels], where[preds]), 1)
    return {"n": int(len(preds)), "labelled": True, "accuracy": float(np.mean(labels == preds)),
            "confusion": cm.tolist(), "confusion_classes": shown.tolist()}


MAX_CONFUSION_CLASSES = 20       # above this, the confusion matrix keeps only the classes that occur
