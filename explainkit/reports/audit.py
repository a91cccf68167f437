"""The report's dataset-level section: confusion matrix or residual plot over the selection (or, with
``audit="data"``, every row of the data), per-slice metrics,
and signed global importance (bars, beeswarm, dependence plot, words, mean maps per class) from the cached
local explanations. The numbers come from :mod:`explainkit.views.aggregate`, shared with the dashboard."""
from __future__ import annotations

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import ParameterError
from explainkit.views.aggregate import (
    check_slices,
    default_slices,
    slice_mask,
    slice_metrics,
    text_lengths,
)
from explainkit.views.audit_plots import colour_feature

__all__ = ["whole_outputs", "audit_section", "check_dependence", "check_scope", "try_slices", "TOP_FEATURES"]

TOP_FEATURES = 12            # features in the bar plot and the beeswarm
MAX_TARGETS = 3              # explained classes shown per method (the most frequent first)
PREDICT_BATCH = 256
SCOPES = ("selection", "data")


def whole_outputs(model, data, indices, outputs) -> np.ndarray:
    """The model's outputs on every row of ``data``; the selected rows' outputs are reused, not re-predicted."""
    n = len(data)
    known = {int(i): p for p, i in enumerate(indices)}
    rest = [i for i in range(n) if i not in known]
    shape = (n, model.n_outputs) if model.task is Task.CLASSIFICATION else (n,)
    out = np.zeros(shape, dtype=np.float64)
    if len(indices):
        out[np.asarray(indices, dtype=np.int64)] = np.asarray(outputs, dtype=np.float64)
    for s in range(0, len(rest), PREDICT_BATCH):
        rows = rest[s:s + PREDICT_BATCH]
        out[rows] = np.asarray(model.predict([data.raws[i] for i in rows]), dtype=np.float64)
    return out


def check_dependence(dependence, feature_names):
    """None, a feature name, or a (feature, colour-by feature) pair, checked against the model's features."""
    if dependence is None:
        return None
    names = list(feature_names or [])
    if not isinstance(dependence, (str, tuple, list)):
        raise ParameterError(f"dependence={dependence!r} must name one or two of the model's features.",
                             "pass dependence='bmi' or ('bmi', 'bp').")
    pair = (dependence, None) if isinstance(dependence, str) else tuple(dependence)
    if not names:
        raise ParameterError("dependence= is for tabular models with named features.", "leave dependence=None.")
    if len(pair) != 2 or any(p is not None and p not in names for p in pair) or pair[0] is None:
        raise ParameterError(f"dependence={dependence!r} must name one or two of the model's features.",
                             "pass dependence='bmi' or ('bmi', 'bp'); features: " + ", ".join(names[:30]) + ".")
    return pair


def try_slices(model, data, slices, rows: int = 8) -> None:
    """Run every slice on the first rows before any explanation, so a bad spec fails at once."""
    if not slices:
        return
    sub = data.subset(range(min(rows, len(data))))
    out = whole_outputs(model, sub, [], [])
    is_cls = model.task is Task.CLASSIFICATION
    for name, spec in slices.items():
        slice_mask(name, spec, raws=sub.raws, labels=sub.labels, predicted=out.argmax(axis=1) if is_cls else out,
                   confidence=out.max(axis=1) if is_cls else None, classes=model.classes if is_cls else None,
                   feature_names=model.feature_names,
                   lengths=text_lengths(sub.raws) if model.modality is Modality.TEXT else None)


def _fig(size):
    from explainkit.views import render
    return render._figure(size)


def _png(fig) -> str:
    from explainkit.views import render
    return render.data_uri(render.figure_png(fig))


