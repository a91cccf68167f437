"""A word tokenizer whose tokens map back to character spans of the original text, and its vocabulary."""
from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from explainkit.errors import InputError, ParameterError

__all__ = ["Tokenizer", "Encoding", "PAD", "UNK", "MAX_LEN_CAP", "MAX_TEXT_CHARS"]

PAD, UNK = "<pad>", "<unk>"
MAX_LEN_CAP = 16_384             # tokens per text: every model here attends over at most a few thousand
MAX_TEXT_CHARS = 5_000_000       # characters per text (5 MB): past this a text is a file, not an input
_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?|'[A-Za-z]+|[^\sA-Za-z0-9]")


@dataclass
class Encoding:
    """Token ids with the token strings and their (start, end) character offsets in the text."""
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    truncated: bool = False


class Tokenizer:
    """Lower-casing word/punctuation tokenizer with a fixed vocabulary (``<pad>`` = 0, ``<unk>`` = 1)."""

    def __init__(self, vocab: list[str], lowercase: bool = True, max_len: int = 128):
        if vocab[:2] != [PAD, UNK]:
            vocab = [PAD, UNK] + [w for w in vocab if w not in (PAD, UNK)]
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.lowercase = lowercase
        self.max_len = check_max_len(max_len)

    pad_id = 0
    unk_id = 1

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"<Tokenizer vocab={len(self.vocab)} max_len={self.max_len}>"

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 10000, min_freq: int = 1,
              lowercase: bool = True, max_len: int = 128) -> "Tokenizer":
        """Build the vocabulary from the most frequent tokens (ties broken alphabetically: deterministic)."""
        counts: Counter = Counter()
        for t in texts:
            counts.update(w.lower() if lowercase else w for w, _, _ in cls.split(t))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([PAD, UNK] + words[: max_size - 2], lowercase=lowercase, max_len=max_len)

    @staticmethod
    def split(text: str) -> list[tuple[str, int, int]]:
        """Split text into (token, start, end) with character offsets into ``text``."""
        return [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]

    @staticmethod
    def count(text: str) -> int:
        """How many tokens ``text`` splits into (without building them)."""
        return sum(1 for _ in _WORD.finditer(text))

    def encode(self, text: str, max_len: int | None = None) -> Encoding:
        """Token ids, tokens as written in ``text``, and offsets; truncated to ``max_len``.

        Only the first ``max_len`` + 1 tokens are ever built, so memory is bounded by ``max_len``."""
        limit = self.max_len if max_len is None else check_max_len(max_len)
        check_text_size(text)
        parts = [(m.group(0), m.start(), m.end()) for m in itertools.islice(_WORD.finditer(text), limit + 1)]
        truncated = len(parts) > limit
        parts = parts[:limit]
        ids = [self.index.get(w.lower() if self.lowercase else w, self.unk_id) for w, _, _ in parts]
        return Encoding(ids, [w for w, _, _ in parts], [(s, e) for _, s, e in parts], truncated)

    def to_config(self) -> dict:
        return {"type": "word", "vocab": self.vocab, "lowercase": self.lowercase, "max_len": self.max_len}

    @classmethod
    def from_config(cls, cfg: dict) -> "Tokenizer":
        return cls(list(cfg["vocab"]), lowercase=bool(cfg.get("lowercase", True)),
                   max_len=cfg.get("max_len", 128))


def check_max_len(max_len) -> int:
    """``max_len`` as an int in 1..MAX_LEN_CAP, else one ParameterError with the range."""
    if isinstance(max_len, bool) or not isinstance(max_len, (int, float, str)):
        raise ParameterError(f"max_len must be a whole number of tokens; got {max_len!r}.",
                             f"pass max_len between 1 and {MAX_LEN_CAP}.")
    try:
        value = int(max_len)
    except ValueError:
        raise ParameterError(f"max_len must be a whole number of tokens; got {max_len!r}.",
                             f"pass max_len between 1 and {MAX_LEN_CAP}.") from None
    if not 1 <= value <= MAX_LEN_CAP:
        raise ParameterError(f"max_len {value} is outside 1..{MAX_LEN_CAP} tokens.",
                             f"pass max_len between 1 and {MAX_LEN_CAP}; longer texts are truncated to it.")
    return value


def check_text_size(text: str) -> None:
    """A text over MAX_TEXT_CHARS characters is refused before it is split."""
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"The text has {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}.",
                         "pass the passage to explain, not a whole file (split long documents).")
