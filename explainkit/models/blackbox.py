"""FunctionModel: a black-box ``predict`` function (raw inputs in, probabilities or values out)."""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from explainkit.enums import Capability, Modality, Task
from explainkit.errors import ModelError, ShapeError
from explainkit.models.adapter import ModelAdapter

__all__ = ["FunctionModel"]


class FunctionModel(ModelAdapter):
    """A black-box ``predict`` function: raw inputs in, probabilities (or values) out."""

    def __init__(self, predict_fn: Callable, *, modality, task, classes=None, feature_names=None,
                 name="black-box", config=None, input_shape=None, tokenizer=None,
                 background=None, target_name=None):
        super().__init__(modality=modality, task=task, classes=classes, feature_names=feature_names,
                         name=name, config=config, input_shape=input_shape, tokenizer=tokenizer,
                         target_name=target_name)
        self.predict_fn = predict_fn
        self.background = None if background is None else np.asarray(background, dtype=np.float64)
        caps = {Capability.PREDICT}
        if self.task is Task.CLASSIFICATION:
            caps.add(Capability.PROBABILITIES)
        self.capabilities = frozenset(caps)

    module = None

    def weights_hash(self) -> str:
        fn = self.predict_fn
        ident = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(type(fn)))}|{self.name}"
        owner = getattr(fn, "__self__", None)
        if owner is not None:
            try:
                import pickle  # hashing only: the bytes are never loaded back
                ident += hashlib.sha256(pickle.dumps(owner)).hexdigest()
            except Exception:  # noqa: BLE001 - unpicklable owner: identity by name only
                pass
        return hashlib.sha256(ident.encode()).hexdigest()

    def _call(self, batch) -> np.ndarray:
        try:
            out = np.asarray(self.predict_fn(batch), dtype=np.float64)
        except Exception as e:  # noqa: BLE001 - the user's function failed
            raise ModelError(f"The predict function raised {type(e).__name__}: {e}",
                             "check that it accepts a batch of raw inputs.") from e
        n = len(batch)
        if self.task is Task.CLASSIFICATION:
            if out.ndim != 2 or out.shape != (n, self.n_outputs):
                raise ShapeError(f"The predict function returned shape {out.shape}; expected ({n}, {self.n_outputs}).",
                                 "return class probabilities, one row per input (e.g. predict_proba).")
        else:
            out = out.reshape(n, -1)[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out
            if out.shape != (n,):
                raise ShapeError(f"The predict function returned shape {out.shape}; expected ({n},).",
                                 "return one value per input.")
        return out

    def _batch_raw(self, samples):
        if self.modality is Modality.TEXT:
            return [s.raw for s in samples]
        if self.modality is Modality.TABULAR:
            return np.stack([s.feature_values for s in samples])
        return np.stack([np.asarray(s.raw) for s in samples])

    def _predict_samples(self, samples):
        return self._call(self._batch_raw(samples))

    def _predict_masked_chunk(self, sample, keep, groups, fill):
        if self.modality is Modality.TEXT:
            texts = []
            for k in keep:
                kept = [(s, e) for (s, e), flag in zip(sample.offsets, k) if flag > 0.5]
                texts.append(" ".join(sample.raw[s:e] for s, e in kept) if fill is None else
                             " ".join(sample.raw[s:e] if flag > 0.5 else str(fill)
                                      for (s, e), flag in zip(sample.offsets, k)))
            return self._call(texts)
        if self.modality is Modality.TABULAR:
            x = sample.feature_values[None]
            if fill is not None:
                base = np.asarray(fill, dtype=np.float64).reshape(1, -1)
            elif self.background is not None:
                base = self.background.mean(axis=0, keepdims=True)
            else:
                base = np.zeros_like(x)
            return self._call(keep * x + (1 - keep) * base)
        raw = np.asarray(sample.raw)
        km = self.unit_mask(sample, keep, groups)
        if raw.ndim == 3:
            km = km[..., None]
        base = np.zeros_like(raw, dtype=np.float64) if fill is None else np.broadcast_to(fill, raw.shape)
        imgs = km * raw[None] + (1 - km) * base[None]
        return self._call(imgs.astype(raw.dtype) if raw.dtype == np.uint8 else imgs)
