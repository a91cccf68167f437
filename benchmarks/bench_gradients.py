"""Overhead of the captum-based built-ins: ``explainkit.explain`` against the same captum call made directly.

Both sides start from the same prepared samples and do the same work: one forward pass for the predicted
classes (explainkit's default target; a captum user needs them too), then one captum call on the whole
batch with identical settings. explainkit adds validation, collation, the model guard, per-sample
results and provenance. Runs are interleaved (explainkit, captum, explainkit, ...) so load on a shared
machine hits both alike (the first side alternates); fast methods are timed in rounds of several calls;
medians are reported. Target: ratio <= 1.10.

    python benchmarks/bench_gradients.py [--family mnist-cnn] [--n 32] [--repeats 7] [--methods saliency,gradcam]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

NOISE_BASELINES = 0.1       # gradient_shap's noisy baseline copies (same constant as the plugin)


def _captum_calls(model, inputs, extra, text):
    """name -> (explainkit params, f(targets) running the equivalent direct captum call)."""
    import captum.attr as ca
    import torch

    fwd, args = model.forward, (tuple(extra) or None)
    layer = model.embedding_layer if text else None
    pad = int(model.tokenizer.pad_id) if text else None
    black = None if text else torch.stack([torch.as_tensor(model.baseline_tensor(model.prepare(
        np.zeros(model.input_shape[1:], np.uint8))))] * len(inputs))

    def embed_forward(emb, ids, *rest):
        h = layer.register_forward_hook(lambda *_: emb)
        try:
            return fwd(ids, *rest)
        finally:
            h.remove()

    def noisy_input():
        if not text:
            return inputs, fwd, args
        with torch.no_grad():
            return layer(inputs), embed_forward, (inputs, *extra)

    def value_range(x):
        v = x[extra[0]] if text else x
        return float(v.max() - v.min())

    def saliency(t):
        if text:
            a = ca.LayerGradientXActivation(fwd, layer, multiply_by_inputs=False).attribute(
                inputs, target=t, additional_forward_args=args)
            return a.abs()
        return ca.Saliency(fwd).attribute(inputs.detach().requires_grad_(), target=t, abs=True)

    def ixg(t):
        if text:
            return ca.LayerGradientXActivation(fwd, layer).attribute(inputs, target=t, additional_forward_args=args)
        return ca.InputXGradient(fwd).attribute(inputs.detach().requires_grad_(), target=t)

    def ig(t):
        if text:
            return ca.LayerIntegratedGradients(fwd, layer).attribute(
                inputs, baselines=torch.full_like(inputs, pad), target=t, additional_forward_args=args,
                n_steps=50, return_convergence_delta=True)
        return ca.IntegratedGradients(fwd).attribute(inputs, baselines=black, target=t, n_steps=50,
                                                     return_convergence_delta=True)

    def smoothgrad(t):
        x, f, a = noisy_input()
        return ca.NoiseTunnel(ca.Saliency(f)).attribute(x, nt_type="smoothgrad", nt_samples=25,
                                                         stdevs=0.15 * value_range(x), target=t,
                                                         additional_forward_args=a)

    def gradient_shap(t):
        x, f, a = noisy_input()
        base = layer(torch.full_like(inputs[:1], pad)).detach() if text else black[:1]
        noise = torch.randn((9,) + tuple(base.shape[1:]))
        dist = torch.cat([base, base + NOISE_BASELINES * value_range(x) * noise])
        return ca.GradientShap(f).attribute(x, baselines=dist, n_samples=50, target=t, additional_forward_args=a)

    def gradcam(t):
        cam = ca.LayerGradCam(fwd, model.conv_layer).attribute(inputs, target=t)
        return ca.LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), "bilinear")

    def occlusion(t):
        if text:
            return ca.Occlusion(fwd).attribute(inputs, sliding_window_shapes=(1,), strides=(1,), baselines=pad,
                                               target=t, additional_forward_args=args,
                                               perturbations_per_eval=max(1, 512 // len(inputs)))
        c = int(inputs.shape[1])
        return ca.Occlusion(fwd).attribute(inputs, sliding_window_shapes=(c, 4, 4), strides=(c, 4, 4),
                                           baselines=black, target=t,
                                           perturbations_per_eval=max(1, 512 // len(inputs)))

    calls = {"saliency": saliency, "input_x_gradient": ixg, "integrated_gradients": ig,
             "smoothgrad": smoothgrad, "gradient_shap": gradient_shap, "occlusion": occlusion}
    if model.conv_layer is not None and not text:
        calls["gradcam"] = gradcam
    return calls


def main(argv=None) -> int:
    import torch

    import explainkit
    from explainkit.data import datasets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="mnist-cnn", help="shipped sample model (default mnist-cnn)")
    ap.add_argument("--n", type=int, default=32, help="samples per batch")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per side (median reported)")
    ap.add_argument("--methods", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = explainkit.load_sample(args.family)
    data = datasets.sample_data(args.family)
    samples = [model.prepare(data[i][0], index=i) for i in range(args.n)]
    text = model.modality is explainkit.Modality.TEXT
    inputs, extra = model.collate(samples)
    calls = _captum_calls(model, inputs, extra, text)
    if args.methods:
        calls = {k: v for k, v in calls.items() if k in args.methods.split(",")}

    def direct(name):
        with torch.no_grad():
            targets = model.forward(inputs, *extra).argmax(dim=1).tolist()
        return calls[name](targets)

    rows = []
    for name in calls:
        sides = {"explainkit": lambda n=name: explainkit.explain(model, samples, n),
                 "captum": lambda n=name: direct(n)}
        t0 = time.perf_counter()
        for run in sides.values():                        # warm up both sides (imports, allocator)
            run()
        loops = max(1, int(0.5 / max(time.perf_counter() - t0, 1e-6)))    # rounds of >= ~0.25 s
        times = {k: [] for k in sides}
        for rep in range(args.repeats):
            order = list(sides) if rep % 2 == 0 else list(sides)[::-1]   # alternate who goes first
            for k in order:
                t0 = time.perf_counter()
                for _ in range(loops):
                    sides[k]()
                times[k].append((time.perf_counter() - t0) / loops)
        e, r = statistics.median(times["explainkit"]), statistics.median(times["captum"])
        rows.append((name, e * 1e3, r * 1e3, e / r))

    print(f"# {args.family}: batch of {args.n}, median of {args.repeats} interleaved runs, "
          f"torch {torch.__version__} ({args.threads} thread(s)), default parameters")
    print(f"{'method':<22}{'explainkit ms':>15}{'captum ms':>12}{'ratio':>8}  {'<=1.10':>6}")
    for name, e, r, ratio in rows:
        print(f"{name:<22}{e:>15.1f}{r:>12.1f}{ratio:>8.3f}  {'ok' if ratio <= 1.10 else 'OVER':>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
