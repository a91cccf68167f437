"""A Hugging Face model folder (``save_pretrained`` output, with its tokenizer) loaded as an explainkit model.

``explainkit.load(folder)`` and ``--model folder`` on the command line take it like a checkpoint: a
``config.json`` with a ``model_type`` (and no explainkit ``family``) is read with ``transformers`` from
local files only, as ``*ForSequenceClassification`` (a text classifier) or ``*ForCausalLM`` (a language
model, explained per generated token), with eager attention so that attention views have weights; the
tokenizer from the same folder. Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

from explainkit.errors import CheckpointError

__all__ = ["is_pretrained_dir", "load_pretrained"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "tokenizer.model")


def is_pretrained_dir(path) -> bool:
    """A folder written by ``transformers``' ``save_pretrained`` (not an explainkit checkpoint)."""
    f = Path(path) / "config.json"
    try:
        cfg = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "model_type" in cfg and "family" not in cfg


def load_pretrained(path, *, name: str | None = None):
    """The folder's model and tokenizer, wrapped (:func:`explainkit.wrap`)."""
    from explainkit.models.hf import _transformers
    from explainkit.models.wrap import wrap

    d = Path(path)
    tf = _transformers()
    cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
    arch = next(iter(cfg.get("architectures") or [""]), "")
    if arch.endswith("ForCausalLM"):
        auto = tf.AutoModelForCausalLM
    elif arch.endswith("ForSequenceClassification"):
        auto = tf.AutoModelForSequenceClassification
    else:
        raise CheckpointError(f"The Hugging Face model in {d} is a {arch or cfg['model_type']!r}, with neither a "
                              "sequence-classification head nor a language-model head.",
                              "save a *ForSequenceClassification or *ForCausalLM model (save_pretrained), or "
                              "wrap the module yourself with explainkit.wrap(...).")
    if not any((d / f).is_file() for f in _TOKENIZER_FILES):   # else transformers builds an empty vocabulary
        raise CheckpointError(f"{d} holds no tokenizer (none of {', '.join(_TOKENIZER_FILES)}).",
                              "save the tokenizer next to the model: tokenizer.save_pretrained(folder).")
    try:
        tok = tf.AutoTokenizer.from_pretrained(d, local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{d} holds no readable tokenizer ({type(e).__name__}).",
                              "save the tokenizer next to the model: tokenizer.save_pretrained(folder).") from None
    try:
        model = auto.from_pretrained(d, local_files_only=True, attn_implementation="eager")
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"The Hugging Face model in {d} could not be read ({type(e).__name__}: "
                              f"{str(e)[:160]}).", "re-save it with model.save_pretrained(folder).") from None
    return wrap(model.eval(), tokenizer=tok, name=name or d.name)
