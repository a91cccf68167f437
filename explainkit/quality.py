"""Public path of the trust metrics (``explainkit.quality.assess``, ``explainkit.quality.agreement``).

They live in :mod:`explainkit.trust.quality`; this module keeps the documented import path.
"""
from explainkit.trust.quality import (
                                      DEFAULT_METRICS,
                                      MARGIN,
                                      Agreement,
                                      Evaluation,
                                      Metric,
                                      Quality,
                                      agreement,
                                      assess,
                                      evaluate,
)

__all__ = ["Metric", "Quality", "Evaluation", "Agreement", "assess", "evaluate", "agreement", "DEFAULT_METRICS",
           "MARGIN"]
