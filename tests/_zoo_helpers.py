"""Helpers for the model-zoo tests: the shared data folder (when present) and cached sample models."""
from __future__ import annotations

import os
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


# read at import, before any fixture points XDG_CACHE_HOME at a hermetic folder: the de-quantised weights cache
USER_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "explainkit"


def share_lm_weights(xdg_cache: Path) -> None:
    """Link the user's de-quantised SmolLM2 weights (sha256-checked on load) into a hermetic XDG cache, so a
    kernel there loads them in seconds instead of converting the GGUF again; without them it converts."""
    cache = Path(xdg_cache) / "explainkit"
    cache.mkdir(parents=True, exist_ok=True)
    for d in USER_CACHE.glob("smollm2-135m-*"):
        if d.is_dir() and (d / "manifest.json").is_file() and not (cache / d.name).exists():
            (cache / d.name).symlink_to(d, target_is_directory=True)
