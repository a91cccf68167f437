"""The explainkit exception hierarchy: every error a user can trigger is one of these."""
from __future__ import annotations

__all__ = [
    "ExplainKitError", "InputError", "ShapeError", "ValueRangeError", "TextLengthWarning",
    "UnknownNameError", "DataError", "CheckpointError", "ModelError", "PluginError",
    "ParameterError", "NotApplicableError", "MissingDependencyError", "TargetError", "UnknownMemberError",
]


class ExplainKitError(Exception):
    """Base class of every explainkit error. The message names the problem and the fix."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} Fix: {fix}")


class InputError(ExplainKitError, ValueError):
    """An input (image, text, row, tensor) is not what the model expects."""


class ShapeError(InputError):
    """Wrong shape or dtype."""


class ValueRangeError(InputError):
    """NaN, Inf, or a value out of the allowed range."""


class TargetError(InputError):
    """A target class index out of range, or a target for a model with none."""


class UnknownNameError(ExplainKitError, KeyError):
    """An unknown family, sample, method or plugin name."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0] if self.args else ""


class UnknownMemberError(ExplainKitError, AttributeError):
    """``Modality.PICTURE``: an enum member that does not exist (names the caller's file and the choices)."""


class DataError(ExplainKitError, OSError):
    """A missing or malformed data directory or file."""


class CheckpointError(ExplainKitError):
    """A corrupt, truncated, tampered or too-new checkpoint."""


class ModelError(ExplainKitError):
    """A model that cannot be wrapped or run as asked."""


class PluginError(ExplainKitError):
    """A plugin that failed to load, declared itself wrongly, or returned bad output."""


class ParameterError(ExplainKitError, ValueError):
    """An explainer parameter of the wrong type or out of range."""


class NotApplicableError(ExplainKitError):
    """An explainer that does not apply to this model (with the reason)."""


class MissingDependencyError(ExplainKitError, ImportError):
    """An optional dependency is not installed."""


class TextLengthWarning(UserWarning):
    """Text longer than the model's maximum length was truncated."""
