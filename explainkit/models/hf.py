"""Hugging Face sequence classifiers: ``ek.wrap(model, tokenizer=tok)`` and ``ek.wrap(pipeline)``.

:class:`HFModel` is a :class:`~explainkit.models.torch_model.TorchModel` over a
``transformers.PreTrainedModel`` with a sequence-classification head and its fast tokenizer. Everything
is read from the two objects: the classes (``config.id2label``), the embedding layer
(``get_input_embeddings()``), the logits (``ModelOutput.logits``), padding and special tokens, character
offsets (``return_offsets_mapping``) and the maximum length (``tokenizer.model_max_length``, else the
model's position embeddings; longer texts are truncated with a :class:`TextLengthWarning`).

Units. A sample's ``tokens`` are exactly the sequence the model reads, special tokens included, so
attention is ``[layers, heads, T, T]`` over every token. Special tokens ([CLS], [SEP], ``<s>``, a chat
template's markers) get zero-width offsets and are never units: every forward pass puts them back
(masking cannot remove them), and their embedding output is held constant, so gradient methods give
them exactly zero and perturbation methods never see them changed; SHAP and LIME play only
``meta["units"]``, and an :class:`~explainkit.plugins.explanation.Explanation` lists the specials in
``unscored`` with a score of exactly 0. Word pieces are the units; the Explanation carries
``meta["words"]``, so that every text view can also show words (the sums of their pieces).

``sample.meta`` carries, for text samples of an HF model:

- ``"special"``: one bool per token, True for a special token;
- ``"units"``: the indices of the non-special tokens (the pieces a user can see);
- ``"words"``: the tokenizer's words as ``(word_text, start, end, [piece indices])``, in text order, with
  ``word_text == text[start:end]``: sum a piece-level score over the indices to get a word-level one;
- ``"truncated"``: whether the text was cut to the maximum length.

transformers is imported here only, never by ``import explainkit``; it is the ``hf`` extra
(``pip install 'explainkit[hf]'``).
"""
from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from explainkit.concurrency import MODEL_LOCK
from explainkit.data.samples import Sample
from explainkit.data.tokenizer import Encoding
from explainkit.enums import Modality, Task
from explainkit.errors import InputError, MissingDependencyError, ModelError, ShapeError
from explainkit.models.torch_model import TorchModel

__all__ = ["HFModel", "HFTokenizer", "hf_kind", "wrap_hf", "INSTALL"]

INSTALL = "pip install 'explainkit[hf]'"
HEAD_SUFFIX = "ForSequenceClassification"
VOCAB_SLACK = 0.03          # embedding rows beyond the tokenizer's size (padded vocabularies) that are normal
MAX_SANE_LENGTH = 100_000   # tokenizers without a limit report model_max_length = 1e30


def _mro_names(obj) -> set[str]:
    return {c.__name__ for c in type(obj).__mro__}


def _from_transformers(obj) -> bool:
    return any(c.__module__.split(".")[0] == "transformers" for c in type(obj).__mro__)


def hf_kind(obj) -> str | None:
    """'model', 'pipeline' or 'tokenizer' for a transformers object, else None; transformers is not imported."""
    if not _from_transformers(obj):
        return None
    names = _mro_names(obj)
    if "PreTrainedModel" in names:
        return "model"
    if "Pipeline" in names:
        return "pipeline"
    if "PreTrainedTokenizerBase" in names:
        return "tokenizer"
    return None


def _transformers():
    try:
        return importlib.import_module("transformers")
    except ImportError:
        raise MissingDependencyError("Wrapping a Hugging Face model needs transformers, which is not installed.",
                                     f"{INSTALL} (or pip install 'transformers>=4.40').") from None


