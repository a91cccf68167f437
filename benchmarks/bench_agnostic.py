"""kernel_shap and lime through explainkit vs shap / lime called directly, against the model's raw limit.

Throughput (``benchmarks/agnostic_throughput.py``): every sample model (tabular, image, text incl.
sst2-minilm), a short (exact-path) and a long sample, kernel_shap, lime, occlusion and feature_ablation,
side by side with shap / lime / captum called directly, in alternating turns: wall time, and evaluations
per second as a fraction of the raw batched forward rate of the same model (the machine's limit).

Convergence (Kernel SHAP's accuracy): error = max |phi_hat - phi| / max |phi| against the exact Shapley
values (diabetes-mlp, 10 features: enumeration) or a cached high-budget reference (breast-cancer-mlp,
30 features: ``benchmarks/reference_breast_cancer.npz``), against model evaluations and wall time, for
explainkit's kernel_shap (paired and leverage samplers), ``shap.KernelExplainer`` (l1_reg=False, its
best), ``shap.PermutationExplainer`` and ``shap.explainers.Exact`` (10 features only), all on the same
masking game; then the evaluations and seconds each needs to reach 1% and 0.1% error (medians over seeds).

    python benchmarks/bench_agnostic.py [--part all|throughput|convergence] [--repeats 3] [--n-samples 1000]
                                        [--seeds 3] [--models sst2-transformer,mnist-cnn]
"""
from __future__ import annotations

import argparse
import io
import itertools
import math
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import explainkit
from explainkit import Task

# the convergence study: (model, sample index, budgets); breast-cancer sample 3 (p = 0.90). Its samples with
# p = 1.0000 (0, 1, 4) make the game near a threshold function: 1% there takes millions of evaluations.
STUDY = [("diabetes-mlp", 5, (40, 80, 120, 160, 200, 320, 480, 640, 800, 1022)),
         ("breast-cancer-mlp", 3, (500, 1000, 2000, 3000, 4000, 6000, 8000, 16000, 32000, 64000, 128000, 256000))]
REFERENCE = Path(__file__).with_name("reference_breast_cancer.npz")
REFERENCE_BUDGET = 4_000_000       # the default (regression-adjusted) estimator: max SE ~1e-4 of max |phi|
REFERENCE_ESTIMATOR = "adjusted"   # the reference is recomputed when the estimator that made it differs
THRESHOLDS = (0.01, 0.001)


# -- convergence -----------------------------------------------------------------------------------------
def _game(model, sample, target):
    from explainkit_builtins.shap_plugin import _Game
    return _Game(model, sample, target)


def exact_shapley(game, m: int) -> np.ndarray:
    """Shapley values by the formula over all 2^M coalitions."""
    z = np.asarray(list(itertools.product((0, 1), repeat=m)), dtype=np.float32)    # row r is r in binary
    v = game(z)
    size = z.sum(axis=1).astype(int)
    w = np.array([math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)])
    phi = np.zeros(m)
    for i in range(m):
        out = np.nonzero(z[:, i] == 0)[0]
        phi[i] = np.sum(w[size[out]] * (v[out + (1 << (m - 1 - i))] - v[out]))
    return phi


def reference(model, sample, target, name, index):
    """The breast-cancer reference: explainkit at REFERENCE_BUDGET evaluations, cached (npz, no pickle)."""
    if REFERENCE.exists():
        with np.load(REFERENCE, allow_pickle=False) as z:
            if (str(z["model"]) == name and int(z["index"]) == index and int(z["budget"]) == REFERENCE_BUDGET
                    and str(z.get("estimator", "")) == REFERENCE_ESTIMATOR):
                return z["phi"], z["errors"]
    from explainkit.atomic import atomic_write
    from explainkit_builtins.kernel_estimator import estimate

    game = _game(model, sample, target)               # past the declared n_samples cap: the estimator itself
    e = estimate(lambda z: game(np.asarray(z, dtype=np.float32)), sample.n_units, REFERENCE_BUDGET, seed=12345)
    buf = io.BytesIO()
    np.savez(buf, phi=e.values, errors=e.errors, model=name, index=index, budget=REFERENCE_BUDGET,
             estimator=REFERENCE_ESTIMATOR)
    atomic_write(REFERENCE, buf.getvalue())
    return e.values, e.errors


def _counted(game, cast=True):
    """The game counting its evaluations; shap's float masks become float32 (the estimator's stay boolean)."""
    calls = [0]

    def f(z):
        calls[0] += len(z)
        return game(np.asarray(z, dtype=np.float32) if cast else z)
    return f, calls


def _clocks():
    return time.perf_counter(), time.process_time()


def _since(t0):
    wall, cpu = _clocks()
    return wall - t0[0], cpu - t0[1]


