"""Command-line specs turned into objects: ``--model``, ``--data``, ``--param``, ``--methods`` and ``--select``.

The core takes objects; these strings exist only on the command line (and in the app, whose kernel gets
the command line's specs through its environment).
"""
from __future__ import annotations

import re
from pathlib import Path

from explainkit.errors import DataError, ParameterError, UnknownNameError

__all__ = ["resolve_model", "resolve_data", "check_specs", "parse_params", "parse_methods", "parse_selection",
           "parse_method_params"]

SAMPLE_PREFIX = "sample:"
SAMPLE_DATA = "sample"


def resolve_model(spec: str):
    """'sample:NAME' -> a shipped sample model; otherwise a checkpoint directory."""
    from explainkit.models import checkpoint, zoo

    spec = str(spec)
    if spec.startswith(SAMPLE_PREFIX):
        return zoo.load_sample(spec[len(SAMPLE_PREFIX):])
    path = Path(spec)
    if not path.exists():
        names = ", ".join(f"{SAMPLE_PREFIX}{r['name']}" for r in zoo.sample_models())
        raise UnknownNameError(f"No model {spec!r}: not a checkpoint directory or a sample name.",
                               f"pass a checkpoint directory or one of: {names}.")
    return checkpoint.load(path)


def resolve_data(spec, model):
    """'sample' (the shipped data for the model), 'sample:NAME', or a data file or directory."""
    from explainkit.data import datasets
    from explainkit.data.files import load_path

    if hasattr(spec, "raws") and hasattr(spec, "samples"):
        return spec
    spec = SAMPLE_DATA if spec in (None, "") else str(spec)
    if spec == SAMPLE_DATA:
        return datasets.sample_data(model.config.get("family") or model.modality.value)
    if spec.startswith(SAMPLE_PREFIX):
        return datasets.sample_data(spec)
    return load_path(spec, model)


def check_specs(model: str, data: str) -> tuple[str, str]:
    """Check the model and data specs cheaply (no torch import) and make paths absolute.

    The app's kernel runs in a temp dir, so a relative checkpoint or data path must be resolved here.
    """
    from explainkit.models import zoo

    model = (model or "sample:mnist-cnn").strip()
    if model.startswith(SAMPLE_PREFIX):
        names = [row["name"] for row in zoo.sample_models()]
        if model[len(SAMPLE_PREFIX):] not in names:
            raise UnknownNameError(f"Unknown sample model {model!r}.",
                                   "use one of: " + (", ".join(f"{SAMPLE_PREFIX}{n}" for n in names)
                                                     or f"(none found in {zoo.sample_models_dir()})") + ".")
    else:
        path = Path(model).expanduser()
        if not (path / "config.json").is_file():
            raise UnknownNameError(f"No model {model!r}: not a checkpoint directory or a sample name.",
                                   "pass --model sample:NAME (see 'explainkit models list') or a directory "
                                   "written by explainkit.save().")
        model = str(path.resolve())
    data = (data or SAMPLE_DATA).strip()
    if data != SAMPLE_DATA:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"No data at {data!r}.", "pass --data sample (the shipped data) or an existing "
                                                     "file or directory.")
        data = str(path.resolve())
    return model, data


def parse_params(pairs: list[str]) -> dict:
    """['n_steps=200', ...] -> {'n_steps': '200'} (the explainer's declaration coerces the values)."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ParameterError(f"Parameter {p!r} is not KEY=VALUE.", "write --param n_steps=200.")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_methods(text: str) -> list[tuple[str, dict]]:
    """'integrated_gradients,occlusion:window=4:stride=2' -> [(name, params), ...]."""
    runs = []
    for item in str(text).split(","):
        if not item.strip():
            continue
        name, *pairs = item.strip().split(":")
        params = dict(p.split("=", 1) for p in pairs if "=" in p)
        if len(params) != len(pairs):
            raise ParameterError(f"Method {item!r} is not 'name:key=value:...'.", "write occlusion:window=4.")
        runs.append((name, params))
    if not runs:
        raise ParameterError("No methods given.", "pass --methods integrated_gradients,gradcam.")
    return runs


def parse_method_params(pairs, runs: list[tuple[str, dict]], model=None, registry=None) -> list[tuple[str, dict]]:
    """``--param METHOD.KEY=VALUE`` (repeatable) merged into ``parse_methods``' list; each value is coerced
    by that explainer's declaration, and an unknown METHOD or KEY is one ParameterError."""
    from explainkit.plugins.registry import registry as default_registry

    names = [name for name, _ in runs]
    merged = {name: dict(params) for name, params in runs}
    for p in pairs or []:
        head, eq, value = str(p).partition("=")
        method, dot, key = head.strip().partition(".")
        if not eq or not dot or not method or not key.strip():
            raise ParameterError(f"--param {p!r} is not METHOD.KEY=VALUE.", "write --param occlusion.window=4.")
        if method not in merged:
            raise ParameterError(f"--param {p!r} names method {method!r}, which is not in --methods.",
                                 f"use one of: {', '.join(names)} (or add {method} to --methods).")
        merged[method][key.strip()] = value.strip()
    reg = registry or default_registry()
    out = []
    for name in names:
        entry = reg.entries.get(name)
        if entry is None or entry.spec is None:
            entry = reg.get(name, model)          # the one clear error for an unknown or unloadable name
        spec_params = entry.spec.validate_params(merged[name])      # coerces; names an unknown KEY
        out.append((name, {k: spec_params[k] for k in merged[name]}))
    return out


_INDICES = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
MAX_SELECTION = 1_000_000        # indices one --select may name (checked before any list is built)


def parse_selection(text: str, n: int | None = None):
    """'1,5,9' or '0-99' -> a list of indices; any other word (all, misclassified, ...) is kept as it is.

    The ranges are checked (order, count, and against ``n`` samples when given) before they are expanded."""
    compact = str(text).strip().lower().replace(" ", "")
    if len(compact) > 10_000 or not _INDICES.fullmatch(compact):
        return compact[:200]
    ranges = []
    for part in compact.split(","):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b or a)
        if hi < lo:
            raise ParameterError(f"--select range {part!r} runs backwards.", f"write {hi}-{lo}.")
        ranges.append((lo, hi))
    total = sum(hi - lo + 1 for lo, hi in ranges)
    if total > MAX_SELECTION:
        raise ParameterError(f"--select names {total:,} indices, over the limit of {MAX_SELECTION:,}.",
                             "select fewer samples, or use --select all with --limit.")
    past = [(lo, hi) for lo, hi in ranges if n is not None and hi >= n]
    if past:
        lo, hi = past[0]
        raise ParameterError(f"--select {lo if lo == hi else f'{lo}-{hi}'!r} goes past the data's {n} samples.",
                             f"pass indices in 0..{n - 1}.")
    return [i for lo, hi in ranges for i in range(lo, hi + 1)]
