"""The second half of a report: stream over the cached explanations, then write the exports, HTML and index."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import DataError
from explainkit.reports.result import TEMPLATES

QUALITY_LIMIT = 20          # samples assessed per method with --quality

__all__ = ["build"]


def _load(cache, key, model, data, index, run, view):
    """A cached explanation; if its entry vanished or went bad since the compute pass, compute it now."""
    hit = cache.read(key)
    if hit is None:
        from explainkit.reports.executors import Chunk, Item, compute_chunk
        item = Item(int(index), data.raws[int(index)], None if data.labels is None else data.labels[int(index)].item(),
                    key, True)
        for k, blob in compute_chunk(model, Chunk(run.name, run.params, run.seed, [item], view.value)):
            cache.write(k, blob)
        hit = cache.read(key)
        if hit is None:
            raise DataError(f"The cache at {cache.root} cannot be read back.",
                            "check the disk, or pass another --cache-dir.")
    exp = hit
    exp.sample_index = int(index)                    # the same input may sit at another index elsewhere
    exp.label = None if data.labels is None else data.labels[int(index)].item()
    return exp


def _failed(failures, name, idx) -> str | None:
    return (failures or {}).get(name, {}).get(str(int(idx)))


def _nan_row(model, data, idx) -> np.ndarray:
    """A failed entry's row in the .npz: NaN in the shape a successful one would have."""
    s = model.prepare(data.raws[int(idx)], None, int(idx))
    shape = s.image.shape[:2] if model.modality is Modality.IMAGE and s.image is not None else (int(s.n_units),)
    return np.full(shape, np.nan, dtype=np.float32)


def _aggregate(runs, keys, indices, cache, model, data, npz, view, cap, failures=None, min_count=2):
    from explainkit.reports.stats import Agreement, Importance
    from explainkit.views.aggregate import SignedImportance

    imp = {r.name: Importance(model.modality) for r in runs}
    signed = {r.name: SignedImportance(model.modality, min_count) for r in runs}
    agree = Agreement([r.name for r in runs])
    offsets = {r.name: [0] for r in runs}
    base = {r.name: [] for r in runs}
    fragments = {}                     # the first `cap` samples' explanations, so sections need not re-read them
    for pos, idx in enumerate(indices):
        exps = [None if _failed(failures, r.name, idx) else _load(cache, keys[m][pos], model, data, idx, r, view)
                for m, r in enumerate(runs)]
        if pos < cap:
            fragments.update({(pos, r.name): e for r, e in zip(runs, exps) if e is not None})
        for r, e in zip(runs, exps):
            if e is not None:
                imp[r.name].add(e)
                signed[r.name].add(e, data.raws[int(idx)] if model.modality is Modality.TABULAR else None)
            s = _nan_row(model, data, idx) if e is None else np.asarray(e.scores, dtype=np.float32)
            if model.modality is Modality.TEXT:
                npz.extend(f"{r.name}.scores", s)
                offsets[r.name].append(offsets[r.name][-1] + len(s))
            else:
                npz.append(f"{r.name}.scores", s)
            base[r.name].append(None if e is None else e.base_value)
        agree.add(exps)
    return imp, agree, offsets, fragments, base, signed


def _quality(runs, keys, indices, cache, model, data, view, limit, failures=None):
    """Per-method mean trust metrics and per-sample badges, if explainkit.quality is available."""
    try:
        from explainkit.trust.quality import assess
    except ImportError as e:
        return {"error": f"explainkit.quality is not available ({e})"}, {}
    badges, table = {}, []
    for m, r in enumerate(runs):
        vals: dict[str, list] = {}
        for pos in range(min(limit, len(indices))):
            if _failed(failures, r.name, indices[pos]):
                continue
            exp = _load(cache, keys[m][pos], model, data, indices[pos], r, view)
            try:
                q = assess(exp, model, seed=r.seed)
            except Exception as e:  # noqa: BLE001 - one failing metric must not sink the report
                badges[(pos, r.name)] = f"quality failed: {type(e).__name__}"
                continue
            badges[(pos, r.name)] = q.badge() if hasattr(q, "badge") else str(q)
            for k, v in _numbers(q.to_dict() if hasattr(q, "to_dict") else dict(q)).items():
                vals.setdefault(k, []).append(v)
        table.append({"method": r.name, "metrics": {k: f"{np.mean(v):.3f}" for k, v in vals.items()},
                      "n": min(limit, len(indices))})
    cols = sorted({k for row in table for k in row["metrics"]})
    return {"columns": cols, "rows": table, "error": None}, badges


