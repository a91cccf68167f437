"""Photos at their own size: an image explanation of a resized and centre-cropped photo, drawn on the
user's original photo.

The adapter resizes and centre-crops a photo as torchvision's ImageNet preprocessing does and records
the transform (``Sample.meta["transform"]``); the Explanation keeps it (``extras["transform"]``) and
the photo (``photo``). :func:`on_photo` maps the scores back onto the photo's own pixels
(:func:`explainkit.data.photos.to_original`; NaN where the crop cut the photo, so no colour is drawn there).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["on_photo", "drawn", "photo_rgb", "MAX_SIDE"]

MAX_SIDE = 512          # drawn photos are subsampled by a whole stride to at most this many pixels a side


def on_photo(exp, max_side: int | None = MAX_SIDE):
    """``(rgb [h, w, 3] in 0..1, scores [h, w])`` on the original photo, or None when the explanation has
    no photo and transform (MNIST digits, or a photo given at the model's own size)."""
    from explainkit.data.photos import to_original

    photo = getattr(exp, "photo", None)
    t = (getattr(exp, "extras", None) or {}).get("transform")
    s = np.asarray(exp.scores, dtype=np.float64)
    if photo is None or not t or s.ndim not in (2, 3) or tuple(s.shape[-2:]) != tuple(t["size"]):
        return None
    scores = to_original(s, t, fill=np.nan)
    img = photo_rgb(photo, max_side=None)
    if img.shape[:2] != scores.shape:
        return None
    k = _stride(img.shape, max_side)
    return img[::k, ::k], scores[::k, ::k]


def photo_rgb(pixels, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """A photo (uint8 or floats; grey, RGB or RGBA) as ``[h, w, 3]`` floats in 0..1, subsampled by a whole
    stride to at most ``max_side`` pixels a side (None: full size)."""
    img = np.asarray(pixels)
    img = img.astype(np.float64) / (255.0 if img.dtype == np.uint8 or img.max(initial=0) > 1.0 else 1.0)
    if img.ndim == 2:
        img = img[..., None]
    img = np.clip(img[..., :3] if img.shape[-1] >= 3 else np.repeat(img[..., :1], 3, axis=-1), 0.0, 1.0)
    k = _stride(img.shape, max_side)
    return img[::k, ::k]


def _stride(shape, max_side) -> int:
    return max(1, math.ceil(max(shape[:2]) / max_side)) if max_side else 1


def drawn(exp):
    """What an image view draws: ``(background, scores)``. A photo with its transform: the original photo
    in colour and the scores mapped onto it (0 outside the crop). Otherwise the model's input in grey (or
    None) and the scores as they are."""
    pic = on_photo(exp)
    if pic is not None:
        return pic[0], np.nan_to_num(pic[1], nan=0.0)
    s = np.asarray(exp.scores, dtype=np.float64)
    if exp.image is None:
        return None, s
    img = np.asarray(exp.image, dtype=np.float64)
    return (img.mean(axis=-1) if img.ndim == 3 else img), s
