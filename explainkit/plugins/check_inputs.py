"""The models and inputs the conformance harness runs an explainer on, and the model-state snapshot
that shows whether an explainer left the model as it found it."""
from __future__ import annotations

import numpy as np

from explainkit.enums import Modality
from explainkit.errors import ExplainKitError, ModelError, UnknownNameError

__all__ = ["model_pool", "black_box", "raw_inputs", "model_state", "applies_to_rows", "N_SAMPLES", "LM_SAMPLE",
           "LM_PROMPTS"]

MAX_SIDE = 64          # the default pool's largest image side
N_SAMPLES = 2          # samples explained per model: enough to catch batch bugs, cheap enough for CI
LM_SAMPLE = "smollm2-135m"              # the language model in a generation explainer's default pool
LM_PROMPTS = ["Capital of France?"]     # one short prompt: a generation explainer's cost grows with units


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_load_state_dict_pre_hooks")


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


def model_pool(models, generation: bool = False) -> list:
    """[(model, raw_inputs)] for the harness. ``generation``: the default pool also holds the sample
    language model (when the ``llm`` extra is installed) with :data:`LM_PROMPTS`, first."""
    from explainkit.models.adapter import ModelAdapter

    if models is None:
        lm = _language_models() if generation else []
        from explainkit.models import zoo
        from explainkit.models.checkpoint import read_config

        # optional families need their packages; photo-size models (224x224 ImageNet) are left out of the
        # default pool, where a perturbation explainer at its defaults would take minutes: pass
        # models=["imagenet-efficientnet-lite0"] to check on one
        models = [n for n in zoo._loadable_sample_names()
                  if max((read_config(zoo.sample_models_dir() / n).get("input_shape") or [0, 0, 0])[1:]) <= MAX_SIDE]
        pool = [(m, raw_inputs(m, N_SAMPLES)) for m in (zoo.load_sample(n) for n in models)]
        tab = [m for m, _ in pool if m.modality is Modality.TABULAR and m.classes]
        if tab:
            box = black_box(tab[0])
            pool.append((box, raw_inputs(tab[0], N_SAMPLES)))
        return lm + pool
    pool = []
    for item in models:
        if isinstance(item, tuple):
            model, raws = item
            pool.append((model, list(raws)[:N_SAMPLES]))
            continue
        if isinstance(item, str):
            from explainkit.models.zoo import load_sample
            item = load_sample(item)
        if not isinstance(item, ModelAdapter):
            raise ModelError(f"check_explainer got a {type(item).__name__} in models.",
                             "pass sample-model names, wrapped models, or (model, raw_inputs) pairs.")
        pool.append((item, raw_inputs(item, N_SAMPLES)))
    return pool


def _language_models() -> list:
    """[(the sample LM, LM_PROMPTS)] if the llm extra is installed, else [] (the harness reports the skip)."""
    from explainkit.models.families import _llm_available
    from explainkit.models.zoo import _sample_names, load_sample

    if not _llm_available() or LM_SAMPLE not in _sample_names():
        return []
    return [(load_sample(LM_SAMPLE), list(LM_PROMPTS))]


def black_box(model):
    """A predict-only copy of a tabular classifier (no gradients, no module)."""
    from explainkit.models.blackbox import FunctionModel

    return FunctionModel(lambda rows: model.predict(list(rows)), modality=model.modality, task=model.task,
                         classes=model.classes, feature_names=model.feature_names,
                         name=f"{model.name} (black box)")


def raw_inputs(model, n) -> list:
    """The first n shipped held-out inputs for the model's family, else small synthetic ones."""
    from explainkit.data.datasets import sample_data

    if getattr(model, "generates", False):          # a language model's inputs are prompts
        return list(LM_PROMPTS)[:n]

    try:
        data = sample_data(model.config.get("family") or model.name)
        if data.modality is model.modality:
            return [data[i][0] for i in range(min(n, len(data)))]
    except (UnknownNameError, ExplainKitError):
        pass
    rng = np.random.default_rng(0)
    if model.modality is Modality.IMAGE:
        c, h, w = model.input_shape or (1, 28, 28)
        shape = (h, w) if c == 1 else (h, w, c)
        return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]
    if model.modality is Modality.TEXT:
        vocab = [w for w in getattr(model.tokenizer, "vocab", [])[2:40] if w.isalpha()] or ["good", "bad", "film"]
        return [" ".join(rng.choice(vocab, size=6)) for _ in range(n)]
    f = len(model.feature_names)
    mean = np.asarray(model.standardize["mean"]) if model.standardize else np.zeros(f)
    return [mean + rng.normal(size=f) for _ in range(n)]


def model_state(model):
    """A comparable snapshot: weights, train flags, hooks, requires_grad, param grads (None: no module)."""
    module = getattr(model, "module", None)
    if module is None:
        return None
    import hashlib

    import torch

    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    mods = list(module.modules())
    params = list(module.parameters())
    g = torch.nn.modules.module
    return {"weights": h.hexdigest(),
            "train/eval flag": tuple(m.training for m in mods),
            "module hooks": tuple(len(getattr(m, d, {}) or {}) for m in mods for d in _HOOK_DICTS),
            "global hooks": tuple(len(getattr(g, d, {}) or {}) for d in _GLOBAL_HOOKS),
            "tensor hooks": tuple(len(p._backward_hooks or {}) for p in params),
            "requires_grad": tuple(p.requires_grad for p in params),
            "grads": tuple(p.grad is not None for p in params)}



def applies_to_rows(spec, pool) -> list[tuple[str, str, str]]:
    """The harness's ``applies_to`` check: [(model, "pass"|"fail"|"skip", detail)]. Every parameter's rule is
    evaluated on every model the explainer applies to; a predicate that raises, returns a non-bool or cannot
    be imported fails (the PluginError's text); a parameter that applies to none of them is a warning."""
    ruled = [p for p in spec.params if p.applies_to is not None]
    if not ruled:
        return [("-", "skip", "no parameter declares applies_to (each applies to every model)")]
    rows, shown = [], {p.name: 0 for p in ruled}
    models = [m for m, _ in pool if spec.applies_to(m)]
    for model in models:
        try:
            names = [p.name for p in ruled if p.applies(model, spec.name)]
        except ExplainKitError as e:
            rows.append((model.name, "fail", str(e)))
            continue
        for n in names:
            shown[n] += 1
        rows.append((model.name, "pass", f"form shows {', '.join(names) or 'none'} of {', '.join(shown)}"))
    never = [n for n, k in shown.items() if models and not k]
    if never and not any(s == "fail" for _, s, _ in rows):
        rows.append(("-", "warn", f"{', '.join(never)} apply to none of the {len(models)} model(s) checked"))
    return rows or [("-", "skip", "no applicable model to evaluate the rules on")]
