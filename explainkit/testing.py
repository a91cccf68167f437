"""Public path of the plugin conformance harness (``from explainkit.testing import check_explainer``).

The harness lives in :mod:`explainkit.plugins.conformance`; this module keeps the documented import path.
"""
from explainkit.plugins.conformance import (
                                            CHEAP_N,
                                            Check,
                                            CheckReport,
                                            CheckRow,
                                            Status,
                                            check_explainer,
                                            empty_registry,
                                            registry_with,
)

__all__ = ["check_explainer", "CheckReport", "CheckRow", "Check", "Status", "empty_registry", "registry_with",
           "CHEAP_N"]
