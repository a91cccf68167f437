"""Trust-metric speed: explainkit's deletion curve against Quantus PixelFlipping, and the badge latency.

Run:  python benchmarks/bench_quality.py [--model mnist-cnn] [--n 100] [--repeats 3] [--px 1 16]

1. Deletion curves for N samples of the shipped MNIST data, with the same integrated-gradients
   attributions, the same baseline value (the black image, normalised) and the same pixels per step
   (``--px``: 1, Quantus's default, which is pixel flipping proper; and 16), through
   ``quantus.PixelFlipping`` and through explainkit, in one process. Attribution ties (IG is exactly 0
   on the black background) are broken by one shared jitter of 1e-9, since the libraries sort ties
   differently. Prints the median times, the ratio, the max abs difference of curves and AUCs, and
   explainkit's time with incremental inference switched off (so each part of the gain shows).
2. The badge: ``exp.quality(model)`` with the cheap defaults, one explanation, mnist-cnn and sst2-lstm.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np


def _median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_deletion(model_name: str, n: int, repeats: int, px: int) -> None:
    import quantus
    import torch

    import explainkit as ek
    from explainkit.data import datasets
    from explainkit.trust.metrics import perturbation_curves

    model = ek.load_sample(model_name)
    data = datasets.sample_data(model_name)
    samples = [data.samples(model)[i] for i in range(n)]
    exps = list(ek.explain(model, [s.raw for s in samples], "integrated_gradients", n_steps=32))
    rng = np.random.default_rng(0)
    for e in exps:                                   # one shared tie-break for both libraries
        e.scores = e.scores + 1e-9 * rng.random(e.scores.shape)
    x = torch.stack([torch.as_tensor(s.tensor) for s in samples]).numpy()
    a = np.stack([e.scores for e in exps])[:, None].astype(np.float64)
    y = np.array([e.target for e in exps])
    black = float(model.baseline_tensor(samples[0]).reshape(-1)[0])
    units = int(np.asarray(exps[0].scores).size)
    steps = -(-units // px)

    metric = quantus.PixelFlipping(features_in_step=px, perturb_baseline=black, normalise=False, abs=False,
                                   disable_warnings=True, display_progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_q, q_curves = _median_time(lambda: metric(model=model.module, x_batch=x, y_batch=y, a_batch=a,
                                                    channel_first=True, softmax=True, device="cpu",
                                                    batch_size=n), repeats)
    q_curves = np.asarray(q_curves)                                    # [N, steps], after each step

    def ours():
        return perturbation_curves(model, samples, exps, steps=steps, n_random=0, insertion=False, chunk=n)

    t_e, res = _median_time(ours, repeats)
    model.incremental = False                                          # the same, with plain passes only
    t_p, _ = _median_time(ours, repeats)
    model.incremental = True
    e_curves = np.stack([r["deletion"].values[1:] for r in res])      # drop the unperturbed point
    q_auc = np.trapezoid(q_curves, dx=1, axis=1)
    e_auc = np.trapezoid(e_curves, dx=1, axis=1)
    print(f"deletion curves, {model_name}, {n} samples, {q_curves.shape[1]} steps of {px} px"
          f"{' (Quantus default)' if px == 1 else ''}, median of {repeats} runs in one process")
    print(f"  quantus.PixelFlipping              {t_q:8.3f} s")
    print(f"  explainkit                         {t_e:8.3f} s   ratio {t_q / t_e:5.1f}x")
    print(f"  explainkit, plain passes only      {t_p:8.3f} s   ratio {t_q / t_p:5.1f}x  (incremental inference off)")
    print(f"  max |curve diff| {np.abs(q_curves - e_curves).max():.2e}   max |AUC diff| "
          f"{np.abs(q_auc - e_auc).max():.2e}   mean AUC quantus {q_auc.mean():.4f} explainkit {e_auc.mean():.4f}")
    dup = sum(len(np.unique(r["deletion"].values)) for r in res)
    print(f"  distinct masked inputs evaluated by explainkit: ~{dup} of {n * (steps + 1)} (identical copies run once)")


def bench_badge(repeats: int) -> None:
    import explainkit as ek
    from explainkit.data import datasets

    for name in ("mnist-cnn", "sst2-lstm"):
        model = ek.load_sample(name)
        raw, _ = datasets.sample_data(name)[0]
        exp = ek.explain(model, raw, "integrated_gradients")
        exp.quality(model)                                                 # warm-up (imports)
        t, q = _median_time(lambda e=exp, m=model: e.quality(m), repeats)
        parts = ", ".join(f"{k[:-2]} {v * 1e3:.0f} ms" for k, v in q.timings.items() if k != "total_s")
        print(f"badge {name:10s} {t * 1e3:7.0f} ms (median of {repeats})  [{parts}]")
        print(f"      {q.badge()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--px", type=int, nargs="+", default=[1, 16],
                    help="pixels flipped per step (1 is Quantus's default, pixel flipping proper)")
    args = ap.parse_args()
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for px in args.px:
        bench_deletion(args.model, args.n, args.repeats, px)
    bench_badge(args.repeats)


if __name__ == "__main__":
    main()
