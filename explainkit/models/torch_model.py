"""TorchModel: a torch ``nn.Module`` wrapped with its preprocessing, capabilities and layers."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from explainkit.concurrency import MODEL_LOCK
from explainkit.data.photos import is_large
from explainkit.data.samples import Sample
from explainkit.enums import Capability, Modality, Task
from explainkit.errors import InputError, ModelError
from explainkit.models.adapter import ModelAdapter, _softmax

__all__ = ["TorchModel"]

INCREMENTAL_MIN_COPIES = 8      # distinct masked copies per sample before incremental inference pays
INCREMENTAL_ROWS_PER_CALL = 2048


class TorchModel(ModelAdapter):
    """A torch ``nn.Module`` wrapped with its preprocessing and capabilities."""

    def __init__(self, module, *, modality, task, classes=None, feature_names=None, name="model",
                 config=None, input_shape=None, tokenizer=None, normalize=None, standardize=None,
                 target_name=None, embedding_layer=None, conv_layer=None, attention_fn=None,
                 pooling: str = "mean", channels_last: bool | None = None):
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
        # No-grad predictions of a CPU conv net run on channels-last inputs (oneDNN's fast layout for
        # convolutions and pooling). None: try it, and fall back for good if the module rejects it.
        auto = self.modality is Modality.IMAGE and self._conv is not None
        self._channels_last = (None if auto else False) if channels_last is None else bool(channels_last)
        self._incremental = None if auto else False      # engine, False (not eligible), None (untried)
        self._incremental_checked = False

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
        named = getattr(self.module, "conv_layer", None)      # a module may name its own Grad-CAM layer
        if isinstance(named, torch.nn.Module):
            return named
        convs = [m for m in self.module.modules() if isinstance(m, torch.nn.Conv2d)]
        if convs and self.input_shape is not None and is_large(*self.input_shape[1:]):
            return _last_conv_block(self.module, self.input_shape, convs) or convs[-1]
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
        return self._logits(self.module(inputs, *extra))

    @staticmethod
    def _logits(out):
        """The module's output as ``[N,K]``: first of a tuple, ``.logits`` of a model output."""
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
        inputs, extra = self.collate(samples)
        return self.predict_tensor(inputs, *extra)

    @property
    def eval_batch_size(self) -> int:
        """Rows per no-grad forward pass: 64 images (conv activations stay in cache), else 128."""
        return 64 if self.modality is Modality.IMAGE else 128

    def _forward_eval(self, inputs, *extra):
        """``forward`` for no-grad predictions, on channels-last inputs where that layout is enabled.

        The layout changes no value beyond float rounding (~1e-6). A module that cannot take it (for
        example one that calls ``.view`` on a conv activation) raises on the first try; that model
        then uses the default layout for good.
        """
        import torch

        if self._channels_last is False or inputs.dim() != 4 or not inputs.is_floating_point() \
                or inputs.device.type != "cpu":
            return self.forward(inputs, *extra)
        fast = torch.empty_like(inputs, memory_format=torch.channels_last).copy_(inputs)
        if self._channels_last:
            return self.forward(fast, *extra)
        try:
            out = self.forward(fast, *extra)
        except RuntimeError:
            out = self.forward(inputs, *extra)      # raises again when the input, not the layout, is wrong
            self._channels_last = False
            return out
        self._channels_last = True
        return out

    def predict_tensor(self, inputs, *extra, batch_size: int | None = None) -> np.ndarray:
        """Batched no-grad prediction on model-ready tensors: probabilities or values."""
        import torch

        batch_size = int(batch_size or self.eval_batch_size)
        outs = []
        with MODEL_LOCK, torch.no_grad():
            for i in range(0, inputs.shape[0], batch_size):
                sl = slice(i, i + batch_size)
                outs.append(self.to_output(self._forward_eval(inputs[sl], *[e[sl] for e in extra])))
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

    def predict_masked_many(self, samples, keeps, fills=None, batch_size: int | None = None):
        """Batched ``predict_masked`` over many samples; identical masked copies are evaluated once.

        Two masks of a sample give the same input when they differ only on units already equal to
        the fill, so only distinct copies are built and run (in batches of ``batch_size`` rows).
        Boolean masks (keep/remove) take a faster path than fractional float ones.
        """
        import torch

        samples = [self.prepare(s) for s in samples]
        fills = [None] * len(samples) if fills is None else list(fills)
        keeps = [_as_keep(k) for k in keeps]
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
            rows.append(torch.where(km, x[None], base[None]) if km.dtype == torch.bool
                        else km * x[None] + (1 - km) * base[None])
        x = torch.cat(rows).to(self.device)
        extra = (torch.cat(masks).to(self.device),) if text else ()
        sizes = [len(r) for r in rows]
        if not text and self._use_incremental(len(x), len(samples)):
            out = self._predict_incremental(x, np.repeat(np.arange(len(rows)), sizes))
        else:
            out = self.predict_tensor(x, *extra, batch_size=batch_size)
        out = out[np.concatenate(inverse)]
        bounds = np.cumsum([0] + [len(k) for k in keeps])
        return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    # -- incremental inference of masked copies ----------------------------------------------------
    @property
    def incremental(self) -> bool:
        """Whether masked image copies may use incremental inference (see :mod:`explainkit.incremental`).
        Set it to False to force plain forward passes; True re-enables it (it still needs an eligible module)."""
        return self._incremental is not False

    @incremental.setter
    def incremental(self, value: bool) -> None:
        self._incremental, self._incremental_checked = (None if value else False), False

    def __getstate__(self) -> dict:
        """Pickled for a worker process without the built incremental engine (a traced graph that cannot
        be pickled); the worker builds its own on first use."""
        state = dict(self.__dict__)
        if state.get("_incremental") not in (None, False):
            state["_incremental"], state["_incremental_checked"] = None, False
        return state

    def _use_incremental(self, n_rows: int, n_samples: int) -> bool:
        """Masked image copies go through :mod:`explainkit.incremental` when the module's graph starts
        with convolutions, there are enough copies per sample to gain, and the engine has not failed
        its check against the plain forward pass."""
        if self.modality is not Modality.IMAGE or self._incremental is False or self.device.type != "cpu":
            return False
        if n_rows < INCREMENTAL_MIN_COPIES * n_samples:
            return False
        if self._incremental is None:
            from explainkit.models.incremental import IncrementalForward

            self._incremental = IncrementalForward.build(self.module) or False
        return self._incremental is not False

    def _predict_incremental(self, x, groups) -> np.ndarray:
        """Outputs for copies ``x`` of the samples in ``groups``, in calls of at most 2,048 copies or
        256 MiB of them (a cut inside a sample only makes the next copy a root)."""
        import torch

        per_call = max(1, min(INCREMENTAL_ROWS_PER_CALL, (256 << 20) // (4 * int(np.prod(tuple(x.shape[1:]))))))
        cuts = list(range(0, len(x), per_call)) + [len(x)]
        outs, engine = [], self._incremental
        with MODEL_LOCK, torch.no_grad():
            for a, b in zip(cuts[:-1], cuts[1:]):
                try:
                    raw = engine(x[a:b], groups[a:b])
                except Exception:  # noqa: BLE001 - an engine failure must never cost the user a result
                    self._incremental = False
                    return self.predict_tensor(x)
                if raw is None:                           # changes too spread out to gain: plain pass
                    outs.append(self.predict_tensor(x[a:b]))
                    continue
                raw = self._logits(raw)
                if not self._incremental_checked:
                    k = min(b - a, self.eval_batch_size)
                    ref = self._forward_eval(x[a:a + k])
                    tol = 1e-4 * (1.0 + float(ref.abs().max()))
                    if raw[:k].shape != ref.shape or float((raw[:k] - ref).abs().max()) > tol:
                        self._incremental = False           # never trust a mismatch: plain passes from now on
                        return self.predict_tensor(x)
                    self._incremental_checked = True
                outs.append(self.to_output(raw))
        return np.concatenate(outs, axis=0)

    # -- attention ---------------------------------------------------------------------------------
    def attention(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """Per-sample attention weights ``[layers, heads, T, T]`` over the sample's real tokens."""
        import torch

        if self._attention_fn is None:
            raise ModelError(f"Model {self.name!r} exposes no attention weights.",
                             "give the module an attention_weights(ids, mask) method returning [N,L,H,T,T].")
        ids, (mask,) = self.collate(samples)
        with MODEL_LOCK, torch.no_grad():
            att = self._attention_fn(ids, mask)
        att = att.detach().cpu().double().numpy()
        out = []
        for i, _s in enumerate(samples):
            n = int(mask[i].sum())
            out.append(att[i, :, :, :n, :n])
        return out


def _last_conv_block(module, input_shape, convs):
    """The last convolutional block of a large-input CNN, found by one traced forward pass.

    Starting at the last ``Conv2d`` to run, the block runs on through the modules that follow it
    without changing the feature map's shape (normalization, activation), each called exactly once;
    the last of them is the block's output (for torchvision-style nets: conv + norm + activation).
    None when the trace fails.
    """
    import torch

    order, calls = [], {}

    def hook(mod, _inputs, out):
        calls[mod] = calls.get(mod, 0) + 1
        order.append((mod, tuple(out.shape) if torch.is_tensor(out) else None))

    leaves = [m for m in module.modules() if not list(m.children()) or isinstance(m, torch.nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with MODEL_LOCK, torch.no_grad():
            dev = next(module.parameters(), torch.zeros(0)).device
            module(torch.zeros((1,) + tuple(int(v) for v in input_shape), device=dev))
    except Exception:  # noqa: BLE001 - a module that cannot run a zero probe keeps the plain rule
        return None
    finally:
        for h in handles:
            h.remove()
    conv_set = set(convs)
    last = max((i for i, (m, _) in enumerate(order) if m in conv_set), default=None)
    if last is None or order[last][1] is None or len(order[last][1]) != 4:
        return None
    chosen, shape = order[last][0], order[last][1]
    for m, out in order[last + 1:]:
        if out != shape:
            break
        if calls.get(m) == 1:
            chosen = m
    return chosen


def _as_keep(k) -> np.ndarray:
    """A keep mask as ``[M, U]``: boolean stays boolean, anything else becomes float32."""
    k = np.asarray(k)
    k = k if k.dtype == np.bool_ else k.astype(np.float32, copy=False)
    return k.reshape(len(k) if k.ndim > 1 else 1, -1)


def _unique_rows(key: np.ndarray):
    """Indices of the first copy of each distinct row, and each row's index into them."""
    key = np.ascontiguousarray(key)
    if key.ndim != 2 or key.shape[1] == 0:
        return np.zeros(min(len(key), 1), dtype=np.int64), np.zeros(len(key), dtype=np.int64)
    rows = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # distinct rows in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64)
