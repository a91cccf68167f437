"""The dashboard's logic without widgets: predictions, filtering/sorting/paging, the result cache, jobs.

Everything here is plain Python + numpy, so it is tested without a browser or ipywidgets.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from explainkit.concurrency import MODEL_LOCK
from explainkit.enums import Modality, Task, _StrEnum
from explainkit.errors import DataError, InputError, PluginError

__all__ = ["Correctness", "SortKey", "ViewMode", "JobState", "Predictions", "Browser",
           "ExplanationCache", "Job", "cache_key", "params_hash", "spearman_matrix", "thumbnail",
           "rollout", "Cancelled", "shared_scale", "as_dataset", "with_scores", "quality_module"]


_Choice = _StrEnum          # str-valued choices shown in the UI (one enum base for the package)


class Correctness(_Choice):
    ALL = "all"
    CORRECT = "correct"
    INCORRECT = "incorrect"


class SortKey(_Choice):
    INDEX = "index"
    CONFIDENCE_ASC = "confidence (low first)"
    CONFIDENCE_DESC = "confidence (high first)"
    LOSS_DESC = "loss (high first)"


class ViewMode(_Choice):
    SIGNED = "signed"
    POSITIVE = "positive"
    ABSOLUTE = "absolute"


class JobState(_Choice):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    CACHED = "cached"
    CANCELLED = "cancelled"
    FAILED = "failed"


# -- predictions over the whole data set -------------------------------------------------------------
@dataclass
class Predictions:
    """All predictions of a model on a data set, computed once (batched): the browser's columns."""

    outputs: np.ndarray                 # probabilities [N,K] or values [N]
    labels: np.ndarray | None           # true labels [N] (or None)
    task: Task
    predicted: np.ndarray = field(init=False)
    confidence: np.ndarray = field(init=False)
    loss: np.ndarray = field(init=False)
    correct: np.ndarray | None = field(init=False)

    def __post_init__(self):
        out = np.asarray(self.outputs, dtype=np.float64)
        self.outputs = out
        n = len(out)
        if self.task is Task.CLASSIFICATION:
            self.predicted = out.argmax(axis=1) if n else np.zeros(0, dtype=int)
            self.confidence = out.max(axis=1) if n else np.zeros(0)
        else:
            self.predicted = out
            self.confidence = np.full(n, np.nan)
        if self.labels is None:
            self.correct, self.loss = None, np.zeros(n)
        elif self.task is Task.CLASSIFICATION:
            lab = np.asarray(self.labels).astype(int)
            self.correct = self.predicted == lab
            self.loss = -np.log(np.clip(out[np.arange(n), lab], 1e-12, 1.0))
        else:
            lab = np.asarray(self.labels, dtype=np.float64)
            self.correct = None
            self.loss = (out - lab) ** 2

    @classmethod
    def compute(cls, model, dataset, batch_size: int = 512) -> "Predictions":
        """Predict every item once, in batches (raw inputs are prepared by the model)."""
        raws = dataset.raws
        chunks = [model.predict([raws[j] for j in range(i, min(i + batch_size, len(raws)))],
                                batch_size=batch_size) for i in range(0, len(raws), batch_size)]
        if chunks:
            out = np.concatenate(chunks, axis=0)
        else:
            out = np.zeros((0, model.n_outputs)) if model.task is Task.CLASSIFICATION else np.zeros(0)
        return cls(out, dataset.labels, model.task)

    def __len__(self) -> int:
        return len(self.outputs)


