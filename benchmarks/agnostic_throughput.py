"""``bench_agnostic.py --part throughput``: perturbation explainers against the raw forward rate and the libraries.

For every sample model (tabular, image, text incl. sst2-minilm), on a short sample (Kernel SHAP's exact path:
at most 14 units; images: 10-pixel patches, 9 units) and a long one (33-40 tokens; images: the defaults), and
for kernel_shap, lime, occlusion and feature_ablation (the example plugin), it prints, side by side, medians
over alternating turns (explainkit, the library, the raw forward; 15 turns under 0.25 s): wall time,
evaluations (the masked copies the explainer asked for), evaluations per second as a fraction of the raw
batched forward rate (``model.forward`` on 128-row batches of the sample, timed in the same turn: the
machine's limit) and of the raw rate at the job's own batch sizes (``÷job``: the same number of rows in
the model's own passes of ``eval_batch_size`` rows, so 11 rows are one 11-row pass: a small job's limit),
the ``ceil`` that ÷raw cannot pass (an explainer that does no work of its own still pays the runner's
fixed work per call, measured with :class:`Floor`, and where each evaluation is a distinct plain copy
its job's passes at their sizes: see :func:`_distinct_plain`), the library's time and the speed ratio.
The rates are taken turn by turn and the medians of their ratios reported (a shared machine's load
changes by the minute; the raw rate at the best batch size among 64..512, printed after each case, is
for reference).

The direct calls: ``shap.KernelExplainer`` on a function building masked raw inputs (as shap's tutorials
do); ``lime``'s explainers (text: ``LimeTextExplainer`` over the same tokens, each token one word, masked
tokens set to the padding id, so the attributions must agree to 1e-10, its ``classifier_fn`` the model's
plain batched prediction ``model.predict_tensor``); captum's ``Occlusion`` and
``FeatureAblation`` on ``model.forward`` with all windows of a sample in one pass (up to 128 rows).
"""
from __future__ import annotations

import contextlib
import io
import statistics
import time
from functools import partial

import numpy as np

import explainkit
from explainkit import Modality, Task

MODELS = {"diabetes-mlp": (5, None), "breast-cancer-mlp": (None, 0), "mnist-cnn": (0, 0), "mnist-mlp": (0, 0),
          "sst2-lstm": (0, 9), "sst2-transformer": (0, 9), "sst2-minilm": (0, 9)}
METHODS = ("kernel_shap", "lime", "occlusion", "feature_ablation")
COARSE = 10                 # short image case: 10-pixel patches / windows (3x3 = 9 units on a digit)
PER_EVAL = 128
QUICK_S, QUICK_TURNS = 0.25, 15     # runs faster than this get at least this many turns
LIME_FORWARD: dict = {}              # text: the last direct lime call's forward (seconds, its copies)


def params_for(model, method, tag, n):
    coarse = model.modality is Modality.IMAGE and tag == "short"
    if method == "kernel_shap":
        p = {"l1_reg": "none", **({"n_samples": n} if tag == "long" else {})}   # short: exact enumeration
        return {**p, "patch_size": COARSE} if coarse else p
    if method == "lime":
        return {"n_samples": n, **({"patch_size": COARSE} if coarse else {})}
    if method == "occlusion":
        return {"window": COARSE} if coarse else {}
    return {"patch_size": COARSE} if coarse else {}


def raw_rate(model, sample, repeats=3) -> float:
    """Rows per second of the bare no-grad ``model.forward`` at its best batch size (64, 128, 256 or 512)."""
    import torch

    best = 0.0
    for batch in (64, 128, 256, 512):
        inputs, extra = model.collate([sample] * batch)
        with torch.no_grad():
            model.forward(inputs, *extra)
            t = min(_timed(lambda i=inputs, e=extra: model.forward(i, *e))[1] for _ in range(repeats))
        best = max(best, batch / t)
    return best


