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

import hashlib
import math
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from .enums import Capability, Modality, Task
from .errors import InputError, ModelError, ShapeError, TargetError, TextLengthWarning, ValueRangeError
from .samples import Sample

__all__ = ["ModelAdapter", "TorchModel", "FunctionModel", "wrap"]


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
            from .text import Tokenizer
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
        return [self.prepare(r, l, i) for i, (r, l) in enumerate(zip(raws, labels))]

    def _prepare_image(self, raw, label, index) -> Sample:
        arr = np.asarray(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw)
        if arr.dtype.kind not in "uif b":
            raise ShapeError(f"An image must be numeric; got dtype {arr.dtype}.", "pass a uint8 or float array.")
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

    def _image_tensor(self, img: np.ndarray):
        chw = img[None] if img.ndim == 2 else np.moveaxis(img, -1, 0)
        if self.normalize:
            mean = np.asarray(self.normalize["mean"], np.float32).reshape(-1, 1, 1)
            std = np.asarray(self.normalize["std"], np.float32).reshape(-1, 1, 1)
            chw = (chw - mean) / std
        return self._to_tensor(np.ascontiguousarray(chw, dtype=np.float32))

    def _prepare_text(self, raw, label, index) -> Sample:
        if not isinstance(raw, str):
            raise ShapeError(f"A text model takes a string; got {type(raw).__name__}.", "pass the text as str.")
        if not raw.strip():
            raise InputError("The text is empty.", "pass a non-empty string with at least one word.")
        enc = self.tokenizer.encode(raw)
        if not enc.ids:
            raise InputError(f"The text {raw[:40]!r} has no tokens the tokenizer recognises.",
                             "pass text with at least one word.")
        if enc.truncated:
            warnings.warn(TextLengthWarning(
                f"Text of {len(self.tokenizer.split(raw)) if hasattr(self.tokenizer, 'split') else 'many'} tokens"
                f" was truncated to the model's maximum of {self.max_len} tokens."), stacklevel=3)
        tensor = self._to_tensor(np.asarray(enc.ids, dtype=np.int64))
        return Sample(raw=raw, tensor=tensor, modality=Modality.TEXT, label=label, index=index,
                      tokens=list(enc.tokens), offsets=[tuple(o) for o in enc.offsets],
                      meta={"truncated": enc.truncated})

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
                            batch_size: int = 512) -> list[np.ndarray]:
        """``predict_masked`` for many samples at once: ``keeps[i]`` is ``[M_i, U_i]`` for ``samples[i]``.

        ``fills`` is None or one fill per sample (None entries mean the default baseline). Returns one
        ``[M_i, K]`` (or ``[M_i]``) array per sample. Torch models batch the masked copies of all
        samples together and evaluate identical copies once.
        """
        fills = [None] * len(samples) if fills is None else list(fills)
        return [self.predict_masked(s, k, fill=f, batch_size=batch_size) for s, k, f in zip(samples, keeps, fills)]

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


