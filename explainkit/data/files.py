"""Load user data files for a model: an MNIST directory, an SST-2 folder, a TSV or CSV file, an .npz file, or
(for an image model) a photo file or a folder of photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import DataError

__all__ = ["load_path"]

_LABELS = ("label", "labels", "target", "y")
_TEXTS = ("sentence", "text")


def load_path(spec, model):
    """A Dataset for ``model`` from a file or directory path (format chosen by what is there)."""
    from explainkit.data import datasets

    data = _load(Path(spec), model)
    if data.labels is not None and model.task is Task.CLASSIFICATION and model.classes:
        datasets.check_labels(data.labels, len(model.classes), f"{Path(spec).name} for model {model.name!r}",
                              model.classes)
    return data


def _load(p: Path, model):
    from explainkit.data import datasets, photo_files

    if not p.exists():
        raise DataError(f"No data at {str(p)!r}.",
                        "pass 'sample', an MNIST directory, a .tsv/.csv file, an .npz file or a photo.")
    if getattr(model, "modality", None) is Modality.IMAGE and photo_files.is_photo_path(p):
        return photo_files.load_photos(p, model)          # each at its own size; the model's prepare resizes
    if p.is_dir():
        if any(p.glob("*-images-idx3-ubyte*")) or (p / "mnist").is_dir():
            data = datasets.load_mnist(p, "heldout")
            # the held-out protocol (images 8000-9999) is for the standard 10k test set; a smaller
            # IDX folder of the user's own is taken whole
            return _named(data if len(data) else datasets.load_mnist(p, "all"), model)
        if (p / "dev.tsv").is_file() or (p / "sst2").is_dir():
            return _named(datasets.load_sst2(p, "dev"), model)
        raise DataError(f"{str(p)!r} holds neither MNIST IDX files nor an SST-2 dev.tsv.",
                        "pass the folder with t10k-images-idx3-ubyte[.gz], or a data file.")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _npz(p, model)
    if suffix in (".tsv", ".csv", ".txt"):
        return _table(p, model, "\t" if suffix == ".tsv" else ",")
    raise DataError(f"Unsupported data file type {suffix!r} ({p.name}).",
                    "use .npz, .tsv or .csv" + (", or a photo (" + ", ".join(photo_files.PHOTO_SUFFIXES) + ")"
                                                 if getattr(model, "modality", None) is Modality.IMAGE else "") + ".")


def _named(data, model):
    if model.classes and data.class_names is None:
        data.class_names = list(model.classes)
    return data


MAX_ARRAY_BYTES = 2 << 30      # 2 GiB per array in a user's .npz, checked from its header before loading


def _check_npz_headers(p: Path) -> None:
    """Read each array's header (shape, dtype) without its data; refuse one over MAX_ARRAY_BYTES."""
    import math
    import zipfile

    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    major, _ = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                size = math.prod(shape) * dtype.itemsize
                if size > MAX_ARRAY_BYTES:
                    raise DataError(f"{p.name}: array {info.filename[:-4]!r} claims shape {shape} of {dtype} "
                                    f"({size / 2**30:,.1f} GiB), over the limit of {MAX_ARRAY_BYTES >> 30} GiB.",
                                    "pass a smaller file (split the data), or check that the file is not damaged.")
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{p.name} is not a readable .npz file ({type(e).__name__}: {e}).",
                        "save it with numpy.savez(path, images=..., labels=...) (no object arrays).") from None


