"""Every built-in explainer at its defaults on one 224x224 photo through the pretrained EfficientNet-Lite0.

Printed side by side, one row per explainer: wall time, model evaluations (forward rows, counted by a
hook on the module), evaluations per second as a fraction of the raw batched forward rate, and the same
computation with captum / shap / lime called directly with the same settings (time, and the max abs
difference of the attributions). Targets: perturbation explainers at >= 0.7 of the raw forward rate and
>= 1.0x the direct library's speed; gradient methods within 1.05x of captum's time; at most about 500
forward passes per explainer except integrated gradients (n_steps).

    python benchmarks/bench_real_models.py [--photo chelsea] [--only kernel_shap,occlusion] [--threads 1] [--repeats 3]

Needs ``pip install 'explainkit[vision]'``. The machine may be shared: read the ratios, not the seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import warnings

import numpy as np

import explainkit as ek
from explainkit.data.photos import read_photo

BATCH = 32
SAME_REL = 1e-3        # attributions "match" when max|Δ| is at most this share of the largest |value|


class Counter:
    """Forward rows through the module (each row of each batch, gradient passes included)."""

    def __init__(self, module):
        self.rows = 0
        module.register_forward_pre_hook(self._hook)

    def _hook(self, _m, inputs):
        self.rows += int(inputs[0].shape[0])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def raw_rate(model, sample, batch=BATCH, repeats=3) -> float:
    """Images per second of the bare batched no-grad forward pass (the machine's limit)."""
    import torch

    x = torch.stack([sample.tensor] * batch)
    with torch.no_grad():
        model.module(x[:4])
        best = min(timed(lambda: model.module(x))[1] for _ in range(repeats))
    return batch / best


def _probs(model, xs):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(xs), BATCH):
            out.append(torch.softmax(model.module(xs[i:i + BATCH]), -1).double().numpy())
    return np.concatenate(out)


def _masked(model, sample, z, segments):
    """Masked copies of the sample: segment u kept where z[:, u] == 1, else the black baseline."""
    import torch

    x, base = sample.tensor[None], model.baseline_tensor(sample)[None]
    km = torch.from_numpy(np.asarray(z, np.float32)[:, segments]).unsqueeze(1)
    return km * x + (1 - km) * base


# -- direct library calls, the way their tutorials use them --------------------------------------------------
def direct_shap(model, sample, target, exp):
    import shap

    segments, m = exp.extras["segments"], int(exp.extras["n_units"])
    nsamples, l1 = int(exp.extras["n_coalitions"]), exp.extras["shap_l1_reg"]
    l1 = False if l1 == "False" else l1

    def f(z):
        return _probs(model, _masked(model, sample, z, segments))[:, target]

    np.random.seed(0)
    ke = shap.KernelExplainer(f, np.zeros((1, m)))
    values = np.asarray(ke.shap_values(np.ones(m), nsamples=nsamples, l1_reg=l1, silent=True)).reshape(m)
    return values[segments]


