"""Scripted explanation reports: one self-contained HTML file, with .npz attributions and a JSON index beside it.

``explainkit.report(model, data, methods=[...])`` (or ``explainkit report ...``) selects samples, explains
them with each method in batches (serially, on a process pool, or on Dask), persists every explanation
in a content-addressed cache as soon as it is computed (so an interrupted run resumes where it
stopped), then streams over the cache to write global statistics, exports and the HTML.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explainkit.enums import Task, _StrEnum
from explainkit.errors import DataError, InputError, ParameterError, UnknownNameError
from explainkit.reports.result import Report, _dump

__all__ = ["report", "Report", "Selection"]

MAX_SECTIONS = 100          # per-sample sections in the HTML (exports and statistics cover every sample)
BATCH_SIZE = 8              # samples per chunk (a chunk is the unit of work and of persistence)
PREDICT_BATCH = 256         # rows per prediction batch while selecting
LOW_CONFIDENCE = 0.7        # 'low-confidence': top-class probability below this


class Selection(_StrEnum):
    """Which samples a report explains (or a list of indices such as '1,5,9' or '0-99')."""
    ALL = "all"
    MISCLASSIFIED = "misclassified"      # regression: absolute error above the mean absolute error
    LOW_CONFIDENCE = "low-confidence"


@dataclass
class MethodRun:
    name: str
    title: str
    params: dict
    seed: int
    stochastic: bool
    plugin: str
    plugin_version: str

    @property
    def versions(self) -> dict:
        from explainkit import __version__
        return {"explainkit": __version__, "plugin": self.plugin, "plugin_version": self.plugin_version}


def _methods(methods, model, seed: int, reg=None) -> list[MethodRun]:
    """Method names, (name, params) pairs or a {name: params} dict (the CLI parses its own strings)."""
    from explainkit.errors import NotApplicableError
    from explainkit.plugins.registry import registry

    if isinstance(methods, str):
        methods = [methods]
    items = list(methods.items()) if isinstance(methods, dict) else list(methods)
    if not items:
        raise ParameterError("No methods given.", "pass methods=['integrated_gradients', ...].")
    runs, reg = [], reg or registry()
    for item in items:
        if isinstance(item, str):
            name, params = item.strip(), {}
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            name, params = item[0], dict(item[1] or {})
        else:
            raise ParameterError(f"Method {item!r} is neither a name nor a (name, params) pair.",
                                 "pass methods=['occlusion', ('lime', {'n_samples': 500})].")
        entry = reg.entries.get(name)         # a broken entry still runs: it fails only its own entries
        if entry is None or entry.spec is None or not entry.spec.applies_to(model):
            entry = reg.get(name, model)      # an alias, or one clear error for an unknown name
        name = entry.name                     # the canonical name (an alias resolves for this model)
        why = entry.spec.why_not(model)
        if why:
            raise NotApplicableError(f"{name} does not apply to {model.name!r}: {why}",
                                     "choose from: " + ", ".join(s.name for s in reg.applicable(model)) + ".")
        if any(r.name == name for r in runs):
            raise ParameterError(f"Method {name!r} is listed twice.", "list each method once.")
        values = entry.spec.validate_params(dict(params or {}), model=model)
        runs.append(MethodRun(name, entry.spec.title, values, int(seed), entry.spec.stochastic, entry.distribution,
                              entry.version))
    return runs


def _predict(model, raws) -> np.ndarray:
    out = model.predict(list(raws))
    return np.asarray(out, dtype=np.float64)


def _empty(model) -> np.ndarray:
    return np.zeros((0, model.n_outputs)) if model.task is Task.CLASSIFICATION else np.zeros(0)


def _select(select, model, data, limit) -> tuple[np.ndarray, str, np.ndarray]:
    """The chosen indices, the rule's name, and the model's outputs for exactly those rows.

    Only what the selection needs is predicted: an index list or 'all' (+ limit) predicts the chosen rows;
    'misclassified' and 'low-confidence' stream the data in batches and stop once ``limit`` rows are chosen."""
    n, labels = len(data), data.labels
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or int(limit) < 1):
        raise ParameterError(f"limit must be a positive integer; got {limit!r}.", "pass --limit 50, say.")
    cap = n if limit is None else int(limit)
    if not isinstance(select, (str, Selection)):
        try:
            idx = [int(i) for i in select]
        except (TypeError, ValueError):
            raise ParameterError(f"select must be a selection name or a sequence of indices; got {select!r}.",
                                 "pass select='misclassified' or select=[1, 5, 9].") from None
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise InputError(f"Index {bad[0]} is out of range for {n} samples.", f"pass indices in 0..{n - 1}.")
        chosen, rule = np.asarray(idx[:cap], dtype=np.int64), f"indices {_ranges(idx)}"
    else:
        try:
            rule = Selection.parse(str(select).strip().lower())
        except UnknownNameError:
            raise UnknownNameError(f"Unknown selection {select!r}.", "use all, misclassified, low-confidence, "
                                   "or a list of indices.") from None
        if rule is Selection.MISCLASSIFIED and labels is None:
            raise DataError("'misclassified' needs labels, and this data has none.", "use --select all.")
        if rule is Selection.LOW_CONFIDENCE and model.task is not Task.CLASSIFICATION:
            raise ParameterError("'low-confidence' needs class probabilities; this is a regression model.",
                                 "use --select misclassified (large errors) or all.")
        if rule is Selection.ALL:
            chosen = np.arange(min(cap, n), dtype=np.int64)
        else:
            return _streamed(rule, model, data, cap)
        rule = rule.value
    outputs = _empty(model)
    if len(chosen):
        outputs = np.concatenate([_predict(model, [data.raws[int(j)] for j in chosen[i:i + PREDICT_BATCH]])
                                  for i in range(0, len(chosen), PREDICT_BATCH)], axis=0)
    return chosen, rule, outputs


def _rows(data, i: int) -> list:
    return [data.raws[j] for j in range(i, min(i + PREDICT_BATCH, len(data)))]


def _streamed(rule, model, data, cap) -> tuple[np.ndarray, str, np.ndarray]:
    """misclassified / low-confidence: predict in batches, keep the chosen rows, stop at ``cap`` chosen."""
    n, labels = len(data), data.labels
    chosen, outs = [], []
    if rule is Selection.MISCLASSIFIED and model.task is not Task.CLASSIFICATION:
        # the threshold is the mean absolute error over all the data: it needs every prediction (scalars)
        errs = []
        for i in range(0, n, PREDICT_BATCH):
            y = _predict(model, _rows(data, i))
            errs.append(np.abs(y - labels[i:i + PREDICT_BATCH].astype(np.float64)))
            outs.append(y)
        err, y = (np.concatenate(errs), np.concatenate(outs)) if errs else (np.zeros(0), np.zeros(0))
        idx = np.flatnonzero(err > err.mean())[:cap] if err.size else np.zeros(0, np.int64)
        return idx.astype(np.int64), rule.value, y[idx]
    for i in range(0, n, PREDICT_BATCH):
        y = _predict(model, _rows(data, i))
        hit = (y.argmax(axis=1) != labels[i:i + len(y)]) if rule is Selection.MISCLASSIFIED \
            else (y.max(axis=1) < LOW_CONFIDENCE)
        for j in np.flatnonzero(hit)[: cap - len(chosen)]:
            chosen.append(i + int(j))
            outs.append(y[j])
        if len(chosen) >= cap:
            break
    return np.asarray(chosen, dtype=np.int64), rule.value, np.asarray(outs) if outs else _empty(model)


def _ranges(idx: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5' (how the report names an index selection)."""
    parts, start = [], None
    for a, b in zip(idx, idx[1:] + [None]):
        start = a if start is None else start
        if b != a + 1:
            parts.append(str(a) if a == start else f"{start}-{a}")
            start = None
    return ",".join(parts)


