"""Checkpoints: a directory with ``model.safetensors`` + ``config.json``; atomic saves, never unpickled.

``config.json`` holds the family and its hyper-parameters, the class/feature names, the tokenizer,
the input normalization, the metrics, the versions of explainkit and torch, ``format_version`` and the
sha256 of the weights file (checked on load, so a modified file is refused).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from explainkit.errors import CheckpointError, ExplainKitError, ModelError

__all__ = ["save", "load", "FORMAT_VERSION", "WEIGHTS", "CONFIG"]

FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"

# adapter attributes that travel in the config
_ADAPTER_KEYS = ("name", "classes", "feature_names", "normalize", "standardize", "target_name")


def _module_state(module) -> dict:
    fn = getattr(module, "checkpoint_state", None)    # families that save only part of their weights
    state = fn() if callable(fn) else module.state_dict()
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _config_from(model, config: dict | None) -> dict:
    cfg: dict = {}
    if hasattr(model, "module") and hasattr(model, "modality"):       # a TorchModel adapter
        cfg.update(model.config)
        for k in _ADAPTER_KEYS:
            v = getattr(model, k, None)
            if v is not None:
                cfg[k] = v
        cfg["modality"], cfg["task"] = model.modality.value, model.task.value
        if model.input_shape is not None:
            cfg["input_shape"] = list(model.input_shape)
        if model.tokenizer is not None and model.modality.value == "text" and hasattr(model.tokenizer, "to_config"):
            cfg["tokenizer"] = model.tokenizer.to_config()
    cfg.update(config or {})
    if "family" not in cfg:
        raise CheckpointError("The checkpoint config names no model family.",
                              "pass config={'family': ..., 'hparams': {...}} (see explainkit.families()).")
    return cfg


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model, path, config: dict | None = None) -> Path:
    """Save a TorchModel (or an nn.Module plus ``config``) as a checkpoint directory, atomically.

    The files are written into a temporary directory next to ``path``, flushed to disk, and only then
    renamed into place; an existing checkpoint is replaced only once the new one is complete.
    """
    import torch
    from safetensors.torch import save_file

    from explainkit import __version__

    module = getattr(model, "module", model)
    if not isinstance(module, torch.nn.Module):
        raise CheckpointError(f"Cannot save a {type(model).__name__}.", "pass a TorchModel or an nn.Module.")
    cfg = _config_from(model, config)
    target = Path(path)
    if target.exists() and (not target.is_dir() or
                            (any(target.iterdir()) and not (target / CONFIG).exists())):
        raise CheckpointError(f"{target} exists and is not a checkpoint directory.",
                              "choose another path, or remove it yourself.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = None
    try:
        save_file(_module_state(module), str(tmp / WEIGHTS), metadata={"format": "pt"})
        _fsync(tmp / WEIGHTS)
        cfg.update(format_version=FORMAT_VERSION, weights_file=WEIGHTS, weights_sha256=_sha256_file(tmp / WEIGHTS),
                   versions={"explainkit": __version__, "torch": torch.__version__.split("+")[0]})
        with open(tmp / CONFIG, "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=1, sort_keys=True, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)             # mkdtemp makes it private; a checkpoint is an ordinary dir
        for f in (WEIGHTS, CONFIG):
            os.chmod(tmp / f, 0o666 & ~umask)
        _fsync(tmp)
        if target.exists():                       # keep the old one until the new one is in place
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)               # put the previous checkpoint back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "value"):
        return o.value
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def read_config(path) -> dict:
    """The validated ``config.json`` of a checkpoint directory (no weights are read)."""
    d = Path(path)
    if not d.is_dir():
        raise CheckpointError(f"Checkpoint directory {str(path)!r} does not exist.",
                              "pass a directory written by explainkit.save() or 'explainkit train'.")
    cfg_path = d / CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{d} has no {CONFIG}.", "it is not a complete explainkit checkpoint: save it again.")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON ({e}).", "restore the file or save the model again.") \
            from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} does not hold a JSON object.", "save the model again.")
    version = cfg.get("format_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{cfg_path} has no integer format_version.", "save the model again.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"The checkpoint has format_version {version}; this explainkit reads up to "
                              f"{FORMAT_VERSION}.", "upgrade explainkit (pip install -U explainkit).")
    _validate(cfg, cfg_path)
    return cfg


def _field(path) -> str:
    """A jsonschema error path as a dotted field name, list indices dropped (``standardize.mean``)."""
    return ".".join(str(p) for p in path if not isinstance(p, int))


def _expected(field: str) -> str:
    from explainkit.models.config_schema import EXPECTED

    parts = field.split(".") if field else []
    for n in range(len(parts), -1, -1):
        key = ".".join(parts[:n])
        if key in EXPECTED:
            return EXPECTED[key]
    return "a valid value"


def _describe(error) -> tuple[str, str]:
    """(field, 'field is X; expected Y') for one jsonschema validation error."""
    field = _field(error.absolute_path)
    if error.validator == "required":
        missing = [k for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance]
        field = ".".join(p for p in (field, missing[0] if missing else "") if p)
        return field, f"field {field!r} is missing; expected {_expected(field)}"
    got = json.dumps(error.instance, default=str)
    got = got if len(got) <= 60 else got[:57] + "..."
    return field, f"field {field or '(top level)'!r} is {got}; expected {_expected(field)}"


def _validate(cfg: dict, cfg_path: Path) -> None:
    """Check ``cfg`` against the config schema and the fields' agreement; one CheckpointError naming the field."""
    import jsonschema

    from explainkit.models.config_schema import CONFIG_SCHEMA

    validator = jsonschema.Draft202012Validator(CONFIG_SCHEMA)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    problems: dict[str, str] = {}
    for e in errors:
        field, text = _describe(e)
        problems.setdefault(field, text)
    if not problems:
        problems = _cross_check(cfg)
    if problems:
        fields = list(problems)
        more = f" ({len(fields) - 1} more bad field(s): {', '.join(fields[1:4])})" if len(fields) > 1 else ""
        raise CheckpointError(f"{cfg_path}: {problems[fields[0]]}.{more}",
                              f"correct {fields[0]!r} in {CONFIG}, or save the model again with explainkit.save().")


