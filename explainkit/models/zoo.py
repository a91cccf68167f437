"""The model zoo: training a family, the shipped sample models, and their held-out evaluation."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import DataError, UnknownNameError
from explainkit.models.families import _FAMILIES, MNIST_NORMALIZE, Family, _tokenizer_class, families, get_family  # noqa: F401

__all__ = ["Family", "families", "get_family", "train", "load_sample", "sample_models", "evaluate_model",
           "sample_models_dir", "evaluate_samples"]

# -- data for training ------------------------------------------------------------------------------

def default_data_dir() -> Path | None:
    """``$EXPLAINKIT_DATA_DIR``, else ``../shared/data`` next to the repository, if it exists."""
    env = os.environ.get("EXPLAINKIT_DATA_DIR")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[3] / "shared" / "data"
    return guess if guess.is_dir() else None


def _splits(fam: Family, data_dir):
    from explainkit.data import datasets

    if fam.data in ("breast-cancer", "diabetes"):
        load = datasets.breast_cancer if fam.data == "breast-cancer" else datasets.diabetes
        return load("train"), load("heldout")
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    if d is None:
        raise DataError(f"No data directory for {fam.name}.",
                        "pass data_dir= (or --data-dir) pointing at the MNIST IDX files / SST-2 TSVs.")
    if fam.data == "mnist":
        return datasets.load_mnist(d, "train"), datasets.load_mnist(d, "heldout")
    return datasets.load_sst2(d, "train"), datasets.load_sst2(d, "dev")


def _tensors(fam: Family, data, cfg: dict, tokenizer=None):
    """Model-ready tensors for a whole Dataset (the same preprocessing as TorchModel.prepare)."""
    import torch

    if fam.modality is Modality.IMAGE:
        x = torch.from_numpy(data.raws.astype(np.float32) / 255.0).unsqueeze(1)
        x = (x - cfg["normalize"]["mean"][0]) / cfg["normalize"]["std"][0]
        return (x,), torch.from_numpy(data.labels.astype(np.int64))
    if fam.modality is Modality.TEXT:
        t = int(cfg["hparams"]["max_len"])
        ids = torch.zeros((len(data), t), dtype=torch.long)
        lengths = torch.zeros(len(data), dtype=torch.long)
        for i, text in enumerate(data.raws):
            enc = tokenizer.encode(text, max_len=t).ids or [tokenizer.unk_id]
            ids[i, :len(enc)] = torch.tensor(enc)
            lengths[i] = len(enc)
        mask = torch.arange(t)[None] < lengths[:, None]
        return (ids, mask), torch.from_numpy(data.labels.astype(np.int64))
    st = cfg["standardize"]
    x = torch.from_numpy(((data.raws - np.asarray(st["mean"])) / np.asarray(st["std"])).astype(np.float32))
    y = data.labels.astype(np.int64 if fam.task is Task.CLASSIFICATION else np.float32)
    return (x,), torch.from_numpy(y)


def _score(fam: Family, raw_out, y) -> float:
    if fam.task is Task.CLASSIFICATION:
        return float((raw_out.argmax(dim=1) == y).float().mean())
    pred, y = raw_out.reshape(-1).double().numpy(), y.double().numpy()
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def train(family: str, data_dir=None, out=None, epochs: int | None = None, seed: int = 0, progress: bool = True,
          **overrides):
    """Train a family with a fixed seed, print its held-out metric, save a checkpoint to ``out`` if given.

    ``overrides`` replace hyper-parameters or training settings (e.g. ``max_train=2000``).
    """
    from explainkit import __version__  # noqa: F401 - (versions are stamped by checkpoint.save)
    from explainkit.models.torch_model import TorchModel
    from explainkit.models.training import deterministic, fit, predict_raw

    fam = get_family(family)
    hp = {**fam.hparams, **{k: v for k, v in overrides.items() if k in fam.hparams}}
    tr = {**fam.train, **{k: v for k, v in overrides.items() if k in fam.train}}
    unknown = set(overrides) - set(hp) - set(tr)
    if unknown:
        raise UnknownNameError(f"Unknown setting(s) {sorted(unknown)} for {family}.",
                               f"use: {', '.join(sorted(set(hp) | set(tr)))}.")
    if epochs is not None:
        tr["epochs"] = int(epochs)
    train_data, held = _splits(fam, data_dir)
    if fam.metric == "confident_fraction":              # a GAN: adversarial training, judged by mnist-cnn
        from explainkit.models.gan import train_family
        model = train_family(fam, train_data, held, hp, tr, judge=load_sample("mnist-cnn"),
                             normalize=MNIST_NORMALIZE, seed=seed, progress=progress)
        if out is not None:
            from explainkit.models.checkpoint import save
            save(model, out)
        return model
    cfg: dict = {"family": fam.name, "name": fam.name, "modality": fam.modality.value, "task": fam.task.value,
                 "description": fam.description}
    tokenizer = None
    if fam.modality is Modality.IMAGE:
        cfg.update(classes=train_data.class_names, input_shape=[1, 28, 28], normalize=MNIST_NORMALIZE)
    elif fam.modality is Modality.TEXT:
        n = int(tr.get("max_train") or len(train_data))
        if n < len(train_data):                         # a fixed, seeded subset of the training phrases
            train_data = train_data.subset(np.sort(np.random.default_rng(seed).permutation(len(train_data))[:n]))
        tokenizer = _make_tokenizer(fam, hp, train_data.raws)
        hp["vocab_size"] = len(tokenizer) if hasattr(tokenizer, "__len__") else hp.get("vocab_size")
        cfg.update(classes=train_data.class_names, tokenizer=tokenizer.to_config())
    else:
        mean, std = train_data.raws.mean(axis=0), train_data.raws.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        cfg.update(feature_names=train_data.feature_names,
                   standardize={"mean": mean.tolist(), "std": std.tolist()})
        if fam.task is Task.CLASSIFICATION:
            cfg["classes"] = train_data.class_names
        else:
            cfg["target_name"] = train_data.target_name
    cfg["hparams"] = hp
    if fam.extra_config is not None:
        cfg.update(fam.extra_config(hp))
    start = time.perf_counter()
    with deterministic(seed):
        module = fam.build(cfg)
        xs, y = _tensors(fam, train_data, cfg, tokenizer)
        text = fam.modality is Modality.TEXT
        log = fit(module, xs, y, loss="cross_entropy" if fam.task is Task.CLASSIFICATION else "mse",
                  epochs=tr["epochs"], batch_size=tr["batch_size"], lr=tr["lr"],
                  weight_decay=tr.get("weight_decay", 0.0), seed=seed, progress=progress, desc=fam.name,
                  trim_text=text, clip=tr.get("clip"))
        hx, hy = _tensors(fam, held, cfg, tokenizer)
        score = _score(fam, predict_raw(module, hx, trim_text=text), hy)
    cfg["metrics"] = {fam.metric: round(score, 4), "heldout": held.name, "n_heldout": len(held)}
    cfg["training"] = {**tr, "seed": seed, "n_train": len(train_data), "train_loss": log["train_loss"],
                       "seconds": round(time.perf_counter() - start, 1)}
    model = TorchModel(module, modality=fam.modality, task=fam.task, classes=cfg.get("classes"),
                       feature_names=cfg.get("feature_names"), name=fam.name, config=cfg,
                       input_shape=cfg.get("input_shape"), tokenizer=tokenizer, normalize=cfg.get("normalize"),
                       standardize=cfg.get("standardize"), target_name=cfg.get("target_name"))
    if progress:
        print(f"{fam.name}: held-out {fam.metric} {score:.4f} on {held.name} (n={len(held)}), "
              f"floor {fam.floor}, {cfg['training']['seconds']} s")
    if out is not None:
        from explainkit.models.checkpoint import save
        save(model, out)
    return model


def _make_tokenizer(fam: Family, hp: dict, texts):
    if fam.tokenizer_type != "word":                   # a pretrained tokenizer: nothing to build from texts
        return _tokenizer_class(fam.tokenizer_type).from_config({"type": fam.tokenizer_type, **hp})
    from explainkit.data.tokenizer import Tokenizer
    return Tokenizer.build(texts, max_size=int(hp["vocab_size"]), max_len=int(hp["max_len"]))


# -- evaluation and the shipped sample models --------------------------------------------------------

def evaluate_model(model, dataset, batch_size: int = 256) -> dict:
    """Held-out metric of a model on a labelled Dataset: accuracy (classification) or R² and MAE (regression)."""
    if dataset.labels is None:
        raise DataError(f"{dataset!r} has no labels to evaluate against.", "pass a labelled dataset.")
    raws = list(dataset.raws)
    order = np.arange(len(raws))
    if model.modality is Modality.TEXT:                 # batch similar lengths together: far less padding
        order = np.argsort([len(r) for r in raws], kind="stable")
    sorted_pred = model.predict([raws[i] for i in order], batch_size=batch_size)
    pred = np.empty_like(sorted_pred)
    pred[order] = sorted_pred
    y = dataset.labels
    if model.task is Task.CLASSIFICATION:
        return {"accuracy": float((pred.argmax(axis=1) == y).mean()), "n": len(y)}
    y = y.astype(np.float64)
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    return {"r2": float(r2), "mae": float(np.abs(y - pred).mean()), "n": len(y)}


def sample_models_dir() -> Path:
    """Where the sample checkpoints live: ``$EXPLAINKIT_SAMPLE_MODELS`` or ``<repo>/sample_models``."""
    env = os.environ.get("EXPLAINKIT_SAMPLE_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "sample_models"


def _sample_names() -> list[str]:
    d = sample_models_dir()
    return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file()) if d.is_dir() else []


def _loadable_sample_names() -> list[str]:
    """The sample models less those of optional families whose dependencies are missing."""
    from explainkit.models.checkpoint import read_config

    cfgs = {n: read_config(sample_models_dir() / n) for n in _sample_names()}
    fams = {n: _FAMILIES.get(c.get("family")) for n, c in cfgs.items()}
    # language models (loader causal_lm) answer prompts: the classifier harnesses (explainkit run, the
    # conformance pool) have no held-out data or inputs for them; load them with load_sample(name)
    return [n for n, f in fams.items() if (f is None or f.available()) and cfgs[n].get("loader") != "causal_lm"]


def load_sample(name: str):
    """Load a shipped sample model by name (see :func:`sample_models`)."""
    from explainkit.models.checkpoint import load, read_config

    name = str(name).removeprefix("sample:")
    names = _sample_names()
    if name not in names:
        raise UnknownNameError(f"Unknown sample model {name!r}.",
                               f"use one of: {', '.join(names) or '(none found in ' + str(sample_models_dir()) + ')'}.")
    cfg = read_config(sample_models_dir() / name)
    if cfg.get("loader") == "causal_lm":                # a language model: weights from its package, cached
        get_family(cfg.get("family"))                   # MissingDependencyError naming the install steps
        from explainkit.models.causal_lm import load_sample_dir
        return load_sample_dir(sample_models_dir() / name, cfg)
    return load(sample_models_dir() / name)


def sample_models() -> list[dict]:
    """The sample models: name, path, family, metrics recorded at training time."""
    from explainkit.models.checkpoint import read_config

    rows = []
    for name in _sample_names():
        cfg = read_config(sample_models_dir() / name)
        rows.append({"name": name, "path": str(sample_models_dir() / name), "family": cfg.get("family"),
                     "metrics": cfg.get("metrics", {})})
    return rows


# -- CLI ---------------------------------------------------------------------------------------------


def evaluate_samples(names=None) -> list[dict]:
    """Load each sample model, evaluate it on its shipped held-out data; one row per model."""
    from explainkit.data.datasets import sample_data

    rows = []
    for name in names or _loadable_sample_names():
        model = load_sample(name)
        fam = _FAMILIES.get(model.config.get("family"))
        start = time.perf_counter()
        if fam is not None and fam.metric == "confident_fraction":     # a GAN: its generated digits, judged
            from explainkit.models.gan import confident_fraction, generated_dataset
            data = generated_dataset(model, 1000, seed=0, name="mnist-gan-generated-1000")
            metrics = confident_fraction(model, load_sample("mnist-cnn"))
        else:
            data = sample_data(model.config.get("family", name))
            metrics = evaluate_model(model, data)
        rows.append({"name": name, "model": model, "data": data, "metrics": metrics,
                     "floor": fam.floor if fam else None, "metric": fam.metric if fam else None,
                     "seconds": time.perf_counter() - start})
    return rows
