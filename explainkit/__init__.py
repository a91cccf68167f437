"""explainkit: interpret neural networks with plugin explainers, a notebook dashboard and reports.

The public names are re-exported here and imported lazily, so ``import explainkit`` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    # models
    "wrap": "models.wrap", "ModelAdapter": "models.adapter", "TorchModel": "models.torch_model",
    "FunctionModel": "models.blackbox",
    "load": "models.checkpoint", "save": "models.checkpoint",
    "load_sample": "models.zoo", "train": "models.zoo", "families": "models.zoo", "sample_models": "models.zoo",
    "Sample": "data.samples", "Dataset": "data.datasets",
    "Tokenizer": "data.tokenizer",
    # explainers
    "Explanation": "plugins.explanation", "AttentionExplanation": "plugins.explanation",
    "Explanations": "plugins.explanation",
    "ExplainerSpec": "plugins.registry", "Param": "plugins.registry", "Explainer": "plugins.registry",
    "registry": "plugins.registry",
    "explain": "plugins.api", "explainers": "plugins.api",
    # constants
    "Modality": "enums", "Task": "enums", "Capability": "enums", "ResultKind": "enums",
    # views, reports and trust
    "Dashboard": "views.dashboard", "report": "reports.report", "Report": "reports.report",
    "evaluate": "trust.quality", "Quality": "trust.quality",
}
# public modules kept at their old paths (thin re-exports of the layer modules)
_MODULES = {"datasets", "errors", "testing", "quality"}

__all__ = sorted(set(_LAZY) | _MODULES | {"__version__"})


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'explainkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