def _cross_check(cfg: dict) -> dict:
    """Fields that are each well typed but disagree with one another."""
    problems = {}
    n_feat = len(cfg["feature_names"]) if "feature_names" in cfg else None
    st = cfg.get("standardize")
    if st is not None:
        if len(st["mean"]) != len(st["std"]):
            problems["standardize"] = (f"field 'standardize' has {len(st['mean'])} means but {len(st['std'])} "
                                       "stds; expected one of each per feature")
        elif n_feat is not None and len(st["mean"]) != n_feat:
            problems["standardize.mean"] = (f"field 'standardize.mean' has {len(st['mean'])} values for "
                                            f"{n_feat} feature_names; expected one per feature")
    nz = cfg.get("normalize")
    if nz is not None:
        channels = cfg["input_shape"][0] if "input_shape" in cfg else None
        if len(nz["mean"]) != len(nz["std"]):
            problems["normalize"] = (f"field 'normalize' has {len(nz['mean'])} means but {len(nz['std'])} stds; "
                                     "expected one of each per channel")
        elif channels is not None and len(nz["mean"]) not in (1, channels):
            problems["normalize.mean"] = (f"field 'normalize.mean' has {len(nz['mean'])} values for {channels} "
                                          "channels (input_shape[0]); expected one per channel")
    return problems


def _weights_path(d: Path, cfg: dict) -> Path:
    """The weights file named in the config, which must lie inside the checkpoint directory."""
    name = cfg.get("weights_file", WEIGHTS)
    root = d.resolve()
    wpath = (root / name).resolve()
    if wpath.parent != root and root not in wpath.parents:
        raise CheckpointError(f"field 'weights_file' in {d / CONFIG} is {name!r}, which points outside the "
                              "checkpoint directory.",
                              f"set 'weights_file' to a file inside {d} (normally {WEIGHTS!r}).")
    return wpath


def _read_weights(d: Path, cfg: dict) -> dict:
    from safetensors.torch import load as load_bytes

    wpath = _weights_path(d, cfg)
    if not wpath.is_file():
        raise CheckpointError(f"{d} has no weights file {wpath.name}.", "copy the whole checkpoint directory.")
    data = wpath.read_bytes()
    try:
        state = load_bytes(data)          # safetensors: a JSON header + raw tensor bytes, no code execution
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{wpath} is truncated or corrupt ({str(e)[:120]}).",
                              "restore the file or save the model again.") from None
    want = cfg.get("weights_sha256")
    got = hashlib.sha256(data).hexdigest()
    if want != got:
        raise CheckpointError(f"{wpath.name} does not match the sha256 recorded in {CONFIG}: the weights were "
                              "modified or replaced.", "use the original checkpoint, or save the model again.")
    wide = sorted(k for k, v in state.items() if str(v.dtype) == "torch.float64")
    if wide:
        warnings.warn(f"{wpath.name} stores {len(wide)} float64 tensor(s) (e.g. {wide[0]!r}); they are cast to the "
                      "model's float32 parameters on load, which rounds them. Save the model in float32 "
                      "(module.float()) to silence this.", UserWarning, stacklevel=3)
    return state