def _numbers(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if k in ("timings", "n_units", "target", "notes", "points", "fractions", "curve", "values"):
            continue
        if isinstance(v, dict):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and (
                k in ("auc", "faithfulness") or k.endswith("rho")):
            out[f"{prefix}{k}"] = float(v)
    return out


def _input_view(model, data, idx):
    from explainkit.views import render
    raw = data.raws[int(idx)]
    if model.modality is Modality.IMAGE:
        import io

        from matplotlib.image import imsave
        sample = model.prepare(raw)
        img = np.clip(sample.image, 0.0, 1.0)
        if (sample.meta or {}).get("transform") is not None:      # a photo: the user's own, in colour
            from explainkit.views.photo import photo_rgb
            img = photo_rgb(raw)
        buf = io.BytesIO()
        imsave(buf, img, cmap="gray", vmin=0.0, vmax=1.0, format="png", metadata={"Software": None})
        return {"image": render.data_uri(buf.getvalue()), "text": None, "features": None}
    if model.modality is Modality.TEXT:
        return {"image": None, "text": str(raw), "features": None}
    names = model.feature_names or [f"x{i}" for i in range(len(raw))]
    return {"image": None, "text": None,
            "features": [{"name": n, "value": f"{float(v):.4g}"} for n, v in zip(names, np.asarray(raw))][:40]}


def _prediction_view(model, output, label) -> dict:
    if model.task is Task.REGRESSION:
        err = None if label is None else float(output) - float(label)
        return {"value": f"{float(output):.4g}", "unit": model.target_name,
                "label": None if label is None else f"{float(label):.4g}",
                "error": None if err is None else f"{err:+.4g}", "wrong": False, "pred": None, "probs": None}
    order = np.argsort(-output, kind="stable")[: min(5, len(output))]
    pred = int(order[0])
    return {"value": None, "pred": model.classes[pred], "label": None if label is None else model.classes[int(label)],
            "wrong": label is not None and int(label) != pred,
            "probs": [{"cls": model.classes[int(k)], "p": f"{output[k]:.3f}", "w": f"{100 * output[k]:.1f}"}
                      for k in order]}


def _sections(runs, keys, indices, cache, model, data, outputs, view, cap, badges, fragments, failures=None):
    """Per-sample sections, generated one at a time while the template streams to disk.

    Every fragment is rendered here, from the explanation's scores and metadata, through the autoescaped
    templates: the cache holds data only, and nothing read from it is ever inserted as markup.
    """
    from markupsafe import Markup

    from explainkit.views import render

    for pos in range(min(cap, len(indices))):
        idx = int(indices[pos])
        label = None if data.labels is None else data.labels[idx].item()
        views = []
        for m, r in enumerate(runs):
            why = _failed(failures, r.name, idx)
            if why:                                 # escaped by Markup.format: the reason is data
                views.append({"method": r.name, "badge": None, "html": Markup(
                    '<div class="ek-failed" style="color:#a00;padding:8px">failed: {}</div>').format(why)})
                continue
            exp = fragments.pop((pos, r.name), None)
            if exp is None:
                exp = _load(cache, keys[m][pos], model, data, idx, r, view)
            html = render.to_html(exp, view=view, css=False)      # autoescaped: our markup, escaped data
            views.append({"method": r.name, "html": Markup(html), "badge": badges.get((pos, r.name))})
        yield {"pos": pos, "index": idx, "input": _input_view(model, data, idx),
               "prediction": _prediction_view(model, outputs[pos], label), "views": views}


def build(*, model, data, runs, indices, rule, limit, keys, outputs, cache, out: Path, view, max_sections, quality,
          timings, counts, t_start, executor, failures=None, audit=None):
    """``outputs``: the model's outputs for the selected rows, aligned with ``indices``. ``failures``:
    {method: {str(sample index): reason}}; those entries get NaN rows and a 'failed: reason' section.
    ``audit``: {"slices", "dependence", "min_count", "scope"}: the dataset-level section (reports.audit)."""
    from explainkit.atomic import Staging

    with Staging() as staged:        # npz, HTML and index are published together, or none of them
        return _build(staged, model=model, data=data, runs=runs, indices=indices, rule=rule, limit=limit, keys=keys,
                      outputs=outputs, cache=cache, out=out, view=view, max_sections=max_sections, quality=quality,
                      timings=timings, counts=counts, t_start=t_start, executor=executor, failures=failures,
                      audit=audit or {})


def _build(staged, *, model, data, runs, indices, rule, limit, keys, outputs, cache, out: Path, view, max_sections,
           quality, timings, counts, t_start, executor, failures, audit):
    import json

    from explainkit.reports.audit import audit_section
    from explainkit.reports.result import Report, environment
    from explainkit.reports.stats import NpzStream, prediction_stats
    from explainkit.views import render

    t = time.perf_counter()
    npz_path, json_path = out.with_suffix(".npz"), out.with_suffix(".json")
    npz = NpzStream(npz_path)
    try:
        imp, agree, offsets, fragments, base, signed = _aggregate(
            runs, keys, indices, cache, model, data, npz, view, max_sections, failures, audit.get("min_count", 2))
        sel_out = np.asarray(outputs)
        extra = {"indices": np.asarray(indices, dtype=np.int64),
                 "outputs": np.asarray(sel_out, dtype=np.float64)}
        if data.labels is not None:
            extra["labels"] = data.labels[indices]
        if model.modality is Modality.TEXT:
            extra.update({f"{r.name}.offsets": np.asarray(offsets[r.name], dtype=np.int64) for r in runs})
        extra.update({f"{name}.base_value": np.array([np.nan if b is None else b for b in bs], dtype=np.float64)
                      for name, bs in base.items() if any(b is not None for b in bs)})
        staged.add(npz.close(extra, publish=False), npz_path)
    except BaseException:
        npz.discard()
        raise
    is_cls = model.task is Task.CLASSIFICATION
    preds = sel_out.argmax(axis=1) if is_cls else sel_out
    stats = prediction_stats(model.task, model.classes, preds, sel_out,
                             None if data.labels is None else data.labels[indices])
    timings["aggregate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    dataset = audit_section(model, data, indices, sel_out, signed, slices=audit.get("slices"),
                            dependence=audit.get("dependence"), scope=audit.get("scope", "selection"))
    timings["audit_s"] = time.perf_counter() - t

    t = time.perf_counter()
    qual, badges = (_quality(runs, keys, indices, cache, model, data, view, QUALITY_LIMIT, failures) if quality
                    else (None, {}))
    if quality:
        timings["quality_s"] = time.perf_counter() - t
    card = model.card()
    globals_ = [{"method": r.name, "image": (lambda png: render.data_uri(png) if png else None)(
        imp[r.name].figure_png(r.name, model.feature_names)), "table": imp[r.name].table(model.feature_names)}
        for r in runs]
    summary = {
        "title": f"explainkit report: {model.name}", "card": card, "metrics": card.get("metrics") or {},
        "data": {"name": data.name, "n": len(data), "modality": data.modality.value},
        "selection": {"rule": rule, "limit": limit, "n": int(len(indices))},
        "methods": [{"name": r.name, "title": r.title, "params": r.params, "seed": r.seed, "plugin": r.plugin,
                     "plugin_version": r.plugin_version, "stochastic": r.stochastic} for r in runs],
        "versions": environment(), "timings": timings, "counts": counts, "stats": stats, "classes": model.classes,
        "task": model.task.value, "agreement": agree.rows(), "agreement_mean": agree.mean(),
        "global": globals_, "quality": qual, "view": view.value, "sections_cap": max_sections,
        "files": {"html": out.name, "attributions": npz_path.name, "index": json_path.name},
        "executor": executor}

    t = time.perf_counter()
    sections = _sections(runs, keys, indices, cache, model, data, outputs, view, max_sections, badges, fragments,
                         failures)
    # streamed into an exclusively created temp file (mkstemp, beside `out`), fsynced, renamed at publish()
    with staged.open(out, "w", encoding="utf-8") as f:
        render.template("report.html", search=[TEMPLATES]).stream(**summary, audit=dataset,
                                                                  sections=sections).dump(f)
    timings["html_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t_start

    index = {k: summary[k] for k in ("files", "data", "selection", "methods", "versions", "timings", "counts",
                                     "executor", "view")}
    matrix = [[round(float(v), 6) if np.isfinite(v) else None for v in row] for row in agree.matrix()]
    index.update({"format": "explainkit-report/1", "model": card, "summary": {**stats, "agreement": matrix,
                                                                             "agreement_mean": agree.mean()},
                  "arrays": _array_doc(runs, model, data), "cache_dir": str(cache.root.resolve()),
                  "indices": [int(i) for i in indices], "keys": {r.name: keys[m] for m, r in enumerate(runs)},
                  "sections": min(max_sections, len(indices)), "quality": qual, "failures": failures or {},
                  "audit": _audit_doc(dataset)})
    staged.write(json_path, json.dumps(index, indent=1, sort_keys=False, default=str))
    staged.publish()
    summary["agreement_mean"] = agree.mean()
    return Report(out, index, summary)


def _audit_doc(dataset: dict) -> dict:
    """The dataset-level numbers for the JSON index (the pictures stay in the HTML)."""
    whole = {k: v for k, v in dataset["whole"].items() if k != "residuals"}
    imp = []
    for m in dataset["importance"]:
        groups = [{k: v for k, v in g.items() if k in ("target", "n", "words", "table")} for g in m["groups"]]
        imp.append({"method": m["method"], "n": m["n"], "groups": groups})
    return {"whole": whole, "slices": dataset["slices"], "importance": imp}


def _array_doc(runs, model, data) -> dict:
    units = {Modality.IMAGE: "[n, H, W] per-pixel scores", Modality.TABULAR: "[n, F] per-feature scores",
             Modality.TEXT: "flat per-token scores; sample i is [offsets[i]:offsets[i+1]]"}[model.modality]
    doc = {"indices": "[n] index of each sample in the data", "outputs": "[n, K] probabilities or [n] values"}
    if data.labels is not None:
        doc["labels"] = "[n] true labels"
    for r in runs:
        doc[f"{r.name}.scores"] = units + "; a failed entry's row is NaN (see index['failures'])"
        if model.modality is Modality.TEXT:
            doc[f"{r.name}.offsets"] = "[n+1] token offsets into the flat scores"
    return doc