class HFTokenizer:
    """A fast Hugging Face tokenizer with explainkit's tokenizer interface (``encode``, ``pad_id``, ``max_len``).

    ``encode`` returns the model's full sequence (special tokens included) with offsets into the text;
    :meth:`encode_full` also returns which tokens are special and the word index of each piece.
    """

    def __init__(self, tok, max_len: int, pad_id: int):
        self._hf = tok
        self.max_len, self.pad_id = int(max_len), int(pad_id)
        self.unk_id = tok.unk_token_id
        self.lowercase = bool(getattr(tok, "do_lower_case", False))
        unk = set() if self.unk_id is None else {int(self.unk_id)}
        self._special_ids = {int(i) for i in tok.all_special_ids} - unk
        self._vocab: list[str] | None = None

    def __len__(self) -> int:
        return len(self._hf)

    def __repr__(self) -> str:
        return f"<HFTokenizer {type(self._hf).__name__} vocab={len(self)} max_len={self.max_len}>"

    @property
    def vocab(self) -> list[str]:
        """The tokens in id order."""
        if self._vocab is None:
            self._vocab = [p for p, _ in sorted(self._hf.get_vocab().items(), key=lambda kv: kv[1])]
        return self._vocab

    def _call(self, text: str, special: bool):
        return self._hf(text, add_special_tokens=special, return_offsets_mapping=True,
                        return_special_tokens_mask=special, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)

    def count(self, text: str) -> int:
        """How many pieces ``text`` has (without special tokens or truncation)."""
        return len(self._call(text, False)["input_ids"])

    def split(self, text: str) -> list[tuple[str, int, int]]:
        """Pieces of ``text`` as (piece, start, end), without special tokens or truncation."""
        enc = self._call(text, False)
        return [(p, int(a), int(b)) for p, (a, b) in
                zip(self._hf.convert_ids_to_tokens(enc["input_ids"]), enc["offset_mapping"])]

    def encode(self, text: str, max_len: int | None = None) -> Encoding:
        return self.encode_full(text, max_len)[0]

    def encode_full(self, text: str, max_len: int | None = None):
        """``(Encoding, special flags, word ids)``; at most ``max_len`` tokens, special tokens always kept."""
        limit = self.max_len if max_len is None else int(max_len)
        enc = self._call(text, True)
        ids = [int(i) for i in enc["input_ids"]]
        offs = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        smask = enc.get("special_tokens_mask") or [0] * len(ids)
        special = [bool(m) or i in self._special_ids for m, i in zip(smask, ids)]
        try:
            wids = list(enc.word_ids())
        except (AttributeError, ValueError):      # pragma: no cover - every fast tokenizer has word ids
            wids = [None] * len(ids)
        if not any(not s for s in special):
            return Encoding([], [], [], False), [], []
        truncated = len(ids) > limit
        if truncated:
            budget = max(1, limit - sum(special))
            keep, seen = [], 0
            for k, s in enumerate(special):
                if s or seen < budget:
                    keep.append(k)
                seen += not s
            ids, offs, special, wids = ([v[k] for k in keep] for v in (ids, offs, special, wids))
        # highlights land on the visible characters: no surrounding whitespace (byte-level BPE "Ġ")
        out, last = [], 0
        for (a, b), s in zip(offs, special):
            if s:
                out.append((last, last))          # zero-width, after the last piece before it
                continue
            while a < b and text[a].isspace():
                a += 1
            while b > a and text[b - 1].isspace():
                b -= 1
            out.append((a, b))
            last = b
        tokens = self._hf.convert_ids_to_tokens(ids)
        return Encoding(ids, list(tokens), out, truncated), special, wids


def _words(text: str, offsets, special, wids) -> list[tuple[str, int, int, list[int]]]:
    """Group the pieces into the tokenizer's words: ``(text[start:end], start, end, [piece indices])``."""
    groups: list[list[int]] = []
    prev = None                                   # the previous piece's word key; None after a special
    for k, (s, w) in enumerate(zip(special, wids)):
        if s:
            prev = None
            continue
        key = ("word", w) if w is not None else ("adjacent",)
        if groups and prev == key and (w is not None or offsets[groups[-1][-1]][1] == offsets[k][0]):
            groups[-1].append(k)                  # same word id (no word ids: pieces that touch)
        else:
            groups.append([k])
        prev = key
    words = []
    for g in groups:
        a, b = min(offsets[k][0] for k in g), max(offsets[k][1] for k in g)
        words.append((text[a:b], a, b, g))
    return words


