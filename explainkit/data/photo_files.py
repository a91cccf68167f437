"""The user's own photo files: one file or a folder of them, read as an unlabelled image Dataset.

``load_photos(path, model)`` is what a data path that names photos resolves to (``explainkit.data.files``);
each photo keeps its own size and mode, and the model resizes and centre-crops it
(:func:`explainkit.data.photos.fit_photo`). Kept apart from :mod:`explainkit.data.photos`, which
:mod:`explainkit.data.datasets` imports, so that this module may import ``datasets`` without a cycle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from explainkit.errors import DataError

__all__ = ["load_photos", "read_photo_file", "is_photo_path", "PHOTO_SUFFIXES", "MAX_PIXELS", "MAX_FILES"]

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 100_000_000       # a larger file is refused from its header, before it is decoded
MAX_FILES = 10_000             # photos one folder may hold


def is_photo_path(path) -> bool:
    """A photo file (by suffix), or a folder that holds at least one: what :func:`load_photos` reads."""
    p = Path(path)
    if p.is_file():
        return p.suffix.lower() in PHOTO_SUFFIXES
    return p.is_dir() and any(f.suffix.lower() in PHOTO_SUFFIXES for f in p.iterdir() if f.is_file())


def read_photo_file(path) -> np.ndarray:
    """A photo file as a uint8 array of its own size (``HxW`` grey, ``HxWx3`` RGB or ``HxWx4`` RGBA)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise DataError(f"{p.name} is {w}x{h} pixels, over the limit of {MAX_PIXELS:,} pixels.",
                                "pass a smaller photo (the model sees it at 224x224 anyway).")
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):        # 16-bit or float grey: scale to 0..255
                a = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") else max(float(a.max(initial=0)), 1.0)
                return np.clip(a / top * 255.0, 0, 255).astype(np.uint8)
            mode = {"L": "L", "LA": "RGBA", "RGBA": "RGBA", "PA": "RGBA"}.get(im.mode, "RGB")
            if im.mode == "P" and "transparency" in im.info:
                mode = "RGBA"
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{p.name} could not be read as a photo ({type(e).__name__}: {str(e)[:160]}).",
                        f"pass a readable image file ({', '.join(PHOTO_SUFFIXES)}).") from None


def load_photos(path, model=None):
    """A photo file or a folder of photos (non-recursive, sorted by name) as an unlabelled image Dataset.

    Each photo keeps its own size and mode; the model resizes and centre-crops it. ``data.photo_names``
    lists the files' names. A folder without photos, or a file that is not one, raises :class:`DataError`.
    """
    from explainkit.data.datasets import Dataset
    from explainkit.enums import Modality

    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in PHOTO_SUFFIXES)
        if not files:
            raise DataError(f"The folder {str(p)!r} holds no photos.",
                            f"put image files ({', '.join(PHOTO_SUFFIXES)}) in it, or pass one photo file.")
        if len(files) > MAX_FILES:
            raise DataError(f"The folder {str(p)!r} holds {len(files):,} photos, over the limit of {MAX_FILES:,}.",
                            "split them into smaller folders.")
    elif p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES:
        files = [p]
    else:
        raise DataError(f"{str(p)!r} is neither a photo file nor a folder of photos.",
                        f"pass a file ending in one of {', '.join(PHOTO_SUFFIXES)}, or a folder of them.")
    classes = getattr(model, "classes", None)
    data = Dataset([read_photo_file(f) for f in files], None, modality=Modality.IMAGE,
                   class_names=list(classes) if classes else None, name=p.stem or p.name)
    data.photo_names = [f.name for f in files]
    return data