def _npz(p: Path, model):
    from explainkit.data.datasets import Dataset

    _check_npz_headers(p)
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{p.name} is not a readable .npz file ({e}).",
                        "save it with numpy.savez(path, images=..., labels=...) (no object arrays).") from None
    keys = {"image": ("images", "x", "X"), "text": ("texts", "sentences", "x", "X"),
            "tabular": ("X", "x", "features", "rows")}[model.modality.value]
    xk = next((k for k in keys if k in arrays), None)
    if xk is None:
        raise DataError(f"{p.name} has arrays {sorted(arrays)}; none holds the inputs.",
                        f"name the input array one of {list(keys)} (and the labels 'labels' or 'y').")
    x = arrays[xk]
    if x.ndim == 0 or x.dtype.kind not in "biufUS":
        raise DataError(f"{p.name}: array {xk!r} is a {x.ndim}-d {x.dtype} array, not a stack of inputs.",
                        "store the inputs as one array with one row per input (e.g. images [N, 28, 28]).")
    yk = next((k for k in ("labels", "y", "targets", "target") if k in arrays), None)
    y = arrays[yk] if yk else None
    if y is not None and (y.ndim != 1 or y.dtype.kind not in "biuf"):
        raise DataError(f"{p.name}: labels {yk!r} are a {y.ndim}-d {y.dtype} array.",
                        "store one numeric label per input, as a 1-d array.")
    if model.modality is Modality.TEXT:
        x = [str(t) for t in x]
    if y is not None and len(y) != len(x):
        raise DataError(f"{p.name}: {len(x)} inputs but {len(y)} labels.", "store one label per input.")
    return Dataset(x, y, modality=model.modality, class_names=model.classes,
                   feature_names=model.feature_names if model.modality is Modality.TABULAR else None,
                   name=p.stem, target_name=model.target_name if model.task is Task.REGRESSION else None)


def _table(p: Path, model, sep: str):
    from explainkit.data import datasets

    try:
        import pandas as pd
    except ImportError:
        from explainkit.errors import MissingDependencyError
        raise MissingDependencyError("Reading CSV/TSV data needs pandas.", "pip install pandas") from None
    try:
        df = pd.read_csv(p, sep=sep, quoting=3 if sep == "\t" else 0, keep_default_na=False)
    except UnicodeDecodeError as e:
        raise DataError(f"{p.name} is not UTF-8 text (byte {e.start}: {e.reason}).",
                        "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"Cannot parse {p.name}: {e}.", f"write a header row and {sep!r}-separated columns.") from None
    cols = {str(c).strip().lower(): c for c in df.columns}
    lab = next((cols[c] for c in _LABELS if c in cols), None)
    y = None
    if lab is not None:
        y = df[lab].to_numpy()
        y = y.astype(np.float64) if model.task is Task.REGRESSION else _class_ids(y, model, p)
    if model.modality is Modality.TEXT:
        tk = next((cols[c] for c in _TEXTS if c in cols), None)
        if tk is None:
            raise DataError(f"{p.name} has no 'sentence' or 'text' column.", "name the text column 'sentence'.")
        return datasets.from_texts([str(t) for t in df[tk]], y, class_names=model.classes, name=p.stem)
    if model.modality is not Modality.TABULAR:
        raise DataError(f"A {sep!r}-separated file cannot hold images for {model.name!r}.",
                        "pass an MNIST directory or an .npz with an 'images' array.")
    want = list(model.feature_names or [])
    missing = [f for f in want if f not in df.columns]
    if missing:
        raise DataError(f"{p.name} lacks the model's feature column(s) {missing[:5]}.",
                        f"give it columns named {want[:4]}… (any order) plus an optional 'label'.")
    try:
        x = df[want].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{p.name} has non-numeric feature values.", "encode every feature as a number.") from None
    return datasets.Dataset(x, y, modality=Modality.TABULAR, class_names=model.classes, feature_names=want,
                            name=p.stem, target_name=model.target_name if model.task is Task.REGRESSION else None)


def _class_ids(y, model, p):
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    names = {str(c): i for i, c in enumerate(model.classes or [])}
    try:
        return np.asarray([names[str(v)] if str(v) in names else int(v) for v in y], dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{p.name} has labels that are neither class indices nor class names.",
                        f"use 0..{len(names) - 1} or one of {list(names)[:5]}.") from None
