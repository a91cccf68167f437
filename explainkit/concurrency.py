"""One lock for computing with models, shared by every thread of the process.

The dashboard explains in a background thread while the notebook's own cells explain in the main
one. Explainers attach hooks to the model's modules (captum's layer methods record activations
through forward hooks), and a hook fires for every thread's forward pass, so two computations on one
model at the same time could read each other's activations. :func:`explainkit.registry.run_explainer`
and :class:`explainkit.torch_model.TorchModel`'s no-grad predictions hold this re-entrant lock, so such
computations take turns instead. It costs well under a microsecond when no other thread holds it.
"""
from __future__ import annotations

import threading

__all__ = ["MODEL_LOCK"]

MODEL_LOCK = threading.RLock()
