"""Report speed: 100 MNIST samples x {integrated_gradients, gradcam, occlusion} on the shipped mnist-cnn.

Measured in one run, side by side:
  1. captum, plain loop: one captum call per sample and method (the reference);
  2. explainkit, batched explainers only (run_explainer on chunks, no rendering);
  3. explainkit report, --workers 1 (explain + render + statistics + HTML), fresh cache;
  4. explainkit report, --workers 2, fresh cache;
  5. the same report resumed with everything cached (target: < 5% of run 3).

Usage: python benchmarks/bench_report.py [--n 100] [--out DIR] [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

METHODS = ["integrated_gradients", "gradcam", "occlusion"]


def captum_loop(model, samples):
    """Per-sample captum calls with the same settings as the explainkit defaults; per-sample times."""
    import torch
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion

    net = model.module
    ig, cam, occ = IntegratedGradients(net), LayerGradCam(net, model.conv_layer), Occlusion(net)
    times = {m: [] for m in METHODS}
    for s in samples:
        x = s.tensor.unsqueeze(0)
        base = model.baseline_tensor(s).unsqueeze(0)
        with torch.no_grad():
            t = int(net(x).argmax(1))
        t0 = time.perf_counter()
        ig.attribute(x, baselines=base, target=t, n_steps=50, method="gausslegendre").detach().numpy()
        t1 = time.perf_counter()
        a = cam.attribute(x, target=t, relu_attributions=True)
        LayerAttribution.interpolate(a, x.shape[-2:], interpolate_mode="bilinear").detach().numpy()
        t2 = time.perf_counter()
        occ.attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 4, 4), baselines=base,
                      target=t).detach().numpy()
        t3 = time.perf_counter()
        for m, dt in zip(METHODS, (t1 - t0, t2 - t1, t3 - t2)):
            times[m].append(dt)
    return times


def captum_occlusion_tuned(model, samples, per_eval=(7, 16, 49)) -> float:
    """The occlusion loop again at captum's best ``perturbations_per_eval`` (its default is 1 per pass): each
    value in ``per_eval`` is timed on the whole loop, and the fastest total is returned (49: all windows of a
    digit in one forward pass)."""
    import torch
    from captum.attr import Occlusion

    occ, best = Occlusion(model.module), float("inf")
    for ppe in per_eval:
        t_total = 0.0
        for s in samples:
            x, base = s.tensor.unsqueeze(0), model.baseline_tensor(s).unsqueeze(0)
            with torch.no_grad():
                t = int(model.module(x).argmax(1))
            t0 = time.perf_counter()
            occ.attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 4, 4), baselines=base, target=t,
                          perturbations_per_eval=ppe).detach().numpy()
            t_total += time.perf_counter() - t0
        best = min(best, t_total)
    return best


IG_TOLERANCE = 1e-5     # explainkit's IG against captum's: max |difference| / max |captum| per sample


def ig_agreement(model, samples, batch=8) -> tuple[list[float], list[float]]:
    """Per sample, the relative deviation of explainkit's batched IG from captum's ``IntegratedGradients``
    called per sample with the same settings: max |difference| / max |captum| over its attributions (the
    check), and sum |difference| / sum |captum| (how much of the map moved: a max-pool tie broken the other
    way moves one step's gradient by a pixel)."""
    import numpy as np
    from captum.attr import IntegratedGradients

    from explainkit.plugins.runner import run_explainer

    ig, devs, l1 = IntegratedGradients(model.module), [], []
    for i in range(0, len(samples), batch):
        for s, exp in zip(samples[i:i + batch], run_explainer("integrated_gradients", model, samples[i:i + batch])):
            x, base = s.tensor.unsqueeze(0), model.baseline_tensor(s).unsqueeze(0)
            ref = ig.attribute(x, baselines=base, target=exp.target, n_steps=50, method="gausslegendre")
            ref = ref[0].detach().double().numpy()
            diff = np.abs(np.asarray(exp.attributions) - ref)
            devs.append(float(diff.max() / np.abs(ref).max()))
            l1.append(float(diff.sum() / np.abs(ref).sum()))
    return devs, l1


def batched(model, samples, batch=8):
    from explainkit.plugins.runner import run_explainer

    out = {}
    for m in METHODS:
        t0 = time.perf_counter()
        for i in range(0, len(samples), batch):
            run_explainer(m, model, samples[i:i + batch], seed=0)
        out[m] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--out", default=None, help="folder for the reports (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating turns of the loop and the batched run")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)

    import explainkit
    from explainkit.data import datasets

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-report-"))
    model = explainkit.load_sample("mnist-cnn")
    data = datasets.sample_data("mnist").subset(range(args.n))
    samples = [model.prepare(r, y, i) for i, (r, y) in enumerate(zip(data.raws, data.labels))]
    print(f"mnist-cnn, {args.n} samples, methods {', '.join(METHODS)}; torch threads {torch.get_num_threads()}")
    batched(model, samples[:2])                                 # warm-up: imports, first calls

    # the loop and the batched run take turns (a shared machine's load changes by the minute); medians kept
    turns = [(captum_loop(model, samples), batched(model, samples)) for _ in range(max(1, args.repeats))]
    loop = turns[len(turns) // 2][0]        # per-sample times of one turn, for the median column
    loop_total = {m: statistics.median(sum(t[0][m]) for t in turns) for m in METHODS}
    fast = {m: statistics.median(t[1][m] for t in turns) for m in METHODS}
    print(f"\n{'method':22} {'captum loop s':>14} {'median/sample ms':>17} {'explainkit batched s':>21} "
          f"{'speed-up':>9}")
    for m in METHODS:
        print(f"{m:22} {loop_total[m]:14.2f} {1000 * statistics.median(loop[m]):17.2f} {fast[m]:21.2f}"
              f" {loop_total[m] / fast[m]:8.2f}x")
    lt, ft = sum(loop_total.values()), sum(fast.values())
    print(f"{'all three':22} {lt:14.2f} {'':17} {ft:21.2f} {lt / ft:8.2f}x")
    devs, l1 = ig_agreement(model, samples)
    bad = sum(d > IG_TOLERANCE for d in devs)
    print(f"integrated_gradients against captum's, per sample: max relative deviation {max(devs):.2e}, median "
          f"{statistics.median(devs):.2e}; {len(devs) - bad}/{len(devs)} samples within {IG_TOLERANCE:g}: "
          f"{'ok' if not bad else 'FAILED'}; sum |difference| / sum |captum| at most {max(l1):.2e}")
    tuned = captum_occlusion_tuned(model, samples)
    print(f"{'occlusion, captum loop at its best perturbations_per_eval':54} {tuned:8.2f}s  "
          f"explainkit {fast['occlusion']:.2f}s"
          f"  {tuned / fast['occlusion']:.2f}x", flush=True)

    runs = {}
    for label, workers, cache in (("report --workers 1 (fresh)", 1, "c1"), ("report --workers 2 (fresh)", 2, "c2"),
                                  ("report resumed (all cached)", 1, "c1")):
        t0 = time.perf_counter()
        rep = explainkit.report(model, data, methods=METHODS, out=out / f"{cache}.html",
                                cache_dir=out / cache, workers=workers, progress=False)
        runs[label] = (time.perf_counter() - t0, rep.index)
    first = runs["report --workers 1 (fresh)"][0]
    print(f"\n{'report run':30} {'wall s':>8} {'explain s':>10} {'html s':>7} {'computed':>9} {'vs first':>9}")
    for label, (wall, idx) in runs.items():
        t, c = idx["timings"], idx["counts"]
        print(f"{label:30} {wall:8.2f} {t['explain_s']:10.2f} {t['html_s']:7.2f} {c['computed']:9d}"
              f" {100 * wall / first:8.1f}%")
    print(f"\nreport vs captum loop (compute only, no rendering): {lt / ft:.2f}x;"
          f" resumed re-run: {100 * runs['report resumed (all cached)'][0] / first:.1f}% of the first run"
          f" (target < 5%); reports in {out}")


if __name__ == "__main__":
    main()
