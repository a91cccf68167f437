"""kernel_shap and lime through explainkit vs shap / lime called directly, against the model's raw limit.

For each sample model (tabular, image, text) it prints, side by side, medians over repeats of one run:
wall time per explanation, model evaluations per second, and that rate as a fraction of the raw batched
forward throughput of the same model (``model.forward`` on big batches: the machine's limit).

    python benchmarks/bench_agnostic.py [--repeats 3] [--n-samples 1000]
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import explainkit
from explainkit import Task

CASES = [("breast-cancer-mlp", 0), ("mnist-cnn", 0), ("sst2-lstm", 0), ("sst2-transformer", 0)]


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def raw_throughput(model, sample, batch=2048, repeats=3) -> float:
    """Evaluations per second of the bare batched forward pass (no masking, no explainer)."""
    import torch

    inputs, extra = model.collate([sample] * batch)
    with torch.no_grad():
        model.forward(inputs, *extra)                     # warm-up
        t = _median_time(lambda: model.forward(inputs, *extra), repeats)
    return batch / t


def _col(model, out, target):
    out = np.asarray(out)
    return out[:, target] if model.task is Task.CLASSIFICATION else out.reshape(len(out))


def shap_direct(model, sample, target, n):
    """shap.KernelExplainer the way its tutorials use it: a function building masked raw inputs."""
    import shap

    if model.modality is explainkit.Modality.TABULAR:
        mean = np.asarray(model.standardize["mean"], dtype=np.float64)
        ke = shap.KernelExplainer(lambda rows: _col(model, model.predict(list(rows)), target), mean[None])
        return lambda: ke.shap_values(np.asarray(sample.feature_values), nsamples=n, silent=True), n
    if model.modality is explainkit.Modality.IMAGE:
        from explainkit_builtins.shap_plugin import image_segments
        seg = image_segments(sample.image, "patches", 4, 0)
        m = int(seg.max()) + 1

        def f(z):
            imgs = [sample.image * zz[seg] for zz in z]          # absent patches black
            return _col(model, model.predict(imgs), target)
    else:
        m = len(sample.tokens)

        def f(z):
            texts = [" ".join(tok for tok, k in zip(sample.tokens, zz) if k) or "." for zz in z]
            return _col(model, model.predict(texts), target)
    ke = shap.KernelExplainer(f, np.zeros((1, m)))
    return lambda: ke.shap_values(np.ones(m), nsamples=n, l1_reg=False, silent=True), n


def lime_direct(model, sample, target, n):
    """lime's own explainers, with classifier functions over raw inputs."""
    from lime import lime_image, lime_tabular, lime_text

    if model.modality is explainkit.Modality.TABULAR:
        mean, sd = (np.asarray(model.standardize[k], dtype=np.float64) for k in ("mean", "std"))
        ex = lime_tabular.LimeTabularExplainer(np.stack([mean - sd, mean + sd]), discretize_continuous=False,
                                               random_state=0)
        return lambda: ex.explain_instance(np.asarray(sample.feature_values), lambda r: model.predict(list(r)),
                                           labels=(target,), num_samples=n)
    if model.modality is explainkit.Modality.IMAGE:
        from explainkit_builtins.shap_plugin import image_segments
        ex = lime_image.LimeImageExplainer(random_state=0)
        img = np.asarray(sample.image, dtype=np.float64)
        return lambda: ex.explain_instance(
            img, lambda ims: model.predict(list(np.asarray(ims)[..., 0])), labels=(target,), top_labels=None,
            hide_color=0, num_samples=n, batch_size=256, num_features=10,
            segmentation_fn=lambda im: image_segments(im, "patches", 4, 0))
    ex = lime_text.LimeTextExplainer(random_state=0, bow=False)
    return lambda: ex.explain_instance(sample.raw, lambda texts: model.predict(list(texts)), labels=(target,),
                                       num_samples=n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=1000)
    args = ap.parse_args(argv)
    from explainkit.data import datasets

    warnings.simplefilter("ignore")
    n, reps = args.n_samples, args.repeats
    print(f"{'model':<20}{'method':<13}{'explainkit s':>13}{'direct s':>10}{'ratio':>7}"
          f"{'ek eval/s':>11}{'direct eval/s':>14}{'raw eval/s':>12}{'ek/raw':>8}")
    for name, idx in CASES:
        model = explainkit.load_sample(name)
        raw, _ = datasets.sample_data(name)[idx]
        sample = model.prepare(raw)
        target = int(np.argmax(model.predict([sample])[0])) if model.task is Task.CLASSIFICATION else 0
        limit = raw_throughput(model, sample)
        for method in ("kernel_shap", "lime"):
            params = {"n_samples": n, "l1_reg": "none"} if method == "kernel_shap" else {"n_samples": n}
            explainkit.explain(model, sample, method, **params)                     # warm-up (imports)
            exp = explainkit.explain(model, sample, method, **params)
            evals = exp.extras["n_evaluations"]
            t_ek = _median_time(lambda m=method, p=params, mo=model, s=sample: explainkit.explain(mo, s, m, **p), reps)
            direct = shap_direct(model, sample, target, n)[0] if method == "kernel_shap" else \
                lime_direct(model, sample, target, n)
            direct()
            t_dir = _median_time(direct, reps)
            ek_rate, dir_rate = evals / t_ek, evals / t_dir
            print(f"{name:<20}{method:<13}{t_ek:>13.3f}{t_dir:>10.3f}{t_dir / t_ek:>7.2f}"
                  f"{ek_rate:>11.0f}{dir_rate:>14.0f}{limit:>12.0f}{ek_rate / limit:>8.2f}", flush=True)
    print("ratio = direct time / explainkit time (>1: explainkit faster); ek/raw = explainkit's evaluation "
          "rate as a fraction of the raw batched forward throughput.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
