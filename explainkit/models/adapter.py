"""Model adapters: what a model provides, how to feed it, and how to run it.

Every model explainkit touches is a :class:`ModelAdapter`. A torch module becomes a
:class:`TorchModel`; a black-box ``predict`` function becomes a :class:`FunctionModel`.
Explainers read ``model.capabilities`` and use the uniform calls below, never the module's own API.

The batch convention: ``model.collate(samples)`` returns ``(inputs, extra)``: ``inputs`` is the tensor
that is attributed (images ``[N,C,H,W]``, token ids ``[N,T]``, features ``[N,F]``) and ``extra`` is a tuple
of additional forward arguments (the padding mask ``[N,T]`` for text, else empty). ``model.forward(inputs,
*extra)`` is differentiable and returns the raw output ``[N,K]`` (logits, or ``[N,1]`` for regression).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from explainkit.data.photos import fit_photo, is_large
from explainkit.data.samples import Sample
from explainkit.data.tokenizer import check_text_size
from explainkit.enums import Capability, Modality, Task
from explainkit.errors import InputError, ModelError, ShapeError, TargetError, TextLengthWarning, ValueRangeError

__all__ = ["ModelAdapter", "UnknownTokensWarning"]

UNKNOWN_SHARE = 0.5          # warn when more than this share of a text's tokens are unknown to the tokenizer


class UnknownTokensWarning(UserWarning):
    """Most of a text became the tokenizer's unknown token: the tokenizer does not fit the model or the text."""


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueRangeError(f"The {what} contains {bad} NaN or Inf value(s).",
                              "replace or drop non-finite values before explaining.")


