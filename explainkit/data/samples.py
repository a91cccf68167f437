"""One sample type for every modality: raw input, model-ready tensor, label and a human rendering."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explainkit.enums import Modality

__all__ = ["Sample"]


@dataclass
class Sample:
    """One input, as the user sees it and as the model takes it.

    - ``raw``: the input as given (uint8 image array, the original string, a row of raw feature values).
    - ``tensor``: the model-ready tensor, without batch dimension (float image [C,H,W],
      token ids [T], standardized features [F]).
    - ``label``: the true class index or regression target, if known.
    - The rendering: ``image`` (H,W[,C] floats in 0..1), ``tokens`` with ``offsets`` (character
      spans into ``raw``), or ``feature_names`` with ``feature_values`` (raw units).
    """

    raw: Any
    tensor: Any
    modality: Modality
    label: int | float | None = None
    index: int | None = None
    image: np.ndarray | None = None
    tokens: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None
    feature_names: list[str] | None = None
    feature_values: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        shape = tuple(getattr(self.tensor, "shape", ()))
        what = {Modality.IMAGE: f"image {shape}",
                Modality.TEXT: f"text, {len(self.tokens or [])} tokens",
                Modality.TABULAR: f"{len(self.feature_names or [])} features"}.get(self.modality, "")
        return f"<Sample #{self.index} {what} label={self.label!r}>"

    @property
    def n_units(self) -> int:
        """Number of human units explained: pixels, tokens or features."""
        if self.modality is Modality.IMAGE:
            return int(np.prod(self.image.shape[:2]))
        if self.modality is Modality.TEXT:
            return len(self.tokens or [])
        return len(self.feature_names or [])

    def summary(self, max_chars: int = 80) -> str:
        """A one-line human description (text snippet, or label)."""
        if self.modality is Modality.TEXT:
            s = str(self.raw)
            return s if len(s) <= max_chars else s[: max_chars - 1] + "…"
        if self.modality is Modality.TABULAR and self.feature_names is not None:
            pairs = [f"{n}={v:.3g}" for n, v in zip(self.feature_names[:3], self.feature_values[:3])]
            return ", ".join(pairs) + (", …" if len(self.feature_names) > 3 else "")
        return f"image {tuple(self.image.shape)}"
