"""The JSON schema of a checkpoint's ``config.json``, and the plain-words expectation of each field.

Kept as a Python dict (not a JSON file) so it ships without a package-data entry. It is checked with
``jsonschema`` by :func:`explainkit.models.checkpoint.read_config`; jsonschema is imported there, at
call time, so ``import explainkit`` never loads it. Unknown top-level keys are allowed (families add
their own entries, such as MiniLM's ``base`` and ``pooling``).
"""
from __future__ import annotations

__all__ = ["CONFIG_SCHEMA", "EXPECTED"]

_INT = {"type": "integer", "minimum": 1}
_MAX_LEN = {"type": "integer", "minimum": 1, "maximum": 16_384}   # explainkit.data.tokenizer.MAX_LEN_CAP
_NUMBERS = {"type": "array", "minItems": 1, "items": {"type": "number"}}
_POSITIVE_NUMBERS = {"type": "array", "minItems": 1, "items": {"type": "number", "exclusiveMinimum": 0}}
_NAMES = {"type": "array", "minItems": 1, "items": {"type": ["string", "integer"]}}
_SCALING = {"type": "object", "required": ["mean", "std"],
            "properties": {"mean": _NUMBERS, "std": _POSITIVE_NUMBERS}}

CONFIG_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["family", "format_version"],
    "properties": {
        "format_version": {"type": "integer", "minimum": 1},
        "family": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "modality": {"enum": ["image", "text", "tabular"]},
        "task": {"enum": ["classification", "regression"]},
        "classes": _NAMES,
        "feature_names": _NAMES,
        "target_name": {"type": ["string", "null"]},
        "input_shape": {"type": "array", "minItems": 3, "maxItems": 3, "items": _INT},
        "normalize": _SCALING,
        "standardize": _SCALING,
        "hparams": {
            "type": "object",
            "properties": {
                **{k: _INT for k in ("n_in", "n_out", "vocab_size", "embed_dim", "d_model", "heads", "layers",
                                     "ff", "max_len")},
                "frozen_layers": {"type": "integer", "minimum": 0},
                "hidden": {"type": ["integer", "array"], "minimum": 1, "items": _INT},
                "channels": {"type": "array", "minItems": 1, "items": _INT},
                "dropout": {"type": "number", "minimum": 0, "maximum": 1},
                "pooling": {"type": "string"},
                "base": {"type": "string"},
            },
        },
        "tokenizer": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "vocab": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "lowercase": {"type": "boolean"},
                "max_len": _MAX_LEN,
                "base": {"type": "string"},
                "base_version": {"type": "string"},
            },
            # a word tokenizer (the default type) is nothing without its vocabulary
            "if": {"properties": {"type": {"const": "word"}}},
            "then": {"required": ["vocab"]},
        },
        "metrics": {"type": "object"},
        "training": {"type": "object"},
        "versions": {"type": "object"},
        "weights_file": {"type": "string", "minLength": 1},
        "weights_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
    # a text checkpoint without its tokenizer would read every word as <unk>
    "if": {"properties": {"modality": {"const": "text"}}, "required": ["modality"]},
    "then": {"required": ["tokenizer"]},
}

# what each field must be, in words, for the error message (dotted paths; the longest match is used)
EXPECTED: dict[str, str] = {
    "": "a JSON object",
    "format_version": "an integer ≥ 1",
    "family": "the name of a model family (a string, see explainkit.families())",
    "name": "a string",
    "description": "a string",
    "modality": "one of 'image', 'text', 'tabular'",
    "task": "one of 'classification', 'regression'",
    "classes": "a non-empty list of class names (strings)",
    "feature_names": "a non-empty list of feature names (strings)",
    "target_name": "a string",
    "input_shape": "a list of 3 positive integers (C, H, W)",
    "normalize": "an object {'mean': [numbers], 'std': [positive numbers]}",
    "normalize.mean": "a non-empty list of numbers",
    "normalize.std": "a non-empty list of positive numbers",
    "standardize": "an object {'mean': [numbers], 'std': [positive numbers]}",
    "standardize.mean": "a non-empty list of numbers (one per feature)",
    "standardize.std": "a non-empty list of positive numbers (one per feature)",
    "hparams": "an object of hyper-parameters",
    "hparams.hidden": "a positive integer or a list of positive integers",
    "hparams.channels": "a non-empty list of positive integers",
    "hparams.dropout": "a number in [0, 1]",
    "hparams.frozen_layers": "an integer ≥ 0",
    "hparams.pooling": "a string",
    "hparams.base": "a string",
    **{f"hparams.{k}": "a positive integer" for k in ("n_in", "n_out", "vocab_size", "embed_dim", "d_model",
                                                      "heads", "layers", "ff", "max_len")},
    "tokenizer": "an object {'type': 'word', 'vocab': [...], 'lowercase': bool, 'max_len': int}",
    "tokenizer.type": "a string ('word' or 'minilm')",
    "tokenizer.vocab": "a non-empty list of token strings",
    "tokenizer.lowercase": "true or false",
    "tokenizer.max_len": "a whole number of tokens from 1 to 16384",
    "tokenizer.base": "a string",
    "tokenizer.base_version": "a string",
    "metrics": "an object",
    "training": "an object",
    "versions": "an object",
    "weights_file": "a file name inside the checkpoint directory (a string)",
    "weights_sha256": "64 lower-case hex digits",
}
