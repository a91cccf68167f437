"""Command-line specs turned into objects: ``--model``, ``--data``, ``--param``, ``--methods`` and ``--select``.

The core takes objects; these strings exist only on the command line (and in the app, whose kernel gets
the command line's specs through its environment).
"""
from __future__ import annotations

import re
from pathlib import Path

from explainkit.errors import DataError, ParameterError, UnknownNameError

__all__ = ["resolve_model", "resolve_data", "check_specs", "parse_params", "parse_methods", "parse_selection",
           "parse_method_params", "read_prompts", "generation_options", "default_methods"]

SAMPLE_PREFIX = "sample:"
SAMPLE_DATA = "sample"
DEFAULT_METHOD = "integrated_gradients"
DEFAULT_LM_METHOD = "feature_ablation"          # an alias: lm_feature_ablation on a language model
# argparse dest -> the keyword the core takes (explain/report/evaluate on a language model)
_GEN_OPTIONS = {"units": "units", "max_new_tokens": "max_new_tokens", "target_text": "target", "contrast": "contrast"}


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
        if entry is None or entry.spec is None or model is not None and not entry.spec.applies_to(model):
            entry = reg.get(name, model)          # an alias, or the one clear error for an unknown name
        # coerces; names an unknown KEY, or one that does not apply to this model (Param.applies_to)
        spec_params = entry.spec.validate_params(merged[name], model=model)
        out.append((entry.name, {k: spec_params[k] for k in merged[name]}))
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


def default_methods(model, given) -> str:
    """``--method``/``--methods`` as given, else the default for the model (language models: feature_ablation)."""
    if given not in (None, ""):
        return given
    return DEFAULT_LM_METHOD if getattr(model, "generates", False) else DEFAULT_METHOD


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def generation_options(args, model) -> dict:
    """The language-model options given on the command line, as the core's keywords (target=, units=, ...).

    On a classifier any of them (and ``--prompt``/``--prompts``) is one ParameterError; on a language model
    ``--text``, ``--target`` (a class index) and a ``--data`` other than the default are."""
    given = {dest: getattr(args, dest) for dest in (*_GEN_OPTIONS, "prompt", "prompts")
             if getattr(args, dest, None) is not None}
    if not getattr(model, "generates", False):
        if given:
            flags = ", ".join(_flag(d) for d in given)
            raise ParameterError(f"{flags} {'is' if len(given) == 1 else 'are'} for language models; "
                                 f"{model.name!r} is not one ({model.modality.value} {model.task.value}).",
                                 "drop it, or pass --model sample:smollm2-135m (or another language model).")
        return {}
    wrong = [f for f, v in (("--text", getattr(args, "text", None)), ("--target", getattr(args, "target", None)))
             if v is not None]
    data = getattr(args, "data", SAMPLE_DATA)
    if data not in (None, "", SAMPLE_DATA):
        wrong.append("--data")
    if wrong:
        raise ParameterError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} for classifiers; "
                             f"{model.name!r} is a language model.",
                             "pass the prompt with --prompt TEXT (explain) or --prompts FILE (report, evaluate), "
                             "and a forced answer with --target-text TEXT.")
    return {_GEN_OPTIONS[d]: v for d, v in given.items() if d in _GEN_OPTIONS}


MAX_PROMPTS_BYTES = 10_000_000


def read_prompts(path) -> list[str]:
    """A prompts file: one prompt per line, blank lines skipped; a missing, unreadable or empty file is one
    DataError naming the fix."""
    if path in (None, ""):
        raise ParameterError("A language model's report and evaluation need prompts.",
                             "pass --prompts FILE (a text file, one prompt per line).")
    p = Path(path).expanduser()
    fix = "pass --prompts FILE: a UTF-8 text file with one prompt per line."
    if not p.is_file():
        raise DataError(f"No prompts file at {str(path)!r}" + (" (it is a directory)." if p.is_dir() else "."), fix)
    try:
        if p.stat().st_size > MAX_PROMPTS_BYTES:
            raise DataError(f"The prompts file {p} is over {MAX_PROMPTS_BYTES // 1_000_000} MB.",
                            "split it into smaller files.")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"The prompts file {p} is not UTF-8 text.", fix) from None
    except OSError as e:
        raise DataError(f"Cannot read the prompts file {p}: {e.strerror or type(e).__name__}.", fix) from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise DataError(f"The prompts file {p} has no prompts (it is empty or blank).", fix)
    return prompts
