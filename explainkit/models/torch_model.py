"""TorchModel: a torch ``nn.Module`` wrapped with its preprocessing, capabilities and layers."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from explainkit.concurrency import MODEL_LOCK
from explainkit.data.photos import is_large
from explainkit.data.samples import Sample
from explainkit.enums import Capability, Modality, Task
from explainkit.errors import InputError, ModelError, ShapeError
from explainkit.models.adapter import ModelAdapter, _softmax
from explainkit.models.masked import as_keep, binary, plan, run_plan, unique_rows
from explainkit.models.observe import offer
from explainkit.models.prefix_sharing import predict as prefix_predict

__all__ = ["TorchModel"]
_as_keep, _unique_rows = as_keep, unique_rows      # the names other modules imported before

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

    def predict_tensor(self, inputs, *extra, batch_size: int | None = None, logits: bool = False) -> np.ndarray:
        """Batched no-grad prediction on model-ready tensors: probabilities or values (``logits=True``: the
        raw outputs ``[N,K]``, as float64)."""
        import torch

        batch_size = int(batch_size or self.eval_batch_size)
        outs = []
        with MODEL_LOCK, torch.no_grad():
            for i in range(0, inputs.shape[0], batch_size):
                sl = slice(i, i + batch_size)
                outs.append(self._output(self._forward_eval(inputs[sl], *[e[sl] for e in extra]), logits))
        return np.concatenate(outs, axis=0)

    def _output(self, raw_out, logits: bool) -> np.ndarray:
        return raw_out.detach().cpu().double().numpy() if logits else self.to_output(raw_out)

    def baseline_tensor(self, sample: Sample):
        """The default 'absent' input for a sample: black image, all-pad tokens, training-mean row."""
        import torch

        t = torch.as_tensor(sample.tensor)
        if self.modality is Modality.IMAGE:
            return self._image_tensor(np.zeros_like(sample.image, dtype=np.float32))
        if self.modality is Modality.TEXT:
            return torch.full_like(t, int(self.tokenizer.pad_id))
        return torch.zeros_like(t) if self.standardize else torch.zeros_like(t)

    def predict_masked(self, sample, keep, groups=None, fill=None, batch_size: int = 256) -> np.ndarray:
        """See :meth:`ModelAdapter.predict_masked`; each distinct copy is run once over the whole ``keep``
        (not once per chunk), and at most ``batch_size`` copies are built at a time."""
        keep = as_keep(keep)
        return self.predict_masked_many([sample], [keep], fills=[fill], groups=[groups], build_rows=batch_size)[0]

    def predict_masked_many(self, samples, keeps, fills=None, batch_size: int | None = None, *, groups=None,
                            logits: bool = False, build_rows: int | None = None):
        """Batched ``predict_masked`` over many samples; identical masked copies are evaluated once.

        Two masks of a sample give the same input when they differ only on units already equal to
        the fill, so only distinct copies are built and run (see :mod:`explainkit.models.masked`), in
        forward passes of ``batch_size`` rows (default: ``eval_batch_size``). ``groups`` gives one segment
        map (or None) per image sample; ``logits=True`` returns raw outputs ``[M,K]`` (logits, ``[M,1]``
        for regression) instead of probabilities or values. Boolean (or 0/1) masks take a faster path than
        fractional float ones.
        """
        import torch

        samples = [self.prepare(s) for s in samples]
        n = len(samples)
        fills = [None] * n if fills is None else list(fills)
        groups = [None] * n if groups is None else list(groups)
        keeps = [as_keep(k) for k in keeps]
        if len(keeps) != n or not samples or len(fills) != n or len(groups) != n:
            raise InputError(f"{len(keeps)} keep masks, {len(fills)} fills and {len(groups)} segment maps for {n} "
                             "samples.", "pass one [M, U] mask (and at most one fill and one segment map) per sample.")
        text = self.modality is Modality.TEXT
        width = max(int(s.tensor.shape[0]) for s in samples) if text else 0
        parts, inverse = plan(self, samples, keeps, fills, groups)
        rows = sum(len(p[3]) for p in parts)
        incremental = not text and self._use_incremental(rows, n)
        dev = self.device

        def run(tensors, owners):
            if incremental:
                return self._predict_incremental(tensors[0].to(dev), owners, logits=logits)

            def plain(rows=slice(None)):
                return self.predict_tensor(*(t[rows].to(dev) for t in tensors), batch_size=batch_size, logits=logits)
            return prefix_predict(self, tensors[0], tensors[1], logits, plain) if text else plain()

        row_bytes = 24 * width if text else 4 * int(torch.as_tensor(samples[0].tensor).numel())
        out = run_plan(parts, lambda p, k: self._masked_rows(p[0], p[1], p[2], k, p[4], width), run,
                       row_bytes, build_rows)[inverse]
        bounds = np.cumsum([0] + [len(k) for k in keeps])
        outs = [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        offer(self, samples, keeps, outs, logits)          # the unmasked copies' outputs, to a watcher
        return outs

    def _masked_units(self, sample, groups) -> int:
        if self.modality is Modality.IMAGE:
            return int(np.asarray(groups).max()) + 1 if groups is not None else int(np.prod(sample.image.shape[:2]))
        return int(sample.tensor.shape[0])

    def _masked_setup(self, sample, keep, fill, groups):
        """``(x, fill tensor, keep [M,U], active units [U])`` for one sample's masked copies."""
        import torch

        x = torch.as_tensor(sample.tensor)
        u = self._masked_units(sample, groups)
        if keep.shape[1] != u:
            what = "segments" if groups is not None else {Modality.IMAGE: "pixels", Modality.TEXT: "tokens"}.get(
                self.modality, "features")
            raise ShapeError(f"A keep mask has {keep.shape[1]} columns for a sample of {u} {what}.",
                             f"pass masks of shape [M, {u}] (one column per unit).")
        if self.modality is Modality.TEXT:
            base = torch.full_like(x, int(self.tokenizer.pad_id if fill is None else fill))
            return x, base, (keep > 0.5) if keep.dtype != np.bool_ else keep, (x != base).numpy()
        base = self.baseline_tensor(sample) if fill is None else \
            torch.as_tensor(np.broadcast_to(np.asarray(fill, dtype=np.float32), tuple(x.shape)).copy())
        diff = (x != base).numpy()
        if self.modality is not Modality.IMAGE:
            return x, base, binary(keep), diff
        active = diff.any(axis=0).reshape(-1)
        if groups is not None:
            g = np.asarray(groups).reshape(-1)
            active = np.bincount(g, weights=active, minlength=u) > 0
        return x, base, binary(keep), active

    def _masked_rows(self, sample, x, base, k, groups, width) -> tuple:
        """The model-ready copies of ``sample`` for keep rows ``k``, and their extra forward arguments."""
        import torch

        if self.modality is Modality.TEXT:
            n = int(x.shape[0])
            ids = torch.full((len(k), width), int(self.tokenizer.pad_id), dtype=torch.long)
            ids[:, :n] = torch.where(torch.from_numpy(np.ascontiguousarray(k)), x[None], base[None])
            mask = torch.zeros((len(k), width), dtype=torch.bool)
            mask[:, :n] = True
            return ids, mask
        km = self.unit_mask(sample, k, groups) if self.modality is Modality.IMAGE else k
        km = torch.from_numpy(np.ascontiguousarray(km))
        km = km.unsqueeze(1) if self.modality is Modality.IMAGE else km
        if km.dtype == torch.bool:
            return (torch.where(km, x[None], base[None]),)
        return (km * x[None] + (1 - km) * base[None],)

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

    def _predict_incremental(self, x, groups, logits: bool = False) -> np.ndarray:
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
                    return self.predict_tensor(x, logits=logits)
                if raw is None:                           # changes too spread out to gain: plain pass
                    outs.append(self.predict_tensor(x[a:b], logits=logits))
                    continue
                raw = self._logits(raw)
                if not self._incremental_checked:
                    k = min(b - a, self.eval_batch_size)
                    ref = self._forward_eval(x[a:a + k])
                    tol = 1e-4 * (1.0 + float(ref.abs().max()))
                    if raw[:k].shape != ref.shape or float((raw[:k] - ref).abs().max()) > tol:
                        self._incremental = False           # never trust a mismatch: plain passes from now on
                        return self.predict_tensor(x, logits=logits)
                    self._incremental_checked = True
                outs.append(self._output(raw, logits))
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