# -- filtering, sorting and paging -------------------------------------------------------------------
class Browser:
    """Filters, sort order and page over a data set's predictions; ``page_indices()`` is what is shown."""

    def __init__(self, preds: Predictions, texts=None, page_size: int = 24):
        self.preds = preds
        self._texts = None if texts is None else [str(t).lower() for t in texts]
        self.page_size = int(page_size)
        self.true_class: int | None = None
        self.pred_class: int | None = None
        self.correctness = Correctness.ALL
        self.conf_range = (0.0, 1.0)
        self.search = ""
        self.sort = SortKey.INDEX
        self.page = 0
        self.subset: np.ndarray | None = None     # a boolean mask from the audit panel (cell, region, slice)
        self.follow: dict[int, int] = {}          # what-if: an edited copy -> its original, listed right after it
        self._indices: np.ndarray | None = None

    def set(self, **changes) -> None:
        """Change filters/sort (keyword names = attributes); the page goes back to the first."""
        for k, v in changes.items():
            if not hasattr(self, k) or k.startswith("_") or k in ("preds", "page"):
                raise InputError(f"Unknown browser setting {k!r}.",
                                 "use true_class, pred_class, correctness, conf_range, search, sort, subset "
                                 "or page_size.")
            if k == "subset" and v is not None:
                v = np.asarray(v, dtype=bool)
                if v.shape != (len(self.preds),):
                    raise InputError(f"subset has shape {v.shape}; the data has {len(self.preds)} samples.",
                                     "pass one True/False per sample, or None for all.")
            if k == "correctness":
                v = Correctness(v)
            if k == "sort":
                v = SortKey(v)
            setattr(self, k, v)
        self.page = 0
        self._indices = None

    @property
    def indices(self) -> np.ndarray:
        """All indices passing the filters, in the sort order."""
        if self._indices is None:
            self._indices = self._compute()
        return self._indices

    def _compute(self) -> np.ndarray:
        p = self.preds
        keep = np.ones(len(p), dtype=bool) if self.subset is None else self.subset.copy()
        if self.true_class is not None and p.labels is not None:
            keep &= np.asarray(p.labels) == self.true_class
        if self.pred_class is not None and p.task is Task.CLASSIFICATION:
            keep &= p.predicted == self.pred_class
        if self.correctness is not Correctness.ALL and p.correct is not None:
            keep &= p.correct if self.correctness is Correctness.CORRECT else ~p.correct
        lo, hi = self.conf_range
        if p.task is Task.CLASSIFICATION and (lo > 0.0 or hi < 1.0):
            keep &= (p.confidence >= lo) & (p.confidence <= hi)
        if self.search and self._texts is not None:
            q = self.search.lower()
            keep &= np.fromiter((q in t for t in self._texts), dtype=bool, count=len(self._texts))
        idx = np.flatnonzero(keep)
        if self.sort is SortKey.CONFIDENCE_ASC and p.task is Task.CLASSIFICATION:
            idx = idx[np.argsort(p.confidence[idx], kind="stable")]
        elif self.sort is SortKey.CONFIDENCE_DESC and p.task is Task.CLASSIFICATION:
            idx = idx[np.argsort(-p.confidence[idx], kind="stable")]
        elif self.sort is SortKey.LOSS_DESC:
            idx = idx[np.argsort(-p.loss[idx], kind="stable")]
        if self.follow:                           # each original, then its edited copies (in the order made)
            pos = {int(i): k for k, i in enumerate(idx)}
            first = [pos.get(self.follow.get(int(i), -1), k) for k, i in enumerate(idx)]
            idx = idx[np.lexsort(([int(i) if int(i) in self.follow else -1 for i in idx], first))]
        return idx

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self.indices) // self.page_size))

    def go(self, page: int) -> int:
        """Move to a page (clamped); returns the page shown."""
        self.page = int(min(max(page, 0), self.n_pages - 1))
        return self.page

    def page_indices(self) -> list[int]:
        s = self.page * self.page_size
        return [int(i) for i in self.indices[s:s + self.page_size]]


# -- the result cache ---------------------------------------------------------------------------------
def check_index(index, n: int) -> int:
    """A sample index in ``0..n-1``, or one InputError naming the range."""
    index = int(index)
    if not 0 <= index < n:
        raise InputError(f"Sample index {index} is out of range for {n} samples.",
                         f"pass an index between 0 and {n - 1}.")
    return index


def params_hash(params: dict, target=None, seed: int = 0) -> str:
    """A short stable hash of the parameters, target and seed (for keys and data-ek-key)."""
    blob = json.dumps({"p": params, "t": target, "s": seed}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def cache_key(index: int, method: str, params: dict, target, seed: int) -> tuple:
    return (int(index), str(method), params_hash(params, target, seed), target, int(seed))


class ExplanationCache:
    """In-memory LRU of explanations keyed by (sample index, method, params, target, seed)."""

    def __init__(self, maxsize: int = 512):
        self.maxsize = int(maxsize)
        self._data: OrderedDict = OrderedDict()
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __contains__(self, key) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list:
        return list(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __repr__(self) -> str:
        return f"<ExplanationCache n={len(self)} hits={self.hits} misses={self.misses}>"


# -- background jobs -------------------------------------------------------------------------------------
class Cancelled(BaseException):
    """Raised inside a job's thread by :meth:`Job.cancel` (a BaseException so plugins cannot swallow it)."""


class Job:
    """Runs ``fn()`` in a daemon thread; ``cancel()`` interrupts it at its next Python bytecode.

    Cancellation is delivered asynchronously into the worker thread, so a pure-Python loop (SHAP's and
    LIME's batches, ``predict_masked`` chunks) stops at its next step; a single long native call (one torch
    op) finishes first. A cancelled job never calls ``on_done``.
    """

    _model_lock = MODEL_LOCK             # one computation at a time: captum hooks share the module

    def __init__(self, fn, on_done, on_error, name: str = "job"):
        self.fn, self.on_done, self.on_error, self.name = fn, on_done, on_error, name
        self.state = JobState.IDLE
        self.started = self.finished = None
        self._cancel = threading.Event()
        self._in_fn = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"explainkit-{name}", daemon=True)

    def start(self) -> "Job":
        self.state = JobState.RUNNING
        self.started = time.perf_counter()
        self._thread.start()
        return self

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _run(self) -> None:
        try:
            with Job._model_lock:
                if self._cancel.is_set():
                    raise Cancelled()
                with self._in_fn:
                    self._computing = True
                try:
                    result = self.fn()
                finally:
                    with self._in_fn:
                        self._computing = False
        except Cancelled:
            self.state, self.finished = JobState.CANCELLED, time.perf_counter()
            return
        except (Exception, SystemExit) as e:  # noqa: BLE001 - reported to the UI's error panel (never "running")
            self.state, self.finished = JobState.FAILED, time.perf_counter()
            if not self._cancel.is_set():
                self.on_error(e if isinstance(e, Exception) else
                              PluginError(f"The computation called sys.exit({e.code!r}).",
                                          "report it to the explainer's author; choose another explainer."))
            return
        self.finished = time.perf_counter()
        if self._cancel.is_set():
            self.state = JobState.CANCELLED
            return
        self.state = JobState.DONE
        try:
            self.on_done(result)
        except Exception as e:  # noqa: BLE001 - a failing view update must reach the error panel, not vanish
            self.state = JobState.FAILED
            self.on_error(e)

    _computing = False

    def cancel(self) -> None:
        """Stop the job: interrupt the computation if it is running, and discard any result."""
        self._cancel.set()
        with self._in_fn:
            if self._computing and self._thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread.ident),
                                                           ctypes.py_object(Cancelled))

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


