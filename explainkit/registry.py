"""Public path of the plugin contract (``from explainkit.registry import registry, run_explainer``).

The contract lives in :mod:`explainkit.plugins.registry`; this module keeps the documented import path.
"""
from __future__ import annotations

import sys
import types

from explainkit.plugins.registry import (
    BUILTIN_DISTRIBUTION,
    ENTRY_POINT_GROUP,
    ENV_BLOCK,
    ENV_NO_AUTOLOAD,
    Explainer,
    ExplainerSpec,
    Param,
    Registry,
    registry,
)
from explainkit.plugins.runner import run_explainer

__all__ = ["Param", "ExplainerSpec", "Explainer", "Registry", "registry", "run_explainer", "ENTRY_POINT_GROUP",
           "BUILTIN_DISTRIBUTION", "ENV_BLOCK", "ENV_NO_AUTOLOAD"]


class _RegistryModule(types.ModuleType):
    """Importing ``explainkit.registry`` (this module) rebinds the package attribute ``explainkit.registry``
    from the function to the module; calling the module keeps ``explainkit.registry()`` working."""

    def __call__(self, refresh: bool = False) -> Registry:
        return registry(refresh)


sys.modules[__name__].__class__ = _RegistryModule