class TorchModel(ModelAdapter):
    """A torch ``nn.Module`` wrapped with its preprocessing and capabilities."""

    def __init__(self, module, *, modality, task, classes=None, feature_names=None, name="model",
                 config=None, input_shape=None, tokenizer=None, normalize=None, standardize=None,
                 target_name=None, embedding_layer=None, conv_layer=None, attention_fn=None,
                 pooling: str = "mean"):
        import torch

        super().__init__(modality=modality, task=task, classes=classes, feature_names=feature_names,
                         name=name, config=config, input_shape=input_shape, tokenizer=tokenizer,
                         normalize=normalize, standardize=standardize, target_name=target_name)
        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"Expected a torch.nn.Module, got {type(module).__name__}.",
                             "pass an nn.Module, or a predict function with modality=... for black boxes.")
        self.module = module.eval()
        self.pooling = pooling
        self._embedding = embedding_layer if embedding_layer is not None else self._find_embedding()
        self._conv = conv_layer if conv_layer is not None else self._find_conv()
        self._attention_fn = attention_fn if attention_fn is not None else self._find_attention()
        caps = {Capability.PREDICT}
        if self.task is Task.CLASSIFICATION:
            caps.add(Capability.PROBABILITIES)
        # token ids are not differentiable: a text model has gradients through its embedding layer
        if self.modality is not Modality.TEXT or self._embedding is not None:
            caps.add(Capability.GRADIENTS)
        if self.modality is Modality.TEXT and self._embedding is not None:
            caps.add(Capability.EMBEDDINGS)
        if self.modality is Modality.TEXT and self._attention_fn is not None:
            caps.add(Capability.ATTENTION)
        if self.modality is Modality.IMAGE and self._conv is not None:
            caps.add(Capability.CONV_LAYER)
        self.capabilities = frozenset(caps)
        self._hash = None

    # -- discovery of layers ---------------------------------------------------------------------
    def _find_embedding(self):
        import torch

        if self.modality is not Modality.TEXT:
            return None
        emb = getattr(self.module, "embedding", None)
        if isinstance(emb, torch.nn.Embedding):
            return emb
        if hasattr(self.module, "get_input_embeddings"):
            try:
                return self.module.get_input_embeddings()
            except Exception:  # noqa: BLE001 - optional protocol
                pass
        for m in self.module.modules():
            if isinstance(m, torch.nn.Embedding):
                return m
        return None

    def _find_conv(self):
        import torch

        if self.modality is not Modality.IMAGE:
            return None
        convs = [m for m in self.module.modules() if isinstance(m, torch.nn.Conv2d)]
        return convs[-1] if convs else None

    def _find_attention(self):
        if self.modality is not Modality.TEXT:
            return None
        fn = getattr(self.module, "attention_weights", None)
        return fn if callable(fn) else None

    @property
    def embedding_layer(self):
        """The token-embedding layer (text models), for layer attribution."""
        return self._embedding

    @property
    def conv_layer(self):
        """The last convolutional layer (image models), for Grad-CAM."""
        return self._conv

    @property
    def device(self):
        try:
            return next(self.module.parameters()).device
        except StopIteration:
            import torch
            return torch.device("cpu")

    def weights_hash(self) -> str:
        """sha256 over the module's parameters and buffers (names, dtypes, shapes and bytes)."""
        if self._hash is None:
            h = hashlib.sha256()
            for k, v in sorted(self.module.state_dict().items()):
                t = v.detach().cpu().contiguous()
                h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
                h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes()
                         if t.numel() else b"")
            self._hash = h.hexdigest()
        return self._hash

    def _to_tensor(self, arr):
        import torch
        return torch.from_numpy(np.ascontiguousarray(arr))

    # -- batches ---------------------------------------------------------------------------------
    def collate(self, samples: Sequence[Sample]):
        """Stack samples into ``(inputs, extra)``; text is right-padded and gets its padding mask."""
        import torch

        samples = [self.prepare(s) for s in samples]
        if not samples:
            raise InputError("No samples were given.", "pass at least one sample.")
        dev = self.device
        if self.modality is Modality.TEXT:
            t = max(int(s.tensor.shape[0]) for s in samples)
            ids = torch.full((len(samples), t), int(self.tokenizer.pad_id), dtype=torch.long)
            mask = torch.zeros((len(samples), t), dtype=torch.bool)
            for i, s in enumerate(samples):
                n = int(s.tensor.shape[0])
                ids[i, :n] = s.tensor
                mask[i, :n] = True
            return ids.to(dev), (mask.to(dev),)
        x = torch.stack([torch.as_tensor(s.tensor) for s in samples]).to(dev)
        return x, ()

    def forward(self, inputs, *extra):
        """Differentiable raw output ``[N,K]`` (logits; ``[N,1]`` for regression)."""
        out = self.module(inputs, *extra)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if hasattr(out, "logits"):
            out = out.logits
        if out.dim() == 1:
            out = out.unsqueeze(-1)
        return out

    def to_output(self, raw_out) -> np.ndarray:
        """Raw outputs -> probabilities (classification) or values ``[N]`` (regression)."""
        arr = raw_out.detach().cpu().double().numpy() if hasattr(raw_out, "detach") else np.asarray(raw_out)
        if self.task is Task.CLASSIFICATION:
            return _softmax(arr)
        return arr[:, 0]

    def _predict_samples(self, samples):
        import torch

        inputs, extra = self.collate(samples)
        with torch.no_grad():
            return self.to_output(self.forward(inputs, *extra))

    def predict_tensor(self, inputs, *extra, batch_size: int = 512) -> np.ndarray:
        """Batched no-grad prediction on model-ready tensors: probabilities or values."""
        import torch

        outs = []
        with torch.no_grad():
            for i in range(0, inputs.shape[0], batch_size):
                sl = slice(i, i + batch_size)
                outs.append(self.to_output(self.forward(inputs[sl], *[e[sl] for e in extra])))
        return np.concatenate(outs, axis=0)

    def baseline_tensor(self, sample: Sample):
        """The default 'absent' input for a sample: black image, all-pad tokens, training-mean row."""
        import torch

        t = torch.as_tensor(sample.tensor)
        if self.modality is Modality.IMAGE:
            return self._image_tensor(np.zeros_like(sample.image, dtype=np.float32))
        if self.modality is Modality.TEXT:
            return torch.full_like(t, int(self.tokenizer.pad_id))
        return torch.zeros_like(t) if self.standardize else torch.zeros_like(t)

    def _predict_masked_chunk(self, sample, keep, groups, fill):
        import torch

        m = len(keep)
        if self.modality is Modality.TEXT:
            ids = torch.as_tensor(sample.tensor).unsqueeze(0).repeat(m, 1)
            k = torch.from_numpy(keep > 0.5)
            fill_id = int(self.tokenizer.pad_id if fill is None else fill)
            ids = torch.where(k, ids, torch.full_like(ids, fill_id))
            mask = torch.ones_like(ids, dtype=torch.bool)
            return self.predict_tensor(ids.to(self.device), mask.to(self.device))
        x = torch.as_tensor(sample.tensor).unsqueeze(0)
        base = self.baseline_tensor(sample).unsqueeze(0) if fill is None else \
            torch.as_tensor(np.asarray(fill, dtype=np.float32)).reshape((1,) + tuple(x.shape[1:]))
        if self.modality is Modality.IMAGE:
            km = torch.from_numpy(self.unit_mask(sample, keep, groups).astype(np.float32)).unsqueeze(1)
        else:
            km = torch.from_numpy(keep.astype(np.float32))
        xs = km * x + (1 - km) * base
        return self.predict_tensor(xs.to(self.device))

    def predict_masked_many(self, samples, keeps, fills=None, batch_size: int = 512):
        """Batched ``predict_masked`` over many samples; identical masked copies are evaluated once.

        Two masks of a sample give the same input when they differ only on units already equal to
        the fill, so only distinct copies are built and run (in batches of ``batch_size`` rows).
        """
        import torch

        samples = [self.prepare(s) for s in samples]
        fills = [None] * len(samples) if fills is None else list(fills)
        keeps = [np.asarray(k, dtype=np.float32).reshape(len(k) if np.ndim(k) > 1 else 1, -1) for k in keeps]
        if len(keeps) != len(samples) or not samples:
            raise InputError(f"{len(keeps)} keep masks for {len(samples)} samples.", "pass one [M, U] mask per sample.")
        text = self.modality is Modality.TEXT
        width = max(int(s.tensor.shape[0]) for s in samples) if text else 0
        rows, masks, inverse, offset = [], [], [], 0
        for s, k, f in zip(samples, keeps, fills):
            x = torch.as_tensor(s.tensor)
            if text:
                base = torch.full_like(x, int(self.tokenizer.pad_id if f is None else f))
                active = (x != base).numpy()
            else:
                base = self.baseline_tensor(s) if f is None else \
                    torch.as_tensor(np.asarray(f, dtype=np.float32)).reshape(tuple(x.shape))
                diff = (x != base).numpy()
                active = diff.any(axis=0).reshape(-1) if self.modality is Modality.IMAGE else diff
            first, inv = _unique_rows(k[:, active])
            inverse.append(inv + offset)
            offset += len(first)
            k = k[first]
            if text:
                n = int(x.shape[0])
                ids = torch.full((len(k), width), int(self.tokenizer.pad_id), dtype=torch.long)
                ids[:, :n] = torch.where(torch.from_numpy(k > 0.5), x[None], base[None])
                m = torch.zeros((len(k), width), dtype=torch.bool)
                m[:, :n] = True
                rows.append(ids)
                masks.append(m)
                continue
            km = torch.from_numpy(np.ascontiguousarray(self.unit_mask(s, k) if self.modality is Modality.IMAGE else k))
            km = km.unsqueeze(1) if self.modality is Modality.IMAGE else km
            rows.append(km * x[None] + (1 - km) * base[None])
        x = torch.cat(rows).to(self.device)
        extra = (torch.cat(masks).to(self.device),) if text else ()
        out = self.predict_tensor(x, *extra, batch_size=batch_size)[np.concatenate(inverse)]
        bounds = np.cumsum([0] + [len(k) for k in keeps])
        return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    # -- attention ---------------------------------------------------------------------------------
    def attention(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """Per-sample attention weights ``[layers, heads, T, T]`` over the sample's real tokens."""
        import torch

        if self._attention_fn is None:
            raise ModelError(f"Model {self.name!r} exposes no attention weights.",
                             "give the module an attention_weights(ids, mask) method returning [N,L,H,T,T].")
        ids, (mask,) = self.collate(samples)
        with torch.no_grad():
            att = self._attention_fn(ids, mask)
        att = att.detach().cpu().double().numpy()
        out = []
        for i, s in enumerate(samples):
            n = int(mask[i].sum())
            out.append(att[i, :, :, :n, :n])
        return out


def _unique_rows(key: np.ndarray):
    """Indices of the first copy of each distinct row, and each row's index into them."""
    seen: dict = {}
    first, inverse = [], np.empty(len(key), dtype=np.int64)
    for i, row in enumerate(np.ascontiguousarray(key)):
        j = seen.setdefault(row.tobytes(), len(first))
        if j == len(first):
            first.append(i)
        inverse[i] = j
    return np.asarray(first, dtype=np.int64), inverse


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


def wrap(model, *, modality, task="classification", classes=None, feature_names=None, name=None,
         input_shape=None, tokenizer=None, normalize=None, standardize=None, background=None,
         embedding_layer=None, conv_layer=None, attention_fn=None, example=None) -> ModelAdapter:
    """Wrap any torch module, or a black-box predict function, and probe it once.

    A module must map a batch to ``[N, K]`` outputs: images ``[N,C,H,W]`` floats (``input_shape`` =
    ``(C,H,W)``), token ids ``[N,T]`` plus a padding mask (text), features ``[N,F]`` (tabular).
    A function takes a batch of raw inputs and returns probabilities (classification) or values.
    One probe forward pass checks shapes and dtypes now, so a mismatch is reported at wrap time.
    """
    modality = Modality.parse(modality)
    task = Task.parse(task)
    if modality is Modality.TABULAR and feature_names is None and input_shape is not None:
        feature_names = [f"x{i}" for i in range(int(np.prod(input_shape)))]
    if modality is Modality.TABULAR and feature_names is None:
        raise ModelError("A tabular model needs its feature names.", "pass feature_names=[...].")
    if modality is Modality.IMAGE and input_shape is None:
        input_shape = (1, 28, 28)
    if modality is Modality.IMAGE and len(tuple(input_shape)) != 3:
        raise ShapeError(f"input_shape {tuple(input_shape)} is not (C, H, W).", "pass input_shape=(C, H, W).")
    name = name or type(model).__name__
    try:
        import torch
        is_module = isinstance(model, torch.nn.Module)
    except ImportError:  # pragma: no cover
        is_module = False
    if is_module:
        adapter = TorchModel(model, modality=modality, task=task, classes=classes,
                             feature_names=feature_names, name=name, input_shape=input_shape,
                             tokenizer=tokenizer, normalize=normalize, standardize=standardize,
                             embedding_layer=embedding_layer, conv_layer=conv_layer,
                             attention_fn=attention_fn)
    elif callable(model):
        adapter = FunctionModel(model, modality=modality, task=task, classes=classes,
                                feature_names=feature_names, name=name, input_shape=input_shape,
                                tokenizer=tokenizer, background=background)
    else:
        raise ModelError(f"Cannot wrap a {type(model).__name__}.",
                         "pass a torch.nn.Module or a callable predict function.")
    _probe(adapter, example)
    return adapter


def _probe(adapter: ModelAdapter, example) -> None:
    """Run one forward pass on an example (or a synthetic input) and check the output shape."""
    if example is None:
        if adapter.modality is Modality.IMAGE:
            c, h, w = adapter.input_shape
            example = np.zeros((h, w) if c == 1 else (h, w, c), dtype=np.uint8)
        elif adapter.modality is Modality.TEXT:
            vocab = getattr(adapter.tokenizer, "vocab", [])
            example = vocab[2] if len(vocab) > 2 else "probe"
        else:
            example = np.zeros(len(adapter.feature_names))
    sample = adapter.prepare(example)
    try:
        if isinstance(adapter, TorchModel):
            import torch
            inputs, extra = adapter.collate([sample])
            with torch.no_grad():
                out = adapter.forward(inputs, *extra)
            if not torch.is_floating_point(out):
                raise ShapeError(f"The model returned dtype {out.dtype}; expected floats.",
                                 "return logits or regression values as a float tensor.")
            shape = tuple(out.shape)
        else:
            shape = adapter.predict([sample]).shape
    except (ShapeError, ModelError):
        raise
    except Exception as e:  # noqa: BLE001 - translate torch's error into ours
        msg = str(e).splitlines()[0][:300]
        raise ShapeError(f"The probe forward pass failed: {type(e).__name__}: {msg}",
                         _shape_hint(adapter)) from None
    want = adapter.n_outputs
    if adapter.task is Task.CLASSIFICATION and (len(shape) != 2 or shape[-1] != want):
        raise ShapeError(f"The model outputs shape {shape}, but {want} classes were declared.",
                         f"make the model output [N, {want}] logits, or fix classes=.")
    if adapter.task is Task.REGRESSION and math.prod(shape) != 1:
        raise ShapeError(f"The regression model outputs shape {shape} for one input; expected one value.",
                         "return [N] or [N, 1] values.")


def _shape_hint(adapter: ModelAdapter) -> str:
    if adapter.modality is Modality.IMAGE:
        return f"check input_shape={adapter.input_shape} (C, H, W) against the model's first layer."
    if adapter.modality is Modality.TEXT:
        return "a text module must take (ids [N,T] long, mask [N,T] bool) and return [N, K]."
    return f"check that the model takes [N, {len(adapter.feature_names)}] float features."
