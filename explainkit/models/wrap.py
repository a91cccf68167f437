"""wrap(): any torch module or predict function becomes a model adapter, checked by one probe pass."""
from __future__ import annotations

import math

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import ModelError, ShapeError
from explainkit.models.adapter import ModelAdapter
from explainkit.models.blackbox import FunctionModel
from explainkit.models.torch_model import TorchModel

__all__ = ["wrap"]


def wrap(model, *, modality=None, task="classification", classes=None, feature_names=None, name=None,
         input_shape=None, tokenizer=None, normalize=None, standardize=None, background=None,
         embedding_layer=None, conv_layer=None, attention_fn=None, example=None) -> ModelAdapter:
    """Wrap any torch module, or a black-box predict function, and probe it once.

    A module must map a batch to ``[N, K]`` outputs: images ``[N,C,H,W]`` floats (``input_shape`` =
    ``(C,H,W)``), token ids ``[N,T]`` plus a padding mask (text), features ``[N,F]`` (tabular).
    A function takes a batch of raw inputs and returns probabilities (classification) or values.
    One probe forward pass checks shapes and dtypes now, so a mismatch is reported at wrap time.

    A Hugging Face ``*ForSequenceClassification`` model (with ``tokenizer=`` its fast tokenizer) or a
    text-classification pipeline needs nothing else: see :mod:`explainkit.models.hf` (modality text).
    """
    hf = _hf_kind(model)
    if hf == "model" and tokenizer is not None:
        from explainkit.models.causal_lm import CausalLM, is_causal_lm
        if is_causal_lm(model):              # a causal LM + its tokenizer: explained per generated token
            return CausalLM(model, tokenizer, name=name)
    if hf in ("model", "pipeline"):
        if modality is not None and Modality.parse(modality) is not Modality.TEXT:
            raise ModelError(f"A Hugging Face sequence classifier is a text model, not {modality!r}.",
                             "omit modality= (or pass modality='text').")
        from explainkit.models.hf import wrap_hf

        adapter = wrap_hf(model, tokenizer, classes=classes, name=name,
                          task=None if task == "classification" and classes is None else task)
        _probe(adapter, "a probe sentence" if example is None else example)
        return adapter
    if modality is None:
        raise ModelError(f"wrap() cannot tell what a {type(model).__name__} takes.",
                         "pass modality='image', 'text' or 'tabular'.")
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


def _hf_kind(model) -> str | None:
    """'model' or 'pipeline' for a transformers object (read from its classes; transformers is not imported)."""
    if not any(c.__module__.split(".")[0] == "transformers" for c in type(model).__mro__):
        return None
    from explainkit.models.hf import hf_kind

    return hf_kind(model)


def _probe(adapter: ModelAdapter, example) -> None:
    """Run one forward pass on an example (or a synthetic input) and check the output shape."""
    if example is None:
        if adapter.modality is Modality.IMAGE:
            c, h, w = adapter.input_shape
            example = np.zeros((h, w) if c == 1 else (h, w, c), dtype=np.uint8)
        elif adapter.modality is Modality.TEXT:
            vocab = getattr(adapter.tokenizer, "vocab", [])
            example = vocab[2] if isinstance(vocab, (list, tuple)) and len(vocab) > 2 and str(vocab[2]).strip() \
                else "probe"
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
