"""explainkit: interpret neural networks with plugin explainers, a notebook dashboard and reports.

The public names are re-exported here and imported lazily, so ``import explainkit`` stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    # models
    "wrap": "adapters", "ModelAdapter": "adapters", "TorchModel": "adapters", "FunctionModel": "adapters",
    "load": "checkpoint", "save": "checkpoint",
    "load_sample": "zoo", "train": "zoo", "families": "zoo", "sample_models": "zoo",
    "Sample": "samples", "Dataset": "datasets",
    "Tokenizer": "text",
    # explainers
    "Explanation": "explanation", "AttentionExplanation": "explanation", "Explanations": "explanation",
    "ExplainerSpec": "registry", "Param": "registry", "Explainer": "registry", "registry": "registry",
    "explain": "api", "explainers": "api",
    # constants
    "Modality": "enums", "Task": "enums", "Capability": "enums", "ResultKind": "enums",
    # views, reports and trust
    "Dashboard": "dashboard", "report": "report", "Report": "report",
    "evaluate": "quality", "Quality": "quality",
}
_MODULES = {"datasets", "errors", "testing"}

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
