"""The unmasked copies' outputs, kept from a masked pass so that nobody runs that pass again.

Perturbation explainers (occlusion, feature ablation, ...) put the untouched input in their own masked
batch: it is the all-kept row that every score is measured against. Whoever also needs the input's
prediction (the runner: for the target, the NaN check and the stamped probabilities) can
:func:`watch` the samples while the explainer runs, and take the outputs that the masked pass produced
instead of a forward pass of its own. On a small job that separate pass is about half of the time (a
transformer's pass costs nearly the same for 1 row as for 10).

Only :class:`~explainkit.models.torch_model.TorchModel` offers its outputs; a black box's masked path
does not, and the watcher then predicts the samples itself. What a watcher gets is exactly what
``model.predict`` gives for the row (``to_output`` of the raw output), up to the float rounding of the
batch the row was computed in.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Sequence

import numpy as np

__all__ = ["Watch", "offer", "watch"]


class Watch:
    """Outputs of the watched samples' unmasked copies, by position in ``samples`` (None: not seen)."""

    def __init__(self, model, samples: Sequence):
        self.model = model
        self._pos = {id(s): i for i, s in enumerate(samples)}
        self.outputs: list = [None] * len(samples)

    def take(self, model, samples, keeps, outs, logits: bool) -> None:
        if model is not self.model:
            return
        for s, keep, out in zip(samples, keeps, outs):
            i = self._pos.get(id(s))
            if i is None or self.outputs[i] is not None or not len(keep):
                continue
            full = np.flatnonzero((np.asarray(keep) == 1).all(axis=1))
            if full.size:
                row = np.asarray(out[full[0]])
                self.outputs[i] = model.to_output(row[None])[0] if logits else row


_WATCH: contextvars.ContextVar[Watch | None] = contextvars.ContextVar("explainkit_watch", default=None)


@contextlib.contextmanager
def watch(w: Watch) -> Iterator[Watch]:
    """Keep the outputs of ``w``'s samples' unmasked copies from its model's masked passes in this context."""
    token = _WATCH.set(w)
    try:
        yield w
    finally:
        _WATCH.reset(token)


def offer(model, samples, keeps, outs, logits: bool) -> None:
    """Called by a model's masked path with its per-sample outputs; a no-op unless someone watches."""
    w = _WATCH.get()
    if w is not None:
        w.take(model, samples, keeps, outs, logits)