def _chunks(runs, keys, missing, indices, data, max_sections, batch_size, view, registry=None):
    from explainkit.reports.executors import Chunk, Item

    out = []
    for m, run in enumerate(runs):
        size = 1 if run.stochastic else batch_size     # stochastic: the same numbers however the run is cut
        for start in range(0, len(indices), size):
            items = [Item(int(indices[p]), data.raws[int(indices[p])], _label(data, indices[p]), keys[m][p],
                          p < max_sections) for p in range(start, min(start + size, len(indices))) if missing[m][p]]
            if items:
                out.append(Chunk(run.name, run.params, run.seed, items, view, registry))
    return out


def _label(data, i):
    return None if data.labels is None else data.labels[int(i)].item()


def report(model, data=None, methods=("integrated_gradients",), *, select="all", limit=None, seed: int = 0,
           out="report.html", workers: int = 1, executor="local", address=None, cache_dir=None,
           quality: bool | None = None, view="signed", max_sections: int = MAX_SECTIONS, batch_size: int = BATCH_SIZE,
           progress: bool = True, on_progress=None, client=None, registry=None, prompts=None, target=None,
           units="words", max_new_tokens: int = 16, contrast=None, n_random: int = 8, slices=None,
           dependence=None, min_count: int = 2, audit: str = "selection") -> "Report":
    """Explain a selection of samples with several methods and write a self-contained HTML report.

    ``model``: a model adapter (``ek.load_sample``, ``ek.load``, ``ek.wrap``). ``data``: a Dataset, or None
    for the model's shipped held-out data. ``methods``: names, (name, params) pairs or a {name: params}
    dict. ``select``: all, misclassified, low-confidence, or a sequence of indices. Cached explanations are
    reused (``cache_dir``, default beside ``out``); ``on_progress(event)`` is called after every finished chunk.
    ``registry``: a private plugin Registry (default: the process-wide one). An explainer that raises fails
    only its own entries: the report is written, and ``index["failures"]`` = {method: {sample index: reason}}.
    ``quality``: trust metrics per method (default: off for classifiers, on for language models).

    A language model (``lm = ek.load_sample("smollm2-135m")``) takes ``prompts=[...]`` instead of data, and
    the generation inputs ``target``, ``units``, ``max_new_tokens``, ``contrast`` and ``n_random`` (random
    orders for the trust badge); see :mod:`explainkit.reports.generation`: one section per prompt.

    The dataset-level section: ``audit`` = 'selection' (confusion and slices over every selected sample, no
    extra predictions) or 'data' (every row of ``data``, predicted once in batches); ``slices`` = {name: spec} (see
    :mod:`explainkit.views.aggregate`; default: by class, confidence band, text length or a feature's range),
    ``dependence`` = a tabular feature (or a (feature, colour-by) pair) for the dependence plot, ``min_count``
    = how often a word must occur for its mean signed score to be listed.
    """
    from explainkit.data import datasets
    from explainkit.models.adapter import ModelAdapter
    from explainkit.reports.cache import Cache, input_hash
    from explainkit.reports.executors import Failed, run_chunks
    from explainkit.views import render

    t_start = time.perf_counter()
    timings = {}
    if not isinstance(model, ModelAdapter):
        raise ParameterError(f"report() takes a model object, not {type(model).__name__} {model!r:.60}.",
                             "pass ek.load_sample('mnist-cnn'), ek.load(path) or ek.wrap(module, ...); "
                             "'sample:NAME' specs are for the command line.")
    timings["load_model_s"] = time.perf_counter() - t_start
    from explainkit.reports.result import check_writable
    out = check_writable(out)
    if getattr(model, "generates", False) or prompts is not None:
        return _generation(model, data, prompts, methods, out, seed=seed, quality=quality, registry=registry,
                           progress=progress, on_progress=on_progress, target=target, units=units,
                           max_new_tokens=max_new_tokens, contrast=contrast, n_random=n_random)
    quality = bool(quality)
    view = render.View.parse(view)
    from explainkit.reports.executors import Executor
    Executor.parse(executor)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError(f"workers must be a positive integer; got {workers!r}.", "pass --workers 1 or more.")
    runs = _methods(methods, model, seed, registry)
    from explainkit.reports.audit import check_dependence, check_scope
    from explainkit.views.aggregate import SignedImportance, check_slices
    audit = {"slices": None if slices is None else check_slices(slices), "min_count": min_count,
             "dependence": check_dependence(dependence, model.feature_names), "scope": check_scope(audit)}
    SignedImportance(model.modality, min_count)           # one clear error for a bad min_count, before any work
    if not isinstance(batch_size, int) or batch_size < 1 or not isinstance(max_sections, int) or max_sections < 0:
        raise ParameterError("batch_size must be >= 1 and max_sections >= 0.", "pass batch_size=8, max_sections=100.")
    t = time.perf_counter()
    if data is None:
        data = datasets.sample_data(model.config.get("family") or model.modality.value)
    elif not isinstance(data, datasets.Dataset):
        raise ParameterError(f"report() takes a Dataset, not {type(data).__name__} {data!r:.60}.",
                             "pass None (the shipped data), ek.datasets.sample_data(NAME) or "
                             "ek.datasets.load_path(path, model) for a data file.")
    if data.modality is not model.modality:
        raise DataError(f"The data is {data.modality.value} but the model takes {model.modality.value}.",
                        "pass data of the model's modality.")
    timings["load_data_s"] = time.perf_counter() - t
    from explainkit.reports.audit import try_slices
    try_slices(model, data, audit["slices"])
    from explainkit.atomic import output_lock

    with output_lock(out):           # <out>.lock: runs into the same --out take turns, never share a file
        fingerprint = _fingerprint(model, data, runs, select, limit, view, max_sections, quality, audit)
        current = _up_to_date(out, fingerprint, t_start, timings)
        if current is not None:          # nothing changed since the last complete run: nothing to redo
            return current
        t = time.perf_counter()
        indices, rule, outputs = _select(select, model, data, limit)      # outputs: [len(indices), ...]
        timings["predict_s"] = time.perf_counter() - t

        cache = Cache(Path(cache_dir) if cache_dir else out.parent / ".explainkit-cache")
        model_hash = model.weights_hash()
        in_hashes = [input_hash(model.prepare(data.raws[int(i)], None, int(i))) for i in indices]
        from explainkit.reports.cache import entry_key
        keys = [[entry_key(model_hash, h, r.name, r.params, r.seed, r.versions) for h in in_hashes] for r in runs]
        missing = [[not cache.valid(k) for k in ks] for ks in keys]
        chunks = _chunks(runs, keys, missing, indices, data, max_sections, batch_size, view.value, registry)
        todo = sum(len(c.items) for c in chunks)
        done = {"n": 0, "chunks": 0}
        bar = _progress(todo, progress)

        failed = {}                       # cache key -> reason (nothing is cached for a failed entry)

        def on_result(results):
            for key, blob in results:
                if isinstance(blob, Failed):
                    failed[key] = blob.reason
                else:
                    cache.write(key, blob)
            done["n"] += len(results)
            done["chunks"] += 1
            bar.update(len(results))
            if on_progress is not None:
                on_progress({"done": done["n"], "total": todo, "chunks": done["chunks"], "cache": cache})

        t = time.perf_counter()
        try:
            run_chunks(chunks, model, executor=executor, workers=workers, address=address,
                       on_result=on_result, client=client,
                       on_client=(lambda c: on_progress({"done": 0, "total": todo, "chunks": 0, "client": c}))
                       if on_progress else None)
        finally:
            bar.close()
        timings["explain_s"] = time.perf_counter() - t
        counts = {"samples": int(len(indices)), "explanations": int(len(indices) * len(runs)),
                  "computed": done["n"], "cached": int(len(indices) * len(runs) - todo),
                  "corrupt_recomputed": cache.corrupt, **({"failed": len(failed)} if failed else {})}
        counts["computed"] -= len(failed)
        failures = {r.name: {str(int(indices[p])): failed[k] for p, k in enumerate(keys[m]) if k in failed}
                    for m, r in enumerate(runs)}
        failures = {name: f for name, f in failures.items() if f}

        from explainkit.reports.build import build
        rep = build(model=model, data=data, runs=runs, indices=indices, rule=rule, limit=limit, keys=keys,
                     outputs=outputs, cache=cache, out=out, view=view, max_sections=max_sections, quality=quality,
                     timings=timings, counts=counts, t_start=t_start, failures=failures,
                     executor={"executor": str(executor), "workers": int(workers), "address": address},
                     audit=audit)
        _seal(rep, fingerprint)
        return rep