def load(path):
    """Load a checkpoint directory as a :class:`~explainkit.TorchModel` (sample models: ``ek.load_sample``)."""
    from explainkit.models.families import get_family
    from explainkit.models.torch_model import TorchModel

    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"load() takes the path of a checkpoint directory, not {type(path).__name__} "
                              f"{path!r:.60}.", "pass a folder written by explainkit.save(), or use "
                              "explainkit.load_sample(NAME) for a shipped model.")
    if isinstance(path, str) and path.startswith("sample:"):
        raise CheckpointError(f"{path!r} is a command-line spec, not a checkpoint directory.",
                              f"call explainkit.load_sample({path[len('sample:'):]!r}).")
    d = Path(path)
    from explainkit.models import hf_dir
    if hf_dir.is_pretrained_dir(d):                   # a Hugging Face save_pretrained folder, with its tokenizer
        return hf_dir.load_pretrained(d)
    cfg = read_config(d)
    family = get_family(cfg.get("family"))            # UnknownNameError listing the families
    state = _read_weights(d, cfg)
    try:
        module = family.build(cfg)
        loader = getattr(module, "load_checkpoint_state", None)
        if callable(loader):
            loader(state)
        else:
            module.load_state_dict(state, strict=True)
    except ExplainKitError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"The weights in {d} do not fit the {family.name} architecture "
                              f"({str(e).splitlines()[0][:200]}).", "check the config's hparams, or retrain.") from None
    modality = cfg.get("modality", family.modality.value)
    tokenizer = family.tokenizer(cfg)
    if modality == "text" and tokenizer is None:
        raise CheckpointError(f"field 'tokenizer' is missing from {d / CONFIG}: without it every word of a text "
                              "would be read as <unk>.",
                              "save the model again with explainkit.save() (it stores the tokenizer), or add the "
                              "tokenizer entry {'type': 'word', 'vocab': [...], 'max_len': ...} by hand.")
    try:
        model = TorchModel(module, modality=modality, task=cfg.get("task", family.task.value),
                           classes=cfg.get("classes"), feature_names=cfg.get("feature_names"),
                           name=cfg.get("name", family.name), config=cfg, input_shape=cfg.get("input_shape"),
                           tokenizer=tokenizer, normalize=cfg.get("normalize"), standardize=cfg.get("standardize"),
                           target_name=cfg.get("target_name"))
    except ModelError as e:
        raise CheckpointError(f"{d / CONFIG} does not describe a usable model: {e.problem}",
                              f"fix the config's 'classes'/'task' fields ({e.fix})") from None
    _probe(model, d)
    return model


def _probe_input(model):
    """One cheap synthetic raw input for the model: a black image, one known word, a row of means."""
    import numpy as np

    from explainkit.enums import Modality

    if model.modality is Modality.IMAGE:
        c, h, w = model.input_shape if model.input_shape is not None else (1, 28, 28)
        return np.zeros((h, w) if c == 1 else (h, w, c), dtype=np.uint8)
    if model.modality is Modality.TEXT:
        vocab = getattr(model.tokenizer, "vocab", None) or []
        return vocab[2] if len(vocab) > 2 else "good"
    if model.feature_names is not None:
        n = len(model.feature_names)
    elif model.standardize:
        n = len(model.standardize["mean"])
    else:
        n = int((model.config.get("hparams") or {}).get("n_in", 1))
    mean = (model.standardize or {}).get("mean")
    return np.asarray(mean, dtype=np.float64) if mean is not None and len(mean) == n else np.zeros(n)


def _probe(model, d: Path) -> None:
    """One forward pass on a synthetic input: the declared task and classes must fit the module's output."""
    import torch

    from explainkit.enums import Task

    cfg_path = d / CONFIG
    try:
        inputs, extra = model.collate([model.prepare(_probe_input(model))])
        with torch.no_grad():
            out = model.forward(inputs, *extra)
    except ExplainKitError as e:
        raise CheckpointError(f"A probe input does not fit the model described by {cfg_path}: {e.problem}",
                              "check its 'input_shape', 'feature_names', 'normalize'/'standardize' and "
                              "'hparams' fields, or save the model again.") from None
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"The probe forward pass of the model in {d} failed "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}).",
                              "check the config's 'input_shape', 'feature_names' and 'hparams' fields, "
                              "or save the model again.") from None
    shape = tuple(out.shape)
    k = shape[-1] if len(shape) == 2 else None
    if model.task is Task.REGRESSION:
        if k != 1:
            raise CheckpointError(f"field 'task' in {cfg_path} is 'regression', but the model has {k} outputs "
                                  f"(output shape {shape}); a regression model has one.",
                                  f"set \"task\": \"classification\" with {k} 'classes', or use the right "
                                  "checkpoint.")
        return
    if k != len(model.classes):
        hint = (" A one-output model is a regression model: set \"task\": \"regression\"." if k == 1 else "")
        raise CheckpointError(f"field 'classes' in {cfg_path} names {len(model.classes)} classes, but the model "
                              f"has {k} outputs (output shape {shape}).{hint}",
                              f"list exactly {k} class names in 'classes', in the order of the outputs.")
