"""Photos of any size for image models with a large input: resize + centre crop, and the way back.

:func:`fit_photo` turns a photo (RGB, RGBA, greyscale; uint8 0-255 or float 0-1; ``HxW``, ``HxWxC`` or
``CxHxW``) into the model's ``HxW`` grid the way torchvision's ImageNet preprocessing does: the short
side is resized to ``256/224`` times the target (bilinear, antialiased), then the centre is cropped.
The transform is returned as a plain dict (kept on ``Sample.meta["transform"]``), and
:func:`to_original` maps an attribution map on the model grid back onto the original photo's pixels,
so an overlay can be drawn on the photo the user gave.

:func:`read_photo` reads the demo photos shipped inside scikit-image and scikit-learn (from their
installed files; nothing is downloaded); ``explainkit.data.datasets.photos`` makes them a Dataset.
See ``sample_models/imagenet-efficientnet-lite0/README.md``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from explainkit.errors import DataError, MissingDependencyError, ShapeError

__all__ = ["fit_photo", "to_original", "read_photo", "PHOTOS", "LABELLED", "RESIZE_RATIO", "MIN_SIDE",
           "LARGE_SIDE", "is_large"]

RESIZE_RATIO = 256 / 224       # torchvision's ImageNet recipe: Resize(256) then CenterCrop(224)
MIN_SIDE = 8                   # smaller photos carry too little to resize meaningfully
LARGE_SIDE = 64                # models whose input is larger than 64x64 take photos of any size


def is_large(h: int, w: int) -> bool:
    """Whether an image grid counts as large (> 64x64): photo preprocessing and scaled defaults apply."""
    return int(h) * int(w) > LARGE_SIDE * LARGE_SIDE


def _as_hwc(arr: np.ndarray) -> np.ndarray:
    """``HxW``, ``HxWxC`` or ``CxHxW`` (C in 1, 3, 4) as ``HxWxC``; other channel counts are refused."""
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ShapeError(f"An image must be HxW or HxWxC; got an array of shape {arr.shape}.",
                         "pass one image: a 2-D greyscale array or an HxWx3 (RGB) / HxWx4 (RGBA) array.")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)                    # CxHxW -> HxWxC
    c = arr.shape[-1]
    if c not in (1, 3, 4):
        raise ShapeError(f"An image of shape {arr.shape} has {c} channels; photos have 1 (greyscale), "
                         "3 (RGB) or 4 (RGBA).",
                         "pass an HxW greyscale, HxWx3 RGB or HxWx4 RGBA array (for 2 channels, e.g. grey "
                         "+ alpha, pass the first channel alone).")
    return arr


def _channels(img: np.ndarray, c: int) -> np.ndarray:
    """``HxWxC`` floats to the model's channel count: RGBA drops alpha, grey repeats, RGB to luminance."""
    if img.shape[-1] == 4:
        img = img[..., :3]
    if img.shape[-1] == c:
        return img
    if c == 3:
        return np.repeat(img, 3, axis=-1)
    if c == 1:
        return (img @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]   # ITU-R 601 luma
    raise ShapeError(f"The model takes {c} channels, which a photo cannot fill.",
                     "wrap the model with input_shape=(1, H, W) or (3, H, W), or pass inputs already shaped "
                     f"({c}, H, W) at the model's size.")


def _transform(h: int, w: int, out_h: int, out_w: int) -> dict:
    side = int(min(out_h, out_w) * RESIZE_RATIO)
    if h <= w:
        new_h, new_w = side, max(out_w, int(side * w / h))
    else:
        new_w, new_h = side, max(out_h, int(side * h / w))
    new_h, new_w = max(new_h, out_h), max(new_w, out_w)
    top, left = int(round((new_h - out_h) / 2.0)), int(round((new_w - out_w) / 2.0))
    sy, sx = new_h / h, new_w / w
    return {"original_size": [h, w], "resized_size": [new_h, new_w], "scale": [sy, sx],
            "crop_box": [top, left, top + out_h, left + out_w],          # in the resized image
            "crop_box_original": [top / sy, left / sx, (top + out_h) / sy, (left + out_w) / sx],
            "size": [out_h, out_w], "interpolation": "bilinear, antialiased"}