def _generation(model, data, prompts, methods, out, *, seed, quality, registry, **kw):
    """report() for a language model: prompts in, one section per prompt (explainkit.reports.generation)."""
    from explainkit.atomic import output_lock
    from explainkit.reports.generation import check_prompts, generation_report

    if not getattr(model, "generates", False):
        raise ParameterError(f"prompts= is for language models; {model.name!r} is a {model.modality.value} model.",
                             "pass data=... (or None for the shipped data) instead of prompts.")
    if data is not None:
        raise ParameterError("A language model's report takes prompts, not data.",
                             "pass prompts=['What is the capital of France?', ...].")
    prompts = check_prompts(prompts)
    runs = _methods(methods, model, seed, registry)
    with output_lock(out):
        return generation_report(model, prompts, runs, out=out, quality=True if quality is None else bool(quality),
                                 registry=registry, **kw)


def _spec_key(spec):
    """A slice spec as JSON: a predicate by its code, constants and closure (so an edited lambda rebuilds)."""
    if not callable(spec):
        return spec
    code = getattr(spec, "__code__", None)
    cells = [repr(c.cell_contents) for c in (getattr(spec, "__closure__", None) or ())]
    return [getattr(spec, "__qualname__", repr(spec)), None if code is None else code.co_code.hex(),
            None if code is None else repr(code.co_consts), cells]


