"""Shared fixtures: the shipped sample models and data, loaded once per session through the public API."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

SAMPLES = ["mnist-mlp", "mnist-cnn", "sst2-lstm", "sst2-transformer", "breast-cancer-mlp", "diabetes-mlp"]


@pytest.fixture(scope="session")
def load_model():
    """load_model('mnist-cnn') -> the shipped sample model (cached for the session)."""
    import explainkit

    cache = {}

    def _load(name):
        if name not in cache:
            cache[name] = explainkit.load_sample(name)
        return cache[name]

    return _load


@pytest.fixture(scope="session")
def load_data():
    """load_data('mnist-cnn') -> the shipped held-out data for a family (cached)."""
    from explainkit.data import datasets

    cache = {}

    def _load(name):
        if name not in cache:
            cache[name] = datasets.sample_data(name)
        return cache[name]

    return _load


@pytest.fixture(scope="session")
def mnist_cnn(load_model):
    return load_model("mnist-cnn")


@pytest.fixture(scope="session")
def mnist_mlp(load_model):
    return load_model("mnist-mlp")


@pytest.fixture(scope="session")
def sst2_lstm(load_model):
    return load_model("sst2-lstm")


@pytest.fixture(scope="session")
def sst2_transformer(load_model):
    return load_model("sst2-transformer")


@pytest.fixture(scope="session")
def breast_cancer(load_model):
    return load_model("breast-cancer-mlp")


@pytest.fixture(scope="session")
def diabetes(load_model):
    return load_model("diabetes-mlp")


@pytest.fixture(scope="module")
def lm(load_model):
    """SmolLM2-135M-Instruct (the llm extra), loaded once per session; one torch thread while a module uses
    it: on a shared 2-core machine two threads competing with other processes ran 10x slower."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model("smollm2-135m")
    torch.set_num_threads(threads)
