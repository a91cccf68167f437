"""The JSON schema of a serialised :class:`~explainkit.Explanation` and the checks that its parts agree
(split from :mod:`explainkit.plugins.explanation`; ``Explanation.from_dict`` calls :func:`validate_dict`)."""
from __future__ import annotations

import numpy as np

from explainkit.errors import DataError

__all__ = ["validate_dict", "ARRAYS"]

ARRAYS = ("scores", "errors", "attributions", "probabilities", "image", "feature_values", "matrices")

_NUM = {"type": ["number", "null"]}
# arrays are checked by numpy in _validate_dict: a per-element schema costs seconds on a [T, 384] attribution
_NUMS = {"type": ["null", "number", "array"]}
_STRS = {"type": ["array", "null"], "items": {"type": ["string", "integer"]}}
_EXPLANATION_SCHEMA = {
    "type": "object",
    "required": ["scores", "modality"],
    "$defs": {"nums": _NUMS},
    "properties": {
        "format_version": {"type": "integer"}, "class": {"enum": ["Explanation", "AttentionExplanation",
                                                                    "GenerationExplanation"]},
        "scores": {"$ref": "#/$defs/nums"}, "errors": {"$ref": "#/$defs/nums"},
        "attributions": {"$ref": "#/$defs/nums"},
        "probabilities": {"$ref": "#/$defs/nums"}, "image": {"$ref": "#/$defs/nums"},
        "feature_values": {"$ref": "#/$defs/nums"}, "matrices": {"$ref": "#/$defs/nums"},
        "modality": {"type": "string"}, "kind": {"type": "string"}, "task": {"type": "string"},
        "method": {"type": ["string", "null"]}, "target": {"type": ["integer", "null"]},
        "target_name": {"type": ["string", "null"]}, "base_value": _NUM, "classes": _STRS,
        "text": {"type": ["string", "null"]}, "tokens": _STRS, "feature_names": _STRS,
        "offsets": {"type": ["array", "null"], "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                                          "items": {"type": "integer", "minimum": 0}}},
        "sample_index": {"type": ["integer", "null"]}, "seed": {"type": ["integer", "null"]},
        "params": {"type": "object"}, "timings": {"type": "object"}, "versions": {"type": "object"},
        "extras": {"type": "object"}, "model_name": {"type": ["string", "null"]},
        "model_hash": {"type": ["string", "null"]},
        "unscored": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0}},
        "words": {"type": ["array", "null"], "items": {
            "type": "array", "prefixItems": [{"type": "string"}, {"type": "integer", "minimum": 0},
                                             {"type": "integer", "minimum": 0},
                                             {"type": "array", "items": {"type": "integer", "minimum": 0}}],
            "minItems": 4, "maxItems": 4}},
    },
}


def _numeric(v) -> bool:
    """A number or a rectangular (nested) array of numbers, booleans excluded."""
    try:
        a = np.asarray(v)
    except (TypeError, ValueError):
        return False
    if a.dtype.kind in "iuf" or (a.size == 0 and a.dtype.kind != "b"):
        return True
    return a.dtype.kind == "O" and all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))
                                       for x in a.reshape(-1))      # null entries read back as NaN


def validate_dict(d) -> None:
    """Check an explanation dict's field types (jsonschema) and that its parts agree."""
    if not isinstance(d, dict):
        raise DataError(f"An explanation is a dict of fields, not {type(d).__name__}.",
                        "pass what Explanation.to_dict() returned (or json.loads of to_json()).")
    import jsonschema

    # arrays read back from an .npz are numpy arrays and numpy scalars: they count as JSON arrays/numbers
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
        "array": lambda c, v: isinstance(v, (list, tuple, np.ndarray)),
        "number": lambda c, v: (isinstance(v, (int, float, np.number)) and not isinstance(v, bool))
        or (isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf"),
        "integer": lambda c, v: (isinstance(v, (int, np.integer)) and not isinstance(v, bool)),
    })
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)
    errors = sorted(validator(_EXPLANATION_SCHEMA).iter_errors(d),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        field = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise DataError(f"Not a valid explanation: field {field!r}: {e.message[:120]}.",
                        "re-create it with Explanation.to_dict().")
    for k in ARRAYS:
        if d.get(k) is not None and not _numeric(d[k]):
            raise DataError(f"Not a valid explanation: {k!r} is not a rectangular array of numbers.",
                            "re-create it with Explanation.to_dict().")
    scores = np.asarray(d["scores"], dtype=np.float64)
    n = scores.size
    if d.get("errors") is not None and np.shape(d["errors"]) != scores.shape:
        raise DataError(f"Not a valid explanation: errors of shape {np.shape(d['errors'])} for scores of shape "
                        f"{scores.shape}.", "re-create it with Explanation.to_dict().")
    tokens, offsets, text = d.get("tokens"), d.get("offsets"), d.get("text")
    if d.get("modality") == "text" and tokens is not None and d.get("class", "Explanation") == "Explanation" \
            and len(tokens) != n:
        raise DataError(f"Not a valid explanation: {len(tokens)} tokens but {n} scores.",
                        "re-create it with Explanation.to_dict().")
    if offsets is not None and text is not None and any(a > b or b > len(text) for a, b in offsets):
        raise DataError("Not a valid explanation: an offset lies outside its text.",
                        "re-create it with Explanation.to_dict().")
    words, unscored = d.get("words"), d.get("unscored")
    if words is not None and (text is None or any(a > b or b > len(text) or text[a:b] != w for w, a, b, _ in words)
                              or any(k >= n for *_, ks in words for k in ks)):
        raise DataError("Not a valid explanation: a word does not match its text or names a piece it lacks.",
                        "re-create it with Explanation.to_dict().")
    if unscored is not None and any(k >= n for k in unscored):
        raise DataError(f"Not a valid explanation: an unscored token lies beyond its {n} scores.",
                        "re-create it with Explanation.to_dict().")
    classes, target = d.get("classes"), d.get("target")
    if classes and target is not None and not 0 <= target < len(classes):
        raise DataError(f"Not a valid explanation: target {target} is not one of its {len(classes)} classes.",
                        "re-create it with Explanation.to_dict().")