def _num_embeddings(layer) -> int | None:
    n = getattr(layer, "num_embeddings", None)
    if n is None and getattr(layer, "weight", None) is not None:
        n = layer.weight.shape[0]
    return None if n is None else int(n)


class HFModel(TorchModel):
    """A Hugging Face ``*ForSequenceClassification`` model and its fast tokenizer, as a text TorchModel.

    ``collate`` returns ``(ids, (mask, specials))``: ``specials`` is ``[N,T]`` long, the special token's id
    where there is one and -1 elsewhere; ``forward(ids, mask, specials)`` restores those tokens before the
    model reads them. See the module docstring for the units and ``sample.meta``.
    """

    def __init__(self, model, tokenizer, *, classes=None, name=None, task=None):
        _transformers()
        if tokenizer is None:
            raise ModelError(f"The Hugging Face model {type(model).__name__} was wrapped without its tokenizer; "
                             "explainkit's word tokenizer would turn every word into an unknown id.",
                             "pass tokenizer=AutoTokenizer.from_pretrained(<the model's path>), "
                             "or wrap a text-classification pipeline: ek.wrap(pipeline).")
        if hf_kind(tokenizer) != "tokenizer":
            raise ModelError(f"tokenizer= is a {type(tokenizer).__name__}, not a Hugging Face tokenizer.",
                             "pass the model's own tokenizer: AutoTokenizer.from_pretrained(<the model's path>).")
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"{type(tokenizer).__name__} is a slow (Python) tokenizer, which gives no character "
                             "offsets, so highlights could not be placed on the text.",
                             "load the fast one: AutoTokenizer.from_pretrained(<path>, use_fast=True).")
        names = _mro_names(model)
        if not any(n.endswith(HEAD_SUFFIX) for n in names):
            raise ModelError(f"{type(model).__name__} has no sequence-classification head: it returns hidden "
                             "states or next-token logits, not one score per class.",
                             "load the checkpoint with AutoModelForSequenceClassification.from_pretrained(<path>, "
                             "num_labels=K) (and fine-tune its head), or pass a text-classification pipeline.")
        config = model.config
        emb = model.get_input_embeddings()
        n_emb, n_tok = _num_embeddings(emb), len(tokenizer)
        same = str(getattr(tokenizer, "name_or_path", "") or "") == str(getattr(config, "_name_or_path", "") or "")
        if n_emb is not None and (n_tok > n_emb or (not same and n_emb - n_tok > VOCAB_SLACK * n_emb)):
            raise ModelError(f"The tokenizer has {n_tok} tokens but the model's embedding matrix has {n_emb} rows: "
                             "the tokenizer does not belong to this model.",
                             "load both from the same checkpoint: AutoTokenizer.from_pretrained(<the model's "
                             "path>) and AutoModelForSequenceClassification.from_pretrained(<same path>).")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else getattr(config, "pad_token_id", None)
        if pad is None:
            raise ModelError(f"Neither the tokenizer nor the config of {type(model).__name__} defines a padding "
                             "token, so batches cannot be padded.",
                             "set one before wrapping: tok.pad_token = tok.eos_token; "
                             "model.config.pad_token_id = tok.pad_token_id.")
        limit = getattr(tokenizer, "model_max_length", None)
        positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if not limit or limit > MAX_SANE_LENGTH:
            limit = positions or 512
        elif positions:
            limit = min(int(limit), int(positions))
        self.hf_tokenizer = tokenizer
        tk = HFTokenizer(tokenizer, int(limit), int(pad))
        n_labels = int(getattr(config, "num_labels", 0) or 0)
        if task is None:
            task = Task.REGRESSION if n_labels == 1 or getattr(config, "problem_type", None) == "regression" \
                else Task.CLASSIFICATION
        task = Task.parse(task)
        if classes is None and task is Task.CLASSIFICATION:
            id2label = getattr(config, "id2label", None) or {}
            classes = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(n_labels)]
        first = tk.encode_full("a")[0].ids[:1]
        pooling = "cls" if tokenizer.cls_token_id is not None and first == [tokenizer.cls_token_id] else "last"
        path = str(getattr(config, "_name_or_path", "") or "")
        cfg = {"family": "huggingface", "pooling": pooling, "hf_class": type(model).__name__,
               "hf_model_type": getattr(config, "model_type", None), "hf_name_or_path": path,
               "attn_implementation": getattr(config, "_attn_implementation", None), "max_len": tk.max_len}
        super().__init__(model, modality=Modality.TEXT, task=task, classes=classes,
                         name=name or (Path(path).name if path else type(model).__name__), config=cfg,
                         tokenizer=tk, embedding_layer=emb, attention_fn=self._attention_weights)

    # -- inputs -----------------------------------------------------------------------------------
    def _prepare_text(self, raw, label, index) -> Sample:
        self._check_text(raw)
        enc, special, wids = self.tokenizer.encode_full(raw)
        meta = {"special": special, "units": [k for k, s in enumerate(special) if not s],
                "words": _words(raw, enc.offsets, special, wids)}
        return self._text_sample(raw, enc, label, index, special=special, meta=meta)

    @staticmethod
    def _special_flags(sample: Sample) -> np.ndarray:
        flags = sample.meta.get("special") if isinstance(sample.meta, dict) else None
        n = int(sample.tensor.shape[0])
        return np.asarray(flags, dtype=bool) if flags is not None and len(flags) == n else np.zeros(n, bool)

    def collate(self, samples: Sequence[Sample]):
        """``(ids [N,T], (mask [N,T] bool, specials [N,T] long))``, right-padded with the padding token."""
        import torch

        samples = [self.prepare(s) for s in samples]
        if not samples:
            raise InputError("No samples were given.", "pass at least one sample.")
        t = max(int(s.tensor.shape[0]) for s in samples)
        ids = torch.full((len(samples), t), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(samples), t), dtype=torch.bool)
        specials = torch.full((len(samples), t), -1, dtype=torch.long)
        for i, s in enumerate(samples):
            x = torch.as_tensor(s.tensor)
            n = int(x.shape[0])
            ids[i, :n], mask[i, :n] = x, True
            sp = torch.from_numpy(self._special_flags(s))
            specials[i, :n] = torch.where(sp, x, torch.full_like(x, -1))
        dev = self.device
        return ids.to(dev), (mask.to(dev), specials.to(dev))

    def baseline_tensor(self, sample: Sample):
        """All padding tokens, the special tokens kept."""
        import torch

        x = torch.as_tensor(sample.tensor)
        return torch.where(torch.from_numpy(self._special_flags(sample)), x, torch.full_like(x, self.tokenizer.pad_id))

    # -- running ----------------------------------------------------------------------------------
    def forward(self, inputs, *extra):
        """Differentiable logits ``[N,K]``; special tokens are restored and their embeddings held constant."""
        import torch

        mask = extra[0] if extra else torch.ones_like(inputs, dtype=torch.bool)
        specials = extra[1] if len(extra) > 1 else None
        handle = None
        ids = inputs
        if specials is not None:
            is_special = specials >= 0
            ids = torch.where(is_special, specials, inputs)
            if bool(is_special.any()):
                handle = self._embedding.register_forward_hook(_hold_specials(ids, is_special))
        try:
            with fused_attention(self.module):
                out = self.module(input_ids=ids, attention_mask=mask.long())
        finally:
            if handle is not None:
                handle.remove()
        return self._logits(out)

    def _masked_setup(self, sample, keep, fill, groups):
        """Masked copies ``[M,T]`` (1 keeps a token, 0 puts the fill); special tokens are always kept."""
        import torch

        x = torch.as_tensor(sample.tensor)
        n = int(x.shape[0])
        if keep.shape[1] != n:
            raise ShapeError(f"A keep mask has {keep.shape[1]} columns for a sample of {n} tokens.",
                             f"pass masks of shape [M, {n}] (one column per token, sample.n_units).")
        fill_id = int(self.tokenizer.pad_id if fill is None else fill)
        special = self._special_flags(sample)
        k = (keep > 0.5) if keep.dtype != np.bool_ else keep.copy()
        k[:, special] = True
        return x, torch.full_like(x, fill_id), k, (x.numpy() != fill_id) & ~special

    def _masked_rows(self, sample, x, base, k, groups, width) -> tuple:
        """``(ids, mask, specials)`` for keep rows ``k``: the special tokens' ids, -1 elsewhere."""
        import torch

        ids, mask = super()._masked_rows(sample, x, base, k, groups, width)
        n = int(x.shape[0])
        sp = torch.full((len(k), width), -1, dtype=torch.long)
        sp[:, :n] = torch.where(torch.from_numpy(self._special_flags(sample)), x, torch.full_like(x, -1))[None]
        return ids, mask, sp

    # -- attention --------------------------------------------------------------------------------
    def _attention_weights(self, ids, mask, specials=None):
        """Softmax attention ``[N, layers, heads, T, T]`` (``output_attentions=True``)."""
        import torch

        if specials is not None:
            ids = torch.where(specials >= 0, specials, ids)
        out = self.module(input_ids=ids, attention_mask=mask.long(), output_attentions=True)
        att = getattr(out, "attentions", None)
        if not att or any(a is None for a in att):
            impl = getattr(self.module.config, "_attn_implementation", None) or "a fused kernel"
            raise ModelError(f"Model {self.name!r} returned no attention weights: it was loaded with the {impl!r} "
                             "attention implementation, which does not compute them.",
                             "load it with AutoModelForSequenceClassification.from_pretrained(<path>, "
                             "attn_implementation=\"eager\") and wrap it again.")
        return torch.stack(tuple(att), dim=1)

    def attention(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """Per-sample attention ``[layers, heads, T, T]`` over the sample's tokens (special tokens included)."""
        import torch

        ids, (mask, specials) = self.collate(samples)
        with MODEL_LOCK, torch.no_grad():
            att = self._attention_weights(ids, mask, specials)
        att = att.detach().cpu().double().numpy()
        return [att[i, :, :, :int(mask[i].sum()), :int(mask[i].sum())] for i in range(len(ids))]


@contextlib.contextmanager
def fused_attention(module):
    """Logits and gradients need no attention weights: a model loaded with eager attention (for the attention
    views) runs the fused SDPA kernel meanwhile (3-7% faster for MiniLM at 28 tokens on this CPU; the same
    numbers to float32 rounding), restored afterwards, under the model lock so that no attention view reads the
    model meanwhile. ``EXPLAINKIT_HF_ATTENTION=eager`` keeps eager throughout."""
    cfg = getattr(module, "config", None)
    was = getattr(cfg, "_attn_implementation", None)
    if was != "eager" or not getattr(module, "_supports_sdpa", False) \
            or os.environ.get("EXPLAINKIT_HF_ATTENTION", "sdpa") != "sdpa":
        yield
        return
    with MODEL_LOCK:
        cfg._attn_implementation = "sdpa"
        try:
            yield
        finally:
            cfg._attn_implementation = was


def _hold_specials(ids, is_special):
    """A forward hook on the embedding layer: special positions get their true embedding, without gradient."""
    import torch

    def hook(module, _args, output):
        if not hasattr(output, "shape") or tuple(output.shape[:2]) != tuple(ids.shape):
            return None                            # another call of the layer (e.g. a decoder): leave it
        with torch.no_grad():
            true = module.forward(ids)
        return torch.where(is_special.unsqueeze(-1), true.to(output.dtype), output)
    return hook


def wrap_hf(obj, tokenizer=None, *, classes=None, name=None, task=None) -> HFModel:
    """An :class:`HFModel` from a model and its tokenizer, or from a text-classification pipeline."""
    if hf_kind(obj) == "pipeline":
        _transformers()
        kind = str(getattr(obj, "task", "") or "")
        if kind not in ("text-classification", "sentiment-analysis"):
            raise ModelError(f"A {kind or type(obj).__name__!r} pipeline cannot be wrapped; only text "
                             "classification is supported.",
                             "build it with pipeline('text-classification', model=..., tokenizer=...).")
        if tokenizer is None:
            tokenizer = obj.tokenizer
        obj = obj.model
    return HFModel(obj, tokenizer, classes=classes, name=name, task=task)