class ModelAdapter:
    """Base class: a model's identity, modality, task, outputs and capabilities."""

    modality: Modality
    task: Task
    capabilities: frozenset = frozenset()

    def __init__(self, *, modality, task, classes=None, feature_names=None, name="model",
                 config: dict | None = None, input_shape=None, tokenizer=None,
                 normalize: dict | None = None, standardize: dict | None = None,
                 target_name: str | None = None):
        self.modality = Modality.parse(modality)
        self.task = Task.parse(task)
        self.classes = [str(c) for c in classes] if classes is not None else None
        self.feature_names = [str(f) for f in feature_names] if feature_names is not None else None
        self.name = str(name)
        self.config = dict(config or {})
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.standardize = standardize
        self.target_name = target_name or "target"
        if self.task is Task.CLASSIFICATION and not self.classes:
            raise ModelError("A classification model needs its class names.",
                             "pass classes=[...] (for example classes=list('0123456789')).")
        if self.modality is Modality.TEXT and self.tokenizer is None:
            from explainkit.data.tokenizer import Tokenizer
            self.tokenizer = Tokenizer([], max_len=512)   # word splitting only (black-box text models)

    # -- identity --------------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task is Task.CLASSIFICATION else 1

    @property
    def max_len(self) -> int | None:
        return getattr(self.tokenizer, "max_len", None) if self.modality is Modality.TEXT else None

    def __repr__(self) -> str:
        caps = ",".join(sorted(c.value for c in self.capabilities))
        return (f"<{type(self).__name__} {self.name!r} {self.modality.value} {self.task.value}"
                f" outputs={self.n_outputs} provides={caps}>")

    def provides(self, capability) -> bool:
        return Capability.parse(capability) in self.capabilities

    def weights_hash(self) -> str:
        raise NotImplementedError

    def card(self) -> dict:
        """Model card: family, metrics, hash, classes (for reports and the dashboard header)."""
        return {"name": self.name, "family": self.config.get("family", "custom"),
                "modality": self.modality.value, "task": self.task.value,
                "classes": self.classes, "metrics": self.config.get("metrics", {}),
                "weights_sha256": self.weights_hash()}

    # -- preparing inputs ------------------------------------------------------------------------
    def prepare(self, raw, label=None, index=None) -> Sample:
        """Turn a raw input (image array, string, feature row) into a :class:`Sample`."""
        if isinstance(raw, Sample):
            return raw
        if self.modality is Modality.IMAGE:
            return self._prepare_image(raw, label, index)
        if self.modality is Modality.TEXT:
            return self._prepare_text(raw, label, index)
        return self._prepare_row(raw, label, index)

    def prepare_many(self, raws, labels=None) -> list[Sample]:
        labels = [None] * len(raws) if labels is None else list(labels)
        return [self.prepare(r, y, i) for i, (r, y) in enumerate(zip(raws, labels))]

    def _prepare_image(self, raw, label, index) -> Sample:
        arr = np.asarray(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw)
        if arr.dtype.kind not in "uif b":
            raise ShapeError(f"An image must be numeric; got dtype {arr.dtype}.", "pass a uint8 or float array.")
        if self.input_shape is not None and is_large(*self.input_shape[1:]):
            return self._prepare_photo(raw, arr, label, index)     # any size and mode: resize + centre crop
        if self.input_shape is not None:
            c, h, w = self.input_shape
            ok = arr.shape in ((h, w), (h, w, c), (c, h, w)) if c == 1 else arr.shape in ((h, w, c), (c, h, w))
            if not ok:
                raise ShapeError(f"Image of shape {arr.shape} does not fit the model, which takes {c}x{h}x{w}.",
                                 f"pass an array of shape ({h}, {w})" + ("" if c == 1 else f" or ({h}, {w}, {c})")
                                 + ", resized beforehand.")
        _check_finite(arr.astype(np.float64, copy=False) if arr.dtype.kind == "f" else arr, "image")
        if arr.dtype == np.uint8 or arr.dtype.kind in "iu" or arr.max(initial=0) > 1.0 + 1e-6:
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
                raise ValueRangeError(f"Image values span [{arr.min()}, {arr.max()}], outside 0..255.",
                                      "pass uint8 pixels, or floats in 0..1.")
            img = arr.astype(np.float32) / 255.0
        else:
            if arr.min(initial=0) < -1e-6:
                raise ValueRangeError("Float image values are below 0.", "pass floats in 0..1 or uint8 pixels.")
            img = arr.astype(np.float32)
        if img.ndim == 3 and self.input_shape is not None and img.shape[0] == self.input_shape[0] \
                and img.shape[-1] != self.input_shape[0]:
            img = np.moveaxis(img, 0, -1)           # CHW -> HWC for the rendering
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        tensor = self._image_tensor(img)
        return Sample(raw=raw, tensor=tensor, modality=Modality.IMAGE, label=label, index=index, image=img)

    def _prepare_photo(self, raw, arr, label, index) -> Sample:
        """A photo of any size and mode for a large-input model (see :mod:`explainkit.data.photos`)."""
        _check_finite(arr.astype(np.float64, copy=False) if arr.dtype.kind == "f" else arr, "image")
        if arr.dtype.kind in "iub" or arr.max(initial=0) > 1.0 + 1e-6:
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
                raise ValueRangeError(f"Image values span [{arr.min()}, {arr.max()}], outside 0..255.",
                                      "pass uint8 pixels, or floats in 0..1.")
            arr = arr.astype(np.float32) / 255.0
        elif arr.min(initial=0) < -1e-6:
            raise ValueRangeError("Float image values are below 0.", "pass floats in 0..1 or uint8 pixels.")
        img, transform = fit_photo(arr, self.input_shape)
        return Sample(raw=raw, tensor=self._image_tensor(img), modality=Modality.IMAGE, label=label, index=index,
                      image=img, meta={"transform": transform})

    def _image_tensor(self, img: np.ndarray):
        chw = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)
        if self.normalize:
            mean = np.asarray(self.normalize["mean"], np.float32).reshape(-1, 1, 1)
            std = np.asarray(self.normalize["std"], np.float32).reshape(-1, 1, 1)
            chw = (chw - mean) / std
        return self._to_tensor(np.ascontiguousarray(chw, dtype=np.float32))

    def _prepare_text(self, raw, label, index) -> Sample:
        self._check_text(raw)
        enc = self.tokenizer.encode(raw)
        meta = self.tokenizer.text_meta(raw, enc) if hasattr(self.tokenizer, "text_meta") else None
        return self._text_sample(raw, enc, label, index, meta=meta)   # (sub-word tokenizers add "words")

    @staticmethod
    def _check_text(raw) -> None:
        """A text input is a non-empty string of a sane size (one clear error otherwise)."""
        if not isinstance(raw, str):
            raise ShapeError(f"A text model takes a string; got {type(raw).__name__}.", "pass the text as str.")
        if not raw.strip():
            raise InputError("The text is empty.", "pass a non-empty string with at least one word.")
        check_text_size(raw)

    def _text_sample(self, raw, enc, label, index, special=None, meta=None) -> Sample:
        """The shared tail of text preparation: no tokens is an error, truncation and mostly-unknown tokens
        warn, then the Sample. ``special`` flags tokens that are not units (left out of the unknown share)."""
        if not enc.ids:
            raise InputError(f"The text {raw[:40]!r} has no tokens the tokenizer recognises.",
                             "pass text with at least one word.")
        if enc.truncated:
            n = self.tokenizer.count(raw) if hasattr(self.tokenizer, "count") else "many"
            extra = " (special tokens included)" if special is not None else ""
            warnings.warn(TextLengthWarning(f"Text of {n} tokens was truncated to the model's maximum of "
                                            f"{self.max_len} tokens{extra}."), stacklevel=4)
        self._check_unknown(enc.ids if special is None else [i for i, f in zip(enc.ids, special) if not f])
        tensor = self._to_tensor(np.asarray(enc.ids, dtype=np.int64))
        return Sample(raw=raw, tensor=tensor, modality=Modality.TEXT, label=label, index=index,
                      tokens=list(enc.tokens), offsets=[tuple(o) for o in enc.offsets],
                      meta={"truncated": enc.truncated, **(meta or {})})

    def _check_unknown(self, ids) -> None:
        """Warn (once per model) when most of a text's tokens are the tokenizer's unknown token.

        Only tokenizers with a real vocabulary are checked (a black box's word splitter has none)."""
        unk = getattr(self.tokenizer, "unk_id", None)
        if unk is None or getattr(self, "_warned_unknown", False) or len(ids) < 2:
            return
        try:
            if len(self.tokenizer) <= 2:
                return
        except TypeError:
            return
        share = sum(int(i) == int(unk) for i in ids) / len(ids)
        if share > UNKNOWN_SHARE:
            self._warned_unknown = True
            warnings.warn(UnknownTokensWarning(
                f"{share:.0%} of the text's {len(ids)} tokens are unknown to the tokenizer"
                f" ({type(self.tokenizer).__name__}, {len(self.tokenizer)} entries): the model sees mostly one id,"
                " so its explanations mean little."
                " Fix: pass the tokenizer the model was trained with, tokenizer=..., to wrap()"
                " (for a Hugging Face model, tokenizer=AutoTokenizer.from_pretrained(<the model's path>))."),
                stacklevel=5)

    def _prepare_row(self, raw, label, index) -> Sample:
        if hasattr(raw, "to_numpy"):           # a pandas Series
            raw = raw.to_numpy()
        try:
            row = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise ShapeError("A tabular row must be numeric.", "pass a 1-D array of numbers.") from None
        n = len(self.feature_names) if self.feature_names else None
        if row.ndim != 1 or (n is not None and row.shape[0] != n):
            raise ShapeError(f"A row of shape {row.shape} does not fit the model's {n} features.",
                             f"pass a 1-D array of {n} values in the order {self.feature_names[:3]}…"
                             if n else "pass a 1-D array.")
        _check_finite(row, "feature row")
        x = row
        if self.standardize:
            x = (row - np.asarray(self.standardize["mean"])) / np.asarray(self.standardize["std"])
        names = self.feature_names or [f"x{i}" for i in range(row.shape[0])]
        return Sample(raw=raw, tensor=self._to_tensor(x.astype(np.float32)), modality=Modality.TABULAR,
                      label=label, index=index, feature_names=list(names), feature_values=row)

    def _to_tensor(self, arr: np.ndarray):
        return arr

    # -- running ---------------------------------------------------------------------------------
    def predict(self, items, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``[N,K]`` (classification) or values ``[N]`` (regression) for samples or raw inputs."""
        samples = [self.prepare(x) for x in items]
        if not samples:
            return np.zeros((0, self.n_outputs)) if self.task is Task.CLASSIFICATION else np.zeros(0)
        outs = [self._predict_samples(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
        return np.concatenate(outs, axis=0)

    def _predict_samples(self, samples: Sequence[Sample]) -> np.ndarray:
        raise NotImplementedError

    def predict_masked(self, sample: Sample, keep: np.ndarray, groups: np.ndarray | None = None,
                       fill=None, batch_size: int = 256) -> np.ndarray:
        """Outputs for many masked copies of one sample: the model-agnostic primitive.

        ``keep`` is ``[M, U]`` (1 keeps unit u, 0 replaces it with the fill). Units are pixels
        (or the segments given by ``groups``, an int array of the image's H×W shape), tokens or
        features. The fill is the modality's default baseline unless given: black pixels
        (image), the padding token (torch text; the token is dropped for black-box text), the
        training mean (tabular). Returns probabilities ``[M,K]`` or values ``[M]``.
        """
        keep = np.asarray(keep, dtype=np.float32)
        if keep.ndim == 1:
            keep = keep[None]
        out = []
        for i in range(0, len(keep), batch_size):
            out.append(self._predict_masked_chunk(sample, keep[i:i + batch_size], groups, fill))
        return np.concatenate(out, axis=0)

    def _predict_masked_chunk(self, sample, keep, groups, fill) -> np.ndarray:
        raise NotImplementedError

    def predict_masked_many(self, samples: Sequence[Sample], keeps: Sequence[np.ndarray], fills=None,
                            batch_size: int = 512, *, groups=None, logits: bool = False) -> list[np.ndarray]:
        """``predict_masked`` for many samples at once: ``keeps[i]`` is ``[M_i, U_i]`` for ``samples[i]``.

        ``fills`` and ``groups`` are None or one fill / segment map per sample (None entries mean the
        default baseline / single pixels). Returns one ``[M_i, K]`` (or ``[M_i]``) array per sample. Torch
        models batch the masked copies of all samples together, evaluate identical copies once, and with
        ``logits=True`` return the raw outputs (logits) instead of probabilities.
        """
        if logits:
            raise ModelError(f"Model {self.name!r} is a black box: it gives probabilities or values, no logits.",
                             "call predict_masked_many without logits=True (or wrap the torch module itself).")
        fills = [None] * len(samples) if fills is None else list(fills)
        groups = [None] * len(samples) if groups is None else list(groups)
        return [self.predict_masked(s, k, groups=g, fill=f, batch_size=batch_size)
                for s, k, f, g in zip(samples, keeps, fills, groups)]

    def unit_mask(self, sample: Sample, keep: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Expand per-unit keep flags ``[M,U]`` to the human-unit layout (pixels ``[M,H,W]``)."""
        if self.modality is Modality.IMAGE:
            h, w = sample.image.shape[:2]
            if groups is None:
                return keep.reshape(len(keep), h, w)
            return keep[:, np.asarray(groups).reshape(h, w)]
        return keep

    def check_target(self, target, n: int = 1) -> None:
        """Raise a clear error for a target out of range."""
        if target is None:
            return
        targets = [target] if np.isscalar(target) else list(target)
        for t in targets:
            if self.task is Task.REGRESSION:
                if t not in (0, None):
                    raise TargetError(f"Target {t!r} given for a regression model, which has one output.",
                                      "omit target (or pass 0).")
                continue
            if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or not 0 <= int(t) < self.n_outputs:
                names = ", ".join(f"{i}={c}" for i, c in enumerate(self.classes[:12]))
                raise TargetError(f"Target {t!r} is out of range for {self.n_outputs} classes.",
                                  f"pass an index in 0..{self.n_outputs - 1} ({names}).")
