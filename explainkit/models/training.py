"""Training loops: deterministic for a seed on CPU, with a tqdm progress bar; they return metrics."""
from __future__ import annotations

import contextlib
import os
import random
import time

import numpy as np

__all__ = ["seed_everything", "deterministic", "fit", "predict_raw"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(seed: int, threads: int | None = None):
    """Seeded, deterministic-algorithm torch for the duration of a block (settings restored after)."""
    import torch

    prev_det, prev_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    # one thread by default: on a small, shared CPU, more threads oversubscribe it and run slower
    torch.set_num_threads(max(1, threads or int(os.environ.get("EXPLAINKIT_THREADS", "1"))))
    seed_everything(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def _batch(inputs, idx, trim_text: bool):
    xs = [x[idx] for x in inputs]
    if trim_text and len(xs) == 2:            # (ids, mask): drop columns that are padding in the whole batch
        t = max(1, int(xs[1].sum(dim=1).max()))
        xs = [x[:, :t] for x in xs]
    return xs


def _batches(n: int, batch_size: int, gen, lengths=None):
    """A seeded random order; with ``lengths``, similar lengths are batched together (less padding)."""
    import torch

    order = torch.randperm(n, generator=gen)
    if lengths is None:
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    chunk = batch_size * 50                      # sort by length within chunks of 50 batches
    batches = []
    for c in range(0, n, chunk):
        part = order[c:c + chunk]
        part = part[torch.sort(lengths[part], stable=True).indices]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def fit(module, inputs, targets, *, loss: str = "cross_entropy", epochs: int = 1, batch_size: int = 64,
        lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, progress: bool = True,
        desc: str = "train", trim_text: bool = False, clip: float | None = None) -> dict:
    """Train ``module`` with Adam on in-memory tensors; the data order is a seeded permutation per epoch.

    ``inputs`` is a tuple of tensors (``(x,)`` or ``(ids, mask)``); ``loss`` is ``cross_entropy`` or ``mse``.
    Returns ``{"train_loss": ..., "epochs": ..., "seconds": ...}``. Call inside :func:`deterministic`.
    """
    import torch
    from tqdm.auto import tqdm

    inputs = tuple(inputs)
    n = int(targets.shape[0])
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss() if loss == "cross_entropy" else torch.nn.MSELoss()
    steps = epochs * ((n + batch_size - 1) // batch_size)
    start, last = time.perf_counter(), float("nan")
    module.train()
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        for _ in range(epochs):
            total, count = 0.0, 0
            for idx in _batches(n, batch_size, gen, inputs[1].sum(dim=1) if trim_text else None):
                out = module(*_batch(inputs, idx, trim_text))
                y = targets[idx]
                if loss != "cross_entropy":
                    out = out.reshape(y.shape)
                lval = loss_fn(out, y)
                opt.zero_grad(set_to_none=True)
                lval.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                opt.step()
                total += float(lval.detach()) * len(idx)
                count += len(idx)
                bar.update(1)
            last = total / max(count, 1)
            bar.set_postfix(loss=f"{last:.4f}")
    module.eval()
    return {"train_loss": round(last, 6), "epochs": epochs, "seconds": round(time.perf_counter() - start, 2)}


def predict_raw(module, inputs, batch_size: int = 512, trim_text: bool = False):
    """Raw outputs of ``module`` on in-memory tensors, batched, without gradients."""
    import torch

    inputs = tuple(inputs)
    module.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, int(inputs[0].shape[0]), batch_size):
            idx = torch.arange(i, min(i + batch_size, int(inputs[0].shape[0])))
            outs.append(module(*_batch(inputs, idx, trim_text)))
    return torch.cat(outs)