def run_method(method, model, sample, target, m, budget, seed):
    """One estimate: (phi [M], model evaluations, wall seconds, CPU seconds of this process)."""
    import shap

    if method.startswith("estimator"):             # kernel_estimator called directly on the game, like shap
        from explainkit_builtins.kernel_estimator import estimate
        f, calls = _counted(_game(model, sample, target), cast=False)
        t0 = _clocks()
        e = estimate(f, m, budget, seed=seed, adjust=not method.endswith("no surrogate"))
        return (e.values, calls[0], *_since(t0))
    if method.startswith("explainkit"):
        est = "leverage" if method.endswith("leverage") else "paired"
        t0 = _clocks()
        e = explainkit.explain(model, sample, "kernel_shap", n_samples=budget, seed=seed, estimator=est)
        return (e.scores, e.extras["n_evaluations"], *_since(t0))
    f, calls = _counted(_game(model, sample, target))
    zeros, ones = np.zeros((1, m)), np.ones((1, m))
    t0 = _clocks()
    if method == "shap.KernelExplainer":
        np.random.seed(seed)
        phi = shap.KernelExplainer(f, zeros).shap_values(ones[0], nsamples=budget, l1_reg=False, silent=True)
    elif method == "shap.PermutationExplainer":
        ex = shap.PermutationExplainer(f, shap.maskers.Independent(zeros), seed=seed)
        phi = ex(ones, max_evals=budget, silent=True).values[0]
    else:                                           # shap.explainers.Exact: every coalition
        phi = shap.explainers.Exact(f, shap.maskers.Independent(zeros))(ones, silent=True).values[0]
    return (np.asarray(phi, dtype=np.float64).reshape(m), calls[0], *_since(t0))


def convergence(seeds: int) -> None:
    """Error against evaluations and time; the methods take turns (budget by budget, seed by seed), and the
    seconds are this process's CPU time (wall time is printed too: on a shared machine it mostly measures
    the other tenants). Every method is timed end to end per call, from a warm process: "explainkit ..." is a
    whole ``explainkit.explain`` call (parameter validation, the model's prediction, the result object),
    "estimator, ..." the estimator alone, and shap's explainers are constructed and run on the bare game
    (the same masking game, without explainkit's wrapper), so explainkit's fixed costs count against it
    and shap's do not."""
    import torch

    from explainkit.data import datasets

    torch.set_num_threads(1)
    methods = ("explainkit paired", "explainkit leverage", "estimator, direct", "estimator, no surrogate",
               "shap.KernelExplainer", "shap.PermutationExplainer")
    summary = []
    for name, index, budgets in STUDY:
        model = explainkit.load_sample(name)
        sample = model.prepare(datasets.sample_data(name)[index][0])
        target = int(np.argmax(model.predict([sample])[0])) if model.task is Task.CLASSIFICATION else 0
        m = sample.n_units
        if m <= 14:
            phi, ref_note = exact_shapley(_game(model, sample, target), m), "exact (enumeration)"
        else:
            phi, ref_se = reference(model, sample, target, name, index)
            ref_note = f"{REFERENCE_BUDGET:,}-evaluation reference, max SE {ref_se.max() / np.abs(phi).max():.1e}"
        scale = np.abs(phi).max()
        for meth in methods:                                                          # warm-up (imports)
            run_method(meth, model, sample, target, m, budgets[0], 0)
        print(f"\n{name} sample {index}: {m} units, against {ref_note}")
        print(f"{'method':<27}{'budget':>8}{'evals':>9}{'cpu s':>10}{'wall s':>10}{'error':>10}")
        curves = {}
        runs = [[(meth, b) for meth in methods] for b in budgets]
        if m <= 14:
            runs.append([("shap.explainers.Exact", 2 ** m)])
        for group in runs:
            rows = {key: [] for key in group}
            for seed in range(seeds):                                                 # turns: A, B, C, A, B, C
                for key in group:
                    rows[key].append(run_method(key[0], model, sample, target, m, key[1], seed))
            for (meth, b), rs in rows.items():
                ev = statistics.median(r[1] for r in rs)
                wall = statistics.median(r[2] for r in rs)
                cpu = statistics.median(r[3] for r in rs)
                err = statistics.median(float(np.abs(r[0] - phi).max() / scale) for r in rs)
                curves.setdefault(meth, []).append((ev, cpu, err))
                print(f"{meth:<27}{b:>8}{ev:>9.0f}{cpu:>10.4f}{wall:>10.4f}{err:>10.5f}", flush=True)
        for meth, pts in curves.items():
            pts.sort()
            reach = []
            for th in THRESHOLDS:
                hit = next(((ev, sec) for ev, sec, err in pts if err <= th), None)
                reach.append(hit)
            summary.append((name, meth, reach))
    print("\nto reach an error (max |phi_hat - phi| / max |phi|), medians over", seeds, "seeds; '-': not within "
          "the budgets tried; s = CPU seconds; x = shap.KernelExplainer's / this method's ('>': it never does)")
    print(f"{'model':<19}{'method':<27}" + "".join(f"{'evals ' + f'{th:.1%}':>13}{'s ' + f'{th:.1%}':>10}{'x ev':>7}"
                                                   f"{'x s':>7}" for th in THRESHOLDS))
    for name, meth, reach in summary:
        base = next(r for n, mm, r in summary if n == name and mm == "shap.KernelExplainer")
        cells = ""
        for hit, ref in zip(reach, base):
            if hit is None:
                cells += f"{'-':>13}{'-':>10}{'':>7}{'':>7}"
                continue
            xe = f"{ref[0] / hit[0]:.1f}" if ref is not None else ">"
            xs = f"{ref[1] / hit[1]:.1f}" if ref is not None else ">"
            cells += f"{hit[0]:>13.0f}{hit[1]:>10.4f}{xe:>7}{xs:>7}"
        print(f"{name:<19}{meth:<27}{cells}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "throughput", "convergence"), default="all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3, help="seeds per point of the convergence study")
    ap.add_argument("--models", default="", help="throughput: comma-separated sample models (default: all)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.part in ("all", "convergence"):
        convergence(args.seeds)
        if args.part == "convergence":
            return 0
    from agnostic_throughput import throughput

    return throughput(args.n_samples, args.repeats, [m for m in args.models.split(",") if m])


if __name__ == "__main__":
    raise SystemExit(main())