def _bar(names, mean, order, title, sense) -> str:
    fig = _fig((5.4, 0.9 + 0.24 * len(order)))
    ax = fig.add_subplot()
    y = np.arange(len(order))[::-1]
    v = mean[order]
    ax.barh(y, v, color=np.where(v >= 0, "#b2182b", "#2166ac"))
    ax.axvline(0, color="#555", lw=0.6)
    ax.set_yticks(y, [names[i] for i in order], fontsize=8)
    ax.set_xlabel(f"mean signed attribution (red: {sense[0]}, blue: {sense[1]})", fontsize=8)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _beeswarm(names, scores, values, order, title, sense) -> str:
    fig = _fig((5.4, 1.1 + 0.3 * len(order)))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)                 # the jitter is part of the picture: the same every run
    sc = None
    for row, j in enumerate(order):
        s, v = scores[:, j], values[:, j]
        lo, hi = np.nanmin(v), np.nanmax(v)
        c = (v - lo) / (hi - lo) if hi > lo else np.full(len(v), 0.5)
        y = len(order) - 1 - row + rng.uniform(-0.3, 0.3, len(s))
        sc = ax.scatter(s, y, c=c, cmap="viridis", vmin=0, vmax=1, s=9, lw=0)
    ax.axvline(0, color="#555", lw=0.6)
    ax.set_yticks(np.arange(len(order))[::-1], [names[j] for j in order], fontsize=8)
    ax.set_xlabel(f"attribution per sample (right: {sense[0]}, left: {sense[1]})", fontsize=8)
    ax.set_title(title, fontsize=9)
    if sc is not None:
        bar = fig.colorbar(sc, ax=ax, ticks=[0, 1], aspect=30)
        bar.ax.set_yticklabels(["low", "high"], fontsize=7)
        bar.set_label("feature value", fontsize=7)
    return _png(fig)


def _dependence(names, scores, values, j, k, title) -> str:
    fig = _fig((5.0, 3.4))
    ax = fig.add_subplot()
    colour = {"color": "#542788"} if k is None else {"c": values[:, k], "cmap": "viridis"}
    sc = ax.scatter(values[:, j], scores[:, j], s=12, lw=0, **colour)
    ax.axhline(0, color="#555", lw=0.6)
    ax.set_xlabel(f"{names[j]} (value)", fontsize=8)
    ax.set_ylabel(f"attribution of {names[j]}", fontsize=8)
    ax.set_title(title, fontsize=9)
    if k is not None:
        fig.colorbar(sc, ax=ax, aspect=30).set_label(f"{names[k]} (value)", fontsize=7)
    return _png(fig)


def _residuals(pred, labels, unit) -> str:
    fig = _fig((5.4, 3.4))
    ax = fig.add_subplot()
    res = pred - labels
    ax.scatter(pred, res, s=10, lw=0, color="#542788")
    ax.axhline(0, color="#555", lw=0.6)
    ax.set_xlabel(f"prediction ({unit})", fontsize=8)
    ax.set_ylabel("residual = prediction − true value", fontsize=8)
    ax.set_title("Residuals (above 0: overestimates)", fontsize=9)
    return _png(fig)


def _maps(imp, classes, targets) -> dict:
    """images: one signed mean map per explained class, on one shared symmetric scale."""
    from explainkit.views import render
    means = [(t, imp.mean(t)) for t in targets]
    means = [(t, m.mean(axis=-1) if m.ndim == 3 else m) for t, m in means]
    vmax = max([float(np.abs(m).max()) for _, m in means] + [1e-12])
    cmap = render._mpl().colormaps["RdBu_r"]
    return {"vmax": f"{vmax:.3g}", "maps": [
        {"cls": "output" if t is None else classes[int(t)], "n": imp.count(t),
         "image": render.data_uri(render.rgb_png(cmap(0.5 + 0.5 * m / vmax)[..., :3], 112))} for t, m in means]}