def _fingerprint(model, data, runs, select, limit, view, max_sections, quality, audit=None) -> str:
    """What a report depends on: model weights, every input and label, selection, methods and options."""
    import hashlib

    h = hashlib.sha256()
    h.update(json.dumps({"model": model.weights_hash(), "select": str(select), "limit": limit,
                         "methods": [[r.name, r.params, r.seed, r.versions] for r in runs],
                         "view": str(view), "sections": max_sections, "quality": bool(quality),
                         "format": "explainkit-report/1", "audit": {
                             **(audit or {}), "slices": None if not (audit or {}).get("slices") else
                             {k: _spec_key(v) for k, v in audit["slices"].items()}}},
                        sort_keys=True, default=str).encode())
    for raw in data.raws:
        h.update(raw.encode("utf-8") if isinstance(raw, str) else np.ascontiguousarray(raw).tobytes())
    if data.labels is not None:
        h.update(np.ascontiguousarray(data.labels).tobytes())
    return h.hexdigest()


def _file_sha(path: Path) -> str | None:
    import hashlib
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _seal(rep: "Report", fingerprint: str) -> None:
    """Record the fingerprint and the written files' hashes in the JSON index (for up-to-date checks)."""
    rep.index["fingerprint"] = fingerprint
    rep.index["sha256"] = {"html": _file_sha(rep.path), "attributions": _file_sha(rep.npz_path)}
    rep.index["summary_view"] = rep._summary
    rep.index["entry_sha256"] = _entry_hashes(rep.index)
    _dump(rep.json_path, rep.index)


