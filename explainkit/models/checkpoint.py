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
from pathlib import Path

from explainkit.errors import CheckpointError, ExplainKitError

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
    return cfg


def _read_weights(d: Path, cfg: dict) -> dict:
    from safetensors.torch import load as load_bytes

    wpath = d / cfg.get("weights_file", WEIGHTS)
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
    return state


def load(path):
    """Load a checkpoint directory as a :class:`~explainkit.TorchModel` (sample models: ``ek.load_sample``)."""
    from explainkit.models.families import get_family
    from explainkit.models.torch_model import TorchModel

    if isinstance(path, str) and path.startswith("sample:"):
        raise CheckpointError(f"{path!r} is a command-line spec, not a checkpoint directory.",
                              f"call explainkit.load_sample({path[len('sample:'):]!r}).")
    d = Path(path)
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
    return TorchModel(module, modality=cfg.get("modality", family.modality.value),
                      task=cfg.get("task", family.task.value), classes=cfg.get("classes"),
                      feature_names=cfg.get("feature_names"), name=cfg.get("name", family.name), config=cfg,
                      input_shape=cfg.get("input_shape"), tokenizer=family.tokenizer(cfg),
                      normalize=cfg.get("normalize"), standardize=cfg.get("standardize"),
                      target_name=cfg.get("target_name"))
