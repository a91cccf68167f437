"""explainkit's generation explainers against captum's LLM attribution, on SmolLM2-135M-Instruct (CPU).

    .venv/bin/python benchmarks/bench_llm.py [--threads 1] [--steps 8] [--shapley 2] [--skip-rss]

Same model, prompt (chat-templated), target and units for both. Perturbation units: words for the ~40-token
prompt, sentences for the ~400-token one (captum: TextTemplateInput with each unit's text, baseline "",
forward_in_tokens=False, its fastest mode). IG: captum's LLMGradientAttribution(LayerIntegratedGradients)
on the embedding layer (baseline token id 0 at every position, the template's tokens included, one IG run
per answer token); explainkit's IG holds the template's embeddings fixed and starts the units from zero
embeddings, so the numbers differ by definition (the column shows it). Rate: masked copies evaluated
per second as a fraction of a raw batched forward pass over the full prompt + answer (8 rows).
Peak RSS: IG on a ~1,000-token prompt in a fresh process (limit 8 GiB).
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
    from captum.attr import TextTemplateInput
    enc = lm.set_units(lm.encode(prompt), units)
    ends = [0] + [e for _, e in enc.unit_spans]
    values = [prompt[ends[i]:ends[i + 1]] for i in range(enc.n_units)]
    values[-1] += prompt[ends[-1]:]
    esc = lambda s: s.replace("{", "{{").replace("}", "}}")  # noqa: E731
    tpl = esc(enc.templated[:enc.start]) + "{}" * len(values) + esc(enc.templated[enc.start + len(prompt):])
    return TextTemplateInput(tpl, values=values), enc


def _timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def _raw_rate(lm, enc, answer, rows=8):
    import torch
    x = torch.tensor([list(enc.ids) + answer] * rows)
    with torch.no_grad():
        lm.module.base_model(input_ids=x[:1])
        _, dt = _timed(lambda: lm.module.base_model(input_ids=x))
    return rows / dt


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
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", type=int, default=0)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    if a.rss_child:
        return _rss_child(a.rss_child)
    rss = None
    if not a.skip_rss:                     # in parallel, in its own process (its peak is its own)
        rss = subprocess.Popen([sys.executable, __file__, "--rss-child", "1000", "--threads", str(a.threads)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    from captum.attr import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        ShapleyValueSampling,
        TextTokenInput,
    )

    import explainkit as ek
    lm, load_s = _timed(lambda: ek.load_sample("smollm2-135m"))
    print(f"load_sample('smollm2-135m'): {load_s:.1f} s; torch threads {a.threads}")
    answer = lm.target_ids(TARGET)
    rows = []
    def one(label, prompt, units):   # a function per prompt: the timed lambdas read its own locals
        inp, enc = _captum_input(lm, prompt, units)
        raw = _raw_rate(lm, enc, answer)
        tgt = torch.tensor(answer)
        common = dict(target=TARGET, units=units)
        ours, t_ours = _timed(lambda: ek.explain(lm, prompt, method="lm_feature_ablation", **common))
        ref, t_ref = _timed(lambda: LLMAttribution(FeatureAblation(lm.module), lm.tokenizer).attribute(
            inp, target=tgt, forward_in_tokens=False))
        copies = enc.n_units + 1
        rows.append((label, f"feature_ablation ({enc.n_units} {units})", t_ours, t_ref,
                     _rel(ours.matrix, ref.token_attr.detach().numpy()), copies / t_ours / raw))
        torch.manual_seed(0)
        ours, t_ours = _timed(lambda: ek.explain(lm, prompt, method="lm_shapley_value_sampling", seed=0,
                                                 n_samples=a.shapley, **common))
        torch.manual_seed(0)
        ref, t_ref = _timed(lambda: LLMAttribution(ShapleyValueSampling(lm.module), lm.tokenizer).attribute(
            inp, target=tgt, forward_in_tokens=False, n_samples=a.shapley))
        rows.append((label, f"shapley_value_sampling (n={a.shapley})", t_ours, t_ref,
                     _rel(ours.matrix, ref.token_attr.detach().numpy()),
                     ours.extras.get("copies", 0) / t_ours / raw))
        ours, t_ours = _timed(lambda: ek.explain(lm, prompt, method="lm_integrated_gradients", n_steps=a.steps,
                                                 **common))
        skip = [i for i in set(enc.ids) if i not in {enc.ids[p] for pos in enc.unit_pos for p in pos}]
        tin = TextTokenInput(enc.templated, lm.tokenizer, skip_tokens=skip)
        lig = LayerIntegratedGradients(lm.module, lm.module.get_input_embeddings())
        ref, t_ref = _timed(lambda: LLMGradientAttribution(lig, lm.tokenizer).attribute(tin, target=tgt,
                                                                                       n_steps=a.steps))
        rows.append((label, f"integrated_gradients (steps={a.steps})", t_ours, t_ref,
                     float("nan"), float("nan")))
        print(f"{label}: {len(enc.ids)} templated tokens, {enc.n_units} units, raw batched forward "
              f"{raw:.1f} copies/s", flush=True)

    for label, prompt, units in (("~40 tok", SHORT, "words"), ("~400 tok", _long(24), "sentences")):
        one(label, prompt, units)

    print(f"\n{'prompt':9} {'method':38} {'explainkit s':>12} {'captum s':>9} {'speed-up':>9} "
          f"{'max rel diff':>12} {'copies/s vs raw':>15}")
    for label, m, t1, t2, d, frac in rows:
        print(f"{label:9} {m:38} {t1:12.2f} {t2:9.2f} {t2 / t1:8.2f}x {d:12.2e} {frac:15.2f}")
    print("(IG: different baselines by definition, see the docstring; its diff column is not comparable)")
    if rss is not None:
        out, _ = rss.communicate(timeout=1800)
        print("IG peak RSS:", out.strip().splitlines()[-1] if out.strip() else "(child failed)")
    print(f"this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