def _forward_rate(model, sample):
    """``rate(rows)``: rows per second of no-grad ``model.forward`` over ``rows`` copies, in 128-row batches."""
    import torch

    inputs, extra = model.collate([sample] * PER_EVAL)

    def rate(rows: int) -> float:
        passes = max(1, -(-rows // PER_EVAL))
        with torch.no_grad():
            t = _timed(lambda: [model.forward(inputs, *extra) for _ in range(passes)])[1]
        return passes * PER_EVAL / t
    return rate


def _job_rate(model, sample, rows: int):
    """``rate()``: rows per second of no-grad ``model.forward`` over ``rows`` copies (at most 512) in the
    model's own pass size (``eval_batch_size``), the batch sizes the explainer's passes take."""
    import torch

    per = int(getattr(model, "eval_batch_size", PER_EVAL))
    rows = max(1, min(int(rows), 4 * PER_EVAL))
    sizes = [min(per, rows - a) for a in range(0, rows, per)]
    batches = {k: model.collate([sample] * k) for k in set(sizes)}

    def rate() -> float:
        with torch.no_grad():
            t = _timed(lambda: [model.forward(batches[k][0], *batches[k][1]) for k in sizes])[1]
        return rows / t
    return rate


class Floor(explainkit.Explainer):
    """The least a perturbation explainer can do: one masked pass of the unmasked copy, zero scores."""

    def explain(self, model, samples, targets, *, seed=0):
        shapes = [s.image.shape[:2] if s.modality is Modality.IMAGE else (s.n_units,) for s in samples]
        model.predict_masked_many(samples, [np.ones((1, int(np.prod(u))), bool) for u in shapes])
        return [explainkit.Explanation.from_sample(s, np.zeros(u)) for s, u in zip(samples, shapes)]


def floor_seconds(model, sample, turns: int = 31) -> float:
    """The fixed work of one explanation call: median seconds of :class:`Floor` through the runner, less
    the median of the bare one-row forward it contains."""
    import torch

    from explainkit.plugins.conformance import registry_with
    from explainkit.plugins.runner import run_explainer

    reg = registry_with(explainkit.ExplainerSpec(name="floor", title="floor", description="d.",
                                                 impl=f"{__name__}:Floor", requires={explainkit.Capability.PREDICT}))
    run_explainer("floor", model, [sample], reg=reg)
    call = statistics.median(_timed(lambda: run_explainer("floor", model, [sample], reg=reg))[1]
                             for _ in range(turns))
    inputs, extra = model.collate([sample])
    with torch.no_grad():
        one = statistics.median(_timed(lambda: model.forward(inputs, *extra))[1] for _ in range(turns))
    return max(0.0, call - one)


def _distinct_plain(model, method, evals: int) -> bool:
    """Whether each evaluation is a distinct copy that costs one plain forward row: occlusion and feature
    ablation copies, and every tabular copy (Kernel SHAP's coalitions are enumerated or drawn without
    replacement, LIME's are continuous), unless the conv nets' incremental forward or the LSTM's prefix
    sharing computes copies for less (each only on jobs large enough for it); those, and
    repeated text or image masks, get the fixed work only."""
    from explainkit.models import prefix_sharing

    if not (method in ("occlusion", "feature_ablation") or model.modality is Modality.TABULAR):
        return False
    if model.modality is Modality.IMAGE:
        use = getattr(model, "_use_incremental", None)
        return use is None or not use(evals, 1)
    if model.modality is Modality.TEXT:
        return evals < prefix_sharing.MIN_COPIES or prefix_sharing._engine(model.module) is None
    return True


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _col(model, out, target):
    out = np.asarray(out)
    return out[:, target] if model.task is Task.CLASSIFICATION else out.reshape(len(out))


def direct_lime(model, sample, target, exp):
    """lime called directly, on the same game (text: each token one word; masked tokens get the padding id)."""
    from lime import lime_image, lime_tabular, lime_text

    n = int(exp.extras["n_evaluations"])
    if model.modality is Modality.TABULAR:
        mean, sd = (np.asarray(model.standardize[k], dtype=np.float64) for k in ("mean", "std"))
        ex = lime_tabular.LimeTabularExplainer(np.stack([mean - sd, mean + sd]), discretize_continuous=False,
                                               random_state=0, mode="classification" if model.task is
                                               Task.CLASSIFICATION else "regression")
        label = target if model.task is Task.CLASSIFICATION else 1
        return lambda: ex.explain_instance(np.asarray(sample.feature_values),
                                           lambda r: model.predict(list(r)), labels=(label,), num_samples=n)
    if model.modality is Modality.IMAGE:
        from explainkit_builtins.shap_plugin import image_segments
        ex = lime_image.LimeImageExplainer(random_state=0)
        img = np.asarray(sample.image, dtype=np.float64)
        seg = exp.extras["segments"]
        return lambda: ex.explain_instance(
            img, lambda ims: model.predict(list(np.asarray(ims)[..., 0])), labels=(target,), top_labels=None,
            hide_color=0, num_samples=n, batch_size=256, num_features=10,
            segmentation_fn=lambda im: image_segments(im, "patches", _patch(seg), 0))
    import torch

    m = sample.n_units
    x = torch.as_tensor(sample.tensor)
    pad = int(model.tokenizer.pad_id)

    def classify(strings):
        keep = torch.as_tensor(np.asarray([[w != "_" for w in s.split(" ")] for s in strings]))
        ids = torch.where(keep, x[None], torch.full_like(x, pad)[None])
        t0 = time.perf_counter()
        out = model.predict_tensor(ids, torch.ones_like(ids, dtype=torch.bool))
        LIME_FORWARD.update(s=time.perf_counter() - t0, ids=ids)     # (distinct copies counted after the turn)
        return out

    ex = lime_text.LimeTextExplainer(split_expression=lambda s: s.split(" "), bow=False, mask_string="_",
                                     random_state=0)
    doc = " ".join(f"t{k}" for k in range(m))
    return lambda: ex.explain_instance(doc, classify, labels=(target,), num_features=10, num_samples=n)


def _patch(seg) -> int:
    """The patch side of a square-patch segment map."""
    return int(np.argmax(seg[0] != 0)) or seg.shape[1]


def lime_scores(model, res, target, n_units) -> np.ndarray:
    label = target if model.task is Task.CLASSIFICATION else 1
    out = np.zeros(n_units)
    for i, w in res.local_exp[label]:
        out[int(i)] = w
    return out


def direct_shap(model, sample, target, exp):
    """shap.KernelExplainer the way its tutorials use it: a function building masked raw inputs."""
    import shap

    n = int(exp.extras["n_coalitions"])
    m = int(exp.extras["n_units"])
    if model.modality is Modality.TABULAR:
        mean = np.asarray(model.standardize["mean"], dtype=np.float64)
        ke = shap.KernelExplainer(lambda rows: _col(model, model.predict(list(rows)), target), mean[None])
        return lambda: ke.shap_values(np.asarray(sample.feature_values), nsamples=n, l1_reg=False, silent=True)
    if model.modality is Modality.IMAGE:
        seg = exp.extras["segments"]

        def f(z):
            return _col(model, model.predict([sample.image * zz[seg] for zz in z]), target)   # absent: black
    else:
        def f(z):
            texts = [" ".join(tok for tok, k in zip(sample.tokens, zz) if k) or "." for zz in z]
            return _col(model, model.predict(texts), target)
    ke = shap.KernelExplainer(f, np.zeros((1, m)))
    return lambda: ke.shap_values(np.ones(m), nsamples=n, l1_reg=False, silent=True)


def direct_captum(method, model, sample, target, exp):
    """captum's Occlusion / FeatureAblation on model.forward, every window of the sample in one pass."""
    import captum.attr as ca
    import torch

    x, extra = model.collate([sample])
    text, image = model.modality is Modality.TEXT, model.modality is Modality.IMAGE
    base = int(model.tokenizer.pad_id) if text else model.baseline_tensor(sample).unsqueeze(0)
    if method == "occlusion":
        w, s = int(exp.extras["window"]), int(exp.extras["stride"])
        shape, strides = ((int(x.shape[1]), w, w), (int(x.shape[1]), s, s)) if image else ((w,), (s,))
        occ = ca.Occlusion(model.forward)
        return lambda: occ.attribute(x, sliding_window_shapes=shape, strides=strides, baselines=base, target=target,
                                     additional_forward_args=extra, perturbations_per_eval=PER_EVAL)

    def f(inp, *more):               # the example plugin scores probabilities
        return torch.softmax(model.forward(inp, *more), -1) if model.task is Task.CLASSIFICATION else \
            model.forward(inp, *more)
    if image:
        from explainkit_example.ablation import patch_groups
        h, w_ = sample.image.shape[:2]
        mask = torch.as_tensor(patch_groups(h, w_, int(exp.extras.get("patch_size", 2))))[None, None]
        mask = mask.expand_as(x)
    else:
        mask = torch.arange(x.shape[1])[None]
    fa = ca.FeatureAblation(f)
    return lambda: fa.attribute(x, baselines=base, target=target if model.task is Task.CLASSIFICATION else 0,
                                feature_mask=mask, additional_forward_args=extra, perturbations_per_eval=PER_EVAL)


def _evaluations(exp, method, sample):
    if "n_evaluations" in exp.extras:
        return int(exp.extras["n_evaluations"])
    if method == "occlusion":
        from explainkit_builtins.occlusion import window_starts
        w, s = int(exp.extras["window"]), int(exp.extras["stride"])
        dims = sample.image.shape[:2] if sample.modality is Modality.IMAGE else (sample.n_units,)
        return 1 + int(np.prod([len(window_starts(d, w, s)) for d in dims]))
    return int(exp.extras["n_units"]) + 1


def throughput(n: int, repeats: int, models=None) -> int:
    import torch

    torch.set_num_threads(1)
    from explainkit.data import datasets

    print(f"torch threads {torch.get_num_threads()}; {repeats} alternating turns (explainkit, library), medians; "
          f"n_samples {n} on long samples")
    print(f"{'model':<18}{'case':<6}{'units':>6}{'method':>17}{'evals':>6}{'ek s':>8}{'÷raw':>6}{'÷job':>6}{'ceil':>6}"
          f"{'library':>17}{'lib s':>8}{'lib÷raw':>8}{'speed×':>7}{'max|Δ|':>9}")
    misses, job_misses = [], []
    for name, (short, long_) in MODELS.items():
        if models and name not in models:
            continue
        model = explainkit.load_sample(name)
        data = datasets.sample_data(name)
        for tag, idx in (("short", short), ("long", long_)):
            if idx is None:
                continue
            sample = model.prepare(data[idx][0])
            target = int(np.argmax(model.predict([sample])[0])) if model.task is Task.CLASSIFICATION else 0
            limit = raw_rate(model, sample)
            forward = _forward_rate(model, sample)
            floor = floor_seconds(model, sample)
            for method in METHODS:
                p = params_for(model, method, tag, n)
                exp = explainkit.explain(model, sample, method, **p)                  # warm-up (imports)
                exp.extras.setdefault("patch_size", p.get("patch_size", 2))
                if method == "kernel_shap":
                    lib, direct = "shap", direct_shap(model, sample, target, exp)
                elif method == "lime":
                    lib, direct = "lime", direct_lime(model, sample, target, exp)
                else:
                    lib, direct = "captum", direct_captum(method, model, sample, target, exp)
                with contextlib.redirect_stderr(io.StringIO()):
                    ref = direct()
                evals = _evaluations(exp, method, sample)
                job_rate = _job_rate(model, sample, evals)
                t_ek, t_lib, raw, job, turns, lib_fwd = [], [], [], [], repeats, []
                while len(t_lib) < turns:
                    t_ek.append(_timed(partial(explainkit.explain, model, sample, method, **p))[1])
                    with contextlib.redirect_stderr(io.StringIO()):
                        t_lib.append(_timed(direct)[1])
                    if LIME_FORWARD and method == "lime" and model.modality is Modality.TEXT:
                        ids = LIME_FORWARD["ids"]
                        distinct = len(np.unique(ids.numpy(), axis=0))
                        lib_fwd.append(LIME_FORWARD["s"] * distinct / len(ids))
                    raw.append(forward(min(evals, 4 * PER_EVAL)))
                    job.append(job_rate())
                    if len(t_lib) == 1 and max(t_ek[0], t_lib[0]) < QUICK_S:
                        turns = max(turns, QUICK_TURNS)      # milliseconds: more turns, steadier medians
                frac = statistics.median(evals / a / r for a, r in zip(t_ek, raw))
                # an explainer doing no work of its own: the runner's fixed work, plus the job's passes (at
                # their sizes) where every evaluation is a distinct copy run through the plain forward
                full = _distinct_plain(model, method, evals)
                ceil = min(9.99, statistics.median((evals / r) / ((evals / j if full else 0.0) + floor)
                                                   for r, j in zip(raw, job)))
                job_frac = statistics.median(evals / a / r for a, r in zip(t_ek, job))
                lib_frac = statistics.median(evals / b / r for b, r in zip(t_lib, raw))
                bound = statistics.median(b / f for b, f in zip(t_lib, lib_fwd)) if lib_fwd else None
                t_ek, t_lib = statistics.median(t_ek), statistics.median(t_lib)
                diff = ""
                if method == "lime" and model.modality is Modality.TEXT:
                    diff = f"{np.abs(exp.scores - lime_scores(model, ref, target, sample.n_units)).max():.1e}"
                print(f"{name:<18}{tag:<6}{sample.n_units:>6}{method:>17}{evals:>6}{t_ek:>8.3f}{frac:>6.2f}{job_frac:>6.2f}{ceil:>6.2f}"
                      f"{lib:>17}{t_lib:>8.3f}{lib_frac:>8.2f}{t_lib / t_ek:>7.2f}{diff:>9}", flush=True)
                if bound is not None:     # 1e-10 agreement means the same float32 forward of every distinct copy
                    print(f"{'':<24}lime: its own work {t_lib - statistics.median(lib_fwd):.3f} s; one plain forward "
                          f"of the {distinct} distinct copies {statistics.median(lib_fwd):.3f} s: "
                          f"speed× at most {bound:.2f} without sharing work between copies", flush=True)
                if frac < 0.7 or t_lib / t_ek < 1.0:
                    misses.append(f"{name}/{tag}/{method}")
                if job_frac < 0.7:
                    job_misses.append(f"{name}/{tag}/{method}")
            print(f"{'':<24}raw forward at its best batch size {limit:.0f} rows/s ({name}, {tag}); the runner's "
                  f"fixed work per call {floor * 1e3:.2f} ms", flush=True)
    print("÷raw = evaluations per second / raw forward rate (repeated masks are answered without a forward pass, "
          "so it can pass 1); ÷job = the same against the raw rate at the job's own batch sizes (the same number "
          "of rows in eval_batch_size passes); ceil = the ÷raw of an explainer that does no work of its own: "
          "the evaluations' raw forward time at the best batch size over the runner's fixed work per call plus, "
          "where every evaluation is a distinct copy run through the plain forward (occlusion and feature "
          "ablation without the conv nets' incremental forward or the LSTM's prefix sharing; every tabular "
          "job), their time in the job's own passes (9.99: at least that); "
          "speed× = library time / explainkit time; max|Δ|: LIME on text against lime on the same game.")
    print(f"below 0.7 of the raw rate or slower than the library: {', '.join(misses) or 'none'}")
    print(f"below 0.7 of the raw rate at the job's own batch sizes: {', '.join(job_misses) or 'none'}")
    return 0