# -- small numeric helpers ----------------------------------------------------------------------------
def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # average ranks over ties
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def spearman_matrix(score_list) -> np.ndarray:
    """Pairwise Spearman rank correlation between flattened score arrays (NaN where one is constant)."""
    ranks = [_ranks(np.asarray(s, dtype=np.float64).reshape(-1)) for s in score_list]
    n = len(ranks)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = ranks[i] - ranks[i].mean(), ranks[j] - ranks[j].mean()
            den = np.sqrt((a * a).sum() * (b * b).sum())
            out[i, j] = out[j, i] = float((a * b).sum() / den) if den > 0 else np.nan
    return out


def thumbnail(raw, max_side: int = 56) -> tuple[int, int, int, bytes]:
    """A compact uint8 thumbnail (h, w, channels, bytes) of an image input, subsampled to ``max_side``."""
    arr = np.asarray(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        arr = np.clip(arr * 255.0 if arr.max(initial=0) <= 1.0 else arr, 0, 255).astype(np.uint8)
    step = max(1, int(np.ceil(max(arr.shape[:2]) / max_side)))
    arr = np.ascontiguousarray(arr[::step, ::step])
    c = 1 if arr.ndim == 2 else arr.shape[2]
    return arr.shape[0], arr.shape[1], c, arr.tobytes()


def rollout(matrices: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema): heads averaged, identity added, rows renormalised, layers chained."""
    m = np.asarray(matrices, dtype=np.float64)
    t = m.shape[-1]
    out = np.eye(t)
    for layer in m:
        a = 0.5 * layer.mean(axis=0) + 0.5 * np.eye(t)
        a = a / a.sum(axis=-1, keepdims=True)
        out = a @ out
    return out


def texts_of(dataset, modality: Modality):
    """The raw strings of a text data set (for search), else None."""
    return list(dataset.raws) if modality is Modality.TEXT else None


def shared_scale(exps):
    """Comparison maps on one color scale: each divided by its total |score|; vmax and Spearman ρ."""
    normed = [e.scores / (np.abs(e.scores).sum() or 1.0) for e in exps]
    vmax = max(float(np.percentile(np.abs(s), 99)) for s in normed) or 1.0
    return normed, vmax, spearman_matrix([e.scores for e in exps])


def with_scores(exp, scores):
    """A shallow copy of an Explanation with other scores (for the normalized comparison maps)."""
    import copy
    out = copy.copy(exp)
    out.scores = np.asarray(scores, dtype=np.float64)
    return out


def as_dataset(model, dataset):
    """The dashboard's data: a Dataset of the model's modality, a list of inputs, or the shipped data."""
    from explainkit.data import datasets
    if dataset is None:
        family = model.config.get("family")
        if not family:
            raise DataError(f"No data given for model {model.name!r}, and it has no shipped data.",
                            "pass dataset=explainkit.datasets.from_arrays(...) (or a list of inputs).")
        return datasets.sample_data(family)
    if isinstance(dataset, datasets.Dataset):
        if dataset.modality is not model.modality:
            raise InputError(f"The data is {dataset.modality.value} but the model is {model.modality.value}.",
                             "pass data of the model's modality.")
        if len(dataset) == 0:
            raise InputError("The data set is empty.", "pass at least one sample.")
        return dataset
    raws = list(dataset) if not isinstance(dataset, np.ndarray) else dataset
    if len(raws) == 0:
        raise InputError("The data set is empty.", "pass at least one sample.")
    return datasets.Dataset(raws, modality=model.modality, class_names=model.classes,
                            feature_names=model.feature_names, name="data")


def quality_module():
    """explainkit.quality if it is importable (the trust badge is hidden otherwise)."""
    try:
        from explainkit.trust import quality
    except ImportError:
        return None
    return quality if callable(getattr(quality, "assess", None)) else None
