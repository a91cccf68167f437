"""Typed constants shared by models, explainers and views (strings only at the CLI boundary)."""
from __future__ import annotations

import os
import sys
from enum import Enum, EnumMeta

__all__ = ["Modality", "Task", "Capability", "ResultKind"]


def caller_location(skip_files=()) -> str:
    """``path:line`` of the nearest frame outside explainkit's own code (the plugin author's file)."""
    here = os.path.dirname(os.path.abspath(__file__))
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not (fn.startswith(here) or fn.startswith("<") or os.path.basename(fn) in skip_files
                or "importlib" in fn):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return "<unknown>"


class _Meta(EnumMeta):
    def __getattr__(cls, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
        from explainkit.errors import UnknownMemberError

        members = ", ".join(f"{cls.__name__}.{m.name}" for m in cls)
        raise UnknownMemberError(f"{cls.__name__} has no member {name!r} (at {caller_location(('enum.py',))}).",
                                 f"use one of: {members}.")


class _StrEnum(str, Enum, metaclass=_Meta):
    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value):
        """Turn a user string (or member) into a member, with a clear error."""
        from explainkit.errors import UnknownNameError

        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise UnknownNameError(f"Unknown {cls.__name__.lower()} {value!r}.",
                                   f"use one of: {valid}.") from None


class Modality(_StrEnum):
    IMAGE = "image"
    TEXT = "text"
    TABULAR = "tabular"


class Task(_StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Capability(_StrEnum):
    """What a wrapped model provides; explainers declare which of these they require."""
    PREDICT = "predict"            # a (black-box) prediction function: every model has it
    GRADIENTS = "gradients"        # a differentiable torch module
    EMBEDDINGS = "embeddings"      # a token-embedding layer (text)
    ATTENTION = "attention"        # per-layer, per-head attention weights
    CONV_LAYER = "conv_layer"      # a convolutional layer (Grad-CAM)
    PROBABILITIES = "probabilities"  # class probabilities (classification)


class ResultKind(_StrEnum):
    ATTRIBUTION = "attribution"    # one score per input unit (pixel, token, feature)
    ATTENTION = "attention"        # [layers, heads, T, T] token-to-token matrices
    GENERATION = "generation"      # [answer tokens, prompt units] scores of a language model's answer
