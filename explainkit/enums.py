"""Typed constants shared by models, explainers and views (strings only at the CLI boundary)."""
from __future__ import annotations

from enum import Enum

__all__ = ["Modality", "Task", "Capability", "ResultKind"]


class _StrEnum(str, Enum):
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