def _resize(img: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Bilinear, antialiased resize of ``HxWxC`` floats (torch's interpolate, as torchvision's Resize)."""
    if img.shape[:2] == (new_h, new_w):
        return img
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:                                   # pragma: no cover - PIL's filter is antialiased too
        from PIL import Image
        chans = [np.asarray(Image.fromarray(img[..., i], mode="F").resize((new_w, new_h), Image.BILINEAR))
                 for i in range(img.shape[-1])]
        return np.stack(chans, axis=-1).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0)))[None]
    y = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(np.moveaxis(y[0].clamp_(0.0, 1.0).numpy(), 0, -1))


def fit_photo(img: np.ndarray, input_shape) -> tuple[np.ndarray, dict]:
    """A photo (floats in 0..1, any layout and size) on the model's grid, and the transform that did it.

    Returns ``(image, transform)``: ``image`` is ``HxW`` (one channel) or ``HxWxC`` float32 of the model's
    size. Photos under 8x8 pixels and channel counts other than 1, 3 or 4 raise :class:`ShapeError`.
    """
    c, out_h, out_w = (int(v) for v in input_shape)
    arr = _as_hwc(np.asarray(img, dtype=np.float32))
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ShapeError(f"The image is {h}x{w} pixels; at least {MIN_SIDE}x{MIN_SIDE} are needed to resize it "
                         f"to the model's {out_h}x{out_w}.", f"pass a photo of at least {MIN_SIDE}x{MIN_SIDE} pixels.")
    arr = _channels(arr, c)
    t = _transform(h, w, out_h, out_w)
    top, left, bottom, right = t["crop_box"]
    out = _resize(arr, *t["resized_size"])[top:bottom, left:right]
    out = np.ascontiguousarray(out, dtype=np.float32)
    return (out[..., 0] if c == 1 else out), t


def _axis_weights(n_out: int, scale: float, offset: int, n_in: int):
    """Per output pixel on one axis: the two model-grid indices, their weights, and whether it is inside."""
    pos = (np.arange(n_out) + 0.5) * scale - 0.5 - offset        # original pixel centre on the model grid
    inside = (pos > -0.5) & (pos < n_in - 0.5)
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (pos - lo).astype(np.float64), inside


def to_original(scores, transform: dict, fill: float = 0.0) -> np.ndarray:
    """Map an attribution map on the model's grid (``[H,W]`` or ``[C,H,W]``) onto the original photo.

    ``transform`` is ``Sample.meta["transform"]`` (or ``Explanation``'s copy of it). Returns an
    ``[h, w]`` array over the original photo's pixels: bilinear inside the centre crop, ``fill``
    (0 by default; pass ``np.nan`` to mark them) outside it, where the model saw nothing.
    """
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim == 3:
        a = a.sum(axis=0)
    size = tuple(transform["size"])
    if a.shape != size:
        raise ShapeError(f"An attribution map of shape {a.shape} does not match the transform's {size} grid.",
                         "pass the explanation's scores ([H, W] at the model's input size).")
    h, w = transform["original_size"]
    sy, sx = transform["scale"]
    top, left = transform["crop_box"][:2]
    r0, r1, rw, rin = _axis_weights(h, sy, top, size[0])
    c0, c1, cw, cin = _axis_weights(w, sx, left, size[1])
    rows = a[r0] * (1 - rw)[:, None] + a[r1] * rw[:, None]                   # [h, W]
    out = rows[:, c0] * (1 - cw)[None] + rows[:, c1] * cw[None]              # [h, w]
    out[~(rin[:, None] & cin[None])] = fill
    return out


# -- the demo photos ---------------------------------------------------------------------------------------
# name -> (package, file in the package's data folder, ImageNet class index that names the subject or None)
PHOTOS = {
    "chelsea": ("skimage", "chelsea.png", 281),            # tabby cat
    "coffee": ("skimage", "coffee.png", 967),              # espresso
    "rocket": ("skimage", "rocket.jpg", 657),              # missile
    "motorcycle": ("skimage", "motorcycle_left.png", 665),  # moped
    "astronaut": ("skimage", "astronaut.png", None),
    "camera": ("skimage", "camera.png", None),             # greyscale
    "hubble": ("skimage", "hubble_deep_field.jpg", None),
    "china": ("sklearn", "china.jpg", None),
    "flower": ("sklearn", "flower.jpg", None),
}
LABELLED = tuple(k for k, v in PHOTOS.items() if v[2] is not None)


def _photo_dir(package: str) -> Path:
    import importlib.util

    module = {"skimage": "skimage.data", "sklearn": "sklearn.datasets"}[package]
    install = {"skimage": "scikit-image", "sklearn": "scikit-learn"}[package]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(f"The demo photos need {install}, which is not installed.",
                                     f"pip install 'explainkit[vision]' (or pip install {install}).")
    base = Path(list(spec.submodule_search_locations)[0])
    return base / "images" if package == "sklearn" else base


def _read(package: str, filename: str) -> np.ndarray:
    from PIL import Image

    path = _photo_dir(package) / filename
    if not path.is_file():
        dist = "scikit-image" if package == "skimage" else "scikit-learn"
        raise DataError(f"The photo {filename} is missing from the installed {package} ({path}).",
                        f"reinstall it: pip install --force-reinstall {dist}.")
    with Image.open(path) as im:
        return np.asarray(im.convert("L" if im.mode in ("L", "I;16", "I") else "RGB"), dtype=np.uint8)


def read_photo(name: str) -> np.ndarray:
    """One demo photo (see ``PHOTOS``) as a uint8 array of its own size: ``HxWx3``, or ``HxW`` if grey."""
    from explainkit.errors import UnknownNameError

    if name not in PHOTOS:
        raise UnknownNameError(f"Unknown photo {name!r}.", f"use one of: {', '.join(PHOTOS)}.")
    return _read(*PHOTOS[name][:2])
