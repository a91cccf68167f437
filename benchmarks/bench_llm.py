"""explainkit's generation explainers against captum's LLM attribution, on SmolLM2-135M-Instruct (CPU).

    .venv/bin/python benchmarks/bench_llm.py [--threads 1] [--reps 3] [--steps 8] [--shapley 2] [--long 36]
                                             [--skip-ig] [--skip-rss] [--only-gradients]
                                             [--prompts short,long] [--methods fa,shapley]

Same model, prompt (chat-templated), target and units for both. Perturbation units: words for the ~60-token
templated short prompt, sentences for the long one (``--long`` sentences; 36 gives ~410 templated tokens).
captum runs in its fastest honest configuration: ``TextTemplateInput`` with each unit's text, baseline ""
(deletion, as explainkit), ``forward_in_tokens=False`` (one forward pass per copy over prompt + answer, not
one per answer token); its LLM wrapper takes one copy per pass (``perturbations_per_eval`` 1) and computes
the LM head at every position; both run under no-grad. explainkit and captum runs alternate (``--reps``
each, the order flipped every rep) and the table gives medians, since other processes share the CPU.
IG: captum's LLMGradientAttribution(LayerIntegratedGradients) on the embedding layer, one IG run per answer
token, from ``TextTokenInput``'s baseline: token id 0 at its interpretable tokens, the others (the template)
unchanged. Its interpretable tokens are set to exactly the units' tokens (``skip_tokens`` goes by id, and
the system message shares ids such as "You" with the short prompt); its per-token columns are summed into
units. explainkit runs with ``baseline="token0"`` (the same numbers; timed) and once with its default
``"zero"`` (zero embeddings, which differ by definition). Input x gradient: captum's
LLMGradientAttribution(LayerGradientXActivation), the same quantity.
Rate: masked copies evaluated per second as a fraction of the raw batched forward rate (a plain forward over
the full prompt + answer, 4 rows at once); above 1 means shared prefixes saved more than the copies cost.
Positions: the token positions the forward passes compute (both counted by a hook on the base model, the task's
own pass over the whole prompt included; captum's Shapley copies are shorter than the prompt); their ratio is the
speed-up if
every position cost the same (explainkit computes the head at answer positions only and batches, so more).
Peak RSS: IG on a ~1,000-token prompt in a fresh process, after the timings (limit 8 GiB).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from explainkit.models.captum_inputs import template_input, token_input

TARGET = "Paris is the capital of France."
SHORT = ("You are planning a weekend trip and want to know the basics first. What is the capital of France, "
         "and what is it famous for?")
_FACT = ("France is a country in Western Europe with many old cities. Its capital has museums, cafes and long "
         "avenues. Visitors often take trains between the regions. ")


def _long(n_sent):
    return " ".join(_FACT.strip() for _ in range(n_sent // 3)) + " What is the capital of France?"


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _captum_input(lm, prompt, units):
    enc = lm.set_units(lm.encode(prompt), units)
    return template_input(enc), enc


def _timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def _raw_rate(lm, enc, answer, rows=4, reps=2):
    import torch
    x = torch.tensor([list(enc.ids) + answer] * rows)
    with torch.inference_mode():
        lm.module.base_model(input_ids=x[:1])
        dts = [_timed(lambda: lm.module.base_model(input_ids=x))[1] for _ in range(reps)]
    return rows / float(np.median(dts))


def _positions(lm, f, seen):
    """Run ``f`` counting the token positions its forward passes compute (``seen[0]``: the last run's)."""
    n = [0]
    hook = lm.module.base_model.register_forward_hook(
        lambda mod, args, kw, out: n.__setitem__(0, n[0] + (kw.get("input_ids") if kw.get("input_ids") is not None
                                                               else args[0]).numel()), with_kwargs=True)
    try:
        return f()
    finally:
        hook.remove()
        seen[0] = n[0]


def _pair(reps, ours, ref):
    """Run ``ours`` and ``ref`` alternately ``reps`` times each (order flipped every rep): results and medians."""
    t1, t2, c1, c2, r1, r2 = [], [], [], [], None, None
    for k in range(reps):
        for which in ((0, 1) if k % 2 == 0 else (1, 0)):
            c = time.process_time()
            if which == 0:
                r1, dt = _timed(ours)
                t1.append(dt)
                c1.append(time.process_time() - c)
            else:
                r2, dt = _timed(ref)
                t2.append(dt)
                c2.append(time.process_time() - c)
    pairs = [(round(x, 1), round(y, 1), round(y / x, 2)) for x, y in zip(t1, t2)]
    print(f"    pairs (explainkit s, captum s, ratio): {pairs}; CPU time: explainkit {np.median(c1):.1f} s, "
          f"captum {np.median(c2):.1f} s, "
          f"{np.median(c2) / np.median(c1):.2f}x", flush=True)
    return r1, r2, float(np.median(t1)), float(np.median(t2))


def _rss_child(n_tokens):
    import explainkit as ek
    lm = ek.load_sample("smollm2-135m")
    prompt = " ".join(["word"] * n_tokens)
    e, dt = _timed(lambda: ek.explain(lm, prompt, method="lm_integrated_gradients", target="Paris.",
                                      units="sentences", n_steps=2))
    n = len(lm.encode(prompt).ids)
    print(json.dumps({"tokens": n, "seconds": dt,
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--shapley", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--long", type=int, default=36, help="sentences in the long prompt")
    ap.add_argument("--skip-ig", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--only-gradients", action="store_true", help="IG and input x gradient rows only")
    ap.add_argument("--prompts", default="short,long", help="which prompts: short, long or both")
    ap.add_argument("--methods", default="fa,shapley", help="perturbation rows: fa, shapley or both")
    ap.add_argument("--rss-child", type=int, default=0)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    if a.rss_child:
        return _rss_child(a.rss_child)
    from captum.attr import (
        FeatureAblation,
        LayerGradientXActivation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        ShapleyValueSampling,
    )

    import explainkit as ek
    lm, load_s = _timed(lambda: ek.load_sample("smollm2-135m"))
    print(f"load_sample('smollm2-135m'): {load_s:.1f} s; torch threads {a.threads}")
    answer = lm.target_ids(TARGET)
    rows = []

    def table_row(label, m, t1, t2, d, frac):
        rows.append((label, m, t1, t2, d, frac))
        print(f"  {label} {m}: explainkit {t1:.2f} s, captum {t2:.2f} s, {t2 / t1:.2f}x, rel diff {d:.2e}",
              flush=True)

    def one(label, prompt, units):   # a function per prompt: the timed lambdas read its own locals
        inp, enc = _captum_input(lm, prompt, units)
        raw = _raw_rate(lm, enc, answer)
        print(f"{label}: {len(enc.ids)} templated tokens, {enc.n_units} units, raw batched forward "
              f"{raw:.2f} copies/s", flush=True)
        tgt = torch.tensor(answer)
        common = dict(target=TARGET, units=units)
        seen, theirs, per_copy = [0], [0], len(enc.ids) + len(answer)   # positions each side's passes computed
        if "fa" in a.methods.split(","):
            fa(label, enc, inp, tgt, common, raw, seen, theirs, prompt, units)
        if "shapley" in a.methods.split(","):
            sv(label, enc, inp, tgt, common, raw, seen, theirs, per_copy, prompt)

    def fa(label, enc, inp, tgt, common, raw, seen, theirs, prompt, units):
        ours, ref, t1, t2 = _pair(a.reps, lambda: _positions(lm, lambda: ek.explain(
                                      lm, prompt, method="lm_feature_ablation", **common), seen),
                                  lambda: _positions(lm, lambda: LLMAttribution(
                                      FeatureAblation(lm.module), lm.tokenizer).attribute(
                                      inp, target=tgt, forward_in_tokens=False), theirs))
        table_row(label, f"feature_ablation ({enc.n_units} {units})", t1, t2,
                  _rel(ours.matrix, ref.token_attr.detach().numpy()), (enc.n_units + 1) / t1 / raw)
        print(f"    positions computed: captum {theirs[0]}, explainkit {seen[0]} (the bound "
              f"at equal cost per position: {theirs[0] / seen[0]:.2f}x)", flush=True)

    def sv(label, enc, inp, tgt, common, raw, seen, theirs, per_copy, prompt):
        def ref_sv():
            torch.manual_seed(0)          # captum draws its permutations from the global generator
            return LLMAttribution(ShapleyValueSampling(lm.module), lm.tokenizer).attribute(
                inp, target=tgt, forward_in_tokens=False, n_samples=a.shapley)
        ours, ref, t1, t2 = _pair(a.reps, lambda: _positions(lm, lambda: ek.explain(
                                      lm, prompt, method="lm_shapley_value_sampling", seed=0, n_samples=a.shapley,
                                      **common), seen), lambda: _positions(lm, ref_sv, theirs))
        copies = a.shapley * enc.n_units + 1      # the copies captum evaluates (explainkit drops repeats)
        table_row(label, f"shapley_value_sampling (n={a.shapley})", t1, t2,
                  _rel(ours.matrix, ref.token_attr.detach().numpy()), copies / t1 / raw)
        print(f"    positions computed: captum {theirs[0]} (not {copies * per_copy}: its coalitions are shorter), "
              f"explainkit {seen[0]} (the bound at equal cost per position: {theirs[0] / seen[0]:.2f}x)", flush=True)

    def gradients(label, prompt, units):      # IG and input x gradient against captum's layer attributions
        enc = lm.set_units(lm.encode(prompt), units)
        if a.only_gradients:
            print(f"{label}: {len(enc.ids)} templated tokens, {enc.n_units} units", flush=True)
        tgt = torch.tensor(answer)
        common = dict(target=TARGET, units=units)
        tin, to_units = token_input(lm, enc)
        emb = lm.module.get_input_embeddings()
        lig = LLMGradientAttribution(LayerIntegratedGradients(lm.module, emb), lm.tokenizer)
        ig = dict(common, method="lm_integrated_gradients", n_steps=a.steps)
        ours, ref, t1, t2 = _pair(a.reps, lambda: ek.explain(lm, prompt, baseline="token0", **ig),
                                  lambda: lig.attribute(tin, target=tgt, n_steps=a.steps))
        ref_m = ref.token_attr.detach().double().numpy() @ to_units
        table_row(label, f"integrated_gradients (steps={a.steps}, token0)", t1, t2, _rel(ours.matrix, ref_m),
                  float("nan"))
        zero, t0 = _timed(lambda: ek.explain(lm, prompt, baseline="zero", **ig))
        table_row(label, "  same, baseline zero (1 run)", t0, t2, _rel(zero.matrix, ref_m), float("nan"))
        lgxa = LLMGradientAttribution(LayerGradientXActivation(lm.module, emb), lm.tokenizer)
        ours, ref, t1, t2 = _pair(a.reps, lambda: ek.explain(lm, prompt, method="lm_input_x_gradient", **common),
                                  lambda: lgxa.attribute(tin, target=tgt))
        table_row(label, "input_x_gradient", t1, t2, _rel(ours.matrix, ref.token_attr.detach().double().numpy()
                                                           @ to_units), float("nan"))

    for label, prompt, units in (("short", SHORT, "words"), ("long", _long(a.long), "sentences")):
        if label not in a.prompts.split(","):
            continue
        if not a.only_gradients:
            one(label, prompt, units)
        if not a.skip_ig:
            gradients(label, prompt, units)

    print(f"\n{'prompt':9} {'method':38} {'explainkit s':>12} {'captum s':>9} {'speed-up':>9} "
          f"{'max rel diff':>12} {'copies/s vs raw':>15}")
    for label, m, t1, t2, d, frac in rows:
        print(f"{label:9} {m:38} {t1:12.2f} {t2:9.2f} {t2 / t1:8.2f}x {d:12.2e} {frac:15.2f}", flush=True)
    print(f"(medians of {a.reps} alternating runs each; IG baseline zero: differs by definition, see the docstring)")
    if not a.skip_rss:                     # after the timings, in a fresh process (its peak is its own)
        out = subprocess.run([sys.executable, __file__, "--rss-child", "1000", "--threads", str(a.threads)],
                             capture_output=True, text=True, timeout=3600).stdout
        print("IG on a 1,000-token prompt, fresh process:", out.strip().splitlines()[-1] if out.strip()
              else "(child failed)")
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