def _entry_hashes(index: dict) -> list | None:
    """sha256 of every cache entry behind the report (contents, not size or mtime): an entry damaged or
    rewritten in any way forces a rebuild, which re-verifies every checksum."""
    from explainkit.reports.cache import Cache

    cache = Cache(index["cache_dir"])
    hashes = []
    for keys in index["keys"].values():
        for k in keys:
            h = _file_sha(cache.path(k))
            if h is None:
                return None
            hashes.append(h)
    return hashes


def _up_to_date(out: Path, fingerprint: str, t_start: float, timings: dict) -> "Report | None":
    """The existing report, if it was written for exactly these inputs and its files are intact."""
    json_path = out.with_suffix(".json")
    try:
        index = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("fingerprint") != fingerprint or index.get("failures"):
        return None                      # a report with failed entries is never up to date: retry them
    sha = index.get("sha256") or {}
    if sha.get("html") is None or sha.get("html") != _file_sha(out) or \
            sha.get("attributions") != _file_sha(out.parent / index["files"]["attributions"]):
        return None
    recorded = index.get("entry_sha256")
    if recorded is None or recorded != _entry_hashes(index):
        return None
    n = int(index["counts"]["explanations"])
    index["counts"] = {**index["counts"], "computed": 0, "cached": n, "corrupt_recomputed": 0,
                       "up_to_date": True}
    index["timings"] = {**timings, "explain_s": 0.0, "html_s": 0.0, "total_s": time.perf_counter() - t_start}
    _dump(json_path, index)
    return Report(out, index, index.get("summary_view") or {})


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="expl", desc="explaining", disable=not enabled or total == 0, leave=False)
