"""Helpers for the model-zoo tests: the shared data folder (when present) and cached sample models."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "sst2").is_dir(),
                                  reason="../shared/data is not available")


@lru_cache(maxsize=None)
def sample(name: str):
    """A shipped sample model, loaded once per test session through the public API."""
    import explainkit
    return explainkit.load_sample(name)


@lru_cache(maxsize=None)
def data(name: str):
    from explainkit.data import datasets
    return datasets.sample_data(name)