def direct_lime(model, sample, target, exp):
    from lime import lime_image

    segments = exp.extras["segments"]
    n = int(exp.extras["n_evaluations"])
    explainer = lime_image.LimeImageExplainer(random_state=0)

    def classify(images):
        import torch
        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(images, np.float32), -1, 1)))
        mean = torch.tensor(model.normalize["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(model.normalize["std"]).view(1, -1, 1, 1)
        return _probs(model, (x - mean) / std)

    with contextlib.redirect_stderr(io.StringIO()):         # lime's progress bar
        res = explainer.explain_instance(np.asarray(sample.image, np.float64), classify, labels=(target,),
                                         top_labels=None, hide_color=0, num_features=10, num_samples=n,
                                         batch_size=BATCH, segmentation_fn=lambda _img: segments, random_seed=0)
    unit = np.zeros(int(segments.max()) + 1)
    for i, w in res.local_exp[target]:
        unit[int(i)] = w
    return unit[segments]


def _captum_setup(model, sample):
    import torch

    x = sample.tensor[None].clone()
    base = model.baseline_tensor(sample)[None]
    return torch, x, base


def direct_occlusion(model, sample, target, exp):
    import captum.attr as ca

    torch, x, base = _captum_setup(model, sample)
    w, s = int(exp.extras["window"]), int(exp.extras["stride"])
    attr = ca.Occlusion(model.module).attribute(x, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=base,
                                                target=target, perturbations_per_eval=BATCH)
    return attr[0].mean(0).double().numpy()


def direct_gradient(name):
    def run(model, sample, target, exp):
        import captum.attr as ca

        torch, x, base = _captum_setup(model, sample)
        f = model.module
        p = exp.params
        if name == "saliency":
            a = ca.Saliency(f).attribute(x.requires_grad_(), target=target, abs=p.get("abs", True))
        elif name == "input_x_gradient":
            a = ca.InputXGradient(f).attribute(x.requires_grad_(), target=target)
        elif name == "integrated_gradients":
            from explainkit_builtins.gradients import auto_rows
            a = ca.IntegratedGradients(f).attribute(x, baselines=base, target=target, n_steps=p["n_steps"],
                                                    method=p["integration"],
                                                    internal_batch_size=auto_rows(model, x, 1))
        elif name == "smoothgrad":
            torch.manual_seed(0)
            sigma = p["stdevs"] * float(x.max() - x.min())
            a = ca.NoiseTunnel(ca.Saliency(f)).attribute(x, nt_type=p["nt_type"], nt_samples=p["n_samples"],
                                                         stdevs=sigma, target=target)
        elif name == "gradient_shap":
            from explainkit_builtins.gradients import BASELINE_NOISE
            torch.manual_seed(0)
            np.random.seed(0)
            scale = float(x.max() - x.min())
            noise = torch.randn((p["n_baselines"] - 1,) + tuple(base.shape[1:]))
            dist = torch.cat([base, base + BASELINE_NOISE * scale * noise])
            a = ca.GradientShap(f).attribute(x, baselines=dist, n_samples=p["n_samples"],
                                             stdevs=p["stdevs"] * scale, target=target)
        elif name == "gradcam":
            cam = ca.LayerGradCam(f, model.conv_layer).attribute(x, target=target, relu_attributions=p["relu"])
            a = ca.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")
            return a[0, 0].detach().double().numpy()
        return a[0].detach().sum(0).double().numpy()
    return run


# the same algorithm on both sides: kernel_shap's default estimator is explainkit's own (paired, stratified
# sampling with standard errors, bench_agnostic.py --part convergence); estimator="shap" is shap's KernelExplainer
SAME = {"kernel_shap": {"estimator": "shap"}}
DIRECT = {"kernel_shap": ("shap", direct_shap), "lime": ("lime", direct_lime),
          "occlusion": ("captum", direct_occlusion)}
PERTURBATION = set(DIRECT)
for _name in ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap", "gradcam"):
    DIRECT[_name] = ("captum", direct_gradient(_name))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default="chelsea")
    ap.add_argument("--only", default="", help="comma-separated explainer names")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating turns per explainer (plugin, then library), medians reported; perturbation "
                         "explainers above 100 evaluations run once")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default; 1: steadier on a "
                                                           "shared machine)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    model = ek.load_sample("imagenet-efficientnet-lite0")
    sample = model.prepare(read_photo(args.photo))
    target = int(model.predict([sample])[0].argmax())
    counter = Counter(model.module)
    rate = raw_rate(model, sample)
    names = [s.name for s in ek.explainers(model) if s.impl.startswith("explainkit_builtins")]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    print(f"photo {args.photo} {tuple(sample.meta['transform']['original_size'])} -> 224x224, target "
          f"{target} ({model.classes[target]}); raw batched forward: {rate:.1f} images/s "
          f"(batch {BATCH}, torch threads {torch.get_num_threads()})\n")
    head = (f"{'explainer':22s} {'ek s':>7s} {'plugin s':>8s} {'evals':>6s} {'evals/s':>8s} {'÷raw':>5s}   "
            f"{'direct':>7s} {'lib s':>7s} {'evals':>6s} {'speed×':>7s} {'max|Δ|':>9s} {'same':>4s}  target")
    ek.explain(model, sample, "saliency", target=target)           # warm-up: imports, first backward pass
    print(head)
    print("-" * len(head))
    misses = 0
    for name in names:
        lib, fn = DIRECT[name]
        # the plugin and the library take turns, medians kept: a shared machine's load changes by the minute,
        # and turns spread it over both alike. Gradient methods always get --repeats turns
        t_ek, t_plugin, t_lib = [], [], []
        rows_ek = rows_lib = 0
        while len(t_lib) < max(1, args.repeats if rows_ek <= 100 or name not in PERTURBATION else 1):
            counter.rows = 0
            exp, t = timed(lambda name=name: ek.explain(model, sample, name, target=target, **SAME.get(name, {})))
            rows_ek = counter.rows
            t_ek.append(t)
            t_plugin.append(exp.timings.get("explain_s", t))      # plugin: less the runner's prediction
            counter.rows = 0
            with torch.enable_grad():
                ref, t = timed(lambda fn=fn, exp=exp: fn(model, sample, target, exp))
            rows_lib = counter.rows
            t_lib.append(t)
        t_ek, t_plugin, t_lib = (statistics.median(v) for v in (t_ek, t_plugin, t_lib))
        if name in PERTURBATION:          # the raw rate next to the run too: a busy minute must not flatter it
            rate = max(rate, raw_rate(model, sample, repeats=1))
        ours = np.asarray(exp.scores, np.float64)
        diff = float(np.abs(ours - ref).max())
        scale = float(np.abs(ref).max()) or 1.0
        speed = t_lib / t_plugin                  # > 1: the explainer is faster than the library called directly
        ev_rate = rows_ek / t_ek
        if name in PERTURBATION:
            ok = ev_rate / rate >= 0.7 and speed >= 1.0 and rows_ek <= 510
        elif name == "integrated_gradients":
            ok = t_plugin <= 1.05 * t_lib
        else:
            ok = t_plugin <= 1.05 * t_lib and rows_ek <= 510
        same = diff / scale <= SAME_REL
        misses += not ok
        print(f"{name:22s} {t_ek:7.2f} {t_plugin:8.2f} {rows_ek:6d} {ev_rate:8.1f} {ev_rate / rate:5.2f}   {lib:>7s} "
              f"{t_lib:7.2f} {rows_lib:6d} {speed:7.2f} {diff:9.2e} {'yes' if same else 'NO':>4s}  "
              f"{'ok' if ok else 'MISS'} (rel Δ {diff / scale:.1e})", flush=True)
    print(f"\n{len(names) - misses} of {len(names)} explainers meet their target (raw rate at the end: "
          f"{rate:.1f} images/s, the best seen).")
    print("ek s: ek.explain end to end (includes the runner's one prediction of the input); plugin s: the "
          "explainer alone (exp.timings['explain_s']); speed×: library time / plugin time; evals: forward rows; "
          f"same: max|Δ| <= {SAME_REL:g} of the library's largest |attribution|.")


if __name__ == "__main__":
    main()