def _importance(method, imp, model, dependence) -> dict:
    classes = model.classes or []
    targets = imp.targets()

    def tname(t):
        return (model.target_name or "output") if t is None else classes[int(t)]
    out = {"method": method, "n": imp.n, "groups": [], "skipped": imp.skipped, "min_count": imp.min_count,
           "maps": None, "vmax": None, "hidden_targets": 0}
    sense = ("for the class", "against it") if model.task is Task.CLASSIFICATION else ("raises the prediction",
                                                                                       "lowers it")
    if model.modality is Modality.IMAGE:
        out.update(_maps(imp, classes, targets))     # every class: a map per class is the point
        return out
    for t in targets[:MAX_TARGETS]:
        g = {"target": tname(t), "n": imp.count(t), "words": None, "bar": None}
        if model.modality is Modality.TEXT:
            g["words"] = imp.words(t)
        else:
            scores, values = imp.matrix(t)
            names = list(model.feature_names or [f"x{i}" for i in range(scores.shape[1])])
            mean = scores.mean(axis=0)
            order = np.argsort(-np.abs(scores).mean(axis=0), kind="stable")[:TOP_FEATURES]
            g["bar"] = _bar(names, mean, order, f"{method}: mean signed attribution, {tname(t)}", sense)
            g["beeswarm"] = _beeswarm(names, scores, values, order, f"{method}: every sample, {tname(t)}", sense)
            j, k = (order[0], None) if dependence is None else (names.index(dependence[0]), None if dependence[1]
                                                                 is None else names.index(dependence[1]))
            k = colour_feature(scores, values, j) if k is None else k
            g["dependence"] = {"feature": names[j], "colour": None if k is None else names[k],
                               "image": _dependence(names, scores, values, j, k, f"{method}: dependence on {names[j]}")}
            g["table"] = [{"feature": names[i], "mean": f"{mean[i]:+.4g}",
                           "mean_abs": f"{np.abs(scores[:, i]).mean():.4g}"} for i in order]
        out["groups"].append(g)
    out["hidden_targets"] = max(0, len(targets) - MAX_TARGETS)
    return out


def check_scope(scope) -> str:
    if scope not in SCOPES:
        raise ParameterError(f"audit={scope!r} is not one of {', '.join(SCOPES)}.",
                             "pass audit='selection' (the selected samples, no extra predictions) or audit='data' "
                             "(every row of the data, predicted once).")
    return scope


def audit_section(model, data, indices, outputs, imps: dict, *, slices=None, dependence=None,
                  scope: str = "selection") -> dict:
    """Everything the template's "Dataset-level audit" section shows. ``outputs``: the selected rows' outputs;
    ``imps``: {method: SignedImportance} over the selected samples' cached explanations. ``scope``:
    'selection' (confusion and slices over the selected rows) or 'data' (every row, predicted once)."""
    if check_scope(scope) == "selection":
        data, allout = data.subset(indices), np.asarray(outputs, dtype=np.float64)
    else:
        allout = whole_outputs(model, data, indices, outputs)
    is_cls = model.task is Task.CLASSIFICATION
    labels = data.labels
    pred = allout.argmax(axis=1) if is_cls and len(allout) else allout
    conf = allout.max(axis=1) if is_cls and len(allout) else None
    lengths = text_lengths(data.raws) if model.modality is Modality.TEXT else None
    feature, fvalues = None, None
    if model.modality is Modality.TABULAR and model.feature_names and imps:
        first = next(iter(imps.values()))
        if first.n:
            absmean = sum(np.abs(first.matrix(t)[0]).sum(axis=0) for t in first.targets())
            feature = model.feature_names[int(np.argmax(absmean))]
            fvalues = np.asarray(data.raws, dtype=np.float64)[:, model.feature_names.index(feature)]
    specs = check_slices(slices) if slices is not None else default_slices(
        model.modality, model.task, model.classes, lengths=lengths, feature=feature, values=fvalues,
        labelled=labels is not None)
    rows = []
    for name, spec in specs.items():
        mask = slice_mask(name, spec, raws=data.raws, labels=labels, predicted=pred, confidence=conf,
                          classes=model.classes if is_cls else None, feature_names=model.feature_names,
                          lengths=lengths)
        rows.append({"name": name, **slice_metrics(mask, task=model.task, outputs=allout, labels=labels)})
    whole = {"n": len(data), "labelled": labels is not None, "scope": scope}
    if labels is not None and len(data):
        if is_cls:
            from explainkit.reports.stats import prediction_stats
            whole.update(prediction_stats(model.task, model.classes, pred, allout, labels))
        else:
            whole["residuals"] = _residuals(allout, np.asarray(labels, dtype=np.float64),
                                            model.target_name or "output")
            err = allout - np.asarray(labels, dtype=np.float64)
            whole.update({"mae": float(np.abs(err).mean()), "bias": float(err.mean()),
                          "over": int((err > 0).sum()), "under": int((err < 0).sum())})
    return {"whole": whole, "slices": rows, "custom_slices": slices is not None, "unit": model.target_name or "output",
            "importance": [_importance(m, imp, model, dependence) for m, imp in imps.items()]}
