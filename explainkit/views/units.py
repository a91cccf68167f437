"""Which units a text view shows: the model's sub-word pieces, or words (the sums of their pieces).

Every text view (the static HTML and PNG in :mod:`explainkit.views.render`, the dashboard's view) draws
an Explanation through :func:`shown`: in ``pieces`` mode the tokens the explainer scored, without the
unscored special tokens ([CLS], [SEP]); in ``words`` mode one unit per word, scored with the sum of its
pieces (:meth:`Explanation.by_words`) and placed on the word's characters in the user's original text.
The switch matters only where some word is several pieces (:func:`has_words`).
"""
from __future__ import annotations

import copy

import numpy as np

from explainkit.enums import Modality, ResultKind, _StrEnum

__all__ = ["Units", "has_words", "shown"]


class Units(_StrEnum):
    """The units of a text view."""
    PIECES = "pieces"        # the model's tokens (word pieces), as scored
    WORDS = "words"          # whole words: the sum of their pieces


def has_words(exp) -> bool:
    """Whether a words view differs from the pieces view (some word is several pieces)."""
    return exp.modality is Modality.TEXT and exp.kind is not ResultKind.ATTENTION and bool(
        getattr(exp, "has_pieces", False))


def shown(exp, units="pieces"):
    """A shallow copy of a text Explanation holding only the units a view draws (tokens, offsets, scores).

    Pieces: the scored tokens (special tokens left out). Words: one token per word, its characters as
    the label and its span as the offsets. Other modalities, and attention maps, come back unchanged."""
    units = Units.parse(units)
    if exp.modality is not Modality.TEXT or exp.kind is ResultKind.ATTENTION or exp.scores.ndim != 1:
        return exp
    if units is Units.WORDS and exp.words is not None:
        ws = exp.by_words()
        return _copy(exp, [w.word for w in ws], [(w.start, w.end) for w in ws], [w.score for w in ws])
    if not exp.unscored:
        return exp
    skip = set(exp.unscored)
    keep = [k for k in range(len(exp.scores)) if k not in skip]
    tokens = exp.tokens or [str(k) for k in range(len(exp.scores))]
    offsets = [exp.offsets[k] for k in keep] if exp.offsets is not None else None
    return _copy(exp, [tokens[k] for k in keep], offsets, exp.scores[keep])


def _copy(exp, tokens, offsets, scores):
    out = copy.copy(exp)
    out.tokens, out.offsets = list(tokens), None if offsets is None else [tuple(o) for o in offsets]
    out.scores = np.asarray(scores, dtype=np.float64)
    out.words, out.unscored, out.attributions, out.errors = None, None, None, None   # (per-piece errors do not sum)
    return out
