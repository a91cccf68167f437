"""The top-level calls: ``explain()`` and ``explainers()``, plus model/data resolution for the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from explainkit.enums import Modality
from explainkit.errors import DataError, InputError, ParameterError, UnknownNameError
from explainkit.data.samples import Sample

__all__ = ["explain", "explainers", "resolve_model", "resolve_data"]


def explainers(model) -> list:
    """The explainer declarations that apply to this model, read from the declarations alone."""
    from explainkit.plugins.registry import registry
    return registry().applicable(model)


def _is_batch(model, x) -> bool:
    if isinstance(x, Sample):
        return False
    if isinstance(x, (list, tuple)):
        if model.modality is Modality.TABULAR and x and np.isscalar(x[0]):
            return False
        return True
    if hasattr(x, "__len__") and not isinstance(x, str) and hasattr(x, "samples") and hasattr(x, "raws"):
        return True          # an explainkit Dataset
    if isinstance(x, np.ndarray) or hasattr(x, "detach"):
        arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
        if model.modality is Modality.TABULAR:
            return arr.ndim == 2
        if model.modality is Modality.IMAGE:
            c = model.input_shape[0] if model.input_shape else 1
            return arr.ndim == 4 or (arr.ndim == 3 and c == 1 and arr.shape[0] != 1)
    return False


def explain(model, x, method: str = "integrated_gradients", target=None, *, seed: int = 0, **params):
    """Explain a sample, a raw input (image array, string, feature row) or a batch.

    Returns one :class:`~explainkit.Explanation` for a single input, an
    :class:`~explainkit.Explanations` list for a batch.
    """
    from explainkit.plugins.registry import run_explainer

    if _is_batch(model, x):
        if hasattr(x, "samples") and hasattr(x, "raws"):
            samples = list(x.samples(model))
        else:
            samples = [model.prepare(item, index=i) for i, item in enumerate(x)]
        if not samples:
            raise InputError("The batch is empty.", "pass at least one input.")
        return run_explainer(method, model, samples, target, seed=seed, **params)
    sample = model.prepare(x)
    return run_explainer(method, model, [sample], target, seed=seed, **params)[0]


def resolve_model(spec: str):
    """'sample:NAME' -> a shipped sample model; otherwise a checkpoint directory."""
    from explainkit.models import checkpoint
    from explainkit.models import zoo

    if spec.startswith("sample:"):
        return zoo.load_sample(spec.split(":", 1)[1])
    path = Path(spec)
    if not path.exists():
        names = ", ".join(f"sample:{r['name']}" for r in zoo.sample_models())
        raise UnknownNameError(f"No model {spec!r}: not a checkpoint directory or a sample name.",
                               f"pass a checkpoint directory or one of: {names}.")
    return checkpoint.load(path)


def resolve_data(spec: str, model):
    """'sample' (shipped data for the model), an MNIST directory, a TSV/CSV file or an .npz file."""
    from explainkit.data.files import load_data

    return load_data("sample" if spec in (None, "") else spec, model)


def parse_params(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ParameterError(f"Parameter {p!r} is not KEY=VALUE.", "write --param n_steps=200.")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cli_explain(args) -> int:
    from explainkit.plugins.registry import registry

    model = resolve_model(args.model)
    params = parse_params(args.param)
    entry = registry().get(args.method, model)
    params = entry.spec.validate_params(params)       # strings from the CLI are coerced here
    if args.text is not None:
        x = args.text
    else:
        data = resolve_data(args.data, model)
        if not 0 <= args.index < len(data):
            raise InputError(f"Index {args.index} is out of range for {len(data)} samples.",
                             f"pass --index between 0 and {len(data) - 1}.")
        raw, label = data[args.index]
        x = model.prepare(raw, label=label, index=args.index)
    exp = explain(model, x, args.method, target=args.target, seed=args.seed, **params)
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".json"):
        raise DataError(f"Unsupported output type {suffix!r}.", "use an .png, .html or .json file name.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if suffix == ".png":
        tmp.write_bytes(exp.to_png())
    elif suffix == ".html":
        from explainkit.views.render import html_page
        tmp.write_text(html_page(exp.to_html(), title=f"{exp.method} — {model.name}"), encoding="utf-8")
    else:
        tmp.write_text(json.dumps(exp.to_dict()), encoding="utf-8")
    tmp.replace(out)
    print(f"{exp!r}")
    for unit, score in exp.top_k(5):
        print(f"  {unit:>20}  {score:+.5f}")
    print(f"wrote {out}")
    return 0
